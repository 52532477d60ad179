"""The command loop of a live task (run as ``python -I -S _child.py FD UID NAME``).

This file is executed by a fresh interpreter in its own process; it must only
use the standard library (no linmm, no numpy) so that the process stays small
and its own memory activity does not disturb the counters a scenario reads.

Protocol over the AF_UNIX stream socket FD (one request at a time):
request  = u32 length + pickle((op, args)) [+ raw payload for "write"/"access"]
reply    = u32 length + pickle((status, value)) [+ raw payload for "read"]
status is "ok", "err" (value: errno) or "exc" (value: message).

Every memory access a scenario asks for is done by a few bytes of x86_64
machine code over preallocated, pre-faulted scratch buffers, so that the only
page faults taken between two requests are the ones the scenario asked for.
A fatal access stops the process in a ptrace signal-delivery-stop: the
controller reads the siginfo and kills the process.
"""
import ctypes
import gc
import os
import pickle
import signal
import socket
import struct
import sys

gc.disable()

FD, UID, NAME = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sock = socket.socket(fileno=FD)

libc = ctypes.CDLL(None, use_errno=True)
_long = ctypes.c_long
libc.syscall.restype = _long
libc.syscall.argtypes = [_long] * 7
libc.prctl.restype = ctypes.c_int
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

SYS = {"mmap": 9, "mprotect": 10, "munmap": 11, "brk": 12, "mremap": 25, "mincore": 27,
       "madvise": 28, "mlock": 149, "munlock": 150, "mlockall": 151, "munlockall": 152,
       "mlock2": 325, "prlimit64": 302, "move_pages": 279}
RLIMITS = {"RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_AS": 9, "RLIMIT_MEMLOCK": 8}
MASK64 = (1 << 64) - 1


def s64(x):
    x &= MASK64
    return x - (1 << 64) if x >> 63 else x


def sysc(name, *args):
    a = [s64(x) for x in args] + [0] * (6 - len(args))
    ctypes.set_errno(0)
    r = libc.syscall(SYS[name], *a)
    if r == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r & MASK64


# scratch buffers: 64 Ki addresses + 64 Ki write flags, 1 MiB of data (also the mincore
# vector: 4 GiB of address space), all pre-faulted
N_SCRATCH = 1 << 16
DATA_SCRATCH = 1 << 20
_rw, _priv = 3, 0x22
addr_buf = sysc("mmap", 0, N_SCRATCH * 8, _rw, _priv, -1, 0)
flag_buf = sysc("mmap", 0, N_SCRATCH, _rw, _priv, -1, 0)
data_buf = sysc("mmap", 0, DATA_SCRATCH, _rw, _priv, -1, 0)
SCRATCH = ((addr_buf, N_SCRATCH * 8), (flag_buf, N_SCRATCH), (data_buf, DATA_SCRATCH))


def fault_in_scratch():
    for b, n in SCRATCH:
        ctypes.memset(b, 0, n)


# MADV_WIPEONFORK: a forked task gets its own scratch (faulted in before it reports), so
# neither side of a fork takes copy-on-write faults on scratch memory later
for _b, _n in SCRATCH:
    sysc("madvise", _b, _n, 18)
fault_in_scratch()
addr_mv = (ctypes.c_char * (N_SCRATCH * 8)).from_address(addr_buf)
flag_mv = (ctypes.c_char * N_SCRATCH).from_address(flag_buf)
data_mv = (ctypes.c_char * DATA_SCRATCH).from_address(data_buf)
addr_view = memoryview(addr_mv).cast("B")
flag_view = memoryview(flag_mv).cast("B")
data_view = memoryview(data_mv).cast("B")

# void access(u64 *addrs, u8 *writes, size_t n): per address "mov cl,[a]" (read) or
# "lock add byte [a],0" (a write access that keeps the byte: one write fault, no read first)
CODE = bytes.fromhex("4885d2741c488b07803e007406f0800000eb028a084883c70848ffc648ffca75e4c3")
code_page = sysc("mmap", 0, 4096, _rw, _priv, -1, 0)
ctypes.memmove(code_page, CODE, len(CODE))
sysc("mprotect", code_page, 4096, 5)            # PROT_READ | PROT_EXEC
native_access = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)(code_page)

msg_buf = bytearray(1 << 16)
msg_view = memoryview(msg_buf)
hdr = bytearray(4)
hdr_view = memoryview(hdr)


def recv_into(view):
    got = 0
    n = len(view)
    while got < n:
        r = sock.recv_into(view[got:], n - got)
        if r == 0:
            os._exit(0)                           # controller went away
        got += r


def send_reply(obj, raw=None):
    body = pickle.dumps(obj, protocol=4)
    sock.sendall(struct.pack("<I", len(body)) + body)
    if raw is not None:
        sock.sendall(raw)


# ----------------------------------------------------------------- operations
def op_ping():
    return os.getpid(), data_buf


def op_mmap(addr, length, prot, flags, fd, offset):
    return sysc("mmap", addr, length, prot, flags, fd, offset)


def op_munmap(addr, length):
    sysc("munmap", addr, length)


def op_mprotect(addr, length, prot):
    sysc("mprotect", addr, length, prot)


def op_madvise(addr, length, advice):
    sysc("madvise", addr, length, advice)


def op_mincore(addr, length):
    n = ((length & MASK64) + 4095) >> 12
    sysc("mincore", addr, length, data_buf)
    return bytes(data_view[:n])


def op_mremap(old, old_len, new_len, flags, new_addr):
    return sysc("mremap", old, old_len, new_len, flags, new_addr)


def op_brk(addr):
    return sysc("brk", addr)


def op_mlock(addr, length):
    sysc("mlock", addr, length)


def op_mlock2(addr, length, flags):
    sysc("mlock2", addr, length, flags)


def op_munlock(addr, length):
    sysc("munlock", addr, length)


def op_mlockall(flags):
    sysc("mlockall", flags)


def op_munlockall():
    sysc("munlockall")


_rlim = (ctypes.c_uint64 * 2)()
_old = (ctypes.c_uint64 * 2)()


def op_move_pages(pid, pages, nodes, flags, status):
    """move_pages(2) with this process's own arrays: (ret, status after the call)."""
    n = len(pages)
    pa = (ctypes.c_uint64 * n)(*pages)
    na = (ctypes.c_int * n)(*nodes) if nodes is not None else None
    sa = (ctypes.c_int * n)(*status)
    ret = sysc("move_pages", pid, n, ctypes.addressof(pa),
               ctypes.addressof(na) if na is not None else 0, ctypes.addressof(sa), flags)
    return s64(ret), list(sa)


def op_setrlimit(name, value):
    res = RLIMITS[name]
    sysc("prlimit64", 0, res, 0, ctypes.addressof(_old))
    _rlim[0] = value
    _rlim[1] = max(value, _old[1]) if UID == 0 else _old[1]
    sysc("prlimit64", 0, res, ctypes.addressof(_rlim), 0)


def op_getrlimit(name):
    sysc("prlimit64", 0, RLIMITS[name], 0, ctypes.addressof(_old))
    return _old[0]


def op_access(n):
    """Payload: n little-endian u64 addresses then n write flags, in chunks."""
    done = 0
    while done < n:
        m = min(N_SCRATCH, n - done)
        recv_into(addr_view[:m * 8])
        recv_into(flag_view[:m])
        native_access(addr_buf, flag_buf, m)
        done += m


def op_write(addr, n):
    done = 0
    while done < n:
        m = min(DATA_SCRATCH, n - done)
        recv_into(data_view[:m])
        ctypes.memmove(addr + done, data_buf, m)
        done += m


def op_read(addr, n):
    """Replies first, then streams the bytes (so a fault ends the stream early)."""
    send_reply(("ok", n))
    done = 0
    while done < n:
        m = min(DATA_SCRATCH, n - done)
        ctypes.memmove(data_buf, addr + done, m)
        sock.sendall(data_view[:m])
        done += m
    return _NO_REPLY


def op_fork():
    global sock
    msg, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
    newfd = fds[0]
    pid = os.fork()
    if pid == 0:
        sock.close()
        sock = socket.socket(fileno=newfd)
        fault_in_scratch()
        warmup()
        send_reply(("ok", os.getpid()))
        return _NO_REPLY
    os.close(newfd)
    warmup()
    return pid


def op_exit(code):
    os._exit(code)


def op_warmup():
    warmup()


_NO_REPLY = object()
OPS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def handle(op, args):
    try:
        r = OPS[op](*args)
    except OSError as e:
        return ("err", e.errno)
    except Exception as e:                       # noqa: BLE001 - reported to the controller
        return ("exc", f"{type(e).__name__}: {e}")
    if r is _NO_REPLY:
        return r
    return ("ok", r)


def warmup():
    """Run every code path once with harmless arguments (zero lengths, unaligned addresses,
    the pre-faulted scratch buffers), so that the interpreter's own pages are faulted in
    (and, after a fork, copied) before a scenario counts faults.  No mapping changes."""
    for _ in range(2):
        handle("ping", ())
        handle("mmap", (0, 0, 3, 0x22, -1, 0))        # EINVAL: zero length
        handle("munmap", (1, 4096))                   # EINVAL: unaligned
        handle("mprotect", (1, 4096, 1))
        handle("madvise", (1, 4096, 4))
        handle("mremap", (1, 4096, 4096, 0, 0))
        handle("mincore", (data_buf, 4096))
        handle("mlock", (data_buf, 0))                # zero length: nothing locked
        handle("munlock", (data_buf, 0))
        handle("mlock2", (data_buf, 0, 0))
        handle("mlockall", (0,))                      # EINVAL
        handle("getrlimit", ("RLIMIT_MEMLOCK",))
        handle("nope", ())
        addr_view[:8] = struct.pack("<Q", data_buf)
        flag_view[0] = 1
        native_access(addr_buf, flag_buf, 1)
        flag_view[0] = 0
        native_access(addr_buf, flag_buf, 1)
        ctypes.memmove(data_buf + 64, data_buf, 16)
        pickle.loads(pickle.dumps(("ok", (1 << 63) + 5, b"\x00" * 64, "x" * 40), protocol=4))
        struct.pack("<I", 5)


def main():
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)     # forked tasks are reaped automatically
    comm = ctypes.create_string_buffer(NAME.encode()[:15])
    libc.prctl(15, ctypes.addressof(comm), 0, 0, 0)   # PR_SET_NAME
    if UID != 0:
        os.setgroups([])
        os.setresgid(UID, UID, UID)
        os.setresuid(UID, UID, UID)
    warmup()
    send_reply(("ok", os.getpid()))
    while True:
        recv_into(hdr_view)
        (n,) = struct.unpack("<I", hdr)
        recv_into(msg_view[:n])
        op, args = pickle.loads(msg_view[:n])
        r = handle(op, args)
        if r is not _NO_REPLY:
            send_reply(r)


main()
