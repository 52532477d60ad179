"""memory-model.md op 10 and scenario 13: ZONE_DEVICE (memremap_pages / memunmap_pages),
request_free_mem_region and the iomem resource tree."""
import re

import numpy as np
import pytest

import linmm
from linmm import (MEMORY_DEVICE_DEVDAX, MEMORY_DEVICE_FS_DAX, MEMORY_DEVICE_PRIVATE, DevPagemap,
                   DevPagemapOps)
from linmm.errors import E2BIG, EEXIST, EINVAL, ENOMEM, ENXIO, EOPNOTSUPP, ERANGE, WouldBlock

MEM = "/sys/devices/system/memory"
DEV_START = 0x3FFFF0000000  # scenario 13: 256 MiB at the top of 46 physical address bits


def meminfo(k):
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+):\s+(\d+)", k.read_file("/proc/meminfo"), re.M)}


def device_zone(k, node=0):
    z = k.read_file("/proc/zoneinfo")
    m = re.search(rf"Node {node}, zone +Device\n  pages free +(\d+)\n(?:.*\n){{3}} +spanned +(\d+)\n"
                  r" +present +(\d+)\n +managed +(\d+)", z)
    return tuple(int(x) for x in m.groups()[1:])


class Driver:
    """A device-private driver (like test_hmm's dmirror): counts page_free calls."""

    def __init__(self):
        self.freed = []
        self.ops = DevPagemapOps(page_free=lambda page: self.freed.append(page.pfn),
                                 migrate_to_ram=lambda vmf: 0)


def state(k):
    """Everything a failed memremap_pages must leave as it was (allocation counters
    such as numa_hit may move: a memmap block can be allocated and freed again, and
    freed order-0 memmap pages wait on the pcp lists, so those are drained first)."""
    k.page_alloc.drain_all_pages(None)
    zones = re.findall(r"zone +(\w+)\n(?:.*\n)*? +spanned +(\d+)\n +present +(\d+)\n +managed +(\d+)",
                       k.read_file("/proc/zoneinfo"))
    return (meminfo(k), k.read_file("/proc/iomem"), (zones, k.read_file("/proc/buddyinfo")),
            k.listdir(MEM), k.section_flags.copy(), dict(k.sparse.subsection_map),
            list(k.memremap.pgmaps))


def same_state(a, b):
    return a[:4] == b[:4] and np.array_equal(a[4][:len(b[4])], b[4][:len(a[4])]) and \
        not a[4][len(b[4]):].any() and not b[4][len(a[4]):].any() and a[5:] == b[5:]


@pytest.fixture
def v4():
    return linmm.Kernel(linmm.MachineConfig(ram="4G"))


# ---------------------------------------------------------------- scenario 13
def test_mm_s13_device_private_256m(v4):
    k = v4
    before = meminfo(k)
    blocks = k.listdir(MEM)
    res = k.request_free_mem_region(k.iomem_resource, 256 << 20, "hmm_dmirror")
    assert (res.start, res.end) == (DEV_START, 0x3FFFFFFFFFFF)
    drv = Driver()
    pgmap = DevPagemap(MEMORY_DEVICE_PRIVATE, res, drv.ops, owner=drv)
    va = k.memremap_pages(pgmap, 0)
    assert va == 0xFFFF888000000000 + DEV_START  # __va(res->start)
    for pfn in (0x3FFFF0000, 0x3FFFF8123, 0x3FFFFFFFF):
        assert k.pfn_valid(pfn)
        assert k.pfn_to_online_page(pfn) is None
        page = k.pfn_to_page(pfn)
        assert page.refcount == 1
        assert k.page_zone(page).name == "Device" and k.is_zone_device_page(page)
        assert page.flags >> 12 & 1  # PG_reserved
        assert page.pgmap is pgmap and page.mapcount == 0
    assert not k.pfn_valid(0x400000000) and not k.pfn_valid(0x3FFFEFFFF)
    assert device_zone(k) == (65536, 0, 0)
    after = meminfo(k)
    assert after["MemTotal"] == before["MemTotal"]
    assert after["MemFree"] == before["MemFree"] - 4096  # two sections' memmap, 2 MiB each
    assert k.listdir(MEM) == blocks  # no new memoryN
    assert "memmap_init_zone_device initialised 65536 pages in 0ms" in k.dmesg()
    assert "3ffff0000000-3fffffffffff : hmm_dmirror\n" in k.read_file("/proc/iomem")
    k.check()
    # a second memremap of the same range
    assert k.memremap_pages(DevPagemap(MEMORY_DEVICE_PRIVATE, res, drv.ops, owner=drv), 0) == -ENOMEM.errno_value
    assert "Conflicting mapping in same section" in k.dmesg()
    k.check()
    k.memunmap_pages(pgmap)
    assert meminfo(k)["MemFree"] == before["MemFree"]
    assert not k.pfn_valid(0x3FFFF0000) and not k.pfn_valid(0x3FFFFFFFF)
    assert k.memremap.pgmaps == [] and pgmap.ref == 0
    # v5.7 remove_pfn_range_from_zone() never shrinks ZONE_DEVICE
    assert device_zone(k) == (65536, 0, 0)
    assert drv.freed == []  # memunmap drops the idle references: page_free is not called
    k.check()
    # the range can be mapped again, and the driver gives its region back
    pgmap2 = DevPagemap(MEMORY_DEVICE_PRIVATE, res, drv.ops, owner=drv)
    k.memremap_pages(pgmap2, 0)
    assert meminfo(k)["MemFree"] == before["MemFree"] - 4096
    k.memunmap_pages(pgmap2)
    k.release_mem_region(res.start, res.size())
    assert "hmm_dmirror" not in k.read_file("/proc/iomem")
    k.check()


def test_mm_s13_pgmap_over_system_ram_is_enxio(v4):
    k = v4
    drv = Driver()
    before = state(k)
    for start in (0x100000000, 0xBFE00000):  # all RAM; RAM and the PCI hole (mixed)
        pgmap = DevPagemap(MEMORY_DEVICE_PRIVATE, (start, 4 << 20), drv.ops, owner=drv)
        assert k.memremap_pages(pgmap, 0) == -ENXIO.errno_value
        assert same_state(state(k), before)
    assert "WARNING: memremap_pages attempted on ram region [mem 0x100000000-0x1003fffff" in k.dmesg()
    k.check()


# ---------------------------------------------------------------- op 10: refusals
def test_mm_memremap_refusals_change_nothing(v4):
    k = v4
    drv = Driver()
    before = state(k)
    cases = [
        (DevPagemap(MEMORY_DEVICE_PRIVATE, (DEV_START, 256 << 20), DevPagemapOps(page_free=print),
                    owner=drv), EINVAL, "Missing migrate_to_ram method"),
        (DevPagemap(MEMORY_DEVICE_PRIVATE, (DEV_START, 256 << 20), drv.ops), EINVAL, "Missing owner"),
        (DevPagemap(MEMORY_DEVICE_FS_DAX, (DEV_START, 256 << 20), DevPagemapOps()), EINVAL,
         "Missing page_free method"),
        (DevPagemap(MEMORY_DEVICE_PRIVATE, (DEV_START, 1 << 20), drv.ops, owner=drv), EINVAL,
         "Misaligned __add_pages start: 0x3ffff0000 end: #3ffff00ff"),
        (DevPagemap(MEMORY_DEVICE_PRIVATE, (DEV_START + (1 << 20), 2 << 20), drv.ops, owner=drv), EINVAL,
         "Misaligned __add_pages"),
        (DevPagemap(MEMORY_DEVICE_DEVDAX, (1 << 46, 2 << 20)), E2BIG,
         "Hotplugged memory exceeds maximum addressable address, range=0x400000000000-0x4000001fffff"),
    ]
    for pgmap, err, msg in cases:
        assert k.memremap_pages(pgmap, 0) == -err.errno_value
        assert msg in k.dmesg()
        assert not pgmap.live and pgmap.ref == 0
        assert same_state(state(k), before), msg
    k.check()


@pytest.mark.parametrize("model", ["sparsemem", "flatmem"])
def test_mm_memremap_needs_vmemmap(model):
    k = linmm.Kernel(linmm.MachineConfig(ram="1G", memory_model=model))
    drv = Driver()
    pgmap = DevPagemap(MEMORY_DEVICE_PRIVATE, (DEV_START, 256 << 20), drv.ops, owner=drv)
    assert k.memremap_pages(pgmap) == -EOPNOTSUPP.errno_value
    k.check()


def test_mm_memremap_enomem_leaves_nothing_behind():
    """No buddy memory for the second section's memmap: the first section's is freed
    again, the failure is logged once with warn_alloc's wording."""
    k = linmm.Kernel(linmm.MachineConfig(ram="256M"))
    held = []
    for _ in range(2):  # keep exactly one free order-9 block (pcp pages drained too)
        while (p := k.alloc_pages(linmm.GFP_KERNEL | linmm.__GFP_NOWARN, 9)) is not None:
            held.append(p)
        k.page_alloc.drain_all_pages(None)
    k.free_pages(held.pop(), 9)
    before = state(k)
    drv = Driver()
    pgmap = DevPagemap(MEMORY_DEVICE_PRIVATE, (DEV_START, 256 << 20), drv.ops, owner=drv)
    assert k.memremap_pages(pgmap, 0) == -ENOMEM.errno_value
    assert same_state(state(k), before)
    log = k.dmesg()
    assert log.count("vmemmap alloc failure") == 1
    assert "swapper/0: vmemmap alloc failure: order:9, mode:0x4cc0(GFP_KERNEL|__GFP_RETRY_MAYFAIL), " \
        "nodemask=(null)" in log
    assert k.memremap_pages(pgmap, 0) == -ENOMEM.errno_value  # warned once only
    assert k.dmesg().count("vmemmap alloc failure") == 1
    k.check()


def test_mm_memremap_covering_another_pgmap_is_eexist(v4):
    """Neither end of the new range is in the old pgmap, so get_dev_pagemap() sees no
    conflict; __add_pages then finds its subsections active (fill_subsection_map)."""
    k = v4
    drv = Driver()
    inner = DevPagemap(MEMORY_DEVICE_PRIVATE, (DEV_START + (4 << 20), 4 << 20), drv.ops, owner=drv)
    k.memremap_pages(inner, 0)
    before = state(k)
    outer = DevPagemap(MEMORY_DEVICE_PRIVATE, (DEV_START, 16 << 20), drv.ops, owner=drv)
    assert k.memremap_pages(outer, 0) == -EEXIST.errno_value
    assert same_state(state(k), before)
    k.check()
    k.memunmap_pages(inner)
    k.check()


# ---------------------------------------------------------------- subsections
def test_mm_memremap_subsections_share_a_section(v4):
    """Two 2 MiB pgmaps in the PCI hole's section 24: base-page memmap (8 pages per
    subsection), pfn_valid per subsection, the section goes when both are gone."""
    k = v4
    k.page_alloc.drain_all_pages(None)
    free0 = meminfo(k)["MemFree"]
    drv = Driver()
    a = DevPagemap(MEMORY_DEVICE_PRIVATE, (0xC0000000, 2 << 20), drv.ops, owner=drv)
    b = DevPagemap(MEMORY_DEVICE_DEVDAX, (0xC0400000, 2 << 20))
    k.memremap_pages(a, 0)
    k.page_alloc.drain_all_pages(None)  # order-0 memmap pages came through the pcp lists
    assert meminfo(k)["MemFree"] == free0 - 32  # 512 struct pages = 8 pages
    assert k.pfn_valid(0xC0000) and k.pfn_valid(0xC01FF)
    assert not k.pfn_valid(0xC0200) and not k.pfn_valid(0xC0400)
    k.memremap_pages(b, 0)
    k.page_alloc.drain_all_pages(None)
    assert meminfo(k)["MemFree"] == free0 - 64
    assert k.pfn_valid(0xC0400) and not k.pfn_valid(0xC0600)
    assert k.pfn_to_page(0xC0400).pgmap is b and k.pfn_to_page(0xC0000).pgmap is a
    assert device_zone(k) == (0xC0600 - 0xC0000, 0, 0)
    assert "memory24" not in k.listdir(MEM)
    k.check()
    k.memunmap_pages(a)
    assert not k.pfn_valid(0xC0000) and k.pfn_valid(0xC0400)
    assert k.section_flags[24] == 3  # present, has memmap, not online, not early
    k.memunmap_pages(b)
    k.page_alloc.drain_all_pages(None)
    assert k.section_flags[24] == 0 and meminfo(k)["MemFree"] == free0
    k.check()


# ---------------------------------------------------------------- page references
def test_mm_device_page_free_and_pgmap_references(v4):
    k = v4
    drv = Driver()
    pgmap = DevPagemap(MEMORY_DEVICE_PRIVATE, (DEV_START, 2 << 20), drv.ops, owner=drv)
    k.memremap_pages(pgmap, 0)
    assert pgmap.ref == 1 + 512
    pfn = DEV_START >> 12
    k.get_page(pfn)
    k.get_page(pfn)
    assert k.pfn_to_page(pfn).refcount == 3
    k.put_page(pfn)
    assert drv.freed == []
    k.put_page(pfn)  # back to 1: idle, the driver's page_free runs
    assert drv.freed == [pfn] and k.pfn_to_page(pfn).refcount == 1
    assert k.get_dev_pagemap(pfn + 7) is pgmap and pgmap.ref == 514
    assert k.get_dev_pagemap(pfn + 512) is None  # outside the range
    k.get_page(pfn + 1)
    with pytest.raises(WouldBlock, match="refcount 2"):
        k.memunmap_pages(pgmap)  # the kernel would wait for the page forever
    k.put_page(pfn + 1)
    with pytest.raises(WouldBlock, match="get_dev_pagemap"):
        k.memunmap_pages(pgmap)
    assert pgmap.live and k.pfn_valid(pfn)  # refused before any change
    k.put_dev_pagemap(pgmap)
    k.check()
    k.memunmap_pages(pgmap)
    assert pgmap.ref == 0 and k.get_dev_pagemap(pfn) is None
    k.check()


def test_mm_devdax_page_has_no_page_free(v4):
    k = v4
    pgmap = DevPagemap(MEMORY_DEVICE_DEVDAX, (0xC0000000, 2 << 20))
    k.memremap_pages(pgmap, 0)
    k.get_page(0xC0000)
    k.put_page(0xC0000)
    assert k.pfn_to_page(0xC0000).refcount == 1
    k.memunmap_pages(pgmap)
    k.check()


# ---------------------------------------------------------------- nodes, /proc, resources
def test_mm_memremap_on_node_1():
    k = linmm.Kernel(linmm.MachineConfig(ram="2G", nodes=2))
    drv = Driver()
    pgmap = DevPagemap(MEMORY_DEVICE_PRIVATE, (DEV_START, 128 << 20), drv.ops, owner=drv)
    k.memremap_pages(pgmap, 1)
    assert device_zone(k, 1) == (32768, 0, 0) and device_zone(k, 0) == (0, 0, 0)
    assert k.page_to_nid(k.pfn_to_page(DEV_START >> 12)) == 1
    k.memunmap_pages(pgmap)
    k.check()


def test_mm_kpageflags_reaches_the_device_range(v4):
    """add_pages() raises max_pfn (update_end_of_memory_vars), so /proc/kpageflags
    covers the device pfns; they are not online: KPF_NOPAGE, count 0."""
    k = v4
    drv = Driver()
    k.memremap_pages(DevPagemap(MEMORY_DEVICE_PRIVATE, (DEV_START, 256 << 20), drv.ops, owner=drv), 0)
    off = (DEV_START >> 12) * 8
    assert np.frombuffer(k.read_file("/proc/kpageflags", off, 16), np.uint64).tolist() == [1 << 20] * 2
    assert np.frombuffer(k.read_file("/proc/kpagecount", off, 8), np.uint64).tolist() == [0]
    assert k.read_file("/proc/kpageflags", 0x400000000 * 8, 8) == b""


def test_mm_request_free_mem_region_slots():
    k = linmm.Kernel(linmm.MachineConfig(ram="1G"))
    a = k.request_free_mem_region(k.iomem_resource, 256 << 20, "a")
    b = k.request_free_mem_region(100 << 20, "b")  # base defaults to iomem; rounded up to 128 MiB
    assert (a.start, b.start, b.size()) == (0x3FFFF0000000, 0x3FFFE8000000, 128 << 20)
    assert k.read_file("/proc/iomem").endswith("3fffe8000000-3fffefffffff : b\n"
                                               "3ffff0000000-3fffffffffff : a\n")
    # no 256 MiB slot inside a 128 MiB base
    assert k.request_free_mem_region(linmm.Resource(0x3FFFE0000000, 0x3FFFE7FFFFFF), 256 << 20,
                                     "c") == -ERANGE.errno_value
    taken = linmm.Resource(0x10000000, 0x2FFFFFFF)
    k.request_free_mem_region(taken, 256 << 20, "c")
    assert k.request_free_mem_region(taken, 256 << 20, "d") == -ERANGE.errno_value  # taken
    k5 = linmm.Kernel(linmm.MachineConfig(ram="1G", five_level=True, phys_bits=52))
    assert k5.request_free_mem_region(k5.iomem_resource, 1 << 28, "d").start == (1 << 52) - (1 << 28)


def test_mm_iomem_hot_added_system_ram():
    k = linmm.Kernel(linmm.MachineConfig(ram="4G", kconfig={"ARCH_MEMORY_PROBE": True}))
    k.write_file(f"{MEM}/probe", "0x140000000")
    assert k.read_file("/proc/iomem").endswith("100000000-13fffffff : System RAM\n"
                                               "140000000-147ffffff : System RAM\n")
    k.remove_memory(0, 0x140000000, 128 << 20)
    assert k.read_file("/proc/iomem").endswith("100000000-13fffffff : System RAM\n")
    k.write_file(f"{MEM}/memory33/state", "offline")  # a boot block: its resource splits
    k.remove_memory(0, 0x108000000, 128 << 20)
    assert k.read_file("/proc/iomem").endswith("100000000-107ffffff : System RAM\n"
                                               "110000000-13fffffff : System RAM\n")
    assert not k.pfn_valid(0x108000) and k.pfn_valid(0x110000)
    k.check()


# ---------------------------------------------------------------- property
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ops = st.lists(st.tuples(st.booleans(), st.integers(0, 511), st.integers(1, 160),
                          st.sampled_from([MEMORY_DEVICE_PRIVATE, MEMORY_DEVICE_DEVDAX])),
                min_size=1, max_size=12)


@settings(max_examples=25, deadline=None)
@given(_ops)
def test_mm_memremap_random_ranges(ops):
    """Random 2 MiB-granular pgmaps in the 1 GiB PCI hole: a map succeeds exactly when
    it overlaps no mapped range, a failure changes nothing, and unmapping everything
    gives every memmap page back and leaves no section behind."""
    k = linmm.Kernel(linmm.MachineConfig(ram="4G"))
    drv = Driver()
    k.page_alloc.drain_all_pages(None)
    free0 = meminfo(k)["MemFree"]
    live = []
    for unmap, first, n, typ in ops:
        if unmap and live:
            k.memunmap_pages(live.pop(first % len(live)))
            continue
        n = min(n, 512 - first)
        s, e = first, first + n
        pgmap = DevPagemap(typ, (0xC0000000 + (s << 21), n << 21), drv.ops, owner=drv)
        clash = any(p.pfn_first() < (0xC0000 + (e << 9)) and (0xC0000 + (s << 9)) < p.pfn_end()
                    for p in live)
        before = state(k)
        if clash:
            assert k.memremap_pages(pgmap, 0) in (-ENOMEM.errno_value, -EEXIST.errno_value)
            assert same_state(state(k), before)
        else:
            k.memremap_pages(pgmap, 0)
            live.append(pgmap)
            assert k.pfn_valid(pgmap.pfn_first()) and k.pfn_valid(pgmap.pfn_end() - 1)
        k.check()
    for p in live:
        k.memunmap_pages(p)
    k.page_alloc.drain_all_pages(None)
    assert meminfo(k)["MemFree"] == free0
    assert not k.section_flags[24:32].any() and not k.sparse.subsection_map
    k.check()
