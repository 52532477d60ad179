"""SLUB (mm/slub.c, v5.7.x, x86_64): caches, per-cpu slabs and partial lists,
per-node partial/full lists, merging, slub_debug and its reports.

Objects are real bytes in real slab pages: every free object's free pointer
is an 8-byte little-endian word at ``object + s.offset`` in ``k.frames``;
red zones, poison, tracks and padding are bytes in the object's stride.  The
model keeps, besides those bytes, only what struct page / kmem_cache keep.

Addresses are direct-map kernel virtual addresses:
``PAGE_OFFSET + (pfn << 12) + offset``.  Function names follow the kernel so
that stack dumps and tracks read like the kernel's.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..errors import EEXIST, KernelBug
from . import gfp as G
from .page import PG_slab
from .slab_common import SlabCommon
from .slub_debug import (_API, _TRACK, _U64, TRACK_ALLOC, TRACK_FREE, SlubDebug,  # noqa: F401
                         _bswap64)
from .slab_common import (ALIGN, DEBUG_DEFAULT_FLAGS, DEBUG_METADATA_FLAGS, KMALLOC_MAX_CACHE_SIZE, KMALLOC_SHIFT_HIGH, MAX_OBJS_PER_PAGE, MAX_ORDER, MAX_PARTIAL, MIN_PARTIAL, NUMA_NO_NODE,
                          PAGE_ALLOC_COSTLY_ORDER, PAGE_OFFSET, PAGE_SIZE, POISON_INUSE, SHRINK_PROMOTE_MAX, SIZEOF_PTR, SLAB_ACCOUNT, SLAB_CACHE_DMA,
                          SLAB_CACHE_DMA32, SLAB_CONSISTENCY_CHECKS, SLAB_DEBUG_FLAGS, SLAB_FAILSLAB,
                          SLAB_POISON,
                          SLAB_RECLAIM_ACCOUNT, SLAB_RED_ZONE, SLAB_STORE_USER, SLAB_TRACE,
                          SLAB_TYPESAFE_BY_RCU, SLUB_RED_INACTIVE, TRACK_SIZE, ZERO_SIZE_PTR, KallSyms, _CMPXCHG_DOUBLE,
                          _OBJECT_POISON, fls, get_order, ilog2, page_address, print_tainted, python_frames)

# enum stat_item
STAT_ITEMS = ("alloc_fastpath", "alloc_slowpath", "free_fastpath", "free_slowpath", "free_frozen",
              "free_add_partial", "free_remove_partial", "alloc_from_partial", "alloc_slab",
              "alloc_refill", "alloc_node_mismatch", "free_slab", "cpuslab_flush", "deactivate_full",
              "deactivate_empty", "deactivate_to_head", "deactivate_to_tail",
              "deactivate_remote_frees", "deactivate_bypass", "order_fallback",
              "cmpxchg_double_cpu_fail", "cmpxchg_double_fail", "cpu_partial_alloc",
              "cpu_partial_free", "cpu_partial_node", "cpu_partial_drain")
(ALLOC_FASTPATH, ALLOC_SLOWPATH, FREE_FASTPATH, FREE_SLOWPATH, FREE_FROZEN, FREE_ADD_PARTIAL,
 FREE_REMOVE_PARTIAL, ALLOC_FROM_PARTIAL, ALLOC_SLAB, ALLOC_REFILL, ALLOC_NODE_MISMATCH, FREE_SLAB,
 CPUSLAB_FLUSH, DEACTIVATE_FULL, DEACTIVATE_EMPTY, DEACTIVATE_TO_HEAD, DEACTIVATE_TO_TAIL,
 DEACTIVATE_REMOTE_FREES, DEACTIVATE_BYPASS, ORDER_FALLBACK, CMPXCHG_DOUBLE_CPU_FAIL,
 CMPXCHG_DOUBLE_FAIL, CPU_PARTIAL_ALLOC, CPU_PARTIAL_FREE, CPU_PARTIAL_NODE,
 CPU_PARTIAL_DRAIN) = range(len(STAT_ITEMS))
NR_SLUB_STAT_ITEMS = len(STAT_ITEMS)

M_NONE, M_PARTIAL, M_FULL, M_FREE = range(4)

_GFP_ZERO = G._GFP_ZERO
_GFP_DIRECT_RECLAIM = G._GFP_DIRECT_RECLAIM
_GFP_RECLAIM_MASK = (G._GFP_RECLAIM | G._GFP_HIGH | G._GFP_IO | G._GFP_FS | G._GFP_NOWARN
                     | G._GFP_RETRY_MAYFAIL | G._GFP_NOFAIL | G._GFP_NORETRY | G._GFP_MEMALLOC
                     | G._GFP_NOMEMALLOC | G._GFP_ATOMIC)
_GFP_CONSTRAINT_MASK = G._GFP_HARDWALL | G._GFP_THISNODE
_GFP_BITS_MASK = (1 << 23) - 1
_GFP_SLAB_BUG_MASK = G._GFP_DMA32 | G._GFP_HIGHMEM | ~_GFP_BITS_MASK

# model files whose frames are "kernel" frames in stack dumps and tracks
_KERNEL_FILES = ("linmm/mm/slub.py", "linmm/mm/slab_common.py", "linmm/fs/slabinfo.py",
                 "linmm/tools/slabinfo.py")
# __always_inline / static inline functions: never in a kernel backtrace
_INLINE = {"slab_alloc_node", "slab_alloc", "slab_free", "do_slab_free", "new_slab_objects",
           "get_freelist", "acquire_slab", "alloc_consistency_checks", "free_consistency_checks",
           "check_valid_pointer", "get_freepointer", "set_freepointer", "print_section",
           "slab_pre_alloc_hook", "kmalloc_slab", "add_partial", "remove_partial", "add_full",
           "remove_full", "init_object", "restore_bytes", "get_track", "node_match",
           "kmem_cache_debug", "inc_slabs_node", "dec_slabs_node", "alloc_slab_page", "stat",
           "kmem_cache_zalloc", "kzalloc", "slab_ksize", "kmalloc_large", "kmalloc_order_trace",
           "get_partial", "put_map", "get_map", "on_each_cpu_cond", "flush_cpu_slab",
           "has_cpu_slab", "dump_stack", "print_tracking", "print_track", "print_page_info",
           "freelist_corrupted", "setup_object_debug", "setup_page_debug", "init_tracking",
           "setup_object", "size_from_object", "get_info_end", "freeptr_outside_object",
           "cache_from_obj", "check_pad_bytes", "__init__", "read", "write", "_frames"}
# model entry points under their kernel names
_KNAME = {"kmalloc": "__kmalloc", "kmalloc_node": "__kmalloc_node", "kzalloc": "__kmalloc",
          "kmem_cache_zalloc": "kmem_cache_alloc"}


class Slab:
    """The slab fields of a slab's head struct page (mm_types.h), kept by pfn."""

    __slots__ = ("pfn", "order", "cache", "base", "freelist", "inuse", "objects", "frozen",
                 "pages", "pobjects", "next", "nid", "abandoned")

    def __init__(self, pfn: int, order: int, cache, objects: int, nid: int):
        self.pfn = pfn
        self.order = order
        self.cache = cache
        self.base = page_address(pfn)
        self.freelist: int | None = None
        self.inuse = objects
        self.objects = objects
        self.frozen = 1
        self.pages = 0
        self.pobjects = 0
        self.next: Slab | None = None
        self.nid = nid
        self.abandoned = False  # model: "Marking all objects used" left it frozen on no list

    def __repr__(self) -> str:
        return (f"<slab pfn {self.pfn:#x} order {self.order} {self.cache.name} inuse {self.inuse}/"
                f"{self.objects} frozen {self.frozen}>")


class KmemCacheCpu:
    __slots__ = ("freelist", "tid", "page", "partial", "stat")

    def __init__(self, cpu: int):
        self.freelist: int | None = None
        self.tid = cpu
        self.page: Slab | None = None
        self.partial: Slab | None = None
        self.stat = [0] * NR_SLUB_STAT_ITEMS


class KmemCacheNode:
    __slots__ = ("nr_partial", "partial", "nr_slabs", "total_objects", "full")

    def __init__(self):
        self.nr_partial = 0
        self.partial: OrderedDict = OrderedDict()  # first = list head
        self.nr_slabs = 0
        self.total_objects = 0
        self.full: OrderedDict = OrderedDict()


class KmemCache:
    """struct kmem_cache."""

    def __init__(self, name: str, size: int, align: int, ctor, useroffset: int, usersize: int,
                 ncpus: int, nnodes: int):
        self.name = name
        self.object_size = size
        self.size = size
        self.align = align
        self.ctor = ctor
        self.useroffset = useroffset
        self.usersize = usersize
        self.flags = 0
        self.inuse = 0
        self.offset = 0
        self.red_left_pad = 0
        self.oo = (0, 0)
        self.min = (0, 0)
        self.max = (0, 0)
        self.min_partial = MIN_PARTIAL
        self.cpu_partial = 0
        self.refcount = 0
        self.allocflags = 0
        self.remote_node_defrag_ratio = 1000
        self.random = 0
        self.sysfs_name: str | None = None
        self.cpu_slab = [KmemCacheCpu(c) for c in range(ncpus)]
        self.node = [KmemCacheNode() for _ in range(nnodes)]
        self.destroyed = False

    def __repr__(self) -> str:
        return f"<kmem_cache {self.name} object_size {self.object_size} size {self.size}>"

    @property
    def debug(self) -> bool:
        return bool(self.flags & SLAB_DEBUG_FLAGS)


def _hx(v: int) -> str:
    """%#x."""
    return f"{v:#x}" if v else "0"


def _get_option(text: str) -> int | None:
    """get_option(): an integer (base 0), None if it does not parse."""
    import re
    m = re.match(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not m:
        return None
    v = int(m.group(2), 0)
    return -v if m.group(1) == "-" else v


class Slub(SlabCommon, SlubDebug):
    """The slab allocator of kernel k (mm/slub.c + mm/slab_common.c)."""

    def __init__(self, k):
        self.k = k
        cfg = k.config
        kc = cfg.kconfig
        self.ncpus = cfg.cpus
        self.nnodes = len(k.pgdats)
        self.smp = bool(kc.get("SMP", self.ncpus > 1))
        self.numa = bool(kc.get("NUMA", self.nnodes > 1))
        self.stats_on = bool(kc.get("SLUB_STATS", True))
        self.hardened = bool(kc.get("SLAB_FREELIST_HARDENED", False))
        self.hz = int(kc.get("HZ", 250))
        self.syms = KallSyms()
        self._code_info: dict = {}
        self._rng = np.random.default_rng(cfg.seed + 0x51AB)
        if not hasattr(k, "tainted"):
            k.tainted = 0
        if not hasattr(k, "failslab_filter"):
            k.failslab_filter = False  # /sys/kernel/debug/failslab/cache-filter
        # boot parameters
        self.slub_debug = 0
        self.slub_debug_slabs: str | None = None
        self.disable_higher_order_debug = 0
        self.slub_min_order = 0
        self.slub_max_order = PAGE_ALLOC_COSTLY_ORDER
        self.slub_min_objects = 0
        self.slab_nomerge = False
        self._parse_params(cfg.params)
        # state
        self.caches: list[KmemCache] = []  # slab_caches, oldest first
        self.sysfs_dirs: dict[str, KmemCache] = {}
        self.sysfs_links: dict[str, str] = {}  # alias name -> directory name
        self.slabs: dict[int, Slab] = {}  # head pfn -> slab
        self._slab_of: dict[int, Slab] = {}  # every pfn of a slab -> slab
        self._q: dict[int, memoryview] = {}  # pfn -> 64-bit words of the frame
        self._rows: dict[int, np.ndarray] = {}  # pfn -> bytes of the frame
        self._large: dict[int, int] = {}  # kmalloc_large head pfn -> order
        self._large_head: dict[int, int] = {}  # every pfn of a kmalloc_large block -> head
        self._ipi_cpu: int | None = None
        self.kmalloc_caches = [[None] * (KMALLOC_SHIFT_HIGH + 1) for _ in range(3)]
        self.slab_state = "UP"
        self.create_kmalloc_caches()
        self.slab_state = "FULL"
        for s in reversed(self.caches):  # slab_sysfs_init(): list_for_each_entry(slab_caches)
            if self.sysfs_slab_add(s):
                self.printk(f"SLUB: Unable to add boot slab {s.name} to sysfs")
        k.slub = self

    # ================================================================ boot parameters
    def _parse_params(self, params: dict) -> None:
        if "slub_debug" in params:
            v = params["slub_debug"]
            self.setup_slub_debug("" if v is None else "=" + v)
        for name in ("slub_min_order", "slub_max_order", "slub_min_objects"):
            v = params.get(name)
            if v is None:
                continue
            val = _get_option(v)
            if val is None:
                continue
            val &= 0xFFFFFFFF
            if name == "slub_max_order":
                val = min(val, MAX_ORDER - 1)
            setattr(self, name, val)
        if "slab_nomerge" in params or "slub_nomerge" in params:
            self.slab_nomerge = True
        v = params.get("debug_guardpage_minorder")
        if v is not None:
            n = _get_option(v)
            if n is None or n < 0 or n > MAX_ORDER // 2:
                self.printk("Bad debug_guardpage_minorder value")
            elif n > 0:
                self.slub_max_order = 0  # kmem_cache_init(): if (debug_guardpage_minorder())

    def setup_slub_debug(self, s: str) -> None:
        """setup_slub_debug(str), str being what follows "slub_debug" ("" or "=...")."""
        self.slub_debug = DEBUG_DEFAULT_FLAGS
        if not s.startswith("=") or len(s) == 1:
            return
        s = s[1:]
        i = 0
        if s[0] != ",":
            self.slub_debug = 0
            if s[0] == "-":
                return
            while i < len(s) and s[i] != ",":
                ch = s[i].lower()
                flag = {"f": SLAB_CONSISTENCY_CHECKS, "z": SLAB_RED_ZONE, "p": SLAB_POISON,
                        "u": SLAB_STORE_USER, "t": SLAB_TRACE, "a": SLAB_FAILSLAB}.get(ch)
                if flag is not None:
                    self.slub_debug |= flag
                elif ch == "o":
                    self.disable_higher_order_debug = 1
                else:
                    self.printk(f"slub_debug option '{s[i]}' unknown. skipped")
                i += 1
        if i < len(s) and s[i] == ",":
            self.slub_debug_slabs = s[i + 1:]

    def kmem_cache_flags(self, object_size: int, flags: int, name: str) -> int:
        """kmem_cache_flags(): add slub_debug when the name matches the slub_debug list."""
        lst = self.slub_debug_slabs
        if lst is None:
            return flags | self.slub_debug
        n = len(name)
        i = 0
        while i < len(lst):
            end = lst.find(",", i)
            if end < 0:
                end = len(lst)
            glob = lst.find("*", i, end)
            cmplen = glob - i if glob >= 0 else max(n, end - i)
            a = (name + "\0" * cmplen)[:cmplen]
            b = (lst[i:] + "\0" * cmplen)[:cmplen]
            a = a.split("\0", 1)[0]
            b = b.split("\0", 1)[0]
            if a == b:
                flags |= self.slub_debug
                break
            if end >= len(lst):
                break
            i = end + 1
        return flags

    # ================================================================ kernel services
    def printk(self, line: str) -> None:
        self.k.printk(line)

    def jiffies(self) -> int:
        initial = (-300 * self.hz) & 0xFFFFFFFF
        return (initial + self.k.now_ms * self.hz // 1000) & _U64

    def _cpu(self) -> int:
        return self.k._cur_cpu if self._ipi_cpu is None else self._ipi_cpu

    def stat(self, s: KmemCache, si: int) -> None:
        if self.stats_on:
            s.cpu_slab[self._cpu()].stat[si] += 1

    def add_taint(self, flag: int) -> None:
        self.k.tainted |= 1 << flag

    def _frames(self, limit: int = 64):
        """Kernel-style frames of the current call: [(name, addr, is_kernel, python name)],
        innermost first."""
        out = []
        info = self._code_info
        for name, code, lineno in python_frames((), limit + 8):
            ent = info.get(code)
            if ent is None:
                fn = code.co_filename.replace("\\", "/")
                kern = any(fn.endswith(f) for f in _KERNEL_FILES)
                hide = kern and (name in _INLINE or (name.startswith("_") and not name.startswith("__")))
                if fn.endswith("linmm/kernel.py") and name in _API:
                    hide = True  # k.kmalloc() & co: delegating wrappers, not kernel frames
                ent = info[code] = (kern, hide, _KNAME.get(name, name) if kern else name)
            kern, hide, kname = ent
            if hide:
                continue
            if kern and out and out[-1][2] and out[-1][3] in _API and name in _API:
                out.pop()  # kmalloc() inlines its slab_alloc(): keep the outer entry only
            out.append((kname, self.syms.addr_of_code(kname, code, lineno), kern, name))
            if len(out) >= limit:
                break
        return out

    def dump_stack(self) -> None:
        k = self.k
        ctx = k.current_ctx()
        self.printk(f"CPU: {k.current_cpu()} PID: {ctx.pid} Comm: {ctx.comm[:20]} "
                    f"{print_tainted(k.tainted)} 5.7.0-linmm #1")
        self.printk("Hardware name: linmm virtual machine, BIOS linmm 01/01/2020")
        self.printk("Call Trace:")
        self.printk(f" {self.syms.pS(self.syms.addr_of('dump_stack', 0x6d, 0x9a))}")
        for _name, addr, _kern, _ in self._frames(24):
            self.printk(f" {self.syms.pS(addr)}")

    # ================================================================ memory access
    def _pfn_ok(self, pfn: int) -> bool:
        return 0 <= pfn < self.k.memmap.nr and self.k.pfn_valid(pfn)

    def _row(self, pfn: int) -> np.ndarray:
        row = self._rows.get(pfn)
        if row is None:
            if not self._pfn_ok(pfn):
                raise KernelBug(f"BUG: unable to handle page fault for address: "
                                f"{page_address(pfn):016x}")
            row = self.k.frames.view(pfn)
        return row

    def _segments(self, addr: int, n: int):
        a = addr - PAGE_OFFSET
        if a < 0 or n < 0:
            raise KernelBug(f"BUG: unable to handle page fault for address: {addr & _U64:016x}")
        while n > 0:
            pfn, off = a >> 12, a & 4095
            m = min(n, 4096 - off)
            yield self._row(pfn), off, m, PAGE_OFFSET + a
            a += m
            n -= m

    def read(self, addr: int, n: int) -> bytes:
        """The n bytes at kernel address addr (direct map)."""
        return b"".join(row[off:off + m].tobytes() for row, off, m, _ in self._segments(addr, n))

    def write(self, addr: int, data) -> None:
        """Store bytes at kernel address addr (what a buggy kernel user might do)."""
        data = bytes(data)
        pos = 0
        for row, off, m, _ in self._segments(addr, len(data)):
            row[off:off + m] = np.frombuffer(data[pos:pos + m], np.uint8)
            pos += m

    def memset(self, addr: int, val: int, n: int) -> None:
        for row, off, m, _ in self._segments(addr, n):
            row[off:off + m] = val

    def memchr_inv(self, addr: int, val: int, n: int) -> int | None:
        for row, off, m, a in self._segments(addr, n):
            bad = np.flatnonzero(row[off:off + m] != val)
            if len(bad):
                return a + int(bad[0])
        return None

    def _byte(self, addr: int) -> int:
        a = addr - PAGE_OFFSET
        return int(self._row(a >> 12)[a & 4095])

    def _wild(self, addr: int):
        return KernelBug(f"BUG: unable to handle page fault for address: {addr & _U64:016x} "
                         f"(general protection fault in SLUB freelist)")

    def get_freepointer(self, s: KmemCache, obj: int) -> int | None:
        a = obj + s.offset - PAGE_OFFSET
        try:
            v = self._q[a >> 12][(a & 4095) >> 3]
        except (KeyError, TypeError):
            raise self._wild(obj + s.offset) from None
        if s.random:
            v ^= s.random ^ _bswap64(obj + s.offset)
        return v or None

    def set_freepointer(self, s: KmemCache, obj: int, fp: int | None) -> None:
        if self.hardened and obj == fp:
            raise KernelBug(f"kernel BUG at mm/slub.c:271! (naive double free detection: "
                            f"object {obj:016x} == fp)")
        a = obj + s.offset - PAGE_OFFSET
        v = fp or 0
        if s.random:
            v ^= s.random ^ _bswap64(obj + s.offset)
        try:
            self._q[a >> 12][(a & 4095) >> 3] = v
        except (KeyError, TypeError):
            raise self._wild(obj + s.offset) from None

    # ================================================================ geometry
    def order_objects(self, order: int, size: int) -> int:
        return (PAGE_SIZE << order) // size

    def slab_order(self, size: int, min_objects: int, max_order: int, fract_leftover: int) -> int:
        min_order = self.slub_min_order
        if self.order_objects(min_order, size) > MAX_OBJS_PER_PAGE:
            return get_order(size * MAX_OBJS_PER_PAGE) - 1
        order = max(min_order, get_order(min_objects * size))
        while order <= max_order:
            slab_size = PAGE_SIZE << order
            rem = slab_size % size
            if rem <= slab_size // fract_leftover:
                break
            order += 1
        return order

    def calculate_order(self, size: int) -> int:
        min_objects = self.slub_min_objects
        if not min_objects:
            min_objects = 4 * (fls(self.ncpus) + 1)
        max_objects = self.order_objects(self.slub_max_order, size)
        min_objects = min(min_objects, max_objects)
        while min_objects > 1:
            fraction = 16
            while fraction >= 4:
                order = self.slab_order(size, min_objects, self.slub_max_order, fraction)
                if order <= self.slub_max_order:
                    return order
                fraction //= 2
            min_objects -= 1
        order = self.slab_order(size, 1, self.slub_max_order, 1)
        if order <= self.slub_max_order:
            return order
        order = self.slab_order(size, 1, MAX_ORDER, 1)
        if order < MAX_ORDER:
            return order
        return -38  # -ENOSYS

    def calculate_sizes(self, s: KmemCache, forced_order: int) -> int:
        flags = s.flags
        size = ALIGN(s.object_size, SIZEOF_PTR)
        freepointer_area = size
        if flags & SLAB_POISON and not flags & SLAB_TYPESAFE_BY_RCU and not s.ctor:
            s.flags |= _OBJECT_POISON
        else:
            s.flags &= ~_OBJECT_POISON
        if flags & SLAB_RED_ZONE and size == s.object_size:
            size += SIZEOF_PTR
        s.inuse = size
        if flags & (SLAB_TYPESAFE_BY_RCU | SLAB_POISON) or s.ctor:
            s.offset = size
            size += SIZEOF_PTR
        elif freepointer_area > SIZEOF_PTR:
            s.offset = ALIGN(freepointer_area // 2, SIZEOF_PTR)
        if flags & SLAB_STORE_USER:
            size += 2 * TRACK_SIZE
        if flags & SLAB_RED_ZONE:
            size += SIZEOF_PTR
            s.red_left_pad = ALIGN(SIZEOF_PTR, s.align)
            size += s.red_left_pad
        size = ALIGN(size, s.align)
        s.size = size
        order = forced_order if forced_order >= 0 else self.calculate_order(size)
        if order < 0:
            return 0
        s.allocflags = 0
        if order:
            s.allocflags |= G._GFP_COMP
        if s.flags & SLAB_CACHE_DMA:
            s.allocflags |= G.GFP_DMA
        if s.flags & SLAB_CACHE_DMA32:
            s.allocflags |= G.GFP_DMA32
        if s.flags & SLAB_RECLAIM_ACCOUNT:
            s.allocflags |= G._GFP_RECLAIMABLE
        s.oo = (order, self.order_objects(order, size))
        s.min = (get_order(size), self.order_objects(get_order(size), size))
        if s.oo[1] > s.max[1]:
            s.max = s.oo
        return 1 if s.oo[1] else 0

    @staticmethod
    def set_min_partial(s: KmemCache, m: int) -> None:
        s.min_partial = MIN_PARTIAL if m < MIN_PARTIAL else (MAX_PARTIAL if m > MAX_PARTIAL else m)

    def set_cpu_partial(self, s: KmemCache) -> None:
        if s.flags & SLAB_DEBUG_FLAGS:
            s.cpu_partial = 0
        elif s.size >= PAGE_SIZE:
            s.cpu_partial = 2
        elif s.size >= 1024:
            s.cpu_partial = 6
        elif s.size >= 256:
            s.cpu_partial = 13
        else:
            s.cpu_partial = 30

    def kmem_cache_open(self, s: KmemCache, flags: int) -> int:
        s.flags = self.kmem_cache_flags(s.size, flags, s.name)
        if self.hardened:
            s.random = int(self._rng.integers(1, 1 << 63)) | (1 << 63)
        if not self.calculate_sizes(s, -1):
            return -22
        if self.disable_higher_order_debug and get_order(s.size) > get_order(s.object_size):
            s.flags &= ~DEBUG_METADATA_FLAGS
            s.offset = 0
            if not self.calculate_sizes(s, -1):
                return -22
        s.flags |= _CMPXCHG_DOUBLE  # system_has_cmpxchg_double()
        self.set_min_partial(s, ilog2(s.size) // 2)
        self.set_cpu_partial(s)
        s.remote_node_defrag_ratio = 1000
        return 0

    # ================================================================ cache creation
    def _new_cache(self, name, size, align, ctor, useroffset, usersize) -> KmemCache:
        return KmemCache(name, size, align, ctor, useroffset, usersize, self.ncpus, self.nnodes)


    def __kmem_cache_create(self, s: KmemCache, flags: int) -> int:
        err = self.kmem_cache_open(s, flags)
        if err:
            return err
        if self.slab_state != "FULL":
            return 0
        return self.sysfs_slab_add(s)


    def __kmem_cache_alias(self, name, size, align, flags, ctor) -> KmemCache | None:
        s = self.find_mergeable(size, align, flags, name, ctor)
        if s is not None:
            s.refcount += 1
            s.object_size = max(s.object_size, size)
            s.inuse = max(s.inuse, ALIGN(size, SIZEOF_PTR))
            if self.sysfs_slab_alias(s, name):
                s.refcount -= 1
                s = None
        return s


    # ---------------------------------------------------------------- sysfs registry
    def create_unique_id(self, s: KmemCache) -> str:
        p = ""
        if s.flags & SLAB_CACHE_DMA:
            p += "d"
        if s.flags & SLAB_CACHE_DMA32:
            p += "D"
        if s.flags & SLAB_RECLAIM_ACCOUNT:
            p += "a"
        if s.flags & SLAB_CONSISTENCY_CHECKS:
            p += "F"
        if s.flags & SLAB_ACCOUNT:
            p += "A"
        if p:
            p += "-"
        return f":{p}{s.size:07d}"

    def sysfs_slab_add(self, s: KmemCache) -> int:
        unmergeable = self.slab_unmergeable(s)
        if not unmergeable and self.disable_higher_order_debug and \
                self.slub_debug & DEBUG_METADATA_FLAGS:
            unmergeable = True
        if unmergeable:
            self.sysfs_links.pop(s.name, None)
            name = s.name
        else:
            name = self.create_unique_id(s)
        if name in self.sysfs_dirs or name in self.sysfs_links:
            self.printk(f"sysfs: cannot create duplicate filename '/kernel/slab/{name}'")
            self.dump_stack()
            self.printk(f"kobject_add_internal failed for {name} with -EEXIST, don't try to "
                        f"register things with the same name in the same directory.")
            return -EEXIST.errno_value
        self.sysfs_dirs[name] = s
        s.sysfs_name = name
        if not unmergeable:
            self.sysfs_slab_alias(s, s.name)
        return 0

    def sysfs_slab_alias(self, s: KmemCache, name: str) -> int:
        self.sysfs_links.pop(name, None)
        if name in self.sysfs_dirs:
            self.printk(f"sysfs: cannot create duplicate filename '/kernel/slab/{name}'")
            self.dump_stack()
            return -EEXIST.errno_value
        self.sysfs_links[name] = s.sysfs_name
        return 0

    def sysfs_lookup(self, name: str) -> KmemCache | None:
        """The cache behind /sys/kernel/slab/<name> (directory or alias link)."""
        s = self.sysfs_dirs.get(name)
        if s is None and name in self.sysfs_links:
            s = self.sysfs_dirs.get(self.sysfs_links[name])
        return s

    def cache(self, name: str) -> KmemCache | None:
        """A cache by its name or by an alias name."""
        for s in self.caches:
            if s.name == name:
                return s
        return self.sysfs_lookup(name)

    # ================================================================ slab pages
    def alloc_slab_page(self, s: KmemCache, flags: int, node: int, order: int) -> int | None:
        pfn = self.k.page_alloc.alloc_pages_nodemask(flags, order, None if node == NUMA_NO_NODE
                                                     else node)
        if pfn is not None:
            self._account(s, pfn, order, 1)
        return pfn

    def _account(self, s: KmemCache, pfn: int, order: int, sign: int) -> None:
        item = "nr_slab_reclaimable" if s.flags & SLAB_RECLAIM_ACCOUNT else "nr_slab_unreclaimable"
        self.k.pgdats[self.k.memmap.page_to_nid(pfn)].vm_stat[item] += sign << order

    def allocate_slab(self, s: KmemCache, flags: int, node: int) -> Slab | None:
        order, objects = s.oo
        flags |= s.allocflags
        alloc_gfp = (flags | G._GFP_NOWARN | G._GFP_NORETRY) & ~G._GFP_NOFAIL
        if alloc_gfp & _GFP_DIRECT_RECLAIM and order > s.min[0]:
            alloc_gfp = (alloc_gfp | G._GFP_NOMEMALLOC) & ~(G._GFP_RECLAIM | G._GFP_NOFAIL)
        pfn = self.alloc_slab_page(s, alloc_gfp, node, order)
        if pfn is None:
            order, objects = s.min
            pfn = self.alloc_slab_page(s, flags, node, order)
            if pfn is None:
                return None
            self.stat(s, ORDER_FALLBACK)
        k = self.k
        mm = k.memmap
        page = Slab(pfn, order, s, objects, mm.page_to_nid(pfn))
        mm.set(pfn, PG_slab)  # PG_head: prep_compound_page() (allocflags has __GFP_COMP)
        for p in range(pfn, pfn + (1 << order)):
            row = k.frames.view(p)
            self._rows[p] = row
            self._q[p] = memoryview(row).cast("Q")
            self._slab_of[p] = page
        self.slabs[pfn] = page
        if s.flags & SLAB_POISON:  # setup_page_debug()
            for p in range(pfn, pfn + (1 << order)):
                self._rows[p][:] = POISON_INUSE
        start = page.base + (s.red_left_pad if s.flags & SLAB_RED_ZONE else 0)
        debug_setup = s.flags & (SLAB_STORE_USER | SLAB_RED_ZONE | _OBJECT_POISON)
        size = s.size
        if debug_setup or s.ctor:
            for i in range(objects):
                self.setup_object(s, page, start + i * size)
        page.freelist = start
        if not s.random and objects and s.offset & 7 == 0 and size & 7 == 0:
            q = self._q
            for i in range(objects - 1):
                a = start + i * size + s.offset - PAGE_OFFSET
                q[a >> 12][(a & 4095) >> 3] = start + (i + 1) * size
            a = start + (objects - 1) * size + s.offset - PAGE_OFFSET
            q[a >> 12][(a & 4095) >> 3] = 0
        else:
            for i in range(objects):
                self.set_freepointer(s, start + i * size,
                                     start + (i + 1) * size if i < objects - 1 else None)
        page.inuse = objects
        page.frozen = 1
        n = s.node[page.nid]
        n.nr_slabs += 1
        n.total_objects += objects
        return page

    def setup_object(self, s: KmemCache, page: Slab, obj: int) -> int:
        if s.flags & (SLAB_STORE_USER | SLAB_RED_ZONE | _OBJECT_POISON):  # setup_object_debug
            self.init_object(s, obj, SLUB_RED_INACTIVE)
            if s.flags & SLAB_STORE_USER:
                self.memset(self.get_track(s, obj, TRACK_ALLOC), 0, 2 * TRACK_SIZE)
        if s.ctor:
            s.ctor(obj)
        return obj

    def new_slab(self, s: KmemCache, flags: int, node: int) -> Slab | None:
        if flags & _GFP_SLAB_BUG_MASK:
            invalid = flags & _GFP_SLAB_BUG_MASK & _U64
            flags &= ~_GFP_SLAB_BUG_MASK
            self.printk(f"Unexpected gfp: {_hx(invalid)} ({G.format_gfp(invalid)}). Fixing up to "
                        f"gfp: {_hx(flags)} ({G.format_gfp(flags)}). Fix your code!")
            self.dump_stack()
        return self.allocate_slab(s, flags & (_GFP_RECLAIM_MASK | _GFP_CONSTRAINT_MASK), node)

    def __free_slab(self, s: KmemCache, page: Slab) -> None:
        order = page.order
        if s.flags & SLAB_CONSISTENCY_CHECKS:
            self.slab_pad_check(s, page)
            for p in self._objects(s, page):
                self.check_object(s, page, p, SLUB_RED_INACTIVE)
        mm = self.k.memmap
        mm.clear(page.pfn, PG_slab)
        for p in range(page.pfn, page.pfn + (1 << order)):
            self._rows.pop(p, None)
            self._q.pop(p, None)
            self._slab_of.pop(p, None)
        self.slabs.pop(page.pfn, None)
        self._account(s, page.pfn, order, -1)
        self.k.page_alloc.free_pages(page.pfn, order)

    def discard_slab(self, s: KmemCache, page: Slab) -> None:
        n = s.node[page.nid]
        n.nr_slabs -= 1
        n.total_objects -= page.objects
        self.__free_slab(s, page)  # SLAB_TYPESAFE_BY_RCU: the RCU grace period is immediate

    def _objects(self, s: KmemCache, page: Slab):
        start = page.base + (s.red_left_pad if s.flags & SLAB_RED_ZONE else 0)
        return range(start, page.base + page.objects * s.size, s.size)

    # ---------------------------------------------------------------- node lists
    @staticmethod
    def add_partial(n: KmemCacheNode, page: Slab, tail: int) -> None:
        n.nr_partial += 1
        n.partial[page] = None
        if tail != DEACTIVATE_TO_TAIL:
            n.partial.move_to_end(page, last=False)

    @staticmethod
    def remove_partial(n: KmemCacheNode, page: Slab) -> None:
        n.partial.pop(page, None)
        n.nr_partial -= 1

    @staticmethod
    def add_full(s: KmemCache, n: KmemCacheNode, page: Slab) -> None:
        if not s.flags & SLAB_STORE_USER:
            return
        n.full[page] = None
        n.full.move_to_end(page, last=False)

    @staticmethod
    def remove_full(s: KmemCache, n: KmemCacheNode, page: Slab) -> None:
        if not s.flags & SLAB_STORE_USER:
            return
        n.full.pop(page, None)

    # ================================================================ allocation
    def kmem_cache_alloc(self, s: KmemCache, gfp: int) -> int | None:
        """kmem_cache_alloc(s, gfp): an object address, or None."""
        k = self.k
        if gfp & _GFP_DIRECT_RECLAIM and k.sched.cpus[k._cur_cpu].curr.held_locks:
            k.might_sleep("mm/slab.h", 558)
        if k._failslab and self.should_failslab(s, gfp):
            return None
        c = s.cpu_slab[k._cur_cpu]
        obj = c.freelist
        if obj is None:
            obj = self.__slab_alloc(s, gfp, NUMA_NO_NODE, c)
            if self.stats_on:
                s.cpu_slab[k._cur_cpu].stat[ALLOC_SLOWPATH] += 1
        else:
            a = obj + s.offset - PAGE_OFFSET
            try:
                v = self._q[a >> 12][(a & 4095) >> 3]
            except (KeyError, TypeError):
                raise self._wild(obj + s.offset) from None
            if s.random:
                v ^= s.random ^ _bswap64(obj + s.offset)
            c.freelist = v or None
            c.tid += 1
            if self.stats_on:
                c.stat[ALLOC_FASTPATH] += 1
        if gfp & _GFP_ZERO and obj is not None:
            self.memset(obj, 0, s.object_size)
        return obj

    def kmem_cache_alloc_node(self, s: KmemCache, gfp: int, node: int) -> int | None:
        k = self.k
        if gfp & _GFP_DIRECT_RECLAIM:
            k.might_sleep("mm/slab.h", 558)
        if k._failslab and self.should_failslab(s, gfp):
            return None
        c = s.cpu_slab[k._cur_cpu]
        obj = c.freelist
        if obj is None or not self.node_match(c.page, node):
            obj = self.__slab_alloc(s, gfp, node, c)
            self.stat(s, ALLOC_SLOWPATH)
        else:
            c.freelist = self.get_freepointer(s, obj)
            c.tid += 1
            self.stat(s, ALLOC_FASTPATH)
        if gfp & _GFP_ZERO and obj is not None:
            self.memset(obj, 0, s.object_size)
        return obj

    def kmem_cache_zalloc(self, s: KmemCache, gfp: int) -> int | None:
        return self.kmem_cache_alloc(s, gfp | _GFP_ZERO)

    def should_failslab(self, s: KmemCache, gfp: int) -> bool:
        if self.k.failslab_filter and not s.flags & SLAB_FAILSLAB:
            return False
        return self.k.failslab_next()

    def node_match(self, page: Slab | None, node: int) -> bool:
        if self.numa and node != NUMA_NO_NODE and page is not None and page.nid != node:
            return False
        return True

    def __slab_alloc(self, s: KmemCache, gfp: int, node: int, c: KmemCacheCpu) -> int | None:
        c = s.cpu_slab[self.k._cur_cpu]
        return self.___slab_alloc(s, gfp, node, 0, c)

    def ___slab_alloc(self, s: KmemCache, gfp: int, node: int, addr: int, c: KmemCacheCpu):
        page = c.page
        if page is None:
            goto = "new_slab"
        else:
            goto = "redo"
        while True:
            if goto == "redo":
                if not self.node_match(page, node):
                    self.stat(s, ALLOC_NODE_MISMATCH)
                    self.deactivate_slab(s, page, c.freelist, c)
                    goto = "new_slab"
                    continue
                freelist = c.freelist
                if freelist is None:
                    freelist = self.get_freelist(s, page)
                    if freelist is None:
                        c.page = None
                        self.stat(s, DEACTIVATE_BYPASS)
                        goto = "new_slab"
                        continue
                    self.stat(s, ALLOC_REFILL)
                # load_freelist:
                c.freelist = self.get_freepointer(s, freelist)
                c.tid += 1
                return freelist
            # new_slab:
            if c.partial is not None:
                page = c.page = c.partial
                c.partial = page.next
                self.stat(s, CPU_PARTIAL_ALLOC)
                goto = "redo"
                continue
            freelist = self.new_slab_objects(s, gfp, node, c)
            if freelist is None:
                self.slab_out_of_memory(s, gfp, node)
                return None
            page = c.page
            if not s.flags & SLAB_DEBUG_FLAGS:
                c.freelist = self.get_freepointer(s, freelist)
                c.tid += 1
                return freelist
            if not self.alloc_debug_processing(s, page, freelist, None):
                goto = "new_slab"
                continue
            self.deactivate_slab(s, page, self.get_freepointer(s, freelist), c)
            return freelist

    def get_freelist(self, s: KmemCache, page: Slab) -> int | None:
        freelist = page.freelist
        page.inuse = page.objects
        page.frozen = 1 if freelist is not None else 0
        page.freelist = None
        return freelist

    def new_slab_objects(self, s: KmemCache, flags: int, node: int, c: KmemCacheCpu) -> int | None:
        freelist = self.get_partial(s, flags, node, c)
        if freelist is not None:
            return freelist
        page = self.new_slab(s, flags, node)
        if page is None:
            return None
        c = s.cpu_slab[self.k._cur_cpu]
        if c.page is not None:
            self.flush_slab(s, c)
        freelist = page.freelist
        page.freelist = None
        self.stat(s, ALLOC_SLAB)
        c.page = page
        return freelist

    def acquire_slab(self, s, n, page, mode) -> tuple[int | None, int]:
        freelist = page.freelist
        objects = page.objects - page.inuse
        if mode:
            page.inuse = page.objects
            page.freelist = None
        page.frozen = 1
        self.remove_partial(n, page)
        return freelist, objects

    def get_partial_node(self, s: KmemCache, n: KmemCacheNode, c: KmemCacheCpu, flags: int):
        if n is None or not n.nr_partial:
            return None
        obj = None
        available = 0
        for page in list(n.partial):
            t, objects = self.acquire_slab(s, n, page, obj is None)
            if t is None:  # WARN_ON(!freelist): a "partial" slab whose freelist was cleared
                page.abandoned = True
                break
            available += objects
            if obj is None:
                c.page = page
                self.stat(s, ALLOC_FROM_PARTIAL)
                obj = t
            else:
                self.put_cpu_partial(s, page, 0)
                self.stat(s, CPU_PARTIAL_NODE)
            if s.flags & SLAB_DEBUG_FLAGS or available > s.cpu_partial // 2:
                break
        return obj

    def get_any_partial(self, s: KmemCache, flags: int, c: KmemCacheCpu):
        if not self.numa or not s.remote_node_defrag_ratio:
            return None
        k = self.k
        zone_max = k.gfp_zone(flags)
        seen = set()
        for zone in k.zonelist(k.numa_node_id()):
            if zone.idx > zone_max:
                continue
            nid = zone.node
            if nid in seen:
                continue
            seen.add(nid)
            n = s.node[nid]
            if n.nr_partial > s.min_partial:
                obj = self.get_partial_node(s, n, c, flags)
                if obj is not None:
                    return obj
        return None

    def get_partial(self, s: KmemCache, flags: int, node: int, c: KmemCacheCpu):
        searchnode = self.k.numa_node_id() if node == NUMA_NO_NODE else node
        obj = self.get_partial_node(s, s.node[searchnode], c, flags)
        if obj is not None or node != NUMA_NO_NODE:
            return obj
        return self.get_any_partial(s, flags, c)

    def slab_out_of_memory(self, s: KmemCache, gfp: int, nid: int) -> None:
        if gfp & G._GFP_NOWARN:
            return
        self.printk(f"SLUB: Unable to allocate memory on node {nid}, gfp={_hx(gfp)}"
                    f"({G.format_gfp(gfp)})")
        self.printk(f"  cache: {s.name}, object size: {s.object_size}, buffer size: {s.size}, "
                    f"default order: {s.oo[0]}, min order: {s.min[0]}")
        if s.min[0] > get_order(s.object_size):
            self.printk(f"  {s.name} debugging increased min order, use slub_debug=O to disable.")
        for nid2, n in enumerate(s.node):
            nr_free = sum(p.objects - p.inuse for p in n.partial)
            self.printk(f"  node {nid2}: slabs: {n.nr_slabs}, objs: {n.total_objects}, "
                        f"free: {nr_free}")

    # ================================================================ freeing
    def kmem_cache_free(self, s: KmemCache, x: int) -> None:
        """kmem_cache_free(s, x)."""
        a = x - PAGE_OFFSET
        page = self._slab_of.get(a >> 12)
        if page is None:
            raise KernelBug(f"kernel BUG: kmem_cache_free({s.name}, {x & _U64:016x}): the object is "
                            f"not in a slab page")
        if s.flags & SLAB_CONSISTENCY_CHECKS or self.hardened:  # cache_from_obj()
            if page.cache is not s:
                self.printk(f"cache_from_obj: Wrong slab cache. {s.name} but object is from "
                            f"{page.cache.name}")
                self.k.printk_once("WARNING: CPU: 0 PID: 0 at mm/slab.h:475 cache_from_obj")
        self.do_slab_free(s, page, x, a)

    def do_slab_free(self, s: KmemCache, page: Slab, x: int, a: int) -> None:
        """The lockless fast path when the object's slab is this CPU's slab, else __slab_free."""
        c = s.cpu_slab[self.k._cur_cpu]
        if page is c.page:
            b = a + s.offset
            fp = c.freelist
            if s.random:
                if self.hardened and fp == x:
                    raise KernelBug(f"kernel BUG at mm/slub.c:271! (naive double free detection: "
                                    f"object {x:016x} == fp)")
                v = (fp or 0) ^ s.random ^ _bswap64(x + s.offset)
            else:
                v = fp or 0
            self._q[b >> 12][(b & 4095) >> 3] = v
            c.freelist = x
            c.tid += 1
            if self.stats_on:
                c.stat[FREE_FASTPATH] += 1
        else:
            self.__slab_free(s, page, x, x, 1, 0)

    def __slab_free(self, s: KmemCache, page: Slab, head: int, tail: int, cnt: int, addr: int):
        self.stat(s, FREE_SLOWPATH)
        if s.flags & SLAB_DEBUG_FLAGS and \
                not self.free_debug_processing(s, page, head, tail, cnt, None):
            return
        prior = page.freelist
        self.set_freepointer(s, tail, prior)
        was_frozen = page.frozen
        inuse = page.inuse - cnt
        new_frozen = was_frozen
        n = None
        if (not inuse or prior is None) and not was_frozen:
            if not s.flags & SLAB_DEBUG_FLAGS and prior is None:
                new_frozen = 1
            else:
                n = s.node[page.nid]
        page.freelist = head
        page.inuse = inuse
        page.frozen = new_frozen
        if n is None:
            if new_frozen and not was_frozen:
                self.put_cpu_partial(s, page, 1)
                self.stat(s, CPU_PARTIAL_FREE)
            if was_frozen:
                self.stat(s, FREE_FROZEN)
            return
        if not inuse and n.nr_partial >= s.min_partial:
            if prior is not None:
                self.remove_partial(n, page)
                self.stat(s, FREE_REMOVE_PARTIAL)
            else:
                self.remove_full(s, n, page)
            self.stat(s, FREE_SLAB)
            self.discard_slab(s, page)
            return
        if s.flags & SLAB_DEBUG_FLAGS and prior is None:
            self.remove_full(s, n, page)
            self.add_partial(n, page, DEACTIVATE_TO_TAIL)
            self.stat(s, FREE_ADD_PARTIAL)

    def put_cpu_partial(self, s: KmemCache, page: Slab, drain: int) -> None:
        c = s.cpu_slab[self.k._cur_cpu]
        oldpage = c.partial
        pages = pobjects = 0
        if oldpage is not None:
            pobjects = oldpage.pobjects
            pages = oldpage.pages
            if drain and pobjects > s.cpu_partial:
                self.unfreeze_partials(s, c)
                oldpage = None
                pobjects = pages = 0
                self.stat(s, CPU_PARTIAL_DRAIN)
        pages += 1
        pobjects += page.objects - page.inuse
        page.pages = pages
        page.pobjects = pobjects
        page.next = oldpage
        c.partial = page
        if not s.cpu_partial:
            self.unfreeze_partials(s, c)

    def unfreeze_partials(self, s: KmemCache, c: KmemCacheCpu) -> None:
        discard = []
        while c.partial is not None:
            page = c.partial
            c.partial = page.next
            page.next = None
            n = s.node[page.nid]
            page.frozen = 0
            if not page.inuse and n.nr_partial >= s.min_partial:
                discard.append(page)
            else:
                self.add_partial(n, page, DEACTIVATE_TO_TAIL)
                self.stat(s, FREE_ADD_PARTIAL)
        for page in reversed(discard):  # discard_page is a LIFO chain
            self.stat(s, DEACTIVATE_EMPTY)
            self.discard_slab(s, page)
            self.stat(s, FREE_SLAB)

    def deactivate_slab(self, s: KmemCache, page: Slab, freelist: int | None,
                        c: KmemCacheCpu) -> None:
        n = s.node[page.nid]
        tail = DEACTIVATE_TO_HEAD
        if page.freelist is not None:
            self.stat(s, DEACTIVATE_REMOTE_FREES)
            tail = DEACTIVATE_TO_TAIL
        guard = 2 * page.objects + 8
        while freelist is not None:  # stage one: all but the last, onto page->freelist
            nextfree = self.get_freepointer(s, freelist)
            if nextfree is None:
                break
            if self.freelist_corrupted(s, page, freelist, nextfree):
                freelist = None
                break
            self.set_freepointer(s, freelist, page.freelist)
            page.freelist = freelist
            page.inuse -= 1
            freelist = nextfree
            guard -= 1
            if guard < 0:
                raise KernelBug(f"watchdog: BUG: soft lockup - deactivate_slab() loops on a "
                                f"corrupted freelist of {s.name}")
        # stage two
        inuse = page.inuse
        if freelist is not None:
            inuse -= 1
            self.set_freepointer(s, freelist, page.freelist)
            new_freelist = freelist
        else:
            new_freelist = page.freelist
        page.frozen = 0
        page.freelist = new_freelist
        page.inuse = inuse
        if not inuse and n.nr_partial >= s.min_partial:
            m = M_FREE
        elif new_freelist is not None:
            m = M_PARTIAL
        else:
            m = M_FULL
        if m == M_PARTIAL:
            self.add_partial(n, page, tail)
            self.stat(s, tail)
        elif m == M_FULL:
            self.add_full(s, n, page)
            self.stat(s, DEACTIVATE_FULL)
        else:
            self.stat(s, DEACTIVATE_EMPTY)
            self.discard_slab(s, page)
            self.stat(s, FREE_SLAB)
        c.page = None
        c.freelist = None

    def freelist_corrupted(self, s, page, freelist, nextfree) -> bool:
        if s.flags & SLAB_CONSISTENCY_CHECKS and not self.check_valid_pointer(s, page, nextfree) \
                and freelist is not None:
            self.object_err(s, page, freelist, "Freechain corrupt")
            self.slab_fix(s, "Isolate corrupted freechain")
            return True
        return False

    def flush_slab(self, s: KmemCache, c: KmemCacheCpu) -> None:
        self.stat(s, CPUSLAB_FLUSH)
        self.deactivate_slab(s, c.page, c.freelist, c)
        c.tid += 1

    def __flush_cpu_slab(self, s: KmemCache, cpu: int) -> None:
        c = s.cpu_slab[cpu]
        prev = self._ipi_cpu
        self._ipi_cpu = cpu  # runs on that CPU (IPI): its stats move
        try:
            if c.page is not None:
                self.flush_slab(s, c)
            self.unfreeze_partials(s, c)
        finally:
            self._ipi_cpu = prev

    def flush_all(self, s: KmemCache) -> None:
        for cpu, c in enumerate(s.cpu_slab):
            if c.page is not None or c.partial is not None:
                self.__flush_cpu_slab(s, cpu)

    # ================================================================ kmalloc

    def kmalloc(self, size: int, gfp: int) -> int | None:
        """__kmalloc(size, gfp): ZERO_SIZE_PTR (16) for 0 bytes, None on failure."""
        if size > KMALLOC_MAX_CACHE_SIZE:
            return self.kmalloc_large(size, gfp, NUMA_NO_NODE)
        if size <= 0:
            return ZERO_SIZE_PTR
        return self.kmem_cache_alloc(self.kmalloc_slab(size, gfp), gfp)

    def kmalloc_node(self, size: int, gfp: int, node: int) -> int | None:
        if size > KMALLOC_MAX_CACHE_SIZE:
            return self.kmalloc_large(size, gfp, node)
        if size <= 0:
            return ZERO_SIZE_PTR
        return self.kmem_cache_alloc_node(self.kmalloc_slab(size, gfp), gfp, node)

    def kzalloc(self, size: int, gfp: int) -> int | None:
        return self.kmalloc(size, gfp | _GFP_ZERO)


    def kfree(self, x: int | None) -> None:
        """kfree(x): None / ZERO_SIZE_PTR are no-ops; large blocks go back to the buddy allocator."""
        if x is None or x <= ZERO_SIZE_PTR:
            return
        a = x - PAGE_OFFSET
        page = self._slab_of.get(a >> 12)
        if page is None:
            head = self._large_head.get(a >> 12) if a >= 0 else None
            if head is None:
                raise KernelBug(f"kernel BUG at mm/slub.c:3982! kfree({x & _U64:#x}): not a slab "
                                f"object nor a compound page (BUG_ON(!PageCompound(page)))")
            order = self._large.pop(head)
            for p in range(head, head + (1 << order)):
                del self._large_head[p]
            k = self.k
            k.pgdats[k.memmap.page_to_nid(head)].vm_stat["nr_slab_unreclaimable"] -= 1 << order
            k.page_alloc.free_pages(head, order)
            return
        s = page.cache
        self.do_slab_free(s, page, x, a)


    # ================================================================ shrink / destroy

    def __kmem_cache_shrink(self, s: KmemCache) -> int:
        self.flush_all(s)
        ret = 0
        for node, n in enumerate(s.node):
            discard = []
            promote = [[] for _ in range(SHRINK_PROMOTE_MAX)]
            rest = []
            for page in list(n.partial):
                free = page.objects - page.inuse
                if free <= 0:
                    raise KernelBug(f"kernel BUG at mm/slub.c:4005! full slab {page!r} on the "
                                    f"partial list of {s.name}")
                if free == page.objects:
                    discard.insert(0, page)  # list_move(): to the head of discard
                    n.nr_partial -= 1
                elif free <= SHRINK_PROMOTE_MAX:
                    promote[free - 1].insert(0, page)
                else:
                    rest.append(page)
            order = []
            for i in range(SHRINK_PROMOTE_MAX):  # splice 31..0 at the head: 0 ends first
                order.extend(promote[i])
            n.partial = OrderedDict((p, None) for p in order + rest)
            for page in discard:
                self.discard_slab(s, page)
            if n.nr_slabs:
                ret = 1
        return ret


    def __kmem_cache_shutdown(self, s: KmemCache) -> int:
        self.flush_all(s)
        for n in s.node:
            self.free_partial(s, n)
            if n.nr_partial or n.nr_slabs:
                return 1
        return 0

    def free_partial(self, s: KmemCache, n: KmemCacheNode) -> None:
        discard = []
        for page in list(n.partial):
            if not page.inuse:
                self.remove_partial(n, page)
                discard.insert(0, page)
            else:
                self.list_slab_objects(s, page, f"Objects remaining in {s.name} on "
                                                f"__kmem_cache_shutdown()")
        for page in discard:
            self.discard_slab(s, page)

    def list_slab_objects(self, s: KmemCache, page: Slab, text: str) -> None:
        self.slab_err(s, page, text)
        free = self.get_map(s, page)
        for p in self._objects(s, page):
            if p not in free:
                self.printk(f"INFO: Object 0x{p:016x} @offset={p - page.base}")
                self.print_tracking(s, p)


def get_slub(k) -> Slub:
    """k's SLUB (created and attached on first use until the kernel owns one)."""
    s = getattr(k, "slub", None)
    if s is None:
        s = Slub(k)
    return s


# slab_common.c calls these slub.c entry points; Python mangles __names per class
for _n in ("kmem_cache_alias", "kmem_cache_create", "kmem_cache_shrink", "kmem_cache_shutdown"):
    setattr(Slub, f"_SlabCommon__{_n}", getattr(Slub, f"_Slub__{_n}"))
