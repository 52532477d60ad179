"""Anonymous faults, fork COW, madvise effects, mremap moves, signals."""
from __future__ import annotations

from ..uapi import (MADV_DONTFORK, MADV_DONTNEED, MADV_FREE, MADV_WIPEONFORK, MAP_POPULATE,
                    MREMAP_FIXED, MREMAP_MAYMOVE, PROT_NONE, PROT_READ)
from . import (GiB, PAGE, RW, SHARED, minflt, mincore_bits, pagemap, pm_flags, pages, region,
               scenario, signal_of, smaps_fields, status)

PATTERN = bytes(range(256)) * 16          # one page


@scenario()
def scenario_anon_private_write_faults(k) -> dict:
    """64 first-touch writes to private anonymous memory: one minor fault each, RssAnon +256 kB;
    writing them again takes no fault."""
    t = k.spawn("anonw")
    a = region(t, 64)
    s0, f0 = status(k, t), minflt(k, t)
    t.access(pages(a, 64), True)
    f1, s1 = minflt(k, t), status(k, t)
    t.access(pages(a, 64), True)
    f2 = minflt(k, t)
    return {"minflt_first_writes": f1 - f0, "minflt_rewrites": f2 - f1,
            "RssAnon_delta_kB": s1["RssAnon"] - s0["RssAnon"],
            "VmRSS_delta_kB": s1["VmRSS"] - s0["VmRSS"],
            "mincore": mincore_bits(t, a, 64)}


@scenario()
def scenario_anon_read_zero_page_then_write(k) -> dict:
    """Reads of untouched private anonymous memory map the shared zero page (a fault each, no
    RSS, mincore 1, pagemap present but not exclusive); a later write to each page faults
    again (COW from the zero page) and allocates."""
    t = k.spawn("zero")
    a = region(t, 32)
    s0, f0 = status(k, t), minflt(k, t)
    t.access(pages(a, 32), False)
    f1, s1 = minflt(k, t), status(k, t)
    pm = pagemap(k, t, a, 32)
    zero_pfns = {v & ((1 << 55) - 1) for v in pm}
    obs = {"minflt_reads": f1 - f0, "RssAnon_after_reads_kB": s1["RssAnon"] - s0["RssAnon"],
           "mincore_after_reads": mincore_bits(t, a, 32),
           "pagemap_after_reads": sorted({pm_flags(v) for v in pm}),
           "one_zero_pfn_for_all": len(zero_pfns) == 1 and 0 not in zero_pfns,
           "smaps_Rss_after_reads_kB": smaps_fields(k, t, a)["Rss"]}
    t.access(pages(a, 32), True)
    f2, s2 = minflt(k, t), status(k, t)
    obs.update({"minflt_writes_after_reads": f2 - f1,
                "RssAnon_after_writes_kB": s2["RssAnon"] - s0["RssAnon"],
                "pagemap_after_writes": sorted({pm_flags(v) for v in pagemap(k, t, a, 32)}),
                "data_is_zero": t.read(a, 32 * PAGE) == bytes(32 * PAGE)})
    return obs


@scenario()
def scenario_anon_shared_write_faults(k) -> dict:
    """64 first-touch writes to MAP_SHARED|MAP_ANONYMOUS memory: one fault each (no fault-around
    on write faults), RssShmem +256 kB, RssAnon unchanged, meminfo Shmem +256 kB."""
    from . import meminfo
    t = k.spawn("shw")
    a = region(t, 64, RW, SHARED)
    s0, f0, m0 = status(k, t), minflt(k, t), meminfo(k)
    t.access(pages(a, 64), True)
    f1, s1, m1 = minflt(k, t), status(k, t), meminfo(k)
    return {"minflt": f1 - f0, "RssShmem_delta_kB": s1["RssShmem"] - s0["RssShmem"],
            "RssAnon_delta_kB": s1["RssAnon"] - s0["RssAnon"],
            "Shmem_delta_kB": m1["Shmem"] - m0["Shmem"],
            "mincore": mincore_bits(t, a, 64)}


@scenario()
def scenario_shmem_fault_around_after_fork(k) -> dict:
    """A child reading 64 shared anonymous pages the parent wrote: fork copies no PTEs of a
    shared mapping, and read faults map the cached neighbours (fault_around_bytes 64 KiB =
    16 pages): 4 faults; the child's mincore is 1 for pages it never mapped (page cache)."""
    t = k.spawn("fa")
    a = region(t, 64, RW, SHARED)
    t.write(a, PATTERN * 64)
    c = t.fork()
    before = mincore_bits(c, a, 64)
    rss0 = smaps_fields(k, c, a)["Rss"]
    f0 = minflt(k, c)
    c.access(pages(a, 64), False)
    f1 = minflt(k, c)
    c.access(pages(a, 64), False)
    f2 = minflt(k, c)
    sm = smaps_fields(k, c, a)
    return {"child_mincore_before_reading": before, "child_Rss_before_kB": rss0,
            "child_minflt_reads": f1 - f0, "child_minflt_rereads": f2 - f1,
            "child_Rss_after_kB": sm["Rss"], "child_Shared_Dirty_kB": sm["Shared_Dirty"],
            "child_sees_data": c.read(a + 5 * PAGE, PAGE) == PATTERN}


@scenario()
def scenario_fork_cow_child_writes(k) -> dict:
    """Fork with 32 written private pages: the child's reads take no fault (PTEs copied,
    write-protected), its writes take one COW fault each; the parent's pages go from
    Shared_Dirty (Pss halved) to Private_Dirty; the parent's own writes then fault once each
    (write-protected by fork) but copy nothing."""
    t = k.spawn("cowc")
    a = region(t, 32)
    t.write(a, PATTERN * 32)
    c = t.fork()
    after_fork = smaps_fields(k, t, a)
    f0 = minflt(k, c)
    c.access(pages(a, 32), False)
    f1 = minflt(k, c)
    c.access(pages(a, 32), True)
    f2 = minflt(k, c)
    parent_after = smaps_fields(k, t, a)
    child_after = smaps_fields(k, c, a)
    p0 = minflt(k, t)
    t.access(pages(a, 32), True)
    p1 = minflt(k, t)
    return {"parent_after_fork": after_fork, "child_minflt_reads": f1 - f0,
            "child_minflt_writes": f2 - f1, "parent_after_child_writes": parent_after,
            "child_after_writes": child_after, "parent_minflt_writes_after": p1 - p0,
            "child_data_intact": c.read(a, 32 * PAGE) == PATTERN * 32}


@scenario()
def scenario_fork_cow_parent_writes(k) -> dict:
    """The parent writes 16 of 32 shared COW pages after fork: 16 faults; the child still reads
    the old bytes; in the child's pagemap exactly those 16 pages became exclusive again."""
    t = k.spawn("cowp")
    a = region(t, 32)
    t.write(a, PATTERN * 32)
    c = t.fork()
    pm0 = [pm_flags(v) for v in pagemap(k, c, a, 32)]
    f0 = minflt(k, t)
    t.write(a, b"\xaa" * (16 * PAGE))
    f1 = minflt(k, t)
    pmc = [pm_flags(v) for v in pagemap(k, c, a, 32)]
    return {"child_pagemap_after_fork": sorted(set(pm0)), "parent_minflt": f1 - f0,
            "child_pagemap_first16": sorted(set(pmc[:16])), "child_pagemap_last16": sorted(set(pmc[16:])),
            "child_data": c.read(a, 32 * PAGE) == PATTERN * 32,
            "parent_data": t.read(a, 16 * PAGE) == b"\xaa" * (16 * PAGE)}


@scenario()
def scenario_fork_exit_restores_exclusive(k) -> dict:
    """pagemap PM_MMAP_EXCLUSIVE of a written page: set, cleared while a forked child maps it,
    set again after the child exits; the parent's smaps Shared_Dirty goes back to 0."""
    t = k.spawn("excl")
    a = region(t, 4)
    t.write(a, b"x" * (4 * PAGE))
    before = pm_flags(pagemap(k, t, a)[0])
    c = t.fork()
    during = pm_flags(pagemap(k, t, a)[0])
    shared = smaps_fields(k, t, a)["Shared_Dirty"]
    c.exit()
    after = pm_flags(pagemap(k, t, a)[0])
    return {"before_fork": before, "child_alive": during, "Shared_Dirty_child_alive_kB": shared,
            "after_child_exit": after, "Shared_Dirty_after_exit_kB": smaps_fields(k, t, a)["Shared_Dirty"]}


@scenario()
def scenario_madv_wipeonfork_and_dontfork(k) -> dict:
    """MADV_WIPEONFORK: the child sees zeros (empty PTEs: reads fault, map the zero page, Rss 0);
    MADV_DONTFORK: the region does not exist in the child (SIGSEGV/SEGV_MAPERR, the child dies)."""
    t = k.spawn("wipe")
    a = region(t, 8)
    b = region(t, 8, at=64 * PAGE)
    t.write(a, PATTERN * 8)
    t.write(b, PATTERN * 8)
    t.madvise(a, 8 * PAGE, MADV_WIPEONFORK)
    t.madvise(b, 8 * PAGE, MADV_DONTFORK)
    c = t.fork()
    rss0 = smaps_fields(k, c, a)["Rss"]
    f0 = minflt(k, c)
    zeros = c.read(a, 8 * PAGE) == bytes(8 * PAGE)
    f1 = minflt(k, c)
    sig = signal_of(c.touch, b + PAGE, False, base=b)
    return {"child_wiped_Rss_kB": rss0, "child_reads_zeros": zeros, "child_minflt_reads": f1 - f0,
            "child_touch_dontfork": sig,
            "parent_data_intact": t.read(a, 8 * PAGE) == PATTERN * 8 and t.read(b, 8 * PAGE) == PATTERN * 8}


@scenario()
def scenario_madv_dontneed_zeroes(k) -> dict:
    """MADV_DONTNEED on 16 written private pages: RSS drops by 64 kB, mincore 0, reads return
    zeros through 16 fresh (zero-page) faults."""
    t = k.spawn("dontneed")
    a = region(t, 16)
    t.write(a, PATTERN * 16)
    s0 = status(k, t)
    t.madvise(a + 4 * PAGE, 8 * PAGE, MADV_DONTNEED)
    s1 = status(k, t)
    mc = mincore_bits(t, a, 16)
    f0 = minflt(k, t)
    data = t.read(a, 16 * PAGE)
    f1 = minflt(k, t)
    return {"RssAnon_delta_kB": s1["RssAnon"] - s0["RssAnon"], "mincore": mc,
            "minflt_read_all": f1 - f0,
            "zeroed_part_is_zero": data[4 * PAGE:12 * PAGE] == bytes(8 * PAGE),
            "rest_intact": data[:4 * PAGE] == PATTERN * 4 and data[12 * PAGE:] == PATTERN * 4}


@scenario()
def scenario_madv_free_lazyfree(k) -> dict:
    """MADV_FREE on 16 written private pages (no memory pressure): smaps LazyFree 64 kB, the
    bytes stay and reading them takes no fault; rewriting 4 pages takes no fault and makes
    them dirty again (LazyFree 48 kB)."""
    t = k.spawn("free")
    a = region(t, 16)
    t.write(a, PATTERN * 16)
    t.madvise(a, 16 * PAGE, MADV_FREE)
    lf0 = smaps_fields(k, t, a)["LazyFree"]
    f0 = minflt(k, t)
    intact = t.read(a, 16 * PAGE) == PATTERN * 16
    f1 = minflt(k, t)
    t.access(pages(a, 4), True)
    f2 = minflt(k, t)
    lf1 = smaps_fields(k, t, a)["LazyFree"]
    return {"LazyFree_kB": lf0, "data_intact": intact, "minflt_reads": f1 - f0,
            "minflt_rewrite": f2 - f1, "LazyFree_after_rewrite_kB": lf1,
            "mincore": mincore_bits(t, a, 16)}


@scenario()
def scenario_map_populate(k) -> dict:
    """MAP_POPULATE of 64 private writable pages: populated at mmap (64 faults counted by
    get_user_pages, RssAnon +256 kB, mincore all 1); writes afterwards take no fault."""
    t = k.spawn("populate")
    s0, f0 = status(k, t), minflt(k, t)
    a = t.mmap(0, 64 * PAGE, RW, 0x22 | MAP_POPULATE)
    f1, s1 = minflt(k, t), status(k, t)
    mc = mincore_bits(t, a, 64)
    t.access(pages(a, 64), True)
    f2 = minflt(k, t)
    return {"minflt_mmap": f1 - f0, "RssAnon_delta_kB": s1["RssAnon"] - s0["RssAnon"],
            "mincore": mc, "minflt_writes_after": f2 - f1}


@scenario(expected_differences={
    "minflt_writes_after_mprotect_rw":
        "changed after v5.7: since 6.0 ('mm/mprotect: try avoiding write faults for exclusive "
        "anonymous pages when changing protection') mprotect() makes the PTEs of exclusive "
        "anonymous pages writable at once, v5.7 leaves them read-only so each "
        "first write takes a (reuse) fault"})
def scenario_mprotect_ro_rw_then_write(k) -> dict:
    """8 written pages, mprotect PROT_READ then PROT_READ|PROT_WRITE: the pages stay (RSS and
    bytes unchanged); v5.7 takes one write fault per page on the next writes."""
    t = k.spawn("mprw")
    a = region(t, 8)
    t.write(a, PATTERN * 8)
    s0 = status(k, t)
    t.mprotect(a, 8 * PAGE, PROT_READ)
    t.mprotect(a, 8 * PAGE, RW)
    s1 = status(k, t)
    f0 = minflt(k, t)
    t.access(pages(a, 8), True)
    f1 = minflt(k, t)
    return {"RssAnon_delta_kB": s1["RssAnon"] - s0["RssAnon"], "minflt_writes_after_mprotect_rw": f1 - f0,
            "data_intact": t.read(a, 8 * PAGE) == PATTERN * 8}


@scenario()
def scenario_mprotect_none_keeps_pages(k) -> dict:
    """PROT_NONE on 8 written pages keeps them resident (RssAnon unchanged, mincore 1);
    touching one is SIGSEGV/SEGV_ACCERR (in a forked child, which dies); PROT_READ|PROT_WRITE
    again: the bytes are intact."""
    t = k.spawn("mpnone")
    a = region(t, 8)
    t.write(a, PATTERN * 8)
    s0 = status(k, t)
    t.mprotect(a, 8 * PAGE, PROT_NONE)
    s1 = status(k, t)
    mc = mincore_bits(t, a, 8)
    c = t.fork()
    sig_read = signal_of(c.touch, a + 3 * PAGE, False, base=a)
    c2 = t.fork()
    sig_write = signal_of(c2.touch, a + 5 * PAGE + 7, True, base=a)
    t.mprotect(a, 8 * PAGE, RW)
    return {"RssAnon_delta_kB": s1["RssAnon"] - s0["RssAnon"], "mincore": mc,
            "read_prot_none": sig_read, "write_prot_none": sig_write,
            "data_intact": t.read(a, 8 * PAGE) == PATTERN * 8}


@scenario()
def scenario_sigsegv_codes(k) -> dict:
    """Fatal accesses (each in its own forked child): unmapped read/write -> SEGV_MAPERR,
    write to PROT_READ and read of PROT_NONE -> SEGV_ACCERR, si_addr the faulting byte; a
    read of PROT_READ memory is fine.  (A live task ends with the signal; a model task
    records it in t.signals and could go on, so scenarios do not use a task after one.)"""
    t = k.spawn("segv")
    a = region(t, 4, PROT_READ)
    b = region(t, 4, PROT_NONE, at=16 * PAGE)
    hole = a + 64 * PAGE
    out = {}
    for name, addr, write in (("unmapped_read", hole + 12, False), ("unmapped_write", hole, True),
                              ("write_prot_read", a + PAGE + 100, True),
                              ("read_prot_none", b + 2 * PAGE, False), ("read_prot_read", a, False)):
        c = t.fork()
        out[name] = signal_of(c.touch, addr, write, base=a)
        if c.state == "R":                         # no signal: the child is still there
            c.exit()
    return out


@scenario()
def scenario_mremap_move_keeps_pages(k) -> dict:
    """mremap(MREMAP_MAYMOVE|MREMAP_FIXED) of 8 written pages to BASE+1 GiB: the bytes follow,
    the PTEs move (no fault when touching them, RssAnon unchanged), the old range is gone
    (mincore ENOMEM, touching it SIGSEGV/SEGV_MAPERR in a forked child)."""
    from . import outcome
    t = k.spawn("mremap")
    a = region(t, 8)
    t.write(a, PATTERN * 8)
    s0 = status(k, t)
    b = t.mremap(a, 8 * PAGE, 8 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, a + GiB)
    s1 = status(k, t)
    f0 = minflt(k, t)
    t.access(pages(b, 8), True)
    f1 = minflt(k, t)
    c = t.fork()
    return {"new_address": f"BASE+{b - a:#x}", "RssAnon_delta_kB": s1["RssAnon"] - s0["RssAnon"],
            "minflt_touch_moved": f1 - f0, "data_moved": t.read(b, 8 * PAGE) == PATTERN * 8,
            "mincore_old": outcome(t.mincore, a, PAGE),
            "touch_old": signal_of(c.touch, a, False, base=a)}


@scenario()
def scenario_mremap_grow_in_place(k) -> dict:
    """Growing a 4-page mapping to 12 pages in place (the space above is free): same address,
    the new pages are not populated (mincore 0), one VMA, VmSize +32 kB; shrinking back
    unmaps the tail."""
    from . import maps_layout
    t = k.spawn("grow")
    a = region(t, 4)
    t.write(a, PATTERN * 4)
    s0 = status(k, t)
    r = t.mremap(a, 4 * PAGE, 12 * PAGE)
    s1 = status(k, t)
    obs = {"same_address": r == a, "mincore": mincore_bits(t, a, 12), "layout": maps_layout(k, t, a, 16),
           "VmSize_delta_kB": s1["VmSize"] - s0["VmSize"]}
    r2 = t.mremap(a, 12 * PAGE, 2 * PAGE)
    obs.update({"shrink_same_address": r2 == a, "layout_after_shrink": maps_layout(k, t, a, 16),
                "data": t.read(a, 2 * PAGE) == PATTERN * 2})
    return obs


@scenario(expected_differences={
    "Active_anon_delta_MiB": "changed after v5.7: since 5.9 ('mm/vmscan: protect the workingset "
                             "on anonymous LRU') new anonymous pages start on the inactive anon "
                             "list; v5.7 puts them on the active list",
    "Inactive_anon_delta_MiB": "changed after v5.7: since 5.9 new anonymous pages start on the "
                               "inactive anon list (v5.7: active)"})
def scenario_anon_pages_meminfo(k) -> dict:
    """meminfo after writing 256 MiB of private anonymous memory: AnonPages +256 MiB (in 32
    MiB steps: other processes on the host move it too), on the anon LRU lists; munmap gives
    it back; 64 MiB of shared anonymous memory count as Shmem, not AnonPages."""
    from . import MiB, meminfo
    t = k.spawn("anonpages")
    n = (256 * MiB) // PAGE
    a = t.mmap(0, 256 * MiB, RW, 0x22)
    addrs = pages(a, n)
    m0 = meminfo(k)
    t.access(addrs, True)
    m1 = meminfo(k)
    t.munmap(a, 256 * MiB)
    m2 = meminfo(k)
    b = region(t, (64 * MiB) // PAGE, RW, SHARED)
    addrs = pages(b, (64 * MiB) // PAGE)
    m2b = meminfo(k)
    t.access(addrs, True)
    m3 = meminfo(k)

    def d(x, y, key):                      # MiB, in 32 MiB steps: other processes move
        return round((y[key] - x[key]) / 32768) * 32    # these by several MiB at times
    return {"AnonPages_delta_MiB": d(m0, m1, "AnonPages"),
            "Active_anon_delta_MiB": d(m0, m1, "Active(anon)"),
            "Inactive_anon_delta_MiB": d(m0, m1, "Inactive(anon)"),
            "AnonPages_after_munmap_MiB": d(m0, m2, "AnonPages"),
            "shared_Shmem_delta_MiB": d(m2b, m3, "Shmem"),
            "shared_AnonPages_delta_MiB": d(m2b, m3, "AnonPages")}
