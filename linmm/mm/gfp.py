"""GFP flags and their zone / migratetype mapping (v5.7 include/linux/gfp.h)."""
from __future__ import annotations

from .memory_model import ARCH_ZONES, ZONE_DMA, ZONE_DMA32, ZONE_HIGHMEM, ZONE_MOVABLE, ZONE_NORMAL

__GFP_DMA = 0x01
__GFP_HIGHMEM = 0x02
__GFP_DMA32 = 0x04
__GFP_MOVABLE = 0x08
__GFP_RECLAIMABLE = 0x10
__GFP_HIGH = 0x20
__GFP_IO = 0x40
__GFP_FS = 0x80
__GFP_ZERO = 0x100
__GFP_ATOMIC = 0x200
__GFP_DIRECT_RECLAIM = 0x400
__GFP_KSWAPD_RECLAIM = 0x800
__GFP_WRITE = 0x1000
__GFP_NOWARN = 0x2000
__GFP_RETRY_MAYFAIL = 0x4000
__GFP_NOFAIL = 0x8000
__GFP_NORETRY = 0x10000
__GFP_MEMALLOC = 0x20000
__GFP_COMP = 0x40000
__GFP_NOMEMALLOC = 0x80000
__GFP_HARDWALL = 0x100000
__GFP_THISNODE = 0x200000
__GFP_ACCOUNT = 0x400000
__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM

GFP_ATOMIC = __GFP_HIGH | __GFP_ATOMIC | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | __GFP_ACCOUNT
GFP_NOWAIT = __GFP_KSWAPD_RECLAIM
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | __GFP_IO
GFP_USER = __GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL
GFP_DMA = __GFP_DMA
GFP_DMA32 = __GFP_DMA32
GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | __GFP_MOVABLE
GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC | __GFP_NOWARN) & ~__GFP_RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM
GFP_PGTABLE_USER = GFP_KERNEL | __GFP_ZERO | __GFP_ACCOUNT

MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE = 0, 1, 2
MIGRATE_PCPTYPES = 3
MIGRATE_HIGHATOMIC = MIGRATE_PCPTYPES
MIGRATE_ISOLATE = 4
MIGRATE_TYPES = 5
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")

# __def_gfpflag_names (include/trace/events/mmflags.h, v5.7), in the order %pGg walks it
_GFP_NAMES = [
    (GFP_TRANSHUGE, "GFP_TRANSHUGE"), (GFP_TRANSHUGE_LIGHT, "GFP_TRANSHUGE_LIGHT"),
    (GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"), (GFP_HIGHUSER, "GFP_HIGHUSER"),
    (GFP_USER, "GFP_USER"), (GFP_KERNEL_ACCOUNT, "GFP_KERNEL_ACCOUNT"), (GFP_KERNEL, "GFP_KERNEL"),
    (GFP_NOFS, "GFP_NOFS"), (GFP_ATOMIC, "GFP_ATOMIC"), (GFP_NOIO, "GFP_NOIO"),
    (GFP_NOWAIT, "GFP_NOWAIT"), (GFP_DMA, "GFP_DMA"), (__GFP_HIGHMEM, "__GFP_HIGHMEM"),
    (GFP_DMA32, "GFP_DMA32"), (__GFP_HIGH, "__GFP_HIGH"), (__GFP_ATOMIC, "__GFP_ATOMIC"),
    (__GFP_IO, "__GFP_IO"), (__GFP_FS, "__GFP_FS"), (__GFP_NOWARN, "__GFP_NOWARN"),
    (__GFP_RETRY_MAYFAIL, "__GFP_RETRY_MAYFAIL"), (__GFP_NOFAIL, "__GFP_NOFAIL"),
    (__GFP_NORETRY, "__GFP_NORETRY"), (__GFP_COMP, "__GFP_COMP"), (__GFP_ZERO, "__GFP_ZERO"),
    (__GFP_NOMEMALLOC, "__GFP_NOMEMALLOC"), (__GFP_MEMALLOC, "__GFP_MEMALLOC"),
    (__GFP_HARDWALL, "__GFP_HARDWALL"), (__GFP_THISNODE, "__GFP_THISNODE"),
    (__GFP_RECLAIMABLE, "__GFP_RECLAIMABLE"), (__GFP_MOVABLE, "__GFP_MOVABLE"),
    (__GFP_ACCOUNT, "__GFP_ACCOUNT"), (__GFP_WRITE, "__GFP_WRITE"), (__GFP_RECLAIM, "__GFP_RECLAIM"),
    (__GFP_DIRECT_RECLAIM, "__GFP_DIRECT_RECLAIM"), (__GFP_KSWAPD_RECLAIM, "__GFP_KSWAPD_RECLAIM"),
]


def gfp_zone(gfp: int, zone_types: tuple = ARCH_ZONES["x86_64"]) -> int:
    """GFP_ZONE_TABLE: the highest zone *type* a request may use.  Without
    CONFIG_HIGHMEM __GFP_HIGHMEM means Normal; without ZONE_DMA32, DMA32 means
    Normal (OPT_ZONE_HIGHMEM, OPT_ZONE_DMA32).  Kernel.gfp_zone() gives the index."""
    if gfp & __GFP_DMA:
        return ZONE_DMA
    if gfp & __GFP_DMA32:
        return ZONE_DMA32 if ZONE_DMA32 in zone_types else ZONE_NORMAL
    if gfp & __GFP_HIGHMEM:
        if gfp & __GFP_MOVABLE:
            return ZONE_MOVABLE
        return ZONE_HIGHMEM if ZONE_HIGHMEM in zone_types else ZONE_NORMAL
    return ZONE_NORMAL


def gfp_migratetype(gfp: int) -> int:
    """gfpflags_to_migratetype()."""
    return (gfp & (__GFP_RECLAIMABLE | __GFP_MOVABLE)) >> 3


def gfpflags_allow_blocking(gfp: int) -> bool:
    return bool(gfp & __GFP_DIRECT_RECLAIM)


def format_gfp(gfp: int) -> str:
    """%pGg (lib/vsprintf.c format_flags): every table entry fully contained in the
    remaining bits, in table order, then any leftover bits in hex; "" for 0."""
    out = []
    rest = gfp
    for mask, name in _GFP_NAMES:
        if not rest:
            break
        if rest & mask == mask:
            out.append(name)
            rest &= ~mask
    if rest:
        out.append(f"{rest:#x}")
    return "|".join(out)


# Single-underscore aliases: a "__GFP_X" name written inside a Python class
# body is name-mangled, so class code uses "_GFP_X" for the same bit.
for _n, _v in list(globals().items()):
    if _n.startswith("__GFP_"):
        globals()["_GFP_" + _n[6:]] = _v
del _n, _v
