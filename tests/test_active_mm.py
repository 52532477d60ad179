"""spec/active_mm.md: mm_users / mm_count, lazy-TLB borrowing, exit and __mmdrop.

Machine: MachineConfig(ram="1G"), cpus=1 unless stated.  A is an address in a one-page
anonymous mapping.  Scenarios 3-6 continue from 1 (without 2), so each replays the ones
before it.

Not here (not in the model, see the report): clone(CLONE_VM) (2's second half), k.mm_refs
(3, 6), k.open of /proc files (9), kthread_run / use_mm / unuse_mm (11 and 14's use_mm
misuse), KSM slots (12), signal->oom_mm / mmdrop_async (13), exec, CPU offline.
"""
from __future__ import annotations

import random
import re

import pytest

import linmm
from linmm import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

RW = PROT_READ | PROT_WRITE
STACK_PAGE = 0x7FFFFFFFE000  # inside every task's stack VMA (0x7ffffffde000-0x7ffffffff000)


def boot(**kw) -> linmm.Kernel:
    kw.setdefault("ram", "1G")
    return linmm.Kernel(linmm.MachineConfig(**kw))


def meminfo_kb(k, field: str) -> int:
    m = re.search(rf"^{field}: +(\d+) kB$", k.read_file("/proc/meminfo"), re.M)
    assert m
    return int(m.group(1))


def map_a(t) -> int:
    return t.mmap(0, 4096, RW, MAP_PRIVATE | MAP_ANONYMOUS)


def idle(k, cpu=0):
    return k.sched.cpus[cpu].idle


def check4(k):
    """Check 4, computed by the test: tasks on CPUs run on their own mm, kthreads off-CPU
    hold nothing, nobody's mm is init_mm."""
    on_cpu = set()
    for cpu in k.sched.cpus:
        cur = cpu.curr
        on_cpu.add(id(cur))
        assert cur.active_mm is not None, f"CPU{cpu.id} curr {cur!r} has no active_mm"
        if cur.mm is not None:
            assert cur.active_mm is cur.mm
            assert cpu.loaded_mm is cur.mm and not cpu.is_lazy
    for t in k.tasks.values():
        assert t.mm is not k.init_mm
        if t.is_kthread and id(t) not in on_cpu:
            assert t.active_mm is None, f"{t!r} is off-CPU but holds active_mm"


def no_bug_lines(k):
    bad = [ln for ln in k.dmesg().splitlines() if "BUG:" in ln]
    assert not bad, bad


# ---------------------------------------------------------------- op 1
def test_active_mm_op1_spawn_does_not_put_the_task_on_a_cpu():
    """op 1: k.spawn gives the task its mm as mm and active_mm; it is not on a CPU yet."""
    k = boot()
    init_count = k.init_mm.mm_count
    t = k.spawn("a")
    assert t.mm.mm_users == 1 and t.mm.mm_count == 1
    assert t.active_mm is t.mm
    cpu0 = k.sched.cpus[0]
    assert cpu0.curr is cpu0.idle
    assert cpu0.idle.active_mm is k.init_mm
    assert k.init_mm.mm_count == init_count
    k.check()


# ---------------------------------------------------------------- scenarios 1-6 (one chain)
def _s1(k):
    pre = (meminfo_kb(k, "AnonPages"), meminfo_kb(k, "PageTables"))
    t = k.spawn("a")
    mm = t.mm
    assert mm.mm_users == 1 and mm.mm_count == 1
    assert t.active_mm is mm
    A = map_a(t)
    t.touch(A, write=True)
    cpu0 = k.sched.cpus[0]
    assert cpu0.curr is t
    assert cpu0.loaded_mm is mm and not cpu0.is_lazy
    assert idle(k).active_mm is None
    assert mm.mm_users == 1 and mm.mm_count == 1
    check4(k)
    k.check()
    return t, A, pre


def _s3(k, t):
    mm = t.mm
    k.run(1)
    cpu0 = k.sched.cpus[0]
    assert cpu0.curr is cpu0.idle
    assert idle(k).active_mm is mm
    assert t.active_mm is mm  # user -> kernel: prev keeps active_mm == its mm
    assert mm.mm_count == 2 and mm.mm_users == 1
    assert cpu0.is_lazy and cpu0.loaded_mm is mm
    check4(k)
    k.check()


def _s4(k, t, monkeypatch):
    mm = t.mm
    kswapd0 = k.sched.kthreads["kswapd0"]
    seen = []
    orig = kswapd0.fn

    def observed(now_ms):
        seen.append((kswapd0.active_mm, idle(k).active_mm, mm.mm_count,
                     k.sched.cpus[kswapd0.cpu].curr))
        return orig(now_ms)

    monkeypatch.setattr(kswapd0, "fn", observed)
    k.vmscan.wake_kswapd_thread(k.pgdats[0])  # wake_up_interruptible(&pgdat->kswapd_wait)
    k.run(1)
    monkeypatch.undo()
    assert seen, "kswapd0 did not run"
    for kact, iact, cnt, cur in seen:
        assert cur is kswapd0
        assert kact is mm and iact is None
        assert cnt == 2
    assert idle(k).active_mm is mm
    assert kswapd0.active_mm is None
    assert mm.mm_count == 2 and mm.mm_users == 1
    check4(k)
    k.check()


def _s5(k, t, A):
    mm = t.mm
    cpu0 = k.sched.cpus[0]
    t.touch(A)
    assert cpu0.curr is t
    assert mm.mm_count == 1 and mm.mm_users == 1
    assert idle(k).active_mm is None
    assert not cpu0.is_lazy and cpu0.loaded_mm is mm
    check4(k)
    k.check()


def test_active_mm_s1_spawn_and_run():
    k = boot()
    _s1(k)


def test_active_mm_s2_fork_gets_new_mm():
    k = boot()
    t, A, _ = _s1(k)
    c = t.fork()
    assert c.mm is not t.mm
    assert c.mm.mm_users == 1 and c.mm.mm_count == 1
    assert c.active_mm is c.mm
    assert t.mm.mm_users == 1 and t.mm.mm_count == 1
    check4(k)
    k.check()


def test_active_mm_s3_user_to_kernel_borrows():
    k = boot()
    t, A, _ = _s1(k)
    _s3(k, t)


def test_active_mm_s4_kernel_to_kernel_moves_reference(monkeypatch):
    k = boot()
    t, A, _ = _s1(k)
    _s3(k, t)
    _s4(k, t, monkeypatch)


def test_active_mm_s5_kernel_to_user_drops_lazy_reference(monkeypatch):
    k = boot()
    t, A, _ = _s1(k)
    _s3(k, t)
    _s4(k, t, monkeypatch)
    _s5(k, t, A)


def test_active_mm_s6_exit_with_lazy_holder(monkeypatch):
    k = boot()
    t, A, (anon0, pt0) = _s1(k)
    _s3(k, t)
    _s4(k, t, monkeypatch)
    _s5(k, t, A)
    mm = t.mm
    pgd_pfn = mm.pgd.pfn
    t.exit()
    assert t.mm is None
    assert mm.mm_users == 0 and mm.mm_count == 1
    assert idle(k).active_mm is mm
    assert not mm.freed
    assert mm.vmas == [] and mm.pgtables_bytes == 0 and not any(mm.rss_stat)
    assert meminfo_kb(k, "AnonPages") == anon0
    assert meminfo_kb(k, "PageTables") == pt0
    # the pgd (2 pages with PTI) stays until __mmdrop
    assert mm.pgd is not None and mm.pgd.pfn == pgd_pfn
    assert int(k.memmap.refcount[pgd_pfn]) == 1
    no_bug_lines(k)
    check4(k)
    k.check()

    u = k.spawn("u")
    u.touch(STACK_PAGE, write=True)
    assert mm.freed
    assert idle(k).active_mm is None
    for pfn in (pgd_pfn, pgd_pfn + 1):
        assert int(k.memmap.refcount[pfn]) == 0
        assert pfn not in k.pgt.tables
    no_bug_lines(k)
    check4(k)
    k.check()


# ---------------------------------------------------------------- scenario 7
def test_active_mm_s7_lazy_only_address_space_two_cpus():
    k = boot(cpus=2)
    t = k.spawn("a")
    A = map_a(t)
    t.touch(A, write=True)
    mm = t.mm
    k.run(1)
    assert idle(k, 0).active_mm is mm and mm.mm_count == 2
    check4(k)
    k.check()
    t.set_cpu(1)
    t.exit()
    assert mm.mm_users == 0 and mm.mm_count == 2
    assert idle(k, 0).active_mm is mm and idle(k, 1).active_mm is mm
    # CPU0 got the exit_mmap shootdown (tables were freed): it left the mm
    assert k.sched.cpus[0].loaded_mm is k.init_mm
    assert not mm.freed
    check4(k)
    k.check()

    u = k.spawn("u")
    u.set_cpu(1)
    u.touch(STACK_PAGE, write=True)
    assert k.sched.cpus[1].curr is u
    assert mm.mm_count == 1 and not mm.freed
    assert idle(k, 0).active_mm is mm and idle(k, 1).active_mm is None
    check4(k)
    k.check()

    v = k.spawn("v")
    v.touch(STACK_PAGE, write=True)
    assert k.sched.cpus[0].curr is v
    assert mm.freed
    no_bug_lines(k)
    check4(k)
    k.check()


# ---------------------------------------------------------------- scenario 8
def test_active_mm_s8_get_task_mm_keeps_address_space():
    k = boot()
    t = k.spawn("a")
    A = map_a(t)
    anon_pre = meminfo_kb(k, "AnonPages")
    t.touch(A, write=True)
    anon1 = meminfo_kb(k, "AnonPages")
    assert anon1 == anon_pre + 4
    m = k.get_task_mm(t)
    assert m is t.mm and m.mm_users == 2 and m.mm_count == 1
    k.check()
    t.exit()
    assert m.mm_users == 1
    assert m.vmas and m.rss_stat[1] == 1
    assert meminfo_kb(k, "AnonPages") == anon1
    assert m.mm_count == 2  # the users' reference + swapper/0 lazy
    assert idle(k).active_mm is m
    check4(k)
    k.check()
    k.mmput(m)  # exit_mmap in the caller's context
    assert m.mm_users == 0 and m.mm_count == 1
    assert m.vmas == [] and m.pgtables_bytes == 0
    assert meminfo_kb(k, "AnonPages") == anon_pre
    assert not m.freed
    check4(k)
    k.check()
    u = k.spawn("u")
    u.touch(STACK_PAGE, write=True)
    assert m.freed
    no_bug_lines(k)
    k.check()


# ---------------------------------------------------------------- scenario 10
@pytest.mark.parametrize("name", ["kswapd0", "kthreadd"])
def test_active_mm_s10_kernel_threads_have_no_mm(name):
    k = boot()
    kt = k.sched.kthreads[name]
    if name == "kthreadd":
        assert kt.pid == 2
    assert k.get_task_mm(kt) is None
    status = k.read_file(f"/proc/{kt.pid}/status")
    assert status.startswith(f"Name:\t{name}\n")
    assert not [ln for ln in status.splitlines() if ln.startswith(("Vm", "Rss"))]
    assert k.read_file(f"/proc/{kt.pid}/maps") == ""
    assert k.read_file(f"/proc/{kt.pid}/statm") == "0 0 0 0 0 0 0\n"
    with pytest.raises(linmm.errors.ESRCH):
        k.read_file(f"/proc/{kt.pid}/smaps_rollup")
    k.check()


# ---------------------------------------------------------------- counts: grab/drop, misuse
def test_active_mm_mmgrab_mmdrop_counts():
    k = boot()
    t = k.spawn("a")
    t.touch(STACK_PAGE, write=True)
    mm = t.mm
    k.mmgrab(mm)
    assert mm.mm_count == 2 and mm.mm_users == 1
    k.mmgrab(mm)
    assert mm.mm_count == 3
    k.mmdrop(mm)
    k.mmdrop(mm)
    assert mm.mm_count == 1 and not mm.freed
    k.check()
    assert k.mmget_not_zero(mm) is True
    assert mm.mm_users == 2
    k.mmput(mm)
    assert mm.mm_users == 1 and mm.vmas
    k.check()


def test_active_mm_s14_misuse_and_use_after_free():
    k = boot()
    t = k.spawn("a")
    t.touch(STACK_PAGE, write=True)
    m = k.get_task_mm(t)
    pid = t.pid
    t.exit()
    k.mmput(m)
    assert m.mm_users == 0 and m.mm_count == 1 and not m.freed  # swapper/0 lazy
    k.check()

    # mmget on mm_users 0 is a bug (callers must use mmget_not_zero)
    with pytest.raises(linmm.KernelBug):
        k.mmget(m)
    assert m.mm_users == 0 and m.mm_count == 1
    k.check()
    assert k.mmget_not_zero(m) is False
    assert m.mm_users == 0
    # mmput of 0
    with pytest.raises(linmm.KernelBug) as ei:
        k.mmput(m)
    assert "mm_users underflow" in str(ei.value)
    assert m.mm_users == 0 and m.mm_count == 1 and not m.freed
    k.check()

    u = k.spawn("u")
    u.touch(STACK_PAGE, write=True)
    assert m.freed
    k.check()
    # every count operation on the freed mm is a use-after-free naming op and old owner
    for op in ("mmgrab", "mmdrop", "mmget", "mmput"):
        with pytest.raises(linmm.KernelBug) as ei:
            getattr(k, op)(m)
        msg = str(ei.value)
        assert op in msg and str(pid) in msg, msg
        assert m.mm_count == 0 and m.mm_users == 0
        k.check()
    with pytest.raises(linmm.KernelBug):
        k.mmget_not_zero(m)
    no_bug_lines(k)
    k.check()


def test_active_mm_check2_mmdrop_runs_once_per_mm():
    k = boot(trace_mm=True)

    def drops():
        return [ln for ln in k.dmesg().splitlines() if "__mmdrop" in ln]

    t = k.spawn("a")
    t.touch(STACK_PAGE, write=True)
    c = t.fork()
    c.touch(STACK_PAGE, write=True)
    tm, cm = t.mm, c.mm
    t.exit()
    assert drops() == [] and not tm.freed
    c.exit()  # c on CPU0: swapper/0's lazy t.mm goes at the switch to c
    assert tm.freed and not cm.freed
    assert len(drops()) == 1
    u = k.spawn("u")
    u.touch(STACK_PAGE, write=True)
    assert cm.freed
    assert len(drops()) == 2
    no_bug_lines(k)
    k.check()


# ---------------------------------------------------------------- scenario 15 (seeded)
@pytest.mark.parametrize("seed", range(6))
def test_active_mm_s15_random_sequences_keep_counts(seed):
    """Random spawn/fork/touch/exit/get_task_mm/mmput/run/set_cpu on cpus=4; the test's
    own ledger (check 1) and check 4 after every step; every mm freed exactly once."""
    rng = random.Random(seed)
    k = boot(ram="256M", cpus=4)
    live: list = []
    held: list = []  # mms the test holds through get_task_mm
    every_mm: list = []

    def ledger():
        mms = {id(m): m for m in every_mm if not m.freed}
        ctxs = list(k.tasks.values()) + [c.idle for c in k.sched.cpus]
        for key, m in mms.items():
            users = sum(1 for c in ctxs if c.mm is m) + sum(1 for h in held if h is m)
            lazy = sum(1 for c in ctxs if c.mm is None and c.active_mm is m)
            lazy += sum(1 for c in k.sched.cpus if c.prev_mm is m)
            assert m.mm_users == users, (m, m.mm_users, users)
            assert m.mm_count == (1 if users else 0) + lazy, (m, m.mm_count, users, lazy)
        for m in every_mm:
            if m.freed:
                assert not any(c.active_mm is m or c.mm is m for c in ctxs)
                assert not any(c.loaded_mm is m or c.prev_mm is m for c in k.sched.cpus)

    def step_ok():
        ledger()
        check4(k)
        k.check()

    for _ in range(60):
        op = rng.choice(["spawn", "fork", "touch", "exit", "get", "put", "run", "cpu"])
        if op == "spawn" or not live:
            t = k.spawn("s")
            live.append(t)
            every_mm.append(t.mm)
        elif op == "fork":
            c = rng.choice(live).fork()
            live.append(c)
            every_mm.append(c.mm)
        elif op == "touch":
            rng.choice(live).touch(STACK_PAGE, write=True)
        elif op == "exit":
            t = live.pop(rng.randrange(len(live)))
            t.exit()
        elif op == "get":
            m = k.get_task_mm(rng.choice(live))
            held.append(m)
        elif op == "put" and held:
            k.mmput(held.pop(rng.randrange(len(held))))
        elif op == "run":
            k.run(rng.choice([1, 5]))
        elif op == "cpu":
            rng.choice(live).set_cpu(rng.randrange(4))
        step_ok()

    while held:
        k.mmput(held.pop())
        step_ok()
    while live:
        live.pop().exit()
        step_ok()
    finals = []
    for cpu in range(4):
        f = k.spawn("f")
        f.set_cpu(cpu)
        f.touch(STACK_PAGE, write=True)
        finals.append(f)
        step_ok()
    assert all(m.freed for m in every_mm)
    no_bug_lines(k)


def test_active_mm_s11_use_mm_from_a_kernel_thread():
    """active_mm.md scenario 11: a kthread borrows t.mm lazily, then use_mm/unuse_mm."""
    k = linmm.Kernel(linmm.MachineConfig(ram="256M"))
    t = k.spawn("t")
    A = t.mmap(0, 8192, linmm.PROT_READ | linmm.PROT_WRITE, linmm.MAP_PRIVATE | linmm.MAP_ANONYMOUS)
    t.touch(A, True)
    mm = t.mm
    assert (mm.mm_users, mm.mm_count) == (1, 1)
    seen = {}

    def kthread(k):
        ctx = k.current_ctx()
        seen["lazy"] = (ctx.active_mm is mm, mm.mm_count)
        k.mmget(mm)
        k.use_mm(mm)
        seen["use_mm"] = (ctx.mm is mm, mm.mm_users, mm.mm_count)
        k.copy_to_user(A, b"hi")
        k.unuse_mm(mm)
        seen["unuse_mm"] = (ctx.mm is None, ctx.active_mm is mm, mm.mm_count)
        k.mmput(mm)
        seen["mmput"] = mm.mm_users

    k.kthread_run(kthread, "K")
    k.run(1)
    assert seen == {"lazy": (True, 2), "use_mm": (True, 2, 2), "unuse_mm": (True, True, 2),
                    "mmput": 1}
    assert mm.mm_count == 2  # swapper/0 took the lazy reference when K slept
    assert t.read(A, 2) == b"hi"
    assert mm.mm_count == 1
    k.check()

    def no_mm(k):
        k.copy_to_user(A, b"x")

    k.kthread_run(no_mm, "K2")
    with pytest.raises(linmm.KernelBug, match="no mm"):
        k.run(1)


def test_active_mm_s9_open_proc_file_holds_mm_count():
    k = linmm.Kernel(linmm.MachineConfig(ram="256M"))
    t = k.spawn("t", reap=False)
    mm = t.mm
    f = k.open(f"/proc/{t.pid}/maps")
    assert (mm.mm_users, mm.mm_count) == (1, 2)
    t.exit()
    assert f.read() == ""
    assert "VmRSS" not in k.read_file(f"/proc/{t.pid}/status")
    other = k.spawn("u")
    other.touch(other.mm.vmas[0].vm_end - 8, True)  # a user switch drops the lazy reference
    assert mm.mm_count == 1 and not mm.freed
    f.close()
    assert mm.freed
    k.reap(t)
    with pytest.raises(linmm.errors.ENOENT):
        k.open(f"/proc/{t.pid}/maps")
    k.check()


def test_active_mm_s13_oom_victim_keeps_mm_struct_until_reaped():
    import numpy as np
    k = linmm.Kernel(linmm.MachineConfig(ram="128M"))
    t = k.spawn("hog", reap=False)
    a = t.mmap(0, 80 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    b = t.mmap(0, 20 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    mm = t.mm
    with pytest.raises(linmm.Signal):
        t.access(np.arange(a, a + (80 << 20), 4096, dtype=np.uint64), True)
        t.access(np.arange(b, b + (20 << 20), 4096, dtype=np.uint64), True)
    assert k.vm_events["oom_kill"] == 1
    other = k.spawn("u")
    other.touch(other.mm.vmas[0].vm_end - 8, True)  # the lazy reference goes
    assert (mm.mm_users, mm.mm_count) == (0, 1) and not mm.freed  # signal->oom_mm
    k.check()
    k.reap(t)
    assert not mm.freed  # mmdrop_async waits for the kworker
    k.run(1)
    assert mm.freed
    k.check()
