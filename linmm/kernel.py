"""Kernel: boots a machine and owns every subsystem, the clock and the tasks."""
from __future__ import annotations

import numpy as np

from .config import MachineConfig
from .errors import EINVAL, Errno, KernelBug, Signal
from .mm import gfp as G
from .mm.fault import Fault
from .fork import ForkExit
from .mm.highmem_api import HighmemAPI
from .mm.usercopy import UserCopy
from .mm.madvise import Madvise
from .mm.memory import Memory
from .mm.memory_model import (PAGES_PER_SECTION, PFN_SECTION_SHIFT, SECTION_HAS_MEM_MAP,
                              SECTION_IS_EARLY, SECTION_IS_ONLINE, SECTION_MARKED_PRESENT, ZONE_DEVICE,
                              Page, build_layout)
from .mm.mlock import Mlock
from .mm.mm_types import MmStruct
from .mm.mmap import MmapOps
from .mm.mmu_notifier import MmuNotifiers
from .mm.mmzone import PgData
from .mm.mprotect import Mprotect
from .mm.mremap import Mremap
from .mm.oom_kill import OomKiller
from .mm.page import FrameStore, MemMap
from .mm.page_alloc import PageAllocator
from .mm.pgtable import PgTableOps
from .mm.rmap import Rmap
from .mm.shmem import Shmem
from .mm.util import Overcommit
from .mm.vmscan import VmScan
from .sched import Scheduler
from .task import Task

STACK_TOP = 0x7FFFFFFFF000      # TASK_SIZE_LOW (x86_64); i386: TASK_SIZE = PAGE_OFFSET
DEFAULT_BRK = 0x555555559000    # after a PIE binary at ELF_ET_DYN_BASE (i386: 0x56555000)


class AllocContext:
    __slots__ = ("zones", "preferred_zone", "classzone_idx", "high_zoneidx", "migratetype", "nid")


class Kernel(HighmemAPI, ForkExit, UserCopy):
    """A booted machine.  ``Kernel(MachineConfig(ram="1G"))``."""

    def __init__(self, config: MachineConfig | None = None, **kw):
        self.config = config if config is not None else MachineConfig(**kw)
        self.now_ms = 0
        self.stat_interval = 1
        self._log: list[str] = []
        self._once: set[str] = set()
        from .mm.memory_model import ARCH_ZONES
        from .mm.vmstat import vm_event_items
        self.vm_events = dict.fromkeys(vm_event_items(ARCH_ZONES[self.config.arch]), 0)
        self.tasks: dict[int, object] = {}
        self.mms: dict[int, MmStruct] = {}  # every mm_struct not yet __mmdrop'ed
        self.pending_mmdrops: list = []  # mmdrop_async work for a kworker
        self._next_pid = 1
        self.in_notifier_callback = 0
        self.current_tlb = None
        self._failslab = 0
        self._ac_cache: dict = {}
        self.layout = build_layout(self.config)
        if self.config.is_32bit:
            self.task_size = self.stack_top = 0xC0000000
            self.default_brk = 0x56559000
        else:
            self.task_size = self.stack_top = STACK_TOP
            self.default_brk = DEFAULT_BRK
        for line in self.layout.log:
            self.printk(line)
        nr = (self.layout.max_pfn + PAGES_PER_SECTION - 1) & ~(PAGES_PER_SECTION - 1)
        self.memmap = MemMap(nr, self.config.memory_model == "sparsemem")
        self.frames = FrameStore(self.memmap)
        self.pgdats = [PgData(n, self.config.cpus, self.config.arch) for n in range(self.config.nr_nodes)]
        self.zone_index = {z.type: z.idx for z in self.pgdats[0].node_zones}  # zone type -> zone_idx
        for n, cpus in enumerate(self.layout.node_cpus):
            self.pgdats[n].cpus = cpus
        self.page_alloc = PageAllocator(self)
        self.vmscan = VmScan(self)
        self.overcommit = Overcommit(self)
        self.pgt = PgTableOps(self)
        self.rmap = Rmap(self)
        self.memory = Memory(self)
        self.mmap = MmapOps(self)
        self.mprotect = Mprotect(self)
        self.mremap = Mremap(self)
        self.madvise = Madvise(self)
        self.shmem = Shmem(self)
        self.fault = Fault(self)
        self.oom = OomKiller(self)
        self.mlock = Mlock(self)
        self.mmu_notifiers = MmuNotifiers(self)
        self.sched = Scheduler(self)
        from .fs.procfs import ProcFs
        self.procfs = ProcFs(self)
        from .mm.highmem import Highmem
        from .mm.memremap import MemRemap
        from .mm.sparse import Sparse
        self.highmem = Highmem(self)
        from .mm.hmm import Hmm
        self.hmm = Hmm(self)
        self.sparse = Sparse(self)
        self.memremap = MemRemap(self)
        self.tainted = 0
        self.failslab_filter = False
        from .boot import boot
        boot(self)
        from .mm.slub import Slub
        self.slub = Slub(self)
        from .mm.migrate import Migrate
        self.migrate = Migrate(self)
        from .mm.memory_hotplug import MemoryHotplug
        self.memory_hotplug = MemoryHotplug(self)

        from .mm import page_frag, page_owner
        page_owner.init(self)  # page_ext + page_owner=on (late initcall)
        page_frag.init(self)

    # ------------------------------------------------------------ log and time
    def printk(self, line: str) -> None:
        self._log.append(line)

    def printk_once(self, line: str) -> None:
        if line not in self._once:
            self._once.add(line)
            self.printk(line)

    def dmesg(self) -> str:
        return "".join(line + "\n" for line in self._log)

    def run(self, ms: int) -> None:
        """Advance simulated time; kernel threads run when due."""
        if ms < 0:
            raise EINVAL("run: negative time")
        for cpu in self.sched.cpus:
            if not cpu.curr.is_kthread:
                self.sched.switch_to_idle(cpu)
        end = self.now_ms + ms
        steps = 0
        while True:
            due = [t for t in self.sched.kthreads.values() if t.due is not None and t.due <= end]
            if not due:
                break
            t = min(due, key=lambda x: (x.due, x.pid))
            self.now_ms = max(self.now_ms, t.due)
            cpu = self.sched.cpus[t.cpu]
            self.sched.context_switch(cpu, t)
            nxt = t.fn(self.now_ms) if t.fn else None
            t.due = None if nxt is None else self.now_ms + nxt
            steps += 1
            if steps > 100000:
                raise KernelBug(f"k.run: {t.comm} keeps running without sleeping")
            self.sched.switch_to_idle(cpu)
        self.now_ms = end
        self.mmu_notifiers.synchronize()
        while self.pending_mmdrops:  # the kworker running mmdrop_async_fn
            self.mmdrop(self.pending_mmdrops.pop(0), "oom_mm")

    # ------------------------------------------------------------ contexts
    def alloc_pid(self) -> int:
        pid = self._next_pid
        self._next_pid += 1
        return pid

    def current_cpu(self) -> int:
        return self._cur_cpu

    def current_ctx(self):
        return self.sched.cpus[self._cur_cpu].curr

    def current_task(self):
        return self.current_ctx()

    def current_comm(self) -> str:
        return self.current_ctx().comm

    def numa_node_id(self) -> int:
        cpu = self._cur_cpu
        for pg in self.pgdats:
            if cpu in pg.cpus:
                return pg.node_id
        return 0

    def might_sleep(self, file: str, line: int) -> None:
        """___might_sleep(): a spinlock held or preemption off (kmap_atomic) is a BUG;
        with MachineConfig(atomic_sleep_check="log") an atomic section only logs it."""
        ctx = self.current_ctx()
        if ctx.held_locks or ctx.preempt_count:
            msg = f"BUG: sleeping function called from invalid context at {file}:{line}"
            if ctx.held_locks or self.config.atomic_sleep_check == "strict":
                raise KernelBug(msg)
            self.printk(msg)
            self.printk(f"in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: {ctx.pid}, "
                        f"name: {ctx.comm}")
            self.printk(f"preempt_count: {ctx.preempt_count:x}, expected: 0")

    def after_syscall(self, task) -> None:
        """Return to user space: no lock may be held; a pending SIGKILL kills the task."""
        if task.held_locks:
            names = ", ".join(lk.name for lk in task.held_locks)
            raise KernelBug(f"BUG: lock held when returning to user space: {names}")
        if getattr(task, "pending_kill", False) and task.state == "R":
            task.pending_kill = False
            self.kill_task(task, 9)
            raise Signal(9, 0, None, task.pid)

    def user_tasks(self) -> list:
        return [t for t in self.tasks.values() if isinstance(t, Task)]

    # ------------------------------------------------------------ zones
    def all_zones(self) -> list:
        return [z for pg in self.pgdats for z in pg.node_zones]

    def page_zone_of(self, pfn: int):
        mm = self.memmap
        f = int(mm.flags[pfn])
        return self.pgdats[(f >> mm.nodes_pgoff) & 63].node_zones[(f >> mm.zones_pgoff) & 7]

    def node_of_pfn(self, pfn: int) -> PgData:
        return self.pgdats[self.memmap.page_to_nid(pfn)]

    def count_node_pages(self, pfns: np.ndarray, item: str, delta: int) -> None:
        if len(self.pgdats) == 1:
            self.pgdats[0].vm_stat[item] += delta * len(pfns)
            return
        nids = (self.memmap.flags[pfns] >> np.uint64(self.memmap.nodes_pgoff)) & np.uint64(63)
        for nid, cnt in zip(*np.unique(nids, return_counts=True)):
            self.pgdats[int(nid)].vm_stat[item] += delta * int(cnt)

    def zone_name(self, idx: int) -> str:
        return self.pgdats[0].node_zones[idx].name

    def gfp_zone(self, gfp: int) -> int:
        """gfp_zone(): the highest zone index the request may use."""
        return self.zone_index[G.gfp_zone(gfp, self.pgdats[0].zone_types)]

    def zonelist(self, nid: int) -> list:
        """build_zonelists(): nodes by distance, each node's managed zones high to low."""
        order = sorted(range(len(self.pgdats)), key=lambda n: (self.node_distance(nid, n), n))
        return [z for n in order for z in reversed(self.pgdats[n].node_zones) if z.managed_pages]

    def node_distance(self, a: int, b: int) -> int:
        return 10 if a == b else 20

    def alloc_context(self, gfp: int, nid: int | None):
        nid = self.numa_node_id() if nid is None else nid
        thisnode = bool(gfp & G._GFP_THISNODE)
        key = (self.gfp_zone(gfp), G.gfp_migratetype(gfp), nid, thisnode)
        ac = self._ac_cache.get(key)
        if ac is None:
            ac = AllocContext()
            ac.high_zoneidx = key[0]
            ac.migratetype = key[1]
            ac.nid = nid
            # __GFP_THISNODE: the node's ZONELIST_NOFALLBACK
            ac.zones = [z for z in self.zonelist(nid) if z.idx <= key[0] and (not thisnode or z.node == nid)]
            ac.preferred_zone = ac.zones[0] if ac.zones else None
            ac.classzone_idx = ac.preferred_zone.idx if ac.zones else 0
            self._ac_cache[key] = ac
        return ac

    def totalram_pages(self) -> int:
        return sum(z.managed_pages for z in self.all_zones())

    def totalhigh_pages(self) -> int:
        return sum(z.managed_pages for z in self.all_zones() if self.page_alloc.is_highmem(z))

    def global_free_pages(self) -> int:
        return sum(z.vm_stat["nr_free_pages"] for z in self.all_zones())

    def init_per_zone_wmark_min(self) -> None:
        self.page_alloc.init_per_zone_wmark_min()

    def setup_per_zone_wmarks(self) -> None:
        self.page_alloc.setup_per_zone_wmarks()

    def setup_per_zone_lowmem_reserve(self) -> None:
        self.page_alloc.setup_per_zone_lowmem_reserve()

    def vm_commit_limit(self) -> int:
        return self.overcommit.vm_commit_limit()

    def vm_enough_memory(self, mm, pages: int, task=None) -> None:
        """security_vm_enough_memory_mm(): charge or raise ENOMEM."""
        self.overcommit.security_vm_enough_memory_mm(mm, pages, task)

    def total_swap_pages(self) -> int:
        return 0

    def hugetlb_total_pages(self) -> int:
        return 0

    # ------------------------------------------------------------ kswapd & co
    def wakeup_kswapd(self, zone, gfp: int, order: int, classzone_idx: int) -> None:
        self.vmscan.wakeup_kswapd(zone, gfp, order, classzone_idx)

    def wake_all_kswapds(self, order: int, gfp: int, ac) -> None:
        self.vmscan.wake_all_kswapds(order, gfp, ac)

    def wakeup_kcompactd(self, pgdat, order: int, classzone_idx: int) -> None:
        """No compaction in the model yet: kcompactd never finds a zone to compact."""
        return None

    def zone_stat_threshold(self, zone) -> int:
        """The per-cpu stat threshold: the pressure threshold while kswapd is awake."""
        if zone.zone_pgdat.kswapd_state != "sleep":
            return max(1, min(125, (zone._watermark[1] - zone._watermark[0]) // self.config.cpus))
        return zone.stat_threshold

    def thp_vma_eligible(self, vma) -> bool:
        """transparent_hugepage_enabled(vma) for THPeligible (no THP faults yet)."""
        from .mm.mm_types import VM_HUGEPAGE, VM_NOHUGEPAGE
        if not vma.is_anonymous() or vma.vm_flags & VM_NOHUGEPAGE:
            return False
        if ((vma.vm_end & ~((1 << 21) - 1)) - (1 << 21)) < ((vma.vm_start + (1 << 21) - 1) & ~((1 << 21) - 1)):
            return False
        mode = self.config.thp
        return mode == "always" or (mode == "madvise" and bool(vma.vm_flags & VM_HUGEPAGE))

    def failslab_next(self) -> bool:
        if self._failslab:
            self._failslab -= 1
            return True
        return False

    # ------------------------------------------------------------ page API
    def pfn_valid(self, pfn: int) -> bool:
        """FLATMEM: below max_mapnr; DISCONTIGMEM: inside a node's span; SPARSEMEM:
        the section has a memmap (holes in early sections are valid)."""
        if pfn < 0:
            return False
        model = self.config.memory_model
        if model == "flatmem":
            return pfn < self.layout.max_pfn
        if model == "discontigmem":
            return any(pg.node_start_pfn <= pfn < pg.node_end_pfn for pg in self.pgdats)
        nr = pfn >> PFN_SECTION_SHIFT
        if nr >= len(self.section_flags):
            return False
        f = self.section_flags[nr]
        if not f & SECTION_HAS_MEM_MAP:
            return False
        return bool(f & SECTION_IS_EARLY) or self.sparse.pfn_section_valid(pfn)

    def pfn_to_online_page(self, pfn: int) -> Page | None:
        if self.config.memory_model in ("flatmem", "discontigmem"):
            return Page(pfn, self.memmap) if self.pfn_valid(pfn) else None
        nr = pfn >> PFN_SECTION_SHIFT
        if 0 <= nr < len(self.section_flags) and self.section_flags[nr] & SECTION_IS_ONLINE:
            return self.pfn_to_page(pfn)
        return None

    def pfn_to_page(self, pfn: int) -> Page:
        if not self.pfn_valid(pfn):
            raise KernelBug(f"pfn_to_page: pfn {pfn:#x} is not valid")
        if self.memremap.pgmaps:
            pg = self.memremap.lookup(pfn)
            if pg is not None and pg.memmap is not None:
                return Page(pfn, pg.memmap)
        return Page(pfn, self.memmap)

    @staticmethod
    def page_to_pfn(page: Page) -> int:
        return page.pfn

    def page_zone(self, page: Page):
        mm = page._mm
        return self.pgdats[mm.page_to_nid(page.pfn)].node_zones[mm.page_zonenum(page.pfn)]

    def page_zonenum(self, page: Page) -> int:
        return page._mm.page_zonenum(page.pfn)

    def page_to_nid(self, page: Page) -> int:
        return page._mm.page_to_nid(page.pfn)

    def is_zone_device_page(self, page: Page) -> bool:
        return page._mm.page_zonenum(page.pfn) == self.zone_index.get(ZONE_DEVICE)

    def pfn_to_nid(self, pfn: int) -> int:
        return self.memmap.page_to_nid(pfn)

    def page_to_section(self, page: Page) -> int:
        return self.memmap.page_to_section(page.pfn)

    @staticmethod
    def pfn_to_section_nr(pfn: int) -> int:
        return pfn >> PFN_SECTION_SHIFT

    @staticmethod
    def section_nr_to_pfn(nr: int) -> int:
        return nr << PFN_SECTION_SHIFT

    def __nr_to_section(self, nr: int) -> int | None:
        """The section's flags (section_mem_map bits), None past NR_MEM_SECTIONS."""
        if not 0 <= nr < len(self.section_flags):
            return None
        return int(self.section_flags[nr])

    def pfn_in_present_section(self, pfn: int) -> bool:
        f = self.__nr_to_section(pfn >> PFN_SECTION_SHIFT)
        return bool(f and f & SECTION_MARKED_PRESENT)

    @staticmethod
    def zone_spans_pfn(zone, pfn: int) -> bool:
        return zone.zone_spans_pfn(pfn)

    def alloc_pages(self, gfp: int, order: int = 0, nid: int | None = None) -> Page | None:
        """__alloc_pages_nodemask(); None on failure (the kernel's NULL)."""
        pfn = self.page_alloc.alloc_pages_nodemask(gfp, order, nid)
        return None if pfn is None else Page(pfn, self.memmap)

    def free_pages(self, page: Page, order: int = 0) -> None:
        """__free_pages(page, order)."""
        self.page_alloc.free_pages(page.pfn, order)

    def alloc_pages_bulk(self, gfp: int, n: int) -> np.ndarray:
        return self.page_alloc.alloc_pages_bulk(gfp, n)

    def get_page(self, pfn: int) -> None:
        pg = self.memremap.lookup(pfn) if self.memremap.pgmaps else None
        if pg is not None and pg.memmap is not None:
            return self.memremap.get_page(pg, pfn)
        self.memmap.refcount[pfn] += 1

    def put_page(self, pfn: int) -> None:
        """put_page(): drop a reference; an LRU page reaching 0 leaves the LRU and is freed;
        a ZONE_DEVICE page goes back to its driver (put_devmap_managed_page)."""
        pg = self.memremap.lookup(pfn) if self.memremap.pgmaps else None
        if pg is not None and pg.memmap is not None:
            return self.memremap.put_page(pg, pfn)
        self.vmscan.release_pages((pfn,))

    # ------------------------------------------------------------ slab (mm/slub.c)
    def kmem_cache_create(self, *a, **kw):
        return self.slub.kmem_cache_create(*a, **kw)

    def kmem_cache_create_usercopy(self, *a, **kw):
        return self.slub.kmem_cache_create_usercopy(*a, **kw)

    def kmem_cache_alloc(self, cache, gfp: int):
        return self.slub.kmem_cache_alloc(cache, gfp)

    def kmem_cache_alloc_node(self, cache, gfp: int, node: int):
        return self.slub.kmem_cache_alloc_node(cache, gfp, node)

    def kmem_cache_zalloc(self, cache, gfp: int):
        return self.slub.kmem_cache_zalloc(cache, gfp)

    def kmem_cache_free(self, cache, addr: int) -> None:
        self.slub.kmem_cache_free(cache, addr)

    def kmem_cache_destroy(self, cache) -> None:
        self.slub.kmem_cache_destroy(cache)

    def kmem_cache_shrink(self, cache):
        return self.slub.kmem_cache_shrink(cache)

    def kmalloc(self, size: int, gfp: int):
        return self.slub.kmalloc(size, gfp)

    def kmalloc_node(self, size: int, gfp: int, node: int):
        return self.slub.kmalloc_node(size, gfp, node)

    def kzalloc(self, size: int, gfp: int):
        return self.slub.kzalloc(size, gfp)

    def kfree(self, addr: int) -> None:
        self.slub.kfree(addr)

    def ksize(self, addr: int) -> int:
        return self.slub.ksize(addr)

    # ------------------------------------------------------------ page_frag, page_owner, reporting
    def page_frag_alloc(self, nc, fragsz: int, gfp: int):
        from .mm import page_frag
        return page_frag.page_frag_alloc(self, nc, fragsz, gfp)

    def page_frag_free(self, addr: int) -> None:
        from .mm import page_frag
        page_frag.page_frag_free(self, addr)

    def netdev_alloc_frag(self, fragsz: int, **kw):
        from .mm import page_frag
        return page_frag.netdev_alloc_frag(self, fragsz, **kw)

    def napi_alloc_frag(self, fragsz: int, **kw):
        from .mm import page_frag
        return page_frag.napi_alloc_frag(self, fragsz, **kw)

    def page_reporting_register(self, prdev) -> None:
        """The reporting work (and its scatterlist slab) exists once a device registers."""
        from .mm import page_reporting
        page_reporting.init(self)
        page_reporting.page_reporting_register(self, prdev)

    def page_reporting_unregister(self, prdev) -> None:
        from .mm import page_reporting
        page_reporting.page_reporting_unregister(self, prdev)

    # ------------------------------------------------------------ SPLIT_RSS_COUNTING
    def add_mm_counter_fast(self, mm, member: int, val: int, faults: int = 0) -> None:
        """add_mm_counter_fast(); with split_rss_counting a task's faults on its own
        mm go to per-task counters, folded every 64 events (check_sync_rss_stat).
        `faults` > 0: this is the counter update of that many faults in a row, each
        preceded by its check_sync_rss_stat() (the caller counted none of them)."""
        task = self.current_task()
        split = self.config.split_rss_counting and isinstance(task, Task) and task.mm is mm
        if not split:
            mm.rss_stat[member] += val
            return
        if not faults:
            task.rss_private[member] += val
            return
        per = val // faults
        for _ in range(faults):
            self.check_sync_rss_stat()
            task.rss_private[member] += per

    def check_sync_rss_stat(self) -> None:
        task = self.current_task()
        if not self.config.split_rss_counting or not isinstance(task, Task) or task.mm is None:
            return
        old = task.rss_events
        task.rss_events = old + 1
        if old > 64:
            self.sync_mm_rss(task.mm)

    def sync_mm_rss(self, mm) -> None:
        task = self.current_task()
        if not isinstance(task, Task) or task.mm is not mm:
            return
        for i, v in enumerate(task.rss_private):
            if v:
                mm.rss_stat[i] += v
                task.rss_private[i] = 0
        task.rss_events = 0

    # ------------------------------------------------------------ mlock glue
    def mlock_future_check(self, task, mm, flags: int, length: int) -> None:
        self.mlock.mlock_future_check(task, mm, flags, length)

    def mlock_new_page(self, pfn: int) -> None:
        self.mlock.mlock_new_page(pfn)

    def munlock_vma_page(self, pfn: int) -> None:
        self.mlock.munlock_vma_page(pfn)

    def munlock_vma_pages_all(self, vma) -> None:
        self.mlock.munlock_vma_pages_all(vma)

    # ------------------------------------------------------------ TLB
    def flush_tlb_mm_range(self, mm, start: int, end: int, freed_tables: bool) -> None:
        """A shootdown: lazy CPUs are skipped unless page tables were freed."""
        for cpu in self.sched.cpus:
            if cpu.loaded_mm is mm and cpu.is_lazy and freed_tables:
                self.sched.leave_mm(cpu)

    def tlb_free_table(self, t) -> None:
        if self.current_tlb is not None:
            self.current_tlb.remove_table(t)
        else:
            self.pgt.free_table(t)

    # ------------------------------------------------------------ population
    def populate_vma_page_range(self, vma, start: int, end: int) -> None:
        self.mlock.populate_vma_page_range(self.current_task(), vma, start, end)

    def mm_populate(self, task, start: int, length: int) -> None:
        self.mlock.mm_populate(task, start, length)

    # ------------------------------------------------------------ memory hotplug, ZONE_DEVICE
    def add_memory(self, nid: int, start: int, size: int) -> None:
        self.memory_hotplug.add_memory(nid, start, size)

    def remove_memory(self, nid: int, start: int, size: int) -> None:
        self.memory_hotplug.remove_memory(nid, start, size)

    def memremap_pages(self, pgmap, nid: int = -1) -> int:
        """ZONE_DEVICE struct pages for pgmap.res: __va(res.start), or -errno (the kernel's
        ERR_PTR) with nothing changed."""
        try:
            return self.memremap.memremap_pages(pgmap, nid)
        except Errno as e:
            return -e.errno

    def memunmap_pages(self, pgmap) -> None:
        self.memremap.memunmap_pages(pgmap)

    def hmm_range_fault(self, rng) -> int:
        """Mirror [rng.start, rng.end) of rng.notifier.mm into rng.hmm_pfns (hmm.md op 1)."""
        return self.hmm.hmm_range_fault(rng)

    def get_dev_pagemap(self, pfn: int, pgmap=None):
        return self.memremap.get_dev_pagemap(pfn, pgmap)

    def put_dev_pagemap(self, pgmap) -> None:
        self.memremap.put_dev_pagemap(pgmap)

    def request_free_mem_region(self, *args):
        """request_free_mem_region([base,] size, name): a free section-aligned range for
        device private memory, claimed under base (default: k.iomem_resource); the
        Resource, or -ERANGE when none is free."""
        from .resource import request_free_mem_region
        base, (size, name) = (args[0], args[1:]) if len(args) == 3 else (self.iomem_resource, args)
        try:
            return request_free_mem_region(base, size, name, self.config.max_physmem_bits)
        except Errno as e:
            return -e.errno

    def release_mem_region(self, start: int, n: int) -> None:
        from .resource import release_mem_region
        release_mem_region(self.iomem_resource, start, n)

    # ------------------------------------------------------------ kernel threads and use_mm
    def kthread_run(self, fn, name: str, cpu: int = 0, may_sleep: bool = False):
        """A kernel thread that runs fn(k) once at the next k.run(), then sleeps.
        may_sleep: fn may block on a wait queue (e.g. kmap with every pkmap slot busy):
        the thread then sits in state "D" until woken, and resumes at a later k.run()."""
        from .sched import Lockstep
        t = self.sched.kthread_create(name, None, cpu)
        if may_sleep:
            t.lockstep = Lockstep(lambda: fn(self))

            def step(now, t=t):
                t.state = "R"
                if t.lockstep.run():
                    t.state = "S"  # finished: sleeps for good
                    return None
                t.state = "D"
                return None
            t.fn = step
        else:
            t.fn = lambda now: fn(self)
        t.due = self.now_ms
        return t

    def use_mm(self, mm) -> None:
        """use_mm() (kthread_use_mm in 5.8): the calling kernel thread adopts mm.
        The caller must already hold an mm_users reference (mmget)."""
        ctx = self.current_ctx()
        if not ctx.is_kthread:
            raise KernelBug(f"use_mm called by user task {ctx.comm}/{ctx.pid}")
        old = ctx.active_mm
        if old is not mm:
            self.mmgrab(mm, "lazy")
            ctx.active_mm = mm
        ctx.mm = mm
        self.sched.switch_mm_irqs_off(self.sched.cpus[ctx.cpu], old, mm)
        if old is not mm and old is not None:
            self.mmdrop(old, "lazy")

    kthread_use_mm = use_mm

    def unuse_mm(self, mm) -> None:
        ctx = self.current_ctx()
        if not ctx.is_kthread:
            raise KernelBug(f"unuse_mm called by user task {ctx.comm}/{ctx.pid}")
        self.sync_mm_rss(mm)
        ctx.mm = None
        self.sched.enter_lazy_tlb(self.sched.cpus[ctx.cpu])

    kthread_unuse_mm = unuse_mm

    def mm_refs(self, mm=None) -> list[dict]:
        """Per live mm: owner pid, mm_users, mm_count and who holds them."""
        out = []
        ctxs = list(self.tasks.values()) + [c.idle for c in self.sched.cpus]
        for m in ([mm] if mm is not None else list(self.mms.values())):
            users = [f"{c.comm}/{c.pid}" for c in ctxs if c.mm is m]
            count = (["users"] if m.mm_users else [])
            count += [f"{c.comm}/{c.pid} lazy" for c in ctxs if c.mm is None and c.active_mm is m]
            count += [f"cpu{c.id} prev_mm" for c in self.sched.cpus if c.prev_mm is m]
            subs = m.notifier_subscriptions
            if subs is not None:
                count += ["mmu_notifier"] * (subs.grabs + len(subs.itree))
            count += ["open file"] * getattr(m, "open_files", 0)
            out.append({"mm": m.id, "owner": m.owner_pid, "users": m.mm_users, "count": m.mm_count,
                        "user_holders": users, "count_holders": count})
        return out

    def open(self, path: str):
        """An open /proc/<pid>/{maps,smaps,...} file: it holds mm_count, not mm_users."""
        from .fs.procfs import ProcFile
        return ProcFile(self, path)

    # ------------------------------------------------------------ /proc and /sys
    def read_file(self, path: str, offset: int = 0, size: int | None = None):
        return self.procfs.read(path, offset, size)

    def write_file(self, path: str, text) -> None:
        self.procfs.write(path, text)

    def listdir(self, path: str) -> list[str]:
        """The entries of a /proc or /sys directory the model has."""
        from .fs.sysfs import listdir
        return listdir(self, path)

    # ------------------------------------------------------------ mmu notifier API
    def mmu_notifier_register(self, mn, mm) -> int:
        return self.mmu_notifiers.register_locked(mn, mm)

    def mmu_notifier_register_locked(self, mn, mm) -> int:
        return self.mmu_notifiers.register_locked(mn, mm)

    def mmu_notifier_unregister(self, mn, mm) -> None:
        self.mmu_notifiers.unregister(mn, mm)

    def mmu_notifier_get(self, ops, mm):
        return self.mmu_notifiers.get_locked(ops, mm)

    def mmu_notifier_put(self, mn) -> None:
        self.mmu_notifiers.put(mn)

    def mmu_notifier_synchronize(self) -> None:
        self.mmu_notifiers.synchronize()

    def mmu_interval_notifier_insert(self, sub, mm, start: int, length: int, ops) -> int:
        return self.mmu_notifiers.interval_insert_locked(sub, mm, start, length, ops)

    mmu_interval_notifier_insert_locked = mmu_interval_notifier_insert

    def mmu_interval_notifier_remove(self, sub) -> None:
        self.mmu_notifiers.interval_remove(sub)

    def mmu_interval_read_begin(self, sub) -> int:
        return self.mmu_notifiers.read_begin(sub)

    @staticmethod
    def mmu_interval_read_retry(sub, seq: int) -> bool:
        return sub.invalidate_seq != seq

    mmu_interval_check_retry = mmu_interval_read_retry

    def mmu_notifier_invalidate_range_start(self, rng) -> int:
        return self.mmu_notifiers.invalidate_range_start(rng)

    def mmu_notifier_invalidate_range_start_nonblock(self, rng) -> int:
        return self.mmu_notifiers.invalidate_range_start(rng, blockable=False)

    def mmu_notifier_invalidate_range_end(self, rng) -> None:
        self.mmu_notifiers.invalidate_range_end(rng)

    # ------------------------------------------------------------ checks
    def check(self) -> None:
        """Verify every invariant; raise KernelBug naming the first broken one."""
        from .mm.debug import check_kernel
        check_kernel(self)


setattr(Kernel, "__free_pages", Kernel.free_pages)
setattr(Kernel, "__nr_to_section", Kernel._Kernel__nr_to_section)
