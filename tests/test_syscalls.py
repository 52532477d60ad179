"""Errno and semantics of mmap, munmap, mprotect, mremap, brk, madvise and mincore
for anonymous memory, and the /proc/<pid>/{maps,smaps,status,pagemap} formats,
checked against the LIVE kernel this test runs on and against v5.7.

Every case runs first on the live kernel through ctypes, on addresses inside a
PROT_NONE reservation that this Python process makes for itself (LiveArea), and
then on the model, inside the same-shaped reservation of a linmm task
(ModelArea).  Where v5.7 and the live kernel differ (the live kernel here is
6.x), the model is held to v5.7 and a comment says what the live kernel does.

Safety: a live call never names memory outside the reservation unless the
kernel rejects it before looking at any VMA (length/alignment/overflow checks).
"""
import contextlib
import ctypes
import errno as E
import json
import os
import re
import signal
import struct

import pytest

import linmm
from linmm import (MADV_DODUMP, MADV_DONTFORK, MADV_DONTNEED, MADV_FREE, MADV_NORMAL,
                   MADV_WIPEONFORK, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE,
                   MAP_SHARED, MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_EXEC,
                   PROT_GROWSDOWN, PROT_GROWSUP, PROT_NONE, PROT_READ, PROT_SEM, PROT_WRITE)

P = 4096
RW = PROT_READ | PROT_WRITE
PRIV = MAP_PRIVATE | MAP_ANONYMOUS
SHARED = MAP_SHARED | MAP_ANONYMOUS
MAP_FAILED = (1 << 64) - 1
NPAGES = 256                       # reservation size (1 MiB: too small for THP)
PM_PFN = (1 << 55) - 1
PM_SOFT_DIRTY, PM_EXCLUSIVE, PM_FILE, PM_SWAP, PM_PRESENT = 1 << 55, 1 << 56, 1 << 61, 1 << 62, 1 << 63
MADV_POPULATE_READ, MADV_DONTNEED_LOCKED = 22, 24      # 5.14 and 5.18: not in v5.7

# ------------------------------------------------------------------ live kernel access
libc = ctypes.CDLL(None, use_errno=True)
_u64, _i64, _int, _long = ctypes.c_uint64, ctypes.c_int64, ctypes.c_int, ctypes.c_long
libc.mmap.restype, libc.mmap.argtypes = _u64, [_u64, _u64, _int, _int, _int, _i64]
libc.munmap.restype, libc.munmap.argtypes = _int, [_u64, _u64]
libc.mprotect.restype, libc.mprotect.argtypes = _int, [_u64, _u64, _int]
libc.madvise.restype, libc.madvise.argtypes = _int, [_u64, _u64, _int]
libc.mincore.restype, libc.mincore.argtypes = _int, [_u64, _u64, ctypes.c_char_p]
libc.mremap.restype, libc.mremap.argtypes = _u64, [_u64, _u64, _u64, _int, _u64]
libc.ptrace.restype, libc.ptrace.argtypes = _long, [_long, _long, ctypes.c_void_p, ctypes.c_void_p]
libc.syscall.restype, libc.syscall.argtypes = _long, [_long, ctypes.c_ulong]
libc.mallopt.restype, libc.mallopt.argtypes = _int, [_int, _int]
SYS_brk, PTRACE_TRACEME, PTRACE_GETSIGINFO, M_MMAP_THRESHOLD = 12, 0, 0x4202, -3


def live(fn, *args):
    """A libc call on the live kernel: ('ok', return value) or ('err', errno)."""
    ctypes.set_errno(0)
    r = fn(*args)
    err = ctypes.get_errno()
    failed = r == MAP_FAILED if fn in (libc.mmap, libc.mremap) else r == -1
    return ("err", err) if failed else ("ok", r)


def live_mincore(addr, length):
    vec = ctypes.create_string_buffer(max(1, (length + P - 1) // P) if length < (1 << 40) else 1)
    r = live(libc.mincore, addr, length, vec)
    return r if r[0] == "err" else ("ok", vec.raw[:(length + P - 1) // P])


def model(fn, *args):
    """A model syscall: ('ok', return value, None -> 0) or ('err', exception errno)."""
    try:
        r = fn(*args)
    except linmm.errors.Errno as e:
        return ("err", e.errno)
    return ("ok", 0 if r is None else r)


def page_align(x):
    return (x + P - 1) & ~(P - 1)


class LiveArea:
    """A PROT_NONE reservation in this process; tests map, unmap and punch holes only inside."""

    def __init__(self, npages=NPAGES):
        self.n = npages
        self.base = libc.mmap(0, npages * P, PROT_NONE, PRIV, -1, 0)
        assert self.base != MAP_FAILED
        self.claimed = set()     # pages a test mapped itself (inside a hole)
        self.lost = set()        # pages someone else took while a hole was open
        self.outside = []        # (addr, len) mappings the kernel placed outside the area

    def addr(self, page):
        return self.base + page * P

    def page(self, addr):
        return (addr - self.base) // P

    def inside(self, addr):
        return self.base <= addr < self.base + self.n * P

    def map(self, page, npages, prot=RW, flags=PRIV):
        a = libc.mmap(self.addr(page), npages * P, prot, flags | MAP_FIXED, -1, 0)
        assert a == self.addr(page)
        self.claimed.update(range(page, page + npages))
        return a

    def refill(self, page, npages=1):
        """Put PROT_NONE back on pages this test emptied (never over someone else's)."""
        for p in range(page, page + npages):
            a = self.addr(p)
            if p in self.claimed:
                libc.mmap(a, P, PROT_NONE, PRIV | MAP_FIXED, -1, 0)
            elif libc.mmap(a, P, PROT_NONE, PRIV | MAP_FIXED_NOREPLACE, -1, 0) != a:
                self.lost.add(p)

    @contextlib.contextmanager
    def hole(self, page, npages=1):
        assert libc.munmap(self.addr(page), npages * P) == 0
        self.claimed.difference_update(range(page, page + npages))
        try:
            yield self.addr(page)
        finally:
            self.refill(page, npages)

    def close(self):
        p = 0
        while p < self.n:
            q = p
            while q < self.n and q not in self.lost:
                q += 1
            if q > p:
                libc.munmap(self.addr(p), (q - p) * P)
            p = q + 1
        for a, n in self.outside:
            libc.munmap(a, n)
        assert not self.lost, "another mapping appeared in a hole of the test area"


class ModelArea:
    """The same reservation in a linmm task."""

    def __init__(self, k, t, npages=NPAGES):
        self.k, self.t, self.n = k, t, npages
        self.base = t.mmap(0, npages * P, PROT_NONE, PRIV)

    def addr(self, page):
        return self.base + page * P

    def page(self, addr):
        return (addr - self.base) // P

    def inside(self, addr):
        return self.base <= addr < self.base + self.n * P

    def map(self, page, npages, prot=RW, flags=PRIV):
        a = self.t.mmap(self.addr(page), npages * P, prot, flags | MAP_FIXED)
        assert a == self.addr(page)
        return a

    def refill(self, page, npages=1):
        self.t.mmap(self.addr(page), npages * P, PROT_NONE, PRIV | MAP_FIXED)

    @contextlib.contextmanager
    def hole(self, page, npages=1):
        self.t.munmap(self.addr(page), npages * P)
        yield self.addr(page)
        self.refill(page, npages)

    def maps(self):
        return self.k.read_file(f"/proc/{self.t.pid}/maps")

    def smaps(self):
        return self.k.read_file(f"/proc/{self.t.pid}/smaps")


@pytest.fixture
def la():
    a = LiveArea()
    yield a
    a.close()


@pytest.fixture
def ma(k):
    t = k.spawn("sys")
    return ModelArea(k, t)


def where(area, res):
    """Normalise a successful address result to a page offset inside the area."""
    if res[0] == "ok" and res[1] and area.inside(res[1]):
        return ("ok", ("page", area.page(res[1])))
    return res


ANON_LINE = re.compile(r"[0-9a-f]{8,}-[0-9a-f]{8,} [r-][w-][x-][ps] 00000000 00:00 0 ")


def area_maps(text, base, n=NPAGES):
    """(first page, end page, perms) of the maps lines overlapping the area, clipped;
    every such line must have the v5.7 shape of an unnamed anonymous VMA."""
    out = []
    for ln in text.split("\n"):
        if not ln:
            continue
        s, e = (int(x, 16) for x in ln.split(" ", 1)[0].split("-"))
        if e <= base or s >= base + n * P:
            continue
        assert ANON_LINE.fullmatch(ln), repr(ln)
        out.append(((max(s, base) - base) // P, (min(e, base + n * P) - base) // P, ln.split()[1]))
    return out


def live_maps(la):
    with open("/proc/self/maps") as f:
        return area_maps(f.read(), la.base, la.n)


def model_maps(ma):
    return area_maps(ma.maps(), ma.base, ma.n)


def smaps_block(text, start):
    """The lines of the smaps entry whose VMA starts at start (header .. VmFlags)."""
    lines = text.split("\n")
    head = [i for i, ln in enumerate(lines) if ln.startswith(f"{start:08x}-")]
    assert len(head) == 1, f"no smaps entry at {start:#x}"
    out = [lines[head[0]]]
    for ln in lines[head[0] + 1:]:
        out.append(ln)
        if ln.startswith("VmFlags:"):
            return out
    raise AssertionError("smaps entry without VmFlags")


def live_smaps(addr):
    with open("/proc/self/smaps") as f:
        return smaps_block(f.read(), addr)


def smaps_value(block, key):
    for ln in block:
        if ln.startswith(key + ":"):
            return ln[len(key) + 1:].split()
    raise AssertionError(f"no {key} in smaps entry")


class Cases:
    """Collects mismatches so a failing test lists every case at once."""

    def __init__(self):
        self.bad = []

    def check(self, name, live_res, model_res, want, live_want=None):
        lw = want if live_want is None else live_want
        if live_res != lw:
            self.bad.append(f"{name}: LIVE kernel gave {live_res}, expected {lw}")
        if model_res != want:
            self.bad.append(f"{name}: model gave {model_res}, v5.7 gives {want}")

    def model_only(self, name, model_res, want):
        if model_res != want:
            self.bad.append(f"{name}: model gave {model_res}, v5.7 gives {want}")

    def done(self):
        assert not self.bad, "\n".join(self.bad)


def forget_outside(area, res, length):
    """A live call that unexpectedly mapped memory outside the area: remember to unmap it."""
    if res[0] == "ok" and isinstance(res[1], int) and res[1] and not area.inside(res[1]):
        area.outside.append((res[1], length))


ERR = lambda e: ("err", e)  # noqa: E731
OK0 = ("ok", 0)


# ================================================================== mmap
def test_mmap_errnos(la, ma):
    c = Cases()
    la.map(16, 4)
    ma.map(16, 4)
    t = ma.t
    cases = [
        # do_mmap: "if (!len) return -EINVAL"
        ("length 0", lambda A: (0, 0, RW, PRIV), ERR(E.EINVAL)),
        # get_unmapped_area: offset_in_page(addr) with MAP_FIXED -> EINVAL
        ("MAP_FIXED at an unaligned address", lambda A: (A.addr(100) + 1, P, RW, PRIV | MAP_FIXED),
         ERR(E.EINVAL)),
        # PAGE_ALIGN(len) overflows to 0 -> ENOMEM
        ("length 2^64-4095 (PAGE_ALIGN wraps)", lambda A: (0, (1 << 64) - P + 1, RW, PRIV),
         ERR(E.ENOMEM)),
        # len > TASK_SIZE -> ENOMEM (get_unmapped_area)
        ("length 2^64-4096", lambda A: (0, (1 << 64) - P, RW, PRIV), ERR(E.ENOMEM)),
        ("length 2^47", lambda A: (0, 1 << 47, RW, PRIV), ERR(E.ENOMEM)),
        # anonymous: switch (flags & MAP_TYPE) default -> EINVAL
        ("MAP_SHARED|MAP_PRIVATE anonymous", lambda A: (0, P, RW, MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS),
         ERR(E.EINVAL)),
        ("neither MAP_SHARED nor MAP_PRIVATE", lambda A: (0, P, RW, MAP_ANONYMOUS), ERR(E.EINVAL)),
        # MAP_FIXED_NOREPLACE: find_vma(addr) && vm_start < addr + len -> EEXIST
        ("MAP_FIXED_NOREPLACE over a mapping", lambda A: (A.addr(17), P, RW, PRIV | MAP_FIXED_NOREPLACE),
         ERR(E.EEXIST)),
        ("MAP_FIXED_NOREPLACE over the reservation", lambda A: (A.addr(100), P, RW, PRIV | MAP_FIXED_NOREPLACE),
         ERR(E.EEXIST)),
    ]
    for name, args, want in cases:
        lr = where(la, live(libc.mmap, *args(la), -1, 0))
        forget_outside(la, lr, args(la)[1])
        mr = where(ma, model(t.mmap, *args(ma)))
        c.check(name, lr, mr, want)
    # partial overlap from a hole into a mapping
    with la.hole(14, 2), ma.hole(14, 2):
        lr = live(libc.mmap, la.addr(14), 3 * P, RW, PRIV | MAP_FIXED_NOREPLACE, -1, 0)
        mr = model(t.mmap, ma.addr(14), 3 * P, RW, PRIV | MAP_FIXED_NOREPLACE)
        c.check("MAP_FIXED_NOREPLACE partly over a mapping", lr, mr, ERR(E.EEXIST))
        # into free space: exactly there
        lr = where(la, live(libc.mmap, la.addr(14), 2 * P, RW, PRIV | MAP_FIXED_NOREPLACE, -1, 0))
        if lr[0] == "ok":
            la.claimed.update((14, 15))
        mr = where(ma, model(t.mmap, ma.addr(14), 2 * P, RW, PRIV | MAP_FIXED_NOREPLACE))
        c.check("MAP_FIXED_NOREPLACE into a hole", lr, mr, ("ok", ("page", 14)))
    c.done()
    assert live_maps(la) == model_maps(ma)
    ma.k.check()


def test_mmap_unknown_prot_bits_are_ignored(la, ma):
    # calc_vm_prot_bits() only looks at READ/WRITE/EXEC: mmap() does not validate prot
    # (only mprotect() calls arch_validate_prot)
    with la.hole(40), ma.hole(40):
        lr = where(la, live(libc.mmap, la.addr(40), P, RW | 0x10, PRIV | MAP_FIXED, -1, 0))
        la.claimed.add(40)
        mr = where(ma, model(ma.t.mmap, ma.addr(40), P, RW | 0x10, PRIV | MAP_FIXED))
        assert lr == mr == ("ok", ("page", 40))
        assert live_maps(la) == model_maps(ma)
        assert (40, 41, "rw-p") in model_maps(ma)
    ma.k.check()


def test_mmap_unaligned_hint_is_rounded_down(la, ma):
    # round_hint_to_min() and arch_get_unmapped_area_topdown() do "addr &= PAGE_MASK":
    # a free unaligned hint is used rounded DOWN to its page
    with la.hole(60, 2), ma.hole(60, 2):
        lr = where(la, live(libc.mmap, la.addr(60) + 1, P, RW, PRIV, -1, 0))
        if lr == ("ok", ("page", 60)):
            la.claimed.add(60)
        elif lr[0] == "ok":
            la.outside.append((lr[1], P))
        mr = where(ma, model(ma.t.mmap, ma.addr(60) + 1, P, RW, PRIV))
        c = Cases()
        c.check("mmap(hint = free page + 1, 4096)", lr, mr, ("ok", ("page", 60)))
        c.done()
    ma.k.check()


# ================================================================== munmap
def test_munmap_errnos_and_holes(la, ma):
    c = Cases()
    la.map(16, 4)
    ma.map(16, 4)
    t = ma.t
    cases = [
        ("length 0", lambda A: (A.addr(16), 0), ERR(E.EINVAL)),
        ("unaligned start", lambda A: (A.addr(16) + 1, P), ERR(E.EINVAL)),
        # len > TASK_SIZE - start -> EINVAL, before any VMA is looked at
        ("length 2^64-4096", lambda A: (A.addr(16), (1 << 64) - P), ERR(E.EINVAL)),
        ("length 2^47", lambda A: (A.addr(16), 1 << 47), ERR(E.EINVAL)),
    ]
    for name, args, want in cases:
        c.check(name, live(libc.munmap, *args(la)), model(t.munmap, *args(ma)), want)
    # an unmapped range is not an error for munmap (ENOMEM for mprotect/madvise/mincore)
    with la.hole(50, 2), ma.hole(50, 2):
        c.check("munmap of a hole", live(libc.munmap, la.addr(50), 2 * P),
                model(t.munmap, ma.addr(50), 2 * P), OK0)
        assert live_maps(la) == model_maps(ma)
    # partial munmap splits the VMA
    c.check("munmap the middle page", live(libc.munmap, la.addr(17), P),
            model(t.munmap, ma.addr(17), P), OK0)
    lm, mm_ = live_maps(la), model_maps(ma)
    la.refill(17)
    c.done()
    assert lm == mm_
    assert [x for x in mm_ if 16 <= x[0] < 20] == [(16, 17, "rw-p"), (18, 20, "rw-p")]
    ma.k.check()


# ================================================================== mprotect
def test_mprotect_errnos(la, ma):
    c = Cases()
    la.map(16, 4)
    ma.map(16, 4)
    t = ma.t
    cases = [
        ("unaligned start", lambda A: (A.addr(16) + 1, P, PROT_READ), ERR(E.EINVAL)),
        # arch_validate_prot: only READ|WRITE|EXEC|SEM
        ("unknown prot bit 0x10", lambda A: (A.addr(16), P, 0x10), ERR(E.EINVAL)),
        ("PROT_SEM is allowed", lambda A: (A.addr(16), P, RW | PROT_SEM), OK0),
        ("PROT_GROWSDOWN|PROT_GROWSUP", lambda A: (A.addr(16), P, PROT_READ | PROT_GROWSDOWN | PROT_GROWSUP),
         ERR(E.EINVAL)),
        ("PROT_GROWSDOWN on a non-stack VMA", lambda A: (A.addr(16), P, PROT_READ | PROT_GROWSDOWN),
         ERR(E.EINVAL)),
        # end = start + PAGE_ALIGN(len) wraps -> ENOMEM, before any VMA is looked at
        ("length wraps", lambda A: (A.addr(16), (1 << 64) - P, PROT_READ), ERR(E.ENOMEM)),
    ]
    for name, args, want in cases:
        c.check(name, live(libc.mprotect, *args(la)), model(t.mprotect, *args(ma)), want)
    with la.hole(50, 2), ma.hole(50, 2):
        # len 0 returns 0 before the VMA lookup, even on a hole
        c.check("length 0 on a hole", live(libc.mprotect, la.addr(50), 0, PROT_READ),
                model(t.mprotect, ma.addr(50), 0, PROT_READ), OK0)
        c.check("unmapped range", live(libc.mprotect, la.addr(50), P, PROT_READ),
                model(t.mprotect, ma.addr(50), P, PROT_READ), ERR(E.ENOMEM))
    c.done()
    assert live_maps(la) == model_maps(ma)
    ma.k.check()


def test_mprotect_hole_keeps_the_part_already_changed(la, ma):
    # the loop changes the VMAs before the hole, then finds nstart != next->vm_start
    la.map(10, 2)
    la.map(13, 2)
    ma.map(10, 2)
    ma.map(13, 2)
    with la.hole(12), ma.hole(12):
        lr = live(libc.mprotect, la.addr(11), 3 * P, PROT_READ)
        mr = model(ma.t.mprotect, ma.addr(11), 3 * P, PROT_READ)
        c = Cases()
        c.check("mprotect over [rw][rw] hole [rw][rw]", lr, mr, ERR(E.ENOMEM))
        c.done()
        lm, mm_ = live_maps(la), model_maps(ma)
    assert lm == mm_
    assert [x for x in mm_ if 10 <= x[0] < 15] == [(10, 11, "rw-p"), (11, 12, "r--p"), (13, 15, "rw-p")]
    ma.k.check()


def test_mprotect_vma_split_and_merge_in_maps(la, ma):
    la.map(20, 4)
    ma.map(20, 4)
    ctypes.memmove(la.addr(20), b"x" * 4, 4)      # give the VMA an anon_vma on both sides
    ma.t.write(ma.addr(20), b"x" * 4)
    steps = [
        ("middle page read-only: split in three", 21, 1, PROT_READ,
         [(20, 21, "rw-p"), (21, 22, "r--p"), (22, 24, "rw-p")]),
        ("back to read-write: merged again", 21, 1, RW, [(20, 24, "rw-p")]),
        ("PROT_WRITE alone shows -w-p", 20, 4, PROT_WRITE, [(20, 24, "-w-p")]),
        ("PROT_EXEC|PROT_READ on the tail", 22, 2, PROT_READ | PROT_EXEC,
         [(20, 22, "-w-p"), (22, 24, "r-xp")]),
    ]
    for name, page, n, prot, want in steps:
        lr = live(libc.mprotect, la.addr(page), n * P, prot)
        mr = model(ma.t.mprotect, ma.addr(page), n * P, prot)
        assert lr == mr == OK0, name
        lm, mm_ = live_maps(la), model_maps(ma)
        assert lm == mm_, name
        assert [x for x in mm_ if x[2] != "---p"] == want, name
    ma.k.check()


def test_mprotect_prot_none_keeps_populated_pages(la, ma):
    """A PROT_NONE PTE (x86 _PAGE_PROTNONE, present bit clear) still maps its page:
    pte_present() is true, so smaps counts it in Rss (not Swap), pagemap reports it
    present and exclusive, mincore says 1, and mprotect back to RW finds the data."""
    for A in (la, ma):
        A.map(20, 4)
    ctypes.memmove(la.addr(20), b"keep", 4)
    ma.t.write(ma.addr(20), b"keep")
    assert live(libc.mprotect, la.addr(20), 4 * P, PROT_NONE) == OK0
    assert model(ma.t.mprotect, ma.addr(20), 4 * P, PROT_NONE) == OK0
    # same flags as the reservation around it, but no merge: the VMA has an anon_vma and
    # the reservation has none with an empty anon_vma_chain, and is_mergeable_anon_vma()
    # needs list_is_singular(&vma->anon_vma_chain) for that
    lm, mm_ = live_maps(la), model_maps(ma)
    assert lm == mm_ == [(0, 20, "---p"), (20, 24, "---p"), (24, NPAGES, "---p")]
    lb, mb = live_smaps(la.addr(20)), smaps_block(ma.smaps(), ma.addr(20))
    for key in ("Rss", "Pss", "Private_Dirty", "Anonymous", "Swap"):
        assert smaps_value(mb, key) == smaps_value(lb, key), key
    assert smaps_value(mb, "Rss") == ["4", "kB"] and smaps_value(mb, "Swap") == ["0", "kB"]
    lpm, mpm = _live_pagemap(la.addr(20))[0], _model_pagemap(ma, ma.addr(20))[0]
    assert lpm & (PM_PRESENT | PM_EXCLUSIVE) == mpm & (PM_PRESENT | PM_EXCLUSIVE) == PM_PRESENT | PM_EXCLUSIVE
    assert live_mincore(la.addr(20), 2 * P) == model(ma.t.mincore, ma.addr(20), 2 * P) == ("ok", b"\x01\x00")
    ma.k.check()
    assert live(libc.mprotect, la.addr(20), 4 * P, RW) == OK0
    assert model(ma.t.mprotect, ma.addr(20), 4 * P, RW) == OK0
    assert ctypes.string_at(la.addr(20), 4) == b"keep"
    assert ma.t.read(ma.addr(20), 4) == b"keep"
    ma.k.check()


# ================================================================== madvise
def test_madvise_errnos(la, ma):
    c = Cases()
    la.map(16, 4)
    ma.map(16, 4)
    la.map(30, 2, RW, SHARED)
    ma.map(30, 2, RW, SHARED)
    t = ma.t
    cases = [
        # madvise_behavior_valid(): 5, 6, 7 and 99 were never advice values
        ("advice 5", lambda A: (A.addr(16), P, 5), ERR(E.EINVAL), None),
        ("advice 6", lambda A: (A.addr(16), P, 6), ERR(E.EINVAL), None),
        ("advice 7", lambda A: (A.addr(16), P, 7), ERR(E.EINVAL), None),
        ("advice 99", lambda A: (A.addr(16), P, 99), ERR(E.EINVAL), None),
        # MADV_POPULATE_READ (5.14) and MADV_DONTNEED_LOCKED (5.18) do not exist in v5.7:
        # EINVAL there; the live 6.x kernel accepts them (returns 0).  v5.7 wins.
        ("MADV_POPULATE_READ (post-5.7)", lambda A: (A.addr(16), P, MADV_POPULATE_READ),
         ERR(E.EINVAL), OK0),
        ("MADV_DONTNEED_LOCKED (post-5.7)", lambda A: (A.addr(16), P, MADV_DONTNEED_LOCKED),
         ERR(E.EINVAL), OK0),
        ("unaligned start", lambda A: (A.addr(16) + 1, P, MADV_NORMAL), ERR(E.EINVAL), None),
        # len_in rounds up to 0 -> EINVAL; end < start -> EINVAL
        ("length 2^64-1", lambda A: (A.addr(16), (1 << 64) - 1, MADV_DONTNEED), ERR(E.EINVAL), None),
        ("length 2^64-4096 (end wraps)", lambda A: (A.addr(16), (1 << 64) - P, MADV_DONTNEED),
         ERR(E.EINVAL), None),
        # MADV_FREE: !vma_is_anonymous (shmem) -> EINVAL; WIPEONFORK: VM_SHARED -> EINVAL
        ("MADV_FREE on shared anonymous", lambda A: (A.addr(30), P, MADV_FREE), ERR(E.EINVAL), None),
        ("MADV_WIPEONFORK on shared anonymous", lambda A: (A.addr(30), P, MADV_WIPEONFORK),
         ERR(E.EINVAL), None),
    ]
    for name, args, want, live_want in cases:
        c.check(name, live(libc.madvise, *args(la)), model(t.madvise, *args(ma)), want, live_want)
    with la.hole(50, 2), ma.hole(50, 2):
        c.check("length 0 on a hole", live(libc.madvise, la.addr(50), 0, MADV_DONTNEED),
                model(t.madvise, ma.addr(50), 0, MADV_DONTNEED), OK0)
        c.check("a hole only", live(libc.madvise, la.addr(50), 2 * P, MADV_DONTNEED),
                model(t.madvise, ma.addr(50), 2 * P, MADV_DONTNEED), ERR(E.ENOMEM))
    c.done()
    ma.k.check()


def test_madvise_nothing_mapped_above(ma):
    # find_vma() returns NULL: ENOMEM at once.  (Model only: on the live process the
    # range above every VMA is not ours to name.)
    # (the stack VMA ends at TASK_SIZE 0x7ffffffff000: start right there)
    with pytest.raises(linmm.errors.ENOMEM):
        ma.t.madvise(0x7FFFFFFFF000, P, MADV_NORMAL)
    ma.k.check()


def test_madvise_over_a_hole_applies_then_enomem(la, ma):
    c = Cases()
    for A in (la, ma):
        A.map(70, 2)
        A.map(73, 2)
    data = b"D" * P
    with la.hole(72), ma.hole(72):
        for p in (70, 71, 73, 74):
            ctypes.memmove(la.addr(p), data, P)
            ma.t.write(ma.addr(p), data)
        c.check("MADV_DONTNEED over [rw rw] hole [rw rw]",
                live(libc.madvise, la.addr(71), 3 * P, MADV_DONTNEED),
                model(ma.t.madvise, ma.addr(71), 3 * P, MADV_DONTNEED), ERR(E.ENOMEM))
        for p, want in ((70, data), (71, bytes(P)), (73, bytes(P)), (74, data)):
            assert ctypes.string_at(la.addr(p), P) == want, f"live page {p}"
            assert ma.t.read(ma.addr(p), P) == want, f"model page {p}"
        # a flag advice is applied to both sides (VMA split at 71 and 74) and then ENOMEM
        c.check("MADV_DONTFORK over a hole",
                live(libc.madvise, la.addr(71), 3 * P, MADV_DONTFORK),
                model(ma.t.madvise, ma.addr(71), 3 * P, MADV_DONTFORK), ERR(E.ENOMEM))
        lm, mm_ = live_maps(la), model_maps(ma)
        assert lm == mm_
        assert [x for x in mm_ if 70 <= x[0] < 75] == [(70, 71, "rw-p"), (71, 72, "rw-p"),
                                                       (73, 74, "rw-p"), (74, 75, "rw-p")]
        msm = ma.smaps()
        for p, dc in ((70, False), (71, True), (73, True), (74, False)):
            assert ("dc" in smaps_value(live_smaps(la.addr(p)), "VmFlags")) == dc, f"live page {p}"
            assert ("dc" in smaps_value(smaps_block(msm, ma.addr(p)), "VmFlags")) == dc, f"model page {p}"
        # MADV_DODUMP over the hole as well (no flag change: still ENOMEM, no split)
        c.check("MADV_DODUMP over a hole", live(libc.madvise, la.addr(71), 3 * P, MADV_DODUMP),
                model(ma.t.madvise, ma.addr(71), 3 * P, MADV_DODUMP), ERR(E.ENOMEM))
    c.done()
    ma.k.check()


def test_madv_dontneed_zeroes_private_anonymous(la, ma):
    la.map(80, 4)
    ma.map(80, 4)
    pat = bytes(range(256)) * 16
    for p in range(80, 84):
        ctypes.memmove(la.addr(p), pat, P)
        ma.t.write(ma.addr(p), pat)
    assert live(libc.madvise, la.addr(81), 2 * P, MADV_DONTNEED) == OK0
    assert model(ma.t.madvise, ma.addr(81), 2 * P, MADV_DONTNEED) == OK0
    assert live_mincore(la.addr(80), 4 * P) == ("ok", b"\x01\x00\x00\x01")
    assert model(ma.t.mincore, ma.addr(80), 4 * P) == ("ok", b"\x01\x00\x00\x01")
    for p, want in ((80, pat), (81, bytes(P)), (82, bytes(P)), (83, pat)):
        assert ctypes.string_at(la.addr(p), P) == want
        assert ma.t.read(ma.addr(p), P) == want
    ma.k.check()


def test_madv_free(la, ma):
    # Live: 64 written pages, MADV_FREE.  Pages become lazyfree through a per-CPU batch
    # (6.x: folio batch of 31; v5.7: lru_lazyfree_pvecs, PAGEVEC_SIZE 15), so smaps
    # LazyFree counts what has been drained; with no memory pressure the data stays.
    la.map(100, 64)
    for p in range(100, 164):
        ctypes.memmove(la.addr(p), b"F" * 8, 8)
    assert live(libc.madvise, la.addr(100), 64 * P, MADV_FREE) == OK0
    lazy = int(smaps_value(live_smaps(la.addr(100)), "LazyFree")[0])
    assert 0 < lazy <= 256 and lazy % 4 == 0
    for p in range(100, 164):
        assert ctypes.string_at(la.addr(p), 8) in (b"F" * 8, bytes(8))   # kept or reclaimed

    # Model, v5.7 exactly: madvise_free_single_vma() does lru_add_drain() first, then
    # mark_page_lazyfree() puts each page on the lazyfree pagevec, which is moved (PageSwapBacked
    # cleared) when it holds PAGEVEC_SIZE = 15 pages.  15 pages -> one full pagevec -> 60 kB.
    ma.map(100, 15)
    for p in range(100, 115):
        ma.t.write(ma.addr(p), b"F" * 8)
    assert model(ma.t.madvise, ma.addr(100), 15 * P, MADV_FREE) == OK0
    blk = smaps_block(ma.smaps(), ma.addr(100))
    assert blk[smaps_index(blk, "LazyFree")] == "LazyFree:             60 kB"
    assert blk[smaps_index(blk, "Anonymous")] == "Anonymous:            60 kB"
    for p in range(100, 115):
        assert ma.t.read(ma.addr(p), 8) == b"F" * 8                     # no reclaim: data kept
    # writing a lazyfree page dirties its PTE: it no longer counts as LazyFree
    ma.t.write(ma.addr(100), b"G")
    blk = smaps_block(ma.smaps(), ma.addr(100))
    assert blk[smaps_index(blk, "LazyFree")] == "LazyFree:             56 kB"
    ma.k.check()


def smaps_index(block, key):
    for i, ln in enumerate(block):
        if ln.startswith(key + ":"):
            return i
    raise AssertionError(key)


# ================================================================== mincore
def test_mincore(la, ma):
    c = Cases()
    for A in (la, ma):
        A.map(16, 4)
    ctypes.memmove(la.addr(16), b"w", 1)             # written: a page
    ctypes.string_at(la.addr(17), 1)                 # read: the zero page
    ma.t.write(ma.addr(16), b"w")
    ma.t.touch(ma.addr(17), write=False)
    # untouched anonymous -> 0; present PTE, including the zero page -> 1
    c.check("untouched / written / zero page", live_mincore(la.addr(16), 4 * P),
            model(ma.t.mincore, ma.addr(16), 4 * P), ("ok", b"\x01\x01\x00\x00"))
    c.check("partial last page counts", live_mincore(la.addr(16), P + 1),
            model(ma.t.mincore, ma.addr(16), P + 1), ("ok", b"\x01\x01"))
    c.check("unaligned start", live_mincore(la.addr(16) + 1, P),
            model(ma.t.mincore, ma.addr(16) + 1, P), ERR(E.EINVAL))
    c.check("length 0", live_mincore(la.addr(16), 0), model(ma.t.mincore, ma.addr(16), 0), ("ok", b""))
    # access_ok() fails for a range beyond the user address space -> ENOMEM
    c.check("range beyond TASK_SIZE", live_mincore(0x7FFFFFFFF000 - P, 2 * P),
            model(ma.t.mincore, 0x7FFFFFFFF000 - P, 2 * P), ERR(E.ENOMEM))
    c.check("length 2^64-4096", live_mincore(la.addr(16), (1 << 64) - P),
            model(ma.t.mincore, ma.addr(16), (1 << 64) - P), ERR(E.ENOMEM))
    with la.hole(20), ma.hole(20):
        c.check("range with a hole", live_mincore(la.addr(18), 3 * P),
                model(ma.t.mincore, ma.addr(18), 3 * P), ERR(E.ENOMEM))
        c.check("a hole", live_mincore(la.addr(20), P), model(ma.t.mincore, ma.addr(20), P),
                ERR(E.ENOMEM))
    # the PROT_NONE reservation is an anonymous VMA: never touched -> 0
    c.check("PROT_NONE reservation", live_mincore(la.addr(200), 2 * P),
            model(ma.t.mincore, ma.addr(200), 2 * P), ("ok", b"\x00\x00"))
    c.done()
    ma.k.check()


# ================================================================== mremap
def test_mremap_errnos(la, ma):
    c = Cases()
    for A in (la, ma):
        A.map(16, 4)
        A.map(20, 1, PROT_READ)                      # a second VMA right after the first
    cases = [
        ("unknown flag 8", lambda A: (A.addr(16), P, P, 8, 0), ERR(E.EINVAL)),
        ("MREMAP_FIXED without MREMAP_MAYMOVE", lambda A: (A.addr(16), P, P, MREMAP_FIXED, A.addr(200)),
         ERR(E.EINVAL)),
        ("MREMAP_DONTUNMAP without MREMAP_MAYMOVE", lambda A: (A.addr(16), P, P, MREMAP_DONTUNMAP, 0),
         ERR(E.EINVAL)),
        ("MREMAP_DONTUNMAP with a size change",
         lambda A: (A.addr(16), P, 2 * P, MREMAP_DONTUNMAP | MREMAP_MAYMOVE, 0), ERR(E.EINVAL)),
        ("unaligned address", lambda A: (A.addr(16) + 1, P, 2 * P, MREMAP_MAYMOVE, 0), ERR(E.EINVAL)),
        ("new length 0", lambda A: (A.addr(16), P, 0, MREMAP_MAYMOVE, 0), ERR(E.EINVAL)),
        # PAGE_ALIGN(new_len) wraps to 0 -> EINVAL
        ("new length 2^64-1", lambda A: (A.addr(16), P, (1 << 64) - 1, MREMAP_MAYMOVE, 0), ERR(E.EINVAL)),
        # mremap_to: offset_in_page(new_addr); overlapping old and new ranges
        ("MREMAP_FIXED to an unaligned address",
         lambda A: (A.addr(16), P, P, MREMAP_FIXED | MREMAP_MAYMOVE, A.addr(200) + 1), ERR(E.EINVAL)),
        ("MREMAP_FIXED onto an overlapping range",
         lambda A: (A.addr(16), 2 * P, 2 * P, MREMAP_FIXED | MREMAP_MAYMOVE, A.addr(17)), ERR(E.EINVAL)),
        # vma_to_resize: old_len > vma->vm_end - addr -> EFAULT (the range spans two VMAs)
        ("grow a range that spans two VMAs", lambda A: (A.addr(18), 3 * P, 6 * P, MREMAP_MAYMOVE, 0),
         ERR(E.EFAULT)),
        # growing in place is blocked by the next VMA and moving is not allowed -> ENOMEM
        ("grow in place blocked, no MAYMOVE", lambda A: (A.addr(16), 4 * P, 8 * P, 0, 0), ERR(E.ENOMEM)),
    ]
    for name, args, want in cases:
        lr = where(la, live(libc.mremap, *args(la)))
        forget_outside(la, lr, args(la)[2])
        mr = where(ma, model(ma.t.mremap, *args(ma)))
        c.check(name, lr, mr, want)
    with la.hole(50, 2), ma.hole(50, 2):
        # vma_to_resize: !vma || vma->vm_start > addr -> EFAULT
        c.check("grow an unmapped address", live(libc.mremap, la.addr(50), P, 2 * P, MREMAP_MAYMOVE, 0),
                model(ma.t.mremap, ma.addr(50), P, 2 * P, MREMAP_MAYMOVE), ERR(E.EFAULT))
    c.done()
    assert live_maps(la) == model_maps(ma)
    ma.k.check()


def test_mremap_duplicating_a_private_mapping_is_einval(la, ma):
    # vma_to_resize(): "!old_len && !(vm_flags & (VM_SHARED | VM_MAYSHARE))" -> EINVAL
    # (pr_warn_once "attempted to duplicate a private mapping with mremap")
    for A in (la, ma):
        A.map(16, 2)
    lr = live(libc.mremap, la.addr(16), 0, P, MREMAP_MAYMOVE, 0)
    forget_outside(la, lr, P)
    mr = model(ma.t.mremap, ma.addr(16), 0, P, MREMAP_MAYMOVE)
    c = Cases()
    c.check("mremap(private, old_len 0, MAYMOVE)", lr, mr, ERR(E.EINVAL))
    c.done()
    ma.k.check()


def test_mremap_v57_semantics_where_the_live_kernel_differs(la, ma):
    """Cases whose v5.7 result differs from the live 6.x kernel.  Each runs on the live
    kernel first (its result is recorded, not asserted), then the model is held to v5.7."""
    c = Cases()
    for A in (la, ma):
        A.map(16, 4)
        A.map(20, 2, PROT_READ)
        A.map(30, 2, RW, SHARED)
    seen = {}
    with la.hole(50, 2), ma.hole(50, 2):
        # v5.7: "if (old_len >= new_len)" shrinks with __do_munmap() and returns addr without
        # looking up a VMA (munmap of nothing is 0); 6.x looks the VMA up first -> EFAULT.
        seen["shrink"] = live(libc.mremap, la.addr(50), 2 * P, P, 0, 0)        # 6.18: EFAULT
        c.model_only("shrink an unmapped range",
                     where(ma, model(ma.t.mremap, ma.addr(50), 2 * P, P)), ("ok", ("page", 50)))
        seen["same"] = live(libc.mremap, la.addr(50), P, P, 0, 0)              # 6.18: EFAULT
        c.model_only("same size on an unmapped range",
                     where(ma, model(ma.t.mremap, ma.addr(50), P, P)), ("ok", ("page", 50)))
    # v5.7 mremap_to() -> vma_to_resize(): old_len > vm_end - addr -> EFAULT even for a
    # same-size MREMAP_FIXED move; 6.17+ moves several VMAs at once (the live call succeeds).
    lr = live(libc.mremap, la.addr(18), 3 * P, 3 * P, MREMAP_MAYMOVE | MREMAP_FIXED, la.addr(200))
    seen["fixed move of two VMAs"] = lr
    if lr[0] == "ok":                                # undo the live move
        la.map(18, 2)
        la.map(20, 1, PROT_READ)
        la.map(200, 3, PROT_NONE)
    c.model_only("same-size MREMAP_FIXED move of a range spanning two VMAs",
                 model(ma.t.mremap, ma.addr(18), 3 * P, 3 * P, MREMAP_MAYMOVE | MREMAP_FIXED,
                       ma.addr(200)), ERR(E.EFAULT))
    # v5.7 vma_to_resize(): MREMAP_DONTUNMAP needs a private anonymous VMA -> EINVAL on
    # shared anonymous; 5.13 relaxed it to VM_DONTEXPAND|VM_PFNMAP (the live call succeeds).
    lr = live(libc.mremap, la.addr(30), 2 * P, 2 * P, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0)
    seen["DONTUNMAP shared"] = lr                                              # 6.18: moved
    forget_outside(la, lr, 2 * P)
    c.model_only("MREMAP_DONTUNMAP of shared anonymous memory",
                 model(ma.t.mremap, ma.addr(30), 2 * P, 2 * P, MREMAP_MAYMOVE | MREMAP_DONTUNMAP),
                 ERR(E.EINVAL))
    c.done()
    print("live kernel results for the v5.7-differing cases:", seen)
    ma.k.check()


def test_mremap_grow_move_shrink(la, ma):
    pat = bytes(range(256)) * 16
    for A in (la, ma):
        A.map(16, 2)
    ctypes.memmove(la.addr(16), pat, P)
    ma.t.write(ma.addr(16), pat)
    # the reservation follows the VMA: punch room so that it can grow in place
    assert libc.munmap(la.addr(18), 2 * P) == 0
    ma.t.munmap(ma.addr(18), 2 * P)
    lr = where(la, live(libc.mremap, la.addr(16), 2 * P, 4 * P, 0, 0))
    mr = where(ma, model(ma.t.mremap, ma.addr(16), 2 * P, 4 * P))
    if lr != ("ok", ("page", 16)):
        la.refill(18, 2)
    la.claimed.update((18, 19))
    assert lr == mr == ("ok", ("page", 16)), "grow in place"
    assert live_maps(la) == model_maps(ma)
    assert (16, 20, "rw-p") in model_maps(ma)
    # move with MREMAP_FIXED into the area: data follows, the old range is unmapped
    lr = where(la, live(libc.mremap, la.addr(16), 4 * P, 4 * P, MREMAP_MAYMOVE | MREMAP_FIXED, la.addr(120)))
    mr = where(ma, model(ma.t.mremap, ma.addr(16), 4 * P, 4 * P, MREMAP_MAYMOVE | MREMAP_FIXED, ma.addr(120)))
    la.claimed.difference_update(range(16, 20))
    la.claimed.update(range(120, 124))
    assert lr == mr == ("ok", ("page", 120)), "move"
    assert ctypes.string_at(la.addr(120), P) == pat
    assert ma.t.read(ma.addr(120), P) == pat
    lm, mm_ = live_maps(la), model_maps(ma)
    la.refill(16, 4)
    ma.refill(16, 4)
    assert lm == mm_
    assert (120, 124, "rw-p") in mm_ and not any(s <= 16 < e for s, e, _ in mm_)
    # shrink: the tail is unmapped, the address is returned
    lr = where(la, live(libc.mremap, la.addr(120), 4 * P, P, 0, 0))
    mr = where(ma, model(ma.t.mremap, ma.addr(120), 4 * P, P))
    assert lr == mr == ("ok", ("page", 120)), "shrink"
    lm, mm_ = live_maps(la), model_maps(ma)
    la.refill(121, 3)
    ma.refill(121, 3)
    assert lm == mm_
    assert ma.t.read(ma.addr(120), P) == pat
    ma.k.check()


# ================================================================== brk
def _live_brk_child():
    """In a forked child (whose heap this test may move): brk results and [heap] lines."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                      # child
        try:
            libc.mallopt(M_MMAP_THRESHOLD, 0)         # keep glibc malloc off brk meanwhile
            out = {}
            b0 = libc.syscall(SYS_brk, 0)
            out["b0"] = b0
            out["below_start"] = libc.syscall(SYS_brk, 1)
            out["grow"] = libc.syscall(SYS_brk, b0 + (1 << 20) + 5)
            with open("/proc/self/maps") as f:
                out["heap_after_grow"] = [ln.rstrip("\n") for ln in f if ln.endswith("[heap]\n")]
            out["shrink"] = libc.syscall(SYS_brk, b0)
            # a mapping 2 pages above the break blocks growth to it (needs one free page gap)
            top = page_align(b0)
            blk = libc.mmap(top + 2 * P, P, PROT_NONE, PRIV | MAP_FIXED_NOREPLACE, -1, 0)
            out["blocker"] = blk == top + 2 * P
            out["blocked"] = libc.syscall(SYS_brk, top + 2 * P)
            out["fits"] = libc.syscall(SYS_brk, top + P)
            libc.syscall(SYS_brk, b0)
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def test_brk(ma):
    lv = _live_brk_child()
    b0 = lv["b0"]
    assert lv["below_start"] == b0                    # failure returns the old break
    assert lv["grow"] == b0 + (1 << 20) + 5           # success returns the requested value
    heap_end = page_align(b0 + (1 << 20) + 5)
    assert any(int(ln.split()[0].split("-")[1], 16) == heap_end for ln in lv["heap_after_grow"])
    assert lv["shrink"] == b0
    if lv["blocker"]:
        assert lv["blocked"] == b0 and lv["fits"] == page_align(b0) + P

    t, k = ma.t, ma.k
    B = 0x555555559000                                # the model's start_brk (primer)
    assert t.brk(0) == B
    assert t.brk(1) == B                              # below start_brk: the old break
    assert t.brk(B + (1 << 20) + 5) == B + (1 << 20) + 5
    heap = [ln for ln in k.read_file(f"/proc/{t.pid}/maps").split("\n") if ln.endswith("[heap]")]
    head = f"{B:08x}-{page_align(B + (1 << 20) + 5):08x} rw-p 00000000 00:00 0"
    assert heap == [head + " " * (73 - len(head)) + "[heap]"]
    live_heap = [ln for ln in lv["heap_after_grow"]
                 if int(ln.split()[0].split("-")[1], 16) == heap_end][0]
    assert live_heap.index("[heap]") == heap[0].index("[heap]") == 73   # name column
    assert smaps_value(smaps_block(k.read_file(f"/proc/{t.pid}/smaps"), B), "VmFlags")[:6] == \
        ["rd", "wr", "mr", "mw", "me", "ac"]
    assert t.brk(B) == B                              # shrinking always allowed
    assert not [ln for ln in k.read_file(f"/proc/{t.pid}/maps").split("\n") if ln.endswith("[heap]")]
    # next VMA too close: "newbrk + PAGE_SIZE > vm_start_gap(next)" -> old break
    t.mmap(B + 2 * P, P, PROT_NONE, PRIV | MAP_FIXED_NOREPLACE)
    assert t.brk(B + 2 * P) == B
    assert t.brk(B + P) == B + P
    k.check()


# ================================================================== SIGSEGV
def _live_fault(addr, write):
    """Touch addr in a ptrace'd child; the SIGSEGV siginfo (signo, code, addr)."""
    pid = os.fork()
    if pid == 0:
        try:
            libc.ptrace(PTRACE_TRACEME, 0, None, None)
            if write:
                ctypes.memmove(addr, b"x", 1)
            else:
                ctypes.string_at(addr, 1)
        finally:
            os._exit(0)
    _, st = os.waitpid(pid, 0)
    try:
        if not os.WIFSTOPPED(st):
            return None
        buf = ctypes.create_string_buffer(128)
        assert libc.ptrace(PTRACE_GETSIGINFO, pid, None, buf) == 0
        signo, _errno, code = struct.unpack_from("iii", buf.raw, 0)
        (si_addr,) = struct.unpack_from("Q", buf.raw, 16)
        return (signo, code, si_addr)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_sigsegv_codes(la, ma):
    for A in (la, ma):
        A.map(16, 1, PROT_READ)
    t = ma.t
    with la.hole(50), ma.hole(50):
        cases = [("unmapped read", 50, False, 1),       # SEGV_MAPERR
                 ("unmapped write", 50, True, 1),
                 ("write to PROT_READ", 16, True, 2),     # SEGV_ACCERR
                 ("read of PROT_NONE", 100, False, 2)]
        for name, page, write, code in cases:
            assert _live_fault(la.addr(page), write) == (11, code, la.addr(page)), name
            with pytest.raises(linmm.Signal) as si:
                t.touch(ma.addr(page), write=write)
            assert (si.value.signo, si.value.code, si.value.addr) == (11, code, ma.addr(page)), name
            assert t.signals[-1] == (11, code, ma.addr(page)), name
    ma.k.check()


# ================================================================== /proc/<pid>/pagemap
def _live_pagemap(addr, n=1):
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        return struct.unpack(f"{n}Q", os.pread(fd, 8 * n, (addr >> 12) * 8))
    finally:
        os.close(fd)


def _model_pagemap(ma, addr, n=1):
    return struct.unpack(f"{n}Q", ma.k.read_file(f"/proc/{ma.t.pid}/pagemap", (addr >> 12) * 8, 8 * n))


def test_pagemap_bits(la, ma):
    for A in (la, ma):
        A.map(16, 4)
    ctypes.memmove(la.addr(16), b"w", 1)
    ctypes.string_at(la.addr(17), 1)
    ctypes.string_at(la.addr(19), 1)
    ma.t.write(ma.addr(16), b"w")
    ma.t.touch(ma.addr(17), write=False)
    ma.t.touch(ma.addr(19), write=False)
    with la.hole(50), ma.hole(50):
        lv = _live_pagemap(la.addr(16), 4) + _live_pagemap(la.addr(50))
        mv = _model_pagemap(ma, ma.addr(16), 4) + _model_pagemap(ma, ma.addr(50))
    # The live kernel is built without CONFIG_MEM_SOFT_DIRTY (bit 55 never set); v5.7 as
    # modelled has it: compare everything but the PFN and bit 55, then check bit 55 apart.
    flags = lambda v: v & ~(PM_PFN | PM_SOFT_DIRTY)  # noqa: E731
    assert [flags(v) for v in lv] == [flags(v) for v in mv]
    written, zero, untouched, zero2, hole = mv
    assert written & PM_PRESENT and written & PM_EXCLUSIVE and not written & (PM_FILE | PM_SWAP)
    assert written & PM_PFN and written & PM_PFN != ma.k.zero_pfn
    # zero page: present, PFN of the zero page, neither exclusive nor file (vm_normal_page NULL)
    assert zero & PM_PRESENT and not zero & (PM_EXCLUSIVE | PM_FILE)
    assert zero & PM_PFN == ma.k.zero_pfn and zero2 & PM_PFN == ma.k.zero_pfn
    assert lv[1] & PM_PFN == lv[3] & PM_PFN != 0      # live: one shared zero page too
    assert lv[2] == 0 and hole == 0 and lv[4] == 0
    # v5.7 with CONFIG_MEM_SOFT_DIRTY: mmap_region() sets VM_SOFTDIRTY, so every page of the
    # new VMA reports bit 55 (an empty PTE gives exactly PM_SOFT_DIRTY); a hole gives 0
    assert untouched == PM_SOFT_DIRTY
    assert written & PM_SOFT_DIRTY and zero & PM_SOFT_DIRTY

    # after fork the written page is mapped twice: no longer exclusive; the child's exit
    # makes it exclusive again
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.read(r, 1)
        finally:
            os._exit(0)
    try:
        lshared = _live_pagemap(la.addr(16))[0]
    finally:
        os.write(w, b"x")
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
    c = ma.t.fork()
    mshared = _model_pagemap(ma, ma.addr(16))[0]
    assert lshared & PM_PRESENT and not lshared & PM_EXCLUSIVE
    assert mshared & PM_PRESENT and not mshared & PM_EXCLUSIVE
    c.exit()
    assert _model_pagemap(ma, ma.addr(16))[0] & PM_EXCLUSIVE
    assert _live_pagemap(la.addr(16))[0] & PM_EXCLUSIVE
    ma.k.check()


def test_pagemap_read_alignment(la, ma):
    # pagemap_read: (*ppos % PM_ENTRY_BYTES) || (count % PM_ENTRY_BYTES) -> EINVAL
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        for off, cnt in ((la.addr(16) // P * 8 + 3, 8), (la.addr(16) // P * 8, 5)):
            with pytest.raises(OSError) as ei:
                os.pread(fd, cnt, off)
            assert ei.value.errno == E.EINVAL
    finally:
        os.close(fd)
    path = f"/proc/{ma.t.pid}/pagemap"
    for off, cnt in ((ma.addr(16) // P * 8 + 3, 8), (ma.addr(16) // P * 8, 5)):
        with pytest.raises(linmm.errors.EINVAL) as ei:
            ma.k.read_file(path, off, cnt)
        assert ei.value.errno == E.EINVAL
    ma.k.check()


# ================================================================== smaps / status formats
POST_57_SMAPS = {"Pss_Dirty", "KSM"}                 # 6.0 / 6.x
SMAPS_KB = re.compile(r"([A-Za-z_]+):( +)(\d+) kB")


def test_smaps_fields_and_format(la, ma):
    for A in (la, ma):
        A.map(16, 4)
    ctypes.memmove(la.addr(16), b"w", 1)
    ctypes.string_at(la.addr(17), 1)
    ma.t.write(ma.addr(16), b"w")
    ma.t.touch(ma.addr(17), write=False)
    lb = live_smaps(la.addr(16))
    mb = smaps_block(ma.smaps(), ma.addr(16))
    assert ANON_LINE.fullmatch(lb[0]) and ANON_LINE.fullmatch(mb[0])
    assert lb[0].split()[1:] == mb[0].split()[1:]
    lkeys = [ln.split(":")[0] for ln in lb[1:]]
    mkeys = [ln.split(":")[0] for ln in mb[1:]]
    # ProtectionKey is printed only when the CPU has OSPKE (not on this machine)
    assert [x for x in lkeys if x not in POST_57_SMAPS and x != "ProtectionKey"] == \
        [x for x in mkeys if x != "ProtectionKey"]
    assert mkeys[-3:] == ["Locked", "THPeligible", "VmFlags"]
    lv = {ln.split(":")[0]: ln for ln in lb[1:]}
    for ln in mb[1:]:
        key = ln.split(":")[0]
        if key in ("THPeligible", "VmFlags"):
            continue
        m = SMAPS_KB.fullmatch(ln)
        assert m, repr(ln)
        # same numbers as the live kernel for the same history (4 pages, 1 written, 1 read)
        assert int(m.group(3)) == int(SMAPS_KB.fullmatch(lv[key]).group(3)), key
        if key == "FilePmdMapped":
            # v5.7: SEQ_PUT_DEC(" kB\nFilePmdMapped: ", ...): one space, value column one to
            # the left (the live kernel has the later whitespace fix: two spaces)
            assert ln == f"FilePmdMapped: {int(m.group(3)):8d} kB"
        elif key == "Private_Hugetlb":
            assert ln == f"Private_Hugetlb: {int(m.group(3)):7d} kB" == lv[key]
        else:
            # SEQ_PUT_DEC: a 16-column label then %8lu, as on the live kernel
            assert ln == f"{key + ':':<16}{int(m.group(3)):8d} kB" == lv[key], key
    assert smaps_value(mb, "Rss") == ["4", "kB"]              # the zero page is not counted
    assert smaps_value(mb, "Private_Dirty") == ["4", "kB"]
    # v5.7: seq_printf(m, "THPeligible:\t\t%d\n", ...) (the live kernel pads with spaces)
    assert mb[mkeys.index("THPeligible") + 1] == "THPeligible:\t\t0"
    assert re.fullmatch(r"THPeligible: +0", lv["THPeligible"])
    # VmFlags: mnemonics and a trailing space; the model also shows "sd" (v5.7 with
    # CONFIG_MEM_SOFT_DIRTY: mmap_region sets VM_SOFTDIRTY), which the live kernel lacks
    mflags = mb[-1]
    assert mflags.startswith("VmFlags: ") and mflags.endswith(" ")
    assert lv["VmFlags"].endswith(" ")
    assert mflags.split()[1:] == ["rd", "wr", "mr", "mw", "me", "ac", "sd"]
    assert [f for f in mflags.split()[1:] if f != "sd"] == lv["VmFlags"].split()[1:]
    ma.k.check()


POST_57_STATUS = {"Kthread", "untag_mask", "Seccomp_filters", "SpeculationIndirectBranch",
                  "x86_Thread_features", "x86_Thread_features_locked"}
KB8 = r"[ \d]{7}\d kB"
STATUS_SHAPES = {
    "Name": r"\S.*", "Umask": r"0[0-7]{3}", "State": r"[RSDTtXZPI] \([a-z ]+\)",
    "Tgid": r"\d+", "Ngid": r"\d+", "Pid": r"\d+", "PPid": r"\d+", "TracerPid": r"\d+",
    "Uid": r"\d+\t\d+\t\d+\t\d+", "Gid": r"\d+\t\d+\t\d+\t\d+", "FDSize": r"\d+",
    "Groups": r"(\d+( \d+)*)? ", "NStgid": r"\d+(\t\d+)*", "NSpid": r"\d+(\t\d+)*",
    "NSpgid": r"\d+(\t\d+)*", "NSsid": r"\d+(\t\d+)*",
    **{k_: KB8 for k_ in ("VmPeak", "VmSize", "VmLck", "VmPin", "VmHWM", "VmRSS", "RssAnon", "RssFile",
                          "RssShmem", "VmData", "VmStk", "VmExe", "VmLib", "VmPTE", "VmSwap",
                          "HugetlbPages")},
    "CoreDumping": r"[01]", "THP_enabled": r"[01]", "Threads": r"\d+", "SigQ": r"\d+/\d+",
    **{k_: r"[0-9a-f]{16}" for k_ in ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt", "CapInh",
                                      "CapPrm", "CapEff", "CapBnd", "CapAmb")},
    "NoNewPrivs": r"[01]", "Seccomp": r"[012]",
    "Speculation_Store_Bypass": r"unknown|not vulnerable|thread force mitigated|thread mitigated|"
                                r"thread vulnerable|globally mitigated|vulnerable",
    "Cpus_allowed": r"[0-9a-f]+(,[0-9a-f]{8})*", "Cpus_allowed_list": r"\d+(-\d+)?(,\d+(-\d+)?)*",
    "Mems_allowed": r"[0-9a-f]{8}(,[0-9a-f]{8})*", "Mems_allowed_list": r"\d+(-\d+)?(,\d+(-\d+)?)*",
    "voluntary_ctxt_switches": r"\d+", "nonvoluntary_ctxt_switches": r"\d+",
}


def _status_fields(text):
    assert text.endswith("\n")
    out = []
    for ln in text[:-1].split("\n"):
        key, sep, val = ln.partition(":\t")
        assert sep, repr(ln)
        out.append((key, val))
    return out


def test_status_fields_and_format(ma):
    with open("/proc/self/status") as f:
        lf = _status_fields(f.read())
    ma.map(16, 1)
    ma.t.write(ma.addr(16), b"x")                    # some RSS in the model
    mf = _status_fields(ma.k.read_file(f"/proc/{ma.t.pid}/status"))
    lkeys = [key for key, _ in lf if key not in POST_57_STATUS]
    mkeys = [key for key, _ in mf]
    assert mkeys == lkeys
    bad = []
    for side, fields in (("live", lf), ("model", mf)):
        for key, val in fields:
            if key in POST_57_STATUS:
                continue
            if not re.fullmatch(STATUS_SHAPES[key], val):
                bad.append(f"{side} {key}:\t{val!r}")
    assert not bad, bad
    md = dict(mf)
    assert md["Name"] == "sys" and md["State"] == "R (running)"
    assert md["VmStk"] == f"{132:8d} kB"
    assert md["VmRSS"] == f"{4:8d} kB" and md["RssAnon"] == f"{4:8d} kB"
    # VmSize = total_vm: the 132 KiB stack + the 1 MiB reservation
    assert md["VmSize"] == f"{132 + NPAGES * 4:8d} kB"
    ma.k.check()
