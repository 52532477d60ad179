"""madvise(2) (mm/madvise.c)."""
from __future__ import annotations

from ..errors import EACCES, EAGAIN, EINVAL, ENOMEM
from ..uapi import (MADV_COLD, MADV_DODUMP, MADV_DOFORK, MADV_DONTDUMP, MADV_DONTFORK,
                    MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE, MADV_HWPOISON, MADV_KEEPONFORK,
                    MADV_MERGEABLE, MADV_NOHUGEPAGE, MADV_NORMAL, MADV_PAGEOUT, MADV_RANDOM,
                    MADV_REMOVE, MADV_SEQUENTIAL, MADV_SOFT_OFFLINE, MADV_UNMERGEABLE,
                    MADV_WILLNEED, MADV_WIPEONFORK)
from .mm_types import (VM_DONTCOPY, VM_DONTDUMP, VM_DONTEXPAND, VM_HUGEPAGE, VM_HUGETLB, VM_IO,
                       VM_LOCKED, VM_MAYSHARE, VM_MERGEABLE, VM_MIXEDMAP, VM_NOHUGEPAGE, VM_PFNMAP,
                       VM_RAND_READ, VM_SEQ_READ, VM_SHARED, VM_SPECIAL, VM_WIPEONFORK, VM_WRITE, Vma)
from .mmu_notifier import MMU_NOTIFY_CLEAR, MmuNotifierRange
from .page import PG_dirty, PG_referenced
from .pgtable import _PAGE_ACCESSED, pte_mkclean, pte_mkold

_VALID = {MADV_DOFORK, MADV_DONTFORK, MADV_NORMAL, MADV_SEQUENTIAL, MADV_RANDOM, MADV_REMOVE,
          MADV_WILLNEED, MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_PAGEOUT, MADV_MERGEABLE,
          MADV_UNMERGEABLE, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_DONTDUMP, MADV_DODUMP,
          MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_HWPOISON, MADV_SOFT_OFFLINE}
# memory-failure injection needs the hwpoison model (a later subsystem)
_LATER = {MADV_HWPOISON, MADV_SOFT_OFFLINE}


class Madvise:
    def __init__(self, k):
        self.k = k

    def do_madvise(self, task, start: int, len_in: int, behavior: int) -> None:
        k = self.k
        mm = task.mm
        if behavior not in _VALID:
            raise EINVAL(f"madvise: unknown advice {behavior}")
        if behavior in _LATER:
            raise EINVAL(f"madvise: advice {behavior} needs a subsystem linmm does not model yet")
        if start & 0xFFF:
            raise EINVAL("madvise: unaligned start")
        length = (len_in + 0xFFF) & ~0xFFF
        if len_in and not length:
            raise EINVAL("madvise: length rounds to 0")
        end = start + length
        if end < start or end > 1 << 64:
            raise EINVAL("madvise: range wraps")
        if end == start:
            return
        unmapped_error = None
        vma = k.mmap.find_vma(mm, start)
        while True:
            if vma is None:
                raise ENOMEM("madvise: unmapped range")
            if start < vma.vm_start:
                unmapped_error = ENOMEM
                start = vma.vm_start
                if start >= end:
                    raise ENOMEM("madvise: unmapped range")
            tmp = min(vma.vm_end, end)
            vma = self.madvise_vma(task, vma, start, tmp, behavior)
            start = max(tmp, vma.vm_end)
            if start >= end:
                break
            vma = k.mmap.find_vma(mm, start)
        if unmapped_error:
            raise unmapped_error("madvise: range has unmapped parts")

    def madvise_vma(self, task, vma: Vma, start: int, end: int, behavior: int) -> Vma:
        k = self.k
        if behavior == MADV_WILLNEED:
            k.vmscan.lru_add_drain()
            return vma
        if behavior in (MADV_COLD, MADV_PAGEOUT):
            if vma.vm_flags & (VM_LOCKED | VM_HUGETLB | VM_PFNMAP):
                raise EINVAL("madvise: locked, hugetlb or pfnmap mapping")
            self.madvise_cold_or_pageout(vma, start, end, behavior == MADV_PAGEOUT)
            return vma
        if behavior == MADV_REMOVE:
            return self.madvise_remove(vma, start, end)
        if behavior in (MADV_DONTNEED, MADV_FREE):
            if vma.vm_flags & (VM_LOCKED | VM_HUGETLB | VM_PFNMAP):
                raise EINVAL("madvise: locked, hugetlb or pfnmap mapping")
            if behavior == MADV_DONTNEED:
                k.memory.zap_page_range(vma, start, end - start)
            else:
                self.madvise_free_single_vma(vma, start, end)
            return vma
        return self.madvise_behavior(vma, start, end, behavior)

    def madvise_behavior(self, vma: Vma, start: int, end: int, behavior: int) -> Vma:
        k = self.k
        mm = vma.vm_mm
        f = vma.vm_flags
        if behavior == MADV_NORMAL:
            f &= ~(VM_RAND_READ | VM_SEQ_READ)
        elif behavior == MADV_SEQUENTIAL:
            f = (f & ~VM_RAND_READ) | VM_SEQ_READ
        elif behavior == MADV_RANDOM:
            f = (f & ~VM_SEQ_READ) | VM_RAND_READ
        elif behavior == MADV_DONTFORK:
            f |= VM_DONTCOPY
        elif behavior == MADV_DOFORK:
            if vma.vm_flags & VM_IO:
                raise EINVAL("madvise: MADV_DOFORK on VM_IO")
            f &= ~VM_DONTCOPY
        elif behavior == MADV_WIPEONFORK:
            if vma.vm_file is not None or vma.shmem is not None or vma.vm_flags & VM_SHARED:
                raise EINVAL("madvise: MADV_WIPEONFORK on a shared or file mapping")
            f |= VM_WIPEONFORK
        elif behavior == MADV_KEEPONFORK:
            f &= ~VM_WIPEONFORK
        elif behavior == MADV_DONTDUMP:
            f |= VM_DONTDUMP
        elif behavior == MADV_DODUMP:
            if not vma.vm_flags & VM_HUGETLB and f & VM_SPECIAL:
                raise EINVAL("madvise: MADV_DODUMP on a special mapping")
            f &= ~VM_DONTDUMP
        elif behavior == MADV_HUGEPAGE:
            f = (f & ~VM_NOHUGEPAGE) | VM_HUGEPAGE
        elif behavior == MADV_NOHUGEPAGE:
            f = (f & ~VM_HUGEPAGE) | VM_NOHUGEPAGE
        elif behavior == MADV_MERGEABLE:  # ksm_madvise(); ksmd itself is not modelled yet
            if not f & (VM_MERGEABLE | VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_DONTEXPAND
                        | VM_HUGETLB | VM_MIXEDMAP):
                f |= VM_MERGEABLE
        elif behavior == MADV_UNMERGEABLE:
            f &= ~VM_MERGEABLE
        if f == vma.vm_flags:
            return vma
        try:
            if start != vma.vm_start:
                if mm.map_count >= k.mmap.max_map_count:
                    raise ENOMEM
                k.mmap.split_vma(mm, vma, start, new_below=True)
            if end != vma.vm_end:
                if mm.map_count >= k.mmap.max_map_count:
                    raise ENOMEM
                k.mmap.split_vma(mm, vma, end, new_below=False)
        except ENOMEM:
            raise EAGAIN("madvise: cannot split the mapping (max_map_count)") from None
        vma.vm_flags = f
        return k.mmap.try_merge_around(mm, vma)

    def madvise_cold_or_pageout(self, vma: Vma, start: int, end: int, pageout: bool) -> None:
        """MADV_COLD deactivates exclusively mapped pages; MADV_PAGEOUT reclaims them,
        which for anonymous pages without swap ends in activate_locked (PGACTIVATE)."""
        k = self.k
        mm = vma.vm_mm
        memmap = k.memmap
        k.vmscan.lru_add_drain()
        isolated = []

        def pte_entry(t, idx, addr, pte):
            pfn = k.memory.vm_normal_page(vma, addr, pte)
            if pfn is None or memmap.page_mapcount(pfn) != 1:
                return
            if pte & _PAGE_ACCESSED:
                k.pgt.set_entry(t, idx, pte_mkold(pte), "set_pte_at", addr)
                k.flush_tlb_mm_range(mm, addr, addr + 4096, False)
            memmap.clear(pfn, PG_referenced)
            if pageout:
                isolated.append(pfn)
            else:
                k.vmscan.deactivate_page(pfn)
        k.memory.walk_present_ptes(vma, start, end, pte_entry)
        if isolated:
            k.vmscan.reclaim_pages(isolated)

    def madvise_remove(self, vma: Vma, start: int, end: int) -> Vma:
        """MADV_REMOVE: punch a hole in shared memory (shmem_fallocate PUNCH_HOLE)."""
        k = self.k
        if vma.vm_flags & VM_LOCKED:
            raise EINVAL("madvise: MADV_REMOVE on a locked mapping")
        if vma.shmem is None:
            raise EINVAL("madvise: MADV_REMOVE needs a shared file mapping")
        if (vma.vm_flags & (VM_SHARED | VM_WRITE)) != (VM_SHARED | VM_WRITE):
            raise EACCES("madvise: MADV_REMOVE needs a shared writable mapping")
        first = vma.linear_page_index(start)
        last = vma.linear_page_index(end)
        for other in list(k.mms.values()):  # unmap_mapping_range over every mapping of the object
            for v in other.vmas:
                if v.shmem is not vma.shmem:
                    continue
                s = max(v.vm_start, v.vm_start + ((first - v.vm_pgoff) << 12))
                e = min(v.vm_end, v.vm_start + ((last - v.vm_pgoff) << 12))
                if s < e:
                    k.memory.zap_page_range(v, s, e - s)
        for index in range(first, last):
            if index in vma.shmem.pages:
                k.shmem.delete_from_page_cache(vma.shmem, index)
        return vma

    def madvise_free_single_vma(self, vma: Vma, start: int, end: int) -> None:
        """MADV_FREE: clean, old PTEs; exclusively mapped anon pages become lazyfree."""
        k = self.k
        if not vma.is_anonymous():
            raise EINVAL("madvise: MADV_FREE on a non-anonymous mapping")
        mm = vma.vm_mm
        start, end = max(start, vma.vm_start), min(end, vma.vm_end)
        if start >= end:
            return
        rng = MmuNotifierRange(MMU_NOTIFY_CLEAR, 0, vma, mm, start, end)
        k.vmscan.lru_add_drain()
        mm.update_hiwater_rss()
        k.mmu_notifiers.invalidate_range_start(rng)
        memmap = k.memmap

        def pte_entry(t, idx, addr, pte):
            pfn = k.memory.vm_normal_page(vma, addr, pte)
            if pfn is None or memmap.page_mapcount(pfn) != 1:
                return
            memmap.clear(pfn, PG_dirty)
            new = pte_mkclean(pte_mkold(pte))
            if new != pte:
                k.pgt.set_entry(t, idx, new, "set_pte_at", addr)
                k.flush_tlb_mm_range(mm, addr, addr + 4096, False)
            k.vmscan.mark_page_lazyfree(pfn)
        k.memory.walk_present_ptes(vma, start, end, pte_entry)
        k.mmu_notifiers.invalidate_range_end(rng)
