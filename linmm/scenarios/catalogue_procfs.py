"""/proc/<pid>/{status,smaps,pagemap,maps} numbers after a known history."""
from __future__ import annotations

from ..uapi import MADV_DONTNEED, MAP_NORESERVE, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_READ
from . import (GiB, MiB, PAGE, PM_PFN, PM_SOFT_DIRTY, PRIV, RW, SHARED, pagemap, pages,
               pm_flags, region, scenario, signal_of, smaps_fields, status)

NO_SOFT_DIRTY = ("the live kernel is built without CONFIG_MEM_SOFT_DIRTY (pagemap bit 55 never "
                 "set); v5.7 as modelled has it and mmap_region() sets VM_SOFTDIRTY")


@scenario(expected_differences={"VmFlags": "sd (VM_SOFTDIRTY) is shown by v5.7 with "
                                           "CONFIG_MEM_SOFT_DIRTY; " + NO_SOFT_DIRTY})
def scenario_smaps_fields_history(k) -> dict:
    """A 4-page private VMA with 1 page written, 1 read (zero page), 2 untouched: Rss 4 kB,
    Pss 4, Private_Dirty 4, Referenced 4, Anonymous 4; after fork the written page is
    Shared_Dirty with Pss 2 kB in both tasks; the VmFlags."""
    t = k.spawn("smaps")
    a = region(t, 4)
    t.write(a, b"w")
    t.touch(a + PAGE, False)
    before = smaps_fields(k, t, a)
    flags = smaps_fields(k, t, a, ("VmFlags",))["VmFlags"]
    c = t.fork()
    return {"alone": before, "VmFlags": flags, "parent_after_fork": smaps_fields(k, t, a),
            "child_after_fork": smaps_fields(k, c, a)}


@scenario()
def scenario_smaps_shared_anon(k) -> dict:
    """Shared anonymous memory in smaps: 8 pages written by the parent, then read (4 accesses)
    by a forked child, whose first read fault maps all 8 (fault-around): both tasks have Rss
    32 kB, Shared_Dirty 32 kB (written shmem pages are PageDirty), Pss 16 kB, Anonymous 0
    (shmem pages are not anonymous)."""
    t = k.spawn("smsh")
    a = region(t, 8, RW, SHARED)
    t.access(pages(a, 8), True)
    c = t.fork()
    c.access(pages(a, 4), False)
    return {"parent": smaps_fields(k, t, a), "child": smaps_fields(k, c, a)}


@scenario(expected_differences={
    "soft_dirty": NO_SOFT_DIRTY,
    "untouched_raw": NO_SOFT_DIRTY + " (an untouched page of a VM_SOFTDIRTY VMA reads as 1 << 55)"})
def scenario_pagemap_bits(k) -> dict:
    """pagemap: a written page is present|exclusive, a read one maps the zero page (present, not
    exclusive, not file), untouched pages and holes read 0 (apart from soft-dirty); after
    fork the written page is present but not exclusive."""
    t = k.spawn("pagemap")
    a = region(t, 4)
    t.write(a, b"w")
    t.touch(a + PAGE, False)
    t.touch(a + 3 * PAGE, False)
    pm = pagemap(k, t, a, 4) + pagemap(k, t, a + 64 * PAGE)
    out = {"written": pm_flags(pm[0]), "read": pm_flags(pm[1]), "untouched": pm_flags(pm[2]),
           "hole_raw": pm[4], "untouched_raw": pm[2],
           "soft_dirty": [bool(v & PM_SOFT_DIRTY) for v in pm],
           "zero_pfns_equal": (pm[1] & PM_PFN) == (pm[3] & PM_PFN) != 0,
           "written_pfn_differs": (pm[0] & PM_PFN) not in (0, pm[1] & PM_PFN)}
    c = t.fork()
    out["written_after_fork"] = pm_flags(pagemap(k, t, a)[0])
    out["child_written_after_fork"] = pm_flags(pagemap(k, c, a)[0])
    out["same_pfn_in_child"] = (pagemap(k, c, a)[0] & PM_PFN) == (pm[0] & PM_PFN)
    return out


@scenario(expected_differences={
    "VmHWM_munmap_kB": "changed after v5.7: 6.2 made the mm RSS counters per-CPU; hiwater_rss is "
                       "taken from their approximate sum at munmap, so the live VmHWM can drop "
                       "below the true peak (v5.7: exact, unchanged by munmap)"})
def scenario_status_rss_and_vm_sizes(k) -> dict:
    """status deltas: mmap of 64 private + 32 shared pages: VmSize +384 kB, VmData +256 kB
    (private writable only); writing all: VmRSS +384, RssAnon +256, RssShmem +128, VmHWM
    follows; munmap of the private part: VmRSS -256, VmHWM unchanged."""
    t = k.spawn("status")
    s0 = status(k, t)
    a = region(t, 64)
    b = region(t, 32, RW, SHARED, at=128 * PAGE)
    s1 = status(k, t)
    t.access(pages(a, 64), True)
    t.access(pages(b, 32), True)
    s2 = status(k, t)
    t.munmap(a, 64 * PAGE)
    s3 = status(k, t)

    def d(x, y, key):
        return y[key] - x[key]
    return {"VmSize_mmap_kB": d(s0, s1, "VmSize"), "VmData_mmap_kB": d(s0, s1, "VmData"),
            "VmRSS_mmap_kB": d(s0, s1, "VmRSS"), "VmRSS_write_kB": d(s1, s2, "VmRSS"),
            "RssAnon_write_kB": d(s1, s2, "RssAnon"), "RssShmem_write_kB": d(s1, s2, "RssShmem"),
            "VmHWM_ge_VmRSS": s2["VmHWM"] >= s2["VmRSS"], "VmRSS_munmap_kB": d(s2, s3, "VmRSS"),
            "VmHWM_munmap_kB": d(s2, s3, "VmHWM"), "VmSize_munmap_kB": d(s2, s3, "VmSize"),
            "VmData_munmap_kB": d(s2, s3, "VmData")}


@scenario(machine={"ram": "1G", "thp": "never"}, expected_differences={
    "VmPTE_after_dontneed_kB": "changed after v5.7: 6.14 (CONFIG_PT_RECLAIM, x86_64) frees the PTE "
                               "tables that MADV_DONTNEED empties (B's and B+1 GiB's: -8 kB); "
                               "v5.7 keeps them until munmap"})
def scenario_vmpte_accounting(k) -> dict:
    """split_page_table_lock.md 3/4 live check: R = 4 GiB MAP_NORESERVE at BASE. Touch BASE ->
    VmPTE +12 kB (PUD+PMD+PTE tables), BASE+4 KiB -> no change, BASE+2 MiB -> +16, BASE+1 GiB
    -> +24; munmap of the 2 MiB slot at BASE+2 MiB -> +20; MADV_DONTNEED on the rest -> RSS 0,
    VmPTE +20; munmap of R -> +0."""
    t = k.spawn("vmpte")
    a = region(t, (4 * GiB) // PAGE, RW, PRIV | MAP_NORESERVE)
    v0 = status(k, t)["VmPTE"]
    out = {}
    for name, addr in (("B", a), ("B+4K", a + PAGE), ("B+2M", a + 2 * MiB), ("B+1G", a + GiB)):
        t.touch(addr, True)
        out[f"VmPTE_after_{name}_kB"] = status(k, t)["VmPTE"] - v0
    t.munmap(a + 2 * MiB, 2 * MiB)
    out["VmPTE_after_munmap_2M_slot_kB"] = status(k, t)["VmPTE"] - v0
    r0 = status(k, t)["RssAnon"]
    t.madvise(a, 2 * MiB, MADV_DONTNEED)
    t.madvise(a + 4 * MiB, 4 * GiB - 4 * MiB, MADV_DONTNEED)
    s = status(k, t)
    out["RssAnon_dontneed_kB"] = s["RssAnon"] - r0
    out["VmPTE_after_dontneed_kB"] = s["VmPTE"] - v0
    t.munmap(a, 4 * GiB)
    out["VmPTE_after_munmap_R_kB"] = status(k, t)["VmPTE"] - v0
    return out


@scenario(machine={"ram": "1G", "thp": "never"})
def scenario_vmpte_mremap_moves_table(k) -> dict:
    """split_page_table_lock.md 10 live check: after the touches of scenario 3, mremap of the
    first 2 MiB to BASE+1 GiB+2 MiB (MREMAP_FIXED) moves the PTE table whole: VmPTE stays
    +24 kB, the data reads back at the new address with no fault, the old address SIGSEGVs."""
    from . import minflt
    t = k.spawn("vmpte10")
    a = region(t, (4 * GiB) // PAGE, RW, PRIV | MAP_NORESERVE)
    v0 = status(k, t)["VmPTE"]
    t.write(a, b"moved!")
    for addr in (a + PAGE, a + 2 * MiB, a + GiB):
        t.touch(addr, True)
    before = status(k, t)["VmPTE"] - v0
    b = t.mremap(a, 2 * MiB, 2 * MiB, MREMAP_MAYMOVE | MREMAP_FIXED, a + GiB + 2 * MiB)
    after = status(k, t)["VmPTE"] - v0
    f0 = minflt(k, t)
    data = t.read(b, 6)
    f1 = minflt(k, t)
    c = t.fork()
    return {"VmPTE_before_kB": before, "VmPTE_after_mremap_kB": after, "data": data.decode(),
            "minflt_read_moved": f1 - f0, "touch_old": signal_of(c.touch, a, False, base=a),
            "new_at": f"BASE+{b - a:#x}"}


@scenario()
def scenario_maps_lines_for_anon(k) -> dict:
    """/proc/<pid>/maps lines of anonymous mappings: permissions rw-p / r--p / rw-s, offset 0;
    device and inode 00:00 0 for private memory; shared anonymous memory is the shmem file
    "/dev/zero (deleted)" on device 00:01 with its own (non-zero) inode number."""
    t = k.spawn("maps")
    a = region(t, 2)
    b = region(t, 2, PROT_READ, at=4 * PAGE)
    c = region(t, 2, RW, SHARED, at=8 * PAGE)
    lines = {}
    for ln in k.read_file(f"/proc/{t.pid}/maps").splitlines():
        s = int(ln.split("-")[0], 16)
        if s in (a, b, c):
            f = ln.split()
            name = {a: "private_rw", b: "private_ro", c: "shared_rw"}[s]
            lines[name] = {"perms": f[1], "offset": f[2], "dev": f[3], "inode_zero": f[4] == "0",
                           "pathname": " ".join(f[5:])}
    return lines
