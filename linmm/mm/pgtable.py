"""Page tables: x86 entry format, table pages, split page-table locks, checker.

split_page_table_lock.rst: each PTE table page and (x86_64) each PMD table
page carries its own spinlock; PUD/P4D/PGD entries are guarded by
mm->page_table_lock.  Every entry write goes through ``set_entry`` which
verifies that the required lock is held by the current context.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import KernelBug
from . import gfp as G

if TYPE_CHECKING:
    from ..kernel import Kernel

# arch/x86/include/asm/pgtable_types.h
_PAGE_PRESENT, _PAGE_RW, _PAGE_USER, _PAGE_PWT, _PAGE_PCD = 0x1, 0x2, 0x4, 0x8, 0x10
_PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PSE, _PAGE_GLOBAL = 0x20, 0x40, 0x80, 0x100
_PAGE_PROTNONE = _PAGE_GLOBAL
_PAGE_SPECIAL = 0x200
_PAGE_SOFT_DIRTY = 0x800
_PAGE_NX = 1 << 63
PTE_PFN_MASK = ((1 << 52) - 1) & ~0xFFF
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY
_PAGE_CHG_MASK = PTE_PFN_MASK | _PAGE_PCD | _PAGE_PWT | _PAGE_SPECIAL | _PAGE_ACCESSED | \
    _PAGE_DIRTY | _PAGE_SOFT_DIRTY

PAGE_NONE = _PAGE_PROTNONE | _PAGE_ACCESSED
PAGE_SHARED = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_SHARED_EXEC = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED
PAGE_COPY_NOEXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_COPY_EXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
PAGE_READONLY = PAGE_COPY_NOEXEC
PAGE_READONLY_EXEC = PAGE_COPY_EXEC
# protection_map[vm_flags & (READ|WRITE|EXEC|SHARED)]
protection_map = [PAGE_NONE, PAGE_READONLY, PAGE_COPY_NOEXEC, PAGE_COPY_NOEXEC,
                  PAGE_READONLY_EXEC, PAGE_READONLY_EXEC, PAGE_COPY_EXEC, PAGE_COPY_EXEC,
                  PAGE_NONE, PAGE_READONLY, PAGE_SHARED, PAGE_SHARED,
                  PAGE_READONLY_EXEC, PAGE_READONLY_EXEC, PAGE_SHARED_EXEC, PAGE_SHARED_EXEC]

PTE, PMD, PUD, P4D, PGD = 1, 2, 3, 4, 5
LEVEL_NAMES = {PTE: "PTE", PMD: "PMD", PUD: "PUD", P4D: "P4D", PGD: "PGD"}
PMD_SHIFT, PUD_SHIFT, P4D_SHIFT = 21, 30, 39
PMD_SIZE = 1 << PMD_SHIFT
MASK64 = (1 << 64) - 1


def vm_get_page_prot(vm_flags: int) -> int:
    return protection_map[vm_flags & 0xF]


def pte_present(pte: int) -> bool:
    return bool(pte & (_PAGE_PRESENT | _PAGE_PROTNONE))


def pte_none(pte: int) -> bool:
    return pte == 0


def pte_pfn(pte: int) -> int:
    return (pte & PTE_PFN_MASK) >> 12


def pfn_pte(pfn: int, prot: int) -> int:
    return (pfn << 12) | prot


def pte_write(pte: int) -> bool:
    return bool(pte & _PAGE_RW)


def pte_mkwrite(pte: int) -> int:
    return pte | _PAGE_RW


def pte_wrprotect(pte: int) -> int:
    return pte & ~_PAGE_RW


def pte_mkdirty(pte: int) -> int:
    return pte | _PAGE_DIRTY | _PAGE_SOFT_DIRTY


def pte_mkclean(pte: int) -> int:
    return pte & ~_PAGE_DIRTY


def pte_mkyoung(pte: int) -> int:
    return pte | _PAGE_ACCESSED


def pte_mkold(pte: int) -> int:
    return pte & ~_PAGE_ACCESSED


def pte_dirty(pte: int) -> bool:
    return bool(pte & _PAGE_DIRTY)


def pte_young(pte: int) -> bool:
    return bool(pte & _PAGE_ACCESSED)


def pte_special(pte: int) -> bool:
    return bool(pte & _PAGE_SPECIAL)


def pte_soft_dirty(pte: int) -> bool:
    return bool(pte & _PAGE_SOFT_DIRTY)


def pte_modify(pte: int, newprot: int) -> int:
    """Keep pfn and A/D bits, take the rest from newprot."""
    return (pte & _PAGE_CHG_MASK) | (newprot & ~_PAGE_CHG_MASK & MASK64)


class SpinLock:
    """A spinlock with DEBUG_SPINLOCK's owner tracking."""

    __slots__ = ("name", "owner", "owner_cpu", "cls", "obj")

    def __init__(self, name: str, cls: str):
        self.name = name
        self.cls = cls
        self.owner = None
        self.owner_cpu = -1
        self.obj = None  # the "page->ptl" slab object with ALLOC_SPLIT_PTLOCKS

    def __repr__(self) -> str:
        return f"<spinlock {self.name}>"


class PageTable:
    """One page-table page (any level)."""

    __slots__ = ("pfn", "level", "mm", "ptl", "row", "_entries", "base", "parent", "pidx")

    def __init__(self, pfn: int, level: int, mm, base: int):
        self.pfn = pfn
        self.level = level
        self.mm = mm
        self.ptl: SpinLock | None = None
        self.row = -1
        self._entries = None if level == PTE else np.zeros(512, np.uint64)
        self.base = base  # first virtual address the table covers
        self.parent: PageTable | None = None
        self.pidx = 0

    @property
    def entries(self) -> np.ndarray:
        return self.mm.pte_pool[self.row] if self.level == PTE else self._entries

    def __repr__(self) -> str:
        return f"<{LEVEL_NAMES[self.level]} table pfn={self.pfn:#x} base={self.base:#x}>"


class PgTableOps:
    """Table allocation, lookup, locking and the write funnel for one kernel."""

    def __init__(self, k: "Kernel"):
        self.k = k
        kc = k.config.kconfig
        self.nr_cpus = int(kc.get("NR_CPUS", 64))
        self.split_pte = self.nr_cpus >= int(kc.get("SPLIT_PTLOCK_CPUS", 4))
        self.split_pmd = self.split_pte
        self.alloc_split = bool(kc.get("DEBUG_SPINLOCK") or kc.get("DEBUG_LOCK_ALLOC"))
        self.pti = bool(kc.get("PAGE_TABLE_ISOLATION", True)) and "nopti" not in k.config.params
        self.levels = 5 if k.config.five_level else 4
        self.tables: dict[int, PageTable] = {}  # pfn -> table
        self.checker = k.config.debug_vm
        self.lock_log: list[tuple] = []  # (lock name, nested) of nested acquisitions
        self.yield_hook = None  # test hook: runs once after the next pte_alloc_one

    # ------------------------------------------------------------ geometry
    def shift(self, level: int) -> int:
        return 12 + 9 * (level - 1) if level < PGD else (12 + 9 * (self.levels - 1))

    def top_level(self) -> int:
        return PGD

    def child_level(self, level: int) -> int:
        if level == PGD:
            return P4D if self.levels == 5 else PUD
        return level - 1

    def index(self, table: PageTable, addr: int) -> int:
        return (addr >> self.shift(table.level)) & 511

    # ------------------------------------------------------------ locks
    def spin_lock(self, lock: SpinLock, nested: bool = False) -> None:
        k = self.k
        ctx = k.current_ctx()
        if lock.owner is ctx:
            raise KernelBug(f"BUG: spinlock recursion on CPU#{k.current_cpu()}, {ctx.comm}/{ctx.pid}"
                            f" lock: {lock.name}, .magic: dead4ead, .owner: {ctx.comm}/{ctx.pid},"
                            f" .owner_cpu: {lock.owner_cpu}")
        if lock.owner is not None:
            o = lock.owner
            raise KernelBug(f"BUG: spinlock lockup suspected on CPU#{k.current_cpu()}, "
                            f"{ctx.comm}/{ctx.pid} lock: {lock.name}, .owner: {o.comm}/{o.pid}")
        if lock.cls in ("ptl", "page_table_lock"):
            held = [h for h in ctx.held_locks if h.cls in ("ptl", "page_table_lock")]
            if held and not nested:
                raise KernelBug(f"WARNING: possible recursive locking detected: {ctx.comm}/{ctx.pid}"
                                f" is trying to acquire {lock.name} while holding {held[-1].name}")
            if nested:
                self.lock_log.append((lock.name, held[-1].name if held else None))
        lock.owner = ctx
        lock.owner_cpu = k.current_cpu()
        ctx.held_locks.append(lock)

    def spin_unlock(self, lock: SpinLock) -> None:
        k = self.k
        ctx = k.current_ctx()
        if lock.owner is None:
            raise KernelBug(f"BUG: spinlock already unlocked on CPU#{k.current_cpu()}, "
                            f"{ctx.comm}/{ctx.pid} lock: {lock.name}, .magic: dead4ead, "
                            f".owner: <none>/-1, .owner_cpu: -1")
        if lock.owner is not ctx:
            o = lock.owner
            raise KernelBug(f"BUG: spinlock wrong owner on CPU#{k.current_cpu()}, "
                            f"{ctx.comm}/{ctx.pid} lock: {lock.name}, .magic: dead4ead, "
                            f".owner: {o.comm}/{o.pid}, .owner_cpu: {lock.owner_cpu}")
        lock.owner = None
        lock.owner_cpu = -1
        ctx.held_locks.remove(lock)

    def pte_lockptr(self, mm, pmd_table: PageTable, idx: int) -> SpinLock:
        """The lock of the PTE table the PMD entry points to."""
        if not self.split_pte:
            return mm.page_table_lock
        ent = int(pmd_table.entries[idx])
        return self.tables[pte_pfn(ent)].ptl

    def pmd_lockptr(self, mm, pmd_table: PageTable) -> SpinLock:
        return pmd_table.ptl if self.split_pmd else mm.page_table_lock

    def required_lock(self, table: PageTable) -> SpinLock:
        mm = table.mm
        if table.level == PTE and self.split_pte:
            return table.ptl
        if table.level == PMD and self.split_pmd:
            return table.ptl
        return mm.page_table_lock

    def set_entry(self, table: PageTable, idx: int, value: int, fn: str, addr: int) -> None:
        """The write funnel: every page-table entry change goes through here."""
        if self.checker and table.mm is not self.k.init_mm:
            need = self.required_lock(table)
            ctx = self.k.current_ctx()
            if need.owner is not ctx and not ctx.pt_exempt:
                held = ", ".join(h.name for h in ctx.held_locks) or "none"
                raise KernelBug(f"page-table write without lock: {fn} mm={table.mm.owner_pid} "
                                f"addr={addr:#x} level={LEVEL_NAMES[table.level]} needs {need.name} "
                                f"held={held}")
        table.entries[idx] = value

    # ------------------------------------------------------------ alloc/free
    def _alloc_table_page(self, order: int = 0) -> int | None:
        return self.k.page_alloc.alloc_pages_nodemask(G.GFP_PGTABLE_USER, order)

    def pgd_alloc(self, mm) -> None:
        order = 1 if self.pti else 0
        pfn = self._alloc_table_page(order)
        if pfn is None:
            from ..errors import ENOMEM
            raise ENOMEM("pgd_alloc")
        t = PageTable(pfn, PGD, mm, 0)
        self.tables[pfn] = t
        mm.pgd = t
        mm.pgd_order = order
        mm.page_table_lock = SpinLock(f"&mm->page_table_lock[{mm.owner_pid}]", "page_table_lock")

    def pgd_free(self, mm) -> None:
        t = mm.pgd
        del self.tables[t.pfn]
        mm.pgd = None
        self.k.page_alloc.free_pages(t.pfn, mm.pgd_order)

    def _ctor(self, t: PageTable) -> bool:
        k = self.k
        if t.level == PTE:
            if self.split_pte:
                t.ptl = self._ptlock_alloc(t)
                if t.ptl is None:
                    return False
            k.memmap.set_table(t.pfn)
            k.page_zone_of(t.pfn).vm_stat["nr_page_table_pages"] += 1
        elif t.level == PMD and self.split_pmd:
            t.ptl = self._ptlock_alloc(t)
            if t.ptl is None:
                return False
        return True

    def _ptlock_alloc(self, t: PageTable) -> SpinLock | None:
        """ptlock_init(): with ALLOC_SPLIT_PTLOCKS the spinlock is an object of the
        "page->ptl" slab cache (ptlock_alloc), which can fail."""
        lock = SpinLock(f"ptlock_ptr(page)[pfn {t.pfn:#x}]", "ptl")
        if self.alloc_split:
            obj = self.k.slub.kmem_cache_alloc(self.page_ptl_cachep(), G.GFP_KERNEL)
            if obj is None:
                return None
            lock.obj = obj
        return lock

    def page_ptl_cachep(self):
        """ptlock_cache_init(): kmem_cache_create("page->ptl", sizeof(spinlock_t), 0, SLAB_PANIC)."""
        cache = getattr(self, "_ptl_cache", None)
        if cache is None:
            from .slab_common import SLAB_PANIC
            # spinlock_t with DEBUG_SPINLOCK: raw lock, magic, owner_cpu, owner = 24 bytes;
            # DEBUG_LOCK_ALLOC adds the lockdep map (name, key, class cache) = 64 bytes
            size = 64 if self.k.config.kconfig.get("DEBUG_LOCK_ALLOC") else 24
            cache = self._ptl_cache = self.k.slub.kmem_cache_create("page->ptl", size, 0, SLAB_PANIC)
        return cache

    def _dtor(self, t: PageTable) -> None:
        k = self.k
        if t.level == PTE:
            k.memmap.clear_table(t.pfn)
            k.page_zone_of(t.pfn).vm_stat["nr_page_table_pages"] -= 1
        if t.ptl is not None and getattr(t.ptl, "obj", None) is not None:
            k.slub.kmem_cache_free(self.page_ptl_cachep(), t.ptl.obj)  # ptlock_free
        t.ptl = None

    def alloc_table(self, mm, level: int, base: int) -> PageTable | None:
        """pte_alloc_one / pmd_alloc_one / pud_alloc_one + ctor; None on failure."""
        pfn = self._alloc_table_page()
        if pfn is None:
            return None
        t = PageTable(pfn, level, mm, base)
        if level == PTE:
            t.row = mm.alloc_row()
        if not self._ctor(t):
            if level == PTE:
                mm.free_row(t.row)
            self.k.page_alloc.free_pages(pfn, 0)
            return None
        self.tables[pfn] = t
        return t

    def free_table(self, t: PageTable) -> None:
        """*_free_tlb: dtor, then the page goes back to the buddy allocator."""
        self._dtor(t)
        del self.tables[t.pfn]
        if t.level == PTE:
            t.mm.free_row(t.row)
        self.k.page_alloc.free_pages(t.pfn, 0)

    def install(self, parent: PageTable, idx: int, child: PageTable, addr: int) -> None:
        """Populate parent[idx] with child under the lock the level needs."""
        mm = parent.mm
        fn = {PMD: "pmd_populate", PUD: "pud_populate", P4D: "p4d_populate",
              PGD: "pgd_populate"}[parent.level]
        self.set_entry(parent, idx, (child.pfn << 12) | _PAGE_TABLE, fn, addr)
        child.parent, child.pidx = parent, idx
        if child.level == PTE:
            mm.set_pte_table(addr >> PMD_SHIFT, child)
            mm.pgtables_bytes += 4096  # mm_inc_nr_ptes
        elif child.level in (PMD, PUD):
            mm.pgtables_bytes += 4096  # mm_inc_nr_pmds / mm_inc_nr_puds

    def lookup(self, mm, addr: int, level: int) -> PageTable | None:
        """Walk from the PGD to the table of `level` covering addr (no allocation)."""
        t = mm.pgd
        while t is not None and t.level > level:
            ent = int(t.entries[self.index(t, addr)])
            if not ent & _PAGE_PRESENT:
                return None
            t = self.tables[pte_pfn(ent)]
        return t

    def pte_alloc_path_upto_pmd(self, mm, addr: int) -> PageTable | None:
        """alloc_new_pmd(): the PMD table for addr, allocating PUD/PMD levels."""
        return self.pte_alloc_path(mm, addr, PMD)

    def pte_alloc_path(self, mm, addr: int, stop: int = PTE) -> PageTable | None:
        """__handle_mm_fault's p4d/pud/pmd/pte_alloc: the PTE table for addr."""
        if stop == PTE:
            t = mm.pte_tables.get(addr >> PMD_SHIFT)
            if t is not None:
                return t
        parent = mm.pgd
        while parent.level > stop:
            idx = self.index(parent, addr)
            ent = int(parent.entries[idx])
            if ent & _PAGE_PRESENT:
                parent = self.tables[pte_pfn(ent)]
                continue
            level = self.child_level(parent.level)
            cshift = self.shift(level) + 9
            child = self.alloc_table(mm, level, addr & ~((1 << cshift) - 1) & MASK64)
            if child is None:
                return None
            if self.yield_hook is not None and level == PTE:
                # the allocation may sleep: another thread of this mm can run its fault here
                hook, self.yield_hook = self.yield_hook, None
                hook()
            lock = self.pmd_lockptr(mm, parent) if parent.level == PMD else mm.page_table_lock
            self.spin_lock(lock)
            try:
                if int(parent.entries[idx]) & _PAGE_PRESENT:  # lost a race: pte_free
                    self.spin_unlock(lock)
                    self.free_table(child)
                    self.spin_lock(lock)
                    child = self.tables[pte_pfn(int(parent.entries[idx]))]
                else:
                    self.install(parent, idx, child, addr)
            finally:
                self.spin_unlock(lock)
            parent = child
        return parent

    def clear_upper(self, t: PageTable) -> None:
        """pmd_clear/pud_clear/p4d_clear of the entry pointing at t (free_pgd_range)."""
        parent = t.parent
        ctx = self.k.current_ctx()
        ctx.pt_exempt += 1  # exception (a): tables being freed, no VMA covers them
        try:
            self.set_entry(parent, t.pidx, 0, "pmd_clear", t.base)
        finally:
            ctx.pt_exempt -= 1
        mm = t.mm
        if t.level == PTE:
            mm.set_pte_table(t.base >> PMD_SHIFT, None)
        if t.level in (PTE, PMD, PUD):
            mm.pgtables_bytes -= 4096

    def _children(self, t: PageTable, addr: int, end: int):
        """(child table, child_addr, child_end) for present entries of t in [addr, end)."""
        sh = self.shift(t.level)
        size = 1 << sh
        a = addr
        while a < end:
            nxt = min(((a >> sh) + 1) << sh, end)
            ent = int(t.entries[(a >> sh) & 511])
            if ent & _PAGE_PRESENT:
                yield self.tables[pte_pfn(ent)], a, nxt
            a = nxt
            if size == 0:
                break

    def free_pgd_range(self, mm, addr: int, end: int, floor: int, ceiling: int) -> None:
        """mm/memory.c free_pgd_range(): free tables wholly inside [floor, ceiling)."""
        addr &= ~(PMD_SIZE - 1) & MASK64
        if addr < floor:
            addr += PMD_SIZE
            if not addr & MASK64:
                return
        if ceiling:
            ceiling &= ~(PMD_SIZE - 1) & MASK64
            if not ceiling:
                return
        if (end - 1) & MASK64 > (ceiling - 1) & MASK64:
            end -= PMD_SIZE
        if addr > (end - 1) & MASK64:
            return
        self._free_level(mm.pgd, addr, end, floor, ceiling)

    def _free_level(self, t: PageTable, addr: int, end: int, floor: int, ceiling: int) -> None:
        for child, a, e in list(self._children(t, addr, end)):
            if child.level == PTE:
                self.clear_upper(child)
                self.k.tlb_free_table(child)
                continue
            self._free_level(child, a, e, floor, ceiling)
            cshift = self.shift(child.level) + 9
            mask = ~((1 << cshift) - 1) & MASK64
            start = a & mask
            if start < floor:
                continue
            c = ceiling
            if c:
                c &= mask
                if not c:
                    continue
            if (e - 1) & MASK64 > (c - 1) & MASK64:
                continue
            if child.level == P4D:
                self.clear_upper(child)
                self.k.tlb_free_table(child)
                continue
            self.clear_upper(child)
            self.k.tlb_free_table(child)
