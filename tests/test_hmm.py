"""hmm.md: hmm_range_fault() (scenarios A1, A3, A4), test_hmm loading (A12) and the hmm-tests.c
cases that need no migration, swap, THP, hugetlb or files (B1-B7)."""
import re
import struct

import pytest

import linmm
from linmm import (MADV_DONTNEED, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_NONE,
                   PROT_READ, PROT_WRITE)
from linmm.errors import EFAULT, EPERM, KernelBug
from linmm.hmm import (HMM_PFN_ERROR, HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE, HMM_PFN_VALID,
                       HMM_PFN_WRITE, HmmRange, TestHmm)
from linmm.mm.pgtable import PMD_SHIFT, pte_pfn
from linmm import MmuIntervalNotifier, MmuIntervalNotifierOps

RW = PROT_READ | PROT_WRITE
BUF = 0x7F0000000000          # 2 MiB aligned
NPAGES = 1024
P = 4096


def machine():
    return linmm.Kernel(linmm.MachineConfig(ram="1G", cpus=1, nodes=1, phys_bits=46))


def meminfo(k):
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+):\s+(\d+)", k.read_file("/proc/meminfo"), re.M)}


def fill(n, sign=1):
    """int32 i at int index i of an n-page buffer (hmm-tests.c)."""
    return struct.pack(f"<{n * 1024}i", *(sign * i for i in range(n * 1024)))


def pfn_of(t, addr):
    tab = t.mm.pte_tables[addr >> PMD_SHIFT]
    return pte_pfn(int(tab.entries[(addr >> 12) & 511]))


class Watch:
    """A driver-style interval notifier over [start, end) that only bumps its sequence."""

    def __init__(self, k, mm, start, length):
        self.k = k
        self.sub = MmuIntervalNotifier()
        self.events = []
        k.mmu_interval_notifier_insert(self.sub, mm, start, length,
                                       MmuIntervalNotifierOps(invalidate=self._inv))

    def _inv(self, sub, rng, cur_seq):
        self.events.append((rng.event, rng.start, rng.end))
        sub.invalidate_seq = cur_seq
        return True

    def range(self, start, end, **kw):
        r = HmmRange(self.sub, start, end, **kw)
        r.notifier_seq = self.k.mmu_interval_read_begin(self.sub)
        return r


def run_in(k, t):
    k.sched.run_on_cpu(t)


# ---------------------------------------------------------------- A: the API
def test_hmm_a1_snapshot():
    k = machine()
    t = k.spawn("t")
    a = t.mmap(BUF, 4 * P, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    t.write(a + P, b"P")
    t.read(a + 2 * P, 1)  # the zero page
    w = Watch(k, t.mm, a, 4 * P)
    run_in(k, t)
    f0 = k.vm_events["pgfault"]
    r = w.range(a, a + 4 * P)
    assert k.hmm_range_fault(r) == 0
    assert r.hmm_pfns == [0, pfn_of(t, a + P) | 0xC000000000000000, k.zero_pfn | 0x8000000000000000, 0]
    assert k.vm_events["pgfault"] == f0
    k.check()


def test_hmm_a3_write_request_busy_then_done():
    k = machine()
    t = k.spawn("t")
    a = t.mmap(BUF, 4 * P, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    for i in range(4):
        t.read(a + i * P, 1)
    w = Watch(k, t.mm, a, 4 * P)
    run_in(k, t)
    f0, rss0 = k.vm_events["pgfault"], t.mm.rss_stat[1]
    r = w.range(a, a + 4 * P, default_flags=HMM_PFN_REQ_FAULT, pfn_flags_mask=HMM_PFN_REQ_WRITE)
    r.hmm_pfns[2] = HMM_PFN_REQ_WRITE
    assert k.hmm_range_fault(r) == -16  # -EBUSY: the COW breaks at pages 2 and 3
    zero = k.zero_pfn | HMM_PFN_VALID
    assert r.hmm_pfns == [zero, zero, HMM_PFN_WRITE, 0]
    assert [e[0] for e in w.events] == [1, 1]  # two MMU_NOTIFY_CLEAR
    r.notifier_seq = k.mmu_interval_read_begin(w.sub)
    assert k.hmm_range_fault(r) == 0
    new = [pfn_of(t, a + 2 * P), pfn_of(t, a + 3 * P)]
    assert r.hmm_pfns == [zero, zero, new[0] | HMM_PFN_VALID | HMM_PFN_WRITE,
                          new[1] | HMM_PFN_VALID | HMM_PFN_WRITE]
    assert new[0] != new[1]
    assert k.vm_events["pgfault"] == f0 + 2 and t.mm.rss_stat[1] == rss0 + 2
    k.check()


def test_hmm_a4_errors():
    k = machine()
    t = k.spawn("t")
    ro = t.mmap(BUF, 4 * P, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    none = t.mmap(BUF + (4 << 20), 4 * P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    hole = BUF + (8 << 20)
    w = Watch(k, t.mm, BUF, 16 << 20)
    run_in(k, t)
    f0 = k.vm_events["pgfault"]
    r = w.range(ro, ro + 4 * P, default_flags=HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE)
    assert k.hmm_range_fault(r) == -1 and k.vm_events["pgfault"] == f0  # -EPERM
    r = w.range(none, none + 4 * P, default_flags=HMM_PFN_REQ_FAULT)
    assert k.hmm_range_fault(r) == -14
    r = w.range(none, none + 4 * P)
    assert k.hmm_range_fault(r) == 0 and r.hmm_pfns == [HMM_PFN_ERROR] * 4
    r = w.range(hole, hole + 2 * P)
    assert k.hmm_range_fault(r) == 0 and r.hmm_pfns == [HMM_PFN_ERROR] * 2
    r = w.range(hole, hole + 2 * P, default_flags=HMM_PFN_REQ_FAULT)
    assert k.hmm_range_fault(r) == -14
    r = w.range(ro, ro)
    assert k.hmm_range_fault(r) == -22  # -EINVAL
    r = w.range(ro, ro + 2 * P, default_flags=HMM_PFN_REQ_FAULT)
    r.hmm_pfns = [7, 7]
    t.munmap(none, P)  # an invalidation inside the interval since read_begin
    run_in(k, t)
    assert k.hmm_range_fault(r) == -16 and r.hmm_pfns == [7, 7]
    with pytest.raises(KernelBug):
        k.hmm_range_fault(HmmRange(w.sub, ro, ro + 2 * P, hmm_pfns=[0]))
    k.check()


# ---------------------------------------------------------------- A12: loading test_hmm
def test_hmm_a12_load():
    k = machine()
    k.page_alloc.drain_all_pages(None)
    free0 = meminfo(k)["MemFree"]
    tm = TestHmm(k)
    k.page_alloc.drain_all_pages(None)
    log = k.dmesg()
    assert "added new 256 MB chunk (total 1 chunks, 256 MB) PFNs [0x3ffff0000 0x400000000)" in log
    assert "added new 256 MB chunk (total 1 chunks, 256 MB) PFNs [0x3fffe0000 0x3ffff0000)" in log
    assert log.rstrip().endswith("HMM test module loaded. This is only for testing HMM.")
    assert re.search(r"zone +Device\n(?:.*\n){4} +spanned +131072\n +present +0\n +managed +0",
                     k.read_file("/proc/zoneinfo"))
    assert meminfo(k)["MemFree"] == free0 - 8196  # two 4096 kB memmaps and the zero page
    iomem = k.read_file("/proc/iomem")
    assert "3fffe0000000-3fffefffffff : hmm_dmirror\n3ffff0000000-3fffffffffff : hmm_dmirror\n" in iomem
    assert [d.calloc for d in tm.devices] == [0, 0]
    k.check()


# ---------------------------------------------------------------- B: hmm-tests.c
@pytest.fixture
def hmm():
    k = machine()
    tm = TestHmm(k)
    t = k.spawn("hmm-tests")
    return k, tm, t


def buffer(t, flags=MAP_PRIVATE | MAP_ANONYMOUS, prot=RW):
    return t.mmap(BUF, NPAGES * P, prot, flags | MAP_FIXED)


def test_hmm_b1_open_close(hmm):
    k, tm, t = hmm
    c0 = t.mm.mm_count
    m = tm.devices[0].open(t)
    assert t.mm.mm_count == c0 + 1
    m.close()
    assert t.mm.mm_count == c0
    k.check()


def test_hmm_b2_anon_read(hmm):
    k, tm, t = hmm
    a = buffer(t)
    data = fill(NPAGES)
    t.write(a + 2 * P, data[2 * P:])
    t.mprotect(a, NPAGES * P, PROT_READ)
    assert t.read(a + P, 4) == bytes(4)
    f0 = k.vm_events["pgfault"]
    r = tm.devices[0].open(t).read(a, NPAGES)
    assert (r.cpages, r.faults) == (NPAGES, 1)
    assert r.data == bytes(2 * P) + data[2 * P:]
    assert k.vm_events["pgfault"] == f0 + 64  # page 0 faults [p0, p64)
    k.check()


def test_hmm_b3_anon_read_prot(hmm):
    k, tm, t = hmm
    a = buffer(t)
    t.write(a, fill(NPAGES))
    t.mprotect(a, NPAGES * P, PROT_NONE)
    with pytest.raises(EFAULT):
        tm.devices[0].open(t).read(a, NPAGES)
    t.mprotect(a, NPAGES * P, PROT_READ)
    assert t.read(a, NPAGES * P) == fill(NPAGES)
    k.check()


def test_hmm_b4_anon_write(hmm):
    k, tm, t = hmm
    a = buffer(t)
    f0, rss0 = k.vm_events["pgfault"], t.mm.rss_stat[1]
    r = tm.devices[0].open(t).write(a, fill(NPAGES))
    assert (r.cpages, r.faults) == (NPAGES, 1)
    assert t.read(a, NPAGES * P) == fill(NPAGES)
    assert k.vm_events["pgfault"] == f0 + NPAGES and t.mm.rss_stat[1] == rss0 + NPAGES
    k.check()


def test_hmm_b5_anon_write_prot(hmm):
    k, tm, t = hmm
    a = buffer(t, prot=PROT_READ)
    m = tm.devices[0].open(t)
    r = m.read(a, 1)
    assert (r.cpages, r.faults, r.data) == (1, 1, bytes(P))
    with pytest.raises(EPERM):
        m.write(a, fill(NPAGES))
    assert t.read(a, NPAGES * P) == bytes(NPAGES * P)
    t.mprotect(a, NPAGES * P, RW)
    r = m.write(a, fill(NPAGES))
    assert (r.cpages, r.faults) == (NPAGES, 1)
    assert t.read(a, NPAGES * P) == fill(NPAGES)
    k.check()


@pytest.mark.parametrize("flags,parent_sees", [(MAP_PRIVATE | MAP_ANONYMOUS, 1),
                                               (MAP_SHARED | MAP_ANONYMOUS, -1)])
def test_hmm_b6_b7_anon_write_child(hmm, flags, parent_sees):
    k, tm, t = hmm
    a = buffer(t, flags)
    t.write(a, fill(NPAGES))
    c = t.fork()
    assert c.read(a, NPAGES * P) == fill(NPAGES)
    m = tm.devices[0].open(c)  # the child's own mm
    r = m.write(a, fill(NPAGES, -1))
    assert (r.cpages, r.faults) == (NPAGES, 1)
    assert c.read(a, NPAGES * P) == fill(NPAGES, -1)
    m.close()
    c.exit()
    assert t.read(a, NPAGES * P) == fill(NPAGES, parent_sees)
    k.check()


def test_hmm_mirror_dropped_by_dontneed(hmm):
    """Invalidation drops [start, end] inclusive (v5.8): the next page goes too."""
    k, tm, t = hmm
    a = buffer(t)
    t.write(a, fill(8))
    m = tm.devices[0].open(t)
    m.read(a, 8)
    t.madvise(a + 3 * P, P, MADV_DONTNEED)
    assert sorted(v - (a >> 12) for v in m.pt) == [0, 1, 2, 5, 6, 7]
    r = m.read(a, 8)
    assert r.faults == 1 and r.data[3 * P:4 * P] == bytes(P)
    k.check()
