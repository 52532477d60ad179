"""What mm/slab_common.c, mm/slab.h, include/linux/slab.h and poison.h give SLUB
(v5.7, x86_64): the SLAB_* flags, the kmalloc size table, calculate_alignment,
the kernel's text helpers (print_tainted, print_hex_dump, %pS symbols) and the
model's direct-map addresses.
"""
from __future__ import annotations

import sys

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
