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
    if err is EBUSY:
        assert "page dumped because: unmovable page" in k.dmesg()
    k.check()


def test_mm_s7_block_with_a_kernel_allocation_is_busy():
    k = linmm.Kernel(linmm.MachineConfig(ram="4G"))
    page = k.alloc_pages(linmm.GFP_KERNEL, 0)
    block = page.pfn >> 15
    with pytest.raises(EBUSY):
        k.write_file(f"{MEM}/memory{block}/state", "offline")
    assert k.read_file(f"{MEM}/memory{block}/state") == "online\n"
    k.check()
