"""Overcommit modes, CommitLimit and Committed_AS (overcommit-accounting.md).

Committed_AS deltas are compared in MiB rounded to 16 MiB, over mappings of 256 MiB
and more: the live value also moves with every other process on the host (and
the Python allocator of the controller), by a few MiB at most during a scenario.
The knobs are saved and restored by the backends (LiveKernel.write_file saves
first; the model is thrown away)."""
from __future__ import annotations

from ..uapi import MAP_NORESERVE, MREMAP_MAYMOVE, PROT_READ
from . import (GiB, MiB, PAGE, PRIV, RW, SHARED, meminfo, outcome, scenario, sysctl)


QUANTUM_MIB = 16


def committed_kb(k) -> int:
    return meminfo(k)["Committed_AS"]


def mib(delta_kb: int) -> int:
    """A Committed_AS delta in MiB, rounded to 16 MiB (host noise)."""
    return round(delta_kb / 1024 / QUANTUM_MIB) * QUANTUM_MIB


def _total_kb(k) -> int:
    m = meminfo(k)
    return m["MemTotal"] + m["SwapTotal"]


@scenario(needs_root=True)
def scenario_overcommit_mode0_boundary(k) -> dict:
    """Mode 0 single-request rule (exact): an anonymous private RW mmap of (MemTotal +
    SwapTotal) kB succeeds, one page more fails with ENOMEM; MAP_NORESERVE of the larger size
    succeeds (not accounted); a PROT_READ mapping is not accounted either."""
    sysctl(k, "overcommit_memory", 0)
    t = k.spawn("mode0")
    total = _total_kb(k) * 1024
    out = {"exact_total": outcome(t.mmap, 0, total, RW, PRIV),
           "total_plus_one_page": outcome(t.mmap, 0, total + PAGE, RW, PRIV),
           "total_plus_one_page_noreserve": outcome(t.mmap, 0, total + PAGE, RW, PRIV | MAP_NORESERVE),
           "total_plus_one_page_readonly": outcome(t.mmap, 0, total + PAGE, PROT_READ, PRIV),
           "twice_total_shared": outcome(t.mmap, 0, 2 * total, RW, SHARED)}
    return out


@scenario(needs_root=True)
def scenario_overcommit_mode1_always(k) -> dict:
    """Mode 1: even four times (MemTotal + SwapTotal) is granted; back in mode 0 the same
    request fails with ENOMEM.  Committed_AS still counts the granted mapping."""
    t = k.spawn("mode1")
    total = _total_kb(k) * 1024
    before = sysctl(k, "overcommit_memory", 1)
    c0 = meminfo(k)["Committed_AS"]
    a = None
    try:
        a = t.mmap(0, 4 * total, RW, PRIV)
        res = "ok"
    except Exception as e:                          # noqa: BLE001
        res = type(e).__name__
    grew = abs((meminfo(k)["Committed_AS"] - c0) * 1024 - 4 * total) < 64 * MiB
    if a is not None:
        t.munmap(a, 4 * total)
    sysctl(k, "overcommit_memory", 0)
    return {"mode_read_back": before, "four_times_total_mode1": res,
            "Committed_AS_grew_by_the_mapping": grew,
            "four_times_total_mode0": outcome(t.mmap, 0, 4 * total, RW, PRIV)}


@scenario(needs_root=True)
def scenario_overcommit_mode2_limit(k) -> dict:
    """Mode 2: a private RW request larger than CommitLimit - Committed_AS (+64 MiB margin for
    the reserves and host noise) fails with ENOMEM, a 64 MiB one succeeds, MAP_NORESERVE is
    accounted anyway (ENOMEM), PROT_READ is not accounted.  If the host is close to its limit,
    overcommit_kbytes is raised first so that nothing else on the machine starves."""
    m = meminfo(k)
    raised = False
    if m["CommitLimit"] - m["Committed_AS"] < 2 * 1024 * 1024:
        sysctl(k, "overcommit_kbytes", m["Committed_AS"] + 4 * 1024 * 1024 - m["SwapTotal"])
        raised = True
    t = k.spawn("mode2")
    sysctl(k, "overcommit_memory", 2)
    try:
        m = meminfo(k)
        room = (m["CommitLimit"] - m["Committed_AS"]) * 1024
        over = (room + 64 * MiB) & ~(PAGE - 1)
        out = {"over_limit": outcome(t.mmap, 0, over, RW, PRIV),
               "over_limit_noreserve": outcome(t.mmap, 0, over, RW, PRIV | MAP_NORESERVE),
               "over_limit_readonly": outcome(t.mmap, 0, over, PROT_READ, PRIV),
               "over_limit_shared": outcome(t.mmap, 0, over, RW, SHARED),
               "small": outcome(t.mmap, 0, 64 * MiB, RW, PRIV)}
    finally:
        sysctl(k, "overcommit_memory", 0)
    del raised
    return out


@scenario(needs_root=True)
def scenario_commit_limit_formula(k) -> dict:
    """CommitLimit = (MemTotal - Hugetlb) * overcommit_ratio / 100 + SwapTotal (pages), for
    ratios 50, 25 and 80; with overcommit_kbytes set it is kbytes + SwapTotal; writing one of
    the two knobs zeroes the other."""
    out = {}
    for ratio in (50, 25, 80):
        sysctl(k, "overcommit_ratio", ratio)
        m = meminfo(k)
        pages = (m["MemTotal"] - m.get("Hugetlb", 0)) // 4
        want = (pages * ratio // 100) * 4 + m["SwapTotal"]
        out[f"ratio_{ratio}_matches"] = m["CommitLimit"] == want
    kbytes = 3 * 1024 * 1024 + 4
    out["kbytes_read_back"] = sysctl(k, "overcommit_kbytes", kbytes) == kbytes
    out["ratio_after_kbytes_write"] = sysctl(k, "overcommit_ratio")
    m = meminfo(k)
    out["kbytes_matches"] = m["CommitLimit"] == (kbytes // 4) * 4 + m["SwapTotal"]
    sysctl(k, "overcommit_ratio", 50)
    out["kbytes_after_ratio_write"] = sysctl(k, "overcommit_kbytes")
    return out


@scenario(needs_root=True)
def scenario_sysctl_write_errnos(k) -> dict:
    """Bad values for the overcommit knobs are refused with EINVAL and leave the value alone;
    every value touched is restored afterwards."""
    from . import write_outcome
    before = sysctl(k, "overcommit_memory")
    return {"overcommit_memory_3": write_outcome(k, "/proc/sys/vm/overcommit_memory", "3\n"),
            "overcommit_memory_minus_1": write_outcome(k, "/proc/sys/vm/overcommit_memory", "-1\n"),
            "overcommit_memory_text": write_outcome(k, "/proc/sys/vm/overcommit_memory", "abc\n"),
            "unchanged": sysctl(k, "overcommit_memory") == before,
            "min_free_kbytes_negative": write_outcome(k, "/proc/sys/vm/min_free_kbytes", "-1\n"),
            "overcommit_kbytes_text": write_outcome(k, "/proc/sys/vm/overcommit_kbytes", "x\n")}


UNACCOUNT = ("changed after v5.7: about 6.5 ('mm/mprotect: allow unfaulted VMAs to be unaccounted "
             "on mprotect()') mprotect() drops VM_ACCOUNT and the charge when a private anonymous "
             "mapping that never faulted (no anon_vma) becomes read-only; v5.7 keeps the charge "
             "until munmap")


@scenario(needs_root=True, expected_differences={"mprotect_ro_again": UNACCOUNT,
                                                 "munmap_readonly": UNACCOUNT})
def scenario_committed_as_accounting(k) -> dict:
    """Committed_AS deltas (MiB) in mode 0: private RW 1 GiB +1024; PROT_READ private +0 until
    mprotect(RW) +1024, and back to PROT_READ keeps the charge (v5.7) until munmap; with a
    page touched first the charge stays on every kernel; MAP_NORESERVE +0; shared anonymous
    +1024 at mmap; munmap gives it back; a partial munmap of 256 MiB gives back 256."""
    sysctl(k, "overcommit_memory", 0)
    t = k.spawn("commit")
    out = {}

    def step(name, fn, *args):
        c0 = committed_kb(k)
        r = fn(*args)
        out[name] = mib(committed_kb(k) - c0)
        return r
    a = step("private_rw", t.mmap, 0, GiB, RW, PRIV)
    step("partial_munmap_256M", t.munmap, a, 256 * MiB)
    step("munmap_rest", t.munmap, a + 256 * MiB, 768 * MiB)
    b = step("private_readonly", t.mmap, 0, GiB, PROT_READ, PRIV)
    step("mprotect_rw", t.mprotect, b, GiB, RW)
    step("mprotect_ro_again", t.mprotect, b, GiB, PROT_READ)
    step("munmap_readonly", t.munmap, b, GiB)
    e = step("private_rw_touched", t.mmap, 0, GiB, RW, PRIV)
    t.touch(e + 5 * PAGE, True)
    step("touched_mprotect_ro", t.mprotect, e, GiB, PROT_READ)
    step("touched_munmap", t.munmap, e, GiB)
    c = step("noreserve", t.mmap, 0, GiB, RW, PRIV | MAP_NORESERVE)
    step("munmap_noreserve", t.munmap, c, GiB)
    d = step("shared", t.mmap, 0, GiB, RW, SHARED)
    step("munmap_shared", t.munmap, d, GiB)
    return out


@scenario(needs_root=True)
def scenario_committed_as_fork_and_mremap(k) -> dict:
    """A forked child holds its own charge for an inherited 1 GiB private mapping: its munmap
    gives back 1024 MiB while the parent keeps its own; mremap growth of a private mapping
    from 256 to 512 MiB charges 256 MiB, shrinking back returns it."""
    sysctl(k, "overcommit_memory", 0)
    t = k.spawn("commitf")
    a = t.mmap(0, GiB, RW, PRIV)
    c = t.fork()
    c0 = committed_kb(k)
    c.munmap(a, GiB)
    child_unmap = mib(committed_kb(k) - c0)
    c0 = committed_kb(k)
    t.munmap(a, GiB)
    parent_unmap = mib(committed_kb(k) - c0)
    b = t.mmap(0, 512 * MiB, RW, PRIV)
    t.munmap(b + 256 * MiB, 256 * MiB)
    c0 = committed_kb(k)
    r = t.mremap(b, 256 * MiB, 512 * MiB, MREMAP_MAYMOVE)
    grow = mib(committed_kb(k) - c0)
    c0 = committed_kb(k)
    t.mremap(r, 512 * MiB, 256 * MiB)
    shrink = mib(committed_kb(k) - c0)
    return {"child_munmap": child_unmap, "parent_munmap": parent_unmap,
            "mremap_grow": grow, "mremap_shrink": shrink}
