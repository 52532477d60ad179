"""mlock, mlock2, munlock, mlockall, munlockall and RLIMIT_MEMLOCK (unevictable-lru.md).

Compared: errnos, VmLck, and the end states Mlocked / Unevictable (meminfo, read
after LiveKernel.settle() so that per-CPU batches and vmstat differentials are
folded).  The unevictable_pgs_* event deltas are not compared: 5.18 rewrote
mlock and moves them at different points (unevictable-lru.md "Live-kernel
check")."""
from __future__ import annotations

from ..uapi import MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT, MLOCK_ONFAULT, PROT_NONE
from . import (PAGE, PRIV, RW, SHARED, meminfo, mincore_bits, minflt, outcome, pages, region,
               scenario, smaps_fields, status)

P = 100                              # pages (400 kB), as in unevictable-lru.md
PATTERN = bytes(range(256)) * 16


def _mu(k) -> tuple[int, int]:
    m = meminfo(k)
    return m["Mlocked"], m["Unevictable"]


@scenario()
def scenario_mlock_touched_then_munlock(k) -> dict:
    """mlock of 100 written pages: no fault, Mlocked and Unevictable +400 kB, VmLck 400 kB,
    smaps Locked 400 kB; munlock: all back."""
    t = k.spawn("mlock1")
    a = region(t, P)
    t.access(pages(a, P), True)
    m0, u0 = _mu(k)
    f0 = minflt(k, t)
    t.mlock(a, P * PAGE)
    f1 = minflt(k, t)
    m1, u1 = _mu(k)
    locked = {"VmLck_kB": status(k, t)["VmLck"], "smaps_Locked_kB": smaps_fields(k, t, a)["Locked"],
              "VmFlags_has_lo": "lo" in smaps_fields(k, t, a, ("VmFlags",))["VmFlags"]}
    t.munlock(a, P * PAGE)
    m2, u2 = _mu(k)
    return {"minflt_mlock": f1 - f0, "Mlocked_delta_kB": m1 - m0, "Unevictable_delta_kB": u1 - u0,
            **locked, "Mlocked_after_munlock_kB": m2 - m0, "Unevictable_after_munlock_kB": u2 - u0,
            "VmLck_after_munlock_kB": status(k, t)["VmLck"],
            "VmFlags_has_lo_after_munlock": "lo" in smaps_fields(k, t, a, ("VmFlags",))["VmFlags"]}


@scenario()
def scenario_mlock_populates(k) -> dict:
    """mlock of 100 untouched private pages faults them all in (100 faults, RssAnon +400 kB,
    mincore all 1), Mlocked +400 kB; munmap of the locked range: Mlocked, Unevictable and
    VmLck back to where they were."""
    t = k.spawn("mlock3")
    a = region(t, P)
    m0, u0 = _mu(k)
    s0, f0 = status(k, t), minflt(k, t)
    t.mlock(a, P * PAGE)
    f1, s1 = minflt(k, t), status(k, t)
    m1, _ = _mu(k)
    mc = mincore_bits(t, a, P)
    t.munmap(a, P * PAGE)
    m2, u2 = _mu(k)
    return {"minflt_mlock": f1 - f0, "RssAnon_delta_kB": s1["RssAnon"] - s0["RssAnon"],
            "VmLck_kB": s1["VmLck"] - s0["VmLck"], "Mlocked_delta_kB": m1 - m0,
            "mincore_all_1": mc == "1" * P, "Mlocked_after_munmap_kB": m2 - m0,
            "Unevictable_after_munmap_kB": u2 - u0,
            "VmLck_after_munmap_kB": status(k, t)["VmLck"] - s0["VmLck"]}


@scenario(expected_differences={
    "VmFlags": "changed after v5.7: v5.7 has no smaps mnemonic for VM_LOCKONFAULT and prints "
               "'??' for it; later kernels print 'lf'"})
def scenario_mlock2_onfault(k) -> dict:
    """mlock2(MLOCK_ONFAULT) of 100 untouched pages: VmLck +400 kB but nothing populated or
    mlocked; touching 10 pages: 10 faults, Mlocked +40 kB; munlock clears it."""
    t = k.spawn("onfault")
    a = region(t, P)
    m0, _ = _mu(k)
    s0, f0 = status(k, t), minflt(k, t)
    t.mlock2(a, P * PAGE, MLOCK_ONFAULT)
    f1, s1 = minflt(k, t), status(k, t)
    m1, _ = _mu(k)
    mc = mincore_bits(t, a, 12)
    t.access(pages(a, 10), True)
    f2 = minflt(k, t)
    m2, _ = _mu(k)
    flags = smaps_fields(k, t, a, ("VmFlags",))["VmFlags"]
    t.munlock(a, P * PAGE)
    m3, _ = _mu(k)
    return {"minflt_mlock2": f1 - f0, "VmLck_kB": s1["VmLck"] - s0["VmLck"],
            "Mlocked_delta_kB": m1 - m0, "mincore_first12": mc, "minflt_touch10": f2 - f1,
            "Mlocked_after_touch_kB": m2 - m0, "VmFlags": [f for f in flags if f != "sd"],
            "Mlocked_after_munlock_kB": m3 - m0,
            "VmLck_after_munlock_kB": status(k, t)["VmLck"] - s0["VmLck"]}


@scenario(needs_root=True)
def scenario_mlock_rlimit_errnos(k) -> dict:
    """Non-root task with RLIMIT_MEMLOCK 64 KiB (16 pages): mlock of 20 pages -> ENOMEM with
    nothing locked; 16 pages OK; the same 16 again OK; one more page elsewhere -> ENOMEM;
    RLIMIT_MEMLOCK 0 -> EPERM; mlock2 with an unknown flag -> EINVAL; mlockall(MCL_ONFAULT)
    and mlockall(0) -> EINVAL."""
    t = k.spawn("mlock5", uid=1000)
    t.setrlimit("RLIMIT_MEMLOCK", 64 << 10)
    a = region(t, 32)
    b = region(t, 4, at=64 * PAGE)
    out = {"mlock_20_pages": outcome(t.mlock, a, 20 * PAGE),
           "VmLck_after_refused_kB": status(k, t)["VmLck"],
           "mlock_16_pages": outcome(t.mlock, a, 16 * PAGE),
           "mlock_same_16_again": outcome(t.mlock, a, 16 * PAGE),
           "VmLck_kB": status(k, t)["VmLck"],
           "mlock_one_more_page": outcome(t.mlock, b, PAGE),
           "mlock_unaligned_within": outcome(t.mlock, a + 100, 200),
           "mlock2_unknown_flag": outcome(t.mlock2, b, PAGE, 2),
           "mlockall_onfault_only": outcome(t.mlockall, MCL_ONFAULT),
           "mlockall_0": outcome(t.mlockall, 0),
           "munlock_all_16": outcome(t.munlock, a, 16 * PAGE)}
    t.setrlimit("RLIMIT_MEMLOCK", 0)
    out["mlock_with_rlimit_0"] = outcome(t.mlock, b, PAGE)
    out["munlock_with_rlimit_0"] = outcome(t.munlock, b, PAGE)
    return out


@scenario(expected_differences={
    "Mlocked_after_refused_mlock_kB":
        "changed after v5.7: since the 5.18 mlock rewrite mlock_fixup() mlocks the pages "
        "already present when it sets VM_LOCKED (mlock_vma_pages_range); v5.7 only sets "
        "VM_LOCKED and leaves the pages to __mm_populate, which the ENOMEM skips"})
def scenario_mlock_gap_enomem(k) -> dict:
    """VMAs [A, A+8p) and [A+12p, A+20p), all touched: mlock(A, 20p) -> ENOMEM after locking
    the first VMA (VmLck +32 kB); munlock(A, 20p) -> ENOMEM after unlocking it again."""
    t = k.spawn("gap")
    a = region(t, 8)
    region(t, 8, at=12 * PAGE)
    t.access(pages(a, 8), True)
    t.access(pages(a + 12 * PAGE, 8), True)
    m0, _ = _mu(k)
    s0 = status(k, t)
    r1 = outcome(t.mlock, a, 20 * PAGE)
    s1 = status(k, t)
    m1, _ = _mu(k)
    flags = [smaps_fields(k, t, x, ("VmFlags",))["VmFlags"] for x in (a, a + 12 * PAGE)]
    r2 = outcome(t.munlock, a, 20 * PAGE)
    m2, _ = _mu(k)
    return {"mlock": r1, "VmLck_kB": s1["VmLck"] - s0["VmLck"],
            "locked_vmas": ["lo" in f for f in flags],
            "Mlocked_after_refused_mlock_kB": m1 - m0, "munlock": r2,
            "VmLck_after_munlock_kB": status(k, t)["VmLck"] - s0["VmLck"],
            "Mlocked_after_munlock_kB": m2 - m0}


@scenario()
def scenario_mlock_prot_none(k) -> dict:
    """mlock of 8 PROT_NONE pages -> ENOMEM (population fails) but VM_LOCKED is set (VmLck +32
    kB), nothing allocated; mmap(PROT_NONE, MAP_LOCKED) of 8 pages succeeds, VmLck +32 kB."""
    from ..uapi import MAP_LOCKED
    t = k.spawn("protnone")
    a = region(t, 8, PROT_NONE)
    s0 = status(k, t)
    r = outcome(t.mlock, a, 8 * PAGE)
    s1 = status(k, t)
    b = t.mmap(0, 8 * PAGE, PROT_NONE, PRIV | MAP_LOCKED)
    s2 = status(k, t)
    return {"mlock_prot_none": r, "VmLck_kB": s1["VmLck"] - s0["VmLck"],
            "RssAnon_kB": s1["RssAnon"] - s0["RssAnon"], "mincore": mincore_bits(t, a, 8),
            "map_locked_prot_none_VmLck_kB": s2["VmLck"] - s1["VmLck"],
            "map_locked_prot_none_mincore": mincore_bits(t, b, 8)}


@scenario()
def scenario_mlockall_future(k) -> dict:
    """mlockall(MCL_FUTURE) as root: VmLck unchanged at first; a later 10-page mmap is populated
    and mlocked at once (Mlocked +40 kB, VmLck +40 kB, 10 faults, mincore all 1); munlockall
    unlocks it again."""
    t = k.spawn("mlockall")
    m0, _ = _mu(k)
    s0 = status(k, t)
    t.mlockall(MCL_FUTURE)
    s1 = status(k, t)
    f0 = minflt(k, t)
    a = region(t, 10)
    f1 = minflt(k, t)
    s2 = status(k, t)
    m1, _ = _mu(k)
    mc = mincore_bits(t, a, 10)
    t.munlockall()
    s3 = status(k, t)
    m2, _ = _mu(k)
    b = region(t, 10, at=64 * PAGE)
    return {"VmLck_after_mlockall_kB": s1["VmLck"] - s0["VmLck"], "minflt_mmap": f1 - f0,
            "VmLck_after_mmap_kB": s2["VmLck"] - s0["VmLck"], "Mlocked_after_mmap_kB": m1 - m0,
            "mincore": mc, "VmLck_after_munlockall_kB": s3["VmLck"], "Mlocked_after_munlockall_kB": m2 - m0,
            "mmap_after_munlockall_mincore": mincore_bits(t, b, 10)}


@scenario(needs_root=True)
def scenario_mlockall_future_rlimit(k) -> dict:
    """Non-root, RLIMIT_MEMLOCK 64 KiB: mlockall(MCL_FUTURE) succeeds, then a 20-page mmap ->
    EAGAIN and a 4-page one is fine (locked); munlockall; mlockall(MCL_CURRENT) with a process
    bigger than the limit -> ENOMEM."""
    t = k.spawn("mlockall8", uid=1000)
    t.setrlimit("RLIMIT_MEMLOCK", 64 << 10)
    out = {"mlockall_future": outcome(t.mlockall, MCL_FUTURE)}
    out["mmap_20_pages"] = outcome(region, t, 20)
    out["mmap_4_pages"] = outcome(region, t, 4, RW, PRIV, 64 * PAGE)
    out["VmLck_kB"] = status(k, t)["VmLck"]
    out["munlockall"] = outcome(t.munlockall)
    out["mmap_20_pages_after"] = outcome(region, t, 20, RW, PRIV, 128 * PAGE)
    region(t, 32, at=256 * PAGE)                      # 128 kB: more than the limit
    out["mlockall_current_over_limit"] = outcome(t.mlockall, MCL_CURRENT)
    out["VmLck_end_kB"] = status(k, t)["VmLck"]
    return out


@scenario()
def scenario_mlock_fork_then_parent_exits(k) -> dict:
    """Fork of a task with 100 mlocked pages: the child's VMA is not locked (VmLck 0, smaps Locked
    0) and Mlocked does not change; when the parent exits the pages, still mapped by the child,
    are munlocked (Mlocked -400 kB, Unevictable -400 kB) and the child's bytes are intact."""
    t = k.spawn("mlfork")
    a = region(t, P)
    t.write(a, PATTERN * P)
    t.mlock(a, P * PAGE)
    m0, u0 = _mu(k)
    c = t.fork()
    m1, u1 = _mu(k)
    child = {"child_VmLck_kB": status(k, c)["VmLck"],
             "child_smaps_Locked_kB": smaps_fields(k, c, a)["Locked"],
             "child_smaps_Rss_kB": smaps_fields(k, c, a)["Rss"]}
    t.exit()
    m2, u2 = _mu(k)
    return {"Mlocked_fork_delta_kB": m1 - m0, "Unevictable_fork_delta_kB": u1 - u0, **child,
            "Mlocked_after_parent_exit_kB": m2 - m0, "Unevictable_after_parent_exit_kB": u2 - u0,
            "child_data": c.read(a, P * PAGE) == PATTERN * P}


@scenario()
def scenario_mlock_cow_in_locked_vma(k) -> dict:
    """After fork (child unlocked) the parent writes one page of its mlocked VMA: one fault, the
    new copy is mlocked and the old page (now only the child's) is not: Mlocked unchanged;
    the parent sees its write, the child the old bytes."""
    t = k.spawn("mlcow")
    a = region(t, 16)
    t.write(a, PATTERN * 16)
    t.mlock(a, 16 * PAGE)
    c = t.fork()
    m0, u0 = _mu(k)
    f0 = minflt(k, t)
    t.write(a + 3 * PAGE, b"\xee" * 64)
    f1 = minflt(k, t)
    m1, u1 = _mu(k)
    return {"parent_minflt": f1 - f0, "Mlocked_delta_kB": m1 - m0, "Unevictable_delta_kB": u1 - u0,
            "parent_sees_write": t.read(a + 3 * PAGE, 64) == b"\xee" * 64,
            "child_sees_old": c.read(a + 3 * PAGE, 64) == PATTERN[:64],
            "parent_Locked_kB": smaps_fields(k, t, a)["Locked"]}


@scenario()
def scenario_mlock_shared_two_tasks(k) -> dict:
    """100 shared anonymous pages touched by the parent, fork, both mlock: the pages are mlocked
    once (Mlocked +400 kB); the parent's munlock leaves them mlocked (the child's VMA is still
    locked); the child's munlock releases them."""
    t = k.spawn("mlshared")
    a = region(t, P, RW, SHARED)
    t.access(pages(a, P), True)
    c = t.fork()
    m0, u0 = _mu(k)
    t.mlock(a, P * PAGE)
    m1, _ = _mu(k)
    c.mlock(a, P * PAGE)
    m2, u2 = _mu(k)
    t.munlock(a, P * PAGE)
    m3, u3 = _mu(k)
    c.munlock(a, P * PAGE)
    m4, u4 = _mu(k)
    return {"Mlocked_parent_lock_kB": m1 - m0, "Mlocked_both_locked_kB": m2 - m0,
            "Unevictable_both_locked_kB": u2 - u0, "Mlocked_after_parent_munlock_kB": m3 - m0,
            "Unevictable_after_parent_munlock_kB": u3 - u0, "Mlocked_after_both_munlock_kB": m4 - m0,
            "Unevictable_after_both_munlock_kB": u4 - u0}
