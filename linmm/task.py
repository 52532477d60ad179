"""Task: a user process with Linux system-call methods and memory access.

Each method runs the task on its CPU (context_switch first if needed), calls
into the memory manager with Linux argument and errno semantics, and leaves
the task as the CPU's current task.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import EINVAL, ESRCH, KernelBug
from .sched import Context

if TYPE_CHECKING:
    from .kernel import Kernel

RLIM_INFINITY = (1 << 64) - 1
DEFAULT_RLIMITS = {"RLIMIT_STACK": 8 << 20, "RLIMIT_DATA": RLIM_INFINITY, "RLIMIT_AS": RLIM_INFINITY,
                   "RLIMIT_MEMLOCK": 64 << 10}


class Task(Context):
    """A user task (task_struct with an mm)."""

    def __init__(self, k: "Kernel", pid: int, comm: str, uid: int = 0):
        super().__init__(pid, comm)
        self.k = k
        self.uid = uid
        self.cap_sys_admin = uid == 0
        self.cap_sys_rawio = uid == 0
        self.cap_ipc_lock = uid == 0
        self.rlimits = dict(DEFAULT_RLIMITS)
        self.parent: Task | None = None
        self.children: list[Task] = []
        self.signals: list[tuple] = []
        self.min_flt = 0
        self.maj_flt = 0
        self.cmin_flt = 0  # of reaped children
        self.cmaj_flt = 0
        self.start_ticks = k.now_ms // 10
        self.oom_score_adj = 0
        self.exit_code = None
        self.rss_private = [0, 0, 0, 0]  # task->rss_stat.count (SPLIT_RSS_COUNTING)
        self.rss_events = 0

    def rlimit(self, name: str) -> int:
        return self.rlimits[name]

    def setrlimit(self, name: str, value: int) -> None:
        if name not in self.rlimits:
            raise EINVAL(f"setrlimit: unknown resource {name}")
        self.rlimits[name] = value

    # ------------------------------------------------------------ plumbing
    def sleep_uninterruptible(self) -> None:
        """Put the task in TASK_UNINTERRUPTIBLE ("D", e.g. waiting on a lock): it makes
        no syscalls and a SIGKILL stays pending until ``k.wake_up_process(t)``."""
        if self.state != "R":
            raise ESRCH(f"task {self.pid} is not running")
        cpu = self.k.sched.cpus[self.cpu]
        if cpu.curr is self:
            self.k.sched.switch_to_idle(cpu)
        self.state = "D"

    def _enter(self):
        if self.state == "D":
            raise KernelBug(f"task {self.pid} is in uninterruptible sleep; k.wake_up_process() it first")
        if self.state not in ("R",):
            raise ESRCH(f"task {self.pid} has exited")
        k = self.k
        k.sched.run_on_cpu(self)
        return k

    def _syscall(self, fn, *args):
        k = self._enter()
        try:
            return fn(*args)
        finally:
            k.after_syscall(self)

    def move_pages(self, pid: int, pages: list[int], nodes: list[int] | None = None, flags: int = 0,
                   status: list[int] | None = None) -> tuple[int, list[int]]:
        """move_pages(2): query (nodes None) or move each page to its node; returns
        (ret, status).  ret > 0 counts pages not moved; errors raise, status is written
        in place."""
        from .mm.migrate import sys_move_pages
        return self._syscall(sys_move_pages, self.k, self, pid, list(pages),
                             None if nodes is None else list(nodes), flags, status)

    # ------------------------------------------------------------ syscalls
    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
        """mmap(2); anonymous mappings (MAP_ANONYMOUS) only until files land."""
        from .uapi import MAP_ANONYMOUS, MAP_DENYWRITE, MAP_EXECUTABLE
        k = self._enter()
        try:
            if offset & 0xFFF:
                raise EINVAL("mmap: unaligned offset")
            if not flags & MAP_ANONYMOUS:
                from .errors import EBADF, ENODEV
                if fd < 0:
                    raise EBADF("mmap: no file descriptor")
                raise ENODEV("mmap: file mappings are not modelled yet")
            from .uapi import MAP_HUGETLB
            if flags & MAP_HUGETLB:
                # hugetlb_file_setup() with an empty pool (no hugetlbfs model yet)
                from .errors import ENOMEM
                raise ENOMEM("mmap: MAP_HUGETLB and no huge pages are reserved")
            flags &= ~(MAP_EXECUTABLE | MAP_DENYWRITE)
            return k.mmap.do_mmap(self, addr, length, prot, flags, offset >> 12)
        finally:
            k.after_syscall(self)

    def munmap(self, addr: int, length: int) -> None:
        self._syscall(self.k.mmap.do_munmap, self, addr, length)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        self._syscall(self.k.mprotect.do_mprotect_pkey, self, addr, length, prot)

    def madvise(self, addr: int, length: int, advice: int) -> None:
        self._syscall(self.k.madvise.do_madvise, self, addr, length, advice)

    def mincore(self, addr: int, length: int) -> bytes:
        from .mm.mincore import do_mincore
        return self._syscall(do_mincore, self.k, self, addr, length)

    def mremap(self, old: int, old_len: int, new_len: int, flags: int = 0, new_addr: int = 0) -> int:
        return self._syscall(self.k.mremap.sys_mremap, self, old, old_len, new_len, flags, new_addr)

    def brk(self, addr: int) -> int:
        return self._syscall(self.k.mmap.sys_brk, self, addr)

    def mlock(self, addr: int, length: int) -> None:
        from .mm.mm_types import VM_LOCKED
        self._syscall(self.k.mlock.do_mlock, self, addr, length, VM_LOCKED)

    def mlock2(self, addr: int, length: int, flags: int = 0) -> None:
        self._syscall(self.k.mlock.sys_mlock2, self, addr, length, flags)

    def munlock(self, addr: int, length: int) -> None:
        self._syscall(self.k.mlock.sys_munlock, self, addr, length)

    def mlockall(self, flags: int) -> None:
        self._syscall(self.k.mlock.sys_mlockall, self, flags)

    def munlockall(self) -> None:
        self._syscall(self.k.mlock.sys_munlockall, self)

    def fork(self, name: str | None = None) -> "Task":
        return self._syscall(self.k.do_fork, self, name)

    def clone_thread(self, name: str | None = None) -> "Task":
        """clone(CLONE_VM|CLONE_THREAD...): a thread sharing this task's mm (mmget)."""
        k = self._enter()
        try:
            th = Task(k, k.alloc_pid(), name or self.comm, self.uid)
            th.autoreap = True
            th.cpu = self.cpu
            th.rlimits = self.rlimits
            k.mmget(self.mm)
            th.mm = th.active_mm = self.mm
            th.tgid = self.tgid
            th.parent = self.parent
            k.tasks[th.pid] = th
            return th
        finally:
            k.after_syscall(self)

    def exit(self, code: int = 0) -> None:
        k = self._enter()
        k.do_exit(self, code)

    def set_cpu(self, cpu: int) -> None:
        if not 0 <= cpu < self.k.config.cpus:
            raise EINVAL(f"set_cpu: no CPU {cpu}")
        if self.k.sched.cpus[self.cpu].curr is self:
            self.k.sched.switch_to_idle(self.k.sched.cpus[self.cpu])
        self.cpu = cpu

    # ------------------------------------------------------------ memory access
    def access(self, addresses, writes=False) -> None:
        """Touch each address in order (a trace); raises Signal on SIGSEGV/SIGBUS."""
        k = self._enter()
        try:
            k.fault.access(self, np.asarray(addresses), writes)
        finally:
            k.after_syscall(self)

    def touch(self, addr: int, write: bool = False) -> None:
        self.access(np.array([addr], np.uint64), write)

    def read(self, addr: int, n: int) -> bytes:
        """copy from user memory: faults pages in as a read would."""
        k = self._enter()
        try:
            return k.access_process_vm(self, addr, n, None)
        finally:
            k.after_syscall(self)

    def write(self, addr: int, data: bytes) -> None:
        k = self._enter()
        try:
            k.access_process_vm(self, addr, len(data), bytes(data))
        finally:
            k.after_syscall(self)

    def __repr__(self) -> str:
        return f"<Task {self.comm}/{self.pid}>"

