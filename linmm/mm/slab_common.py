"""What mm/slab_common.c, mm/slab.h, include/linux/slab.h and poison.h give SLUB
(v5.7, x86_64): the SLAB_* flags, the kmalloc size table, calculate_alignment,
the kernel's text helpers (print_tainted, print_hex_dump, %pS symbols) and the
model's direct-map addresses.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable

from ..errors import KernelBug
from . import gfp as G

if TYPE_CHECKING:
    from .slub import KmemCache

# ------------------------------------------------------------------ addresses
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_OFFSET = 0xFFFF888000000000  # x86_64 direct map (4-level)
VMEMMAP_START = 0xFFFFEA0000000000  # struct page array; sizeof(struct page) = 64
STRUCT_PAGE_SIZE = 64
MAX_ORDER = 11
PAGE_ALLOC_COSTLY_ORDER = 3
ZERO_SIZE_PTR = 16
NUMA_NO_NODE = -1


def page_address(pfn: int) -> int:
    return PAGE_OFFSET + (pfn << PAGE_SHIFT)


def page_struct(pfn: int) -> int:
    """The address of pfn's struct page (what %p of a struct page * shows)."""
    return VMEMMAP_START + pfn * STRUCT_PAGE_SIZE


# ------------------------------------------------------------------ flags
SLAB_CONSISTENCY_CHECKS = 0x00000100
SLAB_RED_ZONE = 0x00000400
SLAB_POISON = 0x00000800
SLAB_HWCACHE_ALIGN = 0x00002000
SLAB_CACHE_DMA = 0x00004000
SLAB_CACHE_DMA32 = 0x00008000
SLAB_STORE_USER = 0x00010000
SLAB_RECLAIM_ACCOUNT = 0x00020000
SLAB_TEMPORARY = SLAB_RECLAIM_ACCOUNT
SLAB_PANIC = 0x00040000
SLAB_TYPESAFE_BY_RCU = 0x00080000
SLAB_DESTROY_BY_RCU = SLAB_TYPESAFE_BY_RCU
SLAB_MEM_SPREAD = 0x00100000
SLAB_TRACE = 0x00200000
SLAB_DEBUG_OBJECTS = 0x00400000
SLAB_NOLEAKTRACE = 0x00800000
SLAB_FAILSLAB = 0x02000000
SLAB_ACCOUNT = 0x04000000
SLAB_KASAN = 0  # CONFIG_KASAN off
SLAB_NO_CMPXCHG = 0
# internal SLUB flags
__OBJECT_POISON = 0x80000000
__CMPXCHG_DOUBLE = 0x40000000
_OBJECT_POISON = __OBJECT_POISON  # usable inside class bodies (no name mangling)
_CMPXCHG_DOUBLE = __CMPXCHG_DOUBLE

DEBUG_DEFAULT_FLAGS = SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER
DEBUG_METADATA_FLAGS = SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER
SLAB_DEBUG_FLAGS = SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE | SLAB_CONSISTENCY_CHECKS
SLAB_NEVER_MERGE = (SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE | SLAB_TYPESAFE_BY_RCU
                    | SLAB_NOLEAKTRACE | SLAB_FAILSLAB | SLAB_KASAN)
SLAB_MERGE_SAME = SLAB_RECLAIM_ACCOUNT | SLAB_CACHE_DMA | SLAB_CACHE_DMA32 | SLAB_ACCOUNT
SLAB_CORE_FLAGS = (SLAB_HWCACHE_ALIGN | SLAB_CACHE_DMA | SLAB_CACHE_DMA32 | SLAB_PANIC
                   | SLAB_TYPESAFE_BY_RCU | SLAB_DEBUG_OBJECTS)
SLAB_CACHE_FLAGS = SLAB_NOLEAKTRACE | SLAB_RECLAIM_ACCOUNT | SLAB_TEMPORARY | SLAB_ACCOUNT
SLAB_FLAGS_PERMITTED = SLAB_CORE_FLAGS | SLAB_DEBUG_FLAGS | SLAB_CACHE_FLAGS

# poison.h
POISON_INUSE = 0x5A
POISON_FREE = 0x6B
POISON_END = 0xA5
SLUB_RED_INACTIVE = 0xBB
SLUB_RED_ACTIVE = 0xCC

# ------------------------------------------------------------------ sizes
ARCH_KMALLOC_MINALIGN = 8
ARCH_SLAB_MINALIGN = 8
SIZEOF_PTR = 8
CACHE_LINE_SIZE = 64
TRACK_ADDRS_COUNT = 16
TRACK_SIZE = 8 + 8 * TRACK_ADDRS_COUNT + 4 + 4 + 8  # struct track: 152 bytes
MIN_PARTIAL = 5
MAX_PARTIAL = 10
MAX_OBJS_PER_PAGE = 32767
SHRINK_PROMOTE_MAX = 32
KMALLOC_SHIFT_LOW = 3
KMALLOC_SHIFT_HIGH = PAGE_SHIFT + 1
KMALLOC_MAX_CACHE_SIZE = 1 << KMALLOC_SHIFT_HIGH
KMALLOC_MAX_SIZE = 1 << (MAX_ORDER + PAGE_SHIFT - 1)
KMALLOC_NORMAL, KMALLOC_RECLAIM, KMALLOC_DMA = 0, 1, 2


def _short(size: int) -> str:
    return f"{size >> 10}k" if size >= 1024 else str(size)


# kmalloc_info[] (index -> size); index 1 = 96, 2 = 192
KMALLOC_INFO = {1: 96, 2: 192}
for _i in range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1):
    KMALLOC_INFO[_i] = 1 << _i
KMALLOC_NAMES = {i: (f"kmalloc-{_short(sz)}", f"kmalloc-rcl-{_short(sz)}", f"dma-kmalloc-{_short(sz)}")
                 for i, sz in KMALLOC_INFO.items()}

# size_index[] for sizes 1..192 (setup_kmalloc_cache_index_table, KMALLOC_MIN_SIZE 8)
_SIZE_INDEX = [0] * 24
for _s in range(8, 193, 8):
    if _s <= 8:
        _v = 3
    elif _s <= 16:
        _v = 4
    elif _s <= 32:
        _v = 5
    elif _s <= 64:
        _v = 6
    elif _s <= 96:
        _v = 1
    elif _s <= 128:
        _v = 7
    else:
        _v = 2
    _SIZE_INDEX[(_s - 1) // 8] = _v


def kmalloc_slab_index(size: int) -> int:
    """kmalloc_slab(): the kmalloc_caches[] index for 1 <= size <= 8192."""
    if size <= 192:
        return _SIZE_INDEX[(size - 1) // 8]
    return (size - 1).bit_length()


def fls(x: int) -> int:
    return x.bit_length()


def ilog2(x: int) -> int:
    return x.bit_length() - 1


def get_order(size: int) -> int:
    size = (size - 1) >> PAGE_SHIFT
    return size.bit_length()


def ALIGN(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def calculate_alignment(flags: int, align: int, size: int) -> int:
    """mm/slab_common.c calculate_alignment()."""
    if flags & SLAB_HWCACHE_ALIGN:
        ralign = CACHE_LINE_SIZE
        while size <= ralign // 2:
            ralign //= 2
        align = max(align, ralign)
    if align < ARCH_SLAB_MINALIGN:
        align = ARCH_SLAB_MINALIGN
    return ALIGN(align, SIZEOF_PTR)


def is_power_of_2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


# ------------------------------------------------------------------ taint
TAINT_FLAGS = "PFSRMBUDAWCIOELKXT"  # c_true of taint_flags[] (TAINT_FLAGS_COUNT = 18)
TAINT_BAD_PAGE = 5


def print_tainted(mask: int) -> str:
    """kernel/panic.c print_tainted()."""
    if not mask:
        return "Not tainted"
    out = []
    for i, ch in enumerate(TAINT_FLAGS):
        if mask >> i & 1:
            out.append(ch)
        else:
            out.append("G" if i == 0 else " ")
    return "Tainted: " + "".join(out)


# ------------------------------------------------------------------ hex dumps
def hex_dump_line(data: bytes) -> str:
    """hex_dump_to_buffer(rowsize 16, groupsize 1, ascii): hex, padded to column 49, ASCII."""
    hx = " ".join(f"{b:02x}" for b in data)
    asc = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)
    return hx.ljust(49) + asc


def print_hex_dump(prefix: str, addr: int, data: bytes) -> list[str]:
    """print_hex_dump(DUMP_PREFIX_ADDRESS, 16, 1, ..., ascii=true): one line per 16 bytes."""
    return [f"{prefix}{addr + i:016x}: {hex_dump_line(data[i:i + 16])}" for i in range(0, len(data), 16)]


# ------------------------------------------------------------------ kallsyms
TEXT_START = 0xFFFFFFFF81000000
_SYM_SLOT_SHIFT = 16


class KallSyms:
    """Kernel text addresses for the model's functions, so that tracks can hold real
    8-byte addresses and %pS can print "name+0xoff/0xsize"."""

    def __init__(self):
        self.by_name: dict[str, tuple[int, int]] = {}
        self.by_slot: dict[int, tuple[str, int]] = {}
        self._code: dict = {}  # (name, code) -> (base, size)

    def _slot(self, name: str, size: int) -> int:
        ent = self.by_name.get(name)
        if ent is None:
            base = TEXT_START + (len(self.by_name) + 1 << _SYM_SLOT_SHIFT)
            ent = (base, size)
            self.by_name[name] = ent
            self.by_slot[base >> _SYM_SLOT_SHIFT] = (name, size)
        return ent[0]

    def addr_of(self, name: str, off: int = 0, size: int = 0x100) -> int:
        base = self._slot(name, size)
        size = self.by_name[name][1]
        return base + min(off, size - 1)

    def addr_of_code(self, name: str, code, lineno: int) -> int:
        """An address inside `name` for a Python frame at lineno of code."""
        ent = self._code.get((name, code))
        if ent is None:
            try:
                last = max(ln for _, _, ln in code.co_lines() if ln is not None)
            except (ValueError, AttributeError):
                last = code.co_firstlineno + 8
            size = max(0x40, (last - code.co_firstlineno + 2) * 0x10)
            base = self._slot(name, size)
            ent = self._code[(name, code)] = (base, self.by_name[name][1])
        base, size = ent
        return base + min(max(lineno - code.co_firstlineno, 0) * 0x10 + 0x5, size - 1)

    def pS(self, addr: int) -> str:
        """%pS: symbol+offset/size, or the raw address."""
        ent = self.by_slot.get(addr >> _SYM_SLOT_SHIFT)
        if ent is None:
            return f"0x{addr:x}"
        name, size = ent
        off = addr & ((1 << _SYM_SLOT_SHIFT) - 1)
        return f"{name}+0x{off:x}/0x{size:x}"


_STOP: dict = {}


def python_frames(skip_files: tuple[str, ...], limit: int):
    """(name, code, lineno) of the calling Python frames outside skip_files, innermost
    first, stopping at the test runner / interpreter machinery."""
    out = []
    f = sys._getframe(1)
    while f is not None and len(out) < limit:
        code = f.f_code
        stop = _STOP.get(code)
        if stop is None:
            fn = code.co_filename
            if any(fn.endswith(s) for s in skip_files):
                stop = 1
            elif "_pytest" in fn or "pluggy" in fn or fn.startswith("<frozen") or \
                    ("site-packages" in fn and "/linmm/" not in fn.replace("\\", "/")):
                stop = 2
            else:
                stop = 0
            _STOP[code] = stop
        if stop == 2:
            break
        if stop == 0:
            out.append((code.co_name, code, f.f_lineno))
        f = f.f_back
    return out


class SlabCommon:
    """mm/slab_common.c, mixed into Slub: cache creation and merging (aliases), the
    kmalloc caches, kmalloc_order, ksize, kmem_cache_shrink and kmem_cache_destroy.
    The allocator proper (kmem_cache_open, slab pages, fast and slow paths) is slub.py."""

    def create_kmalloc_caches(self) -> None:
        for typ in (KMALLOC_NORMAL, KMALLOC_RECLAIM):
            for i in range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1):
                if self.kmalloc_caches[typ][i] is None:
                    self.new_kmalloc_cache(i, typ, 0)
                if i == 6 and self.kmalloc_caches[typ][1] is None:
                    self.new_kmalloc_cache(1, typ, 0)
                if i == 7 and self.kmalloc_caches[typ][2] is None:
                    self.new_kmalloc_cache(2, typ, 0)
        for i in range(KMALLOC_SHIFT_HIGH + 1):  # CONFIG_ZONE_DMA
            if self.kmalloc_caches[KMALLOC_NORMAL][i] is not None:
                self.kmalloc_caches[KMALLOC_DMA][i] = self.create_kmalloc_cache(
                    KMALLOC_NAMES[i][KMALLOC_DMA], KMALLOC_INFO[i], SLAB_CACHE_DMA, 0, 0)

    def new_kmalloc_cache(self, idx: int, typ: int, flags: int) -> None:
        if typ == KMALLOC_RECLAIM:
            flags |= SLAB_RECLAIM_ACCOUNT
        size = KMALLOC_INFO[idx]
        self.kmalloc_caches[typ][idx] = self.create_kmalloc_cache(KMALLOC_NAMES[idx][typ], size,
                                                                  flags, 0, size)

    def create_kmalloc_cache(self, name, size, flags, useroffset, usersize) -> KmemCache:
        s = self._new_cache(name, size, 0, None, useroffset, usersize)
        align = 8  # ARCH_KMALLOC_MINALIGN
        if is_power_of_2(size):
            align = max(align, size)
        s.align = calculate_alignment(flags, align, size)
        err = self.__kmem_cache_create(s, flags)
        if err:
            raise KernelBug(f"Kernel panic - not syncing: Creation of kmalloc slab {name} "
                            f"size={size} failed. Reason {err}")
        s.refcount = -1
        self.caches.append(s)
        s.refcount = 1
        return s

    def slab_unmergeable(self, s: KmemCache) -> bool:
        return bool(self.slab_nomerge or s.flags & SLAB_NEVER_MERGE or s.ctor or s.usersize
                    or s.refcount < 0)

    def find_mergeable(self, size: int, align: int, flags: int, name: str, ctor) -> KmemCache | None:
        if self.slab_nomerge or ctor:
            return None
        size = ALIGN(size, SIZEOF_PTR)
        align = calculate_alignment(flags, align, size)
        size = ALIGN(size, align)
        flags = self.kmem_cache_flags(size, flags, name)
        if flags & SLAB_NEVER_MERGE:
            return None
        for s in self.caches:  # list_for_each_entry_reverse(slab_root_caches): oldest first
            if self.slab_unmergeable(s):
                continue
            if size > s.size:
                continue
            if flags & SLAB_MERGE_SAME != s.flags & SLAB_MERGE_SAME:
                continue
            if s.size & ~(align - 1) != s.size:
                continue
            if s.size - size >= SIZEOF_PTR:
                continue
            return s
        return None

    def kmem_cache_create(self, name: str, size: int, align: int = 0, flags: int = 0,
                          ctor: Callable | None = None) -> KmemCache | None:
        return self.kmem_cache_create_usercopy(name, size, align, flags, 0, 0, ctor)

    def kmem_cache_create_usercopy(self, name: str, size: int, align: int = 0, flags: int = 0,
                                   useroffset: int = 0, usersize: int = 0,
                                   ctor: Callable | None = None) -> KmemCache | None:
        err = 0
        s = None
        if self.k.config.debug_vm and (not name or size < SIZEOF_PTR or size > KMALLOC_MAX_SIZE):
            self.printk(f"kmem_cache_create({name}) integrity check failed")
            err = -22
        elif flags & ~SLAB_FLAGS_PERMITTED:
            err = -22
        else:
            if (not usersize and useroffset) or size < usersize or size - usersize < useroffset:
                usersize = useroffset = 0
            if not usersize:
                s = self.__kmem_cache_alias(name, size, align, flags, ctor)
            if s is None:
                res = self.create_cache(name, size, calculate_alignment(flags, align, size), flags,
                                        useroffset, usersize, ctor)
                if isinstance(res, int):
                    err = res
                else:
                    s = res
        if err:
            self.printk(f"kmem_cache_create({name}) failed with error {err}")
            self.dump_stack()
            return None
        return s

    def create_cache(self, name, object_size, align, flags, useroffset, usersize, ctor):
        if useroffset + usersize > object_size:
            useroffset = usersize = 0
        s = self._new_cache(name, object_size, align, ctor, useroffset, usersize)
        err = self.__kmem_cache_create(s, flags)
        if err:
            return err
        s.refcount = 1
        self.caches.append(s)
        return s

    def kmalloc_slab(self, size: int, gfp: int) -> KmemCache | None:
        idx = kmalloc_slab_index(size)
        if not gfp & (G._GFP_DMA | G._GFP_RECLAIMABLE):
            typ = KMALLOC_NORMAL
        else:
            typ = KMALLOC_DMA if gfp & G._GFP_DMA else KMALLOC_RECLAIM
        return self.kmalloc_caches[typ][idx]

    def kmalloc_large(self, size: int, gfp: int, node: int) -> int | None:
        """kmalloc_order(): a compound page block, counted in NR_SLAB_UNRECLAIMABLE."""
        order = get_order(size)
        pfn = self.k.page_alloc.alloc_pages_nodemask(gfp | G._GFP_COMP, order,
                                                     None if node == NUMA_NO_NODE else node)
        if pfn is None:
            return None
        self._large[pfn] = order
        for p in range(pfn, pfn + (1 << order)):
            self._large_head[p] = pfn
        self.k.pgdats[self.k.memmap.page_to_nid(pfn)].vm_stat["nr_slab_unreclaimable"] += 1 << order
        return page_address(pfn)

    def ksize(self, x: int | None) -> int:
        if not x:
            self.k.printk_once("WARNING: CPU: 0 PID: 0 at mm/slab_common.c:1001 ksize")
            return 0
        if x == ZERO_SIZE_PTR:
            return 0
        a = x - PAGE_OFFSET
        page = self._slab_of.get(a >> 12)
        if page is None:
            head = self._large_head.get(a >> 12)
            if head is None:
                self.k.printk_once("WARNING: CPU: 0 PID: 0 at mm/slub.c:3951 __ksize")
                return PAGE_SIZE
            return PAGE_SIZE << self._large[head]
        return self.slab_ksize(page.cache)

    @staticmethod
    def slab_ksize(s: KmemCache) -> int:
        if s.flags & (SLAB_RED_ZONE | SLAB_POISON):
            return s.object_size
        if s.flags & (SLAB_TYPESAFE_BY_RCU | SLAB_STORE_USER):
            return s.inuse
        return s.size

    def kmem_cache_shrink(self, s: KmemCache) -> int:
        return self.__kmem_cache_shrink(s)

    def kmem_cache_destroy(self, s: KmemCache | None) -> None:
        if s is None:
            return
        s.refcount -= 1
        if s.refcount:
            return
        if self.shutdown_cache(s):
            self.printk(f"kmem_cache_destroy {s.name}: Slab cache still has objects")
            self.dump_stack()

    def shutdown_cache(self, s: KmemCache) -> int:
        if self.__kmem_cache_shutdown(s):
            return -16  # -EBUSY
        if s in self.caches:
            self.caches.remove(s)
        if s.sysfs_name is not None and self.sysfs_dirs.get(s.sysfs_name) is s:
            del self.sysfs_dirs[s.sysfs_name]  # alias links stay (v5.7)
        s.sysfs_name = None
        s.destroyed = True
        for row in self.kmalloc_caches:
            for i, c in enumerate(row):
                if c is s:
                    row[i] = None
        return 0
