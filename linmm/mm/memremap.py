"""ZONE_DEVICE: struct pages for device memory (mm/memremap.c, memory-model.md op 10).

memremap_pages() gives a device physical range a memmap without making it
RAM: the sections are added (DEVICE_PRIVATE: add_pages(), no direct map;
other types: arch_add_memory()), the range joins the node's ZONE_DEVICE
(spanned grows, present and managed stay 0) and every page starts idle at
refcount 1, PG_reserved, with its pgmap.  Device pages never reach a free
list or an LRU: a DEVICE_PRIVATE or FS_DAX page whose refcount drops back
to 1 is free and its driver's ops.page_free() runs.

The device memmap lives in its own arrays (DeviceMemMap), indexed by the
device pfns, so that a range far above RAM (request_free_mem_region() puts a
256 MiB range at 0x3ffff0000000 with 46 physical address bits) costs host
memory only for its own pages.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import EINVAL, ENOMEM, ENXIO, EOPNOTSUPP, KernelBug, WouldBlock
from ..resource import (IORES_DESC_NONE, IORESOURCE_SYSTEM_RAM, REGION_DISJOINT, REGION_MIXED, Resource,
                        region_intersects)
from .memory_model import PAGE_OFFSET, PAGES_PER_SECTION, PFN_SECTION_SHIFT, ZONE_DEVICE, Page
from .page import ARRAYS, PG_active, PG_reserved, PG_waiters, FrameStore, MemMap

# enum memory_type (include/linux/memremap.h, v5.7); 0 catches an uninitialised type
MEMORY_DEVICE_PRIVATE, MEMORY_DEVICE_FS_DAX, MEMORY_DEVICE_DEVDAX, MEMORY_DEVICE_PCI_P2PDMA = 1, 2, 3, 4
_TYPE_NAMES = {1: "MEMORY_DEVICE_PRIVATE", 2: "MEMORY_DEVICE_FS_DAX", 3: "MEMORY_DEVICE_DEVDAX",
               4: "MEMORY_DEVICE_PCI_P2PDMA"}


@dataclass
class DevPagemapOps:
    """struct dev_pagemap_ops: page_free(page) when a managed page is idle again,
    migrate_to_ram(vmf) for a CPU fault on a device private entry."""

    page_free: Callable | None = None
    migrate_to_ram: Callable | None = None


class DevPagemap:
    """struct dev_pagemap.  ``res`` is the device's physical range (a Resource,
    end inclusive, or a (start, size) pair); ``owner`` identifies the driver."""

    def __init__(self, type: int, res, ops: DevPagemapOps | None = None, owner=None):
        if not isinstance(res, Resource):
            start, size = res
            res = Resource(start, start + size - 1)
        self.type, self.res, self.ops, self.owner = type, res, ops, owner
        self.ref = 0          # percpu_ref: 1 while live, plus one per page not idle-at-0
        self.live = False
        self.nid = -1
        self.devmap_managed = False
        self.memmap: DeviceMemMap | None = None
        self.frames: FrameStore | None = None

    def __repr__(self) -> str:
        t = _TYPE_NAMES.get(self.type, str(self.type))
        return f"<dev_pagemap {t} [mem {self.res.start:#x}-{self.res.end:#x}]>"

    def pfn_first(self) -> int:
        return self.res.start >> 12

    def pfn_end(self) -> int:
        return (self.res.end + 1) >> 12


class _Shifted:
    """A per-pfn array of a device range, indexed by the global pfn."""

    __slots__ = ("a", "base")

    def __init__(self, a: np.ndarray, base: int):
        self.a, self.base = a, base

    def _i(self, i):
        if isinstance(i, slice):
            return slice(None if i.start is None else i.start - self.base,
                         None if i.stop is None else i.stop - self.base, i.step)
        return i - self.base

    def __getitem__(self, i):
        return self.a[self._i(i)]

    def __setitem__(self, i, v) -> None:
        self.a[self._i(i)] = v

    def __len__(self) -> int:
        return len(self.a)


class DeviceMemMap(MemMap):
    """The struct pages of one pgmap, as the same struct of arrays as RAM's."""

    def __init__(self, pgmap: DevPagemap, nr_pages: int):
        super().__init__(nr_pages, classic_sparse=False)
        self.pgmap = pgmap
        self.base = pgmap.pfn_first()
        for name in ARRAYS:
            setattr(self, name, _Shifted(getattr(self, name), self.base))

    def nbytes(self) -> int:
        return sum(getattr(self, n).a.nbytes for n in ARRAYS)


class MemRemap:
    """The pgmap_array (pfn -> dev_pagemap) and the ZONE_DEVICE life cycle."""

    def __init__(self, k):
        self.k = k
        self.pgmaps: list[DevPagemap] = []   # pgmap_array, sorted by start
        self.devmap_managed_enable = 0

    # ------------------------------------------------------------ lookup
    def lookup(self, pfn: int) -> DevPagemap | None:
        """xa_load(&pgmap_array, pfn)."""
        for pg in self.pgmaps:
            if pg.pfn_first() <= pfn < pg.pfn_end():
                return pg
        return None

    def get_dev_pagemap(self, pfn: int, pgmap: DevPagemap | None = None) -> DevPagemap | None:
        """A new live reference on the pgmap covering pfn (the cached one if it does)."""
        if pgmap is not None:
            if pgmap.res.start <= pfn << 12 <= pgmap.res.end:
                return pgmap
            self.put_dev_pagemap(pgmap)
        pg = self.lookup(pfn)
        if pg is None or not pg.live:
            return None
        pg.ref += 1
        return pg

    def put_dev_pagemap(self, pgmap: DevPagemap) -> None:
        if pgmap.ref <= 0:
            raise KernelBug(f"put_dev_pagemap: {pgmap} has no reference left")
        pgmap.ref -= 1

    def device_sections(self) -> set[int]:
        """Sections that hold device subsections (they get no memory block)."""
        return {s for pg in self.pgmaps
                for s in range(pg.pfn_first() >> PFN_SECTION_SHIFT, ((pg.pfn_end() - 1) >> PFN_SECTION_SHIFT) + 1)}

    # ------------------------------------------------------------ memremap_pages
    def memremap_pages(self, pgmap: DevPagemap, nid: int = -1) -> int:
        """memremap_pages(): the range's kernel virtual address (__va(res->start))."""
        k = self.k
        if k.config.memory_model != "sparsemem-vmemmap":
            raise EOPNOTSUPP("memremap_pages: ZONE_DEVICE needs SPARSEMEM_VMEMMAP")
        if pgmap.live or pgmap in self.pgmaps:
            raise KernelBug(f"memremap_pages: {pgmap} is already mapped")
        res = pgmap.res
        need_devmap_managed = True
        if pgmap.type == MEMORY_DEVICE_PRIVATE:
            if pgmap.ops is None or pgmap.ops.migrate_to_ram is None:
                self._warn("Missing migrate_to_ram method")
                raise EINVAL("memremap_pages: Missing migrate_to_ram method")
            if pgmap.owner is None:
                self._warn("Missing owner")
                raise EINVAL("memremap_pages: Missing owner")
        elif pgmap.type in (MEMORY_DEVICE_DEVDAX, MEMORY_DEVICE_PCI_P2PDMA):
            need_devmap_managed = False
        elif pgmap.type != MEMORY_DEVICE_FS_DAX:
            self._warn(f"Invalid pgmap type {pgmap.type}")
        if need_devmap_managed and (pgmap.ops is None or pgmap.ops.page_free is None):
            self._warn("Missing page_free method")
            raise EINVAL("memremap_pages: Missing page_free method")
        start_pfn, nr_pages = res.start >> 12, res.size() >> 12
        for pfn in (res.start >> 12, res.end >> 12):
            conflict = self.get_dev_pagemap(pfn)
            if conflict is not None:
                self.put_dev_pagemap(conflict)
                self._warn("Conflicting mapping in same section")
                raise ENOMEM("memremap_pages: Conflicting mapping in same section")
        is_ram = region_intersects(k.iomem_resource, res.start, res.size(), IORESOURCE_SYSTEM_RAM,
                                   IORES_DESC_NONE)
        if is_ram != REGION_DISJOINT:
            what = "mixed" if is_ram == REGION_MIXED else "ram"
            k.printk_once(f"WARNING: memremap_pages attempted on {what} region "
                          f"[mem {res.start:#010x}-{res.end:#010x} flags {res.flags:#x}]")
            raise ENXIO(f"memremap_pages: the range is {what}")
        if nid < 0:
            nid = k.numa_node_id()
        if not 0 <= nid < len(k.pgdats):
            raise KernelBug(f"memremap_pages: node {nid} does not exist")
        # add_pages() for DEVICE_PRIVATE (no direct map), arch_add_memory() for the rest;
        # both end in __add_pages() (E2BIG, EINVAL misaligned, EEXIST, ENOMEM: nothing kept)
        k.memory_hotplug.add_pages(nid, start_pfn, nr_pages)
        self.pgmaps.append(pgmap)
        self.pgmaps.sort(key=lambda p: p.res.start)
        pgmap.nid = nid
        pgmap.devmap_managed = need_devmap_managed  # devmap_managed_enable_get()
        self.devmap_managed_enable += need_devmap_managed
        zone = k.pgdats[nid].zone_of(ZONE_DEVICE)
        k.memory_hotplug.move_pfn_range_to_zone(zone, start_pfn, nr_pages)
        self.memmap_init_zone_device(zone, start_pfn, nr_pages, pgmap)
        pgmap.live = True
        pgmap.ref = 1 + nr_pages  # percpu_ref_init + percpu_ref_get_many
        return PAGE_OFFSET + res.start

    def memmap_init_zone_device(self, zone, start_pfn: int, nr_pages: int, pgmap: DevPagemap) -> None:
        """Each page: zone Device and node links, PG_reserved, refcount 1, its pgmap."""
        mm = DeviceMemMap(pgmap, nr_pages)
        end = start_pfn + nr_pages
        mm.set_page_links(start_pfn, end, zone.idx, zone.zone_pgdat.node_id)
        mm.flags[start_pfn:end] |= np.uint64(1 << PG_reserved)
        mm.refcount[start_pfn:end] = 1
        pgmap.memmap = mm
        pgmap.frames = FrameStore(mm)
        self.k.printk(f"memmap_init_zone_device initialised {nr_pages} pages in 0ms")

    # ------------------------------------------------------------ memunmap_pages
    def memunmap_pages(self, pgmap: DevPagemap) -> None:
        """Kill the pgmap, drop each page's idle reference, remove the sections and
        their memmap, forget the range.  The kernel then waits for every reference:
        a page still in use would block it forever, so the model refuses that first."""
        k = self.k
        if not pgmap.live or pgmap not in self.pgmaps:
            raise KernelBug(f"memunmap_pages: {pgmap} is not mapped")
        mm = pgmap.memmap
        s, e = pgmap.pfn_first(), pgmap.pfn_end()
        rc = mm.refcount.a
        busy = np.flatnonzero(rc != 1)
        extra = pgmap.ref - 1 - int(np.count_nonzero(rc))
        if len(busy) or extra:
            what = (f"page pfn {s + int(busy[0]):#x} has refcount {int(rc[busy[0]])}" if len(busy)
                    else f"{extra} get_dev_pagemap() reference(s) are held")
            raise WouldBlock(f"memunmap_pages: {what}; the kernel would wait in "
                             "dev_pagemap_cleanup() forever")
        pgmap.live = False          # dev_pagemap_kill()
        pgmap.ref -= 1
        rc[:] = 0                   # put_page() of every idle page: __put_page() ...
        pgmap.ref -= e - s          # ... drops its pgmap reference: the ref reaches 0
        # ZONE_DEVICE zones are not shrunk (remove_pfn_range_from_zone, v5.7)
        k.memory_hotplug.remove_pages(s, e - s)
        self.pgmaps.remove(pgmap)   # pgmap_array_delete()
        self.devmap_managed_enable -= pgmap.devmap_managed  # devmap_managed_enable_put()
        pgmap.memmap = None
        pgmap.frames = None

    # ------------------------------------------------------------ page references
    def get_page(self, pgmap: DevPagemap, pfn: int) -> None:
        pgmap.memmap.refcount[pfn] += 1

    def put_page(self, pgmap: DevPagemap, pfn: int) -> None:
        """put_devmap_managed_page() for DEVICE_PRIVATE / FS_DAX: back at 1 the page
        is free (ops.page_free); at 0, __put_page() drops the pgmap reference."""
        mm = pgmap.memmap
        count = int(mm.refcount[pfn]) - 1
        if count < 0:
            raise KernelBug(f"put_page: device page pfn {pfn:#x} has refcount 0")
        mm.refcount[pfn] = count
        managed = pgmap.type in (MEMORY_DEVICE_PRIVATE, MEMORY_DEVICE_FS_DAX)  # page_is_devmap_managed
        if managed and count == 1:
            mm.clear(pfn, PG_active)
            mm.clear(pfn, PG_waiters)
            if pgmap.type == MEMORY_DEVICE_PRIVATE:
                mm.mapping[pfn] = 0
            pgmap.ops.page_free(Page(pfn, mm))
        elif count == 0:
            self.put_dev_pagemap(pgmap)

    def _warn(self, msg: str) -> None:
        k = self.k
        k.printk(msg)
        k.printk(f"WARNING: CPU: {k.current_cpu()} PID: {k.current_ctx().pid} at mm/memremap.c "
                 "memremap_pages")

    # ------------------------------------------------------------ checks
    def check(self) -> None:
        """Every live pgmap: sections valid, pages in ZONE_DEVICE, reserved, referenced,
        and its percpu ref at least 1 + the pages holding a reference."""
        k = self.k
        for pg in self.pgmaps:
            if not pg.live or pg.memmap is None:
                raise KernelBug(f"{pg} is in pgmap_array but not live")
            s, e = pg.pfn_first(), pg.pfn_end()
            for pfn in range(s, e, PAGES_PER_SECTION // 64):
                if not k.pfn_valid(pfn):
                    raise KernelBug(f"ZONE_DEVICE pfn {pfn:#x} of {pg} is not pfn_valid")
            mm = pg.memmap
            zones = (mm.flags.a >> np.uint64(mm.zones_pgoff)) & np.uint64(7)
            if np.any(zones != k.zone_index[ZONE_DEVICE]):
                raise KernelBug(f"{pg}: a page is not in ZONE_DEVICE")
            if np.any((mm.flags.a >> np.uint64(PG_reserved)) & np.uint64(1) == 0):
                raise KernelBug(f"{pg}: a device page lost PG_reserved")
            if np.any(mm.refcount.a < 0):
                raise KernelBug(f"{pg}: a device page has a negative refcount")
            held = int(np.count_nonzero(mm.refcount.a))
            if pg.ref < 1 + held:
                raise KernelBug(f"{pg}: percpu ref {pg.ref} < 1 + {held} referenced pages")
