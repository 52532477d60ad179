"""Reverse mapping for anonymous pages (mm/rmap.c): anon_vma, mapcounts."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import KernelBug
from .mm_types import AnonVma, Vma
from .page import PAGE_MAPPING_ANON, PG_mlocked, PG_swapbacked, PG_uptodate

if TYPE_CHECKING:
    from ..kernel import Kernel

_ANON_FLAGS = np.uint64((1 << PG_swapbacked) | (1 << PG_uptodate))


class Rmap:
    def __init__(self, k: "Kernel"):
        self.k = k
        self.anon_vmas: dict[int, AnonVma] = {}

    # ------------------------------------------------------------ anon_vma
    def anon_vma_prepare(self, vma: Vma) -> bool:
        """__anon_vma_prepare(): reuse a mergeable neighbour's anon_vma or make one."""
        if vma.anon_vma is not None:
            return True
        av = self.find_mergeable_anon_vma(vma) or AnonVma()
        if av.id not in self.anon_vmas:
            self.anon_vmas[av.id] = av
        vma.anon_vma = av
        vma.anon_vma_chain.append(av)
        av.vmas.add(vma)
        return True

    def find_mergeable_anon_vma(self, vma: Vma) -> AnonVma | None:
        mm = vma.vm_mm
        i = mm.vmas.index(vma)
        for j in (i + 1, i - 1):
            if 0 <= j < len(mm.vmas):
                n = mm.vmas[j]
                if n.anon_vma is None or len(n.anon_vma_chain) != 1:
                    continue
                adjacent = n.vm_end == vma.vm_start or n.vm_start == vma.vm_end
                flags_ok = not ((n.vm_flags ^ vma.vm_flags) & ~0x77 & ~(0x2000 | 0x80000 | 0x8000000))
                if adjacent and flags_ok and n.vm_file is vma.vm_file and \
                        n.vm_pgoff - vma.vm_pgoff == (n.vm_start - vma.vm_start) >> 12:
                    return n.anon_vma
        return None

    def anon_vma_clone(self, dst: Vma, src: Vma) -> None:
        dst.anon_vma_chain = list(src.anon_vma_chain)
        for av in dst.anon_vma_chain:
            av.vmas.add(dst)

    def anon_vma_fork(self, vma: Vma, pvma: Vma) -> None:
        """The child VMA joins every anon_vma of the parent's chain and gets its own."""
        if pvma.anon_vma is None:
            return
        vma.anon_vma = None
        self.anon_vma_clone(vma, pvma)
        av = AnonVma(pvma.anon_vma)
        self.anon_vmas[av.id] = av
        vma.anon_vma = av
        vma.anon_vma_chain.append(av)
        av.vmas.add(vma)

    def unlink_anon_vmas(self, vma: Vma) -> None:
        for av in vma.anon_vma_chain:
            av.vmas.discard(vma)
            if not av.vmas and av.id in self.anon_vmas and not self._has_children(av):
                del self.anon_vmas[av.id]
        vma.anon_vma_chain = []
        vma.anon_vma = None

    def _has_children(self, av: AnonVma) -> bool:
        return any(o.parent is av and o is not av for o in self.anon_vmas.values())

    # ------------------------------------------------------------ mapcount
    def page_add_new_anon_rmap(self, pfn: int, vma: Vma, addr: int) -> None:
        k = self.k
        mm = k.memmap
        mm.flags[pfn] |= _ANON_FLAGS
        mm._mapcount1[pfn] = 1
        mm.mapping[pfn] = vma.anon_vma.id | PAGE_MAPPING_ANON
        mm.index[pfn] = vma.linear_page_index(addr)
        k.node_of_pfn(pfn).vm_stat["nr_anon_pages"] += 1

    def page_add_new_anon_rmap_batch(self, pfns: np.ndarray, vma: Vma, addrs: np.ndarray) -> None:
        k = self.k
        mm = k.memmap
        mm.flags[pfns] |= _ANON_FLAGS
        mm._mapcount1[pfns] = 1
        mm.mapping[pfns] = vma.anon_vma.id | PAGE_MAPPING_ANON
        mm.index[pfns] = ((addrs - np.uint64(vma.vm_start)) >> np.uint64(12)) + np.uint64(vma.vm_pgoff)
        k.count_node_pages(pfns, "nr_anon_pages", 1)

    def page_dup_rmap(self, pfn: int) -> None:
        self.k.memmap._mapcount1[pfn] += 1

    def page_add_file_rmap(self, pfn: int) -> None:
        mm = self.k.memmap
        mm._mapcount1[pfn] += 1
        if mm._mapcount1[pfn] == 1:
            self.k.node_of_pfn(pfn).vm_stat["nr_mapped"] += 1

    def page_remove_rmap(self, pfn: int) -> None:
        k = self.k
        mm = k.memmap
        mc = int(mm._mapcount1[pfn]) - 1
        if mc < 0:
            raise KernelBug(f"page_remove_rmap: pfn {pfn:#x} mapcount underflow")
        mm._mapcount1[pfn] = mc
        if mc == 0:
            item = "nr_anon_pages" if self.PageAnon(pfn) else "nr_mapped"
            k.node_of_pfn(pfn).vm_stat[item] -= 1
            if mm.test(pfn, PG_mlocked):
                k.mlock.clear_page_mlock(pfn)

    def PageAnon(self, pfn: int) -> bool:  # noqa: N802
        return bool(int(self.k.memmap.mapping[pfn]) & PAGE_MAPPING_ANON)

    def page_anon_vma(self, pfn: int) -> AnonVma | None:
        m = int(self.k.memmap.mapping[pfn])
        if not m & PAGE_MAPPING_ANON:
            return None
        return self.anon_vmas.get(m & ~PAGE_MAPPING_ANON)

    def rmap_walk_anon(self, pfn: int):
        """Yield (vma, address) for every VMA that may map the anonymous page."""
        av = self.page_anon_vma(pfn)
        if av is None:
            return
        index = int(self.k.memmap.index[pfn])
        for vma in self._tree(av):
            addr = vma.vm_start + ((index - vma.vm_pgoff) << 12)
            if vma.vm_start <= addr < vma.vm_end:
                yield vma, addr

    def rmap_walk(self, pfn: int):
        """(vma, address) of every VMA that may map the page: anon_vma or i_mmap walk."""
        if self.PageAnon(pfn):
            yield from self.rmap_walk_anon(pfn)
            return
        obj = self.k.shmem.object_of(int(self.k.memmap.mapping[pfn]))
        if obj is None:
            return
        index = int(self.k.memmap.index[pfn])
        for mm in list(self.k.mms.values()):
            for vma in mm.vmas:
                if vma.shmem is obj:
                    addr = vma.vm_start + ((index - vma.vm_pgoff) << 12)
                    if vma.vm_start <= addr < vma.vm_end:
                        yield vma, addr

    def _tree(self, av: AnonVma):
        """VMAs linked to av (its anon_vma_chain members)."""
        return sorted(av.vmas, key=lambda v: (v.vm_mm.id, v.vm_start))
