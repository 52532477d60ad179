"""balance.md: zone watermarks, lowmem reserves, kswapd, direct reclaim, /proc formats.

Machine A = MachineConfig(zones={"DMA": 0, "DMA32": "1G", "Normal": "3G"}) (the
``machine_a`` fixture of conftest.py).  Every expected number comes from the spec
(balance.md) or from the v5.7 formulas it quotes, never from linmm's own output.

Zone free counts are set with the helper ``set_free``: it allocates blocks from one
zone with a GFP that targets that zone (``__GFP_DMA32`` for DMA32, none for Normal),
is movable (so that no pageblock is stolen and nothing is boosted) and carries
``__GFP_MEMALLOC`` without any reclaim bit (so that going below a watermark
neither wakes kswapd nor reclaims).  Order-0 allocations are avoided except for a
whole per-cpu batch (63 pages) so that the per-cpu lists end up empty.
"""
from __future__ import annotations

import os
import re

import pytest

import linmm
from linmm import GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOWAIT
from linmm.errors import EINVAL

__GFP_DMA32 = getattr(linmm, "__GFP_DMA32")
__GFP_MOVABLE = getattr(linmm, "__GFP_MOVABLE")
__GFP_RECLAIMABLE = getattr(linmm, "__GFP_RECLAIMABLE")
__GFP_MEMALLOC = getattr(linmm, "__GFP_MEMALLOC")
__GFP_NOWARN = getattr(linmm, "__GFP_NOWARN")
__GFP_NORETRY = getattr(linmm, "__GFP_NORETRY")
MIGRATE_MOVABLE = getattr(linmm, "MIGRATE_MOVABLE")

DMA, DMA32, NORMAL, MOVABLE, DEVICE = range(5)
MAX_NR_ZONES = 5
PCP_BATCH = 63  # zone_batchsize() of DMA32 (262144 pages) and Normal (786432 pages)

FILL_GFP = {
    DMA32: __GFP_DMA32 | __GFP_MOVABLE | __GFP_MEMALLOC | __GFP_NOWARN,
    NORMAL: __GFP_MOVABLE | __GFP_MEMALLOC | __GFP_NOWARN,
}


def boot_a(**kw) -> linmm.Kernel:
    return linmm.Kernel(linmm.MachineConfig(zones={"DMA": 0, "DMA32": "1G", "Normal": "3G"}, **kw))


# ---------------------------------------------------------------- helpers
def zone(k, idx, nid=0):
    return k.pgdats[nid].node_zones[idx]


def nr_free(k, idx, nid=0) -> int:
    return zone(k, idx, nid).vm_stat["nr_free_pages"]


def grab(k, idx, order, held):
    """One allocation of 2^order pages that must come from zone idx."""
    z = zone(k, idx)
    page = k.alloc_pages(FILL_GFP[idx], order)
    assert page is not None, f"setup: no order-{order} block left in {z.name}"
    assert k.page_zone(page) is z, f"setup: order-{order} block came from {k.page_zone(page).name}, not {z.name}"
    held.append((page, order))
    return page


def set_free(k, idx, target) -> list:
    """Lower NR_FREE_PAGES of zone idx to exactly target; returns the blocks taken
    as (page, order), largest first.  The per-cpu lists of the zone stay empty."""
    z = zone(k, idx)
    held: list = []
    delta = nr_free(k, idx) - target
    assert delta >= 0, f"setup: {z.name} has only {nr_free(k, idx)} free pages, {target} wanted"
    if delta & 1:
        # one pcp refill of a whole batch, then the batch is used up: pcp empty again
        assert delta >= PCP_BATCH
        pcp = z.pageset[0]
        assert not pcp.lists[MIGRATE_MOVABLE]
        before = nr_free(k, idx)
        for _ in range(PCP_BATCH):
            grab(k, idx, 0, held)
        assert before - nr_free(k, idx) == PCP_BATCH, "setup: pcp refill is not one batch of 63"
        assert not pcp.lists[MIGRATE_MOVABLE] and pcp.count == 0
        delta -= PCP_BATCH
    while delta:
        order = min(10, delta.bit_length() - 1)
        grab(k, idx, order, held)
        delta -= 1 << order
    assert nr_free(k, idx) == target
    return held


def events(k) -> dict:
    return dict(k.vm_events)


def delta(k, before: dict, name: str) -> int:
    return k.vm_events[name] - before[name]


# ---------------------------------------------------------------- /proc/zoneinfo parser
_ZI = [
    ("header", re.compile(r"^Node (\d+), zone ([ \w]{8})$")),
    ("pernode", re.compile(r"^  per-node stats$")),
    ("free", re.compile(r"^  pages free     (\d+)$")),
    ("mark", re.compile(r"^        (\w+) +(\d+)$")),
    ("protection", re.compile(r"^        protection: \((\d+(?:, \d+)*)\)$")),
    ("stat", re.compile(r"^      (\w+) +(\d+)$")),
    ("pagesets", re.compile(r"^  pagesets$")),
    ("cpu", re.compile(r"^    cpu: (\d+)$")),
    ("pcp", re.compile(r"^              (\w+): +(-?\d+)$")),
    ("threshold", re.compile(r"^  vm stats threshold: (\d+)$")),
    ("unreclaimable", re.compile(r"^  node_unreclaimable:  ([01])$")),
    ("start_pfn", re.compile(r"^  start_pfn:           (\d+)$")),
]


def classify_zoneinfo_line(line: str):
    hits = [(kind, m) for kind, rx in _ZI if (m := rx.match(line))]
    assert len(hits) == 1, f"zoneinfo line matches {len(hits)} classes: {line!r}"
    return hits[0]


def parse_zoneinfo(text: str, v57_widths: bool) -> list[dict]:
    """Zones in file order: {"node", "zone", "node_stats", "marks", "protection",
    "zone_stats", "cpus": [{...}], "thresholds", "node_unreclaimable", "start_pfn",
    "kinds": {name: kind}}.  v57_widths: also check the exact v5.7 field widths."""
    assert text.endswith("\n")
    zones: list[dict] = []
    cur = None
    for line in text.split("\n")[:-1]:
        kind, m = classify_zoneinfo_line(line)
        if kind == "header":
            cur = {"node": int(m.group(1)), "zone": m.group(2).strip(), "node_stats": {}, "marks": {},
                   "protection": None, "zone_stats": {}, "cpus": [], "thresholds": [],
                   "node_unreclaimable": None, "start_pfn": None, "lines": [line], "pagesets": False}
            assert line == f"Node {cur['node']}, zone {cur['zone']:>8}"
            zones.append(cur)
            continue
        assert cur is not None, f"zoneinfo: {line!r} before the first zone header"
        cur["lines"].append(line)
        if kind == "free":
            cur["marks"]["pages free"] = int(m.group(1))
        elif kind == "mark":
            name, val = m.group(1), int(m.group(2))
            assert line == f"        {name:<8} {val}", f"mark width: {line!r}"
            cur["marks"][name] = val
        elif kind == "protection":
            cur["protection"] = tuple(int(x) for x in m.group(1).split(", "))
        elif kind == "stat":
            name, val = m.group(1), int(m.group(2))
            assert line == f"      {name:<12} {val}", f"stat width: {line!r}"
            target = "zone_stats" if cur["protection"] is not None else "node_stats"
            cur[target][name] = val
        elif kind == "pagesets":
            cur["pagesets"] = True
        elif kind == "cpu":
            cur["cpus"].append({"cpu": int(m.group(1))})
        elif kind == "pcp":
            name, val = m.group(1), int(m.group(2))
            if v57_widths:
                assert line == {"count": f"              count: {val}",
                                "high": f"              high:  {val}",
                                "batch": f"              batch: {val}"}[name], f"pcp width: {line!r}"
            cur["cpus"][-1][name] = val
        elif kind == "threshold":
            cur["thresholds"].append(int(m.group(1)))
        elif kind == "unreclaimable":
            cur["node_unreclaimable"] = int(m.group(1))
        elif kind == "start_pfn":
            cur["start_pfn"] = int(m.group(1))
    return zones


def zinfo(k, name: str, nid: int = 0) -> dict:
    zs = [z for z in parse_zoneinfo(k.read_file("/proc/zoneinfo"), True)
          if z["node"] == nid and z["zone"] == name]
    assert len(zs) == 1, f"zoneinfo has {len(zs)} sections for node {nid} zone {name}"
    return zs[0]


def marks(k, name: str) -> tuple[int, int, int]:
    z = zinfo(k, name)
    return z["marks"]["min"], z["marks"]["low"], z["marks"]["high"]


def zone_block_text(k, name: str) -> str:
    text = k.read_file("/proc/zoneinfo")
    m = re.search(rf"^Node 0, zone {name:>8}\n(?:(?!Node ).*\n)*", text, re.M)
    assert m, f"no zoneinfo block for {name}"
    return m.group(0)


# ---------------------------------------------------------------- scenario 1
def test_balance_s1_boot_watermarks_and_reserves(machine_a):
    k = machine_a
    pa = k.page_alloc
    assert pa.min_free_kbytes == 8192
    assert k.read_file("/proc/sys/vm/min_free_kbytes") == "8192\n"
    assert marks(k, "DMA32") == (512, 774, 1036)
    assert marks(k, "Normal") == (1536, 2322, 3108)
    assert k.read_file("/proc/sys/vm/lowmem_reserve_ratio") == "256\t256\t32\t0\t0\n"
    assert zinfo(k, "DMA")["protection"] == (0, 1024, 4096, 4096, 4096)
    assert zinfo(k, "DMA32")["protection"] == (0, 0, 3072, 3072, 3072)
    for name in ("Normal", "Movable", "Device"):
        assert zinfo(k, name)["protection"] == (0, 0, 0, 0, 0)
    assert pa.totalreserve_pages == 4108 + 3108 == 7216
    assert k.pgdats[0].totalreserve_pages == 7216
    # unpopulated zones print header, the pages block and protection, then stop
    assert zone_block_text(k, "DMA") == (
        "Node 0, zone      DMA\n  pages free     0\n        min      0\n        low      0\n"
        "        high     0\n        spanned  0\n        present  0\n        managed  0\n"
        "        protection: (0, 1024, 4096, 4096, 4096)\n")
    for name in ("Movable", "Device"):
        assert zone_block_text(k, name) == (
            f"Node 0, zone {name:>8}\n  pages free     0\n        min      0\n        low      0\n"
            "        high     0\n        spanned  0\n        present  0\n        managed  0\n"
            "        protection: (0, 0, 0, 0, 0)\n")
    # populated zones: spans, pagesets (batch from zone_batchsize, high = 6*batch),
    # vm stats threshold 2*fls(1)*(1+fls(managed>>15)) while kswapd sleeps
    d32, nrm = zinfo(k, "DMA32"), zinfo(k, "Normal")
    assert (d32["marks"]["spanned"], d32["marks"]["present"], d32["marks"]["managed"]) == (262144,) * 3
    assert (nrm["marks"]["spanned"], nrm["marks"]["present"], nrm["marks"]["managed"]) == (786432,) * 3
    assert d32["start_pfn"] == 4096 and nrm["start_pfn"] == 1048576
    assert d32["node_stats"] and not nrm["node_stats"], "per-node stats only before the first populated zone"
    for z, thr in ((d32, 10), (nrm, 12)):
        assert [c["cpu"] for c in z["cpus"]] == [0]
        assert (z["cpus"][0]["high"], z["cpus"][0]["batch"]) == (378, 63)
        assert z["thresholds"] == [thr]
        assert z["node_unreclaimable"] == 0
        assert z["marks"]["pages free"] == z["zone_stats"]["nr_free_pages"]
    assert k.read_file("/proc/meminfo").startswith("MemTotal:        4194304 kB\n")
    k.check()


# ---------------------------------------------------------------- scenario 2
def test_balance_s2_watermark_scale_factor(machine_a):
    k = machine_a
    assert k.read_file("/proc/sys/vm/watermark_scale_factor") == "10\n"
    k.write_file("/proc/sys/vm/watermark_scale_factor", "1000")
    assert k.read_file("/proc/sys/vm/watermark_scale_factor") == "1000\n"
    assert marks(k, "DMA32") == (512, 26726, 52940)
    assert marks(k, "Normal") == (1536, 80179, 158822)
    # calculate_totalreserve_pages(): DMA32 3072 + 52940, Normal 158822, DMA capped at managed 0
    assert k.page_alloc.totalreserve_pages == 3072 + 52940 + 158822
    for bad in ("1001", "0", "-5", "abc", ""):
        with pytest.raises(EINVAL):
            k.write_file("/proc/sys/vm/watermark_scale_factor", bad)
        assert k.read_file("/proc/sys/vm/watermark_scale_factor") == "1000\n"
        assert marks(k, "DMA32") == (512, 26726, 52940)
        assert marks(k, "Normal") == (1536, 80179, 158822)
    k.check()


# ---------------------------------------------------------------- scenario 3
def test_balance_s3_min_free_kbytes_user_value(machine_a):
    k = machine_a
    k.write_file("/proc/sys/vm/min_free_kbytes", "65536")
    assert k.read_file("/proc/sys/vm/min_free_kbytes") == "65536\n"
    assert marks(k, "DMA32") == (4096, 5120, 6144)
    assert marks(k, "Normal") == (12288, 15360, 18432)
    assert zinfo(k, "DMA")["protection"] == (0, 1024, 4096, 4096, 4096)
    assert zinfo(k, "DMA32")["protection"] == (0, 0, 3072, 3072, 3072)
    assert k.page_alloc.totalreserve_pages == (3072 + 6144) + 18432
    assert k.page_alloc.user_min_free_kbytes == 65536
    # what memory hotplug runs: init_per_zone_wmark_min() keeps the user value.
    # new = isqrt(4 * 16 * ((262144 - 6144) + (786432 - 18432))) = 8095
    k.init_per_zone_wmark_min()
    assert k.read_file("/proc/sys/vm/min_free_kbytes") == "65536\n"
    assert marks(k, "Normal") == (12288, 15360, 18432)
    assert ("min_free_kbytes is not updated to 8095 because user defined value 65536 is preferred"
            in k.dmesg().splitlines())
    k.check()


# ---------------------------------------------------------------- scenario 4
def test_balance_s4_fast_path_falls_back_to_dma32(machine_a):
    k = machine_a
    pg = k.pgdats[0]
    set_free(k, DMA32, 200000)
    set_free(k, NORMAL, 2323)
    ev = events(k)
    p1 = k.alloc_pages(GFP_KERNEL, 0)
    assert p1 is not None and k.page_zone(p1) is zone(k, NORMAL)  # 2323 > 2322
    p2 = k.alloc_pages(GFP_KERNEL, 0)
    assert p2 is not None and k.page_zone(p2) is zone(k, DMA32)  # 200000 > 774 + 3072
    assert delta(k, ev, "pgalloc_normal") == 1
    assert delta(k, ev, "pgalloc_dma32") == 1
    assert pg.kswapd_sleeping is True
    assert pg.kswapd_classzone_idx == MAX_NR_ZONES  # no wake request was made
    assert delta(k, ev, "pageoutrun") == 0
    for z in ("dma", "dma32", "normal", "movable"):
        assert delta(k, ev, f"allocstall_{z}") == 0
    k.check()


# ---------------------------------------------------------------- scenario 5
def test_balance_s5_slow_path_wakes_kswapd_served_at_min(machine_a):
    k = machine_a
    pg = k.pgdats[0]
    held32 = set_free(k, DMA32, 3846)
    set_free(k, NORMAL, 2322)
    ev = events(k)
    p = k.alloc_pages(GFP_KERNEL, 0)
    assert p is not None and k.page_zone(p) is zone(k, NORMAL)  # min mark: 2322 > 1536
    assert delta(k, ev, "pgalloc_normal") == 1 and delta(k, ev, "pgalloc_dma32") == 0
    assert pg.kswapd_sleeping is False
    assert pg.kswapd_classzone_idx == NORMAL
    assert pg.kswapd_order == 0
    assert delta(k, ev, "allocstall_normal") == 0 and delta(k, ev, "pageoutrun") == 0
    k.check()
    k.run(200)
    runs = delta(k, ev, "pageoutrun")
    assert runs >= 1, "kswapd did not run balance_pgdat"
    # while kswapd is awake zoneinfo shows the pressure threshold min(125, (low - min) / cpus),
    # once it sleeps again the normal one
    awake = not pg.kswapd_sleeping
    assert zinfo(k, "Normal")["thresholds"] == [125 if awake else 12]
    assert zinfo(k, "DMA32")["thresholds"] == [125 if awake else 10]
    # nothing is reclaimable: every pass fails; at most 16 before the node is unreclaimable
    assert pg.kswapd_failures == runs <= 16
    assert pg.kswapd_classzone_idx == MAX_NR_ZONES and pg.kswapd_order == 0  # request consumed
    k.check()
    # DMA32 free > 1036 + 3072 = 4108: the node is balanced, kswapd goes back to sleep
    page, order = held32[0]
    assert order == 10
    k.free_pages(page, order)
    assert nr_free(k, DMA32) == 3846 + 1024
    k.run(300)
    assert pg.kswapd_sleeping is True
    settled = k.vm_events["pageoutrun"]
    k.run(1000)
    assert k.vm_events["pageoutrun"] == settled
    k.check()


# ---------------------------------------------------------------- scenario 6 (GFP_ATOMIC part)
def test_balance_s6_atomic_uses_harder_min_without_reclaim(machine_a):
    k = machine_a
    pg = k.pgdats[0]
    set_free(k, DMA32, 3584)
    set_free(k, NORMAL, 1536)
    ev = events(k)
    # ALLOC_HIGH|ALLOC_HARDER: min 1536 -> 768 -> 576, so 1536 free pages pass
    p = k.alloc_pages(GFP_ATOMIC, 0)
    assert p is not None and k.page_zone(p) is zone(k, NORMAL)
    for z in ("dma", "dma32", "normal", "movable"):
        assert delta(k, ev, f"allocstall_{z}") == 0
    assert delta(k, ev, "pgscan_direct") == 0
    assert pg.kswapd_sleeping is False and pg.kswapd_classzone_idx == NORMAL
    k.check()


# ---------------------------------------------------------------- scenario 7
def test_balance_s7_nowait_fails_without_reclaim(machine_a):
    k = machine_a
    pg = k.pgdats[0]
    set_free(k, DMA32, 3584)
    set_free(k, NORMAL, 1536)
    ev = events(k)
    log_before = k.dmesg()
    assert k.alloc_pages(GFP_NOWAIT | __GFP_NOWARN, 0) is None
    for z in ("dma", "dma32", "normal", "movable"):
        assert delta(k, ev, f"allocstall_{z}") == 0
    assert delta(k, ev, "pgalloc_normal") == 0 and delta(k, ev, "pgalloc_dma32") == 0
    assert nr_free(k, NORMAL) == 1536 and nr_free(k, DMA32) == 3584
    assert pg.kswapd_sleeping is False and pg.kswapd_classzone_idx == NORMAL
    assert k.dmesg() == log_before, "__GFP_NOWARN: nothing may be logged"
    # without __GFP_NOWARN the failure is reported (warn_alloc)
    assert k.alloc_pages(GFP_NOWAIT, 0) is None
    new = k.dmesg()[len(log_before):]
    assert re.search(r"^\S.*: page allocation failure: order:0, mode:0x800\(GFP_NOWAIT\), "
                     r"nodemask=\(null\)$", new, re.M), new
    assert delta(k, ev, "allocstall_normal") == 0
    k.check()


# ---------------------------------------------------------------- scenario 8
def test_balance_s8_costly_order_fails_after_one_reclaim_no_oom(machine_a):
    """No free block of order >= 4 anywhere (and no compaction in the model, so none can be
    built): an order-4 GFP_KERNEL request fails after one direct-reclaim pass, no OOM kill."""
    k = machine_a
    pg = k.pgdats[0]
    set_free(k, DMA32, 0)
    set_free(k, NORMAL, 8192)
    small = []
    while nr_free(k, NORMAL):
        grab(k, NORMAL, 3, small)
    for page, order in small:
        if not page.pfn & (1 << 3):
            k.free_pages(page, order)  # its order-3 buddy stays allocated: no merging
    assert nr_free(k, NORMAL) == 4096  # above min/low, but only in order-3 blocks
    z = zone(k, NORMAL)
    assert all(not z.free_area[o].nr_free for o in range(4, 11))
    ev = events(k)
    log = k.dmesg()
    assert k.alloc_pages(GFP_KERNEL, 4) is None
    assert delta(k, ev, "allocstall_normal") == 1
    assert delta(k, ev, "oom_kill") == 0
    assert nr_free(k, NORMAL) == 4096
    assert pg.kswapd_sleeping is False and pg.kswapd_order == 4 and pg.kswapd_classzone_idx == NORMAL
    assert re.search(r"^\S.*: page allocation failure: order:4, mode:0xcc0\(GFP_KERNEL\), "
                     r"nodemask=\(null\)$", k.dmesg()[len(log):], re.M)
    # order 3 is there (sanity): served by Normal
    p = k.alloc_pages(GFP_KERNEL, 3)
    assert p is not None and k.page_zone(p) is z
    k.check()


# ---------------------------------------------------------------- scenario 9
def test_balance_s9_wakeup_kswapd_balanced_node_stays_asleep(machine_a):
    k = machine_a
    pg = k.pgdats[0]
    held32 = set_free(k, DMA32, 5000 - 2048)   # DMA32 low first: Normal's blocks cannot spill
    set_free(k, NORMAL, 2000)
    for page, order in held32[:2]:
        assert order == 10
        k.free_pages(page, order)
    assert nr_free(k, DMA32) == 5000
    assert pg.kswapd_sleeping is True
    ev = events(k)
    k.wakeup_kswapd(zone(k, NORMAL), GFP_KERNEL, 0, NORMAL)
    assert pg.kswapd_sleeping is True, "DMA32 5000 > 1036 + 3072: the node is balanced"
    assert pg.kswapd_classzone_idx == NORMAL and pg.kswapd_order == 0
    set_free(k, DMA32, 4108)
    k.wakeup_kswapd(zone(k, NORMAL), GFP_KERNEL, 0, NORMAL)
    assert pg.kswapd_sleeping is False, "4108 > 4108 is false: kswapd must be woken"
    assert delta(k, ev, "pageoutrun") == 0
    k.check()


# ---------------------------------------------------------------- scenario 10
def test_balance_s10_movable_classzone_and_allocstall_movable(machine_a):
    k = machine_a
    pg = k.pgdats[0]
    set_free(k, DMA32, 3584)
    set_free(k, NORMAL, 1536)
    ev = events(k)
    p = k.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_NORETRY | __GFP_NOWARN, 0)
    assert p is None
    assert pg.kswapd_sleeping is False
    assert pg.kswapd_classzone_idx == MOVABLE  # wake_all_kswapds uses ac->high_zoneidx
    assert delta(k, ev, "allocstall_movable") == 1
    assert delta(k, ev, "allocstall_normal") == 0
    assert delta(k, ev, "pgscan_direct_throttle") == 0
    k.check()


@pytest.mark.parametrize("dma32_free, from_dma32", [(3847, True), (3846, False)])
def test_balance_s10_movable_request_sees_dma32_protection(dma32_free, from_dma32):
    k = boot_a()
    pg = k.pgdats[0]
    set_free(k, DMA32, dma32_free)
    set_free(k, NORMAL, 2322)  # fails low
    ev = events(k)
    p = k.alloc_pages(GFP_HIGHUSER_MOVABLE, 0)
    assert p is not None
    if from_dma32:  # fast path: 3847 > 774 + lowmem_reserve[Movable] 3072
        assert k.page_zone(p) is zone(k, DMA32)
        assert pg.kswapd_sleeping is True
        assert delta(k, ev, "pgalloc_dma32") == 1
    else:  # 3846 fails: slow path, kswapd woken for classzone Movable, Normal at min
        assert k.page_zone(p) is zone(k, NORMAL)
        assert pg.kswapd_sleeping is False and pg.kswapd_classzone_idx == MOVABLE
        assert delta(k, ev, "pgalloc_normal") == 1
    assert delta(k, ev, "allocstall_movable") == 0
    k.check()


# ---------------------------------------------------------------- scenario 11
def _fragment_normal(k):
    """DMA32 empty; Normal free = every other order-8 block (all MOVABLE pageblocks),
    so that no free block of order >= pageblock_order (9) is left anywhere."""
    set_free(k, DMA32, 0)
    held = []
    while nr_free(k, NORMAL):
        grab(k, NORMAL, 8, held)
    for page, order in held:
        if not page.pfn & (1 << 8):
            k.free_pages(page, order)
    assert nr_free(k, NORMAL) == 786432 // 2
    z = zone(k, NORMAL)
    assert all(not z.free_area[o].nr_free for o in range(9, 11))
    assert z.watermark_boost == 0


def test_balance_s11_fallback_steal_boosts_watermark(machine_a):
    k = machine_a
    pg = k.pgdats[0]
    _fragment_normal(k)
    z = zone(k, NORMAL)
    ev = events(k)
    # an unmovable order-1 request must steal from a MOVABLE order-8 block
    p = k.alloc_pages(GFP_KERNEL, 1)
    assert p is not None and k.page_zone(p) is z
    assert z.watermark_boost == 512
    assert marks(k, "Normal") == (2048, 2834, 3620)
    assert marks(k, "DMA32") == (512, 774, 1036)
    assert pg.kswapd_sleeping is False, "ZONE_BOOSTED_WATERMARK: rmqueue wakes kswapd"
    # nine more steals below pageblock order (unmovable order-8 requests): cap 4662
    for i in range(2, 11):
        q = k.alloc_pages(GFP_KERNEL, 8)
        assert q is not None and k.page_zone(q) is z
        assert z.watermark_boost == min(512 * i, 4662), f"after event {i}"
    assert marks(k, "Normal") == (1536 + 4662, 2322 + 4662, 3108 + 4662)
    assert delta(k, ev, "pgalloc_dma32") == 0
    k.check()
    # kswapd runs one boosted balance_pgdat (the node is balanced otherwise) and on exit
    # subtracts the boost it started with
    k.run(200)
    assert delta(k, ev, "pageoutrun") == 1
    assert z.watermark_boost == 0
    assert marks(k, "Normal") == (1536, 2322, 3108)
    assert pg.kswapd_sleeping is True
    k.check()


def test_balance_s11_no_boost_when_factor_zero_or_steal_is_whole_block(machine_a):
    k = machine_a
    # a steal of a whole pageblock (order >= 9) does not boost
    set_free(k, DMA32, 0)
    p = k.alloc_pages(GFP_KERNEL, 1)
    assert p is not None and k.page_zone(p) is zone(k, NORMAL)
    assert zone(k, NORMAL).watermark_boost == 0
    k.check()
    k2 = boot_a()
    k2.write_file("/proc/sys/vm/watermark_boost_factor", "0")
    assert k2.read_file("/proc/sys/vm/watermark_boost_factor") == "0\n"
    _fragment_normal(k2)
    p = k2.alloc_pages(GFP_KERNEL, 1)
    assert p is not None
    assert zone(k2, NORMAL).watermark_boost == 0
    assert marks(k2, "Normal") == (1536, 2322, 3108)
    k2.check()


# ---------------------------------------------------------------- scenario 13
def test_balance_s13_lowmem_reserve_ratio(machine_a):
    k = machine_a
    k.write_file("/proc/sys/vm/lowmem_reserve_ratio", "16\t16\t16\t16\t16")
    assert k.read_file("/proc/sys/vm/lowmem_reserve_ratio") == "16\t16\t16\t16\t16\n"
    assert zinfo(k, "DMA32")["protection"] == (0, 0, 49152, 49152, 49152)
    assert zinfo(k, "Normal")["protection"] == (0, 0, 0, 0, 0)
    assert zinfo(k, "DMA")["protection"] == (0, 262144 // 16, 1048576 // 16, 1048576 // 16, 1048576 // 16)
    # watermarks are not recomputed by this sysctl
    assert marks(k, "DMA32") == (512, 774, 1036) and marks(k, "Normal") == (1536, 2322, 3108)
    assert k.page_alloc.totalreserve_pages == (49152 + 1036) + 3108
    k.write_file("/proc/sys/vm/lowmem_reserve_ratio", "0 0 0 0 0")
    assert k.read_file("/proc/sys/vm/lowmem_reserve_ratio") == "0\t0\t0\t0\t0\n"
    for name in ("DMA", "DMA32", "Normal", "Movable", "Device"):
        assert zinfo(k, name)["protection"] == (0, 0, 0, 0, 0)
    with pytest.raises(EINVAL):
        k.write_file("/proc/sys/vm/lowmem_reserve_ratio", "foo")
    assert k.read_file("/proc/sys/vm/lowmem_reserve_ratio") == "0\t0\t0\t0\t0\n"
    k.check()


# ---------------------------------------------------------------- scenario 14
def test_balance_s14_buddyinfo_after_order10_free(machine_a):
    k = machine_a
    set_free(k, DMA32, 0)
    held = set_free(k, NORMAL, 0)
    page, order = held[0]
    assert order == 10
    k.free_pages(page, order)
    zeros = "      0" * 10
    assert k.read_file("/proc/buddyinfo") == (
        "Node 0, zone    DMA32" + "      0" * 11 + " \n"
        "Node 0, zone   Normal" + zeros + "      1 \n")
    line = k.read_file("/proc/buddyinfo").splitlines()[1]
    assert line == ("Node 0, zone   Normal      0      0      0      0      0      0      0      0"
                    "      0      0      1 ")
    k.check()


# ---------------------------------------------------------------- scenario 15
def test_balance_s15_memavailable_formula(machine_a):
    k = machine_a
    # the model has no page cache and no reclaimable slab: MemAvailable = free - totalreserve
    set_free(k, NORMAL, 500000)
    set_free(k, DMA32, 0)
    info = k.read_file("/proc/meminfo")
    assert "MemTotal:        4194304 kB\n" in info
    assert "MemFree:         2000000 kB\n" in info
    assert f"MemAvailable:   {(500000 - 7216) * 4:8d} kB\n" in info
    assert "MemAvailable:    1971136 kB\n" in info
    # with free below totalreserve_pages MemAvailable is floored at 0
    set_free(k, NORMAL, 7000)
    info = k.read_file("/proc/meminfo")
    assert "MemAvailable:          0 kB\n" in info
    k.check()


# ---------------------------------------------------------------- scenario 16
def test_balance_s16_kswapd_gives_up_after_16_failures(machine_a):
    k = machine_a
    pg = k.pgdats[0]
    set_free(k, DMA32, 3584)
    set_free(k, NORMAL, 1536)
    ev = events(k)
    k.wakeup_kswapd(zone(k, NORMAL), GFP_KERNEL, 0, NORMAL)
    assert pg.kswapd_sleeping is False
    k.run(5000)
    assert pg.kswapd_failures == 16
    assert delta(k, ev, "pageoutrun") == 16
    assert pg.kswapd_sleeping is True
    for name, thr in (("DMA32", 10), ("Normal", 12)):
        assert zinfo(k, name)["node_unreclaimable"] == 1
        assert zinfo(k, name)["thresholds"] == [thr]  # asleep: the normal threshold again
    assert "\n  node_unreclaimable:  1\n" in k.read_file("/proc/zoneinfo")
    # wakeup_kswapd no longer wakes it
    k.wakeup_kswapd(zone(k, NORMAL), GFP_KERNEL, 0, NORMAL)
    assert pg.kswapd_sleeping is True
    k.run(1000)
    assert delta(k, ev, "pageoutrun") == 16
    # a direct reclaimer is not throttled
    assert k.alloc_pages(GFP_KERNEL | __GFP_NORETRY | __GFP_NOWARN, 0) is None
    assert delta(k, ev, "allocstall_normal") == 1
    assert delta(k, ev, "pgscan_direct_throttle") == 0
    k.check()


# ---------------------------------------------------------------- order >= MAX_ORDER
def test_balance_order_11_returns_none_and_warns(machine_a):
    k = machine_a
    ev = events(k)
    log = k.dmesg()
    assert k.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 11) is None
    assert k.dmesg() == log
    assert k.alloc_pages(GFP_KERNEL, 11) is None
    assert "WARNING" in k.dmesg()[len(log):]
    assert events(k) == ev
    assert nr_free(k, NORMAL) == 786432 and nr_free(k, DMA32) == 262144
    k.check()


# ---------------------------------------------------------------- sysctls
def test_balance_sysctl_defaults(machine_a):
    k = machine_a
    for name, val in (("min_free_kbytes", "8192"), ("watermark_scale_factor", "10"),
                      ("watermark_boost_factor", "15000"), ("zone_reclaim_mode", "0"),
                      ("percpu_pagelist_fraction", "0"), ("swappiness", "60"),
                      ("stat_interval", "1")):
        assert k.read_file(f"/proc/sys/vm/{name}") == val + "\n", name
    assert k.page_alloc.user_min_free_kbytes == -1


@pytest.mark.parametrize("name, bad, ok", [
    ("min_free_kbytes", ["-1", "abc", "12x", ""], "0"),
    ("watermark_scale_factor", ["0", "1001", "x"], "1"),
    ("watermark_boost_factor", ["-1", "1.5"], "0"),
    ("swappiness", ["101", "-1", "sixty"], "100"),
    ("percpu_pagelist_fraction", ["7", "1", "-8"], "8"),
])
def test_balance_sysctl_bad_writes_einval_unchanged(machine_a, name, bad, ok):
    k = machine_a
    path = f"/proc/sys/vm/{name}"
    before = k.read_file(path)
    m_before = (marks(k, "DMA32"), marks(k, "Normal"), zinfo(k, "Normal")["cpus"])
    for text in bad:
        with pytest.raises(EINVAL):
            k.write_file(path, text)
        assert k.read_file(path) == before, f"{name}: {text!r} changed the value"
        assert (marks(k, "DMA32"), marks(k, "Normal"), zinfo(k, "Normal")["cpus"]) == m_before
    k.write_file(path, ok)
    assert k.read_file(path) == ok + "\n"
    k.check()


def test_balance_min_free_kbytes_zero_and_percpu_fraction(machine_a):
    k = machine_a
    k.write_file("/proc/sys/vm/min_free_kbytes", "0")
    # pages_min 0: MIN 0, LOW = HIGH/2 = mult_frac(managed, 10, 10000)
    assert marks(k, "DMA32") == (0, 262, 524)
    assert marks(k, "Normal") == (0, 786, 1572)
    # percpu_pagelist_fraction 8: high = managed / 8, batch = max(1, high / 4) capped at 96
    k.write_file("/proc/sys/vm/percpu_pagelist_fraction", "8")
    z = zinfo(k, "DMA32")["cpus"][0]
    assert (z["high"], z["batch"]) == (262144 // 8, 96)
    k.write_file("/proc/sys/vm/percpu_pagelist_fraction", "0")
    z = zinfo(k, "Normal")["cpus"][0]
    assert (z["high"], z["batch"]) == (378, 63)
    k.check()


# ---------------------------------------------------------------- formats: model side
V57_VMSTAT = (
    "nr_free_pages nr_zone_inactive_anon nr_zone_active_anon nr_zone_inactive_file "
    "nr_zone_active_file nr_zone_unevictable nr_zone_write_pending nr_mlock nr_page_table_pages "
    "nr_kernel_stack nr_bounce nr_zspages nr_free_cma "
    "numa_hit numa_miss numa_foreign numa_interleave numa_local numa_other "
    "nr_inactive_anon nr_active_anon nr_inactive_file nr_active_file nr_unevictable "
    "nr_slab_reclaimable nr_slab_unreclaimable nr_isolated_anon nr_isolated_file workingset_nodes "
    "workingset_refault workingset_activate workingset_restore workingset_nodereclaim "
    "nr_anon_pages nr_mapped nr_file_pages nr_dirty nr_writeback nr_writeback_temp nr_shmem "
    "nr_shmem_hugepages nr_shmem_pmdmapped nr_file_hugepages nr_file_pmdmapped "
    "nr_anon_transparent_hugepages nr_unstable nr_vmscan_write nr_vmscan_immediate_reclaim "
    "nr_dirtied nr_written nr_kernel_misc_reclaimable nr_foll_pin_acquired nr_foll_pin_released "
    "nr_dirty_threshold nr_dirty_background_threshold "
    "pgpgin pgpgout pswpin pswpout "
    "pgalloc_dma pgalloc_dma32 pgalloc_normal pgalloc_movable "
    "allocstall_dma allocstall_dma32 allocstall_normal allocstall_movable "
    "pgskip_dma pgskip_dma32 pgskip_normal pgskip_movable "
    "pgfree pgactivate pgdeactivate pglazyfree pgfault pgmajfault pglazyfreed pgrefill "
    "pgsteal_kswapd pgsteal_direct pgscan_kswapd pgscan_direct pgscan_direct_throttle "
    "zone_reclaim_failed pginodesteal slabs_scanned kswapd_inodesteal "
    "kswapd_low_wmark_hit_quickly kswapd_high_wmark_hit_quickly pageoutrun pgrotated "
    "drop_pagecache drop_slab oom_kill "
    "numa_pte_updates numa_huge_pte_updates numa_hint_faults numa_hint_faults_local "
    "numa_pages_migrated pgmigrate_success pgmigrate_fail "
    "compact_migrate_scanned compact_free_scanned compact_isolated compact_stall compact_fail "
    "compact_success compact_daemon_wake compact_daemon_migrate_scanned compact_daemon_free_scanned "
    "htlb_buddy_alloc_success htlb_buddy_alloc_fail "
    "unevictable_pgs_culled unevictable_pgs_scanned unevictable_pgs_rescued unevictable_pgs_mlocked "
    "unevictable_pgs_munlocked unevictable_pgs_cleared unevictable_pgs_stranded "
    "thp_fault_alloc thp_fault_fallback thp_fault_fallback_charge thp_collapse_alloc "
    "thp_collapse_alloc_failed thp_file_alloc thp_file_fallback thp_file_fallback_charge "
    "thp_file_mapped thp_split_page thp_split_page_failed thp_deferred_split_page thp_split_pmd "
    "thp_split_pud thp_zero_page_alloc thp_zero_page_alloc_failed thp_swpout thp_swpout_fallback "
    "balloon_inflate balloon_deflate balloon_migrate swap_ra swap_ra_hit").split()
V57_ZONE_ITEMS = V57_VMSTAT[:V57_VMSTAT.index("nr_free_cma") + 1]
V57_NUMA_ITEMS = V57_VMSTAT[len(V57_ZONE_ITEMS):V57_VMSTAT.index("numa_other") + 1]
V57_NODE_ITEMS = V57_VMSTAT[V57_VMSTAT.index("nr_inactive_anon"):V57_VMSTAT.index("nr_foll_pin_released") + 1]

V57_MEMINFO = (
    "MemTotal MemFree MemAvailable Buffers Cached SwapCached Active Inactive Active(anon) "
    "Inactive(anon) Active(file) Inactive(file) Unevictable Mlocked SwapTotal SwapFree Dirty "
    "Writeback AnonPages Mapped Shmem KReclaimable Slab SReclaimable SUnreclaim KernelStack "
    "PageTables NFS_Unstable Bounce WritebackTmp CommitLimit Committed_AS VmallocTotal "
    "VmallocUsed VmallocChunk Percpu HardwareCorrupted AnonHugePages ShmemHugePages "
    "ShmemPmdMapped FileHugePages FilePmdMapped HugePages_Total HugePages_Free HugePages_Rsvd "
    "HugePages_Surp Hugepagesize Hugetlb DirectMap4k DirectMap2M DirectMap1G").split()

# renamed/removed after v5.7 (spec "Live-kernel check" and later kernels): never compared
POST_57_GONE = {"nr_unstable", "workingset_refault", "workingset_activate", "workingset_restore",
                "nr_bounce", "nr_writeback_temp"}

VMSTAT_RE = re.compile(r"^([a-z0-9_]+) (\d+)$")
BUDDY_RE = re.compile(r"^Node (\d+), zone ([ \w]{8}) ((?:[ \d]{5}\d ){11})$")
MEMINFO_KB_RE = re.compile(r"^([\w()]+):( +)(\d+) kB$")
MEMINFO_HUGE_RE = re.compile(r"^(HugePages_(?:Total|Free|Rsvd|Surp)):( +)(\d+)$")


def meminfo_labels(text: str) -> list[str]:
    out = []
    for line in text.split("\n")[:-1]:
        m = MEMINFO_KB_RE.match(line) or MEMINFO_HUGE_RE.match(line)
        assert m, f"meminfo line does not parse: {line!r}"
        label, val = m.group(1), m.group(3)
        if label == "HardwareCorrupted":
            assert line == f"HardwareCorrupted: {int(val):5d} kB", line
        elif label.startswith("HugePages_"):
            assert line == f"{label + ':':<19}{int(val):5d}", line
        else:
            assert line == f"{label + ':':<16}{int(val):8d} kB", line
        out.append(label)
    return out


def test_balance_format_vmstat_v57_order(machine_a):
    k = machine_a
    text = k.read_file("/proc/vmstat")
    assert text.endswith("\n")
    names = []
    for line in text.split("\n")[:-1]:
        m = VMSTAT_RE.match(line)
        assert m, f"vmstat line: {line!r}"
        names.append(m.group(1))
    assert names == V57_VMSTAT
    assert "pgalloc_device" not in names and "pgalloc_high" not in names


def test_balance_format_zoneinfo_items_match_vmstat(machine_a):
    """zoneinfo prints the same zone, NUMA and node items, in the same order, as
    /proc/vmstat (one vmstat_text[] table)."""
    k = machine_a
    zones = parse_zoneinfo(k.read_file("/proc/zoneinfo"), True)
    assert [(z["node"], z["zone"]) for z in zones] == [
        (0, "DMA"), (0, "DMA32"), (0, "Normal"), (0, "Movable"), (0, "Device")]
    d32 = zones[1]
    assert list(d32["node_stats"]) == V57_NODE_ITEMS
    assert list(d32["zone_stats"]) == V57_ZONE_ITEMS + V57_NUMA_ITEMS
    assert list(zones[2]["zone_stats"]) == V57_ZONE_ITEMS + V57_NUMA_ITEMS
    assert list(d32["marks"]) == ["pages free", "min", "low", "high", "spanned", "present", "managed"]
    for z in zones:
        if z["zone"] in ("DMA32", "Normal"):
            assert z["pagesets"] and len(z["cpus"]) == 1 and len(z["thresholds"]) == 1
            assert z["node_unreclaimable"] == 0 and z["start_pfn"] is not None
        else:
            assert not z["pagesets"] and not z["zone_stats"] and z["start_pfn"] is None


def test_balance_format_meminfo_v57_order(machine_a):
    k = machine_a
    text = k.read_file("/proc/meminfo")
    assert meminfo_labels(text) == V57_MEMINFO
    assert text.splitlines()[0] == "MemTotal:        4194304 kB"


def test_balance_format_pagetypeinfo_model(machine_a):
    k = machine_a
    text = k.read_file("/proc/pagetypeinfo")
    lines = text.split("\n")
    assert lines[0] == "Page block order: 9"
    assert lines[1] == "Pages per block:  512"
    assert lines[2] == ""
    assert lines[3] == ("Free pages count per migrate type at order       0      1      2      3      4"
                        "      5      6      7      8      9     10 ")
    types = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
    rows = lines[4:4 + 10]
    exp_rows = []
    for zname, n10 in (("DMA32", 256), ("Normal", 768)):
        for t in types:
            counts = [0] * 10 + [n10 if t == "Movable" else 0]
            exp_rows.append(f"Node    0, zone {zname:>8}, type {t:>12} " + "".join(f"{c:6d} " for c in counts))
    assert rows == exp_rows
    assert lines[14] == ""
    assert lines[15] == "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic      Isolate "
    assert lines[16] == "Node 0, zone    DMA32            0          512            0            0            0 "
    assert lines[17] == "Node 0, zone   Normal            0         1536            0            0            0 "
    assert lines[18:] == [""]


# ---------------------------------------------------------------- formats: live kernel oracle
def _live(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:  # pragma: no cover - depends on the host
        pytest.skip(f"live {path} not readable: {e}")


def test_balance_live_buddyinfo_same_layout(machine_a):
    live = _live("/proc/buddyinfo")
    model = machine_a.read_file("/proc/buddyinfo")
    for text in (live, model):
        assert text.endswith("\n")
        for line in text.split("\n")[:-1]:
            m = BUDDY_RE.match(line)
            assert m, f"buddyinfo line: {line!r}"
            assert line == (f"Node {int(m.group(1))}, zone {m.group(2).strip():>8} "
                            + "".join(f"{int(v):6d} " for v in m.group(3).split()))
    assert "zone      DMA " not in model  # unpopulated zones are absent
    assert [ln[:21] for ln in model.splitlines()] == ["Node 0, zone    DMA32", "Node 0, zone   Normal"]


def test_balance_live_pagetypeinfo_same_layout(machine_a):
    live = _live("/proc/pagetypeinfo")
    model = machine_a.read_file("/proc/pagetypeinfo")
    free_row = re.compile(r"^Node [ \d]{3}\d, zone ([ \w]{8}), type ([ \w]{12}) ((?:>?[ \d]{5}\d ){11})$")
    block_row = re.compile(r"^Node \d+, zone ([ \w]{8}) ((?:[ \d]{11}\d )+)$")
    for text in (live, model):
        lines = text.split("\n")
        assert re.fullmatch(r"Page block order: \d+", lines[0])
        assert re.fullmatch(r"Pages per block:  \d+", lines[1])
        assert lines[2] == ""
        assert re.fullmatch(r"Free pages count per migrate type at order  (?:[ \d]{5}\d ){11}", lines[3])
        i = 4
        while lines[i]:
            assert free_row.match(lines[i]), f"pagetypeinfo row: {lines[i]!r}"
            i += 1
        i += 1
        assert re.fullmatch(r"Number of blocks type  (?:[ \w]{12} )+", lines[i]), lines[i]
        ntypes = len(lines[i][23:].split())
        i += 1
        while i < len(lines) and lines[i]:
            m = block_row.match(lines[i])
            assert m and len(m.group(2).split()) == ntypes, f"block row: {lines[i]!r}"
            i += 1
    live_types = re.findall(r", type +(\w+) ", live)
    model_types = re.findall(r", type +(\w+) ", model)
    assert model_types[:5] == live_types[:5] == ["Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate"]


def test_balance_live_zoneinfo_same_layout():
    live = _live("/proc/zoneinfo")
    k = linmm.Kernel(linmm.MachineConfig(ram="4G", cpus=2))
    model = k.read_file("/proc/zoneinfo")
    lz = parse_zoneinfo(live, False)
    mz = parse_zoneinfo(model, True)
    # same zones in the same order (x86_64: DMA, DMA32, Normal, Movable, Device per node)
    assert [z["zone"] for z in mz] == [z["zone"] for z in lz if z["node"] == 0]
    kinds_live, kinds_model = {}, {}
    for zs, kinds, text in ((lz, kinds_live, live), (mz, kinds_model, model)):
        for line in text.split("\n")[:-1]:
            kind, m = classify_zoneinfo_line(line)
            if kind in ("mark", "stat", "pcp"):
                kinds.setdefault(m.group(1), set()).add(kind)
    common = set(kinds_live) & set(kinds_model)
    for name in common:
        if name in ("nr_kernel_stack", "nr_page_table_pages"):
            continue  # moved from zone to node stats after v5.7: both are "stat" lines anyway
        assert kinds_live[name] == kinds_model[name], name
    missing = set(kinds_model) - set(kinds_live)
    assert missing <= POST_57_GONE, f"model zoneinfo fields unknown to the live kernel: {missing}"
    for must in ("min", "low", "high", "spanned", "present", "managed", "nr_free_pages",
                 "numa_hit", "count", "high", "batch", "nr_inactive_anon", "nr_free_cma"):
        assert must in common, must
    # the populated zones of the live kernel and the model: same sub-blocks
    for z in lz + mz:
        if z["marks"].get("present"):
            assert z["pagesets"] and z["cpus"] and z["start_pfn"] is not None
            assert z["node_unreclaimable"] in (0, 1)
            assert len(z["protection"]) == 5


def test_balance_live_vmstat_names(machine_a):
    live = _live("/proc/vmstat")
    model = machine_a.read_file("/proc/vmstat")
    lnames = []
    for text, out in ((live, lnames), (model, None)):
        for line in text.split("\n")[:-1]:
            m = VMSTAT_RE.match(line)
            assert m, f"vmstat line: {line!r}"
            if out is not None:
                out.append(m.group(1))
    mnames = [ln.split()[0] for ln in model.splitlines()]
    missing = set(mnames) - set(lnames)
    assert missing <= POST_57_GONE, f"model vmstat items unknown to the live kernel: {missing}"


def test_balance_live_meminfo_same_layout(machine_a):
    live = _live("/proc/meminfo")
    model = machine_a.read_file("/proc/meminfo")
    llabels = meminfo_labels(live)
    mlabels = meminfo_labels(model)
    common = [x for x in mlabels if x in llabels]
    assert common == [x for x in llabels if x in mlabels], "common meminfo labels in another order"
    assert set(mlabels) - set(llabels) <= {"HardwareCorrupted"}  # live kernel built without MEMORY_FAILURE


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to read the live watermarks' inputs")
def test_balance_live_watermark_formula():
    """Live-kernel check 1/2/3: recompute min/low/high from the live managed counts."""
    live = _live("/proc/zoneinfo")
    zones = parse_zoneinfo(live, False)
    mfk = int(_live("/proc/sys/vm/min_free_kbytes"))
    wsf = int(_live("/proc/sys/vm/watermark_scale_factor"))
    if any(z["marks"].get("boost", 0) for z in zones):
        pytest.skip("live zones are boosted right now")
    balloon = re.search(r"^Balloon: +(\d+) kB$", _live("/proc/meminfo"), re.M)
    if balloon and int(balloon.group(1)):
        pytest.skip("a balloon changed managed pages after the watermarks were set")
    pages_min = mfk >> 2
    lowmem = sum(z["marks"]["managed"] for z in zones)
    for z in zones:
        if z["zone"] not in ("DMA", "DMA32", "Normal"):
            continue  # ZONE_MOVABLE is sized like highmem since v5.x (not comparable)
        managed = z["marks"]["managed"]
        tmp = pages_min * managed // lowmem
        step = max(tmp >> 2, (managed // 10000) * wsf + (managed % 10000) * wsf // 10000)
        assert (z["marks"]["min"], z["marks"]["low"], z["marks"]["high"]) == (tmp, tmp + step, tmp + 2 * step), z["zone"]
