"""Just enough ptrace(2) for the live backend (x86_64 Linux, via ctypes)."""
from __future__ import annotations

import ctypes
import os
import struct

PTRACE_CONT = 7
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_SEIZE = 0x4206
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_FORK = 1
PTRACE_EVENT_STOP = 128
WALL = 0x40000000          # __WALL: wait for every kind of (traced) child

_libc = None


def libc():
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.ptrace.restype = ctypes.c_long
        lib.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        _libc = lib
    return _libc


def _call(req: int, pid: int, addr=None, data=None) -> int:
    ctypes.set_errno(0)
    r = libc().ptrace(req, pid, addr, data)
    if r == -1:
        e = ctypes.get_errno()
        if e:
            raise OSError(e, f"ptrace({req:#x}, {pid}): {os.strerror(e)}")
    return r


def seize(pid: int, options: int) -> None:
    _call(PTRACE_SEIZE, pid, None, ctypes.c_void_p(options))


def cont(pid: int, sig: int = 0) -> None:
    _call(PTRACE_CONT, pid, None, ctypes.c_void_p(sig))


def geteventmsg(pid: int) -> int:
    v = ctypes.c_ulong(0)
    _call(PTRACE_GETEVENTMSG, pid, None, ctypes.cast(ctypes.byref(v), ctypes.c_void_p))
    return v.value


def getsiginfo(pid: int) -> tuple[int, int, int, int]:
    """(si_signo, si_errno, si_code, si_addr) of the signal the tracee stopped for."""
    buf = ctypes.create_string_buffer(128)
    _call(PTRACE_GETSIGINFO, pid, None, ctypes.cast(buf, ctypes.c_void_p))
    signo, err, code = struct.unpack_from("iii", buf.raw, 0)
    (addr,) = struct.unpack_from("Q", buf.raw, 16)
    return signo, err, code, addr
