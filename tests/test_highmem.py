"""highmem.md scenarios 1-17 and balance.md scenario 12 (machine B, i386 HIGHMEM)."""
import re

import numpy as np
import pytest

import linmm
from linmm import (GFP_ATOMIC, GFP_HIGHUSER, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, MAP_ANONYMOUS,
                   MAP_PRIVATE, PROT_READ, PROT_WRITE)
from linmm.errors import KernelBug, KernelDeadlock, KernelOops
from linmm.mm.highmem import FIX_KMAP_BEGIN, fix_to_virt

PKMAP_BASE = 0xFF800000
RW = PROT_READ | PROT_WRITE


def i386(ram="2G", **kw):
    return linmm.Kernel(linmm.MachineConfig(ram=ram, arch="i386", **kw))


def meminfo(k):
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+):\s+(\d+)", k.read_file("/proc/meminfo"), re.M)}


def high_pages(k, n):
    """n distinct HighMem pages."""
    out = [k.alloc_pages(GFP_HIGHUSER_MOVABLE) for _ in range(n)]
    assert all(p is not None and k.PageHighMem(p) for p in out)
    return out


def preempt(k):
    return k.current_ctx().preempt_count


@pytest.fixture(scope="module")
def m2():
    return i386()


# ---------------------------------------------------------------- scenario 1 (x86_64)
def test_highmem_s1_x86_64_is_trivial():
    k = linmm.Kernel(linmm.MachineConfig(ram="256M"))
    p = k.alloc_pages(GFP_HIGHUSER_MOVABLE)
    direct = 0xFFFF888000000000 + p.pfn * 4096
    assert k.page_address(p) == direct and not k.PageHighMem(p)
    assert k.kmap(p) == direct
    k.kunmap(p)
    v = k.kmap_atomic(p)
    assert v == direct and preempt(k) == 1
    k.kwrite(v, b"x86_64")
    assert k.kread(v, 6) == b"x86_64"
    k.kunmap_atomic(v)
    assert preempt(k) == 0
    assert k.highmem.LAST_PKMAP == 0 and k.highmem_stats()["pkmap_mapped"] == 0
    assert "HighTotal" not in k.read_file("/proc/meminfo")
    assert "HighMem" not in k.read_file("/proc/zoneinfo")
    k.check()


# ---------------------------------------------------------------- scenario 2
def test_highmem_s2_boot_split(m2):
    k = m2
    log = k.dmesg()
    assert "1152MB HIGHMEM available.\n896MB LOWMEM available.\n" in log
    assert log.index("LOWMEM available.") < log.index("Zone ranges:")
    assert "  HighMem  [mem 0x0000000038000000-0x000000007fffffff]" in log
    z = k.pgdats[0].node_zones
    assert [x.name for x in z] == ["DMA", "Normal", "HighMem", "Movable"]
    hm = z[2]
    assert (hm.zone_start_pfn, hm.zone_end_pfn - 1, hm.spanned_pages) == (229376, 524287, 294912)
    mi = meminfo(k)
    assert mi["HighTotal"] == 1179648 and mi["LowTotal"] == mi["MemTotal"] - 1179648
    assert mi["LowFree"] == mi["MemFree"] - mi["HighFree"]
    keys = list(mi)
    assert keys[keys.index("Mlocked") + 1:keys.index("Mlocked") + 5] == \
        ["HighTotal", "HighFree", "LowTotal", "LowFree"]
    k.check()


# ---------------------------------------------------------------- scenarios 3-5
def test_highmem_s3_first_kmap_and_cached_hits():
    k = i386()
    (p,) = high_pages(k, 1)
    assert k.page_address(p) is None
    v = k.kmap(p)
    h = k.highmem
    assert v == PKMAP_BASE + 0x1000 and h.last_pkmap_nr == 1 and h.pkmap_count[1] == 2
    assert k.page_address(p) == v
    assert k.kmap(p) == v and h.pkmap_count[1] == 3
    k.kunmap(p)
    k.kunmap(p)
    assert h.pkmap_count[1] == 1 and k.page_address(p) == v
    assert k.kmap(p) == v and h.last_pkmap_nr == 1  # a hit: no new slot, no PTE write
    k.kunmap(p)
    k.check()


def _fill_pkmap(k, n=1024):
    pages = high_pages(k, n)
    addrs = [k.kmap(p) for p in pages]
    return pages, addrs


def test_highmem_s4_slot_recycling():
    k = i386()
    pages, addrs = _fill_pkmap(k)
    assert addrs[:3] == [PKMAP_BASE + 0x1000, PKMAP_BASE + 0x2000, PKMAP_BASE + 0x3000]
    assert addrs[1022] == PKMAP_BASE + 1023 * 4096 and addrs[1023] == PKMAP_BASE  # wrap to slot 0
    assert k.highmem_stats()["pkmap_flushes"] == 0  # the wrap's flush found nothing
    old = pages[4]  # slot 5
    k.kunmap(old)
    assert k.highmem.pkmap_count[5] == 1
    (new,) = high_pages(k, 1)
    assert k.kmap(new) == PKMAP_BASE + 5 * 4096
    assert k.highmem_stats()["pkmap_flushes"] == 1
    assert k.page_address(old) is None
    k.check()


def test_highmem_s5_exhaustion_sleeps_until_kunmap():
    k = i386()
    pages, _ = _fill_pkmap(k)
    (extra,) = high_pages(k, 1)
    state = (list(k.highmem.pkmap_count), k.highmem.last_pkmap_nr, dict(k.highmem.page_virtual))
    with pytest.raises(KernelDeadlock):  # the harness itself: nobody could wake it
        k.kmap(extra)
    assert state == (list(k.highmem.pkmap_count), k.highmem.last_pkmap_nr, dict(k.highmem.page_virtual))
    got = []
    t = k.kthread_run(lambda kk: got.append(kk.kmap(extra)), "kmapper", may_sleep=True)
    k.run(1)
    assert t.state == "D" and got == [] and k.highmem.pkmap_waiters == [t]
    k.kunmap(pages[9])  # slot 10 drops to 1: the sleeper is woken
    k.run(1)
    assert got == [PKMAP_BASE + 10 * 4096] and t.state == "S"
    assert k.page_address(pages[9]) is None and k.page_address(extra) == got[0]
    k.check()


# ---------------------------------------------------------------- scenarios 6-9 (kmap_atomic)
def test_highmem_s6_atomic_nesting_and_copy():
    k = i386()
    h1, h2 = high_pages(k, 2)
    data = bytes(range(256)) * 16
    k.frames.write(h1.pfn, 0, data)
    v1 = k.kmap_atomic(h1)
    assert v1 == fix_to_virt(FIX_KMAP_BEGIN) and preempt(k) == 1
    v2 = k.kmap_atomic(h2)
    assert v2 == v1 - 4096 and preempt(k) == 2
    k.kwrite(v2, k.kread(v1, 4096))
    k.kunmap_atomic(v2)
    k.kunmap_atomic(v1)
    assert k.highmem.kmap_atomic_idx[0] == 0 and preempt(k) == 0
    assert k.frames.read(h2.pfn) == data
    assert k.highmem_stats()["atomic_high_water"][0] == 2
    k.check()


def test_highmem_s7_unbalanced_kunmap_atomic():
    k = i386()
    h1, h2 = high_pages(k, 2)
    k.frames.write(h1.pfn, 0, b"H1")
    v1 = k.kmap_atomic(h1)
    v2 = k.kmap_atomic(h2)
    k.kunmap_atomic(v1)  # wrong order: WARN, and the top slot (v2's) is what goes
    assert "kunmap_atomic: unbalanced nesting" in k.dmesg()
    assert k.highmem.kmap_atomic_idx[0] == 1
    with pytest.raises(KernelOops, match=f"{v2:08x}"):
        k.kread(v2, 1)
    assert "BUG: unable to handle page fault for address: " in k.dmesg()
    assert k.kread(v1, 2) == b"H1"
    k.kunmap_atomic(v1)  # now balanced: slot 0 goes
    assert k.highmem.kmap_atomic_idx[0] == 0 and preempt(k) == 0
    with pytest.raises(KernelOops):
        k.kread(v1, 1)
    k.check()


def test_highmem_s8_twenty_slots_per_cpu():
    k = i386()
    pages = high_pages(k, 21)
    addrs = [k.kmap_atomic(p) for p in pages[:20]]
    assert len(set(addrs)) == 20 and preempt(k) == 20
    with pytest.raises(KernelBug):
        k.kmap_atomic(pages[20])
    assert preempt(k) == 20 and k.highmem.kmap_atomic_idx[0] == 20 and len(k.highmem.fixmap) == 20
    for a in reversed(addrs):
        k.kunmap_atomic(a)
    assert preempt(k) == 0
    k.check()


def test_highmem_s9_lowmem_kmap_atomic_takes_no_slot():
    k = i386()
    low = k.alloc_pages(GFP_KERNEL)
    v = k.kmap_atomic(low)
    assert v == 0xC0000000 + low.pfn * 4096 == k.page_address(low)
    assert k.highmem.kmap_atomic_idx[0] == 0 and preempt(k) == 1
    k.kunmap_atomic(v)
    assert preempt(k) == 0
    k.check()


# ---------------------------------------------------------------- scenarios 10-11 (rules)
def test_highmem_s10_no_sleeping_inside_kmap_atomic():
    k = i386()
    t = k.spawn("other")
    h, other = high_pages(k, 2)
    k.run(1)  # the CPU goes idle; the harness's kmap_atomic runs there
    v = k.kmap_atomic(h)
    with pytest.raises(KernelBug, match="sleeping function called from invalid context"):
        k.kmap(other)
    with pytest.raises(KernelBug, match="sleeping function called from invalid context"):
        k.alloc_pages(GFP_KERNEL, 0)
    assert k.alloc_pages(GFP_ATOMIC, 0) is not None
    with pytest.raises(KernelBug, match="scheduling while atomic"):
        t.touch(0x7000)  # switching to the task with preemption off
    k.kunmap_atomic(v)
    k.check()


def test_highmem_s10_log_mode_only_logs():
    k = i386(atomic_sleep_check="log")
    h, other = high_pages(k, 2)
    v = k.kmap_atomic(h)
    a = k.kmap(other)  # a free slot: it does not really sleep
    assert a == PKMAP_BASE + 0x1000
    assert "BUG: sleeping function called from invalid context at" in k.dmesg()
    assert "in_atomic(): 1, irqs_disabled(): 0" in k.dmesg()
    k.kunmap(other)
    k.kunmap_atomic(v)
    k.check()


def test_highmem_s11_bad_unmaps():
    k = i386()
    (h,) = high_pages(k, 1)
    low = k.alloc_pages(GFP_KERNEL)
    with pytest.raises(KernelBug):
        k.kunmap(h)
    k.kunmap(low)  # lowmem: nothing to do
    v = k.kmap_atomic(h)
    with pytest.raises(TypeError):
        k.kunmap_atomic(h)
    k.kunmap_atomic(v)
    k.kmap(h)
    k.kunmap(h)
    with pytest.raises(KernelBug, match="drop to 0"):
        k.kunmap(h)
    assert k.highmem.pkmap_count[1] == 1
    k.check()


def test_highmem_pagefault_disabled_user_copy():
    """Inside kmap_atomic a user copy that would fault returns the bytes not copied."""
    k = i386()
    t = k.spawn("u")
    a = t.mmap(0, 0x2000, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    t.write(a, b"A")  # first page present, second not
    (h,) = high_pages(k, 1)
    v = k.kmap_atomic(h)
    assert k.copy_to_user(a + 0xFF0, b"z" * 0x20) == 0x10
    buf = bytearray(0x20)
    assert k.copy_from_user(a + 0xFF0, 0x20, buf) == 0x10
    assert buf == b"z" * 0x10 + bytes(0x10)
    k.kunmap_atomic(v)
    assert k.copy_to_user(a + 0xFF0, b"y" * 0x20) == 0  # faults allowed again
    assert t.read(a + 0x1000, 0x10) == b"y" * 0x10
    k.check()


# ---------------------------------------------------------------- scenario 12 (allocation)
def test_highmem_s12_gfp_kernel_never_gets_highmem(m2):
    k = m2
    got = [k.alloc_pages(GFP_KERNEL) for _ in range(10000)]
    assert all(p is not None and p.pfn < 229376 for p in got)
    before = k.vm_events["pgalloc_high"]
    high = [k.alloc_pages(GFP_HIGHUSER_MOVABLE) for _ in range(100)]
    assert all(p.pfn >= 229376 and k.page_address(p) is None for p in high)
    assert k.vm_events["pgalloc_high"] == before + 100
    vm = dict(ln.split() for ln in k.read_file("/proc/vmstat").splitlines())
    assert int(vm["pgalloc_high"]) == before + 100 and "pgalloc_dma32" not in vm
    for p in got + high:
        k.free_pages(p)
    k.check()


# ---------------------------------------------------------------- scenarios 13-14 (boot)
@pytest.mark.parametrize("arg,lines", [
    ("highmem=256M", ["256MB HIGHMEM available.", "256MB LOWMEM available."]),
    ("highmem=480M", ["highmem size (480MB) results in <64MB lowmem, ignoring it!",
                      "0MB HIGHMEM available.", "512MB LOWMEM available."]),
    ("highmem=512M", ["highmem size (512MB) is bigger than pages available (512MB)!",
                      "0MB HIGHMEM available."]),
])
def test_highmem_s13_highmem_parameter(arg, lines):
    k = i386("512M", cmdline=arg)
    log = k.dmesg()
    for ln in lines:
        assert ln + "\n" in log
    if arg == "highmem=256M":
        assert meminfo(k)["HighTotal"] == 256 << 10
    k.check()


def test_highmem_s14_pae_8g():
    """v5.7 prints pages_to_mb(max_pfn - max_low_pfn): the vm layout's 3-4 GiB PCI hole
    counts, so 8 GiB of RAM ending at 9 GiB gives 8320MB (highmem.md says 7296, which
    is RAM minus lowmem; the kernel's formula wins)."""
    k = linmm.Kernel(linmm.MachineConfig(ram="8G", arch="i386-pae"))
    assert "8320MB HIGHMEM available.\n896MB LOWMEM available.\n" in k.dmesg()
    assert meminfo(k)["HighTotal"] == (8192 - 896) << 10
    assert k.highmem.LAST_PKMAP == 512 and k.highmem.PKMAP_BASE == 0xFFA00000
    pages = high_pages(k, 512)
    addrs = [k.kmap(p) for p in pages]
    assert addrs[510] == 0xFFA00000 + 511 * 4096 and addrs[511] == 0xFFA00000  # slot 0 after the wrap
    k.check()


def test_highmem_s14_non_pae_uses_at_most_4g():
    """MAX_ARCH_PFN (4 GiB) stops max_pfn before highmem_pfn_init() looks, so v5.7 never
    prints its "only 4GB will be used" warning (highmem.md expects it)."""
    k = i386("6G")
    mi = meminfo(k)
    assert mi["MemTotal"] <= 4 << 20
    assert k.layout.max_pfn == 0xC0000  # the RAM above 4 GiB is not used
    assert "2176MB HIGHMEM available." in k.dmesg()
    assert "Warning: only 4GB will be used" not in k.dmesg()
    k.check()


def test_highmem_vmalloc_parameter_moves_maxmem():
    k = i386("2G", cmdline="vmalloc=248M")  # __VMALLOC_RESERVE = 256M: lowmem 768M
    assert "768MB LOWMEM available." in k.dmesg() and "1280MB HIGHMEM available." in k.dmesg()
    k.check()


# ---------------------------------------------------------------- scenarios 15-16 (vmap, helpers)
def test_highmem_s15_vmap_of_highmem_pages():
    k = i386()
    pages = high_pages(k, 4)
    used = meminfo(k)["VmallocUsed"]
    a = k.vmap(pages)
    h = k.highmem
    assert h.vmalloc_start <= a < h.vmalloc_end
    data = bytes((i * 7) & 0xFF for i in range(16384))
    k.kwrite(a, data)
    for i, p in enumerate(pages):
        v = k.kmap_atomic(p)
        assert k.kread(v, 4096) == data[i * 4096:(i + 1) * 4096]
        k.kunmap_atomic(v)
    assert meminfo(k)["VmallocUsed"] == used
    with pytest.raises(KernelOops):
        k.kread(a + 16384, 1)  # the guard page
    b = k.vmap(pages[:1])
    assert b == a + 5 * 4096  # after the first area and its guard page
    k.vunmap(a)
    with pytest.raises(KernelOops):
        k.kread(a, 1)
    assert k.vmap([]) is None
    k.vunmap(b)
    k.check()


def test_highmem_s16_copy_and_clear_helpers():
    k = i386()
    h1, h2, h3 = high_pages(k, 3)
    src = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    k.frames.write(h1.pfn, 0, src)
    k.frames.write(h3.pfn, 0, b"\xff" * 4096)
    k.copy_highpage(h2, h1)
    k.clear_highpage(h3)
    assert k.frames.read(h2.pfn) == src and k.frames.read(h3.pfn) == bytes(4096)
    k.zero_user_segments(h2, 0, 16, 4080, 4096)
    assert k.frames.read(h2.pfn) == bytes(16) + src[16:4080] + bytes(16)
    assert k.highmem_stats()["atomic_in_use"] == [0] and preempt(k) == 0
    assert k.highmem_stats()["atomic_high_water"][0] == 2
    k.check()


# ---------------------------------------------------------------- scenario 17 (user memory)
def test_highmem_s17_user_memory_in_highmem_is_intact(m2):
    k = m2
    t = k.spawn("big")
    a = t.mmap(0, 1 << 30, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    assert a + (1 << 30) <= 0xC0000000  # below the 3G/1G split
    t.access(np.arange(a, a + (1 << 30), 4096, dtype=np.uint64), True)
    for off in range(0, 1 << 30, 1 << 20):
        t.write(a + off, off.to_bytes(8, "little") * 4)
    assert meminfo(k)["HighFree"] < 1179648 - (900 << 10)  # most of it landed in HighMem
    c = t.fork()  # COW copies go through copy_user_highpage (two atomic slots)
    c.write(a, b"child")
    assert k.highmem_stats()["atomic_high_water"][0] >= 2
    assert t.read(a, 8) == (0).to_bytes(8, "little") and c.read(a, 5) == b"child"
    assert all(t.read(a + off, 8) == off.to_bytes(8, "little") for off in range(0, 1 << 30, 1 << 20))
    maps = k.read_file(f"/proc/{t.pid}/maps").splitlines()
    assert maps[-1].startswith("bffdf000-c0000000 rw-p 00000000 00:00 0 ") and maps[-1].endswith(" [stack]")
    assert len(maps[-1]) == 49 + len("[stack]")
    c.exit()
    t.exit()
    k.check()


# ---------------------------------------------------------------- balance.md scenario 12
def test_balance_s12_machine_b():
    k = linmm.Kernel(linmm.MachineConfig(arch="i386", zones={"DMA": "16M", "Normal": "880M",
                                                             "HighMem": "1152M"}))
    assert k.read_file("/proc/sys/vm/min_free_kbytes") == "3831\n"
    assert k.read_file("/proc/sys/vm/lowmem_reserve_ratio") == "256\t32\t0\t0\n"
    zi = k.read_file("/proc/zoneinfo")
    got = {m[0]: m[1:] for m in re.findall(
        r"zone +(\w+)\n(?:.*\n)*?  pages free +\d+\n +min +(\d+)\n +low +(\d+)\n +high +(\d+)\n"
        r"(?:.*\n){2} +managed +(\d+)\n +protection: (.*)", zi)}
    assert got["DMA"] == ("17", "21", "25", "4096", "(0, 880, 2032, 2032)")
    assert got["Normal"] == ("939", "1173", "1407", "225280", "(0, 0, 9216, 9216)")
    assert got["HighMem"] == ("128", "435", "742", "294912", "(0, 0, 0, 0)")
    # GFP_HIGHUSER spills into Normal only while Normal free > low 1173 + protection 9216
    normal = k.pgdats[0].node_zones[1]
    ac = k.alloc_context(GFP_HIGHUSER, None)
    assert ac.classzone_idx == 2  # HighMem: protection index 2 applies
    spilled = 0
    while True:
        before = normal.vm_stat["nr_free_pages"]
        p = k.page_alloc.get_page_from_freelist(GFP_HIGHUSER, 0, 0x1, ac)  # ALLOC_WMARK_LOW
        if p is None:
            break
        if k.page_zone_of(p) is normal:
            spilled += 1
            assert before > 1173 + 9216
    assert spilled > 0
    assert 1173 + 9216 - 63 <= normal.vm_stat["nr_free_pages"] <= 1173 + 9216
    k.check()


def test_highmem_live_x86_64_has_no_highmem_lines():
    """The live-checkable part of scenario 1: an x86_64 kernel prints no HighTotal/HighFree/
    LowTotal/LowFree and no HighMem zone, like the model's x86_64 machine."""
    import os
    import platform
    if platform.machine() != "x86_64" or not os.path.exists("/proc/meminfo"):
        pytest.skip("needs a live x86_64 Linux kernel")
    live = open("/proc/meminfo").read() + open("/proc/zoneinfo").read()
    model = linmm.Kernel(linmm.MachineConfig(ram="256M"))
    mine = model.read_file("/proc/meminfo") + model.read_file("/proc/zoneinfo")
    for word in ("HighTotal:", "HighFree:", "LowTotal:", "LowFree:", "zone  HighMem"):
        assert (word in live) == (word in mine) == False  # noqa: E712


@pytest.mark.parametrize("arch,order", [("i386", 10), ("i386-pae", 9), ("x86_64", 9)])
def test_highmem_pageblock_order_is_the_huge_page_order(arch, order):
    """pageblock_order = HUGETLB_PAGE_ORDER: 4 MiB pages without PAE, 2 MiB otherwise."""
    k = linmm.Kernel(linmm.MachineConfig(ram="1G", arch=arch))
    assert k.read_file("/proc/pagetypeinfo").startswith(
        f"Page block order: {order}\nPages per block:  {1 << order}\n")
    assert len(k.page_alloc.pageblock_flags) == k.memmap.nr >> order
    k.check()


# ---------------------------------------------------------------- property: the kmap pools
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_kmap_ops = st.lists(st.tuples(st.sampled_from(["kmap", "kunmap", "atomic", "unatomic", "flush"]),
                               st.integers(0, 11)), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None)
@given(_kmap_ops)
def test_highmem_kmap_pools_random(ops):
    """Random kmap/kunmap/kmap_atomic/kunmap_atomic on 12 HighMem pages with the pkmap pool
    cut to 8 slots (so wraps, flushes and exhaustion happen): every mapping reads its own
    page, no slot serves two pages, counts match the users, failures change nothing."""
    k = i386("1G")
    h = k.highmem
    h.LAST_PKMAP = 8
    h.pkmap_count = [0] * 8
    h.pkmap_page = [None] * 8
    pages = high_pages(k, 12)
    for i, p in enumerate(pages):
        k.frames.write(p.pfn, 0, bytes([i + 1]) * 16)
    users = [0] * 12
    atomic: list[int] = []
    for op, i in ops:
        p = pages[i]
        snap = (list(h.pkmap_count), list(h.pkmap_page), dict(h.page_virtual), h.last_pkmap_nr)
        if op == "kmap":
            if atomic:
                continue  # would be a sleeping call in atomic context
            busy = sum(1 for c in h.pkmap_count if c >= 2)
            try:
                v = k.kmap(p)
            except KernelDeadlock:
                assert busy == 8 and users[i] == 0
                assert snap == (list(h.pkmap_count), list(h.pkmap_page), dict(h.page_virtual),
                                h.last_pkmap_nr)
                continue
            users[i] += 1
            assert k.page_address(p) == v and k.kread(v, 16) == bytes([i + 1]) * 16
        elif op == "kunmap":
            if users[i] == 0:
                with pytest.raises(KernelBug):
                    k.kunmap(p)
                assert snap == (list(h.pkmap_count), list(h.pkmap_page), dict(h.page_virtual),
                                h.last_pkmap_nr)
                continue
            k.kunmap(p)
            users[i] -= 1
        elif op == "atomic":
            if len(atomic) == 20:
                continue
            v = k.kmap_atomic(p)
            assert k.kread(v, 16) == bytes([i + 1]) * 16
            atomic.append(v)
        elif op == "unatomic":
            if atomic:
                k.kunmap_atomic(atomic.pop())
        else:
            k.kmap_flush_unused()
        # every page with users has its own slot, counted exactly
        slots = {}
        for j, q in enumerate(pages):
            if users[j]:
                v = k.page_address(q)
                assert v is not None and v not in slots.values()
                slots[j] = v
                assert h.pkmap_count[(v - h.PKMAP_BASE) >> 12] == users[j] + 1
        assert sum(c - 1 for c in h.pkmap_count if c >= 2) == sum(users)
        assert k.current_ctx().preempt_count == len(atomic)
        h.check()
    while atomic:
        k.kunmap_atomic(atomic.pop())
    k.check()
