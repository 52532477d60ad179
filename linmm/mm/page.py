"""struct page as arrays indexed by pfn, and the bytes of every page frame.

The kernel spends 64 bytes of struct page per 4 KiB page; this memmap keeps
flags (8), _refcount (4), _mapcount (4, aliased by page_type as in v5.7),
mapping (8), index (8), private (8), the frame slot (4), compound_head (8, a
tail's head pfn + 1) and compound_order (1, on the head): 53 bytes.  The
arrays are calloc'ed, so untouched memmap costs no host memory.
"""
from __future__ import annotations

import numpy as np

# enum pageflags (v5.7 include/linux/page-flags.h)
PG_locked, PG_referenced, PG_uptodate, PG_dirty, PG_lru, PG_active = 0, 1, 2, 3, 4, 5
PG_workingset, PG_waiters, PG_error, PG_slab, PG_owner_priv_1, PG_arch_1 = 6, 7, 8, 9, 10, 11
PG_reserved, PG_private, PG_private_2, PG_writeback, PG_head, PG_mappedtodisk = 12, 13, 14, 15, 16, 17
PG_reclaim, PG_swapbacked, PG_unevictable, PG_mlocked, PG_uncached, PG_hwpoison = 18, 19, 20, 21, 22, 23
PG_young, PG_idle = 24, 25
NR_PAGEFLAGS = 26
PG_swapcache = PG_owner_priv_1
PG_reported = PG_uptodate  # free pages only (v5.7 page reporting)

# page_type lives in _mapcount: a typed page has the PAGE_TYPE_BASE bits set and
# its type bit cleared (page-flags.h PAGE_TYPE_OPS).
PAGE_TYPE_BASE = 0xF0000000
PG_buddy, PG_offline, PG_kmemcg, PG_table, PG_guard = 0x80, 0x100, 0x200, 0x400, 0x800
PAGE_MAPPING_ANON = 0x1

# page->flags upper fields (page-flags-layout.h, x86_64, NODES_SHIFT 6)
ZONES_WIDTH, NODES_WIDTH, SECTIONS_WIDTH_SPARSE = 3, 6, 19


# struct page fields kept as per-pfn arrays
ARRAYS = ("flags", "refcount", "_mapcount1", "mapping", "index", "private", "frame",
          "compound_head", "compound_order")
TAIL_MAPPING = 0x400 + 0xDEAD000000000000 - (1 << 64)  # + POISON_POINTER_DELTA, as int64


def bit(n: int) -> int:
    return 1 << n


class MemMap:
    """Per-pfn struct page fields (struct of arrays)."""

    def __init__(self, nr_pfns: int, classic_sparse: bool):
        self.nr = nr_pfns
        self.flags = np.zeros(nr_pfns, np.uint64)
        self.refcount = np.zeros(nr_pfns, np.int32)
        # _mapcount starts at -1; store mapcount+1 so calloc keeps it lazy.
        self._mapcount1 = np.zeros(nr_pfns, np.int32)
        self.mapping = np.zeros(nr_pfns, np.int64)
        self.index = np.zeros(nr_pfns, np.uint64)
        self.private = np.zeros(nr_pfns, np.uint64)
        self.frame = np.zeros(nr_pfns, np.int32)  # slot + 1; 0 = frame is all zero
        self.compound_head = np.zeros(nr_pfns, np.int64)  # tail pages: head pfn + 1
        self.compound_order = np.zeros(nr_pfns, np.uint8)  # head pages
        self.sections_width = SECTIONS_WIDTH_SPARSE if classic_sparse else 0
        self.sections_pgoff = 64 - self.sections_width
        self.nodes_pgoff = self.sections_pgoff - NODES_WIDTH
        self.zones_pgoff = self.nodes_pgoff - ZONES_WIDTH

    # ---- page->flags fields
    def set_page_links(self, start: int, end: int, zone: int, nid: int) -> None:
        """set_page_links() for a pfn range: zone, node and (classic) section."""
        f = self.flags[start:end]
        keep = np.uint64((1 << self.zones_pgoff) - 1)
        hi = (zone << self.zones_pgoff) | (nid << self.nodes_pgoff)
        f &= keep
        f |= np.uint64(hi)
        if self.sections_width:
            secs = (np.arange(start, end, dtype=np.uint64) >> np.uint64(15)) << np.uint64(self.sections_pgoff)
            f |= secs

    def page_zonenum(self, pfn: int) -> int:
        return (int(self.flags[pfn]) >> self.zones_pgoff) & ((1 << ZONES_WIDTH) - 1)

    def page_to_nid(self, pfn: int) -> int:
        return (int(self.flags[pfn]) >> self.nodes_pgoff) & ((1 << NODES_WIDTH) - 1)

    def page_to_section(self, pfn: int) -> int:
        if not self.sections_width:
            return pfn >> 15
        return int(self.flags[pfn]) >> self.sections_pgoff

    # ---- flag helpers
    def test(self, pfn: int, flag: int) -> bool:
        return bool(int(self.flags[pfn]) >> flag & 1)

    def set(self, pfn: int, flag: int) -> None:
        self.flags[pfn] |= np.uint64(1 << flag)

    def clear(self, pfn: int, flag: int) -> None:
        self.flags[pfn] &= np.uint64(~(1 << flag) & 0xFFFFFFFFFFFFFFFF)

    # ---- _mapcount / page_type
    def get_mapcount_raw(self, pfn: int) -> int:
        """page->_mapcount as the kernel stores it (-1 = unmapped)."""
        return int(self._mapcount1[pfn]) - 1

    def page_mapcount(self, pfn: int) -> int:
        if self.page_has_type(pfn):
            return 0
        return int(self._mapcount1[pfn])

    def page_type(self, pfn: int) -> int:
        return (int(self._mapcount1[pfn]) - 1) & 0xFFFFFFFF

    def page_has_type(self, pfn: int) -> bool:
        return (self.page_type(pfn) & 0xF0000000) == PAGE_TYPE_BASE and \
            self.page_type(pfn) != 0xFFFFFFFF

    def _is_type(self, pfn: int, t: int) -> bool:
        return (self.page_type(pfn) & (PAGE_TYPE_BASE | t)) == PAGE_TYPE_BASE

    def PageBuddy(self, pfn: int) -> bool:
        return self._is_type(pfn, PG_buddy)

    def PageTail(self, pfn: int) -> bool:
        return bool(self.compound_head[pfn])

    def PageCompound(self, pfn: int) -> bool:
        return self.test(pfn, PG_head) or self.PageTail(pfn)

    def compound_head_pfn(self, pfn: int) -> int:
        h = int(self.compound_head[pfn])
        return h - 1 if h else pfn

    def PageTable(self, pfn: int) -> bool:
        return self._is_type(pfn, PG_table)

    def set_buddy(self, pfn: int, order: int) -> None:
        """set_page_order(): PageBuddy + order in page_private."""
        self._mapcount1[pfn] = np.int32(-128)  # page_type 0xffffff7f, +1
        self.private[pfn] = order

    def clear_buddy(self, pfn: int) -> None:
        self._mapcount1[pfn] = 0
        self.private[pfn] = 0

    def set_table(self, pfn: int) -> None:
        self._mapcount1[pfn] = np.int32(-1024)  # 0xfffffbff + 1

    def clear_table(self, pfn: int) -> None:
        self._mapcount1[pfn] = 0

    def grow(self, nr_pfns: int) -> None:
        """Memory hot-add beyond the boot memmap: extend every per-pfn array."""
        for name in ARRAYS:
            old = getattr(self, name)
            new = np.zeros(nr_pfns, old.dtype)
            new[:len(old)] = old
            setattr(self, name, new)
        self.nr = nr_pfns

    def nbytes(self) -> int:
        return sum(getattr(self, n).nbytes for n in ARRAYS)


class FrameStore:
    """The 4096 real bytes of every page frame, allocated on first write.

    ``memmap.frame[pfn]`` holds slot+1; slot rows live in chunks of 256
    frames so that growing never copies existing frames.
    """

    CHUNK = 256

    def __init__(self, memmap: MemMap):
        self.mm = memmap
        self.chunks: list[np.ndarray] = []
        self.free_slots: list[int] = []
        self.nslots = 0

    def _row(self, slot: int) -> np.ndarray:
        return self.chunks[slot // self.CHUNK][slot % self.CHUNK]

    def _new_slot(self) -> int:
        if self.free_slots:
            return self.free_slots.pop()
        if self.nslots % self.CHUNK == 0:
            self.chunks.append(np.zeros((self.CHUNK, 4096), np.uint8))
        self.nslots += 1
        return self.nslots - 1

    def has_data(self, pfn: int) -> bool:
        return self.mm.frame[pfn] != 0

    def view(self, pfn: int) -> np.ndarray:
        """A writable view of the frame (allocated zero-filled if needed)."""
        s = int(self.mm.frame[pfn])
        if not s:
            slot = self._new_slot()
            self._row(slot)[:] = 0
            self.mm.frame[pfn] = slot + 1
            return self._row(slot)
        return self._row(s - 1)

    def read(self, pfn: int, off: int = 0, n: int = 4096) -> bytes:
        s = int(self.mm.frame[pfn])
        if not s:
            return bytes(n)
        return self._row(s - 1)[off:off + n].tobytes()

    def write(self, pfn: int, off: int, data) -> None:
        self.view(pfn)[off:off + len(data)] = np.frombuffer(bytes(data), np.uint8)

    def clear(self, pfn: int) -> None:
        """clear_page(): the frame reads as zeros again (slot released)."""
        s = int(self.mm.frame[pfn])
        if s:
            self.free_slots.append(s - 1)
            self.mm.frame[pfn] = 0

    def copy(self, dst: int, src: int) -> None:
        """copy_page(dst, src)."""
        s = int(self.mm.frame[src])
        if not s:
            self.clear(dst)
        else:
            self.view(dst)[:] = self._row(s - 1)

    def nbytes(self) -> int:
        return len(self.chunks) * self.CHUNK * 4096
