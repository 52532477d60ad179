"""The OOM killer and the OOM reaper (mm/oom_kill.c, v5.7).

The killer picks the task with the highest badness and sends it SIGKILL.  A
running victim exits at once in the model; one asleep in TASK_UNINTERRUPTIBLE
(``t.sleep_uninterruptible()``) keeps its memory until woken, and the
oom_reaper kthread unmaps its private memory meanwhile: each attempt sends a
non-blocking UNMAP notification per VMA, and a subscriber that cannot take
its lock makes the attempt fail; after MAX_OOM_REAP_RETRIES attempts HZ/10
apart the reaper gives up and hides the mm from the killer (MMF_OOM_SKIP).
"""
from __future__ import annotations

from .mm_types import (MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS, MMF_OOM_REAP_QUEUED,
                       MMF_OOM_SKIP, MMF_OOM_VICTIM, MMF_UNSTABLE, VM_HUGETLB, VM_LOCKED, VM_PFNMAP,
                       VM_SHARED)
from .mmu_notifier import MMU_NOTIFY_UNMAP, MmuNotifierRange

MAX_OOM_REAP_RETRIES = 10
OOM_REAP_SLEEP_MS = 100  # schedule_timeout_idle(HZ/10)


class OomKiller:
    def __init__(self, k):
        self.k = k
        self.oom_reaper_list: list = []  # victims queued by wake_oom_reaper()
        self.reaping = None              # the victim oom_reap_task() works on
        self.attempts = 0

    def oom_badness(self, task) -> int | None:
        mm = task.mm
        if mm is None or task.is_kthread or task.oom_score_adj == -1000 or mm.flags >> MMF_OOM_SKIP & 1:
            return None
        points = mm.get_mm_rss() + mm.rss_stat[MM_SWAPENTS] + mm.pgtables_bytes // 4096
        return points + task.oom_score_adj * self.k.totalram_pages() // 1000

    def out_of_memory(self, gfp: int, order: int) -> bool:
        """Kill one task; True if a victim was chosen or one is still dying."""
        k = self.k
        cur = k.current_task()
        if getattr(cur, "oom_victim", False) or getattr(cur, "pending_kill", False):
            return True  # current is already dying: let it use the reserves
        best, best_pts = None, -1
        for t in k.user_tasks():
            if t.state not in ("R", "D"):
                continue
            if getattr(t, "oom_victim", False) and t.oom_mm is not None:  # oom_evaluate_task()
                if t.oom_mm.flags >> MMF_OOM_SKIP & 1:
                    continue
                return self.wait_for_oom_victim()  # abort: a victim is still going away
            pts = self.oom_badness(t)
            if pts is not None and pts > best_pts:
                best, best_pts = t, pts
        if best is None:
            k.printk("Out of memory and no killable processes...")
            return False
        self.oom_kill_process(best)
        return True

    def oom_kill_process(self, victim) -> None:
        k = self.k
        mm = victim.mm
        k.vm_events["oom_kill"] += 1
        k.printk(f"Out of memory: Killed process {victim.pid} ({victim.comm}) "
                 f"total-vm:{mm.total_vm * 4}kB, anon-rss:{mm.rss_stat[MM_ANONPAGES] * 4}kB, "
                 f"file-rss:{mm.rss_stat[MM_FILEPAGES] * 4}kB, "
                 f"shmem-rss:{mm.rss_stat[MM_SHMEMPAGES] * 4}kB, UID:{victim.uid} "
                 f"pgtables:{mm.pgtables_bytes // 1024}kB oom_score_adj:{victim.oom_score_adj}")
        victim.oom_victim = True
        if getattr(victim, "oom_mm", None) is None:  # mark_oom_victim: signal->oom_mm
            victim.oom_mm = mm
            k.mmgrab(mm, "oom_mm")
            mm.flags |= 1 << MMF_OOM_VICTIM
        if victim is k.current_task():
            victim.pending_kill = True  # SIGKILL is handled on return to user space
        else:
            k.kill_task(victim, 9)
        if self.can_oom_reap(victim, mm):
            self.wake_oom_reaper(victim, mm)

    def can_oom_reap(self, victim, mm) -> bool:
        """No other process outside the victim's thread group shares the mm."""
        return not any(t.mm is mm and t.tgid != victim.tgid and t.state in ("R", "D")
                       for t in self.k.user_tasks())

    # ------------------------------------------------------------ the reaper
    def wake_oom_reaper(self, tsk, mm) -> None:
        if mm.flags >> MMF_OOM_REAP_QUEUED & 1:
            return
        mm.flags |= 1 << MMF_OOM_REAP_QUEUED
        self.oom_reaper_list.append((tsk, mm))
        self.k.sched.wake("oom_reaper")

    def oom_reaper_step(self, now_ms: int) -> int | None:
        """One scheduling of the oom_reaper kthread: ms until it runs again, None to sleep.

        oom_reap_task(): ``while (attempts++ < MAX_OOM_REAP_RETRIES &&
        !oom_reap_task_mm()) schedule_timeout_idle(HZ/10);`` so a mm that never
        reaps gets 10 attempts and the message comes one sleep after the last."""
        k = self.k
        if self.reaping is None:
            if not self.oom_reaper_list:
                return None
            self.reaping, self.attempts = self.oom_reaper_list.pop(0), 0
        tsk, mm = self.reaping
        self.attempts += 1
        if self.attempts <= MAX_OOM_REAP_RETRIES and not self.oom_reap_task_mm(tsk, mm):
            return OOM_REAP_SLEEP_MS
        if self.attempts > MAX_OOM_REAP_RETRIES and not mm.flags >> MMF_OOM_SKIP & 1:
            k.printk(f"oom_reaper: unable to reap pid:{tsk.pid} ({tsk.comm})")
        mm.flags |= 1 << MMF_OOM_SKIP  # hide the mm from the killer: reaped or hopeless
        self.reaping = None
        return 0 if self.oom_reaper_list else None

    def oom_reap_task_mm(self, tsk, mm) -> bool:
        """mmap_sem is not modelled, so the read trylock always succeeds."""
        if mm.freed or mm.flags >> MMF_OOM_SKIP & 1:
            return True
        if not self.__oom_reap_task_mm(mm):
            return False
        self.k.printk(f"oom_reaper: reaped process {tsk.pid} ({tsk.comm}), now "
                      f"anon-rss:{mm.rss_stat[MM_ANONPAGES] * 4}kB, "
                      f"file-rss:{mm.rss_stat[MM_FILEPAGES] * 4}kB, "
                      f"shmem-rss:{mm.rss_stat[MM_SHMEMPAGES] * 4}kB")
        return True

    def __oom_reap_task_mm(self, mm) -> bool:
        """Unmap every private VMA (not locked, hugetlb or pfnmap) with a non-blocking
        UNMAP notification; a VMA whose notification fails is skipped: False."""
        from .mmu_gather import MmuGather
        k = self.k
        mm.flags |= 1 << MMF_UNSTABLE
        ret = True
        k.sync_mm_rss(mm)
        for vma in list(mm.vmas):
            if vma.vm_flags & (VM_LOCKED | VM_HUGETLB | VM_PFNMAP):
                continue
            if not vma.is_anonymous() and vma.vm_flags & VM_SHARED:
                continue
            rng = MmuNotifierRange(MMU_NOTIFY_UNMAP, 0, vma, mm, vma.vm_start, vma.vm_end)
            tlb = MmuGather(k, mm, rng.start, rng.end)
            if k.mmu_notifiers.invalidate_range_start(rng, blockable=False):
                tlb.tlb_finish_mmu()
                ret = False
                continue
            k.memory.unmap_page_range(tlb, vma, rng.start, rng.end)
            k.mmu_notifiers.invalidate_range_end(rng)
            tlb.tlb_finish_mmu()
        return ret

    def wait_for_oom_victim(self) -> bool:
        """The allocator loops while a victim goes away (oom_evaluate_task's abort).
        In the model no other CPU runs meanwhile, so the waiting allocator lets the
        reaper take its next step (the clock moves to it); True while that can help."""
        k = self.k
        t = next((kt for kt in k.sched.kthreads.values() if kt.comm == "oom_reaper"), None)
        if t is None or t.due is None:
            return False
        k.now_ms = max(k.now_ms, t.due)
        nxt = t.fn(k.now_ms)
        t.due = None if nxt is None else k.now_ms + nxt
        return True


setattr(OomKiller, "__oom_reap_task_mm", OomKiller._OomKiller__oom_reap_task_mm)
