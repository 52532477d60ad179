"""Page faults, COW, zap and fork copy (mm/memory.c)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import KernelBug
from . import gfp as G
from .mm_types import (MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, VM_HUGETLB, VM_LOCKED,
                       VM_MIXEDMAP, VM_PFNMAP, VM_SEQ_READ, VM_SHARED, VM_WRITE, Vma)
from .memory_model import Page
from .mmu_gather import MmuGather
from .mmu_notifier import (MMU_NOTIFY_CLEAR, MMU_NOTIFY_PROTECTION_PAGE, MMU_NOTIFY_UNMAP,
                           MmuNotifierRange)
from .page import PG_active, PG_dirty, PG_mlocked, PG_referenced, PG_swapbacked, PG_swapcache
from .pgtable import (PMD_SHIFT, _PAGE_DIRTY, _PAGE_RW,
                      _PAGE_SOFT_DIRTY, _PAGE_SPECIAL, pfn_pte, pte_dirty, pte_mkclean,
                      pte_mkdirty, pte_mkold, pte_mkwrite, pte_mkyoung, pte_none, pte_pfn,
                      pte_present, pte_special, pte_write, pte_wrprotect, pte_young)

if TYPE_CHECKING:
    from ..kernel import Kernel

VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_MAJOR, VM_FAULT_WRITE = 0x1, 0x2, 0x4, 0x8
VM_FAULT_HWPOISON, VM_FAULT_SIGSEGV, VM_FAULT_NOPAGE, VM_FAULT_LOCKED = 0x10, 0x40, 0x100, 0x200
VM_FAULT_RETRY, VM_FAULT_FALLBACK, VM_FAULT_DONE_COW = 0x400, 0x800, 0x1000
VM_FAULT_ERROR = VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_HWPOISON
FAULT_FLAG_WRITE, FAULT_FLAG_MKWRITE, FAULT_FLAG_ALLOW_RETRY = 0x01, 0x02, 0x04
FAULT_FLAG_KILLABLE, FAULT_FLAG_TRIED, FAULT_FLAG_USER, FAULT_FLAG_REMOTE = 0x10, 0x20, 0x40, 0x80
FAULT_FLAG_INSTRUCTION = 0x100

GFP_ANON = G.GFP_HIGHUSER_MOVABLE | G._GFP_ZERO


class Memory:
    def __init__(self, k: "Kernel"):
        self.k = k

    # ------------------------------------------------------------ helpers
    def vm_normal_page(self, vma: Vma, addr: int, pte: int) -> int | None:
        """The page a PTE maps, or None for special mappings (the zero page)."""
        if pte_special(pte):
            return None
        pfn = pte_pfn(pte)
        if vma.vm_flags & (VM_PFNMAP | VM_MIXEDMAP):
            return None
        return pfn

    def mm_counter(self, pfn: int) -> int:
        mm = self.k.memmap
        if int(mm.mapping[pfn]) & 1:
            return MM_ANONPAGES
        if mm.test(pfn, PG_swapbacked):
            return MM_SHMEMPAGES
        return MM_FILEPAGES

    def mk_anon_pte(self, pfn: int, vma: Vma) -> int:
        entry = pfn_pte(pfn, vma.vm_page_prot)
        if vma.vm_flags & VM_WRITE:
            entry = pte_mkwrite(pte_mkdirty(entry))
        return entry

    def lru_cache_add_active_or_unevictable(self, pfn: int, vma: Vma) -> None:
        k = self.k
        if not vma.vm_flags & VM_LOCKED:
            k.memmap.set(pfn, PG_active)
        else:
            k.mlock_new_page(pfn)
        k.vmscan.lru_cache_add((pfn,))

    # ------------------------------------------------------------ the fault
    def handle_mm_fault(self, vma: Vma, addr: int, flags: int) -> int:
        """handle_mm_fault(): count PGFAULT, walk/allocate tables, dispatch."""
        k = self.k
        k.vm_events["pgfault"] += 1
        k.check_sync_rss_stat()
        addr &= ~0xFFF
        mm = vma.vm_mm
        t = k.pgt.pte_alloc_path(mm, addr)
        if t is None:
            return VM_FAULT_OOM
        idx = (addr >> 12) & 511
        pte = int(t.entries[idx])
        write = bool(flags & FAULT_FLAG_WRITE)
        if pte_none(pte):
            if vma.is_anonymous():
                return self.do_anonymous_page(vma, addr, t, idx, write)
            return k.shmem.do_fault(vma, addr, t, idx, write, flags)
        if not pte_present(pte):
            raise KernelBug(f"non-present PTE {pte:#x} at {addr:#x}: swap entries are not modelled yet")
        ptl = t.ptl if k.pgt.split_pte else mm.page_table_lock
        if write and not pte_write(pte):
            return self.do_wp_page(vma, addr, t, idx, pte)
        k.pgt.spin_lock(ptl)
        entry = pte_mkyoung(pte)
        if write:
            entry = pte_mkdirty(entry)
        if entry != pte:
            k.pgt.set_entry(t, idx, entry, "ptep_set_access_flags", addr)
        k.pgt.spin_unlock(ptl)
        return 0

    def _ptl(self, mm, t):
        return t.ptl if self.k.pgt.split_pte else mm.page_table_lock

    def do_anonymous_page(self, vma: Vma, addr: int, t, idx: int, write: bool) -> int:
        k = self.k
        mm = vma.vm_mm
        if vma.vm_flags & VM_SHARED:
            return VM_FAULT_SIGBUS
        if not write:
            entry = pfn_pte(k.zero_pfn, vma.vm_page_prot) | _PAGE_SPECIAL
            ptl = self._ptl(mm, t)
            k.pgt.spin_lock(ptl)
            if pte_none(int(t.entries[idx])):
                k.pgt.set_entry(t, idx, entry, "set_pte_at", addr)
            k.pgt.spin_unlock(ptl)
            return 0
        k.rmap.anon_vma_prepare(vma)
        pfn = k.page_alloc.alloc_pages_nodemask(GFP_ANON, 0)
        if pfn is None:
            return VM_FAULT_OOM
        entry = self.mk_anon_pte(pfn, vma)
        ptl = self._ptl(mm, t)
        k.pgt.spin_lock(ptl)
        if not pte_none(int(t.entries[idx])):
            k.pgt.spin_unlock(ptl)
            k.page_alloc.free_pages(pfn, 0)
            return 0
        k.add_mm_counter_fast(mm, MM_ANONPAGES, 1)
        k.rmap.page_add_new_anon_rmap(pfn, vma, addr)
        self.lru_cache_add_active_or_unevictable(pfn, vma)
        k.pgt.set_entry(t, idx, entry, "set_pte_at", addr)
        k.pgt.spin_unlock(ptl)
        return 0

    def do_wp_page(self, vma: Vma, addr: int, t, idx: int, pte: int) -> int:
        k = self.k
        mm = vma.vm_mm
        pfn = self.vm_normal_page(vma, addr, pte)
        if pfn is not None and k.rmap.PageAnon(pfn):
            if k.memmap.page_mapcount(pfn) == 1 and not k.memmap.test(pfn, PG_swapcache):
                ptl = self._ptl(mm, t)
                k.pgt.spin_lock(ptl)
                entry = pte_mkwrite(pte_mkdirty(pte_mkyoung(pte)))
                k.pgt.set_entry(t, idx, entry, "ptep_set_access_flags", addr)
                k.pgt.spin_unlock(ptl)
                return VM_FAULT_WRITE
        elif pfn is not None and (vma.vm_flags & (VM_WRITE | VM_SHARED)) == (VM_WRITE | VM_SHARED):
            ptl = self._ptl(mm, t)
            k.pgt.spin_lock(ptl)
            entry = pte_mkwrite(pte_mkdirty(pte_mkyoung(pte)))
            k.pgt.set_entry(t, idx, entry, "ptep_set_access_flags", addr)
            k.pgt.spin_unlock(ptl)
            k.memmap.set(pfn, PG_dirty)
            return VM_FAULT_WRITE
        if pfn is not None:
            k.memmap.refcount[pfn] += 1  # get_page
        return self.wp_page_copy(vma, addr, t, idx, pte, pfn)

    def wp_page_copy(self, vma: Vma, addr: int, t, idx: int, pte: int, old: int | None) -> int:
        """COW: copy to a new page and re-point the PTE (mmu_notifier.rst case B)."""
        k = self.k
        mm = vma.vm_mm
        k.rmap.anon_vma_prepare(vma)
        new = k.page_alloc.alloc_pages_nodemask(GFP_ANON if old is None else G.GFP_HIGHUSER_MOVABLE, 0)
        if new is None:
            if old is not None:
                k.put_page(old)
            return VM_FAULT_OOM
        if old is not None:
            if k.highmem.enabled:  # copy_user_highpage(): both pages through kmap_atomic
                k.copy_user_highpage(Page(new, k.memmap), Page(old, k.memmap), addr, vma)
            else:
                k.frames.copy(new, old)
        rng = MmuNotifierRange(MMU_NOTIFY_CLEAR, 0, vma, mm, addr, addr + 4096)
        k.mmu_notifiers.invalidate_range_start(rng)
        ptl = self._ptl(mm, t)
        k.pgt.spin_lock(ptl)
        if int(t.entries[idx]) == pte:
            if old is not None:
                if not k.rmap.PageAnon(old):
                    k.add_mm_counter_fast(mm, self.mm_counter(old), -1)
                    k.add_mm_counter_fast(mm, MM_ANONPAGES, 1)
            else:
                k.add_mm_counter_fast(mm, MM_ANONPAGES, 1)
            entry = self.mk_anon_pte(new, vma)
            # ptep_clear_flush_notify: clear, flush, tell secondary TLBs under the PTL
            k.pgt.set_entry(t, idx, 0, "ptep_clear_flush", addr)
            k.flush_tlb_mm_range(mm, addr, addr + 4096, False)
            k.mmu_notifiers.invalidate_range(mm, addr, addr + 4096)
            k.rmap.page_add_new_anon_rmap(new, vma, addr)
            self.lru_cache_add_active_or_unevictable(new, vma)
            k.mmu_notifiers.change_pte(mm, addr, entry)  # set_pte_at_notify
            k.pgt.set_entry(t, idx, entry, "set_pte_at_notify", addr)
            if old is not None:
                k.rmap.page_remove_rmap(old)
            release = old
        else:
            release = new
        k.pgt.spin_unlock(ptl)
        if release is not None:
            k.put_page(release)
        k.mmu_notifiers.invalidate_range_end(rng, only_end=True)
        if old is not None:
            if release is old and vma.vm_flags & VM_LOCKED and k.memmap.test(old, PG_mlocked):
                k.munlock_vma_page(old)
            k.put_page(old)
        return VM_FAULT_WRITE

    # ------------------------------------------------------------ batched anon faults
    def do_anonymous_pages(self, vma: Vma, addrs: np.ndarray, write: bool) -> int:
        """do_anonymous_page() for many first-touch pages of one VMA, in order.

        Equivalent to one fault per page in the order given: PTE tables are
        allocated where the per-page sequence would allocate them; every page
        comes from the same allocator calls.  Returns how many pages were
        faulted (fewer than asked only on VM_FAULT_OOM).
        """
        k = self.k
        mm = vma.vm_mm
        n = len(addrs)
        done = 0
        pmds = addrs >> np.uint64(PMD_SHIFT)
        if write:
            k.rmap.anon_vma_prepare(vma)
        pgt = k.pgt
        while done < n:
            # the run of pages whose PTE table already exists
            key = int(pmds[done])
            t = mm.pte_tables.get(key)
            if t is None:
                k.vm_events["pgfault"] += 1
                t = pgt.pte_alloc_path(mm, int(addrs[done]))
                if t is None:
                    k.check_sync_rss_stat()
                    return done
                k.vm_events["pgfault"] -= 1
            run_end = done + 1
            while run_end < n and int(pmds[run_end]) == key:
                run_end += 1
            a = addrs[done:run_end]
            idx = ((a >> np.uint64(12)) & np.uint64(511)).astype(np.int64)
            if write:
                pfns = k.alloc_pages_bulk(GFP_ANON, len(a))
                got = len(pfns)
                k.vm_events["pgfault"] += got
                if got:
                    a, idx = a[:got], idx[:got]
                    entries = (pfns.astype(np.uint64) << np.uint64(12)) | np.uint64(
                        vma.vm_page_prot | (_PAGE_RW | _PAGE_DIRTY | _PAGE_SOFT_DIRTY
                                            if vma.vm_flags & VM_WRITE else 0))
                    ptl = self._ptl(mm, t)
                    pgt.spin_lock(ptl)
                    if np.any(t.entries[idx]):
                        raise KernelBug("do_anonymous_pages: a target PTE is not none")
                    k.add_mm_counter_fast(mm, MM_ANONPAGES, got, faults=got)
                    k.rmap.page_add_new_anon_rmap_batch(pfns, vma, a)
                    if vma.vm_flags & VM_LOCKED:
                        for p in pfns.tolist():
                            k.mlock_new_page(p)
                    else:
                        k.memmap.flags[pfns] |= np.uint64(1 << PG_active)
                    k.vmscan.lru_cache_add_batch(pfns)
                    t.entries[idx] = entries
                    pgt.spin_unlock(ptl)
                if got < len(idx):
                    if getattr(k.current_task(), "pending_kill", False):
                        return done + got  # killed: back to user space to die
                    k.vm_events["pgfault"] += 1
                    k.check_sync_rss_stat()
                    return done + got
            else:
                k.vm_events["pgfault"] += len(a)
                k.add_mm_counter_fast(mm, MM_ANONPAGES, 0, faults=len(a))
                ptl = self._ptl(mm, t)
                pgt.spin_lock(ptl)
                ents = t.entries
                zero = np.uint64(pfn_pte(k.zero_pfn, vma.vm_page_prot) | _PAGE_SPECIAL)
                cur = ents[idx]
                ents[idx[cur == 0]] = zero
                pgt.spin_unlock(ptl)
            done = run_end
        return done

    def walk_present_ptes(self, vma: Vma, start: int, end: int, fn) -> None:
        """Call fn(table, idx, addr, pte) for each present PTE of [start, end) in vma,
        holding that table's PTE lock (walk_page_range with a pte_entry callback)."""
        k = self.k
        mm = vma.vm_mm
        a, end = max(start, vma.vm_start), min(end, vma.vm_end)
        while a < end:
            nxt = min(((a >> PMD_SHIFT) + 1) << PMD_SHIFT, end)
            t = mm.pte_tables.get(a >> PMD_SHIFT)
            if t is not None:
                i0 = (a >> 12) & 511
                ptl = self._ptl(mm, t)
                k.pgt.spin_lock(ptl)
                try:
                    for off in np.nonzero(t.entries[i0:i0 + ((nxt - a) >> 12)])[0].tolist():
                        pte = int(t.entries[i0 + off])
                        if pte_present(pte):
                            fn(t, i0 + off, a + (off << 12), pte)
                finally:
                    k.pgt.spin_unlock(ptl)
            a = nxt

    # ------------------------------------------------------------ zap
    def zap_pte_range(self, tlb: MmuGather, vma: Vma, t, start: int, end: int) -> None:
        k = self.k
        mm = vma.vm_mm
        ptl = self._ptl(mm, t)
        pgt = k.pgt
        pgt.spin_lock(ptl)
        ents = t.entries
        i0 = (start >> 12) & 511
        i1 = i0 + ((end - start) >> 12)
        present = np.nonzero(ents[i0:i1])[0]
        rmap = k.rmap
        memmap = k.memmap
        for off in present.tolist():
            i = i0 + off
            addr = start + (off << 12)
            pte = int(ents[i])
            pgt.set_entry(t, i, 0, "ptep_get_and_clear_full", addr)
            tlb.tlb_remove_tlb_entry(addr)
            if not pte_present(pte):
                raise KernelBug(f"zap: swap entry {pte:#x} at {addr:#x}: swap is not modelled yet")
            pfn = self.vm_normal_page(vma, addr, pte)
            if pfn is None:
                continue
            if not rmap.PageAnon(pfn):
                if pte_dirty(pte):
                    memmap.set(pfn, PG_dirty)
                if pte_young(pte) and not vma.vm_flags & VM_SEQ_READ:
                    memmap.set(pfn, PG_referenced)
            mm.rss_stat[self.mm_counter(pfn)] -= 1
            rmap.page_remove_rmap(pfn)
            if vma.vm_flags & VM_LOCKED and memmap.page_mapcount(pfn) == 0:
                k.munlock_vma_page(pfn)
            tlb.remove_page(pfn)
        pgt.spin_unlock(ptl)

    def unmap_page_range(self, tlb: MmuGather, vma: Vma, start: int, end: int) -> None:
        mm = vma.vm_mm
        k = self.k
        k.sync_mm_rss(mm)
        a = start
        while a < end:
            nxt = min(((a >> PMD_SHIFT) + 1) << PMD_SHIFT, end)
            t = mm.pte_tables.get(a >> PMD_SHIFT)
            if t is not None:
                self.zap_pte_range(tlb, vma, t, a, nxt)
            a = nxt
        if tlb.pages and len(tlb.pages) > 10000:
            tlb.tlb_flush_mmu()

    def zap_page_range(self, vma: Vma, start: int, size: int) -> None:
        """MADV_DONTNEED and friends: CLEAR notification, zap, flush."""
        k = self.k
        mm = vma.vm_mm
        end = start + size
        k.vmscan.lru_add_drain()
        rng = MmuNotifierRange(MMU_NOTIFY_CLEAR, 0, vma, mm, start, end)
        tlb = MmuGather(k, mm, start, end)
        mm.update_hiwater_rss()
        k.mmu_notifiers.invalidate_range_start(rng)
        self.unmap_page_range(tlb, vma, max(start, vma.vm_start), min(end, vma.vm_end))
        k.mmu_notifiers.invalidate_range_end(rng)
        tlb.tlb_finish_mmu()

    def unmap_vmas(self, tlb: MmuGather, vmas: list[Vma], start: int, end: int) -> None:
        """unmap_vmas(): one UNMAP notification for the whole range."""
        if not vmas:
            return
        k = self.k
        mm = vmas[0].vm_mm
        rng = MmuNotifierRange(MMU_NOTIFY_UNMAP, 0, None, mm, start, end)
        k.mmu_notifiers.invalidate_range_start(rng)
        for vma in vmas:
            s, e = max(start, vma.vm_start), min(end, vma.vm_end)
            if s < e:
                self.unmap_page_range(tlb, vma, s, e)
        k.mmu_notifiers.invalidate_range_end(rng)

    # ------------------------------------------------------------ fork
    def copy_page_range(self, dst_mm, src_mm, vma: Vma, dst_vma: Vma) -> int:
        """copy_page_range(): share pages COW; 0 or -ENOMEM."""
        k = self.k
        if not vma.vm_flags & (VM_HUGETLB | VM_PFNMAP | VM_MIXEDMAP) and vma.anon_vma is None:
            return 0
        cow = vma.is_cow_mapping()
        rng = None
        if cow:
            rng = MmuNotifierRange(MMU_NOTIFY_PROTECTION_PAGE, 0, vma, src_mm, vma.vm_start, vma.vm_end)
            k.mmu_notifiers.invalidate_range_start(rng)
        ret = 0
        pgt = k.pgt
        memmap = k.memmap
        try:
            a = vma.vm_start
            while a < vma.vm_end:
                nxt = min(((a >> PMD_SHIFT) + 1) << PMD_SHIFT, vma.vm_end)
                st = src_mm.pte_tables.get(a >> PMD_SHIFT)
                if st is None:
                    a = nxt
                    continue
                i0 = (a >> 12) & 511
                i1 = i0 + ((nxt - a) >> 12)
                if not np.any(st.entries[i0:i1]):
                    a = nxt
                    continue
                dt = pgt.pte_alloc_path(dst_mm, a)
                if dt is None:
                    ret = -12
                    break
                dptl, sptl = self._ptl(dst_mm, dt), self._ptl(src_mm, st)
                pgt.spin_lock(dptl)
                pgt.spin_lock(sptl, nested=True)
                sents = st.entries
                for i in np.nonzero(sents[i0:i1])[0].tolist():
                    idx = i0 + i
                    addr = a + (i << 12)
                    pte = int(sents[idx])
                    if not pte_present(pte):
                        raise KernelBug(f"fork: swap entry {pte:#x}: swap is not modelled yet")
                    if cow and pte_write(pte):
                        pgt.set_entry(st, idx, pte_wrprotect(pte), "ptep_set_wrprotect", addr)
                        pte = pte_wrprotect(pte)
                    if vma.vm_flags & VM_SHARED:
                        pte = pte_mkclean(pte)
                    pte = pte_mkold(pte)
                    pfn = self.vm_normal_page(vma, addr, pte)
                    if pfn is not None:
                        memmap.refcount[pfn] += 1
                        k.rmap.page_dup_rmap(pfn)
                        dst_mm.rss_stat[self.mm_counter(pfn)] += 1
                    pgt.set_entry(dt, idx, pte, "set_pte_at", addr)
                pgt.spin_unlock(sptl)
                pgt.spin_unlock(dptl)
                a = nxt
        finally:
            if cow:
                k.mmu_notifiers.invalidate_range_end(rng)
        return ret
