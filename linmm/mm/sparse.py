"""Sections added and removed after boot (mm/sparse.c, mm/sparse-vmemmap.c).

With SPARSEMEM_VMEMMAP a hot-added range may cover part of a section: the
section's usage keeps a map of its 2 MiB subsections and pfn_valid() asks it
(memory-model.md op 10).  Boot ("early") sections are valid throughout.

The memmap of a hot-added range comes from the buddy allocator
(vmemmap_alloc_block): a whole section gets one 2 MiB block (a PMD mapping),
a part of a section gets one page per 64 struct pages (base-page mapping).
The vmemmap page-table pages themselves are not modelled (memory-model.md:
MemFree falls by 2048 kB per section).
"""
from __future__ import annotations

import numpy as np

from ..errors import EEXIST, ENOMEM, KernelBug
from . import gfp as G
from .memory_model import (PAGES_PER_SECTION, PAGES_PER_SUBSECTION, PFN_SECTION_SHIFT,
                           SECTION_HAS_MEM_MAP, SECTION_IS_EARLY, SECTION_MARKED_PRESENT,
                           STRUCT_PAGE_SIZE)

SUBSECTIONS_PER_SECTION = PAGES_PER_SECTION // PAGES_PER_SUBSECTION
_FULL_MAP = (1 << SUBSECTIONS_PER_SECTION) - 1
VMEMMAP_GFP = G.GFP_KERNEL | G._GFP_RETRY_MAYFAIL | G._GFP_NOWARN


def subsection_mask(pfn: int, nr_pages: int) -> int:
    """subsection_mask_set(): the subsections of one section that [pfn, pfn+nr) covers."""
    first = (pfn & (PAGES_PER_SECTION - 1)) // PAGES_PER_SUBSECTION
    last = ((pfn + nr_pages - 1) & (PAGES_PER_SECTION - 1)) // PAGES_PER_SUBSECTION
    return ((1 << (last + 1)) - 1) & ~((1 << first) - 1)


class Sparse:
    """Per-section usage (subsection map) and the vmemmap of hot-added sections."""

    def __init__(self, k):
        self.k = k
        self.subsection_map: dict[int, int] = {}  # section nr -> map, for sections added after boot
        # section nr -> [(subsection mask, pfn, order)]: the buddy pages holding its memmap
        self.vmemmap: dict[int, list[tuple[int, int, int]]] = {}
        self._warned = False

    # ------------------------------------------------------------ lookups
    def ensure_sections(self, end_pfn: int) -> None:
        """NR_MEM_SECTIONS is fixed in the kernel; the model grows its table on demand."""
        k = self.k
        need = (end_pfn + PAGES_PER_SECTION - 1) >> PFN_SECTION_SHIFT
        if need > len(k.section_flags):
            flags = np.zeros(need, np.uint8)
            flags[:len(k.section_flags)] = k.section_flags
            k.section_flags = flags

    def early_map(self, nr: int) -> int:
        """subsection_map_init() at boot: the subsections of a boot section with memory."""
        lo, hi = nr << PFN_SECTION_SHIFT, (nr + 1) << PFN_SECTION_SHIFT
        m = 0
        for s, e, _ in self.k.layout.memory:
            s, e = max(s, lo), min(e, hi)
            if s < e:
                m |= subsection_mask(s, e - s)
        return m

    def section_map(self, nr: int) -> int:
        m = self.subsection_map.get(nr)
        if m is not None:
            return m
        if nr < len(self.k.section_flags) and self.k.section_flags[nr] & SECTION_IS_EARLY:
            return self.early_map(nr)
        return 0

    def pfn_section_valid(self, pfn: int) -> bool:
        nr = pfn >> PFN_SECTION_SHIFT
        return bool(self.subsection_map.get(nr, 0) >> ((pfn & (PAGES_PER_SECTION - 1))
                                                       // PAGES_PER_SUBSECTION) & 1)

    # ------------------------------------------------------------ add / remove
    def sparse_add_section(self, nid: int, pfn: int, nr_pages: int) -> None:
        """One section's part of __add_pages(): fill the subsection map (EEXIST if any
        subsection is active), populate the memmap (ENOMEM), mark the section present."""
        k = self.k
        nr = pfn >> PFN_SECTION_SHIFT
        self.ensure_sections(pfn + nr_pages)
        mask = subsection_mask(pfn, nr_pages)
        old = self.section_map(nr)
        if old & mask:
            raise EEXIST(f"sparse_add_section: section {nr} already has subsections {old & mask:#x}")
        early = bool(k.section_flags[nr] & SECTION_IS_EARLY)
        if not (early and nr_pages < PAGES_PER_SECTION):  # early sections reuse their memmap
            self.vmemmap.setdefault(nr, []).extend(self.populate_section_memmap(pfn, nr_pages, nid))
        self.subsection_map[nr] = old | mask
        k.section_flags[nr] |= SECTION_MARKED_PRESENT | SECTION_HAS_MEM_MAP

    def sparse_remove_section(self, pfn: int, nr_pages: int) -> None:
        """section_deactivate(): clear the subsections, free their memmap; an emptied
        section is no longer present."""
        k = self.k
        nr = pfn >> PFN_SECTION_SHIFT
        mask = subsection_mask(pfn, nr_pages)
        left = self.section_map(nr) & ~mask
        keep = []
        for m, p, order in self.vmemmap.pop(nr, []):
            if m & mask:
                k.page_alloc.free_pages(p, order)
            else:
                keep.append((m, p, order))
        if keep:
            self.vmemmap[nr] = keep
        self.subsection_map[nr] = left
        if not left:  # section_mem_map = NULL: no longer present
            del self.subsection_map[nr]
            k.section_flags[nr] = 0

    def populate_section_memmap(self, pfn: int, nr_pages: int, nid: int) -> list[tuple[int, int, int]]:
        """vmemmap_populate(): a PMD block for a whole section, else base pages."""
        if nr_pages == PAGES_PER_SECTION:
            chunks = [(_FULL_MAP, 9)]
        else:
            per_sub = PAGES_PER_SUBSECTION * STRUCT_PAGE_SIZE >> 12
            chunks = [(subsection_mask(p, PAGES_PER_SUBSECTION), 0)
                      for p in range(pfn, pfn + nr_pages, PAGES_PER_SUBSECTION) for _ in range(per_sub)]
        got = []
        for m, order in chunks:
            p = self.vmemmap_alloc_block(order, nid)
            if p is None:
                for _, q, o in got:
                    self.k.page_alloc.free_pages(q, o)
                raise ENOMEM("vmemmap_populate: no memory for the memmap")
            got.append((m, p, order))
        return got

    def vmemmap_alloc_block(self, order: int, nid: int) -> int | None:
        k = self.k
        p = k.page_alloc.alloc_pages_nodemask(VMEMMAP_GFP, order, nid)
        if p is None and not self._warned:
            self._warned = True
            gfp = VMEMMAP_GFP & ~G._GFP_NOWARN
            t = k.current_task()
            comm = t.comm if t is not None else "swapper/0"
            k.printk(f"{comm}: vmemmap alloc failure: order:{order}, "
                     f"mode:{gfp:#x}({G.format_gfp(gfp)}), nodemask=(null)")
        return p

    def memmap_pages(self) -> int:
        """Pages of buddy memory holding hot-added memmap."""
        return sum(1 << o for v in self.vmemmap.values() for _, _, o in v)

    def check(self) -> None:
        """Sections added after boot have a memmap and a non-empty map; their memmap
        pages are allocated buddy pages."""
        k = self.k
        mm = k.memmap
        for nr, m in self.subsection_map.items():
            if not m or not k.section_flags[nr] & SECTION_HAS_MEM_MAP:
                raise KernelBug(f"section {nr}: subsection map {m:#x} but flags {int(k.section_flags[nr]):#x}")
        for nr, chunks in self.vmemmap.items():
            for m, p, order in chunks:
                if m & ~self.subsection_map.get(nr, 0):
                    raise KernelBug(f"section {nr}: memmap pfn {p:#x} for inactive subsections {m:#x}")
                if int(mm.refcount[p]) < 1 or mm.PageBuddy(p):
                    raise KernelBug(f"section {nr}: memmap pfn {p:#x} is not allocated")
