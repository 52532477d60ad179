"""struct zone, struct per_cpu_pages, pg_data_t (v5.7 include/linux/mmzone.h)."""
from __future__ import annotations

from collections import OrderedDict, deque

from .gfp import MIGRATE_PCPTYPES, MIGRATE_TYPES
from .memory_model import ARCH_ZONES, MAX_ORDER, ZONE_TYPE_NAMES

WMARK_MIN, WMARK_LOW, WMARK_HIGH = 0, 1, 2
ZONE_BOOSTED_WATERMARK = 1
MAX_RECLAIM_RETRIES = 16

# enum zone_stat_item (v5.7, CONFIG_ZSMALLOC off, CMA counter present)
ZONE_STAT_ITEMS = ("nr_free_pages", "nr_zone_inactive_anon", "nr_zone_active_anon",
                   "nr_zone_inactive_file", "nr_zone_active_file", "nr_zone_unevictable",
                   "nr_zone_write_pending", "nr_mlock", "nr_page_table_pages",
                   "nr_kernel_stack", "nr_bounce", "nr_zspages", "nr_free_cma")
NUMA_STAT_ITEMS = ("numa_hit", "numa_miss", "numa_foreign", "numa_interleave", "numa_local",
                   "numa_other")
NODE_STAT_ITEMS = ("nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file",
                   "nr_unevictable", "nr_slab_reclaimable", "nr_slab_unreclaimable",
                   "nr_isolated_anon", "nr_isolated_file", "workingset_nodes",
                   "workingset_refault", "workingset_activate", "workingset_restore",
                   "workingset_nodereclaim", "nr_anon_pages", "nr_mapped", "nr_file_pages",
                   "nr_dirty", "nr_writeback", "nr_writeback_temp", "nr_shmem",
                   "nr_shmem_hugepages", "nr_shmem_pmdmapped", "nr_file_hugepages",
                   "nr_file_pmdmapped", "nr_anon_transparent_hugepages", "nr_unstable",
                   "nr_vmscan_write", "nr_vmscan_immediate_reclaim", "nr_dirtied",
                   "nr_written", "nr_kernel_misc_reclaimable", "nr_foll_pin_acquired",
                   "nr_foll_pin_released")


class FreeArea:
    """free_area[order]: one list per migratetype; head = the end of the dict."""

    __slots__ = ("free_list", "nr_free")

    def __init__(self):
        self.free_list = [OrderedDict() for _ in range(MIGRATE_TYPES)]
        self.nr_free = 0


class PerCpuPages:
    """struct per_cpu_pages: order-0 lists per pcp migratetype; head = left."""

    __slots__ = ("count", "high", "batch", "lists")

    def __init__(self):
        self.count = 0
        self.high = 0
        self.batch = 1
        self.lists = [deque() for _ in range(MIGRATE_PCPTYPES)]


class Zone:
    def __init__(self, pgdat: "PgData", idx: int, ztype: int, ncpus: int):
        self.zone_pgdat = pgdat
        self.node = pgdat.node_id
        self.idx = idx      # zone_idx(): the position in node_zones
        self.type = ztype   # ZONE_DMA ... ZONE_DEVICE
        self.name = ZONE_TYPE_NAMES[ztype]
        self.stat_name = ("dma", "dma32", "normal", "high", "movable", "device")[ztype]  # pgalloc_*
        self.zone_start_pfn = 0
        self.spanned_pages = 0
        self.present_pages = 0
        self.managed_pages = 0
        self._watermark = [0, 0, 0]
        self.watermark_boost = 0
        self.lowmem_reserve = [0] * len(pgdat.zone_types)
        self.free_area = [FreeArea() for _ in range(MAX_ORDER)]
        self.nr_reserved_highatomic = 0
        self.flags = 0
        self.pageset = [PerCpuPages() for _ in range(ncpus)]
        self.stat_threshold = 0
        self.vm_stat = dict.fromkeys(ZONE_STAT_ITEMS, 0)
        self.numa_stat = dict.fromkeys(NUMA_STAT_ITEMS, 0)

    def __repr__(self) -> str:
        return f"<zone {self.node}:{self.name}>"

    @property
    def zone_end_pfn(self) -> int:
        return self.zone_start_pfn + self.spanned_pages

    def populated_zone(self) -> bool:
        return self.present_pages != 0

    def managed_zone(self) -> bool:
        return self.managed_pages != 0

    def zone_spans_pfn(self, pfn: int) -> bool:
        return self.zone_start_pfn <= pfn < self.zone_end_pfn

    def min_wmark_pages(self) -> int:
        return self._watermark[WMARK_MIN] + self.watermark_boost

    def low_wmark_pages(self) -> int:
        return self._watermark[WMARK_LOW] + self.watermark_boost

    def high_wmark_pages(self) -> int:
        return self._watermark[WMARK_HIGH] + self.watermark_boost

    def wmark_pages(self, i: int) -> int:
        return self._watermark[i] + self.watermark_boost

    def free_pages(self) -> int:
        return self.vm_stat["nr_free_pages"]


class PgData:
    """pg_data_t: one NUMA node."""

    def __init__(self, nid: int, ncpus: int, arch: str = "x86_64"):
        self.node_id = nid
        self.zone_types = ARCH_ZONES[arch]
        self.max_nr_zones = len(self.zone_types)  # MAX_NR_ZONES of this arch
        self.node_zones = [Zone(self, i, t, ncpus) for i, t in enumerate(self.zone_types)]
        self._by_type = {z.type: z for z in self.node_zones}
        self.node_start_pfn = 0
        self.node_spanned_pages = 0
        self.node_present_pages = 0
        self.kswapd_order = 0
        self.kswapd_classzone_idx = self.max_nr_zones
        self.kswapd_failures = 0
        self.kswapd = None  # its KThread (set at boot)
        self.kswapd_state = "sleep"  # "try" | "nap" | "sleep"
        self.nap_end = 0
        self.nap_woken = False
        self.ks_alloc_order = self.ks_reclaim_order = 0
        self.ks_classzone = self.max_nr_zones - 1
        self.totalreserve_pages = 0
        self.vm_stat = dict.fromkeys(NODE_STAT_ITEMS, 0)
        self.cpus: list[int] = []

    def __repr__(self) -> str:
        return f"<node {self.node_id}>"

    @property
    def kswapd_sleeping(self) -> bool:
        """kswapd is in its full sleep and nobody has woken it yet."""
        return self.kswapd_state == "sleep" and (self.kswapd is None or self.kswapd.due is None)

    def zone_of(self, ztype: int) -> Zone | None:
        """The node's zone of a type (ZONE_NORMAL ...), None if the arch has none."""
        return self._by_type.get(ztype)

    @property
    def node_end_pfn(self) -> int:
        return self.node_start_pfn + self.node_spanned_pages
