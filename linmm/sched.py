"""CPUs, contexts and context_switch with lazy TLB mm borrowing (active_mm.rst).

A Task or kernel thread is a *context*: it holds locks, runs on a CPU and
has ``mm`` / ``active_mm`` exactly as in kernel/sched/core.c.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .errors import KernelBug

if TYPE_CHECKING:
    from .kernel import Kernel


class Context:
    """What task_struct holds that the memory manager looks at."""

    is_kthread = False

    def __init__(self, pid: int, comm: str):
        self.pid = pid
        self.tgid = pid  # the thread group (clone_thread shares the leader's)
        self.comm = comm
        self.mm = None
        self.active_mm = None
        self.cpu = 0
        self.held_locks: list = []
        self.preempt_count = 0       # kmap_atomic / preempt_disable depth
        self.pagefault_disabled = 0  # pagefault_disable depth
        self.pt_exempt = 0
        self.state = "R"
        self.pf_memalloc = False
        self.oom_victim = False
        self.pending_kill = False  # SIGKILL queued, taken on return to user space
        self.signals: list[tuple] = []
        self.min_flt = self.maj_flt = 0
        self.cap_sys_admin = self.cap_sys_rawio = self.cap_ipc_lock = True  # kernel context

    def rlimit(self, name: str) -> int:
        return {"RLIMIT_STACK": 8 << 20, "RLIMIT_MEMLOCK": 64 << 10}.get(name, (1 << 64) - 1)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.comm}/{self.pid}>"


class KThread(Context):
    """A kernel thread: mm None; borrows active_mm lazily when on a CPU."""

    is_kthread = True

    def __init__(self, pid: int, comm: str, fn: Callable | None = None, cpu: int = 0):
        super().__init__(pid, comm)
        self.fn = fn  # fn(now_ms) -> ms until next run, or None to sleep
        self.cpu = cpu
        self.due: int | None = None  # simulated ms when it runs next; None = sleeping


class Lockstep:
    """A kernel thread body that may sleep (wait queues): it runs on its own host
    thread, but only while the simulation hands it the CPU, so runs stay
    deterministic.  ``sleep()`` (from inside the body) gives the CPU back until
    the thread is woken and scheduled again."""

    def __init__(self, body: Callable[[], None]):
        import threading
        self._body = body
        self._go = threading.Semaphore(0)
        self._back = threading.Semaphore(0)
        self._thread: threading.Thread | None = None
        self.done = False
        self.error: BaseException | None = None

    def _main(self) -> None:
        self._go.acquire()
        try:
            self._body()
        except BaseException as e:  # noqa: BLE001 - handed to the scheduling thread
            self.error = e
        self.done = True
        self._back.release()

    def run(self) -> bool:
        """Run the body until it sleeps (False) or ends (True); its error is raised here."""
        import threading
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, daemon=True)
            self._thread.start()
        self._go.release()
        self._back.acquire()
        if self.error is not None:
            e, self.error = self.error, None
            raise e
        return self.done

    def sleep(self) -> None:
        self._back.release()
        self._go.acquire()


class Cpu:
    def __init__(self, cpu: int, idle: KThread, init_mm):
        self.id = cpu
        self.idle = idle
        self.curr: Context = idle
        self.prev_mm = None
        self.loaded_mm = init_mm
        self.is_lazy = False


class Scheduler:
    def __init__(self, k: "Kernel"):
        self.k = k
        self.cpus: list[Cpu] = []
        self.kthreads: dict[str, KThread] = {}

    def setup(self, ncpus: int) -> None:
        k = self.k
        for c in range(ncpus):
            idle = KThread(0, f"swapper/{c}", cpu=c)
            idle.active_mm = k.init_mm
            k.init_mm.mm_count += 1  # mmgrab(&init_mm) for each idle task
            self.cpus.append(Cpu(c, idle, k.init_mm))

    # ------------------------------------------------------------ kthreads
    def kthread_create(self, comm: str, fn: Callable | None, cpu: int = 0) -> KThread:
        t = KThread(self.k.alloc_pid(), comm, fn, cpu)
        self.kthreads[comm] = t
        self.k.tasks[t.pid] = t
        return t

    def wake(self, comm: str, force: bool = False) -> None:
        """Make a kernel thread runnable now (force: also cut a timed sleep short)."""
        t = self.kthreads.get(comm)
        if t is not None and (t.due is None or force):
            t.due = self.k.now_ms

    # ------------------------------------------------------------ switching
    def context_switch(self, cpu: Cpu, nxt: Context) -> None:
        """kernel/sched/core.c context_switch() + finish_task_switch()."""
        k = self.k
        prev = cpu.curr
        if prev is nxt:
            return
        if prev.held_locks or prev.preempt_count:
            raise KernelBug(f"BUG: scheduling while atomic: {prev.comm}/{prev.pid}/"
                            f"{prev.preempt_count:#010x}")
        if nxt.mm is None:  # to kernel
            self.enter_lazy_tlb(cpu)
            nxt.active_mm = prev.active_mm
            if prev.mm is not None:
                k.mmgrab(prev.active_mm, "lazy")
            else:
                prev.active_mm = None
        else:  # to user
            self.switch_mm_irqs_off(cpu, prev.active_mm, nxt.mm)
            if prev.mm is None:
                cpu.prev_mm = prev.active_mm
                prev.active_mm = None
        cpu.curr = nxt
        nxt.cpu = cpu.id
        m, cpu.prev_mm = cpu.prev_mm, None
        if m is not None:
            k.mmdrop(m, "lazy")
        if prev.state == "X" and prev.active_mm is not None and prev.mm is None and not prev.is_kthread:
            prev.active_mm = None

    def enter_lazy_tlb(self, cpu: Cpu) -> None:
        if cpu.loaded_mm is not self.k.init_mm:
            cpu.is_lazy = True

    def switch_mm_irqs_off(self, cpu: Cpu, prev_mm, next_mm) -> None:
        cpu.is_lazy = False
        if cpu.loaded_mm is next_mm:
            return
        old = cpu.loaded_mm
        if old is not None and old is not self.k.init_mm and hasattr(old, "cpumask"):
            old.cpumask.discard(cpu.id)
        if not hasattr(next_mm, "cpumask"):
            next_mm.cpumask = set()
        next_mm.cpumask.add(cpu.id)
        cpu.loaded_mm = next_mm

    def run_on_cpu(self, ctx: Context) -> None:
        """A task method runs ctx on its CPU, switching to it if needed."""
        cpu = self.cpus[ctx.cpu]
        self.k._cur_cpu = ctx.cpu
        if cpu.curr is not ctx:
            self.context_switch(cpu, ctx)

    def switch_to_idle(self, cpu: Cpu) -> None:
        self.context_switch(cpu, cpu.idle)

    def leave_mm(self, cpu: Cpu) -> None:
        """A lazy CPU told to flush switches its page tables to init_mm."""
        if cpu.loaded_mm is not self.k.init_mm:
            if hasattr(cpu.loaded_mm, "cpumask"):
                cpu.loaded_mm.cpumask.discard(cpu.id)
            cpu.loaded_mm = self.k.init_mm
            cpu.is_lazy = False
