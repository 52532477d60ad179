"""free_page_reporting.md acceptance scenarios (v5.7 mm/page_reporting.c).

Machine A of the balance spec: DMA 0, DMA32 1 GiB (low 774), Normal 3 GiB
(min 1536, low 2322).  To build "Normal holds exactly N free blocks of order
9 with no free buddy", every order-9 block of every zone is allocated first
(__GFP_MEMALLOC, so the watermarks do not stop it) and then chosen blocks are
freed: even 2 MiB blocks alone give unmerged order-9 blocks, both halves of a
4 MiB block give an order-10 block.  (Everything else, including what is left
of the block that holds kmalloc-1k's first slab, stays allocated.)

Scenario 3 needs 1000 unmerged order-9 blocks, i.e. 1000 buddy pairs = 4000
MiB, more than Machine A's 3 GiB Normal zone (1536 blocks = 768 pairs): it
runs with a 4 GiB Normal zone (2048 blocks), everything else as Machine A.
"""
import pytest

import linmm
from linmm import GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from linmm.drivers import balloon as B
from linmm.errors import EBUSY, ENOSPC
from linmm.mm import gfp as G
from linmm.mm import page_reporting as PR

ALL = G.GFP_HIGHUSER_MOVABLE | G.__GFP_MEMALLOC | G.__GFP_NOWARN | G.__GFP_NORETRY
MB2, MB4 = 2097152, 4194304


def machine(normal="3G", cmdline=""):
    k = linmm.Kernel(linmm.MachineConfig(zones={"DMA": 0, "DMA32": "1G", "Normal": normal},
                                         cmdline=cmdline))
    PR.init(k)
    return k


def check(k):
    k.check()
    PR.check(k)


def normal_zone(k):
    return k.pgdats[0].node_zones[2]


def exhaust(k, order):
    """Allocate every free page of every zone: blocks of `order` first (returned),
    then whatever smaller pieces are left (kept allocated).  Filling the last
    pieces steals across migratetypes; watermark boosting is switched off so the
    zones keep Machine A's watermarks (low 2322 in Normal)."""
    k.write_file("/proc/sys/vm/watermark_boost_factor", "0")
    out = []
    while (p := k.page_alloc.alloc_pages_nodemask(ALL, order)) is not None:
        out.append(p)
    for o in range(order - 1, -1, -1):
        while k.page_alloc.alloc_pages_nodemask(ALL, o) is not None:
            pass
    k.page_alloc.drain_all_pages()
    assert k.global_free_pages() == 0
    return out


class Setup:
    """All order-9 blocks allocated; free_single / free_pair make the free blocks."""

    def __init__(self, k):
        self.k = k
        blocks = exhaust(k, 9)
        self.normal = sorted(p for p in blocks if k.page_zone_of(p) is normal_zone(k))
        self.allocated = set(blocks)
        self.singles = [p for p in self.normal if not p & 512]  # their buddy p+512 stays allocated
        self.pairs = [p for p in self.normal if not p & 1023]

    def free_singles(self, n, start=0):
        out = self.singles[start:start + n]
        assert len(out) == n
        for p in out:
            self.k.page_alloc.free_pages(p, 9)
            self.allocated.discard(p)
        return out

    def free_pairs(self, n, start=0):
        out = self.pairs[start:start + n]
        assert len(out) == n
        for p in out:
            self.k.page_alloc.free_pages(p, 9)
            self.k.page_alloc.free_pages(p + 512, 9)
            self.allocated.discard(p)
            self.allocated.discard(p + 512)
        return out


class Dev:
    """A reporting device that records every call."""

    def __init__(self, k, name="dev", results=()):
        self.k = k
        self.calls = []  # (ms, [(pfn, length)])
        self.results = list(results)
        self.on_call = None
        self.prdev = PR.PageReportingDevInfo(self.report, name)

    def report(self, prdev, sgl, nents):
        assert prdev is self.prdev and len(sgl) == nents and sgl[-1].end
        self.calls.append((self.k.now_ms, [(e.pfn, e.length) for e in sgl[:nents]]))
        if self.on_call is not None:
            self.on_call()
        return self.results.pop(0) if self.results else 0

    def sizes(self):
        return [len(c[1]) for c in self.calls]


def reported(k, pfns):
    return [PR.PageReported(k, p) for p in pfns]


def stats(k):
    return PR.page_reporting_stats(k)


def scenario2(k, results=()):
    s = Setup(k)
    dev = Dev(k, results=results)
    PR.page_reporting_register(k, dev.prdev)
    blocks = s.free_singles(40)
    return s, dev, blocks


# ---------------------------------------------------------------- 1
def test_page_reporting_s1_first_pass_two_seconds_after_register():
    k = machine()
    dev = Dev(k)
    assert k.now_ms == 0
    PR.page_reporting_register(k, dev.prdev)
    assert dev.prdev.state == PR.PAGE_REPORTING_REQUESTED
    assert "Free page reporting enabled" in k.dmesg()
    k.run(1999)
    assert dev.calls == [] and stats(k)["passes"] == 0
    k.run(1)
    assert stats(k)["passes"] == 1
    assert dev.calls and dev.calls[0][0] == 2000
    check(k)


# ---------------------------------------------------------------- 2
def test_page_reporting_s2_forty_blocks_32_then_8():
    k = machine()
    _, dev, blocks = scenario2(k)
    assert normal_zone(k).vm_stat["nr_free_pages"] == 20480
    k.run(2000)
    assert dev.sizes() == [32, 8]
    assert all(length == MB2 for _, ent in dev.calls for _, length in ent)
    assert sorted(p for _, ent in dev.calls for p, _ in ent) == sorted(blocks)
    assert all(reported(k, blocks))
    st = stats(k)
    assert st["state"] == "IDLE" and st["next_pass_ms"] is None
    assert st["last_batch_sizes"] == [32, 8] and st["pages_reported_by_order"] == {9: 40}
    check(k)
    k.run(10000)
    assert dev.sizes() == [32, 8]  # nothing further
    check(k)


# ---------------------------------------------------------------- 3
def test_page_reporting_s3_budget_thousand_blocks():
    k = machine(normal="4G")
    s = Setup(k)
    dev = Dev(k)
    PR.page_reporting_register(k, dev.prdev)
    blocks = s.free_singles(1000)
    assert normal_zone(k).free_area[9].nr_free == 1000
    for t in range(1, 11):
        k.run(2000)
        assert [c[0] for c in dev.calls[-3:]] == [2000 * t] * 3
        assert len(dev.calls) == 3 * t and dev.sizes()[-3:] == [32, 32, 32]
        assert dev.prdev.state == PR.PAGE_REPORTING_REQUESTED
        assert stats(k)["next_pass_ms"] == 2000 * (t + 1)
    k.run(2000)
    assert k.now_ms == 22000
    assert dev.sizes()[-2:] == [32, 8] and len(dev.calls) == 32
    assert all(reported(k, blocks))
    assert stats(k)["state"] == "IDLE" and stats(k)["next_pass_ms"] is None
    assert stats(k)["passes"] == 11
    check(k)


# ---------------------------------------------------------------- 4, 9
def test_page_reporting_s4_order10_budget_one_and_s9_memfree_dip():
    k = machine()
    s = Setup(k)
    dev = Dev(k)
    PR.page_reporting_register(k, dev.prdev)
    blocks = s.free_pairs(256)
    assert normal_zone(k).free_area[10].nr_free == 256
    seen = []

    def read_memfree():
        line = next(ln for ln in k.read_file("/proc/meminfo").splitlines() if ln.startswith("MemFree:"))
        seen.append(int(line.split()[1]))
    dev.on_call = read_memfree
    k.run(1999)
    read_memfree()
    before = seen.pop()
    for t in range(1, 5):
        k.run(2000 if t > 1 else 1)
        assert [c[0] for c in dev.calls[-2:]] == [1999 + 1 + 2000 * (t - 1)] * 2
        assert dev.sizes() == [32, 32] * t
        assert all(length == MB4 for _, ent in dev.calls for _, length in ent)
    assert before - seen[0] == 131072  # scenario 9: 32 blocks of 4 MiB isolated
    read_memfree()
    assert seen[-1] == before
    assert all(reported(k, blocks))
    assert stats(k)["state"] == "IDLE" and stats(k)["next_pass_ms"] is None
    k.run(4000)
    assert len(dev.calls) == 8
    check(k)


# ---------------------------------------------------------------- 5
@pytest.mark.parametrize("extra,processed", [(0, False), (1, True)])
def test_page_reporting_s5_low_memory_zone_skipped(extra, processed):
    from linmm.mm.page_owner import split_page
    k = machine()
    s = Setup(k)
    blocks = s.free_singles(36)
    donor = s.singles[36] + 512  # an allocated block, split into order-0 pages
    split_page(k, donor, 9)
    for p in range(donor, donor + 274 + extra):
        k.page_alloc.free_pages(p, 0)
    k.page_alloc.drain_all_pages()
    assert normal_zone(k).vm_stat["nr_free_pages"] == 18706 + extra
    assert normal_zone(k).low_wmark_pages() == 2322
    dev = Dev(k)
    PR.page_reporting_register(k, dev.prdev)
    k.run(2000)
    assert stats(k)["passes"] == 1
    if processed:
        assert dev.sizes() == [32, 4]
        assert all(reported(k, blocks))
    else:
        assert dev.calls == []
        assert not any(reported(k, blocks))
    check(k)


# ---------------------------------------------------------------- 6
def test_page_reporting_s6_free_path_trigger():
    k = machine()
    _, dev, blocks = scenario2(k)
    k.run(2000)
    assert dev.prdev.state == PR.PAGE_REPORTING_IDLE
    n0 = len(dev.calls)
    page = k.alloc_pages(GFP_KERNEL, 9)
    assert page.pfn in blocks and not PR.PageReported(k, page.pfn)
    assert dev.prdev.state == PR.PAGE_REPORTING_IDLE
    k.free_pages(page, 9)  # buddy allocated: stays order 9
    assert dev.prdev.state == PR.PAGE_REPORTING_REQUESTED
    assert stats(k)["next_pass_ms"] == k.now_ms + 2000
    k.run(2000)
    assert dev.calls[n0:] == [(4000, [(page.pfn, MB2)])]
    check(k)
    # an order-8 block whose buddy is free merges to order 9: same trigger
    n0 = len(dev.calls)
    a = k.alloc_pages(GFP_KERNEL, 8)
    assert dev.prdev.state == PR.PAGE_REPORTING_IDLE
    k.free_pages(a, 8)
    assert dev.prdev.state == PR.PAGE_REPORTING_REQUESTED
    k.run(2000)
    assert [len(c[1]) for c in dev.calls[n0:]] == [1]
    assert dev.calls[n0][1][0] == (a.pfn & ~511, MB2)
    check(k)
    # an order-8 block that stays order 8 does not
    a = k.alloc_pages(GFP_KERNEL, 8)
    b = k.alloc_pages(GFP_KERNEL, 8)
    assert b.pfn == a.pfn ^ 256
    k.free_pages(a, 8)
    assert dev.prdev.state == PR.PAGE_REPORTING_IDLE and stats(k)["next_pass_ms"] is None
    k.free_pages(b, 8)
    assert dev.prdev.state == PR.PAGE_REPORTING_REQUESTED
    check(k)


# ---------------------------------------------------------------- 7
def test_page_reporting_s7_allocation_clears_flag_host_discarded():
    k = machine()
    s = Setup(k)
    host = B.BalloonHost(features={B.VIRTIO_BALLOON_F_REPORTING})
    vb = B.virtballoon_probe(k, host)
    blocks = s.singles[:40]
    for p in blocks:  # the guest used these pages before freeing them
        for q in range(p, p + 512, 64):
            k.frames.write(q, 0, b"\x5a" * 4096)
    s.free_singles(40)
    k.run(2000)
    assert all(reported(k, blocks))
    assert host.discarded_bytes == 40 * MB2 and host.reported_bytes == 40 * MB2
    assert vb.reported_pages == 40 * 512
    page = k.alloc_pages(GFP_HIGHUSER_MOVABLE, 9)
    assert page.pfn in blocks
    assert not PR.PageReported(k, page.pfn) and not k.memmap.test(page.pfn, 2)
    assert host.is_discarded(page.pfn)
    for q in range(page.pfn, page.pfn + 512, 64):  # kmap(page) on x86_64 = the frame
        assert k.frames.read(q) == bytes(4096)
    check(k)


# ---------------------------------------------------------------- 8
def test_page_reporting_s8_merge_clears_and_rereports():
    k = machine()
    _, dev, blocks = scenario2(k)
    k.run(2000)
    p = blocks[0]
    assert PR.PageReported(k, p)
    n0 = len(dev.calls)
    k.page_alloc.free_pages(p + 512, 9)  # its allocated buddy
    assert not k.memmap.PageBuddy(p + 512)
    assert k.memmap.PageBuddy(p) and int(k.memmap.private[p]) == 10
    assert not PR.PageReported(k, p)
    assert dev.prdev.state == PR.PAGE_REPORTING_REQUESTED
    k.run(2000)
    assert dev.calls[n0:] == [(4000, [(p, MB4)])]
    assert PR.PageReported(k, p)
    check(k)


# ---------------------------------------------------------------- 10
def test_page_reporting_s10_error_path():
    k = machine()
    _, dev, blocks = scenario2(k, results=[-5])  # -EIO on the first call
    k.run(2000)
    assert dev.sizes() == [32]
    assert stats(k)["isolations"] == 32  # the remaining 8 were never isolated
    assert not any(reported(k, blocks))
    assert all(k.memmap.PageBuddy(p) for p in blocks)
    assert normal_zone(k).vm_stat["nr_free_pages"] == 20480
    assert dev.prdev.state == PR.PAGE_REPORTING_IDLE and stats(k)["next_pass_ms"] is None
    check(k)
    k.run(10000)
    assert dev.sizes() == [32]
    page = k.alloc_pages(GFP_HIGHUSER_MOVABLE, 9)
    assert page.pfn in blocks
    k.free_pages(page, 9)
    assert dev.prdev.state == PR.PAGE_REPORTING_REQUESTED
    t0 = k.now_ms
    k.run(2000)
    assert [c[0] for c in dev.calls[1:]] == [t0 + 2000] * 2
    assert dev.sizes() == [32, 32, 8]
    assert all(reported(k, blocks))
    check(k)


# ---------------------------------------------------------------- 11
def test_page_reporting_s11_second_device_ebusy():
    k = machine()
    _, dev1, _ = scenario2(k)
    dev2 = Dev(k, "dev2")
    with pytest.raises(EBUSY):
        PR.page_reporting_register(k, dev2.prdev)
    assert dev1.prdev.state == PR.PAGE_REPORTING_REQUESTED
    k.run(2000)
    assert dev1.sizes() == [32, 8] and dev2.calls == []
    check(k)


# ---------------------------------------------------------------- 12
def test_page_reporting_s12_unregister_and_reregister():
    k = machine()
    s, dev1, blocks = scenario2(k)
    k.run(2000)
    more = s.free_singles(2, start=40)
    assert dev1.prdev.state == PR.PAGE_REPORTING_REQUESTED
    PR.page_reporting_unregister(k, dev1.prdev)
    k.run(5000)
    assert dev1.sizes() == [32, 8]  # the pending pass never ran
    assert all(reported(k, blocks)) and not any(reported(k, more))
    late = s.free_singles(1, start=42)  # freed with no device registered
    dev2 = Dev(k, "dev2")
    t0 = k.now_ms
    PR.page_reporting_register(k, dev2.prdev)
    k.run(1999)
    assert dev2.calls == []
    k.run(1)
    assert len(dev2.calls) == 1 and dev2.calls[0][0] == t0 + 2000
    assert sorted(dev2.calls[0][1]) == sorted((p, MB2) for p in more + late)
    assert dev1.sizes() == [32, 8]
    assert all(reported(k, blocks + more + late))
    check(k)


# ---------------------------------------------------------------- 13
def test_page_reporting_s13_mixed_orders_in_one_batch():
    k = machine()
    s = Setup(k)
    dev = Dev(k)
    PR.page_reporting_register(k, dev.prdev)
    nine = s.free_singles(20)
    ten = s.free_pairs(20, start=200)
    assert normal_zone(k).free_area[9].nr_free == 20 and normal_zone(k).free_area[10].nr_free == 20
    k.run(2000)
    assert dev.sizes() == [32, 8]
    lengths = sorted(length for _, length in dev.calls[0][1])
    assert lengths == [MB2] * 20 + [MB4] * 12
    assert [length for _, length in dev.calls[1][1]] == [MB4] * 8
    assert all(reported(k, nine + ten))
    check(k)


# ---------------------------------------------------------------- 14
def test_page_reporting_s14_balloon_poison_negotiation():
    k = machine(cmdline="page_poison=1")
    s = Setup(k)
    host = B.BalloonHost(features={B.VIRTIO_BALLOON_F_REPORTING})
    vb = B.virtballoon_probe(k, host)
    assert B.VIRTIO_BALLOON_F_REPORTING not in vb.features and not vb.registered
    assert "Free page reporting enabled" not in k.dmesg()
    s.free_singles(40)
    k.run(10000)
    assert stats(k)["passes"] == 0 and host.reported == []
    check(k)


def test_page_reporting_s14b_balloon_page_poison_reads_back_0xaa():
    k = machine(cmdline="page_poison=1")
    halves = exhaust(k, 8)  # every page allocated, in 1 MiB blocks where possible
    nz = normal_zone(k)
    mine = sorted(p for p in halves if k.page_zone_of(p) is nz)
    # 74 order-8 blocks (not reportable) and 2 order-9 blocks with allocated buddies
    for p in [p for p in mine if p % 2048 == 0][:74]:
        k.page_alloc.free_pages(p, 8)
    nine = [p for p in mine if p % 2048 == 1024][:2]
    for p in nine:
        k.page_alloc.free_pages(p, 8)
        k.page_alloc.free_pages(p + 256, 8)
    assert nz.vm_stat["nr_free_pages"] == 74 * 256 + 2 * 512
    host = B.BalloonHost(features={B.VIRTIO_BALLOON_F_REPORTING, B.VIRTIO_BALLOON_F_PAGE_POISON})
    vb = B.virtballoon_probe(k, host)
    assert vb.registered and host.poison_val == 0xAA
    k.run(2000)
    assert sorted(host.reported) == sorted((p, 9) for p in nine)
    page = k.alloc_pages(GFP_HIGHUSER_MOVABLE, 9)
    assert page.pfn in nine
    assert k.frames.read(page.pfn + 17) == b"\xaa" * 4096
    check(k)


def test_page_reporting_balloon_small_queue_enospc_and_queue_error():
    k = machine()
    with pytest.raises(ENOSPC):
        B.virtballoon_probe(k, B.BalloonHost(reporting_vq_size=16))
    s = Setup(k)
    host = B.BalloonHost()
    host.fail_add = [28]
    vb = B.virtballoon_probe(k, host)
    blocks = s.free_singles(40)
    k.run(2000)
    assert "virtballoon_free_page_report" in k.dmesg()
    assert host.reported == [] and not any(reported(k, blocks)) and vb.reported_pages == 0
    vb.remove()
    assert k.page_reporting.pr_dev_info is None
    check(k)


def test_page_reporting_sgl_allocation_failure_ends_pass():
    k = machine()
    _, dev, blocks = scenario2(k)
    k._failslab = 1  # the pass's kmalloc_array() fails
    k.run(2000)
    assert stats(k)["passes"] == 1 and dev.calls == []
    assert dev.prdev.state == PR.PAGE_REPORTING_IDLE
    assert not any(reported(k, blocks))
    check(k)


def test_page_reporting_isolation_respects_min_watermark():
    """__isolate_free_page() fails when the zone has min + 2^order free pages or fewer."""
    k = machine()
    s = Setup(k)
    blocks = s.free_singles(5)  # 2560 free; min 1536 + 512 = 2048
    pr = k.page_reporting
    nz = normal_zone(k)
    mt = k.page_alloc.get_pageblock_migratetype(blocks[0])
    assert pr.isolate_free_page(nz, blocks[0], 9, mt) == 512
    assert nz.vm_stat["nr_free_pages"] == 2048 and blocks[0] in pr.isolated
    assert not k.memmap.PageBuddy(blocks[0])
    check(k)
    assert pr.isolate_free_page(nz, blocks[1], 9, mt) == 0
    assert k.memmap.PageBuddy(blocks[1])
    pr.putback_isolated_page(blocks[0], 9, k.page_alloc.get_pageblock_migratetype(blocks[0]))
    assert nz.vm_stat["nr_free_pages"] == 2560 and not pr.isolated
    assert stats(k)["passes"] == 0
    check(k)
