"""Errors: one exception class per Linux errno, plus signals and kernel bugs.

A failing syscall raises the class named after its errno (``EINVAL``,
``ENOMEM`` ...), each a subclass of :class:`Errno` (an ``OSError``) with
``.errno`` set to the Linux value.  A signal a real task would receive raises
:class:`Signal`.  A broken kernel invariant raises :class:`KernelBug`.
"""
from __future__ import annotations

import errno as _errno
import os

# Linux errno values (asm-generic/errno-base.h, errno.h).
_LINUX_ERRNOS = {
    "EPERM": 1, "ENOENT": 2, "ESRCH": 3, "EINTR": 4, "EIO": 5, "ENXIO": 6,
    "E2BIG": 7, "ENOEXEC": 8, "EBADF": 9, "ECHILD": 10, "EAGAIN": 11,
    "ENOMEM": 12, "EACCES": 13, "EFAULT": 14, "ENOTBLK": 15, "EBUSY": 16,
    "EEXIST": 17, "EXDEV": 18, "ENODEV": 19, "ENOTDIR": 20, "EISDIR": 21,
    "EINVAL": 22, "ENFILE": 23, "EMFILE": 24, "ENOTTY": 25, "ETXTBSY": 26,
    "EFBIG": 27, "ENOSPC": 28, "ESPIPE": 29, "EROFS": 30, "EMLINK": 31,
    "EPIPE": 32, "EDOM": 33, "ERANGE": 34, "EDEADLK": 35, "ENAMETOOLONG": 36,
    "ENOLCK": 37, "ENOSYS": 38, "ENOTEMPTY": 39, "ENODATA": 61,
    "EOVERFLOW": 75, "EOPNOTSUPP": 95, "EHWPOISON": 133,
}


class Errno(OSError):
    """Base of every errno exception; ``.errno`` is the Linux value."""

    errno_value: int = 0

    def __init__(self, msg: str | None = None):
        name = type(self).__name__
        text = os.strerror(self.errno_value) if self.errno_value in _errno.errorcode else name
        super().__init__(self.errno_value, f"{name}: {msg}" if msg else f"{name}: {text}")


def _make(name: str, value: int) -> type[Errno]:
    return type(name, (Errno,), {"errno_value": value, "__doc__": f"Linux {name} ({value})."})


_by_value: dict[int, type[Errno]] = {}
for _n, _v in _LINUX_ERRNOS.items():
    _cls = _make(_n, _v)
    globals()[_n] = _cls
    _by_value[_v] = _cls
EWOULDBLOCK = globals()["EAGAIN"]
ENOTSUP = globals()["EOPNOTSUPP"]


def from_errno(value: int, msg: str | None = None) -> Errno:
    """The exception for a (positive or negative) Linux errno value."""
    return _by_value[abs(value)](msg)


def errno_value(name: str) -> int:
    return _LINUX_ERRNOS[name]


class Signal(Exception):
    """A signal delivered to a task (SIGSEGV, SIGBUS, SIGKILL ...)."""

    def __init__(self, signo: int, code: int = 0, addr: int | None = None, pid: int | None = None):
        from .uapi import signal_name, si_code_name
        self.signo, self.code, self.addr, self.pid = signo, code, addr, pid
        where = f" at {addr:#x}" if addr is not None else ""
        super().__init__(f"{signal_name(signo)} ({si_code_name(signo, code)}){where}")


class KernelBug(Exception):
    """A kernel invariant was broken (BUG/VM_BUG_ON/WARN in the kernel)."""


class WouldBlock(KernelBug):
    """The kernel would sleep here waiting for another context (model only)."""


class KernelOops(KernelBug):
    """A kernel access to an address with no page table entry ("BUG: unable to handle
    page fault for address: ...")."""


class KernelDeadlock(KernelBug):
    """The caller would sleep forever: nothing else can run to wake it (model only)."""


class ConfigError(ValueError):
    """A malformed machine configuration; the message names the field."""
