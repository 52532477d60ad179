"""Commit accounting (mm/util.c __vm_enough_memory, vm_commit_limit).

overcommit-accounting.rst: mode 0 refuses only a single request larger than
RAM + swap, mode 1 never refuses, mode 2 refuses anything beyond
swap + overcommit_ratio% (or overcommit_kbytes) of RAM.
"""
from __future__ import annotations

from ..errors import ENOMEM

OVERCOMMIT_GUESS, OVERCOMMIT_ALWAYS, OVERCOMMIT_NEVER = 0, 1, 2


class Overcommit:
    def __init__(self, k):
        self.k = k
        self.overcommit_memory = OVERCOMMIT_GUESS
        self.overcommit_ratio = 50
        self.overcommit_kbytes = 0
        self.admin_reserve_kbytes = 0
        self.user_reserve_kbytes = 0
        self.vm_committed_as = 0

    def init_reserves(self) -> None:
        """init_user_reserve / init_admin_reserve (subsys initcalls)."""
        free_kbytes = self.k.global_free_pages() * 4
        self.user_reserve_kbytes = min(free_kbytes // 32, 1 << 17)
        self.admin_reserve_kbytes = min(free_kbytes // 32, 1 << 13)

    def vm_commit_limit(self) -> int:
        k = self.k
        if self.overcommit_kbytes:
            allowed = self.overcommit_kbytes >> 2
        else:
            allowed = (k.totalram_pages() - k.hugetlb_total_pages()) * self.overcommit_ratio // 100
        return allowed + k.total_swap_pages()

    def vm_acct_memory(self, pages: int) -> None:
        self.vm_committed_as += pages

    def vm_unacct_memory(self, pages: int) -> None:
        self.vm_committed_as -= pages

    def vm_enough_memory(self, mm, pages: int, cap_sys_admin: bool) -> None:
        """__vm_enough_memory(): charge `pages` or raise ENOMEM (charge undone)."""
        k = self.k
        self.vm_acct_memory(pages)
        if self.overcommit_memory == OVERCOMMIT_ALWAYS:
            return
        if self.overcommit_memory == OVERCOMMIT_GUESS:
            if pages <= k.totalram_pages() + k.total_swap_pages():
                return
        else:
            allowed = self.vm_commit_limit()
            if not cap_sys_admin:
                allowed -= self.admin_reserve_kbytes >> 2
            if mm is not None:
                allowed -= min(mm.total_vm // 32, self.user_reserve_kbytes >> 2)
            if self.vm_committed_as < allowed:
                return
        self.vm_unacct_memory(pages)
        raise ENOMEM("__vm_enough_memory")

    def security_vm_enough_memory_mm(self, mm, pages: int, task=None) -> None:
        task = task if task is not None else self.k.current_task()
        cap = bool(getattr(task, "cap_sys_admin", True))
        self.vm_enough_memory(mm, pages, cap)
