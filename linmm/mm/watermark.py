"""Watermarks, lowmem reserves, per-cpu list sizes and stat thresholds.

In the kernel these live in mm/page_alloc.c (init_per_zone_wmark_min,
__setup_per_zone_wmarks, setup_per_zone_lowmem_reserve, zone_batchsize) and
mm/vmstat.c (calculate_normal_threshold); balance.md ops 1-4.
"""
from __future__ import annotations

import math

from .memory_model import ZONE_HIGHMEM, ZONE_MOVABLE, ZONE_NORMAL
from .mmzone import WMARK_HIGH, WMARK_LOW, WMARK_MIN, Zone


def mult_frac(x: int, n: int, d: int) -> int:
    return (x // d) * n + (x % d) * n // d


def fls(x: int) -> int:
    return x.bit_length()


def rounddown_pow_of_two(x: int) -> int:
    return 1 << (x.bit_length() - 1)


class ZoneWatermarks:
    """Mixed into PageAllocator: needs self.k and the sysctl values it holds."""

    def nr_free_buffer_pages(self) -> int:
        total = 0
        for z in self.k.zonelist(self.k.numa_node_id()):
            if z.type <= ZONE_NORMAL:
                total += max(z.managed_pages - z.high_wmark_pages(), 0)
        return total

    def init_per_zone_wmark_min(self) -> None:
        lowmem_kbytes = self.nr_free_buffer_pages() * 4
        new = math.isqrt(lowmem_kbytes * 16)
        if new > self.user_min_free_kbytes:
            self.min_free_kbytes = max(128, min(new, 262144))
        else:
            self.k.printk(f"min_free_kbytes is not updated to {new} because user defined value "
                          f"{self.user_min_free_kbytes} is preferred")
        self.setup_per_zone_wmarks()
        self.refresh_zone_stat_thresholds()
        self.setup_per_zone_lowmem_reserve()

    def setup_per_zone_wmarks(self) -> None:
        pages_min = self.min_free_kbytes >> 2
        zones = self.k.all_zones()
        lowmem = sum(z.managed_pages for z in zones if not self.is_highmem(z))
        for z in zones:
            tmp = pages_min * z.managed_pages // lowmem if lowmem else 0
            # highmem needs few free pages of its own: MIN = clamp(managed/1024, 32, 128)
            z._watermark[WMARK_MIN] = max(32, min(z.managed_pages // 1024, 128)) \
                if self.is_highmem(z) else tmp
            tmp = max(tmp >> 2, mult_frac(z.managed_pages, self.watermark_scale_factor, 10000))
            z._watermark[WMARK_LOW] = z._watermark[WMARK_MIN] + tmp
            z._watermark[WMARK_HIGH] = z._watermark[WMARK_MIN] + tmp * 2
            z.watermark_boost = 0
        self.calculate_totalreserve_pages()

    def setup_per_zone_lowmem_reserve(self) -> None:
        ratio = self.lowmem_reserve_ratio
        for pgdat in self.k.pgdats:
            for j in range(len(pgdat.node_zones)):
                zone = pgdat.node_zones[j]
                managed = zone.managed_pages
                zone.lowmem_reserve[j] = 0
                idx = j
                while idx:
                    idx -= 1
                    lower = pgdat.node_zones[idx]
                    if ratio[idx] < 1:
                        ratio[idx] = 0
                        lower.lowmem_reserve[j] = 0
                    else:
                        lower.lowmem_reserve[j] = managed // ratio[idx]
                    managed += lower.managed_pages
        self.calculate_totalreserve_pages()

    def is_highmem(self, z) -> bool:
        """is_highmem(): HighMem, and Movable when it was carved out of HighMem."""
        return z.type == ZONE_HIGHMEM or (z.type == ZONE_MOVABLE and
                                          getattr(self.k, "movable_zone_type", None) == ZONE_HIGHMEM)

    def calculate_totalreserve_pages(self) -> None:
        total = 0
        for pgdat in self.k.pgdats:
            node_total = 0
            for i, z in enumerate(pgdat.node_zones):
                mx = max(z.lowmem_reserve[i:])
                mx += z.high_wmark_pages()
                node_total += min(mx, z.managed_pages)
            pgdat.totalreserve_pages = node_total
            total += node_total
        self.totalreserve_pages = total

    def refresh_zone_stat_thresholds(self) -> None:
        ncpu = self.k.config.cpus
        for z in self.k.all_zones():
            mem = z.managed_pages >> (27 - 12)
            z.stat_threshold = min(125, 2 * fls(ncpu) * (1 + fls(mem)))

    @staticmethod
    def zone_batchsize(managed: int) -> int:
        batch = managed // 1024
        if batch * 4096 > 1024 * 1024:
            batch = 256
        batch //= 4
        if batch < 1:
            batch = 1
        return rounddown_pow_of_two(batch + batch // 2) - 1

    def zone_pageset_init(self, z: Zone) -> None:
        for pcp in z.pageset:
            if self.percpu_pagelist_fraction:
                high = z.managed_pages // self.percpu_pagelist_fraction
                pcp.high, pcp.batch = high, min(max(1, high // 4), 12 * 8)
            else:
                batch = self.zone_batchsize(z.managed_pages)
                pcp.high, pcp.batch = 6 * batch, max(1, batch)

