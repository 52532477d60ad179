"""Physical memory layout: e820, memblock, sections, nodes, pfn <-> page.

memory-model.rst / memory-model.md: the "vm" layout is the e820 map a KVM
guest gets; SPARSEMEM sections are 128 MiB; the memmap (64 bytes of struct
page per page) is reserved top-down at the end of each node.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError, KernelBug

PAGE_SHIFT = 12
PAGE_SIZE = 4096
SECTION_SIZE_BITS = 27
PFN_SECTION_SHIFT = SECTION_SIZE_BITS - PAGE_SHIFT
PAGES_PER_SECTION = 1 << PFN_SECTION_SHIFT
SUBSECTION_SHIFT = 21
PAGES_PER_SUBSECTION = 1 << (SUBSECTION_SHIFT - PAGE_SHIFT)
SECTION_MARKED_PRESENT, SECTION_HAS_MEM_MAP, SECTION_IS_ONLINE, SECTION_IS_EARLY = 1, 2, 4, 8
STRUCT_PAGE_SIZE = 64
MAX_ORDER = 11
MAX_ORDER_NR_PAGES = 1 << (MAX_ORDER - 1)
pageblock_order = 9
pageblock_nr_pages = 1 << pageblock_order
MAX_DMA_PFN = 4096
MAX_DMA32_PFN = 1 << 20
VMEMMAP_START = 0xFFFFEA0000000000
PAGE_OFFSET = 0xFFFF888000000000
PHYSICAL_START = 16 << 20

# Zone types in the order of the kernel's enum zone_type.  An arch builds a
# subset: x86_64 has no HighMem, i386 no DMA32 and no Device.  A zone's kernel
# index (zone_idx(), page->flags, lowmem_reserve[], classzone_idx) is its
# position in its arch's list; the types keep the order, so types compare
# like indices.
ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_HIGHMEM, ZONE_MOVABLE, ZONE_DEVICE = range(6)
ZONE_TYPE_NAMES = ("DMA", "DMA32", "Normal", "HighMem", "Movable", "Device")
ARCH_ZONES = {"x86_64": (ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE, ZONE_DEVICE),
              "i386": (ZONE_DMA, ZONE_NORMAL, ZONE_HIGHMEM, ZONE_MOVABLE)}
ARCH_ZONES["i386-pae"] = ARCH_ZONES["i386"]


def pfn_to_section_nr(pfn: int) -> int:
    return pfn >> PFN_SECTION_SHIFT


def section_nr_to_pfn(nr: int) -> int:
    return nr << PFN_SECTION_SHIFT


@dataclass
class E820Entry:
    start: int
    end: int  # exclusive, bytes
    type: str  # "usable" | "reserved"


@dataclass
class Layout:
    """What boot derives from the config before the memmap exists."""

    e820_bios: list[E820Entry] = field(default_factory=list)
    e820: list[E820Entry] = field(default_factory=list)
    memory: list[tuple[int, int, int]] = field(default_factory=list)  # (start_pfn, end_pfn, nid)
    reserved: list[tuple[int, int, str]] = field(default_factory=list)  # boot reservations
    init_range: tuple[int, int] | None = None  # freed at the end of boot
    max_pfn: int = 0
    max_low_pfn: int = 0  # the end of lowmem (= max_pfn without HIGHMEM)
    image_parts: dict = field(default_factory=dict)
    zone_windows: dict[int, tuple[int, int]] = field(default_factory=dict)  # zone type -> pfns
    explicit_zones: list[dict] | None = None  # per node {zone_idx: (start, end)}
    node_cpus: list[list[int]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def present_pages(self) -> int:
        return sum(e - s for s, e, _ in self.memory)


def _vm_e820(ram: int) -> list[E820Entry]:
    low = min(ram, 3 << 30)
    high = ram - low
    e = [E820Entry(0, 0x9FC00, "usable"), E820Entry(0x9FC00, 0x100000, "reserved"),
         E820Entry(0x100000, low, "usable")]
    if high:
        e.append(E820Entry(1 << 32, (1 << 32) + high, "usable"))
    return e


def _split_nodes(sections: list[int], n: int) -> dict[int, int]:
    s = len(sections)
    if n > s:
        raise ConfigError(f"nodes: {n} nodes but only {s} present sections")
    out = {}
    for i in range(n):
        for j in range(i * s // n, (i + 1) * s // n):
            out[sections[j]] = i
    return out


def build_layout(cfg) -> Layout:
    """Boot steps 1 of memory-model.md: e820 -> mem= -> memblock -> reservations."""
    lay = Layout()
    if cfg.explicit:
        return _explicit_layout(cfg, lay)
    lay.e820_bios = _vm_e820(cfg.ram_bytes)
    for e in lay.e820_bios:
        lay.log.append(f"BIOS-e820: [mem {e.start:#018x}-{e.end - 1:#018x}] {e.type}")
    # trim_bios_range: [0, 4096) -> reserved, usable RAM in [0xa0000, 0x100000) removed
    lay.log.append("e820: update [mem 0x00000000-0x00000fff] usable ==> reserved")
    lay.log.append("e820: remove [mem 0x000a0000-0x000fffff] usable")
    ranges = []
    for e in lay.e820_bios:
        if e.type != "usable":
            continue
        s, t = e.start, e.end
        if s < 4096:
            s = 4096
        if s < 0x100000 and t > 0xA0000:
            t = min(t, 0xA0000)
        s_pfn, e_pfn = (s + PAGE_SIZE - 1) >> PAGE_SHIFT, t >> PAGE_SHIFT
        if e_pfn > s_pfn:
            ranges.append((s_pfn, e_pfn))
    mem = cfg.params.get("mem")
    if mem:
        limit = parse_mem(mem) >> PAGE_SHIFT
        ranges = [(s, min(e, limit)) for s, e in ranges if s < limit]
    if cfg.is_32bit:
        ranges = find_low_pfn_range(cfg, lay, ranges)
    else:
        lay.max_low_pfn = ranges[-1][1]
    lay.e820 = [E820Entry(s << PAGE_SHIFT, e << PAGE_SHIFT, "usable") for s, e in ranges]
    lay.max_pfn = ranges[-1][1]
    present_secs = sorted({sec for s, e in ranges
                           for sec in range(pfn_to_section_nr(s), pfn_to_section_nr(e - 1) + 1)})
    sec_nid = _split_nodes(present_secs, cfg.nodes)
    for s, e in ranges:  # split ranges at node boundaries
        cur = s
        while cur < e:
            nid = sec_nid[pfn_to_section_nr(cur)]
            nxt = cur
            while nxt < e and sec_nid.get(pfn_to_section_nr(nxt)) == nid:
                nxt = min(e, section_nr_to_pfn(pfn_to_section_nr(nxt) + 1))
            lay.memory.append((cur, nxt, nid))
            cur = nxt
    lay.node_cpus = [[c for c in range(cfg.cpus) if c * cfg.nodes // cfg.cpus == n]
                     for n in range(cfg.nodes)]
    if cfg.is_32bit:
        lay.zone_windows = {ZONE_DMA: (0, MAX_DMA_PFN), ZONE_NORMAL: (MAX_DMA_PFN, lay.max_low_pfn),
                            ZONE_HIGHMEM: (lay.max_low_pfn, 1 << 60)}
    else:
        lay.zone_windows = {ZONE_DMA: (0, MAX_DMA_PFN), ZONE_DMA32: (MAX_DMA_PFN, MAX_DMA32_PFN),
                            ZONE_NORMAL: (MAX_DMA32_PFN, 1 << 60)}
    _reserve_boot(cfg, lay)
    return lay


def maxmem_pfn(cfg) -> int:
    """MAXMEM_PFN (i386): 1 GiB of kernel space minus __VMALLOC_RESERVE (128 MiB, or
    vmalloc= plus the 8 MiB VMALLOC_OFFSET guard): 896 MiB by default (highmem.md)."""
    reserve = 128 << 20
    if cfg.params.get("vmalloc"):
        reserve = parse_mem(cfg.params["vmalloc"]) + (8 << 20)
    return max(0, (1 << 30) - reserve) >> PAGE_SHIFT


def find_low_pfn_range(cfg, lay: Layout, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """i386 (arch/x86/mm/init_32.c): max_pfn stops at MAX_ARCH_PFN (4 GiB, 64 GiB with
    PAE); lowmem ends at MAXMEM_PFN or earlier when highmem= asks for a HighMem zone;
    logs "%ldMB HIGHMEM available." and "%ldMB LOWMEM available." (initmem_init)."""
    max_arch = 1 << ((36 if cfg.arch == "i386-pae" else 32) - PAGE_SHIFT)
    ranges = [(s, min(e, max_arch)) for s, e in ranges if s < max_arch]
    max_pfn = ranges[-1][1]
    maxmem = maxmem_pfn(cfg)
    hp = parse_mem(cfg.params["highmem"]) >> PAGE_SHIFT if cfg.params.get("highmem") else -1
    mb = lambda pages: pages >> (20 - PAGE_SHIFT)  # noqa: E731 (pages_to_mb)
    if max_pfn <= maxmem:  # lowmem_pfn_init()
        max_low = max_pfn
        hp = max(hp, 0)
        if hp >= max_pfn:
            lay.log.append(f"highmem size ({mb(hp)}MB) is bigger than pages available ({mb(max_pfn)}MB)!")
            hp = 0
        if hp:
            if max_low - hp < (64 << 20) >> PAGE_SHIFT:
                lay.log.append(f"highmem size ({mb(hp)}MB) results in <64MB lowmem, ignoring it!")
                hp = 0
            max_low -= hp
    else:  # highmem_pfn_init()
        max_low = maxmem
        if hp == -1:
            hp = max_pfn - maxmem
        if hp + maxmem < max_pfn:
            max_pfn = maxmem + hp
        if hp + maxmem > max_pfn:
            lay.log.append(f"only {mb(max_pfn - maxmem)}MB highmem pages available, ignoring highmem "
                           f"size of {mb(hp)}MB!")
        if cfg.arch == "i386" and max_pfn > 1 << 20:  # dead in v5.7: MAX_ARCH_PFN caps it first
            max_pfn = 1 << 20
            lay.log.append("Warning: only 4GB will be used. Use a HIGHMEM64G enabled kernel!")
        ranges = [(s, min(e, max_pfn)) for s, e in ranges if s < max_pfn]
    lay.max_low_pfn = max_low
    highstart = max_low if max_pfn > max_low else max_pfn
    lay.log.append(f"{mb(max_pfn - highstart)}MB HIGHMEM available.")
    lay.log.append(f"{mb(max_low)}MB LOWMEM available.")
    return ranges


def parse_mem(text: str) -> int:
    from ..config import memparse
    return memparse(text)[0]


def _reserve_boot(cfg, lay: Layout) -> None:
    low = 64 << 10
    if "reservelow" in cfg.params and cfg.params["reservelow"]:
        low = max(4096, min(parse_mem(cfg.params["reservelow"]), 640 << 10))
    lay.reserved.append((0, low >> PAGE_SHIFT, "reservelow"))
    img = cfg.kernel_image_bytes >> PAGE_SHIFT
    start = PHYSICAL_START >> PAGE_SHIFT
    # code, rodata, rwdata, init, bss as fractions of the default 32M image
    parts = [("code", img // 2), ("rodata", img // 4), ("rwdata", img // 8),
             ("init", img // 16), ("bss", img - img // 2 - img // 4 - img // 8 - img // 16)]
    cur = start
    for name, n in parts:
        lay.image_parts[name] = n
        if name == "init":
            lay.init_range = (cur, cur + n)
        cur += n
    lay.reserved.append((start, start + img, "kernel"))
    # memmap: 512 pages per present section, top-down at the end of each node
    for nid in sorted({n for _, _, n in lay.memory}):
        secs = sorted({sec for s, e, n in lay.memory if n == nid
                       for sec in range(pfn_to_section_nr(s), pfn_to_section_nr(e - 1) + 1)})
        if cfg.memory_model in ("flatmem", "discontigmem"):  # one mem_map over the node span
            s0 = min(s for s, _, n in lay.memory if n == nid) & ~1023
            e0 = (max(e for _, e, n in lay.memory if n == nid) + 1023) & ~1023
            need = ((e0 - s0) * cfg.struct_page_size + PAGE_SIZE - 1) >> PAGE_SHIFT
        else:
            need = len(secs) * (PAGES_PER_SECTION * STRUCT_PAGE_SIZE >> PAGE_SHIFT)
        # memblock allocates top-down below its limit: lowmem on i386
        for s, e, n in reversed([(s, min(e, lay.max_low_pfn), n) for s, e, n in lay.memory
                                 if n == nid and s < lay.max_low_pfn]):
            take = min(need, e - s)
            if take:
                lay.reserved.append((e - take, e, "memmap"))
                need -= take
            if not need:
                break


def _explicit_layout(cfg, lay: Layout) -> Layout:
    """Explicit zones: each zone one range at its window, no holes, no reservations."""
    if cfg.is_32bit:
        return _explicit_layout_32(cfg, lay)
    lay.explicit_zones = []
    prev_end = 0
    for nid, zs in enumerate(cfg.node_zones):
        spans = {}
        if nid == 0:
            for name, idx, base in (("DMA", ZONE_DMA, 1), ("DMA32", ZONE_DMA32, MAX_DMA_PFN)):
                n = zs.get(name, 0) >> PAGE_SHIFT
                if n:
                    spans[idx] = (base, base + n)
                    lay.memory.append((base, base + n, nid))
                    prev_end = base + n
            cur = MAX_DMA32_PFN
        else:
            cur = (prev_end + PAGES_PER_SECTION - 1) & ~(PAGES_PER_SECTION - 1)
        for name, idx in (("Normal", ZONE_NORMAL), ("Movable", ZONE_MOVABLE)):
            n = zs.get(name, 0) >> PAGE_SHIFT
            if n:
                spans[idx] = (cur, cur + n)
                lay.memory.append((cur, cur + n, nid))
                cur += n
                prev_end = cur
        lay.explicit_zones.append(spans)
    lay.memory.sort()
    lay.max_pfn = lay.max_low_pfn = max(e for _, e, _ in lay.memory)
    n = len(cfg.node_zones)
    lay.node_cpus = []
    for nid in range(n):
        given = cfg.node_cpus[nid]
        lay.node_cpus.append(list(given) if given is not None else
                             [c for c in range(cfg.cpus) if c * n // cfg.cpus == nid])
    lay.e820 = [E820Entry(s << PAGE_SHIFT, e << PAGE_SHIFT, "usable") for s, e, _ in lay.memory]
    return lay


def _explicit_layout_32(cfg, lay: Layout) -> Layout:
    """i386 explicit zones (one node): DMA from pfn 0, Normal from 4096, HighMem from
    MAXMEM_PFN (a smaller Normal leaves a hole), Movable after HighMem."""
    if len(cfg.node_zones) != 1:
        raise ConfigError("nodes: an explicit i386 layout has one node")
    zs = cfg.node_zones[0]
    maxmem = maxmem_pfn(cfg)
    spans = {}
    cur = 0
    for name, idx, base in (("DMA", ZONE_DMA, 0), ("Normal", ZONE_NORMAL, MAX_DMA_PFN),
                            ("HighMem", ZONE_HIGHMEM, maxmem), ("Movable", ZONE_MOVABLE, None)):
        n = zs.get(name, 0) >> PAGE_SHIFT
        start = cur if base is None else max(base, cur)
        if n:
            spans[idx] = (start, start + n)
            lay.memory.append((start, start + n, 0))
            cur = start + n
    lay.explicit_zones = [spans]
    lay.max_pfn = cur
    lay.max_low_pfn = min(cur, maxmem)
    lay.node_cpus = [list(cfg.node_cpus[0]) if cfg.node_cpus[0] is not None else list(range(cfg.cpus))]
    lay.e820 = [E820Entry(s << PAGE_SHIFT, e << PAGE_SHIFT, "usable") for s, e, _ in lay.memory]
    return lay


class Page:
    """A light handle on one struct page: the pfn plus the memmap it lives in."""

    __slots__ = ("pfn", "_mm")

    def __init__(self, pfn: int, memmap):
        self.pfn = pfn
        self._mm = memmap

    def __repr__(self) -> str:
        return f"<page pfn={self.pfn:#x}>"

    def __eq__(self, other) -> bool:
        return isinstance(other, Page) and other.pfn == self.pfn

    def __hash__(self) -> int:
        return hash(self.pfn)

    @property
    def address(self) -> int:
        """The struct page's kernel virtual address (vmemmap + pfn)."""
        return VMEMMAP_START + STRUCT_PAGE_SIZE * self.pfn

    @property
    def flags(self) -> int:
        return int(self._mm.flags[self.pfn])

    @property
    def refcount(self) -> int:
        return int(self._mm.refcount[self.pfn])

    @property
    def mapcount(self) -> int:
        return self._mm.page_mapcount(self.pfn)

    @property
    def pgmap(self):
        """page->pgmap: the dev_pagemap of a ZONE_DEVICE page, else None."""
        return getattr(self._mm, "pgmap", None)

    @property
    def zone_device_data(self) -> int:
        return int(self._mm.private[self.pfn])


def check_pfn(kernel, pfn: int) -> None:
    if not kernel.pfn_valid(pfn):
        raise KernelBug(f"pfn_to_page: pfn {pfn:#x} is not valid")
