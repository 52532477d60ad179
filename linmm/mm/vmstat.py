"""/proc/vmstat, /proc/zoneinfo, /proc/buddyinfo, /proc/pagetypeinfo (mm/vmstat.c, v5.7)."""
from __future__ import annotations

from .gfp import MIGRATE_TYPES, MIGRATETYPE_NAMES
from .memory_model import (ARCH_ZONES, MAX_ORDER, ZONE_DMA, ZONE_DMA32, ZONE_HIGHMEM, ZONE_MOVABLE,
                           ZONE_NORMAL)
from .mmzone import MAX_RECLAIM_RETRIES, NODE_STAT_ITEMS, NUMA_STAT_ITEMS, ZONE_STAT_ITEMS

# vmstat_text per zone: TEXT_FOR_DMA, _DMA32, "normal", TEXT_FOR_HIGHMEM ("high"), "movable"
ZONE_STAT_SUFFIX = {ZONE_DMA: "dma", ZONE_DMA32: "dma32", ZONE_NORMAL: "normal", ZONE_HIGHMEM: "high",
                    ZONE_MOVABLE: "movable"}


def vm_event_items(zone_types: tuple = ARCH_ZONES["x86_64"]) -> list[str]:
    """enum vm_event_item's names for a machine's zones (never Device)."""
    _Z = [ZONE_STAT_SUFFIX[t] for t in zone_types if t in ZONE_STAT_SUFFIX]
    return (
        ["pgpgin", "pgpgout", "pswpin", "pswpout"]
        + [f"pgalloc_{z}" for z in _Z] + [f"allocstall_{z}" for z in _Z] + [f"pgskip_{z}" for z in _Z]
        + ["pgfree", "pgactivate", "pgdeactivate", "pglazyfree", "pgfault", "pgmajfault",
           "pglazyfreed", "pgrefill", "pgsteal_kswapd", "pgsteal_direct", "pgscan_kswapd",
           "pgscan_direct", "pgscan_direct_throttle", "zone_reclaim_failed", "pginodesteal",
           "slabs_scanned", "kswapd_inodesteal", "kswapd_low_wmark_hit_quickly",
           "kswapd_high_wmark_hit_quickly", "pageoutrun", "pgrotated", "drop_pagecache", "drop_slab",
           "oom_kill", "numa_pte_updates", "numa_huge_pte_updates", "numa_hint_faults",
           "numa_hint_faults_local", "numa_pages_migrated", "pgmigrate_success", "pgmigrate_fail",
           "compact_migrate_scanned", "compact_free_scanned", "compact_isolated", "compact_stall",
           "compact_fail", "compact_success", "compact_daemon_wake", "compact_daemon_migrate_scanned",
           "compact_daemon_free_scanned", "htlb_buddy_alloc_success", "htlb_buddy_alloc_fail",
           "unevictable_pgs_culled", "unevictable_pgs_scanned", "unevictable_pgs_rescued",
           "unevictable_pgs_mlocked", "unevictable_pgs_munlocked", "unevictable_pgs_cleared",
           "unevictable_pgs_stranded", "thp_fault_alloc", "thp_fault_fallback",
           "thp_fault_fallback_charge", "thp_collapse_alloc", "thp_collapse_alloc_failed",
           "thp_file_alloc", "thp_file_fallback", "thp_file_fallback_charge", "thp_file_mapped",
           "thp_split_page", "thp_split_page_failed", "thp_deferred_split_page", "thp_split_pmd",
           "thp_split_pud", "thp_zero_page_alloc", "thp_zero_page_alloc_failed", "thp_swpout",
           "thp_swpout_fallback", "balloon_inflate", "balloon_deflate", "balloon_migrate",
           "swap_ra", "swap_ra_hit"])


VM_EVENT_ITEMS = vm_event_items()


def global_dirty_limits(k) -> tuple[int, int]:
    """(dirty threshold, background threshold) in pages, vm.dirty_ratio 20 / 10."""
    free = k.global_free_pages()
    x = free - min(free, k.page_alloc.totalreserve_pages)
    x += sum(pg.vm_stat["nr_inactive_file"] + pg.vm_stat["nr_active_file"] for pg in k.pgdats)
    avail = x + 1
    thresh = (k.sysctl_dirty_ratio * 4096 // 100) * avail // 4096
    bg = (k.sysctl_dirty_background_ratio * 4096 // 100) * avail // 4096
    if bg >= thresh:
        bg = thresh // 2
    return thresh, bg


def proc_vmstat(k) -> str:
    out = []
    zones = k.all_zones()
    for item in ZONE_STAT_ITEMS:
        out.append(f"{item} {sum(z.vm_stat[item] for z in zones)}\n")
    for item in NUMA_STAT_ITEMS:
        out.append(f"{item} {sum(z.numa_stat[item] for z in zones)}\n")
    for item in NODE_STAT_ITEMS:
        out.append(f"{item} {sum(pg.vm_stat[item] for pg in k.pgdats)}\n")
    thresh, bg = global_dirty_limits(k)
    out.append(f"nr_dirty_threshold {thresh}\n")
    out.append(f"nr_dirty_background_threshold {bg}\n")
    for item in k.vm_events:
        v = k.vm_events[item]
        if item in ("pgpgin", "pgpgout"):
            v //= 2
        out.append(f"{item} {v}\n")
    return "".join(out)


def proc_zoneinfo(k) -> str:
    out = []
    ncpu = k.config.cpus
    for pg in k.pgdats:
        first_populated = next((z for z in pg.node_zones if z.present_pages), None)
        for z in pg.node_zones:
            out.append(f"Node {pg.node_id}, zone {z.name:>8}")
            if z is first_populated:
                out.append("\n  per-node stats")
                for item in NODE_STAT_ITEMS:
                    out.append(f"\n      {item:<12} {pg.vm_stat[item]}")
            out.append(f"\n  pages free     {z.vm_stat['nr_free_pages']}"
                       f"\n        min      {z.min_wmark_pages()}"
                       f"\n        low      {z.low_wmark_pages()}"
                       f"\n        high     {z.high_wmark_pages()}"
                       f"\n        spanned  {z.spanned_pages}"
                       f"\n        present  {z.present_pages}"
                       f"\n        managed  {z.managed_pages}")
            out.append("\n        protection: (" + ", ".join(str(v) for v in z.lowmem_reserve) + ")")
            if not z.present_pages:
                out.append("\n")
                continue
            for item in ZONE_STAT_ITEMS:
                out.append(f"\n      {item:<12} {z.vm_stat[item]}")
            for item in NUMA_STAT_ITEMS:
                out.append(f"\n      {item:<12} {z.numa_stat[item]}")
            out.append("\n  pagesets")
            for cpu in range(ncpu):
                p = z.pageset[cpu]
                out.append(f"\n    cpu: {cpu}\n              count: {p.count}"
                           f"\n              high:  {p.high}\n              batch: {p.batch}")
                out.append(f"\n  vm stats threshold: {k.zone_stat_threshold(z)}")
            out.append(f"\n  node_unreclaimable:  {int(pg.kswapd_failures >= MAX_RECLAIM_RETRIES)}"
                       f"\n  start_pfn:           {z.zone_start_pfn}\n")
    return "".join(out)


def proc_buddyinfo(k) -> str:
    out = []
    for pg in k.pgdats:
        for z in pg.node_zones:
            if not z.present_pages:
                continue
            out.append(f"Node {pg.node_id}, zone {z.name:>8} "
                       + "".join(f"{z.free_area[o].nr_free:6d} " for o in range(MAX_ORDER)) + "\n")
    return "".join(out)


def proc_pagetypeinfo(k) -> str:
    out = []
    names = MIGRATETYPE_NAMES
    for pg in k.pgdats:
        if not any(z.present_pages for z in pg.node_zones):
            continue
        pbo = k.page_alloc.pageblock_order
        out.append(f"Page block order: {pbo}\nPages per block:  {1 << pbo}\n\n")
        out.append(f"{'Free pages count per migrate type at order':<43} "
                   + "".join(f"{o:6d} " for o in range(MAX_ORDER)) + "\n")
        for z in pg.node_zones:
            if not z.present_pages:
                continue
            for mt in range(MIGRATE_TYPES):
                row = f"Node {pg.node_id:4d}, zone {z.name:>8}, type {names[mt]:>12} "
                for o in range(MAX_ORDER):
                    n = len(z.free_area[o].free_list[mt])
                    row += (">" if n >= 100000 else "") + f"{min(n, 100000):6d} "
                out.append(row + "\n")
        out.append(f"\n{'Number of blocks type ':<23}" + "".join(f"{nm:>12} " for nm in names) + "\n")
        for z in pg.node_zones:
            if not z.present_pages:
                continue
            counts = [0] * MIGRATE_TYPES
            start = z.zone_start_pfn
            pb = k.page_alloc.pageblock_flags
            for pfn in range(start, z.zone_end_pfn, 1 << k.page_alloc.pageblock_order):
                if k.pfn_to_online_page(pfn) is None or k.page_zone_of(pfn) is not z:
                    continue
                counts[int(pb[pfn >> k.page_alloc.pageblock_order])] += 1
            out.append(f"Node {pg.node_id}, zone {z.name:>8} " + "".join(f"{c:12d} " for c in counts) + "\n")
    return "".join(out)
