"""mm_struct and task life cycle (kernel/fork.c, kernel/exit.c): mm_alloc, mmgrab /
mmdrop, mmget / mmput, exit_mmap, spawn (an exec'd task), fork with dup_mm, do_exit,
exit_mm, reaping, SIGKILL delivery and wake-ups.  Mixed into Kernel."""
from __future__ import annotations

from .errors import ENOMEM, ESRCH, Errno, KernelBug
from .mm.mm_types import VM_ACCOUNT, VM_STACK_FLAGS, VM_WIPEONFORK, MmStruct, Vma
from .mm.pgtable import vm_get_page_prot
from .task import Task


class ForkExit:
    # ------------------------------------------------------------ mm lifecycle
    def mm_alloc(self, owner=None) -> MmStruct:
        mm = MmStruct(self, owner)
        self.pgt.pgd_alloc(mm)
        self.mms[mm.id] = mm
        mm.task_size = self.task_size
        mm.mmap_base = self.stack_top - (128 << 20)
        return mm

    def mmgrab(self, mm: MmStruct, why: str = "") -> None:
        self._check_live(mm, "mmgrab")
        mm.mm_count += 1

    def mmdrop(self, mm: MmStruct, why: str = "") -> None:
        self._check_live(mm, "mmdrop")
        if mm.mm_count <= 0:
            raise KernelBug(f"mm_count underflow on mm of pid {mm.owner_pid}")
        mm.mm_count -= 1
        if mm.mm_count == 0:
            self.__mmdrop(mm)

    def mmget(self, mm: MmStruct) -> None:
        self._check_live(mm, "mmget")
        if mm.mm_users <= 0:
            raise KernelBug(f"mmget on mm of pid {mm.owner_pid} whose mm_users is 0")
        mm.mm_users += 1

    def mmget_not_zero(self, mm: MmStruct) -> bool:
        self._check_live(mm, "mmget_not_zero")
        if mm.mm_users == 0:
            return False
        mm.mm_users += 1
        return True

    def mmput(self, mm: MmStruct) -> None:
        self._check_live(mm, "mmput")
        if mm.mm_users <= 0:
            raise KernelBug(f"mm_users underflow on mm of pid {mm.owner_pid}")
        self.might_sleep("kernel/fork.c", 1081)
        mm.mm_users -= 1
        if mm.mm_users == 0:
            self.exit_mmap(mm)
            self.mmdrop(mm, "users")

    def get_task_mm(self, task):
        mm = task.mm
        if mm is None or task.is_kthread:
            return None
        self.mmget(mm)
        return mm

    def _check_live(self, mm: MmStruct, op: str) -> None:
        if mm.freed:
            raise KernelBug(f"use-after-free: {op} on the freed mm of pid {mm.owner_pid}")

    def __mmdrop(self, mm: MmStruct) -> None:
        if mm is self.init_mm:
            raise KernelBug("__mmdrop of init_mm")
        for name, val in zip(("MM_FILEPAGES", "MM_ANONPAGES", "MM_SWAPENTS", "MM_SHMEMPAGES"), mm.rss_stat):
            if val:
                self.printk(f"BUG: Bad rss-counter state mm:{mm.id:#x} type:{name} val:{val}")
        if mm.pgtables_bytes:
            self.printk(f"BUG: non-zero pgtables_bytes on freeing mm: {mm.pgtables_bytes}")
        self.pgt.pgd_free(mm)
        mm.notifier_subscriptions = None
        mm.freed = True
        del self.mms[mm.id]
        if self.config.trace_mm:
            self.printk(f"__mmdrop: mm {mm.id:#x} of pid {mm.owner_pid}")

    def exit_mmap(self, mm: MmStruct) -> None:
        from .mm.mm_types import MMF_OOM_SKIP, MMF_OOM_VICTIM
        from .mm.mmu_gather import MmuGather
        self.mmu_notifiers.release(mm)
        if mm.flags >> MMF_OOM_VICTIM & 1:  # reap it by hand first, then hide it from the reaper
            getattr(self.oom, "__oom_reap_task_mm")(mm)
            mm.flags |= 1 << MMF_OOM_SKIP
        if mm.locked_vm:
            for v in mm.vmas:
                if v.vm_flags & 0x2000:  # VM_LOCKED
                    self.munlock_vma_pages_all(v)
        self.vmscan.lru_add_drain()
        vmas = list(mm.vmas)
        tlb = MmuGather(self, mm, 0, (1 << 64) - 1, fullmm=True)
        self.memory.unmap_vmas(tlb, vmas, 0, (1 << 64) - 1)
        ctx = self.current_ctx()
        ctx.pt_exempt += 1
        try:
            self.mmap.free_pgtables(tlb, mm, vmas, 0, 0)
        finally:
            ctx.pt_exempt -= 1
        tlb.tlb_finish_mmu()
        nr_accounted = 0
        for v in vmas:
            if v.vm_flags & VM_ACCOUNT:
                nr_accounted += v.vma_pages()
            if v.shmem is not None:
                v.shmem.put(self)
        mm.vmas.clear()
        mm._starts.clear()
        mm.map_count = 0
        if nr_accounted:
            self.overcommit.vm_unacct_memory(nr_accounted)

    # ------------------------------------------------------------ tasks
    def spawn(self, name: str = "task", uid: int = 0, reap: bool = True) -> Task:
        """A new user task as after fork+exec: an mm with a 132 KiB stack VMA and an empty heap."""
        t = Task(self, self.alloc_pid(), name[:15], uid)
        t.autoreap = reap
        mm = self.mm_alloc(t)
        t.mm = t.active_mm = mm
        self.tasks[t.pid] = t
        mm.start_brk = mm.brk = self.default_brk
        mm.start_data = mm.end_data = self.default_brk
        try:
            stack = Vma(mm, self.stack_top - 4096, self.stack_top, VM_STACK_FLAGS)
            stack.vm_pgoff = stack.vm_start >> 12
            stack.vm_page_prot = vm_get_page_prot(stack.vm_flags)
            self.overcommit.security_vm_enough_memory_mm(mm, 1, t)
            self.mmap.vma_link(mm, stack)
            self.mmap.vm_stat_account(mm, stack.vm_flags, 1)
            stack.name = "[stack]"
            self.mmap.expand_downwards(t, stack, self.stack_top - 4096 - (128 << 10))
            mm.start_stack = self.stack_top - 4096
        except Errno:
            self.tasks.pop(t.pid)
            raise
        return t

    def do_fork(self, parent: Task, name: str | None) -> Task:
        child = Task(self, self.alloc_pid(), name or parent.comm, parent.uid)
        child.autoreap = True
        child.cpu = parent.cpu
        child.rlimits = dict(parent.rlimits)
        child.oom_score_adj = parent.oom_score_adj
        mm = self.dup_mm(parent, child)
        child.mm = child.active_mm = mm
        child.parent = parent
        parent.children.append(child)
        self.tasks[child.pid] = child
        return child

    def dup_mm(self, parent: Task, child: Task) -> MmStruct:
        old = parent.mm
        mm = self.mm_alloc(child)
        for f in ("start_brk", "brk", "start_stack", "start_data", "end_data", "start_code",
                  "end_code", "mmap_base", "total_vm", "data_vm", "exec_vm", "stack_vm"):
            setattr(mm, f, getattr(old, f))
        mm.def_flags = old.def_flags & 0x40000000  # VM_INIT_DEF_MASK = VM_NOHUGEPAGE
        try:
            for v in old.vmas:
                if v.vm_flags & 0x20000:  # VM_DONTCOPY
                    self.mmap.vm_stat_account(mm, v.vm_flags, -v.vma_pages())
                    continue
                if v.vm_flags & VM_ACCOUNT:
                    self.overcommit.security_vm_enough_memory_mm(old, v.vma_pages(), parent)
                n = Vma(mm, v.vm_start, v.vm_end, v.vm_flags & ~(0x2000 | 0x80000), v.vm_pgoff, v.vm_file)
                n.vm_page_prot = v.vm_page_prot
                n.name = v.name
                n.shmem = v.shmem
                if n.shmem is not None:
                    n.shmem.get()
                if v.vm_flags & VM_WIPEONFORK:
                    pass
                else:
                    self.rmap.anon_vma_fork(n, v)
                self.mmap.vma_link(mm, n)
                if not v.vm_flags & VM_WIPEONFORK:
                    if self.memory.copy_page_range(mm, old, v, n):
                        raise ENOMEM("fork: page-table allocation failed")
        except ENOMEM:
            self.mmput(mm)
            raise
        mm.hiwater_rss = mm.get_mm_rss()
        mm.hiwater_vm = mm.total_vm
        self.flush_tlb_mm_range(old, 0, 1 << 64, False)
        return mm

    def do_exit(self, task: Task, code: int = 0) -> None:
        """do_exit(): exit_mm, the final context switch, and reaping unless reap=False."""
        self.exit_mm(task)
        task.state = "Z"
        task.exit_code = code
        cpu = self.sched.cpus[task.cpu]
        if cpu.curr is task:
            self.sched.switch_to_idle(cpu)
        if getattr(task, "autoreap", True):
            self.reap(task)

    def exit_mm(self, task) -> None:
        mm = task.mm
        if mm is None:
            return
        self.vmscan.lru_add_drain()
        self.sync_mm_rss(mm)
        self.mmgrab(mm, "exit_mm")
        task.mm = None
        cpu = self.sched.cpus[task.cpu]
        if cpu.curr is task:
            self.sched.enter_lazy_tlb(cpu)
        else:
            task.active_mm = None
            self.mmdrop(mm, "exit_mm")
        self.mmput(mm)

    def reap(self, task) -> None:
        if task.state != "Z":
            raise ESRCH(f"reap: task {task.pid} is not a zombie")
        task.state = "X"
        self.tasks.pop(task.pid, None)
        if getattr(task, "oom_mm", None) is not None:  # free_signal_struct: mmdrop_async
            self.pending_mmdrops.append(task.oom_mm)
            task.oom_mm = None
        parent = getattr(task, "parent", None)
        if parent is not None and task in parent.children:
            parent.children.remove(task)
            parent.cmin_flt += task.min_flt + task.cmin_flt  # wait_task_zombie()
            parent.cmaj_flt += task.maj_flt + task.cmaj_flt

    def kill_task(self, task, signo: int) -> None:
        """SIGKILL delivered: a running task exits (its memory is freed now); one in
        uninterruptible sleep keeps the signal pending until it is woken."""
        task.signals.append((signo, 0, None))
        if task.state == "R":
            prev = self._cur_cpu
            self.do_exit(task, 128 + signo)
            self._cur_cpu = prev
        elif task.state == "D":
            task.pending_kill = True

    def wake_up_process(self, task) -> None:
        """End a TASK_UNINTERRUPTIBLE sleep; a pending SIGKILL then kills the task."""
        if task.state != "D":
            return
        if task.is_kthread:  # runs again at the next k.run()
            task.due = self.now_ms if task.due is None else task.due
            return
        task.state = "R"
        if getattr(task, "pending_kill", False):
            task.pending_kill = False
            self.kill_task(task, 9)

