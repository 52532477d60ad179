"""Errno results of mmap, munmap, mprotect, madvise, mincore and mremap; VMA split/merge."""
from __future__ import annotations

from ..uapi import (MADV_DONTNEED, MADV_NORMAL, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE,
                    MAP_HUGETLB, MAP_SHARED_VALIDATE, MREMAP_DONTUNMAP, MREMAP_FIXED,
                    MREMAP_MAYMOVE, PROT_GROWSDOWN, PROT_GROWSUP, PROT_NONE, PROT_READ)
from . import (PAGE, PRIV, RW, SHARED, maps_layout, mincore_bits, outcome, pages, region,
               scenario)

U64 = (1 << 64) - 1


@scenario()
def scenario_mmap_errnos(k) -> dict:
    """mmap argument checks: zero length, no MAP_PRIVATE/MAP_SHARED, unaligned MAP_FIXED or
    offset -> EINVAL; MAP_FIXED_NOREPLACE over a mapping -> EEXIST; MAP_SHARED_VALIDATE is
    only validated for files (anonymous: the map type switch -> EINVAL); a length that
    cannot fit -> ENOMEM; MAP_HUGETLB with no huge pages reserved -> ENOMEM."""
    t = k.spawn("mmaperr")
    a = region(t, 4)
    return {
        "zero_length": outcome(t.mmap, 0, 0, RW, PRIV),
        "no_private_or_shared": outcome(t.mmap, 0, PAGE, RW, MAP_ANONYMOUS),
        "fixed_unaligned": outcome(t.mmap, a + 64 * PAGE + 1, PAGE, RW, PRIV | MAP_FIXED),
        "unaligned_offset": outcome(t.mmap, 0, PAGE, RW, PRIV, -1, 100),
        "noreplace_over_mapping": outcome(t.mmap, a + PAGE, PAGE, RW, PRIV | MAP_FIXED_NOREPLACE),
        "shared_validate_unknown_flag": outcome(t.mmap, 0, PAGE, RW,
                                                MAP_SHARED_VALIDATE | MAP_ANONYMOUS | 0x800000),
        "length_2^63": outcome(t.mmap, 0, 1 << 63, PROT_NONE, PRIV),
        "length_wraps": outcome(t.mmap, 0, U64 - 100, PROT_NONE, PRIV),
        "hugetlb_without_pool": outcome(t.mmap, 0, 2 << 20, RW, PRIV | MAP_HUGETLB),
        "ok_plain": outcome(t.mmap, 0, PAGE, RW, PRIV),
        "layout": maps_layout(k, t, a, 64),
    }


@scenario()
def scenario_munmap_errnos(k) -> dict:
    """munmap: unaligned address or zero length -> EINVAL; a hole -> success; a range reaching
    past TASK_SIZE -> EINVAL; a middle part splits the VMA in two."""
    t = k.spawn("munmaperr")
    a = region(t, 16)
    return {
        "unaligned": outcome(t.munmap, a + 1, PAGE),
        "zero_length": outcome(t.munmap, a, 0),
        "hole": outcome(t.munmap, a + 64 * PAGE, 4 * PAGE),
        "past_task_size": outcome(t.munmap, 0x7FFFFFFFF000, 2 * PAGE),
        "middle": outcome(t.munmap, a + 4 * PAGE, 4 * PAGE),
        "layout": maps_layout(k, t, a, 16),
        "unaligned_length_rounds_up": outcome(t.munmap, a + 12 * PAGE, 1),
        "layout_after": maps_layout(k, t, a, 16),
    }


@scenario()
def scenario_mprotect_errnos(k) -> dict:
    """mprotect: unaligned start -> EINVAL; unknown prot bit -> EINVAL; PROT_GROWSDOWN and
    PROT_GROWSUP together -> EINVAL; PROT_GROWSDOWN on a VMA without VM_GROWSDOWN -> EINVAL;
    a hole -> ENOMEM; a wrapping length -> ENOMEM; zero length -> success."""
    t = k.spawn("mprerr")
    a = region(t, 8)
    return {
        "unaligned": outcome(t.mprotect, a + 1, PAGE, PROT_READ),
        "unknown_prot_bit": outcome(t.mprotect, a, PAGE, PROT_READ | 0x10),
        "growsdown_and_growsup": outcome(t.mprotect, a, PAGE, PROT_READ | PROT_GROWSDOWN | PROT_GROWSUP),
        "growsdown_plain_vma": outcome(t.mprotect, a, PAGE, PROT_READ | PROT_GROWSDOWN),
        "hole": outcome(t.mprotect, a + 64 * PAGE, PAGE, PROT_READ),
        "wrapping_length": outcome(t.mprotect, a, U64 - 2 * PAGE, PROT_READ),
        "zero_length": outcome(t.mprotect, a, 0, PROT_READ),
        "layout": maps_layout(k, t, a, 8),
    }


@scenario()
def scenario_mprotect_split_merge_and_hole(k) -> dict:
    """mprotect of a middle part splits the VMA in three, restoring merges it back into one;
    mprotect over [VMA][hole] fails with ENOMEM but keeps the change made to the VMA."""
    t = k.spawn("split")
    a = region(t, 16)
    t.mprotect(a + 4 * PAGE, 4 * PAGE, PROT_READ)
    split = maps_layout(k, t, a, 16)
    t.mprotect(a + 4 * PAGE, 4 * PAGE, RW)
    merged = maps_layout(k, t, a, 16)
    t.munmap(a + 12 * PAGE, 4 * PAGE)
    res = outcome(t.mprotect, a + 8 * PAGE, 8 * PAGE, PROT_READ)
    return {"split": split, "merged": merged, "over_hole": res,
            "after_over_hole": maps_layout(k, t, a, 16)}


@scenario(expected_differences={
    "populate_read": "changed after v5.7: MADV_POPULATE_READ (22) was added in 5.14 (v5.7: EINVAL)",
    "populate_write": "changed after v5.7: MADV_POPULATE_WRITE (23) was added in 5.14 (v5.7: EINVAL)",
    "dontneed_locked": "changed after v5.7: MADV_DONTNEED_LOCKED (24) was added in 5.18 (v5.7: EINVAL)",
    "mincore_after_populate": "changed after v5.7: MADV_POPULATE_WRITE populated the pages on the "
                              "live kernel only (5.14+)"})
def scenario_madvise_errnos(k) -> dict:
    """madvise: unaligned start -> EINVAL; unknown advice -> EINVAL; a hole -> ENOMEM (after
    applying the advice to the mapped part); zero length -> success; advice values added
    after v5.7 are EINVAL on v5.7."""
    t = k.spawn("madverr")
    a = region(t, 8)
    t.write(a, b"x" * (8 * PAGE))
    obs = {
        "unaligned": outcome(t.madvise, a + 1, PAGE, MADV_DONTNEED),
        "unknown_advice": outcome(t.madvise, a, PAGE, 999),
        "hole": outcome(t.madvise, a + 64 * PAGE, PAGE, MADV_NORMAL),
        "zero_length": outcome(t.madvise, a, 0, MADV_DONTNEED),
        "dontneed_over_hole": outcome(t.madvise, a + 4 * PAGE, 8 * PAGE, MADV_DONTNEED),
        "mincore_after_dontneed_over_hole": mincore_bits(t, a, 8),
    }
    b = region(t, 4, at=32 * PAGE)
    obs["populate_read"] = outcome(t.madvise, b, 2 * PAGE, 22)
    obs["populate_write"] = outcome(t.madvise, b, 4 * PAGE, 23)
    obs["dontneed_locked"] = outcome(t.madvise, b, PAGE, 24)
    obs["mincore_after_populate"] = mincore_bits(t, b, 4)
    return obs


@scenario()
def scenario_mincore_errnos_and_bits(k) -> dict:
    """mincore: unaligned start -> EINVAL; a range with a hole -> ENOMEM; zero length -> empty;
    bits: written and read (zero page) pages 1, untouched 0, DONTNEED'ed 0."""
    t = k.spawn("mincore")
    a = region(t, 8)
    t.access(pages(a, 2), True)
    t.access(pages(a + 4 * PAGE, 2), False)
    bits = mincore_bits(t, a, 8)
    t.madvise(a, PAGE, MADV_DONTNEED)
    return {
        "bits": bits, "bits_after_dontneed": mincore_bits(t, a, 8),
        "unaligned": outcome(t.mincore, a + 1, PAGE),
        "with_hole": outcome(t.mincore, a, 9 * PAGE),
        "hole": outcome(t.mincore, a + 64 * PAGE, PAGE),
        "zero_length": t.mincore(a, 0).hex(),
        "unaligned_length": mincore_bits(t, a, 1) + "/" + str(len(t.mincore(a + PAGE, PAGE + 1))),
    }


@scenario()
def scenario_mremap_errnos(k) -> dict:
    """mremap argument checks (unknown flag, FIXED or DONTUNMAP without MAYMOVE, DONTUNMAP with
    a size change, unaligned address, zero or wrapping new length, overlapping FIXED target) ->
    EINVAL; growing a range that spans two VMAs -> EFAULT; growing in place blocked without
    MAYMOVE -> ENOMEM; growing an unmapped address -> EFAULT; duplicating a private mapping
    (old_len 0) -> EINVAL."""
    t = k.spawn("mremaperr")
    a = region(t, 4)
    region(t, 1, PROT_READ, at=4 * PAGE)          # a second VMA right after the first
    b = a + 200 * PAGE
    return {
        "unknown_flag": outcome(t.mremap, a, PAGE, PAGE, 8),
        "fixed_without_maymove": outcome(t.mremap, a, PAGE, PAGE, MREMAP_FIXED, b),
        "dontunmap_without_maymove": outcome(t.mremap, a, PAGE, PAGE, MREMAP_DONTUNMAP),
        "dontunmap_size_change": outcome(t.mremap, a, PAGE, 2 * PAGE, MREMAP_DONTUNMAP | MREMAP_MAYMOVE),
        "unaligned": outcome(t.mremap, a + 1, PAGE, 2 * PAGE, MREMAP_MAYMOVE),
        "new_length_0": outcome(t.mremap, a, PAGE, 0, MREMAP_MAYMOVE),
        "new_length_wraps": outcome(t.mremap, a, PAGE, U64, MREMAP_MAYMOVE),
        "fixed_unaligned_target": outcome(t.mremap, a, PAGE, PAGE, MREMAP_FIXED | MREMAP_MAYMOVE, b + 1),
        "fixed_overlapping": outcome(t.mremap, a, 2 * PAGE, 2 * PAGE, MREMAP_FIXED | MREMAP_MAYMOVE,
                                     a + PAGE),
        "grow_across_two_vmas": outcome(t.mremap, a + 2 * PAGE, 3 * PAGE, 6 * PAGE, MREMAP_MAYMOVE),
        "grow_blocked_no_maymove": outcome(t.mremap, a, 4 * PAGE, 8 * PAGE),
        "grow_unmapped": outcome(t.mremap, a + 64 * PAGE, PAGE, 2 * PAGE, MREMAP_MAYMOVE),
        "duplicate_private": outcome(t.mremap, a, 0, PAGE, MREMAP_MAYMOVE),
        "layout": maps_layout(k, t, a, 8),
    }


@scenario(expected_differences={
    "shrink_unmapped": "changed after v5.7: v5.7 shrinks with do_munmap() before looking up a VMA "
                       "(munmap of nothing: success); 6.x looks the VMA up first -> EFAULT",
    "same_size_unmapped": "changed after v5.7: v5.7 returns the address for old_len == new_len "
                          "without a VMA lookup; 6.x -> EFAULT",
    "fixed_move_two_vmas": "changed after v5.7: v5.7 vma_to_resize() -> EFAULT when old_len "
                           "spans two VMAs; 6.17+ moves several VMAs at once",
    "dontunmap_shared": "changed after v5.7: v5.7 MREMAP_DONTUNMAP needs a private anonymous "
                        "VMA (EINVAL on shared); 5.13 relaxed it",
    "layout_after": "follows from the live kernel moving the two VMAs and the shared mapping"})
def scenario_mremap_v57_semantics(k) -> dict:
    """mremap cases whose v5.7 result differs from current kernels: shrinking or same-size
    remapping an unmapped range, a same-size MREMAP_FIXED move of a range spanning two VMAs,
    MREMAP_DONTUNMAP of shared anonymous memory."""
    t = k.spawn("mremap57")
    a = region(t, 4)
    region(t, 2, PROT_READ, at=4 * PAGE)
    s = region(t, 2, RW, SHARED, at=16 * PAGE)
    hole = a + 64 * PAGE

    def call(*args):
        try:
            r = t.mremap(*args)
        except Exception as e:                      # noqa: BLE001
            return type(e).__name__
        return "BASE+%#x" % (r - a) if a <= r < a + (1 << 40) else "ok (elsewhere)"
    return {
        "shrink_unmapped": call(hole, 2 * PAGE, PAGE),
        "same_size_unmapped": call(hole, PAGE, PAGE),
        "fixed_move_two_vmas": call(a + 2 * PAGE, 3 * PAGE, 3 * PAGE,
                                          MREMAP_MAYMOVE | MREMAP_FIXED, a + 200 * PAGE),
        "dontunmap_shared": call(s, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP),
        "layout_after": maps_layout(k, t, a, 8),
    }



_FOLIO_WALK = ("since 6.12 move_pages looks pages up with folio_walk: an untouched anonymous "
               "page reads -ENOENT (-2); v5.7's follow_page(FOLL_DUMP) gives -EFAULT (-14)")


@scenario(needs_root=True, expected_differences={"query": _FOLIO_WALK, "to_node0": _FOLIO_WALK})
def scenario_move_pages_one_node(k) -> dict:
    """move_pages(2) on a one-node machine: the query gives node 0 for a written page and
    -EFAULT for an untouched page, the zero page and an unmapped address; moving pages to
    node 0, where they are, gives status 0 (an untouched page: -EFAULT); unknown flags ->
    EINVAL, MPOL_MF_MOVE_ALL without CAP_SYS_NICE -> EPERM, no such pid -> ESRCH, node 1
    or 64 (no memory) -> ENODEV."""
    from ..uapi import MPOL_MF_MOVE, MPOL_MF_MOVE_ALL
    t = k.spawn("mvpages")
    a = region(t, 4)
    t.write(a, b"x")
    t.read(a + 2 * PAGE, 1)
    obs = {
        "query": t.move_pages(0, [a, a + PAGE, a + 2 * PAGE, 0x1000]),
        "to_node0": t.move_pages(0, [a, a + PAGE], [0, 0], MPOL_MF_MOVE),
    }
    obs["flags_8"] = outcome(t.move_pages, 0, [a], [0], 8)
    obs["no_such_pid"] = outcome(t.move_pages, 4194305, [a], [0])
    obs["node_1"] = outcome(t.move_pages, 0, [a], [1])
    obs["node_64"] = outcome(t.move_pages, 0, [a], [64])
    u = k.spawn("mvuser", uid=1000)
    b = region(u, 1, at=64 * PAGE)
    u.write(b, b"y")
    obs["move_all_unprivileged"] = outcome(u.move_pages, 0, [b], [0], MPOL_MF_MOVE_ALL)
    return obs
