"""Page migration of one in-use page (mm/migrate.c, as memory offlining uses it):
unmap every mapping (CLEAR notifications), copy the bytes and the page state to a
new page, map the new page where the old one was, free the old one."""
from __future__ import annotations

import numpy as np

from . import gfp as G
from .mm_types import VM_WRITE
from .mmu_notifier import MMU_NOTIFY_CLEAR, MmuNotifierRange
from .page import (PG_active, PG_dirty, PG_lru, PG_mlocked, PG_referenced, PG_swapbacked,
                   PG_unevictable, PG_uptodate)
from .pgtable import (PMD_SHIFT, _PAGE_DIRTY, _PAGE_RW, _PAGE_SOFT_DIRTY, pfn_pte, pte_mkold,
                      pte_pfn)

_MOVED_FLAGS = [PG_active, PG_dirty, PG_referenced, PG_swapbacked, PG_uptodate, PG_mlocked,
                PG_unevictable]


class Migrate:
    def __init__(self, k):
        self.k = k

    def migrate_page(self, old: int, reason: str) -> bool:
        """Move one LRU page; True on success (pgmigrate_success), False otherwise."""
        k = self.k
        mm = k.memmap
        new = k.page_alloc.alloc_pages_nodemask(G.GFP_HIGHUSER_MOVABLE | G._GFP_RETRY_MAYFAIL, 0)
        if new is None:
            k.vm_events["pgmigrate_fail"] += 1
            return False
        # isolate_lru_page
        vs = k.vmscan
        vs.del_page_from_lru_list(old, vs.page_lru(old))
        mm.clear(old, PG_lru)
        if k.highmem.enabled:  # migrate_page_copy() -> copy_highpage()
            from .memory_model import Page
            k.copy_highpage(Page(new, k.memmap), Page(old, k.memmap))
        else:
            k.frames.copy(new, old)
        for f in _MOVED_FLAGS:
            if mm.test(old, f):
                mm.set(new, f)
        mm.mapping[new] = mm.mapping[old]
        mm.index[new] = mm.index[old]
        # try_to_unmap + remove_migration_ptes, one mapping at a time
        for vma, addr in list(k.rmap.rmap_walk(old)):
            vmm = vma.vm_mm
            t = vmm.pte_tables.get(addr >> PMD_SHIFT)
            if t is None:
                continue
            idx = (addr >> 12) & 511
            pte = int(t.entries[idx])
            if not pte or pte_pfn(pte) != old:
                continue
            rng = MmuNotifierRange(MMU_NOTIFY_CLEAR, 0, vma, vmm, addr, addr + 4096)
            k.mmu_notifiers.invalidate_range_start(rng)
            ptl = k.memory._ptl(vmm, t)
            k.pgt.spin_lock(ptl)
            if pte & _PAGE_DIRTY:
                mm.set(new, PG_dirty)
            entry = pte_mkold(pfn_pte(new, vma.vm_page_prot))
            if pte & _PAGE_SOFT_DIRTY:
                entry |= _PAGE_SOFT_DIRTY
            if pte & _PAGE_RW and vma.vm_flags & VM_WRITE:
                entry |= _PAGE_RW
            k.pgt.set_entry(t, idx, entry, "set_pte_at", addr)
            k.flush_tlb_mm_range(vmm, addr, addr + 4096, False)
            k.mmu_notifiers.invalidate_range(vmm, addr, addr + 4096)
            k.pgt.spin_unlock(ptl)
            k.mmu_notifiers.invalidate_range_end(rng)
        mm._mapcount1[new] = mm._mapcount1[old]
        mm._mapcount1[old] = 0
        mm.refcount[new] = mm.refcount[old]
        mm.refcount[old] = 1
        obj = k.shmem.object_of(int(mm.mapping[old])) if not int(mm.mapping[old]) & 1 else None
        if obj is not None:
            obj.pages[int(mm.index[old])] = new
        if mm.test(old, PG_mlocked):
            mm.clear(old, PG_mlocked)
            k.page_zone_of(old).vm_stat["nr_mlock"] -= 1
            k.page_zone_of(new).vm_stat["nr_mlock"] += 1
        nid_old, nid_new = mm.page_to_nid(old), mm.page_to_nid(new)
        if nid_old != nid_new and mm.page_mapcount(new):
            item = "nr_anon_pages" if int(mm.mapping[new]) & 1 else "nr_mapped"
            k.pgdats[nid_old].vm_stat[item] -= 1
            k.pgdats[nid_new].vm_stat[item] += 1
        mm.flags[old] &= np.uint64(~((1 << 26) - 1) & 0xFFFFFFFFFFFFFFFF)
        mm.mapping[old] = 0
        # putback the new page, free the old one
        mm.set(new, PG_lru)
        if not mm.test(new, PG_mlocked):
            mm.clear(new, PG_unevictable)
        vs.add_page_to_lru_list(new, vs.page_lru(new))
        k.page_alloc.free_pages(old, 0)
        k.vm_events["pgmigrate_success"] += 1
        return True
