"""Offlining and onlining memory blocks (mm/memory_hotplug.c, memory-model.md ops 7-8).

Offlining isolates the block's pageblocks, migrates every LRU page out of it
(mm/migrate.py), then takes the isolated free blocks out of the buddy allocator.
"""
from __future__ import annotations

import numpy as np

from ..errors import EBUSY, EINVAL
from .gfp import MIGRATE_ISOLATE, MIGRATE_MOVABLE
from .memory_model import (MAX_ORDER, PAGES_PER_SECTION, PAGES_PER_SUBSECTION, PFN_SECTION_SHIFT,
                           SECTION_IS_ONLINE, ZONE_MOVABLE, ZONE_NORMAL)
from .page import PG_lru, PG_reserved

MMOP_OFFLINE, MMOP_ONLINE, MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE = 0, 1, 2, 3
_ONLINE_TYPES = {"online": MMOP_ONLINE, "online_kernel": MMOP_ONLINE_KERNEL,
                 "online_movable": MMOP_ONLINE_MOVABLE}


def _section_chunks(pfn: int, nr_pages: int):
    """[pfn, pfn+nr_pages) cut at section boundaries: (start, nr) pairs."""
    end = pfn + nr_pages
    while pfn < end:
        n = min(end, (pfn + PAGES_PER_SECTION) & ~(PAGES_PER_SECTION - 1)) - pfn
        yield pfn, n
        pfn += n


def release_mem_region_adjustable(root, start: int, size: int) -> None:
    """Release [start, start+size) from the System RAM resource holding it: the
    resource goes, shrinks, or splits in two (kernel/resource.c)."""
    from ..resource import Resource, release_resource, request_resource_conflict
    end = start + size - 1
    for r in list(root.children):
        if r.name != "System RAM" or r.start > start or r.end < end:
            continue
        if r.start == start and r.end == end:
            release_resource(r)
        elif r.start == start:
            r.start = end + 1
        elif r.end == end:
            r.end = start - 1
        else:
            tail = Resource(end + 1, r.end, r.name, r.flags, r.desc)
            r.end = start - 1
            request_resource_conflict(root, tail)
        return


class MemoryHotplug:
    def __init__(self, k):
        self.k = k
        self.movable_node = "movable_node" in k.config.params
        word = (k.config.params.get("memhp_default_state") or "offline").strip()
        self.default_online_type = {"offline": MMOP_OFFLINE, **_ONLINE_TYPES}.get(word, MMOP_OFFLINE)
        self.hot_added: list[tuple[int, int]] = []  # (start_pfn, end_pfn)

    # ------------------------------------------------------------ hot-add
    def probe(self, text: str) -> None:
        """The probe file: add one memory block at the given physical address (base 0)."""
        from ..config import memparse
        k = self.k
        phys, rest = memparse(text.strip())
        if rest.strip():
            raise EINVAL(f"probe: cannot parse {text!r}")
        if phys % k.memory_block_size:  # probe_store()
            raise EINVAL(f"probe: {phys:#x} is not aligned to the memory block size")
        nid = self.block_nid(phys >> 12, (phys >> 12) + 1)
        self.add_memory(nid, phys, k.memory_block_size)

    def grow_memmap(self, end_pfn: int) -> None:
        """Extend the RAM memmap and pageblock flags up to end_pfn."""
        k = self.k
        nr = (end_pfn + PAGES_PER_SECTION - 1) & ~(PAGES_PER_SECTION - 1)
        k.memmap.grow(nr)
        k.sparse.ensure_sections(nr)
        pb = np.zeros(nr // self.k.page_alloc.pageblock_nr_pages, np.uint8)
        pb[:len(k.page_alloc.pageblock_flags)] = k.page_alloc.pageblock_flags
        k.page_alloc.pageblock_flags = pb

    def add_memory(self, nid: int, start: int, size: int) -> None:
        """__add_memory(): register the "System RAM" resource (EEXIST when it overlaps one
        or lies beyond iomem), check_hotplug_memory_range (EINVAL), arch_add_memory
        (sections, memmap from the buddy allocator), blocks offline, then auto-online."""
        from ..errors import EEXIST, Errno
        from ..resource import IORESOURCE_BUSY, IORESOURCE_SYSTEM_RAM, release_resource, request_region
        k = self.k
        bs = k.memory_block_size
        res = request_region(k.iomem_resource, start, size, "System RAM",
                             IORESOURCE_SYSTEM_RAM | IORESOURCE_BUSY) if size > 0 else None
        if res is None and size > 0:
            raise EEXIST("add_memory: the range overlaps an existing resource")
        s_pfn, e_pfn = start >> 12, (start + size) >> 12
        try:
            if start % bs or size % bs or not size:
                k.printk(f"Block size [{bs:#x}] unaligned hotplug range: start {start:#x}, size {size:#x}")
                raise EINVAL("add_memory: unaligned range")
            self.add_pages(nid, s_pfn, e_pfn - s_pfn)
        except Errno:
            if res is not None:
                release_resource(res)
            raise
        if e_pfn > k.memmap.nr:
            self.grow_memmap(e_pfn)
        mm = k.memmap
        mm.flags[s_pfn:e_pfn] = np.uint64(1 << PG_reserved)
        mm.refcount[s_pfn:e_pfn] = 1
        k.layout.memory.append((s_pfn, e_pfn, nid))
        k.layout.memory.sort()
        k.layout.e820.append(type(k.layout.e820[0])(start, start + size, "usable"))
        self.hot_added.append((s_pfn, e_pfn))
        if self.default_online_type != MMOP_OFFLINE:
            for b in range(s_pfn, e_pfn, bs >> 12):
                self.online_pages(b, bs >> 12, self.default_online_type, nid)

    # ------------------------------------------------------------ sections
    def __add_pages(self, nid: int, pfn: int, nr_pages: int) -> None:
        """Add the sections of [pfn, pfn+nr_pages): E2BIG past MAX_PHYSMEM_BITS, EINVAL
        unless 2 MiB aligned (VMEMMAP subsections), then sparse_add_section per section.
        A failure part-way removes what was added (memory-model.md: nothing left behind)."""
        from ..errors import E2BIG
        k = self.k
        bits = k.config.max_physmem_bits
        max_addr = ((pfn + nr_pages) << 12) - 1
        if max_addr >> bits:
            k.printk(f"Hotplugged memory exceeds maximum addressable address, range={pfn << 12:#x}-"
                     f"{max_addr:#x}, maximum={(1 << (bits + 1)) - 1:#x}")
            raise E2BIG("__add_pages: beyond MAX_PHYSMEM_BITS")
        align = PAGES_PER_SUBSECTION if k.config.memory_model == "sparsemem-vmemmap" else PAGES_PER_SECTION
        if pfn % align or nr_pages % align or not nr_pages:
            k.printk(f"Misaligned __add_pages start: {pfn:#x} end: #{pfn + nr_pages - 1:x}")
            raise EINVAL("__add_pages: misaligned range")
        done = []
        try:
            for p, n in _section_chunks(pfn, nr_pages):
                k.sparse.sparse_add_section(nid, p, n)
                done.append((p, n))
        except Exception:
            for p, n in reversed(done):
                k.sparse.sparse_remove_section(p, n)
            raise

    def add_pages(self, nid: int, pfn: int, nr_pages: int) -> None:
        """x86_64 add_pages(): __add_pages, then update_end_of_memory_vars (max_pfn)."""
        self.__add_pages(nid, pfn, nr_pages)
        lay = self.k.layout
        lay.max_pfn = max(lay.max_pfn, pfn + nr_pages)

    def remove_pages(self, pfn: int, nr_pages: int) -> None:
        """__remove_pages(): sparse_remove_section per section (memmap freed)."""
        for p, n in _section_chunks(pfn, nr_pages):
            self.k.sparse.sparse_remove_section(p, n)

    # ------------------------------------------------------------ helpers
    def block_range(self, nr: int) -> tuple[int, int]:
        n = self.k.memory_block_size >> 12
        return nr * n, (nr + 1) * n

    def system_ram_pages(self, start: int, end: int) -> int:
        return sum(max(0, min(e, end) - max(s, start)) for s, e, _ in self.k.layout.memory)

    def block_online(self, start: int, end: int) -> bool:
        k = self.k
        return any(k.section_flags[s] & SECTION_IS_ONLINE
                   for s in range(start >> PFN_SECTION_SHIFT, end >> PFN_SECTION_SHIFT))

    def block_nid(self, start: int, end: int) -> int:
        for s, e, nid in self.k.layout.memory:
            if s < end and e > start:
                return nid
        return 0

    def zone_for_pfn_range(self, online_type: int, nid: int, start: int, nr: int):
        """default_kernel_zone_for_pfn / default_zone_for_pfn (v5.7)."""
        pg = self.k.pgdats[nid]
        kernel = next((z for z in pg.node_zones if z.type <= ZONE_NORMAL
                       and z.spanned_pages and z.zone_start_pfn < start + nr and start < z.zone_end_pfn),
                      pg.zone_of(ZONE_NORMAL))
        movable = pg.zone_of(ZONE_MOVABLE)
        if online_type == MMOP_ONLINE_KERNEL:
            return kernel
        if online_type == MMOP_ONLINE_MOVABLE:
            return movable
        in_kernel = kernel.spanned_pages and kernel.zone_start_pfn < start + nr and start < kernel.zone_end_pfn
        in_movable = movable.spanned_pages and movable.zone_start_pfn < start + nr and start < movable.zone_end_pfn
        if in_kernel ^ bool(in_movable):
            return kernel if in_kernel else movable
        return movable if self.movable_node else kernel

    def valid_zones(self, nr: int) -> str:
        """An offline block: the default zone, then the kernel zone and Movable if different."""
        start, end = self.block_range(nr)
        nid = self.block_nid(start, end)
        default = self.zone_for_pfn_range(MMOP_ONLINE, nid, start, end - start)
        names = [default.name]
        for z in (self.zone_for_pfn_range(MMOP_ONLINE_KERNEL, nid, start, end - start),
                  self.k.pgdats[nid].zone_of(ZONE_MOVABLE)):
            if z.name not in names:
                names.append(z.name)
        return " ".join(names) + "\n"

    def remove_memory(self, nid: int, start: int, size: int) -> None:
        """remove_memory(): EBUSY unless every block of the range is offline; then the
        sections, the memmap (hot-added ranges: its order-9 blocks) and the RAM go."""
        k = self.k
        bs = k.memory_block_size
        if start % bs or size % bs or not size:
            raise EINVAL("remove_memory: unaligned range")
        s_pfn, e_pfn = start >> 12, (start + size) >> 12
        for b in range(s_pfn, e_pfn, bs >> 12):
            if self.block_online(b, b + (bs >> 12)):
                raise EBUSY("remove_memory: a block of the range is online")
        lay = k.layout
        kept = []
        for s, e, n in lay.memory:
            if e <= s_pfn or s >= e_pfn:
                kept.append((s, e, n))
            else:
                if s < s_pfn:
                    kept.append((s, s_pfn, n))
                if e > e_pfn:
                    kept.append((e_pfn, e, n))
        lay.memory[:] = kept
        lay.e820[:] = [x for x in lay.e820 if not ((x.start >> 12) < e_pfn and (x.end >> 12) > s_pfn)]
        self.remove_pages(s_pfn, e_pfn - s_pfn)
        k.memmap.flags[s_pfn:e_pfn] = 0
        k.memmap.refcount[s_pfn:e_pfn] = 0
        for hs, he in list(self.hot_added):
            if hs < e_pfn and he > s_pfn:
                self.hot_added.remove((hs, he))
        release_mem_region_adjustable(k.iomem_resource, start, size)

    # ------------------------------------------------------------ state writes
    def write_state(self, nr: int, text: str) -> None:
        word = text.strip()
        start, end = self.block_range(nr)
        online = self.block_online(start, end)
        if word == "offline":
            if not online:
                raise EINVAL(f"memory{nr} is already offline")
            self.offline_pages(start, end - start)
        elif word in _ONLINE_TYPES:
            if online:
                raise EINVAL(f"memory{nr} is already online")
            self.online_pages(start, end - start, _ONLINE_TYPES[word], self.block_nid(start, end))
        else:
            raise EINVAL(f"memory{nr}/state: unknown word {word!r}")

    def has_unmovable_pages(self, zone, start: int, end: int) -> int | None:
        """The first unmovable pfn of [start, end), or None."""
        mm = self.k.memmap
        pfn = start
        while pfn < end:
            if mm.test(pfn, PG_reserved):
                return pfn
            if zone.type == ZONE_MOVABLE:
                pfn += 1
                continue
            if mm.PageBuddy(pfn):
                pfn += 1 << int(mm.private[pfn])
                continue
            if int(mm.refcount[pfn]) == 0 or mm.test(pfn, PG_lru):
                pfn += 1
                continue
            return pfn
        return None

    def offline_pages(self, start: int, nr: int) -> None:
        k = self.k
        pa = k.page_alloc
        mm = k.memmap
        end = start + nr
        if self.system_ram_pages(start, end) != nr:
            raise EINVAL("offline: memory holes")
        zones = {k.page_zone_of(p) for p in range(start, end, self.k.page_alloc.pageblock_nr_pages)}
        if len(zones) != 1:
            raise EINVAL("offline: pages of more than one zone")
        zone = zones.pop()
        for pb in range(start, end, self.k.page_alloc.pageblock_nr_pages):
            bad = self.has_unmovable_pages(zone, pb, pb + self.k.page_alloc.pageblock_nr_pages)
            if bad is not None:
                self.dump_page(bad, "unmovable page")
                raise EBUSY("offline: unmovable page")
        self.start_isolate_page_range(zone, start, end)
        pa.drain_all_pages(zone)
        k.vmscan.lru_add_drain_all()
        for pfn in range(start, end):
            if mm.PageBuddy(pfn) or not int(mm.refcount[pfn]) or not mm.test(pfn, PG_lru):
                continue
            if not k.migrate.migrate_page(pfn, "memory_hotplug"):
                break
        busy = [p for p in range(start, end) if not mm.PageBuddy(p) and int(mm.refcount[p])
                and not (p > start and self._inside_free_block(p))]
        if busy:
            self.undo_isolate_page_range(zone, start, end)
            self.dump_page(busy[0], "isolation failed")
            raise EBUSY("offline: a page could not be migrated")
        # __offline_isolated_pages(): the isolated free blocks leave the buddy allocator
        pfn = start
        while pfn < end:
            order = int(mm.private[pfn])
            pa._del_from_free_area(pfn, zone, order, MIGRATE_ISOLATE)
            pfn += 1 << order
        mm.flags[start:end] |= np.uint64(1 << PG_reserved)
        mm.refcount[start:end] = 1
        pa.pageblock_flags[start >> pa.pageblock_order:end >> pa.pageblock_order] = MIGRATE_MOVABLE
        zone.managed_pages -= nr
        zone.present_pages -= nr
        zone.zone_pgdat.node_present_pages -= nr
        k.section_flags[start >> PFN_SECTION_SHIFT:end >> PFN_SECTION_SHIFT] &= np.uint8(0xFF & ~SECTION_IS_ONLINE)
        k.printk(f"Offlined Pages {nr}")
        self._after_change()

    def _inside_free_block(self, pfn: int) -> bool:
        """pfn is a tail of a free buddy block (its head is PageBuddy)."""
        mm = self.k.memmap
        for order in range(1, MAX_ORDER):
            head = pfn & ~((1 << order) - 1)
            if mm.PageBuddy(head) and int(mm.private[head]) >= order:
                return True
        return False

    def start_isolate_page_range(self, zone, start: int, end: int) -> None:
        """set_migratetype_isolate() per pageblock: free pages move to the isolate lists
        and stop counting as free."""
        pa = self.k.page_alloc
        for pb in range(start, end, self.k.page_alloc.pageblock_nr_pages):
            pa.set_pageblock_migratetype(pb, MIGRATE_ISOLATE)
            moved, _ = pa.move_freepages_block(zone, pb, MIGRATE_ISOLATE)
            zone.vm_stat["nr_free_pages"] -= moved

    def undo_isolate_page_range(self, zone, start: int, end: int) -> None:
        pa = self.k.page_alloc
        for pb in range(start, end, self.k.page_alloc.pageblock_nr_pages):
            moved, _ = pa.move_freepages_block(zone, pb, MIGRATE_MOVABLE)
            pa.set_pageblock_migratetype(pb, MIGRATE_MOVABLE)
            zone.vm_stat["nr_free_pages"] += moved

    def online_pages(self, start: int, nr: int, online_type: int, nid: int) -> None:
        k = self.k
        pa = k.page_alloc
        mm = k.memmap
        zone = self.zone_for_pfn_range(online_type, nid, start, nr)
        self.move_pfn_range_to_zone(zone, start, nr)
        mm.set_page_links(start, start + nr, zone.idx, nid)  # memmap_init_zone()
        pa.pageblock_flags[start >> pa.pageblock_order:(start + nr) >> pa.pageblock_order] = MIGRATE_MOVABLE
        k.section_flags[start >> PFN_SECTION_SHIFT:(start + nr) >> PFN_SECTION_SHIFT] |= SECTION_IS_ONLINE
        zone.present_pages += nr
        zone.zone_pgdat.node_present_pages += nr
        pfn = start
        while pfn < start + nr:  # online_pages_range: max-order chunks, __free_pages_core
            order = min(MAX_ORDER - 1, (start + nr - pfn).bit_length() - 1)
            pa.memblock_free_range(pfn, pfn + (1 << order))
            pfn += 1 << order
        self._after_change()

    @staticmethod
    def move_pfn_range_to_zone(zone, start_pfn: int, nr_pages: int) -> None:
        """resize_zone_range() and resize_pgdat_range(): the zone and the node span
        the range (online_pages and memremap_pages)."""
        end = start_pfn + nr_pages
        old_end = zone.zone_end_pfn if zone.spanned_pages else 0
        if not zone.spanned_pages or start_pfn < zone.zone_start_pfn:
            zone.zone_start_pfn = start_pfn
        zone.spanned_pages = max(end, old_end) - zone.zone_start_pfn
        pg = zone.zone_pgdat
        old_end = pg.node_end_pfn
        if not pg.node_spanned_pages or start_pfn < pg.node_start_pfn:
            pg.node_start_pfn = start_pfn
        pg.node_spanned_pages = max(end, old_end) - pg.node_start_pfn

    def _after_change(self) -> None:
        k = self.k
        k._ac_cache.clear()  # build_all_zonelists()
        k.page_alloc.init_per_zone_wmark_min()
        for z in k.all_zones():
            k.page_alloc.zone_pageset_init(z)

    def dump_page(self, pfn: int, reason: str) -> None:
        from .debug import dump_page
        dump_page(self.k, pfn, reason)
