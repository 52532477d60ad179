"""The /proc and /sys files: read and write dispatch, meminfo, sysctls, kpage*."""
from __future__ import annotations

import re

import numpy as np

from ..errors import EACCES, EINVAL, ENOENT, ESRCH
from ..mm import vmstat
from ..mm.memory_model import PAGES_PER_SECTION
from ..mm.page import PG_lru, PG_reserved
from . import node, slabinfo, sysfs, task_mmu

KPF_LOCKED, KPF_REFERENCED, KPF_UPTODATE, KPF_DIRTY, KPF_LRU, KPF_ACTIVE = 0, 2, 3, 4, 5, 6
KPF_SLAB, KPF_BUDDY, KPF_MMAP, KPF_ANON, KPF_SWAPCACHE, KPF_SWAPBACKED = 7, 10, 11, 12, 13, 14
KPF_NOPAGE, KPF_ZERO_PAGE, KPF_PGTABLE, KPF_RESERVED, KPF_MLOCKED, KPF_UNEVICTABLE = 20, 24, 26, 32, 33, 18
KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL = 15, 16


class Sysctl:
    """One /proc/sys/vm integer knob: proc_dointvec(_minmax) semantics."""

    def __init__(self, get, set_, lo=None, hi=None, unsigned=False):
        self.get, self.set, self.lo, self.hi, self.unsigned = get, set_, lo, hi, unsigned


def _parse_int(text: str) -> int:
    t = text.strip()
    if not re.fullmatch(r"[+-]?\d+", t):
        raise EINVAL(f"not an integer: {text!r}")
    return int(t)


class ProcFs:
    def __init__(self, k):
        self.k = k
        self.sysctls = self._sysctls()

    # ------------------------------------------------------------ dispatch
    def read(self, path: str, offset: int = 0, size: int | None = None):
        k = self.k
        path = path.rstrip("/")
        if path.startswith("/proc/sys/vm/"):
            name = path[len("/proc/sys/vm/"):]
            if name == "lowmem_reserve_ratio":
                text = "\t".join(str(v) for v in k.page_alloc.lowmem_reserve_ratio) + "\n"
            elif name in self.sysctls:
                text = f"{self.sysctls[name].get()}\n"
            else:
                raise ENOENT(path)
            return self._slice(text, offset, size)
        simple = {"/proc/meminfo": self.meminfo, "/proc/vmstat": lambda: vmstat.proc_vmstat(k),
                  "/proc/zoneinfo": lambda: vmstat.proc_zoneinfo(k),
                  "/proc/buddyinfo": lambda: vmstat.proc_buddyinfo(k),
                  "/proc/pagetypeinfo": lambda: self._pagetypeinfo(),
                  }
        if path in simple:
            return self._slice(simple[path](), offset, size)
        if path == "/proc/slabinfo":
            return self._slice(slabinfo.proc_slabinfo(k), offset, size)
        if path == "/proc/sys/kernel/tainted":
            return self._slice(f"{k.tainted}\n", offset, size)
        if path.startswith("/sys/kernel/slab"):
            return self._slice(slabinfo.read_sys_kernel_slab(k, path), offset, size)
        if path == "/sys/kernel/debug/page_owner":
            from ..mm import page_owner
            return page_owner.read_page_owner(k, offset, size)
        if path == "/proc/iomem":
            return self._slice(node.proc_iomem(k), offset, size)
        if path.startswith("/sys/devices/system/node"):
            return self._slice(node.read_node(k, path), offset, size)
        if path.startswith("/sys/devices/system/memory"):
            return self._slice(sysfs.read_sysfs(k, path), offset, size)
        if path in ("/proc/kpageflags", "/proc/kpagecount"):
            return self.kpage(path.endswith("flags"), offset, size)
        m = re.fullmatch(r"/proc/(\d+|self)/(maps|smaps|smaps_rollup|status|statm|stat|pagemap)", path)
        if m:
            task = self._task(m.group(1))
            what = m.group(2)
            if what == "pagemap":
                return task_mmu.pagemap_read(k, task, offset, size, True)
            fn = {"maps": task_mmu.proc_pid_maps, "smaps": task_mmu.proc_pid_smaps,
                  "smaps_rollup": task_mmu.proc_pid_smaps_rollup, "status": task_mmu.proc_pid_status,
                  "statm": task_mmu.proc_pid_statm, "stat": task_mmu.proc_pid_stat}[what]
            return self._slice(fn(k, task), offset, size)
        raise ENOENT(path)

    def _pagetypeinfo(self) -> str:
        """With page_owner on, the "Number of mixed blocks" table follows."""
        from ..mm import page_owner
        return page_owner.proc_pagetypeinfo(self.k)

    def _task(self, pid: str):
        k = self.k
        if pid == "self":
            return k.current_task()
        t = k.tasks.get(int(pid))
        if t is None:
            raise ESRCH(f"no process {pid}")
        return t

    @staticmethod
    def _slice(text: str, offset: int, size: int | None) -> str:
        return text[offset:] if size is None else text[offset:offset + size]

    def write(self, path: str, text) -> None:
        k = self.k
        if isinstance(text, bytes):
            text = text.decode()
        text = str(text)
        path = path.rstrip("/")
        if path.startswith("/proc/sys/vm/"):
            name = path[len("/proc/sys/vm/"):]
            if name == "lowmem_reserve_ratio":
                return self._write_lowmem_reserve_ratio(text)
            s = self.sysctls.get(name)
            if s is None:
                raise ENOENT(path)
            v = _parse_int(text)
            if s.unsigned and v < 0:
                raise EINVAL(f"{name}: negative value")
            if (s.lo is not None and v < s.lo) or (s.hi is not None and v > s.hi):
                raise EINVAL(f"{name}: {v} out of range")
            s.set(v)
            return None
        if path.startswith("/sys/kernel/slab/"):
            return slabinfo.write_sys_kernel_slab(k, path, text)
        if path.startswith("/sys/devices/system/memory/"):
            return sysfs.write_sysfs(k, path, text)
        m = re.fullmatch(r"/proc/(\d+|self)/clear_refs", path)
        if m:
            return sysfs.clear_refs_write(k, self._task(m.group(1)), text)
        if path in ("/proc/meminfo", "/proc/vmstat", "/proc/zoneinfo", "/proc/buddyinfo"):
            raise EACCES(f"{path} is read-only")
        raise ENOENT(path)

    def _write_lowmem_reserve_ratio(self, text: str) -> None:
        k = self.k
        parts = text.split()
        if not parts or not all(re.fullmatch(r"[+-]?\d+", p) for p in parts):
            raise EINVAL("lowmem_reserve_ratio: integers expected")
        vals = [int(p) for p in parts][:len(k.page_alloc.lowmem_reserve_ratio)]
        ratio = k.page_alloc.lowmem_reserve_ratio
        for i, v in enumerate(vals):
            ratio[i] = v if v >= 1 else 0
        k.page_alloc.setup_per_zone_lowmem_reserve()

    # ------------------------------------------------------------ sysctls
    def _sysctls(self) -> dict:
        k = self.k
        pa, oc = k.page_alloc, k.overcommit

        def set_min_free(v):
            pa.min_free_kbytes = v
            pa.user_min_free_kbytes = v
            pa.setup_per_zone_wmarks()

        def set_wsf(v):
            pa.watermark_scale_factor = v
            pa.setup_per_zone_wmarks()

        def set_ratio(v):
            oc.overcommit_ratio = v
            oc.overcommit_kbytes = 0

        def set_kbytes(v):
            oc.overcommit_kbytes = v
            oc.overcommit_ratio = 0

        def set_pcp_fraction(v):
            if v and v < 8:
                raise EINVAL("percpu_pagelist_fraction: 0 or >= 8")
            pa.percpu_pagelist_fraction = v
            for z in k.all_zones():
                pa.zone_pageset_init(z)

        def attr(obj, name):
            return lambda: getattr(obj, name), lambda v: setattr(obj, name, v)

        S = Sysctl
        return {
            "min_free_kbytes": S(lambda: pa.min_free_kbytes, set_min_free, 0),
            "watermark_scale_factor": S(lambda: pa.watermark_scale_factor, set_wsf, 1, 1000),
            "watermark_boost_factor": S(*attr(pa, "watermark_boost_factor"), 0),
            "zone_reclaim_mode": S(*attr(pa, "zone_reclaim_mode"), 0),
            "percpu_pagelist_fraction": S(lambda: pa.percpu_pagelist_fraction, set_pcp_fraction, 0),
            "swappiness": S(*attr(k.vmscan, "swappiness"), 0, 100),
            "overcommit_memory": S(*attr(oc, "overcommit_memory"), 0, 2),
            "overcommit_ratio": S(lambda: oc.overcommit_ratio, set_ratio),
            "overcommit_kbytes": S(lambda: oc.overcommit_kbytes, set_kbytes, unsigned=True),
            "admin_reserve_kbytes": S(*attr(oc, "admin_reserve_kbytes"), unsigned=True),
            "user_reserve_kbytes": S(*attr(oc, "user_reserve_kbytes"), unsigned=True),
            "max_map_count": S(*attr(k.mmap, "max_map_count"), 0),
            "mmap_min_addr": S(*attr(k.mmap, "mmap_min_addr"), unsigned=True),
            "dirty_ratio": S(lambda: k.sysctl_dirty_ratio,
                             lambda v: setattr(k, "sysctl_dirty_ratio", v), 0, 100),
            "dirty_background_ratio": S(lambda: k.sysctl_dirty_background_ratio,
                                        lambda v: setattr(k, "sysctl_dirty_background_ratio", v), 0, 100),
            "stat_interval": S(*attr(k, "stat_interval"), 0),
        }

    # ------------------------------------------------------------ meminfo
    def meminfo(self) -> str:
        k = self.k
        zones = k.all_zones()
        node = {item: sum(pg.vm_stat[item] for pg in k.pgdats) for item in k.pgdats[0].vm_stat}
        zsum = {item: sum(z.vm_stat[item] for z in zones) for item in zones[0].vm_stat}
        total = k.totalram_pages()
        free = zsum["nr_free_pages"]
        cached = max(0, node["nr_file_pages"])
        lines = []

        def kb(label: str, pages: int) -> None:
            lines.append(f"{label + ':':<16}{pages * 4:8d} kB\n")
        kb("MemTotal", total)
        kb("MemFree", free)
        kb("MemAvailable", self.si_mem_available())
        kb("Buffers", 0)
        kb("Cached", cached)
        kb("SwapCached", 0)
        kb("Active", node["nr_active_anon"] + node["nr_active_file"])
        kb("Inactive", node["nr_inactive_anon"] + node["nr_inactive_file"])
        kb("Active(anon)", node["nr_active_anon"])
        kb("Inactive(anon)", node["nr_inactive_anon"])
        kb("Active(file)", node["nr_active_file"])
        kb("Inactive(file)", node["nr_inactive_file"])
        kb("Unevictable", node["nr_unevictable"])
        kb("Mlocked", zsum["nr_mlock"])
        if k.highmem.enabled:  # CONFIG_HIGHMEM
            high = k.totalhigh_pages()
            freehigh = sum(z.vm_stat["nr_free_pages"] for z in zones if k.page_alloc.is_highmem(z))
            kb("HighTotal", high)
            kb("HighFree", freehigh)
            kb("LowTotal", total - high)
            kb("LowFree", free - freehigh)
        kb("SwapTotal", k.total_swap_pages())
        kb("SwapFree", k.total_swap_pages())
        kb("Dirty", node["nr_dirty"])
        kb("Writeback", node["nr_writeback"])
        kb("AnonPages", node["nr_anon_pages"])
        kb("Mapped", node["nr_mapped"])
        kb("Shmem", node["nr_shmem"])
        kb("KReclaimable", node["nr_slab_reclaimable"] + node["nr_kernel_misc_reclaimable"])
        kb("Slab", node["nr_slab_reclaimable"] + node["nr_slab_unreclaimable"])
        kb("SReclaimable", node["nr_slab_reclaimable"])
        kb("SUnreclaim", node["nr_slab_unreclaimable"])
        lines.append(f"{'KernelStack:':<16}{zsum['nr_kernel_stack']:8d} kB\n")
        kb("PageTables", zsum["nr_page_table_pages"])
        kb("NFS_Unstable", node["nr_unstable"])
        kb("Bounce", zsum["nr_bounce"])
        kb("WritebackTmp", node["nr_writeback_temp"])
        kb("CommitLimit", k.overcommit.vm_commit_limit())
        kb("Committed_AS", k.overcommit.vm_committed_as)
        h = k.highmem
        lines.append(f"{'VmallocTotal:':<16}{(h.vmalloc_end - h.vmalloc_start) >> 10 if h.enabled else 34359738367:8d} kB\n")
        kb("VmallocUsed", 0)
        kb("VmallocChunk", 0)
        kb("Percpu", 0)
        lines.append(f"HardwareCorrupted: {0:5d} kB\n")
        kb("AnonHugePages", node["nr_anon_transparent_hugepages"] * 512)
        kb("ShmemHugePages", node["nr_shmem_hugepages"] * 512)
        kb("ShmemPmdMapped", node["nr_shmem_pmdmapped"] * 512)
        kb("FileHugePages", node["nr_file_hugepages"] * 512)
        kb("FilePmdMapped", node["nr_file_pmdmapped"] * 512)
        lines.append(f"HugePages_Total:   {0:5d}\nHugePages_Free:    {0:5d}\n"
                     f"HugePages_Rsvd:    {0:5d}\nHugePages_Surp:    {0:5d}\n")
        huge = 4096 if k.config.arch == "i386" else 2048  # non-PAE huge pages are 4 MiB
        lines.append(f"Hugepagesize:   {huge:8d} kB\nHugetlb:        {0:8d} kB\n")
        d4k, d2m, d1g = self.direct_map()
        lines.append(f"DirectMap4k:    {d4k:8d} kB\nDirectMap{'4M' if huge == 4096 else '2M'}:    {d2m:8d} kB\n")
        if d1g:
            lines.append(f"DirectMap1G:    {d1g:8d} kB\n")
        return "".join(lines)

    def si_mem_available(self) -> int:
        k = self.k
        zones = k.all_zones()
        free = sum(z.vm_stat["nr_free_pages"] for z in zones)
        wmark_low = sum(z.low_wmark_pages() for z in zones)
        node = lambda item: sum(pg.vm_stat[item] for pg in k.pgdats)  # noqa: E731
        available = free - k.page_alloc.totalreserve_pages
        pagecache = node("nr_active_file") + node("nr_inactive_file")
        pagecache -= min(pagecache // 2, wmark_low)
        available += pagecache
        reclaimable = node("nr_slab_reclaimable") + node("nr_kernel_misc_reclaimable")
        available += reclaimable - min(reclaimable // 2, wmark_low)
        return max(available, 0)

    def direct_map(self) -> tuple[int, int, int]:
        """split_mem_range() over the mapped RAM: 4k head/tail, 2M, 1G (gbpages) (kB)."""
        k = self.k
        ranges = [(0, 0x100000)] + [(e.start, e.end) for e in k.layout.e820 if e.end > 0x100000]
        if k.highmem.enabled:  # i386 maps lowmem only, with 4M (PAE: 2M) pages, no 1G
            low = k.layout.max_low_pfn << 12
            big = (4 << 20) if k.config.arch == "i386" else (2 << 20)
            m4k = mbig = 0
            for s, e in ranges:
                s, e = s, min(e, low)
                if e <= s:
                    continue
                s2, e2 = min(e, (s + big - 1) & ~(big - 1)), e & ~(big - 1)
                if e2 <= s2:
                    m4k += e - s
                else:
                    m4k += (s2 - s) + (e - e2)
                    mbig += e2 - s2
            return m4k >> 10, mbig >> 10, 0
        merged = []
        for s, e in sorted(ranges):
            s = max(s, merged[-1][1]) if merged and s < merged[-1][1] else s
            if merged and s == merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
            elif e > s:
                merged.append((s, e))
        m4k = m2m = m1g = 0
        for s, e in merged:
            s2 = min(e, (s + (1 << 21) - 1) & ~((1 << 21) - 1))
            e2 = e & ~((1 << 21) - 1)
            if e2 <= s2:
                m4k += e - s
                continue
            m4k += (s2 - s) + (e - e2)
            s1 = min(e2, (s2 + (1 << 30) - 1) & ~((1 << 30) - 1))
            e1 = e2 & ~((1 << 30) - 1)
            if e1 > s1:
                m1g += e1 - s1
                m2m += (s1 - s2) + (e2 - e1)
            else:
                m2m += e2 - s2
        return m4k >> 10, m2m >> 10, m1g >> 10

    # ------------------------------------------------------------ kpageflags
    def kpage(self, flags: bool, offset: int, size: int | None) -> bytes:
        """/proc/kpageflags and /proc/kpagecount (fs/proc/page.c): 8 bytes per pfn."""
        k = self.k
        if offset % 8 or (size is not None and size % 8):
            raise EINVAL("kpage*: offset and size must be multiples of 8")
        max_pfn = k.memmap.nr
        if k.config.memory_model not in ("flatmem", "discontigmem"):  # round_up(max_pfn, section)
            max_pfn = max(max_pfn, (k.layout.max_pfn + PAGES_PER_SECTION - 1) & ~(PAGES_PER_SECTION - 1))
        first = offset // 8
        last = max_pfn if size is None else min(max_pfn, first + size // 8)
        if first >= last:
            return b""
        pfns = np.arange(first, last)
        if k.config.memory_model in ("flatmem", "discontigmem"):
            online = pfns < k.layout.max_pfn
        else:
            secs = np.minimum(pfns >> 15, len(k.section_flags) - 1)
            online = ((k.section_flags[secs] & 4) != 0) & (pfns < k.memmap.nr)
        out = np.zeros(len(pfns), np.uint64)
        idx = pfns[online]
        if flags:
            out[~online] = np.uint64(1 << KPF_NOPAGE)
            out[online] = self.stable_page_flags(idx)
        else:
            mc = k.memmap._mapcount1[idx].astype(np.int64)
            mc[mc < 0] = 0  # page_type pages (buddy, tables) read 0
            out[online] = mc.astype(np.uint64)
        return out.tobytes()

    def stable_page_flags(self, pfns: np.ndarray) -> np.ndarray:
        k = self.k
        mm = k.memmap
        f = mm.flags[pfns]
        mc = mm._mapcount1[pfns].astype(np.int64) - 1
        ptype = mc & 0xFFFFFFFF
        buddy = (ptype & (0xF0000000 | 0x80)) == 0xF0000000
        table = (ptype & (0xF0000000 | 0x400)) == 0xF0000000
        u = np.zeros(len(pfns), np.uint64)
        one = np.uint64(1)
        for bit, kpf in ((0, KPF_LOCKED), (1, KPF_REFERENCED), (2, KPF_UPTODATE), (3, KPF_DIRTY),
                         (PG_lru, KPF_LRU), (5, KPF_ACTIVE), (9, KPF_SLAB), (19, KPF_SWAPBACKED),
                         (20, KPF_UNEVICTABLE), (21, KPF_MLOCKED), (PG_reserved, KPF_RESERVED)):
            u |= ((f >> np.uint64(bit)) & one) << np.uint64(kpf)
        u |= table.astype(np.uint64) << np.uint64(KPF_PGTABLE)
        u |= ((mc >= 0) & ~table & ~buddy).astype(np.uint64) << np.uint64(KPF_MMAP)
        u |= (mm.mapping[pfns] & 1).astype(np.uint64) << np.uint64(KPF_ANON)
        u |= (pfns == k.zero_pfn).astype(np.uint64) << np.uint64(KPF_ZERO_PAGE)
        u |= ((f >> np.uint64(16)) & one) << np.uint64(KPF_COMPOUND_HEAD)  # PG_head
        heads = mm.compound_head[pfns]
        tail = heads != 0
        if tail.any():  # PageTail; a slab's tails report KPF_SLAB too
            u[tail] |= np.uint64(1 << KPF_COMPOUND_TAIL)
            slab = (mm.flags[heads[tail] - 1] >> np.uint64(9)) & one
            u[tail] |= slab << np.uint64(KPF_SLAB)
        u[buddy] = np.uint64(1 << KPF_BUDDY)
        return u


class ProcFile:
    """proc_mem_open(): mmgrab at open, mmget_not_zero per read, mmdrop at close."""

    def __init__(self, k, path: str):
        self.k = k
        self.path = path
        m = re.fullmatch(r"/proc/(\d+)/(maps|smaps|smaps_rollup|pagemap|status|statm|stat)", path)
        if m is None:
            raise ENOENT(path)
        self.pid = int(m.group(1))
        task = k.tasks.get(self.pid)
        if task is None:
            raise ENOENT(path)
        self.mm = task.mm if not task.is_kthread else None
        if self.mm is not None:
            k.mmgrab(self.mm, "open file")
            self.mm.open_files = getattr(self.mm, "open_files", 0) + 1
        self.closed = False

    def read(self, offset: int = 0, size: int | None = None):
        k = self.k
        if self.pid not in k.tasks:
            raise ESRCH(self.path)
        if self.mm is None or not k.mmget_not_zero(self.mm):
            return b"" if self.path.endswith("pagemap") else ""
        try:
            return k.read_file(self.path, offset, size)
        finally:
            k.mmput(self.mm)

    def close(self) -> None:
        if not self.closed and self.mm is not None:
            self.mm.open_files -= 1
            self.k.mmdrop(self.mm, "open file")
        self.closed = True
