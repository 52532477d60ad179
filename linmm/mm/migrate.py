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


MIGRATE_REASONS = ("compaction", "memory_failure", "memory_hotplug", "syscall_or_cpuset",
                   "mempolicy_mbind", "numa_misplaced", "contig_range")
MIGRATEPAGE_SUCCESS = 0


class Migrate:
    def __init__(self, k):
        self.k = k

    # ------------------------------------------------------------ isolation
    def isolate_lru_page(self, pfn: int) -> bool:
        """Off the LRU with a reference, counted in NR_ISOLATED_ANON/FILE."""
        k = self.k
        if not k.mlock.isolate_lru_page(pfn):
            return False
        k.pgdats[k.memmap.page_to_nid(pfn)].vm_stat[self._isolated_item(pfn)] += 1
        return True

    def putback_lru_page(self, pfn: int) -> None:
        k = self.k
        k.pgdats[k.memmap.page_to_nid(pfn)].vm_stat[self._isolated_item(pfn)] -= 1
        k.mlock.putback_lru_page(pfn)

    def _isolated_item(self, pfn: int) -> str:
        return "nr_isolated_anon" if self.k.memmap.test(pfn, PG_swapbacked) else "nr_isolated_file"

    # ------------------------------------------------------------ the engine
    def migrate_page(self, old: int, reason: str) -> bool:
        """Isolate and move one LRU page anywhere (memory offlining); True on success."""
        self.k.vmscan.lru_add_drain()
        if not self.isolate_lru_page(old):
            return False
        left = [old]
        ret = self.migrate_pages(left, None, reason)
        for pfn in left:
            self.putback_lru_page(pfn)
        return ret == 0

    def migrate_pages(self, pages: list[int], node: int | None, reason: str) -> int:
        """migrate_pages() over isolated pages: the number that failed, or -ENOMEM when a
        new page could not be had (the rest stay in ``pages`` for the caller to put back).
        Pages moved (or freed under us) leave the list.  New pages come from ``node``
        only (__GFP_THISNODE), or from anywhere when node is None."""
        k = self.k
        succeeded = failed = 0
        ret = 0
        while pages:
            old = pages[0]
            if int(k.memmap.refcount[old]) == 1:  # freed under us: only our reference left
                pages.pop(0)
                k.memmap.clear(old, PG_active)
                k.memmap.clear(old, PG_unevictable)
                k.pgdats[k.memmap.page_to_nid(old)].vm_stat[self._isolated_item(old)] -= 1
                k.put_page(old)
                succeeded += 1
                continue
            gfp = G.GFP_HIGHUSER_MOVABLE | G._GFP_RETRY_MAYFAIL
            if node is not None:  # alloc_new_node_page()
                gfp = G.GFP_HIGHUSER_MOVABLE | G._GFP_THISNODE
            new = k.page_alloc.alloc_pages_nodemask(gfp, 0, node)
            if new is None:
                failed += 1
                ret = -12  # -ENOMEM: the whole call stops here
                break
            pages.pop(0)
            self.move_to_new_page(old, new, reason)
            succeeded += 1
        k.vm_events["pgmigrate_success"] += succeeded
        k.vm_events["pgmigrate_fail"] += failed
        return ret if ret else failed

    def move_to_new_page(self, old: int, new: int, reason: str) -> None:
        """Unmap every mapping of the isolated page, copy bytes and state to new, map new
        where old was, put new on the LRU and free old (its isolation reference)."""
        k = self.k
        mm = k.memmap
        iso_item = self._isolated_item(old)
        vs = k.vmscan
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
        po = getattr(k, "page_owner", None)
        if po is not None:  # migrate_page_states(): copy_page_owner(); then the reason
            po.copy_page_owner(old, new)
            po.set_page_owner_migrate_reason(new, MIGRATE_REASONS.index(reason))
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
        mm.refcount[new] = mm.refcount[old] - 1  # the mapping references move; ours stays
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
        k.pgdats[nid_old].vm_stat[iso_item] -= 1
        mm.set(new, PG_lru)
        if not mm.test(new, PG_mlocked):
            mm.clear(new, PG_unevictable)
        vs.add_page_to_lru_list(new, vs.page_lru(new))
        k.page_alloc.free_pages(old, 0)


# ---------------------------------------------------------------- move_pages(2)
MPOL_MF_STRICT, MPOL_MF_MOVE, MPOL_MF_MOVE_ALL = 1, 2, 4
MAX_NUMNODES = 64
DO_PAGES_STAT_CHUNK_NR = 16
_EFAULT, _ENOENT, _EACCES, _EBUSY = -14, -2, -13, -16


def follow_page_dump(k, vma, addr: int) -> int:
    """follow_page(FOLL_GET | FOLL_DUMP): the pfn, or -EFAULT (zero or special page,
    nothing mapped in an anonymous VMA) / -ENOENT (nothing present otherwise)."""
    from .pgtable import PMD_SHIFT, _PAGE_SPECIAL, pte_pfn, pte_present
    t = vma.vm_mm.pte_tables.get(addr >> PMD_SHIFT)
    pte = int(t.entries[(addr >> 12) & 511]) if t is not None else 0
    if not pte:
        return _EFAULT if vma.is_anonymous() else _ENOENT
    if not pte_present(pte):
        return _ENOENT  # swap or migration entry
    pfn = pte_pfn(pte)
    if pte & _PAGE_SPECIAL or pfn == k.zero_pfn:
        return _EFAULT
    return pfn


def vma_migratable(vma) -> bool:
    from .mm_types import VM_HUGETLB, VM_IO, VM_PFNMAP
    return not vma.vm_flags & (VM_IO | VM_PFNMAP) and not vma.vm_flags & VM_HUGETLB


def sys_move_pages(k, caller, pid: int, pages: list[int], nodes: list[int] | None, flags: int,
                   status: list[int] | None) -> tuple[int, list[int]]:
    """kernel_move_pages() (page_migration.md op 5).  Errors raise; ``status`` (a list, 0s
    by default) is written in place, so a caller that catches an error still sees it."""
    from ..errors import EINVAL, EPERM, ESRCH
    if flags & ~(MPOL_MF_MOVE | MPOL_MF_MOVE_ALL):
        raise EINVAL("move_pages: unknown flags")
    if flags & MPOL_MF_MOVE_ALL and caller.uid != 0:  # capable(CAP_SYS_NICE)
        raise EPERM("move_pages: MPOL_MF_MOVE_ALL needs CAP_SYS_NICE")
    task = caller if pid == 0 else k.tasks.get(pid)
    if task is None or task.is_kthread and pid:
        raise ESRCH(f"move_pages: no process {pid}")
    if caller.uid != 0 and getattr(task, "uid", 0) != caller.uid:  # ptrace_may_access()
        raise EPERM("move_pages: not allowed to access that process")
    mm = task.mm
    if mm is None:
        raise EINVAL("move_pages: the task has no mm")
    if status is None:
        status = [0] * len(pages)
    if nodes is None:
        do_pages_stat(k, mm, pages, status)
        return 0, status
    return do_pages_move(k, mm, pages, nodes, status, flags), status


def do_pages_stat(k, mm, pages: list[int], status: list[int]) -> None:
    for i, addr in enumerate(pages):
        vma = k.mmap.find_vma(mm, addr)
        if vma is None or addr < vma.vm_start:
            status[i] = _EFAULT
            continue
        pfn = follow_page_dump(k, vma, addr)
        status[i] = pfn if pfn < 0 else k.memmap.page_to_nid(pfn)


def add_page_for_migration(k, mm, addr: int, node: int, pagelist: list[int], migrate_all: bool) -> int:
    """1 when queued, 0 when the page is already on node, else a negative status."""
    vma = k.mmap.find_vma(mm, addr)
    if vma is None or addr < vma.vm_start or not vma_migratable(vma):
        return _EFAULT
    pfn = follow_page_dump(k, vma, addr)
    if pfn < 0:
        return pfn
    mem = k.memmap
    if mem.page_to_nid(pfn) == node:
        return 0
    if mem.page_mapcount(pfn) > 1 and not migrate_all:
        return _EACCES
    if not k.migrate.isolate_lru_page(pfn):
        return _EBUSY
    pagelist.append(pfn)
    return 1


def move_pages_and_store_status(k, node, pagelist: list[int], status: list[int], start: int, i: int,
                                nr_pages: int) -> int:
    """Migrate the queued batch; on success every status in [start, i) is node.  n pages
    failed -> n plus the pages not attempted (nr_pages - i - 1); -ENOMEM raises."""
    from ..errors import ENOMEM
    if not pagelist:
        return 0
    err = k.migrate.migrate_pages(pagelist, node, "syscall_or_cpuset")
    for pfn in pagelist:  # putback_movable_pages()
        k.migrate.putback_lru_page(pfn)
    pagelist.clear()
    if err == -12:
        raise ENOMEM("move_pages: no memory on the target node")
    if err:
        return err + nr_pages - i - 1
    status[start:i] = [node] * (i - start)
    return 0


def do_pages_move(k, mm, pages: list[int], nodes: list[int], status: list[int], flags: int) -> int:
    """v5.7 do_pages_move(): batches of consecutive equal target nodes; an entry that is
    not queued (already there, or an error) gets its status and ends the batch; a batch
    with failures stops the call (the return value counts them and the pages not tried)."""
    from ..errors import ENODEV, Errno
    if len(nodes) != len(pages):
        raise ValueError("move_pages: pages and nodes differ in length")
    k.vmscan.lru_add_drain()  # migrate_prep()
    nr = len(pages)
    memory_nodes = {pg.node_id for pg in k.pgdats if any(z.present_pages for z in pg.node_zones)}
    current = None
    start = i = 0
    pagelist: list[int] = []
    fatal = None
    while i < nr:
        addr, node = pages[i], nodes[i]
        if not 0 <= node < MAX_NUMNODES or node not in memory_nodes:
            fatal = ENODEV(f"move_pages: node {node} has no memory")
            break  # (cpusets are not modelled: every node with memory is allowed, no EACCES)
        if current is None:
            current, start = node, i
        elif node != current:
            err = move_pages_and_store_status(k, current, pagelist, status, start, i, nr)
            if err:
                return err
            start, current = i, node
        err = add_page_for_migration(k, mm, addr, current, pagelist, bool(flags & MPOL_MF_MOVE_ALL))
        if err > 0:
            i += 1
            continue
        status[i] = err if err else current
        err = move_pages_and_store_status(k, current, pagelist, status, start, i, nr)
        if err:
            return err
        current = None
        i += 1
    try:  # out_flush: the pending batch goes first; an earlier error wins
        err = move_pages_and_store_status(k, current, pagelist, status, start, i, nr)
    except Errno:
        if fatal is None:
            raise
    if fatal is not None:
        raise fatal
    return err
