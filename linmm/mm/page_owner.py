"""page_owner: who allocated each page (v5.7 mm/page_owner.c, mm/page_ext.c).

Boot with ``cmdline="page_owner=on"`` and call :func:`init` at the end of boot.
Every allocation then records order, gfp mask and a call stack for each of
its 2^order pages; every free clears PAGE_EXT_OWNER_ALLOCATED and records the
free stack.  :func:`read_page_owner` renders /sys/kernel/debug/page_owner.

Call stacks.  The model has no kernel stacks, so ``save_stack()`` walks the
*Python* call stack of linmm functions (innermost first) and turns it into
the kernel functions the real path goes through (see ``_translate``): most
model functions carry their kernel name already (``handle_mm_fault``,
``do_user_addr_fault``, ``get_page_from_freelist`` ...), model-only helpers
(``_foo``) are dropped, a few are renamed or expanded (``alloc_pages_nodemask``
-> ``__alloc_pages_nodemask``, the batched anon fault -> ``alloc_pages_vma``,
``handle_mm_fault``, ``do_user_addr_fault``), and the walk stops at the
kernel entry (``page_fault`` for a user access, ``entry_SYSCALL_64_after_hwframe``
for a system call, ``ret_from_fork`` for a kernel thread) or at the first frame
outside linmm (a test calling ``k.alloc_pages`` is "some driver").  A frame is
printed as ``%pS`` prints it, ``<func>+0x<off>/0x<size>``, with a fake size
derived from the function name and a fake offset derived from (function,
callee): deterministic, the same path always gives the same text, and the
scalar and the batched fault paths give the same stack.
"""
from __future__ import annotations

import os
import sys
import zlib

import numpy as np

from ..errors import EACCES, EINVAL, ENOENT, ENOMEM, KernelBug
from ..lib.state import kernel_state
from . import gfp as G
from .gfp import MIGRATE_MOVABLE, MIGRATE_TYPES, MIGRATETYPE_NAMES
from .memory_model import (
    MAX_ORDER,
    MAX_ORDER_NR_PAGES,
    PAGES_PER_SECTION,
    PFN_SECTION_SHIFT,
    SECTION_HAS_MEM_MAP,
    SECTION_MARKED_PRESENT,
)
from .page import NR_PAGEFLAGS, PG_reserved

PAGE_OWNER_STACK_DEPTH = 16
PAGE_EXT_OWNER = 1
PAGE_EXT_OWNER_ALLOCATED = 2
PAGE_EXT_SIZE = 8 + 16  # struct page_ext (flags) + struct page_owner (v5.7)

MIGRATE_REASON_NAMES = ("compaction", "memory_failure", "memory_hotplug", "syscall_or_cpuset",
                        "mempolicy_mbind", "numa_misplaced", "cma")
MR_COMPACTION, MR_MEMORY_FAILURE, MR_MEMORY_HOTPLUG, MR_SYSCALL, MR_MEMPOLICY_MBIND, \
    MR_NUMA_MISPLACED, MR_CONTIG_RANGE = range(7)

# ---------------------------------------------------------------- %pGg / %pGp
# include/trace/events/mmflags.h __def_gfpflag_names (v5.7), in table order
GFPFLAG_NAMES = (
    (G.GFP_TRANSHUGE, "GFP_TRANSHUGE"), (G.GFP_TRANSHUGE_LIGHT, "GFP_TRANSHUGE_LIGHT"),
    (G.GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"), (G.GFP_HIGHUSER, "GFP_HIGHUSER"),
    (G.GFP_USER, "GFP_USER"), (G.GFP_KERNEL_ACCOUNT, "GFP_KERNEL_ACCOUNT"),
    (G.GFP_KERNEL, "GFP_KERNEL"), (G.GFP_NOFS, "GFP_NOFS"), (G.GFP_ATOMIC, "GFP_ATOMIC"),
    (G.GFP_NOIO, "GFP_NOIO"), (G.GFP_NOWAIT, "GFP_NOWAIT"), (G.GFP_DMA, "GFP_DMA"),
    (G.__GFP_HIGHMEM, "__GFP_HIGHMEM"), (G.GFP_DMA32, "GFP_DMA32"), (G.__GFP_HIGH, "__GFP_HIGH"),
    (G.__GFP_ATOMIC, "__GFP_ATOMIC"), (G.__GFP_IO, "__GFP_IO"), (G.__GFP_FS, "__GFP_FS"),
    (G.__GFP_NOWARN, "__GFP_NOWARN"), (G.__GFP_RETRY_MAYFAIL, "__GFP_RETRY_MAYFAIL"),
    (G.__GFP_NOFAIL, "__GFP_NOFAIL"), (G.__GFP_NORETRY, "__GFP_NORETRY"),
    (G.__GFP_COMP, "__GFP_COMP"), (G.__GFP_ZERO, "__GFP_ZERO"),
    (G.__GFP_NOMEMALLOC, "__GFP_NOMEMALLOC"), (G.__GFP_MEMALLOC, "__GFP_MEMALLOC"),
    (G.__GFP_HARDWALL, "__GFP_HARDWALL"), (G.__GFP_THISNODE, "__GFP_THISNODE"),
    (G.__GFP_RECLAIMABLE, "__GFP_RECLAIMABLE"), (G.__GFP_MOVABLE, "__GFP_MOVABLE"),
    (G.__GFP_ACCOUNT, "__GFP_ACCOUNT"), (G.__GFP_WRITE, "__GFP_WRITE"),
    (G.__GFP_RECLAIM, "__GFP_RECLAIM"), (G.__GFP_DIRECT_RECLAIM, "__GFP_DIRECT_RECLAIM"),
    (G.__GFP_KSWAPD_RECLAIM, "__GFP_KSWAPD_RECLAIM"),
)
# __def_pageflag_names (v5.7 x86_64: PG_mlocked and PG_idle configured in)
PAGEFLAG_NAMES = tuple((1 << b, n) for b, n in (
    (0, "locked"), (7, "waiters"), (8, "error"), (1, "referenced"), (2, "uptodate"),
    (3, "dirty"), (4, "lru"), (5, "active"), (6, "workingset"), (9, "slab"),
    (10, "owner_priv_1"), (11, "arch_1"), (12, "reserved"), (13, "private"),
    (14, "private_2"), (15, "writeback"), (16, "head"), (17, "mappedtodisk"),
    (18, "reclaim"), (19, "swapbacked"), (20, "unevictable"), (21, "mlocked"),
    (22, "uncached"), (23, "hwpoison"), (24, "young"), (25, "idle")))


def format_flags(flags: int, names) -> str:
    """lib/vsprintf.c format_flags(): names whose whole mask is set, '|'-joined,
    leftover bits as 0x%lx."""
    out = ""
    for mask, name in names:
        if not flags:
            break
        if flags & mask != mask:
            continue
        out += name
        flags &= ~mask
        if flags:
            out += "|"
    if flags:
        out += f"{flags:#x}"
    return out


def format_gfp(gfp: int) -> str:
    """%pGg."""
    return format_flags(gfp, GFPFLAG_NAMES)


def format_page_flags(flags: int) -> str:
    """%pGp (v5.7: the zone/node/section fields are masked off)."""
    return format_flags(flags & ((1 << NR_PAGEFLAGS) - 1), PAGEFLAG_NAMES)


# ---------------------------------------------------------------- stacks
_LINMM_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_THIS_FILE = os.path.abspath(__file__)
_ALLOCATORS = frozenset(("alloc_pages_nodemask", "alloc_pages_bulk"))
_SYSCALL_ENTRY = ("do_syscall_64", "entry_SYSCALL_64_after_hwframe")
_KTHREAD_ENTRY = ("kthread", "ret_from_fork")
_TABLE_ALLOC = {1: ("pte_alloc_one", "__pte_alloc"), 2: ("__pmd_alloc",), 3: ("__pud_alloc",),
                4: ("__p4d_alloc",), 5: ("pgd_alloc",)}
# model function -> kernel frames (innermost first); () = inlined / model-only
_RENAME = {
    "prep_new_page": (), "alloc_pages_nodemask": ("__alloc_pages_nodemask",),
    "_alloc_table_page": (), "pte_alloc_path": (), "pte_alloc_path_upto_pmd": (),
    "free_the_page": (), "access_process_vm": (), "mm_alloc": ("mm_init",),
    "do_fork": ("copy_process", "_do_fork"), "kswapd_step": ("kswapd",),
    "page_reporting_process": ("page_reporting_process", "process_one_work", "worker_thread"),
}


def _frame_text(name: str, callee: str) -> str:
    size = ((zlib.crc32(name.encode()) % 0x7C0) + 0x40) & ~0xF
    off = size // 8 + zlib.crc32(f"{name}<{callee}".encode()) % (size - size // 8)
    return f"{name}+{off:#x}/{size:#x}"


# the model functions whose kernel frames depend on one argument
_LOCAL_ARG = {("kernel.py", "alloc_pages"): "nid", ("pgtable.py", "alloc_table"): "level",
              ("page_alloc.py", "free_pages_prepare"): "order"}
_STOPPERS = {("fault.py", "access"), ("kernel.py", "run"), ("kernel.py", "spawn")}


def _translate(name: str, base: str, arg, callee: str | None):
    """(kernel frames for this Python frame, stop walking).  `arg` is the value
    of the frame's _LOCAL_ARG argument (None for the others)."""
    if base == "task.py":
        if name in ("access", "touch", "read", "write", "_enter", "_syscall"):
            return (), False
        if name == "exit":
            return ("do_group_exit", "__x64_sys_exit_group") + _SYSCALL_ENTRY, True
        if name.startswith("_"):
            return (), False
        return ("__x64_sys_" + name,) + _SYSCALL_ENTRY, True
    if base == "fault.py":
        if name == "access":
            return ("page_fault",), True
        if name == "_fault_batch":
            if callee == "do_anonymous_pages":
                return ("handle_mm_fault", "do_user_addr_fault"), False
            return (), False
    if base == "kernel.py":
        if name == "run":
            return _KTHREAD_ENTRY, True
        if name == "spawn":
            return ("mm_alloc", "bprm_mm_init", "__do_execve_file", "__x64_sys_execve") + \
                _SYSCALL_ENTRY, True
        if name == "alloc_pages":
            return (("alloc_pages_current",) if arg is None else ()), False
        if name in ("alloc_pages_bulk", "free_pages"):
            return (), False
    if name == "alloc_pages_bulk":  # page_alloc.py: pcp fast path inline, else a caller
        return (("get_page_from_freelist", "__alloc_pages_nodemask") if callee is None else ()), False
    if name in ("do_anonymous_page", "do_anonymous_pages"):
        return (("alloc_pages_vma",) if callee in _ALLOCATORS else ()), False
    if name == "wp_page_copy":
        return (("alloc_pages_vma", "wp_page_copy") if callee in _ALLOCATORS else ("wp_page_copy",)), False
    if name == "alloc_table":
        return _TABLE_ALLOC.get(arg, ()), False
    if name == "free_pages_prepare":
        return (("free_pcp_prepare", "free_unref_page") if not arg else ("__free_pages_ok",)), False
    if name == "free_pages" and base == "page_alloc.py":
        return ("__free_pages",), False
    if name == callee:  # a wrapper calling the same-named function (k.kmalloc -> slub.kmalloc)
        return (), False
    if name in _RENAME:
        return _RENAME[name], False
    if name.startswith("<") or (name.startswith("_") and not name.startswith("__")):
        return (), False
    return (name,), False


# per code object: (kind, local argument name); kind 0 = page_owner itself (skip),
# 1 = a linmm frame, 2 = outside linmm (end of the kernel stack), 3 = a kernel entry
_code_info: dict = {}
_stack_cache: dict = {}


def _classify(co):
    path = co.co_filename
    if path == _THIS_FILE:
        return 0, None, ""
    if not path.startswith(_LINMM_DIR):
        return 2, None, ""
    base = os.path.basename(path)
    key = (base, co.co_name)
    stop = key in _STOPPERS or (base == "task.py" and co.co_name not in
                                ("access", "touch", "read", "write", "_enter", "_syscall")
                                and not co.co_name.startswith("_"))
    return (3 if stop else 1), _LOCAL_ARG.get(key), base


def model_stack(depth: int = PAGE_OWNER_STACK_DEPTH, frame=None) -> tuple[str, ...]:
    """The kernel call stack of the current model path, innermost first
    (memoised on the chain of model code objects and the few arguments used)."""
    f = frame if frame is not None else sys._getframe(1)
    chain = []
    while f is not None:
        co = f.f_code
        info = _code_info.get(co)
        if info is None:
            info = _code_info[co] = _classify(co)
        kind, arg_name = info[0], info[1]
        if kind == 0:
            f = f.f_back
            continue
        if kind == 2:
            break
        chain.append((co, f.f_locals.get(arg_name) if arg_name else None))
        if kind == 3:
            break
        f = f.f_back
    key = (depth, tuple(chain))
    res = _stack_cache.get(key)
    if res is None:
        names: list[str] = []
        callee = None
        for co, arg in chain:
            out, stop = _translate(co.co_name, _code_info[co][2], arg, callee)
            names.extend(out)
            if stop:
                break
            callee = co.co_name
        names = names[:depth]
        res = _stack_cache[key] = tuple(_frame_text(n, names[i + 1] if i + 1 < len(names) else "")
                                        for i, n in enumerate(names))
    return res


class StackDepot:
    """lib/stackdepot.c: de-duplicated stacks; handle 0 = none."""

    def __init__(self, limit: int | None = None):
        self.stacks: list[tuple[str, ...]] = [()]
        self.index: dict[tuple[str, ...], int] = {}
        self.limit = limit  # max stacks stored (None: unlimited); full -> save fails

    def save(self, frames: tuple[str, ...]) -> int:
        h = self.index.get(frames)
        if h is not None:
            return h
        if self.limit is not None and len(self.stacks) - 1 >= self.limit:
            return 0
        self.stacks.append(frames)
        self.index[frames] = len(self.stacks) - 1
        return len(self.stacks) - 1

    def fetch(self, handle: int) -> tuple[str, ...]:
        return self.stacks[handle] if 0 < handle < len(self.stacks) else ()

    def __len__(self) -> int:
        return len(self.stacks) - 1


def _dummy_stack(register: str) -> tuple[str, ...]:
    """create_dummy_stack(): stack_trace_save(entries, 4, 0) inside register_*_stack()."""
    names = (register, "init_page_owner", "page_ext_init", "kernel_init_freeable")
    return tuple(_frame_text(n, names[i + 1] if i + 1 < len(names) else "") for i, n in enumerate(names))


def stack_snprint(frames) -> str:
    """stack_trace_snprint(..., spaces=0): ' %pS\\n' per entry."""
    return "".join(f" {fr}\n" for fr in frames)


# ---------------------------------------------------------------- state
class PageOwner:
    """Per-machine page_owner state (page_ext arrays and the stack depot)."""

    def __init__(self, k):
        self.k = k
        self.support = bool(k.config.kconfig.get("PAGE_OWNER", True))  # CONFIG_PAGE_OWNER
        self.enabled = False  # page_owner_enabled (boot option)
        self.inited = False  # page_owner_inited static key
        self.booted = False  # init(k) ran
        self.depot = StackDepot()
        self.dummy_handle = self.failure_handle = self.early_handle = 0
        self.in_page_owner = False
        self.early_pages = 0
        self.early_per_zone: dict[tuple[int, str], int] = {}
        self.page_ext_pages: list[int] = []  # pfns holding the page_ext tables
        self.page_ext_bytes = 0
        n = k.memmap.nr
        self.ext_flags = np.zeros(0, np.uint8)
        self.order = np.zeros(0, np.uint16)
        self.last_migrate_reason = np.zeros(0, np.int16)
        self.gfp_mask = np.zeros(0, np.uint32)
        self.handle = np.zeros(0, np.uint32)
        self.free_handle = np.zeros(0, np.uint32)
        self._n = n

    def _alloc_ext(self) -> None:
        n = self._n
        self.ext_flags = np.zeros(n, np.uint8)
        self.order = np.zeros(n, np.uint16)
        self.last_migrate_reason = np.full(n, -1, np.int16)
        self.gfp_mask = np.zeros(n, np.uint32)
        self.handle = np.zeros(n, np.uint32)
        self.free_handle = np.zeros(n, np.uint32)

    # ---- save_stack(): skip save_stack and __set_page_owner (our own frames)
    def save_stack(self, gfp: int) -> int:
        if self.in_page_owner:
            return self.dummy_handle
        self.in_page_owner = True
        try:
            h = self.depot.save(model_stack(PAGE_OWNER_STACK_DEPTH, sys._getframe(1)))
            return h or self.failure_handle
        finally:
            self.in_page_owner = False

    # ---- hooks
    def set_page_owner(self, pfn: int, order: int, gfp: int) -> None:
        """__set_page_owner() from post_alloc_hook()."""
        if not self.inited:
            return
        h = self.save_stack(gfp)
        e = pfn + (1 << order)
        self.handle[pfn:e] = h
        self.order[pfn:e] = order
        self.gfp_mask[pfn:e] = gfp & 0xFFFFFFFF
        self.last_migrate_reason[pfn:e] = -1
        self.ext_flags[pfn:e] |= PAGE_EXT_OWNER | PAGE_EXT_OWNER_ALLOCATED

    def reset_page_owner(self, pfn: int, order: int) -> None:
        """__reset_page_owner() from free_pages_prepare()."""
        if not self.inited:
            return
        h = self.save_stack(G.GFP_NOWAIT | G._GFP_NOWARN)
        e = pfn + (1 << order)
        self.ext_flags[pfn:e] &= np.uint8(~PAGE_EXT_OWNER_ALLOCATED & 0xFF)
        self.free_handle[pfn:e] = h

    def split_page_owner(self, pfn: int, order: int) -> None:
        """__split_page_owner(page, order) (v5.7 takes the order)."""
        if self.inited:
            self.order[pfn:pfn + (1 << order)] = 0

    def copy_page_owner(self, old: int, new: int) -> None:
        """__copy_page_owner() (migration: move_to_new_page)."""
        if not self.inited:
            return
        self.order[new] = self.order[old]
        self.gfp_mask[new] = self.gfp_mask[old]
        self.last_migrate_reason[new] = self.last_migrate_reason[old]
        self.handle[new] = self.handle[old]
        self.ext_flags[new] |= PAGE_EXT_OWNER | PAGE_EXT_OWNER_ALLOCATED

    def set_page_owner_migrate_reason(self, pfn: int, reason: int) -> None:
        if self.inited:
            self.last_migrate_reason[pfn] = reason


def _state(k) -> PageOwner:
    return kernel_state(k, "page_owner", PageOwner)


# ---------------------------------------------------------------- boot
def _valid_mask(k, n: int) -> np.ndarray:
    """pfn_valid() for pfns [0, n)."""
    if k.config.memory_model in ("flatmem", "discontigmem"):
        m = np.zeros(n, bool)
        m[:min(n, k.layout.max_pfn)] = True
        if k.config.memory_model == "discontigmem":
            m[:] = False
            for pg in k.pgdats:
                m[pg.node_start_pfn:pg.node_end_pfn] = True
        return m
    secs = (k.section_flags[:(n + PAGES_PER_SECTION - 1) // PAGES_PER_SECTION] & SECTION_HAS_MEM_MAP) != 0
    return np.repeat(secs, PAGES_PER_SECTION)[:n]


def _free_mask(k, n: int, include_pcp: bool = True) -> np.ndarray:
    """Pfns inside a free buddy block (or on a pcp list)."""
    m = np.zeros(n, bool)
    for z in k.all_zones():
        for o in range(MAX_ORDER):
            area = z.free_area[o]
            if not area.nr_free:
                continue
            for fl in area.free_list:
                for pfn in fl:
                    m[pfn:pfn + (1 << o)] = True
        if include_pcp:
            for pcp in z.pageset:
                for lst in pcp.lists:
                    if lst:
                        m[np.fromiter(lst, np.int64, len(lst))] = True
    return m


def _zone_mask(k, z, n: int) -> np.ndarray:
    mm = k.memmap
    s, e = z.zone_start_pfn, min(z.zone_end_pfn, n)
    out = np.zeros(n, bool)
    if e <= s:
        return out
    f = mm.flags[s:e]
    zi = (f >> np.uint64(mm.zones_pgoff)) & np.uint64(7)
    ni = (f >> np.uint64(mm.nodes_pgoff)) & np.uint64(63)
    out[s:e] = (zi == np.uint64(z.idx)) & (ni == np.uint64(z.node))
    return out


def _alloc_page_ext(k, po: PageOwner) -> None:
    """page_ext_init(): the 24-byte-per-page tables, allocated pages per present
    section (SPARSEMEM: alloc_pages_exact_nid(), i.e. an order-8 block split and
    trimmed to 192 pages).  FLATMEM takes them from memblock in the kernel; the
    model allocates pages there too (documented deviation)."""
    pa = k.page_alloc
    if k.config.memory_model in ("flatmem", "discontigmem"):
        tables = [(pg.node_id, pg.node_spanned_pages * PAGE_EXT_SIZE) for pg in k.pgdats
                  if pg.node_spanned_pages]
    else:
        tables = []
        for pg in k.pgdats:
            pfn = pg.node_start_pfn & ~(PAGES_PER_SECTION - 1)
            while pfn < pg.node_end_pfn:
                nr = pfn >> PFN_SECTION_SHIFT
                if nr < len(k.section_flags) and k.section_flags[nr] & SECTION_MARKED_PRESENT:
                    tables.append((pg.node_id, PAGE_EXT_SIZE * PAGES_PER_SECTION))
                pfn += PAGES_PER_SECTION
    gfp = G.GFP_KERNEL | G.__GFP_ZERO | G.__GFP_NOWARN
    total = 0
    for nid, size in tables:
        npages = (size + 4095) >> 12
        order = max(0, (npages - 1).bit_length())
        pfn = pa.alloc_pages_nodemask(gfp, order, nid)
        if pfn is None:
            continue  # vzalloc fallback: vmalloc is not modelled
        _split_refcounts(k, pfn, order)
        for p in range(pfn + npages, pfn + (1 << order)):
            pa.free_pages(p, 0)
        po.page_ext_pages.extend(range(pfn, pfn + npages))
        total += size
    po.page_ext_bytes = total
    k.printk(f"allocated {total} bytes of page_ext")


def _split_refcounts(k, pfn: int, order: int) -> None:
    mm = k.memmap
    if not int(mm.refcount[pfn]):
        raise KernelBug(f"split_page: pfn {pfn:#x} has refcount 0")
    mm.refcount[pfn + 1:pfn + (1 << order)] = 1


def split_page(k, pfn: int, order: int) -> None:
    """mm/page_alloc.c split_page(): a non-compound 2^order block becomes 2^order
    order-0 pages (each refcounted), then split_page_owner()."""
    from .page import PG_head
    if k.memmap.test(pfn, PG_head):
        raise KernelBug(f"split_page: pfn {pfn:#x} is a compound page")
    _split_refcounts(k, pfn, order)
    po = getattr(k, "page_owner", None)
    if isinstance(po, PageOwner):
        po.split_page_owner(pfn, order)


def init_page_owner(k, po: PageOwner) -> None:
    """init_page_owner(): register the reserved stacks, enable, mark early pages."""
    d = po.depot
    po.dummy_handle = d.save(_dummy_stack("register_dummy_stack"))
    po.failure_handle = d.save(_dummy_stack("register_failure_stack"))
    po.early_handle = d.save(_dummy_stack("register_early_stack"))
    po.inited = True
    init_early_allocated_pages(k, po)


def init_early_allocated_pages(k, po: PageOwner) -> None:
    """Mark every page that is neither free, reserved nor already tracked as
    allocated with order 0, gfp 0 and the early stack.  The model drains the
    per-cpu lists first (the kernel would count pcp pages as early allocated
    and drains them before every read of the file)."""
    k.page_alloc.drain_all_pages()
    mm = k.memmap
    n = mm.nr
    valid = _valid_mask(k, n)
    free = _free_mask(k, n, include_pcp=True)
    reserved = (mm.flags & np.uint64(1 << PG_reserved)) != 0
    cand = valid & ~free & ~reserved & ((po.ext_flags & PAGE_EXT_OWNER) == 0)
    for pg in k.pgdats:
        for z in pg.node_zones:
            if not z.populated_zone():
                continue
            sel = cand & _zone_mask(k, z, n)
            idx = np.flatnonzero(sel)
            po.handle[idx] = po.early_handle
            po.order[idx] = 0
            po.gfp_mask[idx] = 0
            po.last_migrate_reason[idx] = -1
            po.ext_flags[idx] |= PAGE_EXT_OWNER | PAGE_EXT_OWNER_ALLOCATED
            cnt = len(idx)
            po.early_per_zone[(pg.node_id, z.name)] = cnt
            po.early_pages += cnt
            k.printk(f"Node {pg.node_id}, zone {z.name:>8}: page owner found early allocated {cnt} pages")


def init(k) -> PageOwner:
    """Boot: parse page_owner=, page_ext_init(), init_page_owner(), hooks, and the
    late initcall pageowner_init().  Call once at the end of boot."""
    po = _state(k)
    if po.booted:
        return po
    po.booted = True
    params = k.config.params
    if po.support and "page_owner" in params:
        val = params["page_owner"]
        if val is None:
            k.printk("Malformed early option 'page_owner'")
        elif val == "on":
            po.enabled = True
    if po.support and po.enabled:
        _alloc_page_ext(k, po)
        po._alloc_ext()
        init_page_owner(k, po)
        k.page_alloc.alloc_hooks.append(po.set_page_owner)
        k.page_alloc.free_hooks.append(po.reset_page_owner)
    if po.support and not po.inited:
        k.printk("page_owner is disabled")  # pageowner_init()
    return po


# ---------------------------------------------------------------- debugfs
def print_page_owner(k, po: PageOwner, count: int, pfn: int) -> str:
    """print_page_owner(): the record, or ENOMEM if it does not fit in
    min(count, 4096) bytes (snprintf needs room for the NUL)."""
    count = min(count, 4096)
    gfp = int(po.gfp_mask[pfn])
    pb_mt = k.page_alloc.get_pageblock_migratetype(pfn)
    page_mt = G.gfp_migratetype(gfp)
    flags = int(k.memmap.flags[pfn])
    text = (f"Page allocated via order {int(po.order[pfn])}, mask {gfp:#x}({format_gfp(gfp)})\n"
            f"PFN {pfn} type {MIGRATETYPE_NAMES[page_mt]} Block {pfn >> k.page_alloc.pageblock_order} type "
            f"{MIGRATETYPE_NAMES[pb_mt]} Flags {flags:#x}({format_page_flags(flags)})\n")
    text += stack_snprint(po.depot.fetch(int(po.handle[pfn])))
    r = int(po.last_migrate_reason[pfn])
    if r != -1:
        text += f"Page has been migrated, last migrate reason: {MIGRATE_REASON_NAMES[r]}\n"
    text += "\n"
    if len(text.encode()) >= count:
        raise ENOMEM(f"page_owner: record of pfn {pfn} does not fit in {count} bytes")
    return text


def _candidates(k, po: PageOwner, start: int) -> np.ndarray:
    """Pfns >= start that read_page_owner() would print, in order."""
    n = min(k.layout.max_pfn, len(po.ext_flags))
    if start >= n:
        return np.zeros(0, np.int64)
    s = slice(start, n)
    pfns = np.arange(start, n, dtype=np.int64)
    ef = po.ext_flags[s]
    ok = (ef & PAGE_EXT_OWNER) != 0
    ok &= (ef & PAGE_EXT_OWNER_ALLOCATED) != 0
    ok &= (pfns & ((np.int64(1) << po.order[s].astype(np.int64)) - 1)) == 0
    ok &= po.handle[s] != 0
    ok &= _valid_mask(k, n)[s]
    ok &= ~_free_mask(k, n, include_pcp=False)[s]
    return pfns[ok]


def page_owner_read(k, count: int, ppos: int) -> tuple[str, int]:
    """The debugfs read handler: (text, new *ppos); at most one record per call.
    *ppos is pfn - min_low_pfn (min_low_pfn = 0 on x86_64), not a byte offset."""
    po = _state(k)
    if not po.inited:
        raise EINVAL("page_owner: not initialised")
    k.page_alloc.drain_all_pages()
    pfn = ppos
    while not k.pfn_valid(pfn) and pfn & (MAX_ORDER_NR_PAGES - 1):
        pfn += 1
    c = _candidates(k, po, pfn)
    if not len(c):
        return "", ppos
    pfn = int(c[0])
    ppos = pfn + 1
    try:
        return print_page_owner(k, po, count, pfn), ppos
    except ENOMEM as e:
        e.ppos = ppos  # the kernel has already advanced *ppos past this page
        raise


class PageOwnerFile:
    """An open /sys/kernel/debug/page_owner: read(count) as read(2) would."""

    def __init__(self, k, flags: str = "r"):
        po = _state(k)
        if not po.inited:
            raise ENOENT("/sys/kernel/debug/page_owner")
        if "w" in flags or "a" in flags or "+" in flags:
            raise EACCES("/sys/kernel/debug/page_owner is read-only (mode 0400)")
        self.k = k
        self.ppos = 0

    def read(self, count: int = 4096) -> str:
        try:
            text, self.ppos = page_owner_read(self.k, count, self.ppos)
        except ENOMEM as e:
            self.ppos = getattr(e, "ppos", self.ppos)
            raise
        return text


def read_page_owner(k, offset: int = 0, size: int | None = None) -> str:
    """/sys/kernel/debug/page_owner.  size=None: the whole file from file position
    `offset` (what `cat` gets: one record per read(), each read with a 4096-byte
    buffer... as many reads as it takes).  With size: ONE read(2) of `size` bytes
    at file position `offset` (the kernel's *ppos, a pfn index): one record, or
    ENOMEM if the record does not fit.  ENOENT when page_owner is off (no file)."""
    po = _state(k)
    if not po.inited:
        raise ENOENT("/sys/kernel/debug/page_owner")
    if size is not None:
        return page_owner_read(k, size, offset)[0]
    k.page_alloc.drain_all_pages()
    out = []
    for pfn in _candidates(k, po, offset).tolist():
        try:
            out.append(print_page_owner(k, po, 4096, pfn))
        except ENOMEM:
            continue  # a record longer than a page: that read() fails, cat would stop
    return "".join(out)


def write_page_owner(k, text) -> None:
    _state(k)
    if not k.page_owner.inited:
        raise ENOENT("/sys/kernel/debug/page_owner")
    raise EACCES("/sys/kernel/debug/page_owner is read-only (mode 0400)")


def dump_page_owner(k, pfn: int) -> list[str]:
    """__dump_page_owner(): the alert lines (also printed to the kernel log)."""
    po = _state(k)
    if not po.inited or pfn >= len(po.ext_flags):
        lines = ["There is not page extension available."]
    elif not po.ext_flags[pfn] & PAGE_EXT_OWNER:
        lines = ["page_owner info is not present (never set?)"]
    else:
        gfp = int(po.gfp_mask[pfn])
        lines = ["page_owner tracks the page as allocated" if po.ext_flags[pfn] & PAGE_EXT_OWNER_ALLOCATED
                 else "page_owner tracks the page as freed",
                 (f"page last allocated via order {int(po.order[pfn])}, migratetype "
                  f"{MIGRATETYPE_NAMES[G.gfp_migratetype(gfp)]}, gfp_mask {gfp:#x}({format_gfp(gfp)})")]
        h = int(po.handle[pfn])
        if not h:
            lines.append("page_owner allocation stack trace missing")
        else:
            lines.extend(f" {fr}" for fr in po.depot.fetch(h))
        h = int(po.free_handle[pfn])
        if not h:
            lines.append("page_owner free stack trace missing")
        else:
            lines.append("page last free stack trace:")
            lines.extend(f" {fr}" for fr in po.depot.fetch(h))
        r = int(po.last_migrate_reason[pfn])
        if r != -1:
            lines.append(f"page has been migrated, last migrate reason: {MIGRATE_REASON_NAMES[r]}")
    for line in lines:
        k.printk(line)
    return lines


# ---------------------------------------------------------------- pagetypeinfo
def pagetypeinfo_showmixedcount_print(k, zone) -> str:
    """One "Node %d, zone %8s " row: pageblocks holding an allocated page whose
    gfp migratetype differs from the block's (counted under the block's type)."""
    po = _state(k)
    mm = k.memmap
    s, e = zone.zone_start_pfn, min(zone.zone_end_pfn, mm.nr)
    counts = [0] * MIGRATE_TYPES
    if e > s:
        n = mm.nr
        valid = _valid_mask(k, n)[s:e]
        inzone = _zone_mask(k, zone, n)[s:e]
        free = _free_mask(k, n, include_pcp=False)[s:e]
        reserved = (mm.flags[s:e] & np.uint64(1 << PG_reserved)) != 0
        alloc = (po.ext_flags[s:e] & PAGE_EXT_OWNER_ALLOCATED) != 0
        pfns = np.arange(s, e, dtype=np.int64)
        pb = k.page_alloc.pageblock_flags[pfns >> k.page_alloc.pageblock_order].astype(np.int64)
        page_mt = ((po.gfp_mask[s:e] & (G.__GFP_RECLAIMABLE | G.__GFP_MOVABLE)) >> 3).astype(np.int64)
        mixed = valid & inzone & ~free & ~reserved & alloc & (page_mt != pb)
        for blk in np.unique(pfns[mixed] >> k.page_alloc.pageblock_order).tolist():
            mt = int(k.page_alloc.pageblock_flags[blk])
            counts[MIGRATE_MOVABLE if mt == 5 else mt] += 1  # CMA counts as Movable
    return f"Node {zone.node}, zone {zone.name:>8} " + "".join(f"{c:12d} " for c in counts) + "\n"


def pagetypeinfo_showmixedcount(k, pgdat) -> str:
    """The "Number of mixed blocks" table of one node ("" unless page_owner is inited)."""
    po = _state(k)
    if not po.inited:
        return ""
    k.page_alloc.drain_all_pages()
    out = f"\n{'Number of mixed blocks ':<23}" + "".join(f"{nm:>12} " for nm in MIGRATETYPE_NAMES) + "\n"
    for z in pgdat.node_zones:
        if z.populated_zone():
            out += pagetypeinfo_showmixedcount_print(k, z)
    return out


def proc_pagetypeinfo(k) -> str:
    """/proc/pagetypeinfo with the mixed-block table after each node's block counts."""
    from .vmstat import proc_pagetypeinfo as core
    text = core(k)
    if not _state(k).inited:
        return text
    parts = text.split("Page block order:")
    nodes = [pg for pg in k.pgdats if any(z.present_pages for z in pg.node_zones)]
    out = parts[0]
    for pg, part in zip(nodes, parts[1:]):
        out += "Page block order:" + part + pagetypeinfo_showmixedcount(k, pg)
    return out


# ---------------------------------------------------------------- k.check()
def check(k) -> None:
    """OWNER_ALLOCATED == (page allocated, i.e. neither in a free block, on a
    pcp list nor isolated by page reporting) for every non-reserved valid pfn."""
    po = getattr(k, "page_owner", None)
    if not isinstance(po, PageOwner) or not po.inited:
        return
    mm = k.memmap
    n = min(mm.nr, len(po.ext_flags))
    valid = _valid_mask(k, n)
    free = _free_mask(k, n, include_pcp=True)
    pr = getattr(k, "page_reporting", None)
    for pfn, order in getattr(pr, "isolated", {}).items():
        free[pfn:pfn + (1 << order)] = True
    reserved = (mm.flags[:n] & np.uint64(1 << PG_reserved)) != 0
    want = valid & ~free & ~reserved
    have = (po.ext_flags[:n] & PAGE_EXT_OWNER_ALLOCATED) != 0
    bad = np.flatnonzero((want != have) & valid & ~reserved)
    if len(bad):
        p = int(bad[0])
        state = "allocated" if want[p] else "free"
        raise KernelBug(f"check: page_owner: pfn {p:#x} is {state} but OWNER_ALLOCATED is "
                        f"{'set' if have[p] else 'clear'} ({len(bad)} pfns disagree)")
    if (po.ext_flags[:n][free] & PAGE_EXT_OWNER_ALLOCATED).any():
        raise KernelBug("check: page_owner: a free page has OWNER_ALLOCATED set")
