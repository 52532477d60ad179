"""Shared anonymous memory (mm/shmem.c shmem_zero_setup): a tmpfs object per
MAP_SHARED|MAP_ANONYMOUS mapping, its page cache and its commit charge."""
from __future__ import annotations

from ..errors import ENOMEM, ENOSPC, KernelBug
from . import gfp as G
from .mm_types import MM_SHMEMPAGES, VM_NORESERVE, VM_SHARED, VM_WRITE, Vma
from .page import PG_dirty, PG_swapbacked, PG_uptodate
from .pgtable import _PAGE_DIRTY, _PAGE_SOFT_DIRTY, pfn_pte, pte_none

FAULT_AROUND_PAGES = 16


class ShmemObject:
    """A tmpfs inode: size, page cache (index -> pfn), charge, mapping users."""

    def __init__(self, size: int, noreserve: bool, ino: int = 0):
        self.ino = ino  # get_next_ino() of the "dev/zero" shmem file
        self.size = size
        self.noreserve = noreserve
        self.pages: dict[int, int] = {}
        self.users = 1
        self.charged = 0 if noreserve else (size + 4095) >> 12

    def lookup(self, index: int) -> int | None:
        return self.pages.get(index)

    def get(self) -> None:
        self.users += 1

    def put(self, k) -> None:
        self.users -= 1
        if self.users == 0:
            k.shmem.shmem_evict_inode(self)


class Shmem:
    def __init__(self, k):
        self.k = k
        self.objects: list[ShmemObject] = []
        self.last_ino = 0

    def object_of(self, mapping: int) -> ShmemObject | None:
        """The object whose page cache a page with this page->mapping belongs to."""
        for obj in self.objects:
            if id(obj) << 1 == mapping:
                return obj
        return None

    def shmem_zero_setup(self, size: int, vm_flags: int, task) -> ShmemObject:
        noreserve = bool(vm_flags & VM_NORESERVE)
        if not noreserve:
            self.k.overcommit.security_vm_enough_memory_mm(task.mm, (size + 4095) >> 12, task)
        self.last_ino += 1
        obj = ShmemObject(size, noreserve, self.last_ino)
        self.objects.append(obj)
        return obj

    def shmem_evict_inode(self, obj: ShmemObject) -> None:
        """Truncate the page cache and drop the commit charge."""
        k = self.k
        for index in sorted(obj.pages):
            self.delete_from_page_cache(obj, index)
        if obj.charged:
            k.overcommit.vm_unacct_memory(obj.charged)
            obj.charged = 0
        self.objects.remove(obj)

    def delete_from_page_cache(self, obj: ShmemObject, index: int) -> None:
        k = self.k
        pfn = obj.pages.pop(index)
        node = k.node_of_pfn(pfn)
        node.vm_stat["nr_file_pages"] -= 1
        node.vm_stat["nr_shmem"] -= 1
        k.memmap.mapping[pfn] = 0
        if obj.noreserve:
            k.overcommit.vm_unacct_memory(1)
            obj.charged -= 1
        k.put_page(pfn)

    def shmem_getpage(self, obj: ShmemObject, index: int) -> int | None:
        """Find or allocate the page at index; None on allocation failure, ENOSPC on charge."""
        k = self.k
        pfn = obj.pages.get(index)
        if pfn is not None:
            return pfn
        if obj.noreserve:
            try:
                k.overcommit.security_vm_enough_memory_mm(None, 1)
            except ENOMEM:
                raise ENOSPC("shmem_acct_block") from None
            obj.charged += 1
        pfn = k.page_alloc.alloc_pages_nodemask(G.GFP_HIGHUSER_MOVABLE | G._GFP_ZERO, 0)
        if pfn is None:
            if obj.noreserve:
                k.overcommit.vm_unacct_memory(1)
                obj.charged -= 1
            return None
        mm = k.memmap
        mm.flags[pfn] |= (1 << PG_swapbacked) | (1 << PG_uptodate)
        mm.mapping[pfn] = id(obj) << 1
        mm.index[pfn] = index
        obj.pages[index] = pfn
        node = k.node_of_pfn(pfn)
        node.vm_stat["nr_file_pages"] += 1
        node.vm_stat["nr_shmem"] += 1
        k.vmscan.lru_cache_add((pfn,))  # lru_cache_add_anon: inactive anon
        return pfn

    def _map(self, vma: Vma, addr: int, t, idx: int, pfn: int, write: bool) -> None:
        k = self.k
        entry = pfn_pte(pfn, vma.vm_page_prot)
        if write:
            entry |= _PAGE_DIRTY | _PAGE_SOFT_DIRTY
        k.memmap.refcount[pfn] += 1
        k.add_mm_counter_fast(vma.vm_mm, MM_SHMEMPAGES, 1)
        k.rmap.page_add_file_rmap(pfn)
        k.pgt.set_entry(t, idx, entry, "set_pte_at", addr)

    def do_fault(self, vma: Vma, addr: int, t, idx: int, write: bool, flags: int) -> int:
        from .memory import VM_FAULT_OOM, VM_FAULT_SIGBUS
        k = self.k
        obj = vma.shmem
        if obj is None:
            raise KernelBug(f"fault on {vma!r}: file mappings are not modelled yet")
        index = vma.linear_page_index(addr)
        if index >= (obj.size + 4095) >> 12:
            return VM_FAULT_SIGBUS
        ptl = k.memory._ptl(vma.vm_mm, t)
        if not write and vma.vm_flags & VM_SHARED:
            self.do_fault_around(vma, addr, t, ptl)
            if not pte_none(int(t.entries[idx])):
                return 0
        try:
            pfn = self.shmem_getpage(obj, index)
        except ENOSPC:
            return VM_FAULT_SIGBUS
        if pfn is None:
            return VM_FAULT_OOM
        k.pgt.spin_lock(ptl)
        if pte_none(int(t.entries[idx])):
            self._map(vma, addr, t, idx, pfn, write and bool(vma.vm_flags & VM_WRITE))
        k.pgt.spin_unlock(ptl)
        if write and vma.vm_flags & VM_SHARED:
            k.memmap.set(pfn, PG_dirty)  # do_shared_fault -> fault_dirty_shared_page
        return 0

    def do_fault_around(self, vma: Vma, addr: int, t, ptl) -> None:
        """filemap_map_pages over the 64 KiB window: map cached pages, allocate none."""
        k = self.k
        mask = ~(FAULT_AROUND_PAGES * 4096 - 1)
        start = max(addr & mask, vma.vm_start)
        end = min(start + FAULT_AROUND_PAGES * 4096, vma.vm_end, ((addr >> 21) + 1) << 21)
        k.pgt.spin_lock(ptl)
        a = start
        while a < end:
            i = (a >> 12) & 511
            pfn = vma.shmem.lookup(vma.linear_page_index(a))
            if pfn is not None and pte_none(int(t.entries[i])):
                self._map(vma, a, t, i, pfn, False)
            a += 4096
        k.pgt.spin_unlock(ptl)
