"""The OOM killer (mm/oom_kill.c): pick the task with the highest badness."""
from __future__ import annotations

from .mm_types import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS


class OomKiller:
    def __init__(self, k):
        self.k = k

    def oom_badness(self, task) -> int | None:
        mm = task.mm
        if mm is None or task.is_kthread or task.oom_score_adj == -1000:
            return None
        points = mm.get_mm_rss() + mm.rss_stat[MM_SWAPENTS] + mm.pgtables_bytes // 4096
        return points + task.oom_score_adj * self.k.totalram_pages() // 1000

    def out_of_memory(self, gfp: int, order: int) -> bool:
        """Kill one task; True if a victim was chosen."""
        k = self.k
        cur = k.current_task()
        if getattr(cur, "oom_victim", False) or getattr(cur, "pending_kill", False):
            return True  # current is already dying: let it use the reserves
        best, best_pts = None, -1
        for t in k.user_tasks():
            if t.state != "R":
                continue
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
        if victim is k.current_task():
            victim.pending_kill = True  # SIGKILL is handled on return to user space
        else:
            k.kill_task(victim, 9)
