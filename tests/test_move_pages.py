"""move_pages(2) and the migration engine: page_migration.md scenarios 1-6 and 16 (the parts
without swap, files, THP, hugetlb or cpusets) and page_owner.md scenario 9."""
import re

import pytest

import linmm
from linmm import (MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MPOL_MF_MOVE, MPOL_MF_MOVE_ALL, PROT_READ,
                   PROT_WRITE)
from linmm.errors import EINVAL, ENODEV, EPERM, ESRCH
from linmm.mm.pgtable import PMD_SHIFT, pte_pfn

A = 0x7F0000000000
P = 4096
RW = PROT_READ | PROT_WRITE


def n2(cmdline=""):
    """Machine N2 of numa.md: node 0 with CPUs 0-1, node 1 with CPUs 2-3."""
    k = linmm.Kernel(linmm.MachineConfig(ram="4G", nodes=2, cpus=4, cmdline=cmdline))
    t = k.spawn("T")
    assert t.mmap(A, 2 << 20, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED) == A
    return k, t


def write_pages(t, n):
    for i in range(n):
        t.write(A + i * P, bytes([i + 1]) * P)


def pfn_of(t, addr):
    tab = t.mm.pte_tables[addr >> PMD_SHIFT]
    return pte_pfn(int(tab.entries[(addr >> 12) & 511]))


def numa_node_stat(k, nid, item):
    return sum(z.numa_stat[item] for z in k.pgdats[nid].node_zones)


def counters(k):
    return k.vm_events["pgmigrate_success"], k.vm_events["pgmigrate_fail"]


# ---------------------------------------------------------------- scenario 1
def test_migration_s1_query():
    k, t = n2()
    t.write(A, b"x")
    t.read(A + 2 * P, 1)  # the zero page
    before = counters(k)
    ret, status = t.move_pages(0, [A, A + P, A + 2 * P, 0x1000])
    assert (ret, status) == (0, [0, -14, -14, -14])
    assert counters(k) == before
    k.check()


# ---------------------------------------------------------------- scenario 2
def test_migration_s2_move_eight_pages():
    k, t = n2()
    write_pages(t, 8)
    addrs = [A + i * P for i in range(8)]
    old = [pfn_of(t, a) for a in addrs]
    hit1, other1 = numa_node_stat(k, 1, "numa_hit"), numa_node_stat(k, 1, "numa_other")
    s0, f0 = counters(k)
    ret, status = t.move_pages(0, addrs, [1] * 8)
    assert (ret, status) == (0, [1] * 8)
    assert counters(k) == (s0 + 8, f0)
    assert numa_node_stat(k, 1, "numa_hit") == hit1 + 8
    assert numa_node_stat(k, 1, "numa_other") == other1 + 8  # the caller runs on node 0
    new = [pfn_of(t, a) for a in addrs]
    assert all(o != n for o, n in zip(old, new))
    assert all(k.pfn_to_nid(p) == 1 for p in new)
    assert all(t.read(a, P) == bytes([i + 1]) * P for i, a in enumerate(addrs))
    assert [pg.vm_stat["nr_isolated_anon"] for pg in k.pgdats] == [0, 0]
    assert t.move_pages(0, addrs) == (0, [1] * 8)
    k.check()


# ---------------------------------------------------------------- scenario 3
def test_migration_s3_batches():
    k, t = n2()
    write_pages(t, 4)
    s0, _ = counters(k)
    ret, status = t.move_pages(0, [A + i * P for i in range(4)], [1, 1, 0, 1])
    assert (ret, status) == (0, [1, 1, 0, 1])
    assert counters(k)[0] == s0 + 3
    k.check()


# ---------------------------------------------------------------- scenario 4
def test_migration_s4_shared_page_needs_move_all():
    k, t = n2()
    write_pages(t, 1)
    c = t.fork()
    old = pfn_of(t, A)
    assert t.move_pages(0, [A], [1]) == (0, [-13])
    assert pfn_of(t, A) == old
    s0, _ = counters(k)
    assert t.move_pages(0, [A], [1], MPOL_MF_MOVE_ALL) == (0, [1])  # t runs as root
    new = pfn_of(t, A)
    assert new != old and pfn_of(c, A) == new and k.pfn_to_nid(new) == 1
    assert c.read(A, P) == t.read(A, P) == bytes([1]) * P
    assert counters(k)[0] == s0 + 1
    k.check()


# ---------------------------------------------------------------- scenario 5
def test_migration_s5_duplicates():
    k, t = n2()
    write_pages(t, 1)
    s0, _ = counters(k)
    assert t.move_pages(0, [A, A], [1, 1]) == (0, [1, -16])
    assert counters(k)[0] == s0 + 1
    k.check()


# ---------------------------------------------------------------- scenario 6
def test_migration_s6_errors():
    k, t = n2()
    write_pages(t, 2)
    with pytest.raises(EINVAL):
        t.move_pages(0, [A], [1], 8)
    user = k.spawn("user", uid=1000)
    user.mmap(A, P, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    with pytest.raises(EPERM):
        user.move_pages(0, [A], [1], MPOL_MF_MOVE_ALL)
    with pytest.raises(EPERM):  # ptrace_may_access: another user's process
        user.move_pages(t.pid, [A], [1])
    with pytest.raises(ESRCH):
        t.move_pages(99999, [A], [1])
    for node in (64, 2, -1):
        with pytest.raises(ENODEV):
            t.move_pages(0, [A], [node])
    status = [0, 0]
    with pytest.raises(ENODEV):
        t.move_pages(0, [A, A + P], [1, 7], MPOL_MF_MOVE, status)
    assert status == [1, 0] and k.pfn_to_nid(pfn_of(t, A)) == 1  # the batch before moved
    assert t.move_pages(t.pid, [A + P], [1]) == (0, [1])  # own pid works like 0
    write_pages(t, 3)
    status = [7, 7]
    with pytest.raises(ENODEV):  # a page already on its node gets its status at once
        t.move_pages(0, [A + 2 * P, A + 2 * P], [0, 9], MPOL_MF_MOVE, status)
    assert status == [0, 7]
    k.check()


# ---------------------------------------------------------------- target full (scenario 7)
def test_migration_s7_target_node_full():
    k, t = n2()
    write_pages(t, 4)
    held = []
    pa = k.page_alloc
    from linmm import GFP_KERNEL, __GFP_NOWARN, __GFP_THISNODE
    while (p := pa.alloc_pages_nodemask(GFP_KERNEL | __GFP_THISNODE | __GFP_NOWARN, 0, 1)) is not None:
        held.append(p)
    s0, f0 = counters(k)
    old = [pfn_of(t, A + i * P) for i in range(4)]
    status = [0] * 4
    with pytest.raises(linmm.errors.ENOMEM):
        t.move_pages(0, [A + i * P for i in range(4)], [1] * 4, 0, status)
    assert counters(k) == (s0, f0 + 1) and status == [0] * 4
    assert [pfn_of(t, A + i * P) for i in range(4)] == old
    assert all(t.read(A + i * P, P) == bytes([i + 1]) * P for i in range(4))
    assert "Out of memory" not in k.dmesg()
    for p in held:
        pa.free_pages(p, 0)
    k.check()


# ---------------------------------------------------------------- scenario 16
def test_migration_s16_freed_under_migration():
    k, t = n2()
    write_pages(t, 1)
    pfn = pfn_of(t, A)
    assert k.migrate.isolate_lru_page(pfn)
    t.munmap(A, P)  # the only mapping goes: only the isolation reference is left
    hit = sum(numa_node_stat(k, n, "numa_hit") for n in (0, 1))
    s0, _ = counters(k)
    lst = [pfn]
    assert k.migrate.migrate_pages(lst, 1, "syscall_or_cpuset") == 0
    assert counters(k)[0] == s0 + 1 and lst == []
    assert sum(numa_node_stat(k, n, "numa_hit") for n in (0, 1)) == hit  # nothing allocated
    assert k.memmap.PageBuddy(pfn) or k.memmap.refcount[pfn] == 0
    assert k.pgdats[0].vm_stat["nr_isolated_anon"] == 0
    k.check()


# ---------------------------------------------------------------- page_owner scenario 9
def test_page_owner_s9_migrated_page_keeps_its_record():
    k, t = n2("page_owner=on")
    write_pages(t, 1)
    old = pfn_of(t, A)
    assert t.move_pages(0, [A], [1]) == (0, [1])
    new = pfn_of(t, A)
    text = k.read_file("/sys/kernel/debug/page_owner")
    records = text.split("\n\n")
    mine = [r for r in records if re.search(rf"^PFN {new} ", r, re.M)]
    assert len(mine) == 1
    rec = mine[0]
    assert rec.startswith("Page allocated via order 0, mask 0x100dca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO)")
    assert "Page has been migrated, last migrate reason: syscall_or_cpuset" in rec
    assert "handle_mm_fault" in rec  # the ORIGINAL fault stack, not the migration's
    assert not any(re.search(rf"^PFN {old} ", r, re.M) for r in records)
    k.check()
