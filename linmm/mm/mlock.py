"""The parts of mlock (mm/mlock.c) that mmap/fault/munmap need: VM_LOCKED
pages are PG_mlocked and live on the unevictable LRU (unevictable-lru.rst).
The mlock()/munlock()/mlockall() syscalls belong to the unevictable-lru work."""
from __future__ import annotations

from ..errors import EAGAIN, EPERM
from .mm_types import VM_LOCKED, Vma
from .page import PG_lru, PG_mlocked, PG_unevictable
from .pgtable import PMD_SHIFT, pte_present


class Mlock:
    def __init__(self, k):
        self.k = k

    def can_do_mlock(self, task) -> bool:
        return task.rlimit("RLIMIT_MEMLOCK") != 0 or task.cap_ipc_lock

    def mlock_future_check(self, task, mm, flags: int, length: int) -> None:
        if not self.can_do_mlock(task):
            raise EPERM("mlock: RLIMIT_MEMLOCK is 0")
        if flags & VM_LOCKED:
            locked = (length >> 12) + mm.locked_vm
            if locked > task.rlimit("RLIMIT_MEMLOCK") >> 12 and not task.cap_ipc_lock:
                raise EAGAIN("mlock: RLIMIT_MEMLOCK exceeded")

    def mlock_new_page(self, pfn: int) -> None:
        """mlock_vma_page() on a new page of a VM_LOCKED VMA."""
        k = self.k
        mm = k.memmap
        if not mm.test(pfn, PG_mlocked):
            mm.set(pfn, PG_mlocked)
            mm.set(pfn, PG_unevictable)
            k.page_zone_of(pfn).vm_stat["nr_mlock"] += 1
            k.vm_events["unevictable_pgs_mlocked"] += 1

    def munlock_vma_page(self, pfn: int) -> None:
        k = self.k
        mm = k.memmap
        if not mm.test(pfn, PG_mlocked):
            return
        mm.clear(pfn, PG_mlocked)
        k.page_zone_of(pfn).vm_stat["nr_mlock"] -= 1
        k.vm_events["unevictable_pgs_munlocked"] += 1
        if mm.test(pfn, PG_lru) and mm.test(pfn, PG_unevictable):
            vs = k.vmscan
            vs.del_page_from_lru_list(pfn, vs.page_lru(pfn))
            mm.clear(pfn, PG_unevictable)
            vs.add_page_to_lru_list(pfn, vs.page_lru(pfn))
            k.vm_events["unevictable_pgs_rescued"] += 1
        else:
            mm.clear(pfn, PG_unevictable)

    def munlock_vma_pages_all(self, vma: Vma) -> None:
        k = self.k
        vma.vm_flags &= ~VM_LOCKED
        mm = vma.vm_mm
        a = vma.vm_start
        while a < vma.vm_end:
            t = mm.pte_tables.get(a >> PMD_SHIFT)
            if t is not None:
                pte = int(t.entries[(a >> 12) & 511])
                if pte_present(pte):
                    pfn = k.memory.vm_normal_page(vma, a, pte)
                    if pfn is not None:
                        self.munlock_vma_page(pfn)
            a += 4096
