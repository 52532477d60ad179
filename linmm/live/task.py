"""LiveTask: a real process on this machine's kernel with the linmm.Task API.

Each LiveTask is a small Python command loop (``_child.py``) started with
posix_spawn in its own process group, attached with PTRACE_SEIZE (options
TRACEFORK | EXITKILL), and driven over an AF_UNIX socket.  Its system calls
are made with ctypes.syscall in its own address space; a failing call raises
the linmm.errors class of the same errno.  A memory access that the kernel
answers with a fatal signal stops the process in a ptrace signal-delivery-stop:
the controller reads the siginfo (PTRACE_GETSIGINFO), kills the process and
raises linmm.Signal(signo, code, addr) -- a signal ends a live task.

Safety (see docs/LIVE.md): a call may only name memory the scenario mapped in
this task or memory that no mapping covers ("owned" ranges vs. the process's
own interpreter mappings, checked against /proc/<pid>/maps before the call),
except calls that the kernel rejects before looking at any mapping (unaligned
start, zero or wrapping length); memory a task may populate is capped.
"""
from __future__ import annotations

import pickle
import socket
import struct
from typing import TYPE_CHECKING

import numpy as np

from ..errors import EINVAL, ESRCH, Signal, from_errno
from ..uapi import (MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_LOCKED, MAP_POPULATE, MCL_CURRENT,
                    MCL_FUTURE, MCL_ONFAULT, MLOCK_ONFAULT, MREMAP_DONTUNMAP, MREMAP_FIXED,
                    PROT_NONE)

if TYPE_CHECKING:
    from .kernel import LiveKernel

PAGE = 4096
TASK_SIZE = (1 << 47) - PAGE
U64 = (1 << 64) - 1
MADV_POPULATE_READ, MADV_POPULATE_WRITE = 22, 23


class LiveError(RuntimeError):
    """The live backend could not do what was asked (not a kernel errno)."""


class LiveLimitError(LiveError):
    """Refused: the call could make a live task use more host memory than the cap."""


class LiveSafetyError(LiveError):
    """Refused: the call names memory outside what the scenario mapped in this task."""


def _palign(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


class _Ranges:
    """A set of page-aligned [start, end) intervals."""

    def __init__(self, items=()):
        self.iv: list[tuple[int, int]] = list(items)

    def add(self, s: int, e: int) -> None:
        if e <= s:
            return
        out = []
        for a, b in self.iv:
            if b < s or a > e:
                out.append((a, b))
            else:
                s, e = min(a, s), max(b, e)
        out.append((s, e))
        self.iv = sorted(out)

    def remove(self, s: int, e: int) -> None:
        out = []
        for a, b in self.iv:
            if b <= s or a >= e:
                out.append((a, b))
                continue
            if a < s:
                out.append((a, s))
            if b > e:
                out.append((e, b))
        self.iv = out

    def subtract_from(self, s: int, e: int) -> list[tuple[int, int]]:
        """The parts of [s, e) not covered."""
        parts = [(s, e)]
        for a, b in self.iv:
            nxt = []
            for x, y in parts:
                if b <= x or a >= y:
                    nxt.append((x, y))
                    continue
                if x < a:
                    nxt.append((x, a))
                if y > b:
                    nxt.append((b, y))
            parts = nxt
        return parts


class LiveTask:
    """A live process with the linmm.Task system-call and memory-access API."""

    def __init__(self, k: "LiveKernel", pid: int, sock: socket.socket, name: str, uid: int,
                 scratch: int):
        self.k = k
        self.pid = pid
        self.sock = sock
        self.comm = name[:15]
        self.uid = uid
        self.state = "R"
        self.signals: list[tuple] = []
        self.exit_code = None
        self.parent: LiveTask | None = None
        self.children: list[LiveTask] = []
        self.owned = _Ranges()
        self.mcl_future = False
        self._scratch = scratch
        self._fatal: Signal | None = None

    def __repr__(self) -> str:
        return f"<LiveTask {self.comm}/{self.pid} {self.state}>"

    # ------------------------------------------------------------ counters
    @property
    def min_flt(self) -> int:
        """Field 10 (minflt) of /proc/<pid>/stat."""
        with open(f"/proc/{self.pid}/stat") as f:
            text = f.read()
        return int(text[text.rindex(")") + 2:].split()[7])

    def rlimit(self, name: str) -> int:
        return self._request("getrlimit", (name,))

    # ------------------------------------------------------------ protocol
    def _request(self, op: str, args: tuple = (), payload=None, fds=None, raw: bool = False):
        if self.state != "R":
            raise ESRCH(f"{op}: live task {self.pid} has exited")
        body = pickle.dumps((op, args), protocol=4)
        k = self.k
        k._send(self, struct.pack("<I", len(body)) + body)
        if fds:
            socket.send_fds(self.sock, [b"F"], fds)
        if payload is not None:
            for chunk in payload:
                k._send(self, chunk)
        status, value = k._recv_reply(self)
        if status == "err":
            raise from_errno(value, f"{op}{self._fmt(args)} (live)")
        if status == "exc":
            raise LiveError(f"{op}: live task {self.pid}: {value}")
        if raw:
            return k._recv_exact(self, value)
        return value

    @staticmethod
    def _fmt(args) -> str:
        return "(" + ", ".join(hex(a) if isinstance(a, int) and a > 4096 else repr(a)
                               for a in args) + ")"

    def _died(self) -> None:
        """Called by the kernel when the process is gone."""
        self.state = "X"
        try:
            self.sock.close()
        except OSError:
            pass

    # ------------------------------------------------------------ safety
    def _vmas(self) -> list[tuple[int, int]]:
        with open(f"/proc/{self.pid}/maps") as f:
            out = []
            for ln in f:
                s, e = ln.split(" ", 1)[0].split("-")
                out.append((int(s, 16), int(e, 16)))
        return out

    def _foreign(self, vmas=None) -> list[tuple[int, int]]:
        """The parts of this process's mappings that the scenario did not map."""
        out = []
        for s, e in (self._vmas() if vmas is None else vmas):
            out.extend(self.owned.subtract_from(s, e))
        return out

    def _guard(self, what: str, start: int, length: int, align: bool = True) -> None:
        """Refuse a call whose range reaches memory the scenario did not map, unless
        the kernel rejects the arguments before looking at any VMA."""
        start &= U64
        length &= U64
        if align and start & (PAGE - 1):
            return                               # EINVAL before any lookup
        if length == 0:
            return
        s = start & ~(PAGE - 1)
        plen = _palign(length + (start - s))
        if plen == 0 or plen > U64 or s + plen > U64:
            return                               # wraps: EINVAL/ENOMEM before any lookup
        e = s + plen
        if s >= TASK_SIZE:
            return
        for a, b in self._foreign():
            if a < e and b > s:
                raise LiveSafetyError(
                    f"{what}({start:#x}, {length:#x}) would reach {a:#x}-{b:#x} of live task "
                    f"{self.pid}, which the scenario did not map")

    def _guard_addresses(self, addrs: np.ndarray) -> None:
        foreign = self._foreign()
        if not foreign or not len(addrs):
            return
        starts = np.array([a for a, _ in foreign], np.uint64)
        ends = np.array([b for _, b in foreign], np.uint64)
        order = np.argsort(starts)
        starts, ends = starts[order], ends[order]
        i = np.searchsorted(starts, addrs, side="right") - 1
        ok = i < 0
        j = np.where(ok, 0, i)
        bad = ~ok & (addrs < ends[j])
        if bad.any():
            a = int(addrs[np.flatnonzero(bad)[0]])
            raise LiveSafetyError(f"access to {a:#x}: memory of live task {self.pid} that the "
                                  f"scenario did not map")

    def _status_kb(self, key: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for ln in f:
                if ln.startswith(key + ":"):
                    return int(ln.split()[1])
        return 0

    def _charge(self, what: str, nbytes: int) -> None:
        """Refuse if this task could end up with more resident memory than the cap."""
        cap = self.k.cap_bytes
        if nbytes <= 0:
            return
        rss = self._status_kb("VmRSS") << 10
        if rss + nbytes > cap:
            raise LiveLimitError(f"{what}: live task {self.pid} could use {(rss + nbytes) >> 20} "
                                 f"MiB, over the {cap >> 20} MiB cap (LiveKernel(cap_bytes=...))")

    # ------------------------------------------------------------ syscalls
    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
        if fd != -1:
            raise LiveSafetyError("mmap: the live backend maps anonymous memory only")
        if flags & MAP_FIXED and not flags & MAP_FIXED_NOREPLACE:
            self._guard("mmap(MAP_FIXED)", addr, length)
        populate = (flags & (MAP_POPULATE | MAP_LOCKED) or self.mcl_future) and prot != PROT_NONE
        if populate:
            self._charge("mmap(MAP_POPULATE/MAP_LOCKED)", _palign(length & U64))
        r = self._request("mmap", (addr, length, prot, flags, fd, offset))
        self.owned.add(r, r + _palign(length))
        return r

    def munmap(self, addr: int, length: int) -> None:
        self._guard("munmap", addr, length)
        self._request("munmap", (addr, length))
        self.owned.remove(addr, addr + _palign(length))

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        self._guard("mprotect", addr, length)
        self._request("mprotect", (addr, length, prot))

    def madvise(self, addr: int, length: int, advice: int) -> None:
        self._guard("madvise", addr, length)
        if advice in (MADV_POPULATE_READ, MADV_POPULATE_WRITE):
            self._charge("madvise(MADV_POPULATE)", _palign(length & U64))
        self._request("madvise", (addr, length, advice))

    def mincore(self, addr: int, length: int) -> bytes:
        if ((length & U64) + PAGE - 1) >> 12 > (1 << 20):
            if addr & (PAGE - 1) == 0 and length < (1 << 63):
                raise LiveLimitError("mincore: more than 4 GiB of address space in one call")
        return self._request("mincore", (addr, length))

    def mremap(self, old: int, old_len: int, new_len: int, flags: int = 0, new_addr: int = 0) -> int:
        self._guard("mremap", old, old_len)
        if flags & MREMAP_FIXED:
            self._guard("mremap(MREMAP_FIXED)", new_addr, new_len)
        if new_len > old_len and (self.mcl_future or self._status_kb("VmLck")):
            self._charge("mremap of locked memory", _palign(new_len - old_len))
        r = self._request("mremap", (old, old_len, new_len, flags, new_addr))
        if r != old:
            if not flags & MREMAP_DONTUNMAP:
                self.owned.remove(old, old + _palign(old_len))
            self.owned.add(r, r + _palign(new_len))
        elif new_len < old_len:
            self.owned.remove(old + _palign(new_len), old + _palign(old_len))
        else:
            self.owned.add(old, old + _palign(new_len))
        return r

    def brk(self, addr: int) -> int:
        from ..errors import ENOSYS
        raise ENOSYS("brk: not supported on a live task (its heap belongs to the Python "
                     "interpreter that runs it)")

    def mlock(self, addr: int, length: int) -> None:
        self._guard("mlock", addr, length, align=False)
        self._charge("mlock", _palign(length & U64))
        self._request("mlock", (addr, length))

    def mlock2(self, addr: int, length: int, flags: int) -> None:
        self._guard("mlock2", addr, length, align=False)
        if not flags & MLOCK_ONFAULT:
            self._charge("mlock2", _palign(length & U64))
        self._request("mlock2", (addr, length, flags))

    def munlock(self, addr: int, length: int) -> None:
        self._guard("munlock", addr, length, align=False)
        self._request("munlock", (addr, length))

    def mlockall(self, flags: int) -> None:
        if flags & MCL_CURRENT and not flags & MCL_ONFAULT:
            self._charge("mlockall(MCL_CURRENT)", self._status_kb("VmSize") << 10)
        self._request("mlockall", (flags,))
        if flags & MCL_FUTURE and not flags & MCL_ONFAULT:
            self.mcl_future = True

    def munlockall(self) -> None:
        self._request("munlockall")
        self.mcl_future = False

    def move_pages(self, pid: int, pages: list[int], nodes: list[int] | None = None, flags: int = 0,
                   status: list[int] | None = None) -> tuple[int, list[int]]:
        """move_pages(2) from the live process: (ret, status)."""
        if pid == self.pid:
            pid = 0
        st = list(status) if status is not None else [0] * len(pages)
        ret, st = self._request("move_pages", (pid, [int(p) for p in pages],
                                                None if nodes is None else [int(x) for x in nodes],
                                                flags, st))
        if status is not None:
            status[:] = st
        return ret, st

    def setrlimit(self, name: str, value: int) -> None:
        if name not in ("RLIMIT_MEMLOCK", "RLIMIT_DATA", "RLIMIT_AS", "RLIMIT_STACK"):
            raise EINVAL(f"setrlimit: unknown resource {name}")
        self._request("setrlimit", (name, value))

    def set_cpu(self, cpu: int) -> None:
        """Run on one CPU only (sched_setaffinity); forked tasks inherit it."""
        import os
        os.sched_setaffinity(self.pid, {cpu})

    def fork(self, name: str | None = None) -> "LiveTask":
        return self.k._fork(self, name)

    def exit(self, code: int = 0) -> None:
        self.k._exit(self, code)

    # ------------------------------------------------------------ memory access
    def access(self, addresses, writes=False) -> None:
        """Touch each address in order (a trace); raises linmm.Signal on SIGSEGV/SIGBUS,
        after which this live task is dead."""
        addrs = np.ascontiguousarray(np.asarray(addresses, dtype=np.uint64).ravel())
        w = np.broadcast_to(np.asarray(writes, dtype=bool), addrs.shape)
        w = np.ascontiguousarray(w, dtype=np.uint8)
        self._guard_addresses(addrs)
        self._charge("access", len(np.unique(addrs >> np.uint64(12))) * PAGE)
        n = len(addrs)
        chunk = 1 << 16
        payload = []
        for i in range(0, n, chunk):
            payload.append(addrs[i:i + chunk].astype("<u8").tobytes())
            payload.append(w[i:i + chunk].tobytes())
        self._request("access", (n,), payload=payload)

    def touch(self, addr: int, write: bool = False) -> None:
        self.access(np.array([addr], np.uint64), write)

    def read(self, addr: int, n: int) -> bytes:
        if n <= 0:
            return b""
        self._guard_addresses(np.arange(addr & ~(PAGE - 1), addr + n, PAGE, dtype=np.uint64))
        self._charge("read", _palign(n))
        return self._request("read", (addr, n), raw=True)

    def write(self, addr: int, data: bytes) -> None:
        data = bytes(data)
        if not data:
            return
        self._guard_addresses(np.arange(addr & ~(PAGE - 1), addr + len(data), PAGE, dtype=np.uint64))
        self._charge("write", _palign(len(data)))
        self._request("write", (addr, len(data)), payload=[data])


__all__ = ["LiveTask", "LiveError", "LiveLimitError", "LiveSafetyError"]
