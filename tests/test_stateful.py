"""Stateful random testing of the task memory syscalls against a shadow model.

A hypothesis RuleBasedStateMachine drives random sequences of spawn, fork,
exit, mmap (private/shared anonymous, random prot, MAP_FIXED over existing
mappings, MAP_FIXED_NOREPLACE, hints, MAP_POPULATE), munmap, mprotect, mremap
(shrink, grow in place, MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP, the
shared "duplicate" old_len == 0 form), brk, madvise, write, read and t.access
on a few tasks of one 128 MiB machine.

The shadow model keeps, per task, a dict page address -> attributes (prot,
shared object and its page index, DONTFORK / WIPEONFORK / RANDOM / SEQUENTIAL
advice) and a dict page address -> bytes for private anonymous contents (only
non-zero pages are stored).  MAP_SHARED|MAP_ANONYMOUS mappings are modelled as
a shmem object of the mapping's size (mm/shmem.c shmem_zero_setup): pages past
its end give SIGBUS (shmem_fault -> VM_FAULT_SIGBUS beyond i_size), which is
what an mremap-grown shared mapping has; the object is shared by fork and keeps
its data across MADV_DONTNEED.  Private memory is copy-on-write: a fork copies
the shadow (minus VM_DONTCOPY mappings, and with VM_WIPEONFORK mappings empty).

Every result is predicted from Linux v5.7 semantics (mm/mmap.c, mm/mremap.c,
mm/mprotect.c, mm/madvise.c, arch/x86/mm/fault.c, arch/x86/kernel/sys_x86_64.c):
return values, the errno of failed calls (which must also be in the set of
errnos the call may legitimately return), the partial effects of failed calls
(mprotect / madvise stop at the first hole, MREMAP_FIXED unmaps the target
before it can fail), the addresses chosen by the top-down allocator, and the
signal (signo, si_code, address) of every bad access.

MADV_FREE: Linux only discards a lazily-freed page when reclaim finds it clean;
until then (and for ever once it is written again) it keeps its data.  linmm's
reclaim frees nothing (docs/STATUS.md, primer) and this small workload never
reaches the watermarks, so the shadow keeps MADV_FREE data; the invariant
asserts pglazyfreed stays 0, so a reclaim that did drop pages would be reported
as such instead of as lost data.

VMA boundaries are the one thing the shadow does not predict on its own (they
depend on anon_vma history); mremap's EFAULT / grow-in-place decisions take the
VMA at the old address from the model.  When mprotect or madvise changes the
flags of exactly one VMA, the test evaluates v5.7 vma_merge() on the model's
pre-call VMAs (flags, file, pgoff, anon_vma and anon_vma_chain) and asserts the
merges it must do.

After every step: k.check(); /proc/<pid>/maps, smaps (Rss = pte_present()
normal pages, Swap 0) and the VMA list agree with the shadow (ranges, perms,
shared-object identity and offsets, advice flags); total_vm/data_vm/exec_vm/
stack_vm and brk agree; every present PTE maps a page holding exactly the
shadow bytes, no private data is lost, and every non-zero readable page reads
back exactly through t.read.  At the end of each example every readable page is
read back, all tasks exit, and the machine must be back to its boot state (no
anonymous/shmem pages, no commit charge, no leaked page).

The plain tests at the end are hand-reduced forms of failures the machine found.
"""
from __future__ import annotations

import bisect
from collections import namedtuple

import numpy as np
import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.internal.conjecture import engine as _engine
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import linmm
from linmm import (BUS_ADRERR, MADV_DOFORK, MADV_DONTFORK, MADV_DONTNEED, MADV_FREE,
                   MADV_KEEPONFORK, MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED,
                   MADV_WIPEONFORK, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_POPULATE,
                   MAP_PRIVATE, MAP_SHARED, MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE,
                   PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE, SEGV_ACCERR, SEGV_MAPERR, SIGBUS,
                   SIGSEGV)
from linmm.errors import EEXIST, EFAULT, EINVAL, ENOMEM, Errno

# x86 PTE bits (arch/x86/include/asm/pgtable_types.h); pte_present() is PRESENT|PROTNONE
_PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_SPECIAL = 0x1, 0x100, 0x200

P = 4096
PMD = 1 << 21
ZERO = bytes(P)
TASK_SIZE = 0x7FFFFFFFF000
MMAP_MIN_ADDR = 65536
STACK_GUARD_GAP = 256 << 12
STACK_TOP = 0x7FFFFFFFF000
STACK_START = STACK_TOP - 4096 - (128 << 10)      # spawn(): 132 KiB stack VMA
DEFAULT_BRK = 0x555555559000
# arch/x86/mm/mmap.c mmap_base() without randomization: the gap below TASK_SIZE is
# RLIMIT_STACK (8 MiB) + stack_guard_gap, raised to the 128 MiB minimum
MMAP_BASE = TASK_SIZE - (128 << 20)
ARENA = 0x40000000 - 16 * P                         # a PMD boundary at arena page 16
ARENA_PAGES = 40
BIG = 0x80000000                                    # PMD-aligned slots for whole-PMD moves
BIG_SLOTS = 4
BIG_PAGES = 512
MAX_TASKS = 4

# VM_* bits as Linux defines them (include/linux/mm.h), to read t.mm.vmas
VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_MAYSHARE = 0x1, 0x2, 0x4, 0x8, 0x80
VM_SEQ_READ, VM_RAND_READ, VM_DONTCOPY, VM_WIPEONFORK = 0x8000, 0x10000, 0x20000, 0x2000000
VM_ACCOUNT, VM_NORESERVE, VM_HUGETLB, VM_SOFTDIRTY = 0x100000, 0x200000, 0x400000, 0x8000000

# shadow advice bits
DC, WF, RR, SR, STK = 1, 2, 4, 8, 16

RWX = PROT_READ | PROT_WRITE | PROT_EXEC

# errnos each call may legitimately return (man pages / v5.7 source)
ALLOWED = {
    "mmap": {EINVAL, ENOMEM, EEXIST, linmm.errors.EPERM, linmm.errors.EACCES,
             linmm.errors.EAGAIN, linmm.errors.EOVERFLOW},
    "munmap": {EINVAL},
    "mprotect": {EINVAL, ENOMEM, linmm.errors.EACCES},
    "madvise": {EINVAL, ENOMEM, linmm.errors.EAGAIN, linmm.errors.EBADF, linmm.errors.EIO,
                linmm.errors.EPERM},
    "mremap": {EINVAL, EFAULT, ENOMEM, linmm.errors.EAGAIN},
}

Attr = namedtuple("Attr", "prot shm pgoff adv")


class Shm:
    """A shared anonymous object (tmpfs inode of the mapping's size)."""

    _ids = 0

    def __init__(self, npages: int):
        self.npages = npages
        self.data: dict[int, bytes] = {}
        Shm._ids += 1
        self.id = Shm._ids

    def __repr__(self):
        return f"<shm#{self.id} {self.npages}p>"


class Expected(Exception):
    """The shadow predicts that the call fails with this errno class."""

    def __init__(self, cls):
        super().__init__(cls.__name__)
        self.cls = cls


class TaskShadow:
    def __init__(self, task):
        self.t = task
        self.vm: dict[int, Attr] = {}
        self.mem: dict[int, bytes] = {}
        self.start_brk = self.brk = DEFAULT_BRK

    def copy_for(self, child) -> "TaskShadow":
        c = TaskShadow(child)
        c.start_brk, c.brk = self.start_brk, self.brk
        for a, at in self.vm.items():
            if at.adv & DC:
                continue
            c.vm[a] = at
            if at.shm is None and not at.adv & WF and a in self.mem:
                c.mem[a] = self.mem[a]
        return c

    # ---- contents
    def content(self, a: int) -> bytes:
        at = self.vm[a]
        if at.shm is None:
            return self.mem.get(a, ZERO)
        return at.shm.data.get(at.pgoff, ZERO)

    def set_content(self, a: int, data: bytes) -> None:
        at = self.vm[a]
        if at.shm is None:
            self.mem[a] = data
        else:
            at.shm.data[at.pgoff] = data

    def fault(self, addr: int, write: bool):
        """None if the access succeeds, else the expected (signo, si_code)."""
        at = self.vm.get(addr & ~0xFFF)
        if at is None:
            return SIGSEGV, SEGV_MAPERR
        if write and not at.prot & PROT_WRITE:
            return SIGSEGV, SEGV_ACCERR
        if not at.prot & RWX:
            return SIGSEGV, SEGV_ACCERR
        if at.shm is not None and at.pgoff >= at.shm.npages:
            return SIGBUS, BUS_ADRERR
        return None

    def readable_data_page(self, a: int) -> bool:
        return self.fault(a, False) is None

    # ---- layout
    def unmap(self, start: int, end: int) -> None:
        for a in range(start, end, P):
            self.vm.pop(a, None)
            self.mem.pop(a, None)

    def map_new(self, start: int, npages: int, prot: int, shared: bool) -> None:
        shm = Shm(npages) if shared else None
        for i in range(npages):
            a = start + i * P
            self.vm[a] = Attr(prot, shm, i if shared else 0, 0)
            self.mem.pop(a, None)

    def runs(self, with_stack: bool = False):
        """Maximal runs of contiguous mapped pages: (start, end, is_stack)."""
        out = []
        for a in sorted(self.vm):
            stk = bool(self.vm[a].adv & STK)
            if out and out[-1][1] == a and out[-1][2] == stk:
                out[-1][1] = a + P
            else:
                out.append([a, a + P, stk])
        return [tuple(r) for r in out if with_stack or not r[2]]

    def next_mapped(self, addr: int):
        """The start gap (vm_start_gap) of the first VMA ending above addr, and
        whether addr itself is mapped."""
        if addr in self.vm:
            return addr, True
        best = None
        for a in self.vm:
            if a > addr and (best is None or a < best):
                best = a
        if best is None:
            return None, False
        return (best - STACK_GUARD_GAP if self.vm[best].adv & STK else best), False

    def topdown(self, length: int, high: int) -> int:
        """vm_unmapped_area(TOPDOWN, low_limit PAGE_SIZE, high_limit mmap_base)."""
        gaps = []
        prev_end = 0
        for s, e, stk in self.runs(with_stack=True):
            gaps.append((prev_end, s - STACK_GUARD_GAP if stk else s))
            prev_end = e
        gaps.append((prev_end, TASK_SIZE))
        for gs, ge in reversed(gaps):
            ge2, gs2 = min(ge, high), max(gs, P)
            if ge2 - gs2 >= length:
                return ge2 - length
        raise AssertionError("shadow: no room top-down (test layout too large)")

    def hint_ok(self, hint: int, length: int) -> bool:
        """arch_get_unmapped_area_topdown's check of a hint address."""
        if hint < MMAP_MIN_ADDR or TASK_SIZE - length < hint:
            return False
        gap, mapped = self.next_mapped(hint)
        if mapped:
            return False
        return gap is None or hint + length <= gap


def pattern(seed: int, n: int) -> bytes:
    """n non-zero bytes derived from seed."""
    return ((np.arange(n, dtype=np.uint32) * 7 + seed * 131) % 255 + 1).astype(np.uint8).tobytes()


def palign(x: int) -> int:
    return (x + P - 1) & ~(P - 1)


prots = st.sampled_from([PROT_READ | PROT_WRITE] * 5 + [PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC,
                         PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE | PROT_EXEC])
task_ix = st.integers(0, MAX_TASKS - 1)
# (kind, index, page offset): resolved against the chosen task's shadow
targets = st.tuples(st.sampled_from(["arena", "run", "run", "run_end", "page", "page", "big"]),
                    st.integers(0, 63), st.integers(-2, 10))
# data accesses mostly land on mapped pages
data_targets = st.tuples(st.sampled_from(["page"] * 4 + ["hot"] * 4 + ["run", "run_end", "arena"]),
                         st.integers(0, 63), st.integers(-2, 10))
npages_st = st.integers(1, 10)
trim_st = st.sampled_from([0, 0, 0, 1, 2048, 4095])   # bytes cut off a page-multiple length


class MM(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.k = linmm.Kernel(linmm.MachineConfig(ram="128M"))
        self.baseline_free = self._free_pages()
        self.baseline_commit = self.k.overcommit.vm_committed_as
        self.tasks: list[TaskShadow] = []
        self._spawn()

    # ------------------------------------------------------------ helpers
    def _free_pages(self) -> int:
        k = self.k
        n = 0
        for z in k.all_zones():
            n += z.vm_stat["nr_free_pages"] + sum(p.count for p in z.pageset)
        # pages held only by LRU pagevecs are free as soon as the pagevec drains
        held = {}
        for pvec in k.vmscan.lru_add_pvec + k.vmscan.lru_lazyfree_pvec:
            for pfn in pvec:
                held[pfn] = held.get(pfn, 0) + 1
        n += sum(1 for pfn, c in held.items() if int(k.memmap.refcount[pfn]) == c)
        return n

    def _spawn(self) -> None:
        t = self.k.spawn(f"t{len(self.tasks)}")
        ts = TaskShadow(t)
        for a in range(STACK_START, STACK_TOP, P):
            ts.vm[a] = Attr(PROT_READ | PROT_WRITE, None, 0, STK)
        self.tasks.append(ts)

    def _ts(self, i: int) -> TaskShadow:
        return self.tasks[i % len(self.tasks)]

    def _resolve(self, ts: TaskShadow, target) -> int:
        kind, idx, off = target
        if kind == "big":
            return BIG + (idx % BIG_SLOTS) * PMD
        runs = ts.runs()
        if kind == "arena" or not runs:
            return ARENA + (idx % ARENA_PAGES) * P
        if kind == "hot":      # a page holding data
            pages = sorted(a for a, at in ts.vm.items() if not at.adv & STK and
                           (a in ts.mem or (at.shm is not None and at.pgoff in at.shm.data)))
            if pages:
                return pages[(idx * 7 + off) % len(pages)]
            kind = "page"
        if kind == "page":     # a mapped page: pick a run, then a page in it
            s, e, _ = runs[idx % len(runs)]
            return s + ((off + 2) * 5 % ((e - s) // P)) * P
        s, e, _ = runs[idx % len(runs)]
        if kind == "run_end":             # mostly right after the run: adjacent mappings
            return e + max(0, off - 4) * P
        return s + off * P

    def _vma_bounds(self, ts: TaskShadow, addr: int):
        v = self.k.mmap.find_vma(ts.t.mm, addr)
        if v is None or v.vm_start > addr:
            return None
        return v.vm_start, v.vm_end

    def _call(self, name: str, fn, predict):
        """Run predict() (which updates the shadow and returns the expected
        result or raises Expected), then the real call; compare."""
        try:
            want = ("ok", predict())
        except Expected as e:
            want = ("err", e.cls)
        try:
            got = ("ok", fn())
        except Errno as e:
            assert type(e) in ALLOWED[name], f"{name}: errno {type(e).__name__} is never legitimate here ({e})"
            got = ("err", type(e))
        if want[0] == "ok" and got[0] == "ok" and want[1] is None:
            return got[1]
        assert got == want, f"{name}: expected {want}, got {got}"
        return got[1]

    def _expect_signal(self, ts: TaskShadow, fn, want) -> None:
        """want: None or (signo, code, addr)."""
        nsig = len(ts.t.signals)
        try:
            fn()
        except linmm.Signal as s:
            assert want is not None, f"unexpected {s} (signo {s.signo} code {s.code} addr {s.addr:#x})"
            assert (s.signo, s.code, s.addr) == want, \
                f"signal (signo, code, addr) = ({s.signo}, {s.code}, {s.addr:#x}), expected " \
                f"({want[0]}, {want[1]}, {want[2]:#x})"
            assert ts.t.signals[nsig:] == [want], f"t.signals gained {ts.t.signals[nsig:]}"
            return
        assert want is None, f"expected signal {want[0]} code {want[1]} at {want[2]:#x}, none raised"
        assert len(ts.t.signals) == nsig

    # ------------------------------------------------------------ tasks
    @precondition(lambda self: len(self.tasks) < MAX_TASKS)
    @rule()
    def spawn(self):
        self._spawn()

    @precondition(lambda self: 0 < len(self.tasks) < MAX_TASKS)
    @rule(ti=task_ix)
    def fork(self, ti):
        ts = self._ts(ti)
        child = ts.t.fork()
        self.tasks.append(ts.copy_for(child))

    @precondition(lambda self: len(self.tasks) > 1)
    @rule(ti=task_ix)
    def exit(self, ti):
        ts = self._ts(ti)
        ts.t.exit()
        self.tasks.remove(ts)

    # ------------------------------------------------------------ mmap
    @precondition(lambda self: self.tasks)
    @rule(ti=task_ix, where=targets, npages=npages_st, trim=trim_st, prot=prots,
          shared=st.booleans(), mode=st.sampled_from(["none", "hint", "fixed", "fixed", "noreplace"]),
          populate=st.booleans())
    def mmap(self, ti, where, npages, trim, prot, shared, mode, populate):
        ts = self._ts(ti)
        addr = self._resolve(ts, where) if mode != "none" else 0
        length = npages * P - trim
        flags = MAP_ANONYMOUS | (MAP_SHARED if shared else MAP_PRIVATE) | (MAP_POPULATE if populate else 0)
        flags |= {"fixed": MAP_FIXED, "noreplace": MAP_FIXED_NOREPLACE}.get(mode, 0)
        mmap_base = MMAP_BASE

        def predict():
            ln = palign(length)
            if mode in ("fixed", "noreplace"):
                dest = addr
                if mode == "noreplace" and any(a in ts.vm for a in range(addr, addr + ln, P)):
                    raise Expected(EEXIST)
                ts.unmap(dest, dest + ln)
            elif mode == "hint" and ts.hint_ok(addr, ln):
                dest = addr
            else:
                dest = ts.topdown(ln, mmap_base)
            ts.map_new(dest, ln // P, prot, shared)
            return dest

        self._call("mmap", lambda: ts.t.mmap(addr, length, prot, flags), predict)

    @precondition(lambda self: self.tasks)
    @rule(ti=task_ix, slot=st.integers(0, BIG_SLOTS - 1), prot=prots, shared=st.booleans(),
          seeds=st.lists(st.tuples(st.integers(0, BIG_PAGES - 1), st.integers(1, 255)), max_size=4))
    def mmap_big(self, ti, slot, prot, shared, seeds):
        """A 2 MiB PMD-aligned MAP_FIXED mapping with a few pages written (if writable)."""
        ts = self._ts(ti)
        addr = BIG + slot * PMD
        flags = MAP_ANONYMOUS | MAP_FIXED | (MAP_SHARED if shared else MAP_PRIVATE)

        def predict():
            ts.unmap(addr, addr + PMD)
            ts.map_new(addr, BIG_PAGES, prot, shared)
            return addr

        self._call("mmap", lambda: ts.t.mmap(addr, PMD, prot, flags), predict)
        for pg, seed in seeds:
            self._write(ts, addr + pg * P + 8, 64, seed)

    # ------------------------------------------------------------ munmap
    @precondition(lambda self: self.tasks)
    @rule(ti=task_ix, where=targets, npages=st.integers(0, 12), trim=trim_st)
    def munmap(self, ti, where, npages, trim):
        ts = self._ts(ti)
        addr = self._resolve(ts, where)
        length = max(0, npages * P - trim)

        def predict():
            if length == 0:
                raise Expected(EINVAL)
            ts.unmap(addr, addr + palign(length))

        self._call("munmap", lambda: ts.t.munmap(addr, length), predict)

    # ------------------------------------------------------------ mprotect
    @precondition(lambda self: self.tasks)
    @rule(ti=task_ix, where=targets, npages=st.integers(0, 12), trim=trim_st, prot=prots)
    def mprotect(self, ti, where, npages, trim, prot):
        ts = self._ts(ti)
        self._mprotect(ts, self._resolve(ts, where), max(0, npages * P - trim), prot)

    @precondition(lambda self: self.tasks)
    @rule(ti=task_ix, vi=st.integers(0, 15), prot=prots, like=st.sampled_from([None, "prev", "next"]))
    def mprotect_vma(self, ti, vi, prot, like):
        """mprotect exactly one VMA (the case where vma_merge() may merge it with its
        neighbours), often to the protection of the adjacent VMA before or after it."""
        ts = self._ts(ti)
        v = self._pick_vma(ts, vi)
        if v is None:
            return
        near = ts.vm.get(v.vm_start - P if like == "prev" else v.vm_end) if like else None
        if near is not None and not near.adv & STK:
            prot = near.prot
        self._mprotect(ts, v.vm_start, v.vm_end - v.vm_start, prot)

    def _mprotect(self, ts, addr, length, prot):
        def newflags(v):
            f = (v.vm_flags & ~(VM_READ | VM_WRITE | VM_EXEC)) | (VM_READ if prot & PROT_READ else 0) | \
                (VM_WRITE if prot & PROT_WRITE else 0) | (VM_EXEC if prot & PROT_EXEC else 0)
            if f & VM_WRITE and not v.vm_flags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE):
                f |= VM_ACCOUNT
            return f
        merge = self._merge_prediction(ts, addr, palign(length), newflags)

        def predict():
            if length == 0:
                return
            for a in range(addr, addr + palign(length), P):
                at = ts.vm.get(a)
                if at is None:
                    raise Expected(ENOMEM)        # hole: the part before it is changed
                ts.vm[a] = at._replace(prot=prot)

        self._call("mprotect", lambda: ts.t.mprotect(addr, length, prot), predict)
        self._merge_check(ts, addr, merge, f"mprotect({addr:#x}, {length:#x}, {prot})")

    # ------------------------------------------------------------ VMA merging (mm/mmap.c v5.7)
    def _pick_vma(self, ts, vi):
        """A VMA (not the stack); even vi prefer one that touches another VMA."""
        vmas = [v for v in ts.t.mm.vmas if not ts.vm.get(v.vm_start, Attr(0, None, 0, 0)).adv & STK]
        touching = [v for v in vmas if v.vm_start - P in ts.vm or v.vm_end in ts.vm]
        if touching and vi % 2 == 0:
            vmas = touching
        return vmas[vi // 2 % len(vmas)] if vmas else None

    @staticmethod
    def _mergeable_anon_vma(av1, av2, vma) -> bool:
        """is_mergeable_anon_vma(): list_is_singular(&vma->anon_vma_chain) when one is NULL."""
        if (av1 is None or av2 is None) and (vma is None or len(vma.anon_vma_chain) == 1):
            return True
        return av1 is av2

    def _merge_prediction(self, ts, start, length, newflags_of):
        """When [start, start+length) is exactly one VMA whose flags change, what vma_merge()
        (called by mprotect_fixup / madvise_behavior with the VMA's anon_vma, file and pgoff)
        must do: (merge with prev, merge with next, prev, next)."""
        mm = ts.t.mm
        vmas = mm.vmas
        idx = [i for i, v in enumerate(vmas) if v.vm_start == start and v.vm_end == start + length]
        if not idx:
            return None
        i = idx[0]
        v = vmas[i]
        flags = newflags_of(v)
        if flags == v.vm_flags:
            return None                   # no change: no merge attempt
        prev = vmas[i - 1] if i > 0 else None
        nxt = vmas[i + 1] if i + 1 < len(vmas) else None
        pages = length // P

        def same(w):
            return not ((w.vm_flags ^ flags) & ~VM_SOFTDIRTY) and w.vm_file is v.vm_file and \
                w.shmem is v.shmem
        can_prev = prev is not None and prev.vm_end == start and same(prev) and \
            self._mergeable_anon_vma(v.anon_vma, prev.anon_vma, prev) and \
            prev.vm_pgoff + (prev.vm_end - prev.vm_start) // P == v.vm_pgoff
        can_next = nxt is not None and nxt.vm_start == start + length and same(nxt) and \
            self._mergeable_anon_vma(v.anon_vma, nxt.anon_vma, nxt) and \
            nxt.vm_pgoff == v.vm_pgoff + pages
        if can_prev and can_next and not self._mergeable_anon_vma(prev.anon_vma, nxt.anon_vma, None):
            can_next = False              # vma_merge case 2/5/7: prev only
        if not can_prev and not can_next:
            return None
        return can_prev, can_next, (prev.vm_start if prev else None), (nxt.vm_end if nxt else None)

    def _merge_check(self, ts, start, merge, what):
        if merge is None:
            return
        can_prev, can_next, prev_start, next_end = merge
        v = self._vma_bounds(ts, start)
        assert v is not None
        if can_prev:
            assert v[0] <= prev_start, \
                f"{what}: vma_merge() merges the VMA with its previous neighbour at {prev_start:#x}, " \
                f"but the VMA now is {v[0]:#x}-{v[1]:#x}"
        if can_next:
            assert v[1] >= next_end, \
                f"{what}: vma_merge() merges the VMA with its next neighbour (ending {next_end:#x}), " \
                f"but the VMA now is {v[0]:#x}-{v[1]:#x}"

    # ------------------------------------------------------------ madvise
    @precondition(lambda self: self.tasks)
    @rule(ti=task_ix, where=targets, npages=st.integers(0, 12), trim=trim_st,
          advice=st.sampled_from([MADV_DONTNEED, MADV_DONTNEED, MADV_FREE, MADV_FREE, MADV_NORMAL,
                                  MADV_RANDOM, MADV_SEQUENTIAL, MADV_DONTFORK, MADV_DOFORK,
                                  MADV_WILLNEED, MADV_WIPEONFORK, MADV_KEEPONFORK]))
    def madvise(self, ti, where, npages, trim, advice):
        ts = self._ts(ti)
        self._madvise(ts, self._resolve(ts, where), max(0, npages * P - trim), advice)

    @precondition(lambda self: self.tasks)
    @rule(ti=task_ix, vi=st.integers(0, 15),
          advice=st.sampled_from([MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_DONTFORK, MADV_DOFORK,
                                  MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_DONTNEED]))
    def madvise_vma(self, ti, vi, advice):
        ts = self._ts(ti)
        v = self._pick_vma(ts, vi)
        if v is not None:
            self._madvise(ts, v.vm_start, v.vm_end - v.vm_start, advice)

    def _madvise(self, ts, addr, length, advice):
        def newflags(v):
            f = v.vm_flags
            return {MADV_NORMAL: f & ~(VM_RAND_READ | VM_SEQ_READ),
                    MADV_RANDOM: (f & ~VM_SEQ_READ) | VM_RAND_READ,
                    MADV_SEQUENTIAL: (f & ~VM_RAND_READ) | VM_SEQ_READ,
                    MADV_DONTFORK: f | VM_DONTCOPY, MADV_DOFORK: f & ~VM_DONTCOPY,
                    MADV_WIPEONFORK: f | VM_WIPEONFORK if v.shmem is None else f,
                    MADV_KEEPONFORK: f & ~VM_WIPEONFORK}.get(advice, f)
        merge = self._merge_prediction(ts, addr, palign(length), newflags)

        def predict():
            if length == 0:
                return
            hole = False
            for a in range(addr, addr + palign(length), P):
                at = ts.vm.get(a)
                if at is None:
                    hole = True
                    continue
                if advice == MADV_DONTNEED:
                    ts.mem.pop(a, None)            # private anon reads back zero; shmem keeps data
                elif advice == MADV_FREE:
                    if at.shm is not None:
                        raise Expected(EINVAL)    # !vma_is_anonymous
                elif advice == MADV_WIPEONFORK:
                    if at.shm is not None:
                        raise Expected(EINVAL)    # vm_file / VM_SHARED
                    ts.vm[a] = at._replace(adv=at.adv | WF)
                elif advice == MADV_KEEPONFORK:
                    ts.vm[a] = at._replace(adv=at.adv & ~WF)
                elif advice == MADV_DONTFORK:
                    ts.vm[a] = at._replace(adv=at.adv | DC)
                elif advice == MADV_DOFORK:
                    ts.vm[a] = at._replace(adv=at.adv & ~DC)
                elif advice == MADV_NORMAL:
                    ts.vm[a] = at._replace(adv=at.adv & ~(RR | SR))
                elif advice == MADV_RANDOM:
                    ts.vm[a] = at._replace(adv=(at.adv & ~SR) | RR)
                elif advice == MADV_SEQUENTIAL:
                    ts.vm[a] = at._replace(adv=(at.adv & ~RR) | SR)
            if hole:
                raise Expected(ENOMEM)

        self._call("madvise", lambda: ts.t.madvise(addr, length, advice), predict)
        self._merge_check(ts, addr, merge, f"madvise({addr:#x}, {length:#x}, {advice})")

    # ------------------------------------------------------------ mremap
    @precondition(lambda self: self.tasks)
    @rule(ti=task_ix, where=targets, old_mode=st.sampled_from(["vma", "run", "pages", "pages", "zero"]),
          old_pages=st.integers(1, 8), delta=st.integers(-4, 8),
          flags=st.sampled_from([0, 0, MREMAP_MAYMOVE, MREMAP_MAYMOVE, MREMAP_MAYMOVE | MREMAP_FIXED,
                                 MREMAP_MAYMOVE | MREMAP_FIXED, MREMAP_MAYMOVE | MREMAP_DONTUNMAP,
                                 MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, MREMAP_FIXED]),
          new_target=targets)
    def mremap(self, ti, where, old_mode, old_pages, delta, flags, new_target):
        ts = self._ts(ti)
        old = self._resolve(ts, where)
        vb = self._vma_bounds(ts, old)
        if old_mode == "vma" and vb is not None:
            old_len = vb[1] - old
        elif old_mode == "run" and old in ts.vm:
            e = old
            while e in ts.vm:
                e += P
            old_len = e - old
        elif old_mode == "zero" and old in ts.vm and ts.vm[old].shm is not None:
            old_len = 0          # duplicate a shared mapping (private: v5.7 vs later differ, not used)
        else:
            old_len = old_pages * P
        if flags & MREMAP_DONTUNMAP and delta != 8:
            new_len = old_len            # DONTUNMAP only moves; delta 8 checks the EINVAL
        else:
            new_len = max(P, old_len + delta * P)
        new_addr = self._resolve(ts, new_target) if flags & MREMAP_FIXED or \
            (flags & MREMAP_DONTUNMAP and new_target[1] % 2) else 0
        self._mremap(ts, old, old_len, new_len, flags, new_addr)

    @precondition(lambda self: self.tasks)
    @rule(ti=task_ix, vi=st.integers(0, 15), delta=st.integers(-3, 6),
          flags=st.sampled_from([0, MREMAP_MAYMOVE, MREMAP_MAYMOVE, MREMAP_MAYMOVE | MREMAP_FIXED,
                                 MREMAP_MAYMOVE | MREMAP_DONTUNMAP]),
          new_target=targets)
    def mremap_vma(self, ti, vi, delta, flags, new_target):
        """mremap a whole VMA (grow, shrink or move it)."""
        ts = self._ts(ti)
        v = self._pick_vma(ts, vi)
        if v is None:
            return
        old, old_len = v.vm_start, v.vm_end - v.vm_start
        new_len = old_len if flags & MREMAP_DONTUNMAP else max(P, old_len + delta * P)
        new_addr = self._resolve(ts, new_target) if flags & MREMAP_FIXED else 0
        self._mremap(ts, old, old_len, new_len, flags, new_addr)

    def _mremap(self, ts, old, old_len, new_len, flags, new_addr):
        vb = self._vma_bounds(ts, old)
        mmap_base = MMAP_BASE

        def resize_check(olen, nlen):
            """vma_to_resize(): the end of the VMA at old, or Expected."""
            if vb is None or old not in ts.vm:
                raise Expected(EFAULT)
            eff_end = old
            while eff_end < vb[1] and eff_end in ts.vm:
                eff_end += P           # MREMAP_FIXED / shrink munmaps may have cut the VMA
            if flags & MREMAP_DONTUNMAP and ts.vm[old].shm is not None:
                raise Expected(EINVAL)
            if olen > eff_end - old:
                raise Expected(EFAULT)
            return eff_end

        def move(olen, nlen, dest):
            base = ts.vm[old]
            pages = []
            for j in range(nlen // P):
                if j < olen // P:
                    a = old + j * P
                    pages.append((ts.vm[a], ts.mem.get(a)))
                else:
                    pages.append((base._replace(pgoff=base.pgoff + j) if base.shm else base, None))
            if flags & MREMAP_DONTUNMAP:
                for j in range(olen // P):
                    ts.mem.pop(old + j * P, None)    # the PTEs moved: old range faults fresh
            else:
                ts.unmap(old, old + olen)
            for j, (at, data) in enumerate(pages):
                a = dest + j * P
                ts.vm[a] = at
                ts.mem.pop(a, None)
                if data is not None:
                    ts.mem[a] = data
            return dest

        def predict():
            olen, nlen = old_len, new_len
            if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
                raise Expected(EINVAL)
            if flags & MREMAP_DONTUNMAP and (not flags & MREMAP_MAYMOVE or olen != nlen):
                raise Expected(EINVAL)
            if nlen == 0:
                raise Expected(EINVAL)
            if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP):
                if new_addr & 0xFFF or nlen > TASK_SIZE or new_addr > TASK_SIZE - nlen:
                    raise Expected(EINVAL)
                if old + olen > new_addr and new_addr + nlen > old:
                    raise Expected(EINVAL)
                if flags & MREMAP_FIXED:
                    ts.unmap(new_addr, new_addr + nlen)
                if olen >= nlen:
                    if olen != nlen:
                        ts.unmap(old + nlen, old + olen)
                    olen = nlen
                resize_check(olen, nlen)
                if flags & MREMAP_FIXED:
                    dest = new_addr
                elif ts.hint_ok(new_addr, nlen) if new_addr else False:
                    dest = new_addr
                else:
                    dest = ts.topdown(nlen, mmap_base)
                return move(olen, nlen, dest)
            if olen >= nlen:
                if olen != nlen:
                    ts.unmap(old + nlen, old + olen)
                return old
            eff_end = resize_check(olen, nlen)
            if olen == eff_end - old and \
                    not any(a in ts.vm for a in range(eff_end, eff_end + nlen - olen, P)):
                last = ts.vm[eff_end - P]
                for j in range((nlen - olen) // P):
                    ts.vm[eff_end + j * P] = last._replace(pgoff=last.pgoff + 1 + j) if last.shm else last
                return old
            if not flags & MREMAP_MAYMOVE:
                raise Expected(ENOMEM)
            return move(olen, nlen, ts.topdown(nlen, mmap_base))

        self._call("mremap", lambda: ts.t.mremap(old, old_len, new_len, flags, new_addr), predict)

    # ------------------------------------------------------------ brk
    @precondition(lambda self: self.tasks)
    @rule(ti=task_ix, pages=st.integers(-1, 14), sub=st.sampled_from([0, 0, 1, 100, 4095]))
    def brk(self, ti, pages, sub):
        ts = self._ts(ti)
        want = ts.start_brk + pages * P - sub
        got = ts.t.brk(want)
        # expected (mm/mmap.c brk())
        if want < ts.start_brk:
            exp = ts.brk
        else:
            newbrk, oldbrk = palign(want), palign(ts.brk)
            if newbrk == oldbrk:
                exp = ts.brk = want
            elif want <= ts.brk:
                ts.unmap(newbrk, oldbrk)
                exp = ts.brk = want
            else:
                gap, mapped = ts.next_mapped(oldbrk)
                if mapped or (gap is not None and newbrk + P > gap):
                    exp = ts.brk
                else:
                    for a in range(oldbrk, newbrk, P):
                        ts.vm[a] = Attr(PROT_READ | PROT_WRITE, None, 0, 0)
                        ts.mem.pop(a, None)
                    exp = ts.brk = want
        assert got == exp, f"brk({want:#x}) returned {got:#x}, expected {exp:#x}"

    # ------------------------------------------------------------ data
    def _write(self, ts: TaskShadow, addr: int, n: int, seed: int) -> None:
        data = pattern(seed, n)
        want = None
        a = addr
        while a < addr + n:
            pend = min((a | 0xFFF) + 1, addr + n)
            f = ts.fault(a, True)
            if f is not None:
                want = (f[0], f[1], a)
                break
            pg = a & ~0xFFF
            cur = bytearray(ts.content(pg))
            cur[a - pg:pend - pg] = data[a - addr:pend - addr]
            ts.set_content(pg, bytes(cur))
            a = pend
        self._expect_signal(ts, lambda: ts.t.write(addr, data), want)

    @precondition(lambda self: self.tasks)
    @rule(ti=task_ix, writes=st.lists(st.tuples(data_targets, st.integers(0, P - 1),
                                                st.integers(1, 2 * P + 100), st.integers(1, 255)),
                                      min_size=1, max_size=4))
    def write(self, ti, writes):
        ts = self._ts(ti)
        for where, offset, n, seed in writes:
            self._write(ts, self._resolve(ts, where) + offset, n, seed)

    @precondition(lambda self: self.tasks)
    @rule(ti=task_ix, where=data_targets, offset=st.integers(0, P - 1), n=st.integers(1, 3 * P))
    def read(self, ti, where, offset, n):
        ts = self._ts(ti)
        addr = self._resolve(ts, where) + offset
        want_sig = None
        expect = bytearray()
        a = addr
        while a < addr + n:
            pend = min((a | 0xFFF) + 1, addr + n)
            f = ts.fault(a, False)
            if f is not None:
                want_sig = (f[0], f[1], a)
                break
            pg = a & ~0xFFF
            expect += ts.content(pg)[a - pg:pend - pg]
            a = pend
        out = []
        self._expect_signal(ts, lambda: out.append(ts.t.read(addr, n)), want_sig)
        if want_sig is None:
            assert out[0] == bytes(expect), f"read({addr:#x}, {n}) returned other bytes than written"

    @precondition(lambda self: self.tasks)
    @rule(ti=task_ix, accesses=st.lists(st.tuples(data_targets, st.integers(0, P - 1), st.booleans()),
                                        min_size=1, max_size=12))
    def access(self, ti, accesses):
        ts = self._ts(ti)
        addrs = [self._resolve(ts, tg) + off for tg, off, _ in accesses]
        writes = np.array([w for _, _, w in accesses], bool)
        want = None
        for a, w in zip(addrs, writes.tolist()):
            f = ts.fault(a, w)
            if f is not None:
                want = (f[0], f[1], a)
                break
        self._expect_signal(ts, lambda: ts.t.access(np.array(addrs, np.uint64), writes), want)

    # ------------------------------------------------------------ invariants
    @invariant()
    def kernel_consistent(self):
        self.k.check()
        assert self.k.vm_events.get("pglazyfreed", 0) == 0, "reclaim discarded MADV_FREE pages"

    @invariant()
    def layout_matches(self):
        shm_map: dict[int, int] = {}      # model object id -> shadow Shm id
        rev: dict[int, int] = {}
        for ts in self.tasks:
            mm = ts.t.mm
            maps = self.k.read_file(f"/proc/{ts.t.pid}/maps").splitlines()
            assert len(maps) == len(mm.vmas), "maps lines != VMAs"
            smaps = self._smaps(ts)
            assert [b[0] for b in smaps] == maps, "smaps headers differ from maps"
            # no swap exists; Rss counts the pte_present() PTEs that map a normal page
            resident = sorted(a for a, pte in self._ptes(mm).items()
                              if pte & (_PAGE_PRESENT | _PAGE_PROTNONE) and not pte & _PAGE_SPECIAL)
            # shadow segments: maximal runs of pages with one attribute (shmem index +1 per page)
            seg_of: dict[int, int] = {}
            seg_end: list[int] = []
            prev_a, prev_at = None, None
            for a in sorted(ts.vm):
                at = ts.vm[a]
                if not (prev_a == a - P and at.prot == prev_at.prot and at.shm is prev_at.shm and
                        at.adv == prev_at.adv and (at.shm is None or at.pgoff == prev_at.pgoff + 1)):
                    seg_end.append(a)
                seg_end[-1] = a + P
                seg_of[a] = len(seg_end) - 1
                prev_a, prev_at = a, at
            covered = 0
            for line, blk, v in zip(maps, smaps, mm.vmas):
                f = line.split()
                s, e = (int(x, 16) for x in f[0].split("-"))
                assert (s, e) == (v.vm_start, v.vm_end), f"maps line {line!r} vs {v!r}"
                rss = bisect.bisect_left(resident, e) - bisect.bisect_left(resident, s)
                assert blk[1]["Swap"] == 0, f"pid {ts.t.pid}: smaps Swap {blk[1]['Swap']} kB for {line!r}"
                assert blk[1]["Rss"] == rss * 4, \
                    f"pid {ts.t.pid}: smaps Rss {blk[1]['Rss']} kB for {line!r}, {rss} pages are mapped"
                perms, offset = f[1], int(f[2], 16)
                at = ts.vm.get(s)
                assert at is not None, f"pid {ts.t.pid}: VMA {line!r} starts at unmapped shadow page {s:#x}"
                assert seg_end[seg_of[s]] >= e, \
                    f"pid {ts.t.pid}: VMA {line!r} spans pages the shadow maps differently (or not at all) " \
                    f"from {seg_end[seg_of[s]]:#x}"
                covered += (e - s) // P
                want_perms = ("r" if at.prot & PROT_READ else "-") + ("w" if at.prot & PROT_WRITE else "-") \
                    + ("x" if at.prot & PROT_EXEC else "-") + ("s" if at.shm is not None else "p")
                assert perms == want_perms, f"pid {ts.t.pid}: {line!r}: perms should be {want_perms}"
                vf = v.vm_flags
                for bit, adv, name in ((VM_DONTCOPY, DC, "VM_DONTCOPY"), (VM_WIPEONFORK, WF, "VM_WIPEONFORK"),
                                       (VM_RAND_READ, RR, "VM_RAND_READ"), (VM_SEQ_READ, SR, "VM_SEQ_READ")):
                    assert bool(vf & bit) == bool(at.adv & adv), \
                        f"pid {ts.t.pid}: {line!r}: {name} should be {'set' if at.adv & adv else 'clear'}"
                if at.shm is not None:
                    assert v.shmem is not None, f"pid {ts.t.pid}: {line!r} should be shared memory"
                    assert offset == at.pgoff * P, \
                        f"pid {ts.t.pid}: {line!r}: offset should be {at.pgoff * P:#x}"
                    mid, sid = id(v.shmem), at.shm.id
                    assert shm_map.setdefault(mid, sid) == sid and rev.setdefault(sid, mid) == mid, \
                        f"pid {ts.t.pid}: VMA {line!r} maps another shared object than the shadow's"
                    assert v.shmem.size == at.shm.npages * P, "shared object size"
                else:
                    assert v.shmem is None, f"pid {ts.t.pid}: {line!r} should be private"
            assert covered == len(ts.vm), \
                f"pid {ts.t.pid}: shadow maps {len(ts.vm)} pages, VMAs cover {covered}"
            # mm counters (vm_stat_account)
            total = data = execv = stack = 0
            for at in ts.vm.values():
                total += 1
                if at.adv & STK:
                    stack += 1
                elif at.prot & PROT_EXEC and not at.prot & PROT_WRITE:
                    execv += 1
                elif at.prot & PROT_WRITE and at.shm is None:
                    data += 1
            got = (mm.total_vm, mm.data_vm, mm.exec_vm, mm.stack_vm)
            assert got == (total, data, execv, stack), \
                f"pid {ts.t.pid}: total/data/exec/stack_vm {got}, expected {(total, data, execv, stack)}"
            assert mm.brk == ts.brk and mm.start_brk == ts.start_brk

    @staticmethod
    def _ptes(mm) -> dict:
        out = {}
        for t in list(mm.pte_tables.values()):
            for i in np.flatnonzero(t.entries).tolist():
                out[t.base + (i << 12)] = int(t.entries[i])
        return out

    def _smaps(self, ts):
        blocks = []
        for line in self.k.read_file(f"/proc/{ts.t.pid}/smaps").splitlines():
            head = line.split(" ", 1)[0]
            if "-" in head and not head.endswith(":"):
                blocks.append((line, {}))
            elif line.endswith(" kB"):
                key, val = line.split(":", 1)
                blocks[-1][1][key] = int(val.split()[0])
        return blocks

    @invariant()
    def data_matches(self):
        from linmm.mm.pgtable import pte_pfn
        k = self.k
        for ts in self.tasks:
            mm = ts.t.mm
            present = set()
            for t in list(mm.pte_tables.values()):
                for i in np.flatnonzero(t.entries).tolist():
                    a = t.base + (i << 12)
                    present.add(a)
                    assert a in ts.vm, f"pid {ts.t.pid}: PTE at unmapped {a:#x}"
                    got = k.frames.read(pte_pfn(int(t.entries[i])), 0, P)
                    if got != ts.content(a):
                        raise AssertionError(f"pid {ts.t.pid}: the page mapped at {a:#x} holds other bytes "
                                             f"than the shadow (first difference at byte "
                                             f"{next(j for j in range(P) if got[j] != ts.content(a)[j])})")
            for a in ts.mem:
                assert a in present, f"pid {ts.t.pid}: private data at {a:#x} lost (no PTE)"
            # black box: every non-zero readable page reads back
            for a, at in ts.vm.items():
                if (a in ts.mem or (at.shm is not None and at.pgoff in at.shm.data)) and \
                        ts.readable_data_page(a):
                    assert ts.t.read(a, P) == ts.content(a), f"pid {ts.t.pid}: read back at {a:#x} differs"

    def teardown(self):
        try:
            # read back every readable page (every 16th page of the zero-filled parts of
            # runs longer than 64 pages, to stay fast), through the fault path
            for ts in self.tasks:
                for s, e, _ in ts.runs(with_stack=True):
                    long_run = e - s > 64 * P
                    for a in range(s, e, P):
                        if not ts.readable_data_page(a):
                            continue
                        want = ts.content(a)
                        if long_run and want == ZERO and (a - s) // P % 16:
                            continue
                        assert ts.t.read(a, P) == want, f"pid {ts.t.pid}: final read back at {a:#x} differs"
                self.k.check()
            for ts in self.tasks:
                ts.t.exit()
            self.tasks = []
            k = self.k
            k.check()
            assert not k.shmem.objects, "shared objects left after every task exited"
            assert sum(pg.vm_stat["nr_anon_pages"] for pg in k.pgdats) == 0
            assert k.overcommit.vm_committed_as == self.baseline_commit, \
                f"Committed_AS {k.overcommit.vm_committed_as} after all exits, boot {self.baseline_commit}"
            # pgds of mms still borrowed lazily by a CPU are not freed yet
            lazy = {}
            for cpu in k.sched.cpus:
                for m in (cpu.loaded_mm, cpu.prev_mm, cpu.curr.active_mm, cpu.idle.active_mm):
                    if m is not None and m is not k.init_mm and not m.freed:
                        assert m.pgtables_bytes == 0 and not m.vmas
                        lazy[id(m)] = 1 << m.pgd_order
            free = self._free_pages()
            assert free == self.baseline_free - sum(lazy.values()), \
                f"free pages {free} after all exits, boot {self.baseline_free} " \
                f"(pgds of lazily held mms {sum(lazy.values())}): leak"
        finally:
            super().teardown()


# Hypothesis shrinks for up to 5 minutes by default; a failing run of this file should
# still end in about a minute (the shrunk sequence is then less minimal).
_engine.MAX_SHRINKING_SECONDS = 30

MM.TestCase.settings = settings(max_examples=300, stateful_step_count=50, deadline=None,
                                derandomize=True, database=None,
                                suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.filter_too_much])
TestStatefulMM = MM.TestCase


# ---------------------------------------------------------------- reduced regressions
# Hand-reduced forms of the failures the state machine found (see the report); the
# expected values are those of Linux v5.7 mm/mmap.c vma_merge() / mm/mremap.c, and
# the two merge cases were also checked on the host kernel.

def _maps_in(k, t, lo, hi):
    out = []
    for line in k.read_file(f"/proc/{t.pid}/maps").splitlines():
        s, e = (int(x, 16) for x in line.split()[0].split("-"))
        if s < hi and e > lo:
            out.append((s, e, line.split()[1]))
    return out


def test_mprotect_merges_unfaulted_vma_with_faulted_prev():
    k = linmm.Kernel(linmm.MachineConfig(ram="128M"))
    t = k.spawn("a")
    x = ARENA
    t.mmap(x, 2 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    t.mmap(x + 2 * P, 2 * P, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    t.write(x, b"x")                    # the first VMA gets its anon_vma (a singular chain)
    t.mprotect(x + 2 * P, 2 * P, PROT_READ | PROT_WRITE)
    # can_vma_merge_after(prev, ..., anon_vma=NULL): is_mergeable_anon_vma(NULL, prev->anon_vma,
    # prev) is true because prev's anon_vma_chain is singular -> one VMA
    assert _maps_in(k, t, x, x + 4 * P) == [(x, x + 4 * P, "rw-p")]
    assert t.mremap(x, 4 * P, 8 * P) == x
    k.check()


def test_mprotect_merges_unfaulted_vma_with_faulted_next():
    k = linmm.Kernel(linmm.MachineConfig(ram="128M"))
    t = k.spawn("a")
    x = ARENA
    t.mmap(x, 2 * P, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    t.mmap(x + 2 * P, 2 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    t.write(x + 2 * P, b"x")
    t.mprotect(x, 2 * P, PROT_READ | PROT_WRITE)
    assert _maps_in(k, t, x, x + 4 * P) == [(x, x + 4 * P, "rw-p")]
    k.check()


def test_mremap_fixed_move_that_merges_with_its_source_keeps_the_commit_charge():
    k = linmm.Kernel(linmm.MachineConfig(ram="128M"))
    t = k.spawn("a")
    b = t.mm.start_brk

    def committed_kb():
        for line in k.read_file("/proc/meminfo").splitlines():
            if line.startswith("Committed_AS:"):
                return int(line.split()[1])
    assert t.brk(b + 3 * P) == b + 3 * P          # heap [b, b+3P), VM_ACCOUNT, 3 pages charged
    c0 = committed_kb()
    # MREMAP_FIXED unmaps [b+P, b+2P) (-1 page), then copy_vma() merges the target with the
    # previous piece AND the source VMA; move_vma() must then work on the merged VMA
    # (copy_vma's *vmap = new_vma): the moved page keeps its charge
    assert t.mremap(b + 2 * P, P, P, MREMAP_MAYMOVE | MREMAP_FIXED, b + P) == b + P
    assert _maps_in(k, t, b, b + 3 * P) == [(b, b + 2 * P, "rw-p")]
    assert committed_kb() == c0 - 4
    k.check()
