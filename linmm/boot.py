"""Boot (memory-model.md op 1): sections, zones, memmap, memblock_free_all,
watermarks, per-cpu pagesets, init_mm, kernel threads, free init memory."""
from __future__ import annotations

import numpy as np

from .mm.memory_model import (PAGES_PER_SECTION, PFN_SECTION_SHIFT, SECTION_HAS_MEM_MAP,
                              SECTION_IS_EARLY, SECTION_IS_ONLINE, SECTION_MARKED_PRESENT,
                              ZONE_DEVICE, ZONE_DMA, ZONE_DMA32, ZONE_HIGHMEM, ZONE_MOVABLE,
                              ZONE_NORMAL)
from .mm.gfp import MIGRATE_MOVABLE
from .mm.mm_types import MmStruct
from .mm.page import PG_reserved


def _subtract(ranges, holes):
    out = []
    for s, e in ranges:
        cur = [(s, e)]
        for hs, he in holes:
            nxt = []
            for a, b in cur:
                if he <= a or hs >= b:
                    nxt.append((a, b))
                    continue
                if a < hs:
                    nxt.append((a, hs))
                if he < b:
                    nxt.append((he, b))
            cur = nxt
        out.extend(cur)
    return out


def _core_param(k, name: str, totalpages: int) -> int:
    """cmdline_parse_core(): pages from "N[KMG...]" or "N%"."""
    from .config import memparse
    val = k.config.params.get(name)
    if not val:
        return 0
    if val.endswith("%"):
        pct = int(val[:-1]) if val[:-1].isdigit() else 0
        return totalpages * 100 * min(pct, 100) // 10000
    return memparse(val)[0] >> 12


def find_zone_movable_pfns_for_nodes(k) -> dict[int, int]:
    """ZONE_MOVABLE sizing from kernelcore= / movablecore= (memory-model.md op 11)."""
    lay = k.layout
    if lay.explicit_zones is not None or "movable_node" in k.config.params:
        return {}
    totalpages = lay.present_pages()
    required_kernelcore = _core_param(k, "kernelcore", totalpages)
    required_movablecore = _core_param(k, "movablecore", totalpages)
    if required_movablecore:
        required_movablecore = min(totalpages, (required_movablecore + 1023) & ~1023)
        required_kernelcore = max(required_kernelcore, totalpages - required_movablecore)
    if not required_kernelcore or required_kernelcore >= totalpages:
        return {}
    if k.config.is_32bit:  # find_usable_zone_for_movable(): the highest non-empty zone
        movable_zone = ZONE_HIGHMEM if lay.max_pfn > lay.max_low_pfn else ZONE_NORMAL
    else:
        movable_zone = ZONE_NORMAL if lay.max_pfn > (1 << 20) else ZONE_DMA32
    k.movable_zone_type = movable_zone
    usable_startpfn = lay.zone_windows[movable_zone][0]
    nids = sorted({n for _, _, n in lay.memory})
    zmp = dict.fromkeys(nids, 0)
    usable_nodes = len(nids)
    while True:
        kernelcore_node = required_kernelcore // usable_nodes
        for nid in nids:
            if required_kernelcore < kernelcore_node:
                kernelcore_node = required_kernelcore // usable_nodes
            remaining = kernelcore_node
            for s, e, n in lay.memory:
                if n != nid:
                    continue
                s = max(s, zmp[nid])
                if s >= e:
                    continue
                if s < usable_startpfn:
                    kp = min(e, usable_startpfn) - s
                    remaining -= min(kp, remaining)
                    required_kernelcore -= min(kp, required_kernelcore)
                    if e <= usable_startpfn:
                        zmp[nid] = e
                        continue
                    s = usable_startpfn
                size = min(e - s, remaining)
                zmp[nid] = s + size
                required_kernelcore -= min(required_kernelcore, size)
                remaining -= size
                if not remaining:
                    break
        usable_nodes -= 1
        if not (usable_nodes and required_kernelcore > usable_nodes):
            break
    return {nid: (pfn + 1023) & ~1023 for nid, pfn in zmp.items() if pfn}


def setup_zones(k) -> None:
    """free_area_init_nodes(): node and zone spans, present pages."""
    lay = k.layout
    k.zone_movable_pfn = find_zone_movable_pfns_for_nodes(k)
    for pg in k.pgdats:
        mem = [(s, e) for s, e, n in lay.memory if n == pg.node_id]
        pg.node_start_pfn = min(s for s, _ in mem)
        pg.node_spanned_pages = max(e for _, e in mem) - pg.node_start_pfn
        pg.node_present_pages = sum(e - s for s, e in mem)
        for z in pg.node_zones:
            if lay.explicit_zones is not None:
                span = lay.explicit_zones[pg.node_id].get(z.type)
                if span is None:
                    continue
                lo, hi = span
            else:
                zmp = k.zone_movable_pfn.get(pg.node_id, 0)
                if z.type == ZONE_MOVABLE:
                    if not zmp:
                        continue
                    lo, hi = zmp, pg.node_end_pfn
                elif z.type > ZONE_MOVABLE:
                    continue
                else:
                    wlo, whi = lay.zone_windows[z.type]
                    lo = max(wlo, pg.node_start_pfn)
                    hi = min(whi, pg.node_end_pfn)
                    if zmp and lo < zmp < hi:
                        hi = zmp
                    elif zmp and lo >= zmp:
                        hi = lo
                if hi <= lo:
                    continue
            z.zone_start_pfn = lo
            z.spanned_pages = hi - lo
            z.present_pages = sum(max(0, min(e, hi) - max(s, lo)) for s, e in mem)


def boot(k) -> None:
    cfg = k.config
    lay = k.layout
    mm = k.memmap
    k._cur_cpu = 0
    k.sysctl_dirty_ratio = 20
    k.sysctl_dirty_background_ratio = 10
    # ---- sections
    nsec = mm.nr >> PFN_SECTION_SHIFT
    k.section_flags = np.zeros(nsec, np.uint8)
    from .resource import e820_reserve_resources
    from .mm.memory_model import parse_mem
    mem = parse_mem(cfg.params["mem"]) if cfg.params.get("mem") else None
    k.iomem_resource = e820_reserve_resources(lay, cfg.phys_bits, mem)
    for s, e, _ in lay.memory:
        k.section_flags[s >> PFN_SECTION_SHIFT:((e - 1) >> PFN_SECTION_SHIFT) + 1] = (
            SECTION_MARKED_PRESENT | SECTION_IS_ONLINE | SECTION_HAS_MEM_MAP | SECTION_IS_EARLY)
    setup_zones(k)
    if cfg.memory_model in ("flatmem", "discontigmem"):
        zeroed = lay.max_pfn - lay.present_pages()
    else:
        zeroed = int(np.count_nonzero(k.section_flags)) * PAGES_PER_SECTION - lay.present_pages()
    _log_zones(k, zeroed)
    # ---- memmap: holes reserved, zone/node links, pageblocks movable
    if cfg.memory_model in ("flatmem", "discontigmem"):  # one mem_map over [0, max_pfn)
        mm.flags[:lay.max_pfn] = np.uint64(1 << PG_reserved)
        mm.refcount[:lay.max_pfn] = 1
    for sec in np.flatnonzero(k.section_flags).tolist():
        mm.flags[sec << PFN_SECTION_SHIFT:(sec + 1) << PFN_SECTION_SHIFT] = np.uint64(1 << PG_reserved)
        mm.refcount[sec << PFN_SECTION_SHIFT:(sec + 1) << PFN_SECTION_SHIFT] = 1
    for pg in k.pgdats:
        for z in pg.node_zones:
            if z.spanned_pages:
                mm.set_page_links(z.zone_start_pfn, z.zone_end_pfn, z.idx, pg.node_id)
    k.page_alloc.pageblock_flags[:] = MIGRATE_MOVABLE
    # ---- memblock_free_all: free what is not reserved, in max-order chunks
    reserved = [(s, e) for s, e, _ in lay.reserved]
    for s, e, _ in lay.memory:
        for a, b in _subtract([(s, e)], reserved):
            k.page_alloc.memblock_free_range(a, b)
    for pg in k.pgdats:
        for z in pg.node_zones:
            k.page_alloc.zone_pageset_init(z)
    _log_memory(k)
    # ---- init_mm, CPUs and kernel threads
    k.init_mm = MmStruct(k)
    k.init_mm.mm_users, k.init_mm.mm_count = 2, 1
    k.init_mm.owner_pid = 0
    from .mm.pgtable import SpinLock
    k.init_mm.page_table_lock = SpinLock("init_mm.page_table_lock", "page_table_lock")
    k.sched.setup(cfg.cpus)
    k._next_pid = 1
    k.init_task_pid = k.alloc_pid()  # pid 1: init (not modelled as a task)
    k.sched.kthread_create("kthreadd", None)
    for pg in k.pgdats:
        cpu = pg.cpus[0] if pg.cpus else 0
        pg.kswapd = k.sched.kthread_create(f"kswapd{pg.node_id}",
                                           (lambda now, p=pg: k.vmscan.kswapd_step(p, now)), cpu)
        k.sched.kthread_create(f"kcompactd{pg.node_id}", None, cpu)
    k.sched.kthread_create("oom_reaper", lambda now: k.oom.oom_reaper_step(now))
    # ---- initcalls
    k.page_alloc.init_per_zone_wmark_min()
    k.overcommit.init_reserves()
    # ---- memory_dev_init (probe_memory_block_size), then free_initmem
    mbs = 128
    if lay.max_pfn << 12 >= 64 << 30:
        end = lay.max_pfn << 12
        mbs = next((m for m in (2048, 1024, 512, 256) if end % (m << 20) == 0), 128)
    k.memory_block_size = mbs << 20
    if not cfg.is_32bit:  # probe_memory_block_size() is x86_64 code
        k.printk(f"x86/mm: Memory block size: {mbs}MB")
    if lay.init_range is not None:
        k.zero_pfn = lay.init_range[1]  # first page of bss: empty_zero_page
        s, e = lay.init_range
        for pfn in range(s, e):
            mm.clear(pfn, PG_reserved)
            mm.refcount[pfn] = 1
            k.page_zone_of(pfn).managed_pages += 1
            k.page_alloc.free_pages(pfn, 0)
        k.printk(f"Freeing unused kernel image memory: {(e - s) * 4}K")
    else:
        k.zero_pfn = 0


def _log_zones(k, zeroed: int) -> None:
    lay = k.layout
    if lay.explicit_zones is not None:
        return
    k.printk("Zone ranges:")
    for z0 in k.pgdats[0].node_zones:  # every zone but Movable
        if z0.type == ZONE_MOVABLE:
            continue
        name = z0.name
        spans = [(z.zone_start_pfn, z.zone_end_pfn) for pg in k.pgdats for z in pg.node_zones
                 if z.type == z0.type and z.spanned_pages]
        if z0.type == ZONE_DEVICE or not spans:
            k.printk(f"  {name:<8} empty")
            continue
        lo = min(s for s, _ in spans)
        hi = max(e for _, e in spans)
        if z0.type == (ZONE_HIGHMEM if ZONE_HIGHMEM in k.zone_index else ZONE_NORMAL):
            hi = lay.max_pfn  # the highest zone reaches max_pfn
        k.printk(f"  {name:<8} [mem {lo << 12:#018x}-{(hi << 12) - 1:#018x}]")
    k.printk("Movable zone start for each node")
    for nid, pfn in sorted(k.zone_movable_pfn.items()):
        k.printk(f"  Node {nid}: {pfn << 12:#018x}")
    k.printk("Early memory node ranges")
    for s, e, n in lay.memory:
        k.printk(f"  node {n:3d}: [mem {s << 12:#018x}-{(e << 12) - 1:#018x}]")
    k.printk(f"Zeroed struct page in unavailable ranges: {zeroed} pages")
    for pg in k.pgdats:
        k.printk(f"Initmem setup node {pg.node_id} [mem {pg.node_start_pfn << 12:#018x}-"
                 f"{(pg.node_end_pfn << 12) - 1:#018x}]")
    for pg in k.pgdats:
        k.printk(f"On node {pg.node_id} totalpages: {pg.node_present_pages}")
        for z in pg.node_zones:
            if not z.present_pages:
                continue
            p = z.present_pages if z.spanned_pages > z.present_pages + (z.present_pages >> 4) \
                else z.spanned_pages
            memmap = (p * k.config.struct_page_size + 4095) >> 12
            k.printk(f"  {z.name} zone: {memmap} pages used for memmap")
            freesize = z.present_pages - memmap
            if z.type == ZONE_DMA:
                dma_reserve = sum(max(0, min(e, 4096) - max(s, 1)) for s, e, _ in lay.reserved)
                k.printk(f"  DMA zone: {dma_reserve} pages reserved")
                freesize -= dma_reserve
            from .mm.page_alloc import PageAllocator
            k.printk(f"  {z.name} zone: {z.present_pages} pages, LIFO batch:"
                     f"{PageAllocator.zone_batchsize(max(freesize, 0))}")


def _log_memory(k) -> None:
    lay = k.layout
    present = lay.present_pages()
    free = k.global_free_pages()
    parts = lay.image_parts
    if not parts:
        return
    reserved = present - k.totalram_pages()
    k.printk(f"Memory: {free * 4}K/{present * 4}K available ({parts['code'] * 4}K kernel code, "
             f"{parts['rwdata'] * 4}K rwdata, {parts['rodata'] * 4}K rodata, {parts['init'] * 4}K init, "
             f"{parts['bss'] * 4}K bss, {reserved * 4}K reserved, 0K cma-reserved"
             + (f", {k.totalhigh_pages() * 4}K highmem)" if k.config.is_32bit else ")"))
