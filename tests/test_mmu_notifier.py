"""Acceptance scenarios 1-8, 11, 12 and 13 of spec/mmu_notifier.md.

Setup: t = k.spawn("a"); b = a 64 KiB private anonymous mapping at 0x700000000000, all 16
pages written.  Every interval subscriber calls set_seq(cur_seq) in its invalidate and
returns True unless stated.  Scenarios 1-6 are one chain (the sequence numbers carry on),
so each test replays the scenarios before it.

Not here: 7f (clear_refs), 9 (OOM reaper), 10 (KSM), 14 (test_hmm): see the report.
"""
from __future__ import annotations

import errno

import numpy as np
import pytest

import linmm
from linmm import (MADV_DONTNEED, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MMU_NOTIFY_CLEAR,
                   MMU_NOTIFY_PROTECTION_PAGE, MMU_NOTIFY_PROTECTION_VMA, MMU_NOTIFY_RELEASE,
                   MMU_NOTIFY_UNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_READ, PROT_WRITE,
                   MmuIntervalNotifier, MmuIntervalNotifierOps, MmuNotifier, MmuNotifierOps,
                   MmuNotifierRange)
from linmm.errors import WouldBlock
from linmm.mm.mmu_notifier import Recorder
from linmm.mm.pgtable import PTE

ULONG_MAX = 0xFFFFFFFFFFFFFFFF
BASE = 0x700000000000
STACK_START, STACK_END = 0x7FFFFFFDE000, 0x7FFFFFFFF000  # spawn's stack VMA
RW = PROT_READ | PROT_WRITE
ANON_FIXED = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
BLOCKABLE = 1
EAGAIN, EOVERFLOW = errno.EAGAIN, errno.EOVERFLOW


class Sub:
    """An interval subscriber that records (event, flags, start, end, cur_seq)."""

    def __init__(self, k, fail_when=None):
        self.k = k
        self.sub = MmuIntervalNotifier()
        self.calls: list[tuple] = []
        self.times: list[int] = []  # k.now_ms of each call
        self.fail_when = fail_when  # None, "nonblock" or "always"
        self.ops = MmuIntervalNotifierOps(invalidate=self._inv)

    def _inv(self, sub, rng, cur_seq):
        self.calls.append((rng.event, rng.flags, rng.start, rng.end, cur_seq))
        self.times.append(self.k.now_ms)
        blockable = bool(rng.flags & BLOCKABLE)
        if self.fail_when == "always" or (self.fail_when == "nonblock" and not blockable):
            return False  # could not take its lock: no set_seq
        sub.invalidate_seq = cur_seq  # mmu_interval_set_seq()
        return True

    def insert(self, mm, start, length):
        return self.k.mmu_interval_notifier_insert(self.sub, mm, start, length, self.ops)


def setup():
    k = linmm.Kernel(linmm.MachineConfig(ram="256M"))
    t = k.spawn("a")
    b = t.mmap(BASE, 0x10000, RW, ANON_FIXED)
    assert b == BASE
    t.write(b, bytes(range(256)) * 256)
    k.check()
    return k, t, b


def subs_of(t):
    return t.mm.notifier_subscriptions


def clear_range(t, start, end):
    return MmuNotifierRange(MMU_NOTIFY_CLEAR, 0, None, t.mm, start, end)


# ---------------------------------------------------------------- scenarios 1-6 (one chain)
def _s1(k, t, b):
    assert t.mm.notifier_subscriptions is None
    A = Sub(k)
    c0 = t.mm.mm_count
    assert A.insert(t.mm, b, 0x10000) == 0
    s = subs_of(t)
    assert s is not None
    assert s.invalidate_seq == 2 and s.has_itree and s.list == []
    assert A.sub.start == b and A.sub.last == b + 0xFFFF
    assert A.sub.invalidate_seq == 1
    assert A.sub.in_tree
    assert t.mm.mm_count == c0 + 1
    assert k.mmu_interval_read_begin(A.sub) == 1
    assert k.mmu_interval_read_retry(A.sub, 1) is False
    k.check()
    return A


def _s2(k, t, b, A):
    t.munmap(b + 0x1000, 0x1000)
    assert A.calls == [(MMU_NOTIFY_UNMAP, BLOCKABLE, b + 0x1000, b + 0x2000, 3)]
    s = subs_of(t)
    assert s.invalidate_seq == 4
    assert A.sub.invalidate_seq == 3
    assert s.active_invalidate_ranges == 0
    assert k.mmu_interval_read_retry(A.sub, 1) is True
    assert k.mmu_interval_read_begin(A.sub) == 3
    assert k.mmu_interval_read_retry(A.sub, 3) is False
    k.check()


def _s3(k, t, b, A):
    c = t.mmap(0x710000000000, 0x1000, RW, ANON_FIXED)
    assert c == 0x710000000000
    t.touch(c, write=True)
    n = len(A.calls)
    t.munmap(c, 0x1000)
    assert len(A.calls) == n
    s = subs_of(t)
    assert s.invalidate_seq == 4
    assert s.active_invalidate_ranges == 0
    k.check()


def _s4(k, t, b, A):
    s = subs_of(t)
    outer = clear_range(t, b, b + 0x1000)
    assert k.mmu_notifier_invalidate_range_start(outer) == 0
    assert A.calls[-1] == (MMU_NOTIFY_CLEAR, BLOCKABLE, b, b + 0x1000, 5)
    assert s.invalidate_seq == 5 and s.active_invalidate_ranges == 1
    Bs = Sub(k)
    assert Bs.insert(t.mm, b, 0x1000) == 0
    assert Bs.sub.deferred is True and Bs.sub.in_tree is False
    assert Bs.sub.invalidate_seq == 5
    with pytest.raises(WouldBlock):
        k.mmu_interval_read_begin(Bs.sub)
    n = len(A.calls)
    nested = clear_range(t, b, b + 0x1000)
    assert k.mmu_notifier_invalidate_range_start(nested) == 0
    assert A.calls[n:] == [(MMU_NOTIFY_CLEAR, BLOCKABLE, b, b + 0x1000, 5)]
    assert Bs.calls == []
    k.mmu_notifier_invalidate_range_end(nested)
    assert s.active_invalidate_ranges == 1 and s.invalidate_seq == 5
    assert Bs.sub.in_tree is False
    k.check()
    k.mmu_notifier_invalidate_range_end(outer)
    assert s.invalidate_seq == 6 and s.active_invalidate_ranges == 0
    assert Bs.sub.in_tree is True and Bs.sub.deferred is False
    assert k.mmu_interval_read_begin(Bs.sub) == 5
    assert k.mmu_interval_read_retry(Bs.sub, 5) is False
    k.check()
    return Bs


def _s5(k, t, b):
    s = subs_of(t)
    rng = clear_range(t, 0x740000000000, 0x740000001000)
    assert k.mmu_notifier_invalidate_range_start(rng) == 0
    assert s.invalidate_seq == 6 and s.active_invalidate_ranges == 1
    C = Sub(k)
    assert C.insert(t.mm, 0x720000000000, 0x1000) == 0
    assert s.invalidate_seq == 7
    assert C.sub.in_tree is True and C.sub.deferred is False
    assert C.sub.invalidate_seq == 7
    with pytest.raises(WouldBlock):
        k.mmu_interval_read_begin(C.sub)
    k.check()
    k.mmu_notifier_invalidate_range_end(rng)
    assert s.invalidate_seq == 8 and s.active_invalidate_ranges == 0
    assert k.mmu_interval_read_begin(C.sub) == 7
    assert C.calls == []
    k.check()
    return C


def _s6(k, t, b, A, Bs):
    s = subs_of(t)
    mm = t.mm
    # removal during an invalidation
    rng = clear_range(t, b, b + 0x1000)
    assert k.mmu_notifier_invalidate_range_start(rng) == 0
    assert s.invalidate_seq == 9
    assert A.calls[-1] == (MMU_NOTIFY_CLEAR, BLOCKABLE, b, b + 0x1000, 9)
    c0 = mm.mm_count
    k.mmu_interval_notifier_remove(A.sub)
    assert A.sub.in_tree is True  # queued
    assert mm.mm_count == c0
    n = len(A.calls)
    nested = clear_range(t, b, b + 0x1000)
    assert k.mmu_notifier_invalidate_range_start(nested) == 0
    assert A.calls[n:] == [(MMU_NOTIFY_CLEAR, BLOCKABLE, b, b + 0x1000, 9)]
    k.mmu_notifier_invalidate_range_end(nested)
    assert A.sub.in_tree is True
    k.check()
    k.mmu_notifier_invalidate_range_end(rng)
    assert s.invalidate_seq == 10
    assert A.sub.in_tree is False and A.sub not in s.itree
    assert mm.mm_count == c0 - 1
    k.check()
    # a pending insert removed before it entered the tree
    rng = clear_range(t, b, b + 0x1000)
    assert k.mmu_notifier_invalidate_range_start(rng) == 0
    assert s.invalidate_seq == 11
    c1 = mm.mm_count
    D = Sub(k)
    assert D.insert(mm, b, 0x1000) == 0
    assert D.sub.deferred is True and D.sub.in_tree is False
    assert mm.mm_count == c1 + 1
    k.mmu_interval_notifier_remove(D.sub)
    assert D.sub.deferred is False
    assert mm.mm_count == c1
    k.check()
    k.mmu_notifier_invalidate_range_end(rng)
    assert s.invalidate_seq == 12
    assert D.sub.in_tree is False and D.sub not in s.itree
    assert D.calls == []
    assert mm.mm_count == c1
    k.check()


def test_mmu_notifier_s1_first_interval_insert():
    k, t, b = setup()
    _s1(k, t, b)


def test_mmu_notifier_s2_munmap_invalidates_interval():
    k, t, b = setup()
    A = _s1(k, t, b)
    _s2(k, t, b, A)


def test_mmu_notifier_s3_non_overlapping_unmap_keeps_seq():
    k, t, b = setup()
    A = _s1(k, t, b)
    _s2(k, t, b, A)
    _s3(k, t, b, A)


def test_mmu_notifier_s4_deferred_insert():
    k, t, b = setup()
    A = _s1(k, t, b)
    _s2(k, t, b, A)
    _s3(k, t, b, A)
    _s4(k, t, b, A)


def test_mmu_notifier_s5_partial_exclusion_insert():
    k, t, b = setup()
    A = _s1(k, t, b)
    _s2(k, t, b, A)
    _s3(k, t, b, A)
    _s4(k, t, b, A)
    _s5(k, t, b)


def test_mmu_notifier_s6_removal_during_invalidation():
    k, t, b = setup()
    A = _s1(k, t, b)
    _s2(k, t, b, A)
    _s3(k, t, b, A)
    Bs = _s4(k, t, b, A)
    _s5(k, t, b)
    _s6(k, t, b, A, Bs)


# ---------------------------------------------------------------- scenario 7
def test_mmu_notifier_s7_event_table():
    k = linmm.Kernel(linmm.MachineConfig(ram="256M"))
    t2 = k.spawn("t2")
    b2 = t2.mmap(BASE, 0x10000, RW, ANON_FIXED)
    assert b2 == BASE
    t2.write(b2, b"\x5a" * 0x10000)
    rec = Recorder(k, t2.mm)
    k.check()

    def new_events(n0):
        """rec.log entries since n0 as (event, flags, start, end); cur_seq is 2k+1."""
        out = []
        for i, e in enumerate(rec.log[n0:], start=n0 + 1):
            assert e[4] == 2 * i + 1, f"event {i}: cur_seq {e[4]} != {2 * i + 1}"
            out.append(e[:4])
        return out

    # a. mprotect
    n = len(rec.log)
    t2.mprotect(b2, 0x2000, PROT_READ)
    assert new_events(n) == [(MMU_NOTIFY_PROTECTION_VMA, BLOCKABLE, b2, b2 + 0x2000)]
    k.check()
    # b. the same mprotect again: nothing
    n = len(rec.log)
    t2.mprotect(b2, 0x2000, PROT_READ)
    assert new_events(n) == []
    k.check()
    # c. fork: one PROTECTION_PAGE per copied COW VMA, in address order: b2's two VMAs and
    # the 132 KiB stack VMA (expand_downwards() ran anon_vma_prepare() on it, so
    # copy_page_range() copies it)
    n = len(rec.log)
    child = t2.fork()
    assert new_events(n) == [(MMU_NOTIFY_PROTECTION_PAGE, BLOCKABLE, b2, b2 + 0x2000),
                             (MMU_NOTIFY_PROTECTION_PAGE, BLOCKABLE, b2 + 0x2000, b2 + 0x10000),
                             (MMU_NOTIFY_PROTECTION_PAGE, BLOCKABLE, STACK_START, STACK_END)]
    assert child.mm.notifier_subscriptions is None
    k.check()
    # d. COW write: CLEAR of the page; classic order start, invalidate_range, change_pte, end
    classic = Recorder(k, t2.mm, interval=False)
    n = len(rec.log)
    a = b2 + 0x3000
    t2.touch(a, write=True)
    assert new_events(n) == [(MMU_NOTIFY_CLEAR, BLOCKABLE, a, a + 0x1000)]
    new_pte = int(k.pgt.lookup(t2.mm, a, PTE).entries[(a >> 12) & 511])
    assert classic.log == [("invalidate_range_start", (MMU_NOTIFY_CLEAR, a, a + 0x1000)),
                           ("invalidate_range", a, a + 0x1000),
                           ("change_pte", a, new_pte),
                           ("invalidate_range_end", (MMU_NOTIFY_CLEAR, a, a + 0x1000))]
    classic.close()
    k.check()
    # e. MADV_DONTNEED
    n = len(rec.log)
    t2.madvise(b2 + 0x4000, 0x2000, MADV_DONTNEED)
    assert new_events(n) == [(MMU_NOTIFY_CLEAR, BLOCKABLE, b2 + 0x4000, b2 + 0x6000)]
    k.check()
    # (f. clear_refs is left out)
    # g. mremap move: UNMAP from move_page_tables, then UNMAP from the munmap of the old range
    n = len(rec.log)
    assert t2.mremap(b2 + 0x8000, 0x2000, 0x2000, MREMAP_MAYMOVE | MREMAP_FIXED,
                     0x730000000000) == 0x730000000000
    assert new_events(n) == [(MMU_NOTIFY_UNMAP, BLOCKABLE, b2 + 0x8000, b2 + 0xA000)] * 2
    k.check()
    # h. munmap
    n = len(rec.log)
    t2.munmap(b2 + 0xC000, 0x1000)
    assert new_events(n) == [(MMU_NOTIFY_UNMAP, BLOCKABLE, b2 + 0xC000, b2 + 0xD000)]
    k.check()
    # i. exit: RELEASE then exit_mmap's UNMAP; a classic subscriber gets release once
    classic = Recorder(k, t2.mm, interval=False)
    mm = t2.mm
    n = len(rec.log)
    t2.exit()
    assert new_events(n) == [(MMU_NOTIFY_RELEASE, BLOCKABLE, 0, ULONG_MAX),
                             (MMU_NOTIFY_UNMAP, BLOCKABLE, 0, ULONG_MAX)]
    assert classic.log == [("release",)]
    k.check()
    child.touch(b2 + 0x4000, write=True)  # a user task on CPU0: the lazy reference goes
    assert not mm.freed
    assert mm.mm_count == 2  # the interval and the classic subscriber
    k.check()
    rec.close()
    assert not mm.freed
    classic.close()
    assert mm.freed
    assert classic.log == [("release",)]
    k.check()


# ---------------------------------------------------------------- scenario 9
def _oom_setup(fail_when):
    """Victim t: b (16 pages, N over its first page) and 120 MiB written at c, asleep in
    D state; a hog then faults in 150 MiB: the OOM killer picks t."""
    k, t, b = setup()
    N = Sub(k, fail_when=fail_when)
    assert N.insert(t.mm, b, 0x1000) == 0
    c = t.mmap(0, 120 << 20, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    t.access(np.arange(c, c + (120 << 20), 4096, dtype=np.uint64), True)
    t.sleep_uninterruptible()
    hog = k.spawn("hog")
    h = hog.mmap(0, 150 << 20, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    hog.access(np.arange(h, h + (150 << 20), 4096, dtype=np.uint64), True)
    return k, t, b, N, hog


def test_mmu_notifier_s9_oom_reaper_vs_locked_subscriber():
    k, t, b, N, hog = _oom_setup("nonblock")
    assert f"Out of memory: Killed process {t.pid} (a)" in k.dmesg()
    assert t.state == "D" and t.pending_kill  # asleep: it keeps its memory
    t0 = k.now_ms
    k.run(2000)
    unmaps = [c for c in N.calls if c[0] == MMU_NOTIFY_UNMAP]
    assert len(unmaps) == 10  # one failed non-blocking start per attempt
    assert all(flags == 0 and (s, e) == (b, b + 0x10000) for _, flags, s, e, _ in unmaps)
    # the first attempt ran while the hog's allocation waited, then HZ/10 apart
    assert N.times[-10:] == [t0 + 100 * i for i in range(10)]
    assert f"oom_reaper: unable to reap pid:{t.pid} (a)" in k.dmesg()
    assert "oom_reaper: reaped process" not in k.dmesg()
    mm = t.mm
    assert mm.flags >> 21 & 1  # MMF_OOM_SKIP
    assert mm.rss_stat[1] == 16  # N's VMA kept its 16 pages; the 120 MiB were reaped
    assert k.now_ms == t0 + 2000
    k.check()
    k.wake_up_process(t)  # the victim finally runs and dies
    assert t.state in ("Z", "X") and t.mm is None
    assert hog.state == "R"
    k.check()


def test_mmu_notifier_s9_oom_reaper_reaps_when_nothing_blocks():
    k, t, b, N, hog = _oom_setup(None)
    k.run(1000)
    log = k.dmesg()
    assert f"oom_reaper: reaped process {t.pid} (a), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB" in log
    assert "unable to reap" not in log
    assert [c[:4] for c in N.calls if c[0] == MMU_NOTIFY_UNMAP] == [(MMU_NOTIFY_UNMAP, 0, b, b + 0x10000)]
    assert t.mm.get_mm_rss() == 0 and t.mm.flags >> 21 & 1
    k.wake_up_process(t)
    k.check()


# ---------------------------------------------------------------- scenario 8
def test_mmu_notifier_s8_nonblocking_start():
    k, t, b = setup()
    N = Sub(k, fail_when="nonblock")
    M = Sub(k)
    assert N.insert(t.mm, b, 0x1000) == 0
    assert M.insert(t.mm, b + 0x1000, 0x1000) == 0
    starts = []
    ends = []
    C = MmuNotifier(MmuNotifierOps(
        invalidate_range_start=lambda mn, rng: starts.append((rng.start, rng.end)) or 0,
        invalidate_range_end=lambda mn, rng: ends.append((rng.start, rng.end))))
    assert k.mmu_notifier_register(C, t.mm) == 0
    s = subs_of(t)
    e = s.invalidate_seq
    assert e % 2 == 0 and s.active_invalidate_ranges == 0

    rng = clear_range(t, b, b + 0x2000)
    assert k.mmu_notifier_invalidate_range_start_nonblock(rng) == -EAGAIN
    assert s.invalidate_seq == e + 2 and s.active_invalidate_ranges == 0
    assert N.calls == [(MMU_NOTIFY_CLEAR, 0, b, b + 0x2000, e + 1)]
    assert M.calls == []  # mn_itree_invalidate stops at the first failure
    assert starts == [] and ends == []
    k.check()

    N.fail_when = "always"
    nlog = len(k.dmesg().splitlines())
    rng = clear_range(t, b, b + 0x2000)
    assert k.mmu_notifier_invalidate_range_start(rng) == 0
    new = k.dmesg().splitlines()[nlog:]
    assert any(ln.startswith("WARNING:") for ln in new), new
    assert N.calls[-1] == (MMU_NOTIFY_CLEAR, BLOCKABLE, b, b + 0x2000, e + 3)
    assert M.calls == [(MMU_NOTIFY_CLEAR, BLOCKABLE, b, b + 0x2000, e + 3)]
    assert starts == [(b, b + 0x2000)]
    assert s.active_invalidate_ranges == 1
    k.mmu_notifier_invalidate_range_end(rng)
    assert s.invalidate_seq == e + 4 and s.active_invalidate_ranges == 0
    assert ends == [(b, b + 0x2000)]
    k.check()


# ---------------------------------------------------------------- scenario 11
def test_mmu_notifier_s11_get_put():
    k, t, b = setup()
    mm = t.mm
    allocs, frees, releases = [], [], []

    def alloc_notifier(m):
        allocs.append(m)
        return MmuNotifier()

    ops = MmuNotifierOps(alloc_notifier=alloc_notifier, free_notifier=frees.append,
                         release=lambda mn, m: releases.append(mn))
    c0 = mm.mm_count
    mn = k.mmu_notifier_get(ops, mm)
    assert isinstance(mn, MmuNotifier)
    assert k.mmu_notifier_get(ops, mm) is mn
    assert mn.users == 2 and len(allocs) == 1 and allocs[0] is mm
    assert mm.mm_count == c0 + 1
    k.check()
    k.mmu_notifier_put(mn)
    assert mn.users == 1 and mn.hashed
    k.mmu_notifier_put(mn)
    assert not mn.hashed and mn not in subs_of(t).list
    assert frees == []
    assert mm.mm_count == c0 + 1
    k.check()
    k.mmu_notifier_synchronize()
    assert frees == [mn]
    assert mm.mm_count == c0
    assert releases == []
    k.check()

    # users already 0xFFFFFFFF -> -EOVERFLOW
    ops2 = MmuNotifierOps(alloc_notifier=lambda m: MmuNotifier(), free_notifier=frees.append)
    mn2 = k.mmu_notifier_get(ops2, mm)
    mn2.users = 0xFFFFFFFF
    assert k.mmu_notifier_get(ops2, mm) == -EOVERFLOW
    assert mn2.users == 0xFFFFFFFF
    mn2.users = 1
    k.mmu_notifier_put(mn2)
    k.mmu_notifier_synchronize()
    assert frees == [mn, mn2] and mm.mm_count == c0
    assert releases == []
    k.check()


# ---------------------------------------------------------------- scenario 12
def test_mmu_notifier_s12_insert_errors():
    k, t, b = setup()
    mm = t.mm
    c0 = mm.mm_count
    X = Sub(k)
    assert X.insert(mm, b, 0) == -EOVERFLOW
    assert mm.mm_count == c0
    assert not X.sub.in_tree
    # the implicit mmu_notifier_register(NULL, mm) ran first and succeeded: it stays
    s = mm.notifier_subscriptions
    assert s is not None and s.has_itree and s.list == [] and s.itree == []
    k.check()
    Y = Sub(k)
    assert Y.insert(mm, 0xFFFFFFFFFFFFF000, 0x2000) == -EOVERFLOW
    assert mm.mm_count == c0
    assert not Y.sub.in_tree
    k.check()

    # register on an mm whose mm_users is 0 (kept alive lazily by swapper/0 after exit)
    t.exit()
    assert mm.mm_users == 0 and not mm.freed
    c1 = mm.mm_count
    subs_before = mm.notifier_subscriptions
    mn = MmuNotifier(MmuNotifierOps())
    with pytest.raises(linmm.KernelBug):
        k.mmu_notifier_register(mn, mm)
    assert mm.mm_count == c1
    assert mm.notifier_subscriptions is subs_before
    assert mn.mm is None and not mn.hashed
    k.check()


# ---------------------------------------------------------------- scenario 13
def test_mmu_notifier_s13_case_a_invalidate_range_before_free():
    k, t, b = setup()
    mm = t.mm
    pte = int(k.pgt.lookup(mm, b, PTE).entries[(b >> 12) & 511])
    pfn = (pte >> 12) & ((1 << 40) - 1)
    device_tlb = {b: pfn}  # an ATS TLB caching b's translation
    seen = []

    def invalidate_range(mn, m, start, end):
        for va in [va for va in device_tlb if start <= va < end]:
            seen.append((va, int(k.memmap.refcount[device_tlb[va]])))
            del device_tlb[va]

    mn = MmuNotifier(MmuNotifierOps(invalidate_range=invalidate_range))
    assert k.mmu_notifier_register(mn, mm) == 0
    assert int(k.memmap.refcount[pfn]) >= 1
    t.munmap(b, 0x1000)
    assert len(seen) == 1
    va, ref = seen[0]
    assert va == b and ref >= 1, "invalidate_range came after the page was freed"
    assert int(k.memmap.refcount[pfn]) == 0  # the page is freed now
    assert device_tlb.get(b) is None  # device lookup: no translation
    k.check()
    k.mmu_notifier_unregister(mn, mm)
    k.check()


# ---------------------------------------------------------------- scenario 14
def test_mmu_notifier_s14_test_hmm_as_an_observer():
    """dmirror0 READs of 16 written pages: it faults (hmm_range_fault) again exactly
    after an invalidation of its interval."""
    from linmm import MADV_DONTNEED, PROT_READ
    from linmm.hmm import TestHmm
    k, t, b = setup()
    a = t.mmap(0, 16 * 0x1000, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    data = b"".join(bytes([i + 1]) * 0x1000 for i in range(16))
    t.write(a, data)
    dev0 = TestHmm(k).devices[0]

    def read():
        r = dev0.read(t, a, 16)
        assert r.cpages == 16
        return r

    r = read()
    assert r.faults == 1 and r.data == data
    assert read().faults == 0
    t.read(a, 16 * 0x1000)  # the CPU reads all 16
    assert read().faults == 0
    t.mprotect(a, 16 * 0x1000, RW)  # the same protection: no invalidation
    assert read().faults == 0
    t.mprotect(a, 16 * 0x1000, PROT_READ)
    assert read().faults == 1
    t.mprotect(a, 16 * 0x1000, RW)
    assert read().faults == 1
    c = t.fork()
    assert read().faults == 1  # fork write-protected the parent's PTEs
    t.madvise(a + 0x5000, 0x1000, MADV_DONTNEED)
    r = read()
    assert r.faults == 1 and r.data[0x5000:0x6000] == bytes(0x1000)
    k.write_file(f"/proc/{t.pid}/clear_refs", "4")
    assert read().faults == 1
    k.write_file(f"/proc/{t.pid}/clear_refs", "1")
    assert read().faults == 0
    c.exit()
    k.check()
