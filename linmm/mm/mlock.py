"""mlock, munlock, mlockall (mm/mlock.c) and the unevictable-LRU page rules.

unevictable-lru.rst: mlocked pages are PG_mlocked (NR_MLOCK) and are culled to
the unevictable list when they reach an LRU; munlocked pages are rescued.
"""
from __future__ import annotations

from ..errors import EAGAIN, EFAULT, EINVAL, ENOMEM, EPERM
from ..uapi import MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT, MLOCK_ONFAULT
from .mm_types import (VM_EXEC, VM_HUGETLB, VM_IO, VM_LOCKED, VM_LOCKED_CLEAR_MASK, VM_LOCKONFAULT,
                       VM_PFNMAP, VM_READ, VM_SHARED, VM_SPECIAL, VM_WRITE, Vma)
from .page import PG_lru, PG_mlocked, PG_unevictable
from .pgtable import PMD_SHIFT, pte_present, pte_write



class Mlock:
    def __init__(self, k):
        self.k = k

    # ------------------------------------------------------------ limits
    @staticmethod
    def can_do_mlock(task) -> bool:
        return task.rlimit("RLIMIT_MEMLOCK") != 0 or task.cap_ipc_lock

    def mlock_future_check(self, task, mm, flags: int, length: int) -> None:
        """mmap/brk/mremap of a VM_LOCKED mapping: EAGAIN over RLIMIT_MEMLOCK."""
        if flags & VM_LOCKED:
            locked = (length >> 12) + mm.locked_vm
            if locked > task.rlimit("RLIMIT_MEMLOCK") >> 12 and not task.cap_ipc_lock:
                raise EAGAIN("mlock: RLIMIT_MEMLOCK exceeded")

    # ------------------------------------------------------------ page level
    def mlock_new_page(self, pfn: int) -> None:
        """lru_cache_add_active_or_unevictable() on a VM_LOCKED VMA (op 2)."""
        self._test_set_mlocked(pfn)

    def isolate_lru_page(self, pfn: int) -> bool:
        """Take a page off its LRU list (holding a reference); False if it is not on one."""
        k = self.k
        mm = k.memmap
        if not mm.test(pfn, PG_lru):
            return False
        k.vmscan.del_page_from_lru_list(pfn, k.vmscan.page_lru(pfn))
        mm.clear(pfn, PG_lru)
        mm.refcount[pfn] += 1
        return True

    def putback_lru_page(self, pfn: int) -> None:
        """lru_cache_add() + put_page(): evictability is decided when it is added."""
        self.k.vmscan.lru_cache_add((pfn,))
        self.k.put_page(pfn)

    def _test_set_mlocked(self, pfn: int) -> bool:
        """TestSetPageMlocked + NR_MLOCK/UNEVICTABLE_PGMLOCKED; False if already set."""
        k = self.k
        if k.memmap.test(pfn, PG_mlocked):
            return False
        k.memmap.set(pfn, PG_mlocked)
        k.page_zone_of(pfn).vm_stat["nr_mlock"] += 1
        k.vm_events["unevictable_pgs_mlocked"] += 1
        return True

    def _test_clear_mlocked(self, pfn: int) -> bool:
        """TestClearPageMlocked + NR_MLOCK; False if it was not set."""
        k = self.k
        if not k.memmap.test(pfn, PG_mlocked):
            return False
        k.memmap.clear(pfn, PG_mlocked)
        k.page_zone_of(pfn).vm_stat["nr_mlock"] -= 1
        return True

    def mlock_vma_page(self, pfn: int) -> None:
        """op 3: newly mlocked pages on an LRU are moved (culled) via putback."""
        if self._test_set_mlocked(pfn) and self.isolate_lru_page(pfn):
            self.putback_lru_page(pfn)

    def munlock_vma_page(self, pfn: int) -> None:
        """op 4 (single page)."""
        k = self.k
        mm = k.memmap
        if not self._test_clear_mlocked(pfn):
            return
        if self.isolate_lru_page(pfn):
            if mm.page_mapcount(pfn) > 1:
                self.try_to_munlock(pfn)
            if not mm.test(pfn, PG_mlocked):
                k.vm_events["unevictable_pgs_munlocked"] += 1
            self.putback_lru_page(pfn)
        else:
            k.vm_events["unevictable_pgs_stranded" if mm.test(pfn, PG_unevictable)
                        else "unevictable_pgs_munlocked"] += 1

    def try_to_munlock(self, pfn: int) -> None:
        """The first VM_LOCKED VMA still mapping the page mlocks it again."""
        k = self.k
        for vma, addr in k.rmap.rmap_walk(pfn):
            if not vma.vm_flags & VM_LOCKED:
                continue
            t = vma.vm_mm.pte_tables.get(addr >> PMD_SHIFT)
            if t is not None and (int(t.entries[(addr >> 12) & 511]) >> 12) & ((1 << 40) - 1) == pfn:
                self._test_set_mlocked(pfn)  # the page is isolated: no LRU move here
                return

    def clear_page_mlock(self, pfn: int) -> None:
        """op 5: the last mapping of a still-mlocked page went away."""
        k = self.k
        mm = k.memmap
        if not self._test_clear_mlocked(pfn):
            return
        k.vm_events["unevictable_pgs_cleared"] += 1
        if self.isolate_lru_page(pfn):
            self.putback_lru_page(pfn)
        elif mm.test(pfn, PG_unevictable):
            k.vm_events["unevictable_pgs_stranded"] += 1

    def _present_pages(self, vma: Vma, start: int, end: int):
        k = self.k
        mm = vma.vm_mm
        a = start
        while a < end:
            t = mm.pte_tables.get(a >> PMD_SHIFT)
            if t is None:
                a = ((a >> PMD_SHIFT) + 1) << PMD_SHIFT
                continue
            pte = int(t.entries[(a >> 12) & 511])
            if pte_present(pte):
                pfn = k.memory.vm_normal_page(vma, a, pte)
                if pfn is not None:
                    yield a, pfn, pte
            a += 4096

    def munlock_vma_pages_range(self, vma: Vma, start: int, end: int) -> None:
        """Clear VM_LOCKED, then munlock every present page (the batched __munlock_pagevec:
        pages mapped once and now evictable go straight back to their LRU)."""
        k = self.k
        mm = k.memmap
        vma.vm_flags &= VM_LOCKED_CLEAR_MASK
        k.vmscan.lru_add_drain()
        for _, pfn, _ in list(self._present_pages(vma, start, end)):
            if not mm.test(pfn, PG_mlocked):
                continue
            mm.clear(pfn, PG_mlocked)
            k.page_zone_of(pfn).vm_stat["nr_mlock"] -= 1
            if not self.isolate_lru_page(pfn):
                k.vm_events["unevictable_pgs_stranded" if mm.test(pfn, PG_unevictable)
                            else "unevictable_pgs_munlocked"] += 1
                continue
            if mm.page_mapcount(pfn) <= 1:  # __putback_lru_fast
                if mm.test(pfn, PG_unevictable):
                    mm.clear(pfn, PG_unevictable)
                    k.vm_events["unevictable_pgs_rescued"] += 1
                k.vm_events["unevictable_pgs_munlocked"] += 1
                mm.set(pfn, PG_lru)
                k.vmscan.add_page_to_lru_list(pfn, k.vmscan.page_lru(pfn))
                k.put_page(pfn)
            else:
                self.try_to_munlock(pfn)
                if not mm.test(pfn, PG_mlocked):
                    k.vm_events["unevictable_pgs_munlocked"] += 1
                self.putback_lru_page(pfn)

    def munlock_vma_pages_all(self, vma: Vma) -> None:
        self.munlock_vma_pages_range(vma, vma.vm_start, vma.vm_end)

    # ------------------------------------------------------------ population
    def populate_vma_page_range(self, task, vma: Vma, start: int, end: int) -> None:
        """__get_user_pages(FOLL_TOUCH|FOLL_POPULATE|FOLL_MLOCK[|FOLL_WRITE])."""
        from .memory import FAULT_FLAG_WRITE, VM_FAULT_OOM
        k = self.k
        if not vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC):
            raise EFAULT("populate: PROT_NONE mapping (no FOLL_FORCE)")
        write = (vma.vm_flags & (VM_WRITE | VM_SHARED)) == VM_WRITE
        populate = not vma.vm_flags & VM_LOCKONFAULT
        mlock = bool(vma.vm_flags & VM_LOCKED)
        mm = vma.vm_mm
        a = start
        while a < end:
            t = mm.pte_tables.get(a >> PMD_SHIFT)
            pte = int(t.entries[(a >> 12) & 511]) if t is not None else 0
            need_fault = not pte_present(pte) or (write and not pte_write(pte))
            if need_fault:
                if not populate:
                    a += 4096
                    continue
                ret = k.memory.handle_mm_fault(vma, a, FAULT_FLAG_WRITE if write else 0)
                if ret & VM_FAULT_OOM:
                    raise ENOMEM("populate: out of memory")
                if hasattr(task, "min_flt"):
                    task.min_flt += 1
                t = mm.pte_tables.get(a >> PMD_SHIFT)
                pte = int(t.entries[(a >> 12) & 511])
            if mlock and pte_present(pte):
                pfn = k.memory.vm_normal_page(vma, a, pte)
                if pfn is not None and int(k.memmap.mapping[pfn]):
                    k.vmscan.lru_add_drain()
                    self.mlock_vma_page(pfn)
            a += 4096

    def mm_populate(self, task, start: int, length: int, ignore_errors: bool = True) -> None:
        k = self.k
        end = start + length
        for vma in k.mmap.vmas_in(task.mm, start, end):
            if vma.vm_flags & (VM_IO | VM_PFNMAP):
                continue
            try:
                self.populate_vma_page_range(task, vma, max(start, vma.vm_start), min(end, vma.vm_end))
            except (ENOMEM, EFAULT):
                if not ignore_errors:
                    raise

    # ------------------------------------------------------------ VMA level
    def mlock_fixup(self, task, vma: Vma, start: int, end: int, newflags: int) -> Vma:
        k = self.k
        mm = vma.vm_mm
        old = vma.vm_flags
        if newflags == old or old & VM_SPECIAL or old & VM_HUGETLB:
            return vma
        if start != vma.vm_start:
            k.mmap.split_vma(mm, vma, start, new_below=True)
        if end != vma.vm_end:
            k.mmap.split_vma(mm, vma, end, new_below=False)
        nr = (end - start) >> 12
        if not newflags & VM_LOCKED:
            nr = -nr
        elif old & VM_LOCKED:
            nr = 0
        mm.locked_vm += nr
        if newflags & VM_LOCKED:
            vma.vm_flags = newflags
        else:
            self.munlock_vma_pages_range(vma, start, end)
            vma.vm_flags = newflags
        return k.mmap.try_merge_around(mm, vma)

    def apply_vma_lock_flags(self, task, start: int, length: int, flags: int) -> None:
        k = self.k
        end = start + length
        if end < start:
            raise EINVAL("mlock: range wraps")
        if end == start:
            return
        vma = k.mmap.find_vma(task.mm, start)
        if vma is None or vma.vm_start > start:
            raise ENOMEM("mlock: unmapped start")
        nstart = start
        while True:
            newflags = (vma.vm_flags & VM_LOCKED_CLEAR_MASK) | flags
            tmp = min(vma.vm_end, end)
            vma = self.mlock_fixup(task, vma, nstart, tmp, newflags)
            nstart = max(tmp, vma.vm_end) if vma.vm_end <= end else tmp
            if nstart >= end:
                return
            nxt = k.mmap.find_vma(task.mm, nstart)
            if nxt is None or nxt.vm_start != nstart:
                raise ENOMEM("mlock: hole in range")
            vma = nxt

    def do_mlock(self, task, start: int, length: int, flags: int) -> None:
        if not self.can_do_mlock(task):
            raise EPERM("mlock: RLIMIT_MEMLOCK is 0")
        length = (length + (start & 0xFFF) + 0xFFF) & ~0xFFF & ((1 << 64) - 1)
        start &= ~0xFFF
        mm = task.mm
        lock_limit = task.rlimit("RLIMIT_MEMLOCK") >> 12
        locked = (length >> 12) + mm.locked_vm
        if locked > lock_limit and not task.cap_ipc_lock:
            locked -= self.count_mm_mlocked_page_nr(mm, start, length)
        if locked > lock_limit and not task.cap_ipc_lock:
            raise ENOMEM("mlock: RLIMIT_MEMLOCK exceeded")
        self.apply_vma_lock_flags(task, start, length, flags)
        try:
            self.mm_populate(task, start, length, ignore_errors=False)
        except EFAULT:  # __mlock_posix_error_return
            raise ENOMEM("mlock: the range could not be faulted in (EFAULT)") from None
        except ENOMEM:
            raise EAGAIN("mlock: out of memory faulting the range in") from None

    def count_mm_mlocked_page_nr(self, mm, start: int, length: int) -> int:
        end = start + length
        return sum((min(v.vm_end, end) - max(v.vm_start, start)) >> 12
                   for v in self.k.mmap.vmas_in(mm, start, end) if v.vm_flags & VM_LOCKED)

    def sys_mlock2(self, task, start: int, length: int, flags: int) -> None:
        if flags & ~MLOCK_ONFAULT:
            raise EINVAL("mlock2: unknown flags")
        self.do_mlock(task, start, length, VM_LOCKED | (VM_LOCKONFAULT if flags & MLOCK_ONFAULT else 0))

    def sys_munlock(self, task, start: int, length: int) -> None:
        length = (length + (start & 0xFFF) + 0xFFF) & ~0xFFF & ((1 << 64) - 1)
        start &= ~0xFFF
        self.apply_vma_lock_flags(task, start, length, 0)

    def sys_mlockall(self, task, flags: int) -> None:
        if not flags or flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) or flags == MCL_ONFAULT:
            raise EINVAL("mlockall: bad flags")
        if not self.can_do_mlock(task):
            raise EPERM("mlockall: RLIMIT_MEMLOCK is 0")
        lock_limit = task.rlimit("RLIMIT_MEMLOCK") >> 12
        if flags & MCL_CURRENT and task.mm.total_vm > lock_limit and not task.cap_ipc_lock:
            raise ENOMEM("mlockall: total_vm over RLIMIT_MEMLOCK")
        self.apply_mlockall_flags(task, flags)
        if flags & MCL_CURRENT:
            self.mm_populate(task, 0, task.mm.task_size)

    def apply_mlockall_flags(self, task, flags: int) -> None:
        mm = task.mm
        mm.def_flags &= VM_LOCKED_CLEAR_MASK
        if flags & MCL_FUTURE:
            mm.def_flags |= VM_LOCKED | (VM_LOCKONFAULT if flags & MCL_ONFAULT else 0)
            if not flags & MCL_CURRENT:
                return
        to_add = 0
        if flags & MCL_CURRENT:
            to_add = VM_LOCKED | (VM_LOCKONFAULT if flags & MCL_ONFAULT else 0)
        for vma in list(mm.vmas):
            if vma not in mm.vmas:
                continue
            try:
                self.mlock_fixup(task, vma, vma.vm_start, vma.vm_end,
                                 (vma.vm_flags & VM_LOCKED_CLEAR_MASK) | to_add)
            except ENOMEM:
                pass

    def sys_munlockall(self, task) -> None:
        self.apply_mlockall_flags(task, 0)
