"""The buddy allocator: free lists, per-cpu lists, watermarks (mm/page_alloc.c).

Free lists are ordered dicts keyed by pfn whose *end* is the list head
(list_add puts a block at the head, list_add_tail at the tail).  The order of
a free block lives in page_private and PageBuddy in page_type, as in v5.7.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import KernelBug
from . import gfp as G
from .gfp import (MIGRATE_HIGHATOMIC, MIGRATE_ISOLATE, MIGRATE_MOVABLE, MIGRATE_PCPTYPES,
                  MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE)
from .memory_model import MAX_ORDER, ZONE_DMA32, ZONE_NORMAL, Page, pageblock_order
from .mmzone import WMARK_HIGH, WMARK_LOW, WMARK_MIN, ZONE_BOOSTED_WATERMARK, Zone
from .page import PG_head, PG_reported, PG_reserved, TAIL_MAPPING
from .watermark import ZoneWatermarks, fls, mult_frac, rounddown_pow_of_two  # noqa: F401

if TYPE_CHECKING:
    from ..kernel import Kernel

# mm/internal.h alloc flags
ALLOC_WMARK_MIN, ALLOC_WMARK_LOW, ALLOC_WMARK_HIGH = WMARK_MIN, WMARK_LOW, WMARK_HIGH
ALLOC_NO_WATERMARKS = 0x04
ALLOC_WMARK_MASK = ALLOC_NO_WATERMARKS - 1
ALLOC_OOM = 0x08
ALLOC_HARDER = 0x10
ALLOC_HIGH = 0x20
ALLOC_CPUSET = 0x40
ALLOC_CMA = 0x80
ALLOC_NOFRAGMENT = 0x100
ALLOC_KSWAPD = 0x200

PAGE_ALLOC_COSTLY_ORDER = 3

fallbacks = {
    MIGRATE_UNMOVABLE: (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),
    MIGRATE_MOVABLE: (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),
    MIGRATE_RECLAIMABLE: (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),
}

# flags that must be clear when a page is freed (PAGE_FLAGS_CHECK_AT_FREE, subset)
_CHECK_AT_FREE = sum(1 << b for b in (4, 0, 13, 14, 15, 12, 9, 5, 20, 21))


class PageAllocator(ZoneWatermarks):
    """Buddy allocator state shared by all zones of the machine."""

    def __init__(self, k: "Kernel"):
        self.k = k
        self.mm = k.memmap
        # pageblock_order = HUGETLB_PAGE_ORDER: 9, but 10 (4 MiB pages) on non-PAE i386
        self.pageblock_order = 10 if k.config.arch == "i386" else pageblock_order
        self.pageblock_nr_pages = 1 << self.pageblock_order
        nblocks = (k.memmap.nr + self.pageblock_nr_pages - 1) // self.pageblock_nr_pages
        self.pageblock_flags = np.zeros(nblocks, np.uint8)  # migratetype per pageblock
        self.min_free_kbytes = 1024
        self.user_min_free_kbytes = -1
        self.watermark_scale_factor = 10
        self.watermark_boost_factor = 15000
        # sysctl_lowmem_reserve_ratio[] by zone index: DMA/DMA32 256, Normal 32, others 0
        self.lowmem_reserve_ratio = [{0: 256, 1: 256, 2: 32}.get(t, 0) for t in k.pgdats[0].zone_types]
        self.percpu_pagelist_fraction = 0
        self.totalreserve_pages = 0
        self.zone_reclaim_mode = 0
        self.fail_next: list[int] = []  # fail_page_alloc one-shots (orders)
        # subsystems that watch the allocator (page_owner, page reporting ...):
        self.alloc_hooks: list = []  # fn(pfn, order, gfp) after prep_new_page
        self.free_hooks: list = []  # fn(pfn, order) at free_pages_prepare
        self.free_block_hooks: list = []  # fn(zone, pfn, order) when a block joins a free list

    # ------------------------------------------------------------ pageblocks
    def get_pageblock_migratetype(self, pfn: int) -> int:
        return int(self.pageblock_flags[pfn >> self.pageblock_order])

    def set_pageblock_migratetype(self, pfn: int, mt: int) -> None:
        self.pageblock_flags[pfn >> self.pageblock_order] = mt

    # ------------------------------------------------------------ free lists
    def _add_to_free_area(self, pfn: int, zone: Zone, order: int, mt: int, tail: bool = False) -> None:
        area = zone.free_area[order]
        fl = area.free_list[mt]
        fl[pfn] = None
        if tail:
            fl.move_to_end(pfn, last=False)
        area.nr_free += 1
        self.mm.set_buddy(pfn, order)

    def _del_from_free_area(self, pfn: int, zone: Zone, order: int, mt: int) -> None:
        area = zone.free_area[order]
        del area.free_list[mt][pfn]
        area.nr_free -= 1
        self.mm.clear_buddy(pfn)
        self.mm.clear(pfn, PG_reported)  # __ClearPageReported (page_reporting.md)

    def _buddy_mt(self, zone: Zone, pfn: int, order: int) -> int:
        """Which free list holds the free block at pfn (found by lookup)."""
        for mt, fl in enumerate(zone.free_area[order].free_list):
            if pfn in fl:
                return mt
        raise KernelBug(f"PageBuddy pfn {pfn:#x} order {order} is on no free list")

    def page_is_buddy(self, zone: Zone, buddy: int, order: int) -> bool:
        mm = self.mm
        if buddy >= mm.nr or not mm.PageBuddy(buddy) or int(mm.private[buddy]) != order:
            return False
        return self.k.page_zone_of(buddy) is zone

    def __free_one_page(self, pfn: int, zone: Zone, order: int, mt: int, report: bool = True) -> None:
        """Merge with free buddies, then put the block on its free list; tell page
        reporting unless the block is one it isolated (report=False)."""
        if mt != MIGRATE_ISOLATE:
            zone.vm_stat["nr_free_pages"] += 1 << order
        max_order = min(MAX_ORDER, self.pageblock_order + 1)
        buddy_pfn = pfn
        while True:
            while order < max_order - 1:
                buddy_pfn = pfn ^ (1 << order)
                if not self.page_is_buddy(zone, buddy_pfn, order):
                    break
                self._del_from_free_area(buddy_pfn, zone, order, self._buddy_mt(zone, buddy_pfn, order))
                pfn &= buddy_pfn
                order += 1
            else:
                if max_order < MAX_ORDER:
                    buddy_pfn = pfn ^ (1 << order)
                    if self.page_is_buddy(zone, buddy_pfn, order):
                        bmt = self.get_pageblock_migratetype(buddy_pfn)
                        if mt != bmt and MIGRATE_ISOLATE in (mt, bmt):
                            break
                    max_order = MAX_ORDER
                    continue
            break
        tail = False
        if order < MAX_ORDER - 2:
            combined = buddy_pfn & pfn
            higher_buddy = combined ^ (1 << (order + 1))
            if self.page_is_buddy(zone, higher_buddy, order + 1):
                tail = True
        self._add_to_free_area(pfn, zone, order, mt, tail=tail)
        if report:
            for hook in self.free_block_hooks:  # page_reporting_notify_free()
                hook(zone, pfn, order)

    def free_one_page(self, zone: Zone, pfn: int, order: int, mt: int) -> None:
        self.__free_one_page(pfn, zone, order, mt)

    def isolate_free_page(self, pfn: int, order: int) -> int:
        """__isolate_free_page(): take a free block off its list unless the zone would
        drop to min + 2^order; its pageblocks become Movable (order >= pageblock_order - 1)."""
        zone = self.k.page_zone_of(pfn)
        mt = self.get_pageblock_migratetype(pfn)
        if mt != MIGRATE_ISOLATE:
            if not self.zone_watermark_ok(zone, 0, zone._watermark[WMARK_MIN] + (1 << order), 0,
                                          ALLOC_CMA):
                return 0
            zone.vm_stat["nr_free_pages"] -= 1 << order
        self._del_from_free_area(pfn, zone, order, self._buddy_mt(zone, pfn, order))
        if order >= self.pageblock_order - 1:
            for p in range(pfn, pfn + (1 << order) - 1, self.pageblock_nr_pages):
                if self.get_pageblock_migratetype(p) not in (MIGRATE_ISOLATE, MIGRATE_HIGHATOMIC):
                    self.set_pageblock_migratetype(p, MIGRATE_MOVABLE)
        return 1 << order

    def putback_isolated_page(self, pfn: int, order: int, mt: int) -> None:
        """__putback_isolated_page(): back to the buddy lists without a report."""
        self.__free_one_page(pfn, self.k.page_zone_of(pfn), order, mt, report=False)

    def __rmqueue_smallest(self, zone: Zone, order: int, mt: int) -> int | None:
        for cur in range(order, MAX_ORDER):
            fl = zone.free_area[cur].free_list[mt]
            if not fl:
                continue
            pfn = next(reversed(fl))
            self._del_from_free_area(pfn, zone, cur, mt)
            self._expand(zone, pfn, order, cur, mt)
            self.mm.index[pfn] = mt  # set_pcppage_migratetype
            return pfn
        return None

    def _expand(self, zone: Zone, pfn: int, low: int, high: int, mt: int) -> None:
        size = 1 << high
        while high > low:
            high -= 1
            size >>= 1
            self._add_to_free_area(pfn + size, zone, high, mt)

    # ------------------------------------------------------------ fallback
    def can_steal_fallback(self, order: int, start_mt: int) -> bool:
        if order >= self.pageblock_order:
            return True
        return (order >= self.pageblock_order // 2 or start_mt == MIGRATE_RECLAIMABLE
                or start_mt == MIGRATE_UNMOVABLE)

    def find_suitable_fallback(self, zone: Zone, order: int, mt: int) -> tuple[int, bool]:
        area = zone.free_area[order]
        if area.nr_free == 0:
            return -1, False
        for fmt in fallbacks[mt]:
            if not area.free_list[fmt]:
                continue
            return fmt, self.can_steal_fallback(order, mt)
        return -1, False

    def move_freepages_block(self, zone: Zone, pfn: int, mt: int) -> tuple[int, int]:
        """Move the free blocks of pfn's pageblock to mt: (free pages, movable pages)."""
        start = pfn & ~(self.pageblock_nr_pages - 1)
        end = start + self.pageblock_nr_pages
        if start < zone.zone_start_pfn or end > zone.zone_end_pfn:
            return 0, 0
        moved = movable = 0
        p = start
        mm = self.mm
        from .page import PG_lru
        while p < end:
            if not mm.PageBuddy(p):
                if mm.test(p, PG_lru):
                    movable += 1
                p += 1
                continue
            order = int(mm.private[p])
            old = self._buddy_mt(zone, p, order)
            fl = zone.free_area[order].free_list
            del fl[old][p]
            fl[mt][p] = None
            moved += 1 << order
            p += 1 << order
        return moved, movable

    def boost_watermark(self, zone: Zone) -> bool:
        if not self.watermark_boost_factor:
            return False
        if self.pageblock_nr_pages * 4 > zone.managed_pages:
            return False
        max_boost = mult_frac(zone._watermark[WMARK_HIGH], self.watermark_boost_factor, 10000)
        if not max_boost:
            return False
        max_boost = max(self.pageblock_nr_pages, max_boost)
        zone.watermark_boost = min(zone.watermark_boost + self.pageblock_nr_pages, max_boost)
        return True

    def steal_suitable_fallback(self, zone: Zone, pfn: int, cur_order: int, alloc_flags: int,
                                start_type: int, whole_block: bool) -> None:
        old_block_type = self.get_pageblock_migratetype(pfn)
        if old_block_type != MIGRATE_HIGHATOMIC:
            if cur_order >= self.pageblock_order:
                for b in range(pfn, pfn + (1 << cur_order), self.pageblock_nr_pages):
                    self.set_pageblock_migratetype(b, start_type)
            else:
                if self.boost_watermark(zone) and alloc_flags & ALLOC_KSWAPD:
                    zone.flags |= ZONE_BOOSTED_WATERMARK
                if whole_block:
                    free_pages, movable = self.move_freepages_block(zone, pfn, start_type)
                    if start_type == MIGRATE_MOVABLE:
                        alike = movable
                    elif old_block_type == MIGRATE_MOVABLE:
                        alike = self.pageblock_nr_pages - (free_pages + movable)
                    else:
                        alike = 0
                    if free_pages:
                        if free_pages + alike >= (1 << (self.pageblock_order - 1)):
                            self.set_pageblock_migratetype(pfn, start_type)
                        return
        # single_page: move_to_free_list
        fl = zone.free_area[cur_order].free_list
        old = self._buddy_mt(zone, pfn, cur_order)
        del fl[old][pfn]
        fl[start_type][pfn] = None

    def __rmqueue_fallback(self, zone: Zone, order: int, start_mt: int, alloc_flags: int) -> bool:
        min_order = self.pageblock_order if alloc_flags & ALLOC_NOFRAGMENT else order
        found = None
        for cur in range(MAX_ORDER - 1, min_order - 1, -1):
            fmt, can_steal = self.find_suitable_fallback(zone, cur, start_mt)
            if fmt == -1:
                continue
            if not can_steal and start_mt == MIGRATE_MOVABLE and cur > order:
                for cur2 in range(order, MAX_ORDER):
                    fmt, can_steal = self.find_suitable_fallback(zone, cur2, start_mt)
                    if fmt != -1:
                        found = (cur2, fmt, can_steal)
                        break
            else:
                found = (cur, fmt, can_steal)
            break
        if found is None:
            return False
        cur, fmt, can_steal = found
        pfn = next(reversed(zone.free_area[cur].free_list[fmt]))
        self.steal_suitable_fallback(zone, pfn, cur, alloc_flags, start_mt, can_steal)
        return True

    def __rmqueue(self, zone: Zone, order: int, mt: int, alloc_flags: int) -> int | None:
        while True:
            pfn = self.__rmqueue_smallest(zone, order, mt)
            if pfn is not None:
                return pfn
            if not self.__rmqueue_fallback(zone, order, mt, alloc_flags):
                return None

    # ------------------------------------------------------------ pcp
    def rmqueue_bulk(self, zone: Zone, order: int, count: int, lst, mt: int, alloc_flags: int) -> int:
        i = 0
        for i in range(count):
            pfn = self.__rmqueue(zone, order, mt, alloc_flags)
            if pfn is None:
                break
            lst.append(pfn)
        else:
            i = count
        zone.vm_stat["nr_free_pages"] -= i << order
        return i

    def free_pcppages_bulk(self, zone: Zone, count: int, pcp) -> None:
        mt = 0
        batch_free = 0
        freed = []
        while count:
            while True:
                batch_free += 1
                mt += 1
                if mt == MIGRATE_PCPTYPES:
                    mt = 0
                lst = pcp.lists[mt]
                if lst:
                    break
            if batch_free == MIGRATE_PCPTYPES:
                batch_free = count
            while True:
                freed.append(lst.pop())
                pcp.count -= 1
                count -= 1
                batch_free -= 1
                if not count or not batch_free or not lst:
                    break
        for pfn in freed:
            mt = int(self.mm.index[pfn])
            if self.get_pageblock_migratetype(pfn) == MIGRATE_ISOLATE:  # has_isolate_pageblock
                mt = MIGRATE_ISOLATE
            self.__free_one_page(pfn, zone, 0, mt)

    def free_unref_page(self, pfn: int) -> None:
        zone = self.k.page_zone_of(pfn)
        mt = self.get_pageblock_migratetype(pfn)
        self.mm.index[pfn] = mt
        self.k.vm_events["pgfree"] += 1
        if mt >= MIGRATE_PCPTYPES:
            if mt == MIGRATE_ISOLATE:
                self.free_one_page(zone, pfn, 0, mt)
                return
            mt = MIGRATE_MOVABLE
        pcp = zone.pageset[self.k.current_cpu()]
        pcp.lists[mt].appendleft(pfn)
        pcp.count += 1
        if pcp.count >= pcp.high:
            self.free_pcppages_bulk(zone, pcp.batch, pcp)

    def drain_zone_pages(self, zone: Zone, cpu: int) -> None:
        pcp = zone.pageset[cpu]
        if pcp.count:
            self.free_pcppages_bulk(zone, pcp.count, pcp)

    def drain_all_pages(self, zone: Zone | None = None) -> None:
        for z in ([zone] if zone else self.k.all_zones()):
            for cpu in range(len(z.pageset)):
                self.drain_zone_pages(z, cpu)

    def rmqueue(self, preferred: Zone, zone: Zone, order: int, gfp: int, alloc_flags: int,
                mt: int) -> int | None:
        k = self.k
        if order == 0:
            pcp = zone.pageset[k.current_cpu()]
            lst = pcp.lists[mt]
            if not lst:
                pcp.count += self.rmqueue_bulk(zone, 0, pcp.batch, lst, mt, alloc_flags)
                if not lst:
                    return None
            pfn = lst.popleft()
            pcp.count -= 1
            k.vm_events["pgalloc_" + zone.stat_name] += 1
            self.zone_statistics(preferred, zone)
        else:
            pfn = None
            if alloc_flags & ALLOC_HARDER:
                pfn = self.__rmqueue_smallest(zone, order, MIGRATE_HIGHATOMIC)
            if pfn is None:
                pfn = self.__rmqueue(zone, order, mt, alloc_flags)
            if pfn is None:
                return None
            zone.vm_stat["nr_free_pages"] -= 1 << order
            k.vm_events["pgalloc_" + zone.stat_name] += 1 << order
            self.zone_statistics(preferred, zone)
        if zone.flags & ZONE_BOOSTED_WATERMARK:
            zone.flags &= ~ZONE_BOOSTED_WATERMARK
            k.wakeup_kswapd(zone, 0, 0, zone.idx)
        return pfn

    def zone_statistics(self, preferred: Zone, z: Zone) -> None:
        local = "numa_local" if z.node == self.k.numa_node_id() else "numa_other"
        if z.node == preferred.node:
            z.numa_stat["numa_hit"] += 1
        else:
            z.numa_stat["numa_miss"] += 1
            preferred.numa_stat["numa_foreign"] += 1
        z.numa_stat[local] += 1

    # ------------------------------------------------------------ watermarks
    def __zone_watermark_ok(self, z: Zone, order: int, mark: int, classzone_idx: int,
                            alloc_flags: int, free_pages: int) -> bool:
        min_ = mark
        free_pages -= (1 << order) - 1
        if alloc_flags & ALLOC_HIGH:
            min_ -= min_ // 2
        if not alloc_flags & (ALLOC_HARDER | ALLOC_OOM):
            free_pages -= z.nr_reserved_highatomic
        else:
            min_ -= min_ // 2 if alloc_flags & ALLOC_OOM else min_ // 4
        if not alloc_flags & ALLOC_CMA:
            free_pages -= z.vm_stat["nr_free_cma"]
        if free_pages <= min_ + z.lowmem_reserve[classzone_idx]:
            return False
        if not order:
            return True
        for o in range(order, MAX_ORDER):
            area = z.free_area[o]
            if not area.nr_free:
                continue
            for mt in range(MIGRATE_PCPTYPES):
                if area.free_list[mt]:
                    return True
            if alloc_flags & (ALLOC_HARDER | ALLOC_OOM) and area.free_list[MIGRATE_HIGHATOMIC]:
                return True
        return False

    def zone_watermark_ok(self, z: Zone, order: int, mark: int, classzone_idx: int,
                          alloc_flags: int) -> bool:
        return self.__zone_watermark_ok(z, order, mark, classzone_idx, alloc_flags,
                                        z.vm_stat["nr_free_pages"])

    zone_watermark_ok_safe = zone_watermark_ok

    def zone_watermark_fast(self, z: Zone, order: int, mark: int, classzone_idx: int,
                            alloc_flags: int) -> bool:
        free = z.vm_stat["nr_free_pages"]
        cma = 0 if alloc_flags & ALLOC_CMA else z.vm_stat["nr_free_cma"]
        if not order and free - cma > mark + z.lowmem_reserve[classzone_idx]:
            return True
        return self.__zone_watermark_ok(z, order, mark, classzone_idx, alloc_flags, free)

    # ------------------------------------------------------------ boot
    def memblock_free_range(self, start: int, end: int) -> None:
        """__free_pages_memory(): free [start, end) in naturally aligned max-order chunks."""
        k = self.k
        while start < end:
            order = min(MAX_ORDER - 1, (start & -start).bit_length() - 1 if start else MAX_ORDER - 1)
            while start + (1 << order) > end:
                order -= 1
            zone = k.page_zone_of(start)
            n = 1 << order
            self.mm.flags[start:start + n] &= np.uint64(~(1 << PG_reserved) & 0xFFFFFFFFFFFFFFFF)
            self.mm.refcount[start:start + n] = 0
            k.vm_events["pgfree"] += 1 << order
            zone.managed_pages += 1 << order
            self.__free_one_page(start, zone, order, self.get_pageblock_migratetype(start))
            start += 1 << order

    # ------------------------------------------------------------ allocation
    def gfp_to_alloc_flags(self, gfp: int) -> int:
        flags = ALLOC_WMARK_MIN | ALLOC_CPUSET
        flags |= gfp & G._GFP_HIGH  # ALLOC_HIGH == __GFP_HIGH
        if gfp & G._GFP_KSWAPD_RECLAIM:
            flags |= ALLOC_KSWAPD
        if gfp & G._GFP_ATOMIC:
            if not gfp & G._GFP_NOMEMALLOC:
                flags |= ALLOC_HARDER
            flags &= ~ALLOC_CPUSET
        return flags

    def alloc_flags_nofragment(self, zone: Zone, gfp: int) -> int:
        flags = ALLOC_KSWAPD if gfp & G._GFP_KSWAPD_RECLAIM else 0
        if zone is None or zone.type != ZONE_NORMAL or ZONE_DMA32 not in zone.zone_pgdat.zone_types:
            return flags  # ALLOC_NOFRAGMENT needs CONFIG_ZONE_DMA32
        if len(self.k.pgdats) > 1 and not zone.zone_pgdat.node_zones[zone.idx - 1].populated_zone():
            return flags
        return flags | ALLOC_NOFRAGMENT

    def get_page_from_freelist(self, gfp: int, order: int, alloc_flags: int, ac) -> int | None:
        while True:
            no_fallback = alloc_flags & ALLOC_NOFRAGMENT
            preferred = ac.preferred_zone
            for zone in ac.zones:
                if (no_fallback and len(self.k.pgdats) > 1 and zone is not preferred
                        and zone.node != preferred.node):
                    alloc_flags &= ~ALLOC_NOFRAGMENT
                    break
                mark = zone.wmark_pages(alloc_flags & ALLOC_WMARK_MASK)
                if not self.zone_watermark_fast(zone, order, mark, ac.classzone_idx, alloc_flags):
                    if not alloc_flags & ALLOC_NO_WATERMARKS:
                        continue
                pfn = self.rmqueue(preferred, zone, order, gfp, alloc_flags, ac.migratetype)
                if pfn is not None:
                    self.prep_new_page(pfn, order, gfp, alloc_flags)
                    return pfn
            else:
                if no_fallback:
                    alloc_flags &= ~ALLOC_NOFRAGMENT
                    continue
                return None

    def prep_new_page(self, pfn: int, order: int, gfp: int, alloc_flags: int = 0) -> None:
        mm = self.mm
        mm.refcount[pfn] = 1
        mm.private[pfn] = 0
        # set_page_pfmemalloc(): a page taken from the reserves has page->index == -1
        mm.index[pfn] = 0xFFFFFFFFFFFFFFFF if alloc_flags & ALLOC_NO_WATERMARKS else 0
        if order and gfp & G._GFP_COMP:
            self.prep_compound_page(pfn, order)
        if gfp & G._GFP_ZERO:
            k = self.k
            if k.highmem.enabled:  # kernel_init_free_pages(): clear_highpage() each
                for p in range(pfn, pfn + (1 << order)):
                    k.clear_highpage(Page(p, self.mm))
            else:
                fs = k.frames
                for p in range(pfn, pfn + (1 << order)):
                    fs.clear(p)
        for hook in self.alloc_hooks:  # post_alloc_hook(): set_page_owner() ...
            hook(pfn, order, gfp)

    def alloc_pages_nodemask(self, gfp: int, order: int, nid: int | None = None) -> int | None:
        """__alloc_pages_nodemask(): the pfn of a 2^order block, or None."""
        k = self.k
        if order >= MAX_ORDER:
            if not gfp & G._GFP_NOWARN:
                k.printk(f"WARNING: CPU: {k.current_cpu()} at mm/page_alloc.c:4738 "
                         f"__alloc_pages_nodemask+0x2a0/0x310")
            return None
        if gfp & G._GFP_DIRECT_RECLAIM:
            k.might_sleep("mm/page_alloc.c", 4641)
        if self.fail_next and self.fail_next[0] in (order, -1):
            self.fail_next.pop(0)
            return None
        ac = k.alloc_context(gfp, nid)
        if ac.preferred_zone is None:
            return None
        alloc_flags = ALLOC_WMARK_LOW | self.alloc_flags_nofragment(ac.preferred_zone, gfp)
        pfn = self.get_page_from_freelist(gfp, order, alloc_flags, ac)
        if pfn is None:
            pfn = self.__alloc_pages_slowpath(gfp, order, ac)
        return pfn

    def __alloc_pages_slowpath(self, gfp: int, order: int, ac) -> int | None:
        """mm/page_alloc.c __alloc_pages_slowpath() (v5.7); compaction is not modelled
        (it always reports COMPACT_SKIPPED)."""
        k = self.k
        can_direct_reclaim = bool(gfp & G._GFP_DIRECT_RECLAIM)
        costly = order > PAGE_ALLOC_COSTLY_ORDER
        alloc_flags = self.gfp_to_alloc_flags(gfp)
        task = k.current_task()
        pf_memalloc = bool(getattr(task, "pf_memalloc", False))
        if alloc_flags & ALLOC_KSWAPD:
            k.wake_all_kswapds(order, gfp, ac)
        pfn = self.get_page_from_freelist(gfp, order, alloc_flags, ac)
        if pfn is not None:
            return pfn
        if can_direct_reclaim and (costly or (order > 0 and ac.migratetype != MIGRATE_MOVABLE)) \
                and not self.gfp_pfmemalloc_allowed(gfp, task):
            if costly and gfp & G._GFP_NORETRY:  # COMPACT_SKIPPED
                return self._nopage(gfp, order, ac)
        no_progress_loops = 0
        while True:  # retry:
            if alloc_flags & ALLOC_KSWAPD:
                k.wake_all_kswapds(order, gfp, ac)
            reserve_flags = self.__gfp_pfmemalloc_flags(gfp, task)
            if reserve_flags:
                alloc_flags = reserve_flags
            pfn = self.get_page_from_freelist(gfp, order, alloc_flags, ac)
            if pfn is not None:
                return pfn
            if not can_direct_reclaim or pf_memalloc:
                return self._nopage(gfp, order, ac)
            progress = k.vmscan.try_to_free_pages(order, gfp, ac)
            if progress:  # __alloc_pages_direct_reclaim
                pfn = self.get_page_from_freelist(gfp, order, alloc_flags, ac)
                if pfn is None:
                    self.drain_all_pages()
                    pfn = self.get_page_from_freelist(gfp, order, alloc_flags, ac)
                if pfn is not None:
                    return pfn
            if gfp & G._GFP_NORETRY:
                return self._nopage(gfp, order, ac)
            if costly and not gfp & G._GFP_RETRY_MAYFAIL:
                return self._nopage(gfp, order, ac)
            if progress and order <= PAGE_ALLOC_COSTLY_ORDER:
                no_progress_loops = 0
            else:
                no_progress_loops += 1
            if self.should_reclaim_retry(order, ac, alloc_flags, bool(progress), no_progress_loops):
                continue
            pfn, oom_progress = self.__alloc_pages_may_oom(gfp, order, ac)
            if pfn is not None:
                return pfn
            if getattr(task, "oom_victim", False) and \
                    (alloc_flags == ALLOC_OOM or gfp & G._GFP_NOMEMALLOC):
                return self._nopage(gfp, order, ac)
            if oom_progress:
                no_progress_loops = 0
                continue
            return self._nopage(gfp, order, ac)

    @staticmethod
    def gfp_pfmemalloc_allowed(gfp: int, task) -> bool:
        return bool(PageAllocator.__gfp_pfmemalloc_flags(gfp, task) & ALLOC_NO_WATERMARKS)

    @staticmethod
    def __gfp_pfmemalloc_flags(gfp: int, task) -> int:
        if gfp & G._GFP_NOMEMALLOC:
            return 0
        if gfp & G._GFP_MEMALLOC:
            return ALLOC_NO_WATERMARKS
        if task is not None and getattr(task, "pf_memalloc", False):
            return ALLOC_NO_WATERMARKS
        if task is not None and getattr(task, "oom_victim", False):
            return ALLOC_OOM
        return 0

    def __alloc_pages_may_oom(self, gfp: int, order: int, ac) -> tuple[int | None, bool]:
        pfn = self.get_page_from_freelist((gfp | G._GFP_HARDWALL) & ~G._GFP_DIRECT_RECLAIM, order,
                                          ALLOC_WMARK_HIGH | ALLOC_CPUSET, ac)
        if pfn is not None:
            return pfn, False
        if order > PAGE_ALLOC_COSTLY_ORDER or gfp & (G._GFP_RETRY_MAYFAIL | G._GFP_THISNODE):
            return None, False
        if ac.high_zoneidx < self.k.zone_index[ZONE_NORMAL]:
            return None, False
        if self.k.oom.out_of_memory(gfp, order):
            return None, True
        return None, False

    def should_reclaim_retry(self, order: int, ac, alloc_flags: int, did_some_progress: bool,
                             no_progress_loops: int) -> bool:
        from .mmzone import MAX_RECLAIM_RETRIES
        if no_progress_loops > MAX_RECLAIM_RETRIES:
            return False  # unreserve_highatomic_pageblock(): no highatomic reserves modelled
        for z in ac.zones:
            reclaimable = self.k.vmscan.zone_reclaimable_pages(z)
            available = reclaimable + z.vm_stat["nr_free_pages"]
            if self.__zone_watermark_ok(z, order, z.min_wmark_pages(), ac.classzone_idx,
                                        alloc_flags, available):
                if not did_some_progress and 2 * z.vm_stat["nr_zone_write_pending"] > reclaimable:
                    return True
                return True
        return False

    def _nopage(self, gfp: int, order: int, ac) -> None:
        if not gfp & G._GFP_NOWARN:
            k = self.k
            t = k.current_task()
            comm = t.comm if t is not None else "swapper/0"
            k.printk(f"{comm}: page allocation failure: order:{order}, "
                     f"mode:{gfp:#x}({G.format_gfp(gfp)}), nodemask=(null)")
        return None

    def free_pages(self, pfn: int, order: int) -> None:
        """put_page_testzero() then free_the_page()."""
        mm = self.mm
        rc = int(mm.refcount[pfn])
        if rc <= 0:
            raise KernelBug(f"__free_pages: page pfn {pfn:#x} has refcount {rc}")
        mm.refcount[pfn] = rc - 1
        if rc == 1:
            self.free_the_page(pfn, order)

    def free_the_page(self, pfn: int, order: int) -> None:
        self.free_pages_prepare(pfn, order)
        if order == 0:
            self.free_unref_page(pfn)
        else:
            self.k.vm_events["pgfree"] += 1 << order
            self.free_one_page(self.k.page_zone_of(pfn), pfn, order,
                               self.get_pageblock_migratetype(pfn))

    def prep_compound_page(self, pfn: int, order: int) -> None:
        """PG_head on the head; each tail: refcount 0, mapping TAIL_MAPPING, compound_head."""
        mm = self.mm
        mm.set(pfn, PG_head)
        end = pfn + (1 << order)
        mm.refcount[pfn + 1:end] = 0
        mm.mapping[pfn + 1:end] = TAIL_MAPPING
        mm.compound_head[pfn + 1:end] = pfn + 1
        mm.compound_order[pfn] = order

    def free_pages_prepare(self, pfn: int, order: int) -> None:
        for hook in self.free_hooks:  # __reset_page_owner() ...
            hook(pfn, order)
        mm = self.mm
        compound = order and mm.test(pfn, PG_head)
        if mm.PageTail(pfn):
            raise KernelBug(f"BUG: Bad page state in process {self.k.current_comm()}  pfn:{pfn:05x}: "
                            "freeing a tail page")
        if compound:  # free_tail_pages_check()
            if int(mm.compound_order[pfn]) != order:
                raise KernelBug(f"__free_pages: pfn {pfn:#x} is a compound page of order "
                                f"{int(mm.compound_order[pfn])}, freed as order {order}")
            for p in range(pfn + 1, pfn + (1 << order)):
                if int(mm.compound_head[p]) != pfn + 1 or int(mm.mapping[p]) != TAIL_MAPPING:
                    raise KernelBug(f"BUG: Bad page state in process {self.k.current_comm()}  "
                                    f"pfn:{p:05x}: corrupted compound tail")
                mm.mapping[p] = 0
            mm.compound_head[pfn + 1:pfn + (1 << order)] = 0
            mm.compound_order[pfn] = 0
        for p in range(pfn, pfn + (1 << order)):
            bad = None
            if mm.PageTable(p):
                bad = "page table page freed without pgtable_pte_page_dtor"
            elif mm.PageBuddy(p):
                bad = "PageBuddy (double free)"
            elif mm.page_mapcount(p):
                bad = "nonzero mapcount"
            elif p != pfn and mm.refcount[p]:
                bad = "nonzero _refcount"
            elif int(mm.flags[p]) & _CHECK_AT_FREE:
                bad = "PAGE_FLAGS_CHECK_AT_FREE flag(s) set"
            if bad:
                raise KernelBug(f"BUG: Bad page state in process {self.k.current_comm()}  "
                                f"pfn:{p:05x}: {bad}")
            mm.mapping[p] = 0
            mm.flags[p] &= np.uint64(~((1 << 26) - 1) & 0xFFFFFFFFFFFFFFFF)

    def alloc_pages_bulk(self, gfp: int, n: int) -> np.ndarray:
        """n order-0 allocations, exactly as n alloc_pages_nodemask() calls would
        make them; the pcp fast path runs inline.  Stops at the first failure."""
        k = self.k
        out = np.empty(n, np.int64)
        if gfp & G._GFP_DIRECT_RECLAIM:
            k.might_sleep("mm/page_alloc.c", 4641)
        ac = k.alloc_context(gfp, None)
        zones = ac.zones
        multi_node = len(k.pgdats) > 1
        mt = ac.migratetype
        cz = ac.classzone_idx
        cpu = k.current_cpu()
        events = k.vm_events
        zero = gfp & G._GFP_ZERO
        mm = self.mm
        got = 0
        for i in range(n):
            pfn = None
            if not self.fail_next and ac.preferred_zone is not None:
                for zone in zones:
                    if multi_node and zone.node != ac.preferred_zone.node:
                        break
                    st = zone.vm_stat
                    if st["nr_free_pages"] - st["nr_free_cma"] > \
                            zone._watermark[1] + zone.watermark_boost + zone.lowmem_reserve[cz]:
                        lst = zone.pageset[cpu].lists[mt]
                        if lst and not zone.flags & ZONE_BOOSTED_WATERMARK:
                            pfn = lst.popleft()
                            zone.pageset[cpu].count -= 1
                            events["pgalloc_" + zone.stat_name] += 1
                            self.zone_statistics(ac.preferred_zone, zone)
                            mm.refcount[pfn] = 1
                            mm.private[pfn] = 0
                            mm.index[pfn] = 0
                            for hook in self.alloc_hooks:
                                hook(pfn, 0, gfp)
                        break
            if pfn is None:
                pfn = self.alloc_pages_nodemask(gfp & ~G._GFP_ZERO, 0)
                if pfn is None:
                    break
                if getattr(k.current_task(), "pending_kill", False):
                    out[got] = pfn  # the OOM killer chose current: this fault is its last
                    got += 1
                    break
            out[got] = pfn
            got += 1
        out = out[:got]
        if zero:
            fs = k.frames
            for p in out[mm.frame[out] != 0].tolist():
                fs.clear(p)
        return out
