"""memory-model.md scenarios 6 and 7: offlining and onlining memory blocks (V4)."""
import re

import pytest

import linmm
from linmm.errors import EBUSY, EINVAL

MEM = "/sys/devices/system/memory"


def zone_fields(k, name):
    z = k.read_file("/proc/zoneinfo")
    m = re.search(rf"zone +{name}\n(?:.*\n)*?  pages free +\d+\n(?:.*\n){{3}} +spanned +(\d+)\n"
                  rf" +present +(\d+)\n +managed +(\d+)", z)
    return tuple(int(x) for x in m.groups())


def memtotal(k):
    return k.read_file("/proc/meminfo").splitlines()[0]


@pytest.fixture(scope="module")
def v4():
    return linmm.Kernel(linmm.MachineConfig(ram="4G"))


def test_mm_s6_offline_and_online_movable(v4):
    k = v4
    order10 = int(k.read_file("/proc/buddyinfo").splitlines()[-1].split()[-1])
    k.write_file(f"{MEM}/memory38/state", "offline")
    assert "Offlined Pages 32768" in k.dmesg()
    assert k.read_file(f"{MEM}/memory38/state") == "offline\n"
    assert k.read_file(f"{MEM}/memory38/valid_zones") == "Normal Movable\n"
    assert memtotal(k) == "MemTotal:        3966524 kB"
    assert zone_fields(k, "Normal") == (262144, 229376, 212992)
    assert int(k.read_file("/proc/buddyinfo").splitlines()[-1].split()[-1]) == order10 - 32
    k.check()
    with pytest.raises(EINVAL):
        k.write_file(f"{MEM}/memory38/state", "offline")
    k.write_file(f"{MEM}/memory38/state", "online_movable")
    assert k.read_file(f"{MEM}/memory38/state") == "online\n"
    assert k.read_file(f"{MEM}/memory38/valid_zones") == "Movable\n"
    assert zone_fields(k, "Movable") == (32768, 32768, 32768)
    assert re.search(r"zone +Movable\n(?:.*\n)*?  start_pfn: +1245184\n", k.read_file("/proc/zoneinfo"))
    assert zone_fields(k, "Normal")[0] == 262144  # Normal still spans it: zones overlap
    assert memtotal(k) == "MemTotal:        4097596 kB"
    k.check()


@pytest.mark.parametrize("block,word,err", [(0, "offline", EINVAL), (39, "offline", EBUSY),
                                            (5, "foo", EINVAL), (5, "online", EINVAL)])
def test_mm_s7_offline_failures_change_nothing(block, word, err):
    k = linmm.Kernel(linmm.MachineConfig(ram="4G"))
    before = (memtotal(k), k.read_file("/proc/buddyinfo"))
    with pytest.raises(err):
        k.write_file(f"{MEM}/memory{block}/state", word)
    assert k.read_file(f"{MEM}/memory{block}/state") == "online\n"
    assert (memtotal(k), k.read_file("/proc/buddyinfo")) == before
    if err is EBUSY:  # memory39 ends with the boot memmap: a PG_reserved page
        assert "page dumped because: unmovable page" in k.dmesg()
        assert re.search(r"^page:ffffea[0-9a-f]{10} refcount:1 mapcount:0 mapping:0{16} index:0x0\n"
                         r"flags: 0x[0-9a-f]+\(reserved\)\n", k.dmesg(), re.M)
    k.check()


def test_mm_s7_block_with_a_kernel_allocation_is_busy():
    k = linmm.Kernel(linmm.MachineConfig(ram="4G"))
    page = k.alloc_pages(linmm.GFP_KERNEL, 0)
    block = page.pfn >> 15
    with pytest.raises(EBUSY):
        k.write_file(f"{MEM}/memory{block}/state", "offline")
    assert k.read_file(f"{MEM}/memory{block}/state") == "online\n"
    k.check()


def test_mm_s8_offline_migrates_user_pages():
    """Scenario 8: 100 anon pages with distinct patterns in memory36 move elsewhere."""
    import struct

    import numpy as np

    from linmm import MADV_DONTNEED, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
    k = linmm.Kernel(linmm.MachineConfig(ram="4G"))
    t = k.spawn("a")
    n = 300000
    a = t.mmap(0, n << 12, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    t.access(np.arange(a, a + (n << 12), 4096, dtype=np.uint64), True)

    def pfns():
        pm = np.frombuffer(k.read_file(f"/proc/{t.pid}/pagemap", (a >> 12) * 8, n * 8), np.uint64)
        return (pm & np.uint64((1 << 55) - 1)).astype(np.int64)
    lo, hi = 0x120000, 0x128000
    p = pfns()
    keep = np.flatnonzero((p >= lo) & (p < hi))[:100]
    assert len(keep) == 100
    drop = np.setdiff1d(np.arange(n), keep)
    for run in np.split(drop, np.flatnonzero(np.diff(drop) != 1) + 1):
        t.madvise(a + (int(run[0]) << 12), len(run) << 12, MADV_DONTNEED)
    pats = {}
    for j, i in enumerate(keep.tolist()):
        pats[i] = bytes([j % 251]) * 4000 + struct.pack("<I", j) * 24
        t.write(a + (i << 12), pats[i])
    k.check()
    m0 = k.vm_events["pgmigrate_success"]
    k.write_file(f"{MEM}/memory36/state", "offline")
    assert k.vm_events["pgmigrate_success"] - m0 == 100
    moved = pfns()[keep]
    assert ((moved < lo) | (moved >= hi)).all()
    assert all(t.read(a + (i << 12), 4096) == pats[i] for i in keep.tolist())
    k.check()


def test_mm_s12_hot_add_through_probe():
    k = linmm.Kernel(linmm.MachineConfig(ram="4G", kconfig={"ARCH_MEMORY_PROBE": True}))
    free0 = int(k.read_file("/proc/meminfo").splitlines()[1].split()[1])
    k.write_file(f"{MEM}/probe", "0x140000000")
    assert "memory40" in k.listdir(MEM)
    assert k.read_file(f"{MEM}/memory40/state") == "offline\n"
    assert k.read_file(f"{MEM}/memory40/valid_zones") == "Normal Movable\n"
    assert int(k.read_file("/proc/meminfo").splitlines()[1].split()[1]) == free0 - 2048
    assert memtotal(k) == "MemTotal:        4097596 kB"
    k.check()
    k.write_file(f"{MEM}/memory40/state", "online")
    assert memtotal(k) == "MemTotal:        4228668 kB"  # +131072 kB
    spanned, _, managed = zone_fields(k, "Normal")
    assert (spanned, managed) == (294912, 278528)
    assert k.pgdats[0].node_end_pfn == 0x148000  # resize_pgdat_range()
    with pytest.raises(EINVAL):
        k.write_file(f"{MEM}/probe", "0x140001000")
    with pytest.raises(linmm.errors.EEXIST):
        k.write_file(f"{MEM}/probe", "0x100000000")
    k.check()
    k2 = linmm.Kernel(linmm.MachineConfig(ram="4G", kconfig={"ARCH_MEMORY_PROBE": True},
                                          cmdline="memhp_default_state=online"))
    k2.write_file(f"{MEM}/probe", "0x140000000")
    assert k2.read_file(f"{MEM}/memory40/state") == "online\n"
    k2.check()


def test_mm_remove_memory_needs_offline_blocks():
    k = linmm.Kernel(linmm.MachineConfig(ram="4G", kconfig={"ARCH_MEMORY_PROBE": True}))
    free0 = int(k.read_file("/proc/meminfo").splitlines()[1].split()[1])
    k.add_memory(0, 0x140000000, 128 << 20)
    k.write_file(f"{MEM}/memory40/state", "online")
    with pytest.raises(EBUSY):
        k.remove_memory(0, 0x140000000, 128 << 20)
    k.write_file(f"{MEM}/memory40/state", "offline")
    k.remove_memory(0, 0x140000000, 128 << 20)
    assert "memory40" not in k.listdir(MEM)
    assert memtotal(k) == "MemTotal:        4097596 kB"
    assert int(k.read_file("/proc/meminfo").splitlines()[1].split()[1]) == free0  # memmap freed
    assert not k.pfn_valid(0x140000)
    k.check()
