"""unevictable-lru.md acceptance scenarios that the model covers (mlock family)."""
import numpy as np
import pytest

import linmm
from linmm import (MAP_ANONYMOUS, MAP_LOCKED, MAP_PRIVATE, MAP_SHARED, MCL_CURRENT, MCL_FUTURE,
                   MCL_ONFAULT, MLOCK_ONFAULT, PROT_NONE, PROT_READ, PROT_WRITE)
from linmm.errors import EAGAIN, EINVAL, ENOMEM, EPERM

P = 100
RW = PROT_READ | PROT_WRITE


def meminfo(k):
    return {line.split(":")[0]: int(line.split()[1]) for line in k.read_file("/proc/meminfo").splitlines()}


def ev(k):
    return dict(k.vm_events)


def delta(k, before, *names):
    return {n: k.vm_events[n] - before[n] for n in names}


def vmlck(k, t):
    return int(next(l for l in k.read_file(f"/proc/{t.pid}/status").splitlines()
                    if l.startswith("VmLck:")).split()[1])


UNEV = ("unevictable_pgs_mlocked", "unevictable_pgs_culled", "unevictable_pgs_munlocked",
        "unevictable_pgs_rescued", "unevictable_pgs_cleared", "unevictable_pgs_stranded", "pgfault")


@pytest.fixture
def k():
    return linmm.Kernel(linmm.MachineConfig(ram="512M"))


def touched(k, t, pages=P, prot=RW, flags=MAP_PRIVATE | MAP_ANONYMOUS):
    a = t.mmap(0, pages << 12, prot, flags)
    t.access(np.arange(a, a + (pages << 12), 4096, dtype=np.uint64), True)
    return a


def test_unevictable_s1_s2_mlock_then_munlock(k):
    t = k.spawn("a")
    a = touched(k, t)
    m0, e0 = meminfo(k), ev(k)
    t.mlock(a, P << 12)
    m1 = meminfo(k)
    assert m1["Mlocked"] - m0["Mlocked"] == 400 and m1["Unevictable"] - m0["Unevictable"] == 400
    assert m1["Active(anon)"] - m0["Active(anon)"] == -400
    assert delta(k, e0, *UNEV) == {"unevictable_pgs_mlocked": 100, "unevictable_pgs_culled": 100,
                                   "unevictable_pgs_munlocked": 0, "unevictable_pgs_rescued": 0,
                                   "unevictable_pgs_cleared": 0, "unevictable_pgs_stranded": 0,
                                   "pgfault": 0}
    assert vmlck(k, t) == 400
    k.check()
    e1 = ev(k)
    t.munlock(a, P << 12)
    m2 = meminfo(k)
    assert m2["Mlocked"] == m0["Mlocked"] and m2["Unevictable"] == m0["Unevictable"]
    assert m2["Inactive(anon)"] - m1["Inactive(anon)"] == 400
    d = delta(k, e1, *UNEV)
    assert d["unevictable_pgs_munlocked"] == 100 and d["unevictable_pgs_rescued"] == 100
    assert vmlck(k, t) == 0
    k.check()


def test_unevictable_s3_mlock_faults_in_and_onfault(k):
    t = k.spawn("a")
    a = t.mmap(0, P << 12, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    m0, e0 = meminfo(k), ev(k)
    t.mlock(a, P << 12)
    d = delta(k, e0, *UNEV)
    assert d["pgfault"] == 100 and d["unevictable_pgs_mlocked"] == 100
    assert d["unevictable_pgs_culled"] == 100
    assert meminfo(k)["Mlocked"] - m0["Mlocked"] == 400
    b = t.mmap(0, P << 12, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    m1, e1 = meminfo(k), ev(k)
    t.mlock2(b, P << 12, MLOCK_ONFAULT)
    assert vmlck(k, t) == 800 and meminfo(k)["Mlocked"] == m1["Mlocked"]
    t.access(np.arange(b, b + (10 << 12), 4096, dtype=np.uint64), True)
    d = delta(k, e1, *UNEV)
    assert meminfo(k)["Mlocked"] - m1["Mlocked"] == 40
    assert d["unevictable_pgs_mlocked"] == 10 and d["unevictable_pgs_culled"] == 10
    k.check()


def test_unevictable_s4_munmap_locked_range(k):
    t = k.spawn("a")
    a = touched(k, t)
    m0 = meminfo(k)
    t.mlock(a, P << 12)
    e1 = ev(k)
    t.munmap(a, P << 12)
    d = delta(k, e1, *UNEV)
    assert d["unevictable_pgs_munlocked"] == 100 and d["unevictable_pgs_rescued"] == 100
    m2 = meminfo(k)
    assert m2["Mlocked"] == m0["Mlocked"] and m2["Unevictable"] == m0["Unevictable"]
    assert vmlck(k, t) == 0
    k.check()


def test_unevictable_s5_limits(k):
    t = k.spawn("user", uid=1000)
    a = touched(k, t, 40)
    with pytest.raises(ENOMEM):
        t.mlock(a, 20 << 12)
    assert vmlck(k, t) == 0
    t.mlock(a, 16 << 12)
    t.mlock(a, 16 << 12)
    with pytest.raises(ENOMEM):
        t.mlock(a + (20 << 12), 4096)
    t.setrlimit("RLIMIT_MEMLOCK", 0)
    with pytest.raises(EPERM):
        t.mlock(a, 4096)
    with pytest.raises(EINVAL):
        t.mlock2(a, 4096, 2)
    with pytest.raises(EINVAL):
        t.mlockall(MCL_ONFAULT)
    with pytest.raises(EINVAL):
        t.mlockall(0)
    k.check()


def test_unevictable_s6_gap_locks_the_first_vma(k):
    t = k.spawn("a")
    a = t.mmap(0x7e0000000000, 8 << 12, RW, MAP_PRIVATE | MAP_ANONYMOUS | linmm.MAP_FIXED)
    t.mmap(a + (12 << 12), 8 << 12, RW, MAP_PRIVATE | MAP_ANONYMOUS | linmm.MAP_FIXED)
    with pytest.raises(ENOMEM):
        t.mlock(a, 20 << 12)
    assert vmlck(k, t) == 32
    with pytest.raises(ENOMEM):
        t.munlock(a, 20 << 12)
    assert vmlck(k, t) == 0
    k.check()


def test_unevictable_s7_prot_none(k):
    t = k.spawn("a")
    a = t.mmap(0, 8 << 12, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS)
    free0 = meminfo(k)["AnonPages"]
    with pytest.raises(ENOMEM):
        t.mlock(a, 8 << 12)
    assert vmlck(k, t) == 32 and meminfo(k)["AnonPages"] == free0
    t.mmap(0, 8 << 12, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED)
    assert vmlck(k, t) == 64
    k.check()


def test_unevictable_s8_mlockall(k):
    t = k.spawn("a")
    touched(k, t, 4)
    t.mlockall(MCL_CURRENT | MCL_FUTURE)
    assert all(v.vm_flags & 0x2000 for v in t.mm.vmas)
    m0, e0 = meminfo(k), ev(k)
    t.mmap(0, 10 << 12, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    assert meminfo(k)["Mlocked"] - m0["Mlocked"] == 40
    d = delta(k, e0, *UNEV)
    assert d["unevictable_pgs_mlocked"] == 10 and d["unevictable_pgs_culled"] == 10
    t.munlockall()
    assert t.mm.def_flags == 0 and not any(v.vm_flags & 0x2000 for v in t.mm.vmas)
    assert meminfo(k)["Mlocked"] == 0
    u = k.spawn("user", uid=1000)
    u.mlockall(MCL_FUTURE)
    with pytest.raises(EAGAIN):
        u.mmap(0, 20 << 12, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    k.check()


def test_unevictable_s9_fork_then_parent_exit(k):
    t = k.spawn("a", reap=True)
    a = touched(k, t)
    t.mlock(a, P << 12)
    c = t.fork()
    assert vmlck(k, c) == 0
    m0, e0 = meminfo(k), ev(k)
    t.exit()
    d = delta(k, e0, *UNEV)
    assert d["unevictable_pgs_munlocked"] == 100 and d["unevictable_pgs_rescued"] == 100
    assert m0["Mlocked"] - meminfo(k)["Mlocked"] == 400
    k.check()


def test_unevictable_s10_shared_locked_in_two_tasks(k):
    t = k.spawn("a")
    a = touched(k, t, P, RW, MAP_SHARED | MAP_ANONYMOUS)
    c = t.fork()
    m0, e0 = meminfo(k), ev(k)
    t.mlock(a, P << 12)
    c.mlock(a, P << 12)
    assert meminfo(k)["Mlocked"] - m0["Mlocked"] == 400
    assert delta(k, e0, "unevictable_pgs_mlocked")["unevictable_pgs_mlocked"] == 100
    m1, e1 = meminfo(k), ev(k)
    t.munlock(a, P << 12)
    m2 = meminfo(k)
    assert m2["Mlocked"] == m1["Mlocked"] and m2["Unevictable"] == m1["Unevictable"]
    d = delta(k, e1, *UNEV)
    assert d["unevictable_pgs_mlocked"] == 100 and d["unevictable_pgs_munlocked"] == 0
    assert d["unevictable_pgs_rescued"] == 0 and d["unevictable_pgs_culled"] == 0
    k.check()


def test_unevictable_s11_cow_in_a_locked_vma(k):
    t = k.spawn("a")
    a = t.mmap(0, P << 12, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    t.write(a, b"old" * 1000)
    t.mlock(a, P << 12)
    c = t.fork()
    m0, e0 = meminfo(k), ev(k)
    t.write(a, b"new")
    d = delta(k, e0, *UNEV)
    assert d["unevictable_pgs_mlocked"] == 1 and d["unevictable_pgs_culled"] == 1
    assert d["unevictable_pgs_munlocked"] == 1 and d["unevictable_pgs_rescued"] == 1
    assert meminfo(k)["Mlocked"] == m0["Mlocked"]
    assert t.read(a, 6) == b"newold" and c.read(a, 6) == b"oldold"
    k.check()
