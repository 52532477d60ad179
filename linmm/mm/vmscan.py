"""LRU lists, pagevecs, kswapd and direct reclaim (mm/vmscan.c, mm/swap.c).

The foundation has no page cache and no swap, so nothing is reclaimable yet:
shrink_node scans what it may (file LRUs; anon only with swap) and reclaims
what is clean file memory.  The control flow, wakeups and counters are the
v5.7 ones so that later subsystems plug their pages in.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from .memory_model import ZONE_NORMAL
from .mmzone import MAX_RECLAIM_RETRIES
from .page import PG_active, PG_lru, PG_mlocked, PG_referenced, PG_swapbacked, PG_swapcache, PG_unevictable

if TYPE_CHECKING:
    from ..kernel import Kernel

LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE, LRU_UNEVICTABLE = range(5)
LRU_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")
PAGEVEC_SIZE = 15
SWAP_CLUSTER_MAX = 32
DEF_PRIORITY = 12
KSWAPD_NAP_MS = 100


class LruVec:
    def __init__(self):
        self.lists = [OrderedDict() for _ in range(5)]


class VmScan:
    def __init__(self, k: "Kernel"):
        self.k = k
        self.lruvecs = [LruVec() for _ in k.pgdats]
        self.lru_add_pvec = [[] for _ in range(k.config.cpus)]
        self.lru_lazyfree_pvec = [[] for _ in range(k.config.cpus)]
        self.lru_deactivate_pvec = [[] for _ in range(k.config.cpus)]
        self.swappiness = 60
        # per-CPU pagevecs hold 15 pages; unevictable-lru.md: the model adds pages to the
        # lists at once unless MachineConfig(lru_pagevecs=True) asks for the batching
        self.pagevec_size = PAGEVEC_SIZE if k.config.lru_pagevecs else 1

    # ------------------------------------------------------------ LRU add
    def page_lru(self, pfn: int) -> int:
        f = int(self.k.memmap.flags[pfn])
        if f >> PG_unevictable & 1:
            return LRU_UNEVICTABLE
        lru = LRU_INACTIVE_FILE if not f >> PG_swapbacked & 1 else LRU_INACTIVE_ANON
        return lru + (f >> PG_active & 1)

    def lru_cache_add(self, pfns) -> None:
        """lru_cache_add(): get_page, pagevec_add, drain when the pagevec is full."""
        k = self.k
        mm = k.memmap
        pvec = self.lru_add_pvec[k.current_cpu()]
        for pfn in pfns:
            mm.refcount[pfn] += 1
            pvec.append(pfn)
            if len(pvec) >= self.pagevec_size:
                self.__pagevec_lru_add(pvec)

    def lru_cache_add_batch(self, pfns: np.ndarray) -> None:
        """lru_cache_add() for many new pages: the full pagevecs drain in one go.

        Draining a pagevec of pages that are still mapped frees nothing, so
        draining all full pagevecs together is the same as one at a time."""
        k = self.k
        pvec = self.lru_add_pvec[k.current_cpu()]
        k.memmap.refcount[pfns] += 1
        allp = pvec + pfns.tolist()
        full = len(allp) - len(allp) % self.pagevec_size
        pvec[:] = allp[full:]
        if full:
            self._lru_add_many(np.asarray(allp[:full], np.int64))

    def __pagevec_lru_add(self, pvec: list) -> None:
        if len(pvec) == 1:
            pfn = pvec.pop()
            self._lru_add_one(pfn)
            return
        pages = np.asarray(pvec, np.int64)
        pvec.clear()
        self._lru_add_many(pages)

    def _lru_add_one(self, pfn: int) -> None:
        """__pagevec_lru_add_fn() for one page, without NumPy overhead."""
        k = self.k
        mm = k.memmap
        was_unevictable = mm.test(pfn, PG_unevictable)
        mm.set(pfn, PG_lru)
        if not mm.test(pfn, PG_mlocked):
            mm.clear(pfn, PG_unevictable)
            if was_unevictable:
                k.vm_events["unevictable_pgs_rescued"] += 1
        else:
            mm.clear(pfn, PG_active)
            mm.set(pfn, PG_unevictable)
            if not was_unevictable:
                k.vm_events["unevictable_pgs_culled"] += 1
        self.add_page_to_lru_list(pfn, self.page_lru(pfn))
        self.release_pages((pfn,))

    def _lru_add_many(self, pfns: np.ndarray) -> None:
        """__pagevec_lru_add_fn for each page: evictable pages go to their list
        (rescued if they were unevictable), mlocked ones are culled."""
        k = self.k
        mm = k.memmap
        f = mm.flags[pfns]
        one = np.uint64(1)
        was_unev = ((f >> np.uint64(PG_unevictable)) & one) != 0
        evictable = ((f >> np.uint64(PG_mlocked)) & one) == 0
        rescued = int(np.count_nonzero(was_unev & evictable))
        culled = int(np.count_nonzero(~was_unev & ~evictable))
        f = f | np.uint64(1 << PG_lru)
        f = np.where(evictable, f & ~np.uint64(1 << PG_unevictable),
                     (f & ~np.uint64(1 << PG_active)) | np.uint64(1 << PG_unevictable))
        mm.flags[pfns] = f
        if rescued:
            k.vm_events["unevictable_pgs_rescued"] += rescued
        if culled:
            k.vm_events["unevictable_pgs_culled"] += culled
        lru = np.where((f >> np.uint64(PG_swapbacked)) & np.uint64(1), LRU_INACTIVE_ANON,
                       LRU_INACTIVE_FILE) + ((f >> np.uint64(PG_active)) & np.uint64(1)).astype(np.int64)
        lru[((f >> np.uint64(PG_unevictable)) & np.uint64(1)) != 0] = LRU_UNEVICTABLE
        nids = ((f >> np.uint64(mm.nodes_pgoff)) & np.uint64(63)).astype(np.int64)
        zidx = ((f >> np.uint64(mm.zones_pgoff)) & np.uint64(7)).astype(np.int64)
        pl = pfns.tolist()
        for nid, li, zi, pfn in zip(nids.tolist(), lru.tolist(), zidx.tolist(), pl):
            self.lruvecs[nid].lists[li][pfn] = None
        key = nids * 64 + zidx * 8 + lru
        for kk, cnt in zip(*np.unique(key, return_counts=True)):
            kk, cnt = int(kk), int(cnt)
            nid, zi, li = kk // 64, (kk // 8) % 8, kk % 8
            pg = k.pgdats[nid]
            pg.vm_stat["nr_" + LRU_NAMES[li]] += cnt
            pg.node_zones[zi].vm_stat["nr_zone_" + LRU_NAMES[li]] += cnt
        rc = mm.refcount[pfns] - 1
        mm.refcount[pfns] = rc
        for pfn in pfns[rc == 0].tolist():  # unmapped while in the pagevec: free now
            mm.refcount[pfn] = 1
            self.release_pages((pfn,))

    def lru_add_drain(self, cpu: int | None = None) -> None:
        """lru_add_drain_cpu(): flush this CPU's pagevecs."""
        cpu = self.k.current_cpu() if cpu is None else cpu
        pvec = self.lru_add_pvec[cpu]
        if pvec:
            self.__pagevec_lru_add(pvec)
        pvec = self.lru_lazyfree_pvec[cpu]
        if pvec:
            self._lazyfree_drain(pvec)
        pvec = self.lru_deactivate_pvec[cpu]
        if pvec:
            self._deactivate_drain(pvec)

    def deactivate_page(self, pfn: int) -> None:
        """MADV_COLD: queue an active page for the inactive list (lru_deactivate_pvecs)."""
        mm = self.k.memmap
        if not (mm.test(pfn, PG_lru) and mm.test(pfn, PG_active)) or mm.test(pfn, PG_unevictable):
            return
        mm.refcount[pfn] += 1
        pvec = self.lru_deactivate_pvec[self.k.current_cpu()]
        pvec.append(pfn)
        if len(pvec) >= self.pagevec_size:
            self._deactivate_drain(pvec)

    def _deactivate_drain(self, pvec: list) -> None:
        mm = self.k.memmap
        for pfn in pvec:
            if mm.test(pfn, PG_lru) and mm.test(pfn, PG_active) and not mm.test(pfn, PG_unevictable):
                self.del_page_from_lru_list(pfn, self.page_lru(pfn))
                mm.clear(pfn, PG_active)
                mm.clear(pfn, PG_referenced)
                self.add_page_to_lru_list(pfn, self.page_lru(pfn))
                self.k.vm_events["pgdeactivate"] += 1
        pages = list(pvec)
        pvec.clear()
        self.release_pages(pages)

    def reclaim_pages(self, pfns: list) -> int:
        """reclaim_pages() -> shrink_page_list(): with no swap an anonymous page cannot
        be paged out (add_to_swap fails) and is activated (PGACTIVATE)."""
        mm = self.k.memmap
        activated = 0
        for pfn in pfns:
            if not mm.test(pfn, PG_lru):
                continue
            lru = self.page_lru(pfn)
            if mm.test(pfn, PG_swapbacked) and self.k.total_swap_pages() == 0:
                if not mm.test(pfn, PG_active) and lru != LRU_UNEVICTABLE:
                    self.del_page_from_lru_list(pfn, lru)
                    mm.set(pfn, PG_active)
                    self.add_page_to_lru_list(pfn, self.page_lru(pfn))
                activated += 1
        self.k.vm_events["pgactivate"] += activated
        return 0

    def mark_page_lazyfree(self, pfn: int) -> None:
        """MADV_FREE: queue an anon page to move to the inactive file list."""
        mm = self.k.memmap
        if not (mm.test(pfn, PG_lru) and mm.test(pfn, PG_swapbacked)) or \
                mm.test(pfn, PG_unevictable) or mm.test(pfn, PG_swapcache):
            return
        mm.refcount[pfn] += 1
        pvec = self.lru_lazyfree_pvec[self.k.current_cpu()]
        pvec.append(pfn)
        if len(pvec) >= self.pagevec_size:
            self._lazyfree_drain(pvec)

    def _lazyfree_drain(self, pvec: list) -> None:
        """lru_lazyfree_fn over the pagevec, then release_pages."""
        mm = self.k.memmap
        for pfn in pvec:
            if mm.test(pfn, PG_lru) and mm.test(pfn, PG_swapbacked) and \
                    not mm.test(pfn, PG_unevictable):
                self.del_page_from_lru_list(pfn, self.page_lru(pfn))
                mm.clear(pfn, PG_active)
                mm.clear(pfn, PG_referenced)
                mm.clear(pfn, PG_swapbacked)
                self.add_page_to_lru_list(pfn, LRU_INACTIVE_FILE)
                self.k.vm_events["pglazyfree"] += 1
        pages = list(pvec)
        pvec.clear()
        self.release_pages(pages)

    def lru_add_drain_all(self) -> None:
        for cpu in range(len(self.lru_add_pvec)):
            self.lru_add_drain(cpu)

    def add_page_to_lru_list(self, pfn: int, lru: int) -> None:
        k = self.k
        nid = k.memmap.page_to_nid(pfn)
        self.lruvecs[nid].lists[lru][pfn] = None
        self._account(pfn, lru, 1)

    def del_page_from_lru_list(self, pfn: int, lru: int) -> None:
        nid = self.k.memmap.page_to_nid(pfn)
        del self.lruvecs[nid].lists[lru][pfn]
        self._account(pfn, lru, -1)

    def _account(self, pfn: int, lru: int, n: int) -> None:
        k = self.k
        zone = k.page_zone_of(pfn)
        zone.zone_pgdat.vm_stat["nr_" + LRU_NAMES[lru]] += n
        zone.vm_stat["nr_zone_" + LRU_NAMES[lru]] += n

    def release_pages(self, pfns) -> None:
        """release_pages(): drop one reference each; free those that reach zero."""
        k = self.k
        mm = k.memmap
        for pfn in pfns:
            rc = int(mm.refcount[pfn]) - 1
            if rc < 0:
                from ..errors import KernelBug
                raise KernelBug(f"release_pages: pfn {pfn:#x} refcount underflow")
            mm.refcount[pfn] = rc
            if rc:
                continue
            if mm.test(pfn, PG_lru):
                self.del_page_from_lru_list(pfn, self.page_lru(pfn))
                mm.clear(pfn, PG_lru)
                mm.clear(pfn, PG_active)
            k.page_alloc.free_the_page(pfn, 0)

    # ------------------------------------------------------------ reclaim
    def zone_reclaimable_pages(self, zone) -> int:
        nr = zone.vm_stat["nr_zone_inactive_file"] + zone.vm_stat["nr_zone_active_file"]
        if self.k.total_swap_pages() > 0:
            nr += zone.vm_stat["nr_zone_inactive_anon"] + zone.vm_stat["nr_zone_active_anon"]
        return nr

    def shrink_node(self, pgdat, sc: dict) -> None:
        """Scan the LRUs of pgdat; the model has nothing reclaimable yet (no page cache, no swap)."""
        sc["nr_scanned"] += 0
        sc["nr_reclaimed"] += 0

    def allow_direct_reclaim(self, pgdat) -> bool:
        if pgdat.kswapd_failures >= MAX_RECLAIM_RETRIES:
            return True
        pfmemalloc_reserve = free = 0
        for z in pgdat.node_zones:
            if z.type > ZONE_NORMAL:
                break
            if not z.managed_pages or not self.zone_reclaimable_pages(z):
                continue
            pfmemalloc_reserve += z.min_wmark_pages()
            free += z.free_pages()
        if not pfmemalloc_reserve:
            return True
        ok = free > pfmemalloc_reserve // 2
        normal = self.k.zone_index[ZONE_NORMAL]
        if not ok and pgdat.kswapd_classzone_idx > normal:
            pgdat.kswapd_classzone_idx = normal
            self.wake_kswapd_thread(pgdat)
        return ok

    def throttle_direct_reclaim(self, gfp: int, ac) -> bool:
        task = self.k.current_task()
        if task is None or task.is_kthread:
            return False
        for z in ac.zones:
            if z.type > ZONE_NORMAL:
                continue
            if self.allow_direct_reclaim(z.zone_pgdat):
                return False
            self.k.vm_events["pgscan_direct_throttle"] += 1
            return True
        return False

    def try_to_free_pages(self, order: int, gfp: int, ac) -> int:
        self.throttle_direct_reclaim(gfp, ac)
        k = self.k
        reclaim_idx = k.gfp_zone(gfp)
        k.vm_events["allocstall_" + k.pgdats[0].node_zones[reclaim_idx].stat_name] += 1
        sc = {"nr_to_reclaim": SWAP_CLUSTER_MAX, "nr_scanned": 0, "nr_reclaimed": 0,
              "reclaim_idx": reclaim_idx, "priority": DEF_PRIORITY}
        seen = set()
        for prio in range(DEF_PRIORITY, -1, -1):
            sc["priority"] = prio
            for z in ac.zones:
                if z.zone_pgdat.node_id in seen:
                    continue
                seen.add(z.zone_pgdat.node_id)
                self.shrink_node(z.zone_pgdat, sc)
            seen.clear()
            if sc["nr_reclaimed"] >= sc["nr_to_reclaim"]:
                break
        if sc["nr_reclaimed"]:
            for z in ac.zones:
                z.zone_pgdat.kswapd_failures = 0
        return sc["nr_reclaimed"]

    # ------------------------------------------------------------ kswapd
    def pgdat_balanced(self, pgdat, order: int, classzone_idx: int) -> bool:
        pa = self.k.page_alloc
        managed = False
        for z in pgdat.node_zones[:classzone_idx + 1]:
            if not z.managed_pages:
                continue
            managed = True
            if pa.zone_watermark_ok_safe(z, order, z.high_wmark_pages(), classzone_idx, 0):
                return True
        return not managed

    def wakeup_kswapd(self, zone, gfp: int, order: int, classzone_idx: int) -> None:
        from .gfp import _GFP_DIRECT_RECLAIM
        if not zone.managed_pages:
            return
        pgdat = zone.zone_pgdat
        if pgdat.kswapd_classzone_idx == pgdat.max_nr_zones:
            pgdat.kswapd_classzone_idx = classzone_idx
        else:
            pgdat.kswapd_classzone_idx = max(pgdat.kswapd_classzone_idx, classzone_idx)
        pgdat.kswapd_order = max(pgdat.kswapd_order, order)
        if pgdat.kswapd_state == "try":  # running: its wait queue is empty
            return
        boosted = any(z.watermark_boost for z in pgdat.node_zones[:classzone_idx + 1])
        if pgdat.kswapd_failures >= MAX_RECLAIM_RETRIES or \
                (self.pgdat_balanced(pgdat, order, classzone_idx) and not boosted):
            if not gfp & _GFP_DIRECT_RECLAIM:
                self.k.wakeup_kcompactd(pgdat, order, classzone_idx)
            return
        self.wake_kswapd_thread(pgdat)

    def wake_kswapd_thread(self, pgdat) -> None:
        """wake_up_interruptible(&pgdat->kswapd_wait): ends a nap early or a full sleep."""
        if pgdat.kswapd_state == "nap":
            pgdat.nap_woken = True
        self.k.sched.wake(f"kswapd{pgdat.node_id}", force=True)

    def wake_all_kswapds(self, order: int, gfp: int, ac) -> None:
        seen = set()
        for z in ac.zones:
            if z.zone_pgdat.node_id not in seen:
                seen.add(z.zone_pgdat.node_id)
                self.wakeup_kswapd(z, gfp, order, ac.high_zoneidx)

    def balance_pgdat(self, pgdat, order: int, classzone_idx: int) -> int:
        """One kswapd reclaim pass (mm/vmscan.c balance_pgdat); returns sc.order."""
        k = self.k
        k.vm_events["pageoutrun"] += 1
        zones = pgdat.node_zones[:classzone_idx + 1]
        boosts = [z.watermark_boost for z in pgdat.node_zones]
        nr_boost_reclaim = sum(boosts[:classzone_idx + 1])
        boosted = nr_boost_reclaim > 0
        while True:  # restart:
            sc = {"order": order, "nr_to_reclaim": 0, "nr_scanned": 0, "nr_reclaimed": 0,
                  "priority": DEF_PRIORITY, "reclaim_idx": classzone_idx,
                  "may_writepage": not nr_boost_reclaim, "may_swap": not nr_boost_reclaim}
            restart = balanced_out = False
            while True:
                before = sc["nr_reclaimed"]
                balanced = self.pgdat_balanced(pgdat, sc["order"], classzone_idx)
                if not balanced and nr_boost_reclaim:
                    nr_boost_reclaim = 0
                    restart = True
                    break
                if not nr_boost_reclaim and balanced:
                    balanced_out = True
                    break
                raise_priority = True
                if nr_boost_reclaim and sc["priority"] == DEF_PRIORITY - 2:
                    raise_priority = False
                sc["nr_to_reclaim"] = sum(max(z.high_wmark_pages(), SWAP_CLUSTER_MAX)
                                          for z in zones if z.managed_pages)
                scanned0 = sc["nr_scanned"]
                self.shrink_node(pgdat, sc)
                if sc["order"] and sc["nr_reclaimed"] >= 2 << sc["order"]:
                    sc["order"] = 0
                if sc["nr_scanned"] - scanned0 >= sc["nr_to_reclaim"]:
                    raise_priority = False
                nr_reclaimed = sc["nr_reclaimed"] - before
                nr_boost_reclaim -= min(nr_boost_reclaim, nr_reclaimed)
                if nr_boost_reclaim and not nr_reclaimed:
                    break
                if raise_priority or not nr_reclaimed:
                    sc["priority"] -= 1
                if sc["priority"] < 1:
                    break
            if restart:
                continue
            break
        if not balanced_out and not sc["nr_reclaimed"]:
            pgdat.kswapd_failures += 1
        if boosted:
            for z, b in zip(pgdat.node_zones, boosts):
                z.watermark_boost -= min(z.watermark_boost, b)
            k.wakeup_kcompactd(pgdat, 9, classzone_idx)
        return sc["order"]

    def prepare_kswapd_sleep(self, pgdat, order: int, classzone_idx: int) -> bool:
        if pgdat.kswapd_failures >= MAX_RECLAIM_RETRIES:
            return True
        return self.pgdat_balanced(pgdat, order, classzone_idx)

    @staticmethod
    def kswapd_classzone_idx(pgdat, prev: int) -> int:
        return prev if pgdat.kswapd_classzone_idx == pgdat.max_nr_zones else pgdat.kswapd_classzone_idx

    def kswapd_step(self, pgdat, now_ms: int) -> int | None:
        """One scheduling of kswapd(): returns ms until it runs again, None to sleep.

        States: "try" (top of the loop, kswapd_try_to_sleep next), "nap" (the
        HZ/10 short sleep), "sleep" (full sleep until wakeup_kswapd)."""
        st = pgdat.kswapd_state
        if st == "nap":
            remaining = max(0, pgdat.nap_end - now_ms) if pgdat.nap_woken else 0
            pgdat.nap_woken = False
            if remaining:
                pgdat.kswapd_classzone_idx = self.kswapd_classzone_idx(pgdat, pgdat.ks_classzone)
                pgdat.kswapd_order = max(pgdat.kswapd_order, pgdat.ks_reclaim_order)
            if not remaining and self.prepare_kswapd_sleep(pgdat, pgdat.ks_reclaim_order,
                                                           pgdat.ks_classzone):
                pgdat.kswapd_state = "sleep"
                return None
            self.k.vm_events["kswapd_low_wmark_hit_quickly" if remaining
                             else "kswapd_high_wmark_hit_quickly"] += 1
            return self._kswapd_balance(pgdat)
        if st == "sleep":  # woken from the full sleep
            return self._kswapd_balance(pgdat)
        # "try": kswapd_try_to_sleep()
        if self.prepare_kswapd_sleep(pgdat, pgdat.ks_reclaim_order, pgdat.ks_classzone):
            self.k.wakeup_kcompactd(pgdat, pgdat.ks_alloc_order, pgdat.ks_classzone)
            pgdat.kswapd_state = "nap"
            pgdat.nap_end = now_ms + KSWAPD_NAP_MS
            return KSWAPD_NAP_MS
        self.k.vm_events["kswapd_high_wmark_hit_quickly"] += 1
        return self._kswapd_balance(pgdat)

    def _kswapd_balance(self, pgdat) -> int:
        alloc_order = pgdat.kswapd_order
        classzone = self.kswapd_classzone_idx(pgdat, pgdat.ks_classzone)
        pgdat.kswapd_order = 0
        pgdat.kswapd_classzone_idx = pgdat.max_nr_zones
        reclaim_order = self.balance_pgdat(pgdat, alloc_order, classzone)
        if reclaim_order < alloc_order:
            pgdat.ks_alloc_order, pgdat.ks_reclaim_order = alloc_order, reclaim_order
            pgdat.ks_classzone = classzone
        else:
            pgdat.ks_alloc_order = pgdat.ks_reclaim_order = pgdat.kswapd_order
            pgdat.ks_classzone = self.kswapd_classzone_idx(pgdat, classzone)
        pgdat.kswapd_state = "try"
        return 0
