"""page_frags.md acceptance scenarios (v5.7 page_frag_alloc / page_frag_free).

Machine: explicit zones DMA32 16 MiB + Normal 16 MiB, 1 CPU ("plenty of free
memory"; small so that fragmenting / exhausting it is fast).  Expected values
come from the spec and the v5.7 source.  Kernel addresses are direct-map
addresses (page_address = PAGE_OFFSET + pfn * 4096); k.kmap does not exist on
the x86_64 model, so scenario 6 reads the tail subpage's frame directly, which
is what kmap() of a lowmem page maps.
"""
import pytest

import linmm
from linmm import __GFP_NOWARN, GFP_ATOMIC, GFP_KERNEL
from linmm.errors import KernelBug
from linmm.mm import gfp as G
from linmm.mm import page_frag as PF
from linmm.mm.page import PG_head


def machine():
    k = linmm.Kernel(linmm.MachineConfig(zones={"DMA32": "16M", "Normal": "16M"}))
    PF.init(k)
    return k


def check(k):
    k.check()
    PF.check(k)


def memfree_kb(k):
    line = next(ln for ln in k.read_file("/proc/meminfo").splitlines() if ln.startswith("MemFree:"))
    return int(line.split()[1])


def head_of(k, nc):
    return PF.virt_to_pfn(k, nc.va)


def ev(k, name):
    return k.vm_events[name]


def exhaust(k, gfp):
    """Allocate order-0 pages with gfp until it fails; returns their pfns."""
    out = []
    pa = k.page_alloc
    while True:
        p = pa.alloc_pages_nodemask(gfp, 0)
        if p is None:
            return out
        out.append(p)


NOWAIT_ALL = G.GFP_NOWAIT | __GFP_NOWARN | G.__GFP_MEMALLOC  # ALLOC_NO_WATERMARKS: takes every page


# ---------------------------------------------------------------- 1-3
def test_page_frag_s1_first_alloc_refills_order3():
    k = machine()
    nc = PF.PageFragCache()
    pg0, free0, mf0 = ev(k, "pgalloc_normal"), k.global_free_pages(), memfree_kb(k)
    a = PF.page_frag_alloc(k, nc, 100, GFP_ATOMIC)
    pfn = head_of(k, nc)
    assert a == nc.va + 32668
    assert (nc.offset, nc.size, nc.pagecnt_bias) == (32668, 32768, 32768)
    assert int(k.memmap.refcount[pfn]) == 32769
    assert pfn % 8 == 0 and k.page_zone_of(pfn).name == "Normal"
    assert k.memmap.test(pfn, PG_head)
    assert ev(k, "pgalloc_normal") - pg0 == 8
    assert free0 - k.global_free_pages() == 8
    assert mf0 - memfree_kb(k) == 32
    check(k)


def test_page_frag_s2_second_fragment_no_refcount_traffic():
    k = machine()
    nc = PF.PageFragCache()
    PF.page_frag_alloc(k, nc, 100, GFP_ATOMIC)
    pg0 = ev(k, "pgalloc_normal")
    b = PF.page_frag_alloc(k, nc, 200, GFP_ATOMIC)
    assert b == nc.va + 32468
    assert nc.pagecnt_bias == 32767
    assert int(k.memmap.refcount[head_of(k, nc)]) == 32769
    assert ev(k, "pgalloc_normal") == pg0
    check(k)


def test_page_frag_s3_free_both_page_stays():
    k = machine()
    nc = PF.PageFragCache()
    a = PF.page_frag_alloc(k, nc, 100, GFP_ATOMIC)
    b = PF.page_frag_alloc(k, nc, 200, GFP_ATOMIC)
    pfn = head_of(k, nc)
    pgfree0 = ev(k, "pgfree")
    PF.page_frag_free(k, a)
    PF.page_frag_free(k, b)
    assert int(k.memmap.refcount[pfn]) == 32767
    assert not k.memmap.PageBuddy(pfn)
    assert ev(k, "pgfree") == pgfree0
    check(k)


# ---------------------------------------------------------------- 4-5
def test_page_frag_s4_exhaustion_nothing_outstanding_reuses_page():
    k = machine()
    nc = PF.PageFragCache()
    addrs = [PF.page_frag_alloc(k, nc, 4096, GFP_ATOMIC) for _ in range(8)]
    assert [a - nc.va for a in addrs] == [28672, 24576, 20480, 16384, 12288, 8192, 4096, 0]
    pfn = head_of(k, nc)
    for a in addrs:
        PF.page_frag_free(k, a)
    assert int(k.memmap.refcount[pfn]) == 32761
    assert nc.pagecnt_bias == 32761
    pg0 = ev(k, "pgalloc_normal") + ev(k, "pgalloc_dma32")
    a = PF.page_frag_alloc(k, nc, 4096, GFP_ATOMIC)
    assert head_of(k, nc) == pfn
    assert a == nc.va + 28672
    assert int(k.memmap.refcount[pfn]) == 32769
    assert nc.pagecnt_bias == 32768
    assert ev(k, "pgalloc_normal") + ev(k, "pgalloc_dma32") == pg0
    check(k)


def test_page_frag_s5_exhaustion_one_outstanding_refills():
    k = machine()
    nc = PF.PageFragCache()
    addrs = [PF.page_frag_alloc(k, nc, 4096, GFP_ATOMIC) for _ in range(8)]
    old = head_of(k, nc)
    for a in addrs[:7]:
        PF.page_frag_free(k, a)
    pg0 = ev(k, "pgalloc_normal")
    a9 = PF.page_frag_alloc(k, nc, 4096, GFP_ATOMIC)
    new = head_of(k, nc)
    assert new != old
    assert int(k.memmap.refcount[old]) == 1  # the outstanding fragment
    assert ev(k, "pgalloc_normal") - pg0 == 8
    assert a9 == nc.va + 28672 and int(k.memmap.refcount[new]) == 32769 and nc.pagecnt_bias == 32768
    check(k)
    pgfree0 = ev(k, "pgfree")
    PF.page_frag_free(k, addrs[7])
    assert ev(k, "pgfree") - pgfree0 == 8
    assert int(k.memmap.refcount[old]) == 0 and not k.memmap.test(old, PG_head)
    check(k)


# ---------------------------------------------------------------- 6
def test_page_frag_s6_fragment_bytes_survive():
    k = machine()
    nc = PF.PageFragCache()
    a = PF.page_frag_alloc(k, nc, 100, GFP_ATOMIC)
    b = PF.page_frag_alloc(k, nc, 200, GFP_ATOMIC)
    d1 = bytes(range(100))
    d2 = bytes((i * 7 + 3) % 256 for i in range(200))
    PF.kernel_write(k, a, d1)
    PF.kernel_write(k, b, d2)
    assert PF.kernel_read(k, a, 100) == d1
    assert PF.kernel_read(k, b, 200) == d2
    assert a - nc.va == 32668 and b - nc.va == 32468
    tail7 = head_of(k, nc) + 7
    assert k.frames.read(tail7, 3996, 100) == d1  # kmap(tail page 7) + 3996
    assert k.frames.read(tail7, 3796, 200) == d2
    check(k)


# ---------------------------------------------------------------- 7-8
def test_page_frag_s7_order3_failure_falls_back_to_order0():
    k = machine()
    pfns = exhaust(k, NOWAIT_ALL)
    for p in pfns:
        if p % 2 == 0:
            k.page_alloc.free_pages(p, 0)
    for z in k.all_zones():
        assert all(z.free_area[o].nr_free == 0 for o in range(3, 11))
    log0 = k.dmesg()
    pg0 = ev(k, "pgalloc_normal")
    nc = PF.PageFragCache()
    a = PF.page_frag_alloc(k, nc, 1000, GFP_ATOMIC)
    assert a is not None
    assert nc.size == 4096
    assert a == nc.va + 3096
    pfn = head_of(k, nc)
    assert int(k.memmap.refcount[pfn]) == 32769
    assert nc.pagecnt_bias == 32768
    assert ev(k, "pgalloc_normal") - pg0 == 1
    new_log = k.dmesg()[len(log0):]
    assert "page allocation failure" not in new_log
    assert "Out of memory" not in new_log and "Killed process" not in new_log
    check(k)


def test_page_frag_s8_both_orders_fail_then_succeed():
    k = machine()
    pfns = exhaust(k, NOWAIT_ALL)
    assert k.global_free_pages() == 0
    nc = PF.PageFragCache()
    rc0 = k.memmap.refcount.copy()
    assert PF.page_frag_alloc(k, nc, 100, GFP_ATOMIC) is None
    assert nc.va is None
    assert (k.memmap.refcount == rc0).all()  # nothing pinned
    check(k)
    for p in pfns:
        k.page_alloc.free_pages(p, 0)
    a = PF.page_frag_alloc(k, nc, 100, GFP_ATOMIC)
    assert a == nc.va + 32668 and nc.size == 32768
    check(k)


# ---------------------------------------------------------------- 9-10
def test_page_frag_s9_netdev_alloc_frag_aligns_to_cache_line():
    k = machine()
    a = PF.netdev_alloc_frag(k, 100, context="irq")
    nc = k.page_frag.netdev_alloc_cache[0]
    assert a == nc.va + 32640
    b = PF.netdev_alloc_frag(k, 1, context="irq")
    assert b == nc.va + 32576
    assert nc.pagecnt_bias == 32767
    assert k.page_frag.napi_alloc_cache[0].va is None
    check(k)


def test_page_frag_s10_netdev_alloc_skb_head_frag():
    k = machine()
    skb = PF.netdev_alloc_skb(k, 1500, GFP_ATOMIC)
    nc = k.page_frag.netdev_alloc_cache[0]
    assert skb.head == nc.va + 30848
    assert skb.truesize_data == 1920 and skb.head_frag == 1
    PF.skb_free_frag(k, skb)
    check(k)


def test_page_frag_s10b_large_head_from_kmalloc():
    k = machine()
    if not hasattr(k, "kmalloc"):
        pytest.skip("needs the slab allocator (k.kmalloc): not modelled in this tree")
    nc = k.page_frag.netdev_alloc_cache[0]
    skb = PF.netdev_alloc_skb(k, 4000, GFP_ATOMIC)
    assert skb.head_frag == 0 and skb.truesize_data == 4416
    assert k.ksize(skb.head) == 8192  # kmalloc-8k
    assert nc.va is None  # the frag cache is untouched
    PF.skb_free_frag(k, skb)
    check(k)


# ---------------------------------------------------------------- 11-12
def test_page_frag_s11_cache_drain():
    k = machine()
    nc = PF.PageFragCache()
    a = PF.page_frag_alloc(k, nc, 100, GFP_ATOMIC)
    b = PF.page_frag_alloc(k, nc, 200, GFP_ATOMIC)
    pfn = head_of(k, nc)
    zone = k.page_zone_of(pfn)
    PF.page_frag_cache_drain(k, k.pfn_to_page(pfn), 32767)
    assert int(k.memmap.refcount[pfn]) == 2
    check(k)
    pgfree0 = ev(k, "pgfree")
    PF.page_frag_free(k, a)
    PF.page_frag_free(k, b)
    assert ev(k, "pgfree") - pgfree0 == 8
    assert int(k.memmap.refcount[pfn]) == 0
    # back on a free list as an order >= 3 block
    found = any(pfn in range(q, q + (1 << o)) for o in range(3, 11)
                for fl in zone.free_area[o].free_list for q in fl)
    assert found
    check(k)


def test_page_frag_s12_double_free_bug():
    k = machine()
    nc = PF.PageFragCache()
    a = PF.page_frag_alloc(k, nc, 100, GFP_ATOMIC)
    pfn = head_of(k, nc)
    assert int(k.memmap.refcount[pfn]) == 32769
    pgfree0 = ev(k, "pgfree")
    for i in range(32768):
        PF.page_frag_free(k, a)
    assert int(k.memmap.refcount[pfn]) == 1 and ev(k, "pgfree") == pgfree0
    PF.page_frag_free(k, a)  # the 32769th call frees the page
    assert int(k.memmap.refcount[pfn]) == 0
    assert ev(k, "pgfree") - pgfree0 == 8
    snap = (dict(k.vm_events), k.global_free_pages(), int(k.memmap.refcount[pfn]))
    with pytest.raises(KernelBug):
        PF.page_frag_free(k, a)
    assert snap == (dict(k.vm_events), k.global_free_pages(), int(k.memmap.refcount[pfn]))
    check(k)


# ---------------------------------------------------------------- 13
def test_page_frag_s13_pfmemalloc():
    k = machine()
    t = k.spawn("kswapd-like")
    normal = exhaust(k, G.GFP_NOWAIT | __GFP_NOWARN)  # down to the min watermarks
    atomic = exhaust(k, GFP_ATOMIC | __GFP_NOWARN)  # and below the atomic reserve
    for z in k.all_zones():
        if z.managed_pages:
            assert z.vm_stat["nr_free_pages"] <= z.min_wmark_pages()
    k.sched.run_on_cpu(t)
    t.pf_memalloc = True
    skb = PF.netdev_alloc_skb(k, 100, GFP_ATOMIC)
    nc = k.page_frag.netdev_alloc_cache[0]
    assert skb is not None
    assert nc.size == 4096  # the order-3 attempt may not use the reserves (NOMEMALLOC)
    assert nc.pfmemalloc is True
    assert skb.pfmemalloc == 1
    check(k)
    t.pf_memalloc = False
    for p in normal + atomic:
        k.page_alloc.free_pages(p, 0)
    PF.netdev_alloc_skb(k, 4000 - 64 - 320 - 64, GFP_ATOMIC)  # exhausts the 4 KiB page
    skb2 = PF.netdev_alloc_skb(k, 100, GFP_ATOMIC)  # refill in a normal context
    assert nc.size == 32768
    assert nc.pfmemalloc is False and skb2.pfmemalloc == 0
    check(k)


# ---------------------------------------------------------------- bad input
def test_page_frag_fragsz_zero_and_too_big():
    k = machine()
    nc = PF.PageFragCache()
    a = PF.page_frag_alloc(k, nc, 0, GFP_ATOMIC)
    assert a == nc.va + 32768 and nc.pagecnt_bias == 32768  # still holds a reference
    assert int(k.memmap.refcount[head_of(k, nc)]) == 32769
    b = PF.page_frag_alloc(k, nc, 100, GFP_ATOMIC)
    assert b == nc.va + 32668
    check(k)
    nc2 = PF.PageFragCache()
    assert PF.page_frag_alloc(k, nc2, 40000, GFP_ATOMIC) is None
    assert "page_frag_alloc: fragsz 40000 > size 32768" in k.dmesg()
    pfn = head_of(k, nc2)
    assert (nc2.offset, nc2.size, nc2.pagecnt_bias) == (32768, 32768, 32769)
    assert int(k.memmap.refcount[pfn]) == 32769
    check(k)


def test_page_frag_free_of_non_fragment_is_bug():
    k = machine()
    page = k.alloc_pages(GFP_KERNEL, 0)
    with pytest.raises(KernelBug):
        PF.page_frag_free(k, PF.page_address(page.pfn))
    assert int(k.memmap.refcount[page.pfn]) == 1
    k.free_pages(page, 0)
    check(k)


def test_page_frag_napi_alloc_frag_needs_softirq():
    k = machine()
    with pytest.raises(KernelBug):
        PF.napi_alloc_frag(k, 100, context="process")
    a = PF.napi_alloc_frag(k, 100)
    nc = k.page_frag.napi_alloc_cache[0]
    assert a == nc.va + 32640
    b = PF.netdev_alloc_frag(k, 100, context="process")  # v5.7.x: napi cache with BH disabled
    assert b == nc.va + 32512
    check(k)
