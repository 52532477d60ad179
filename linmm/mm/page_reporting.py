"""Free page reporting (v5.7 mm/page_reporting.c, include/linux/page_reporting.h).

One registered device (a virtio balloon, see linmm.drivers.balloon) learns in
batches of up to 32 scatterlist entries which free blocks of order >=
pageblock_order (9) are unused.  A pass runs as delayed work 2 s after it was
requested (registration, or a free whose merged block has order >= 9), walks
every zone's order-9 and order-10 free lists, isolates unreported blocks,
hands them to ``prdev.report()``, puts them back and marks them PG_reported.

The pass runs on the simulated clock: a kernel thread ("page_reporting_wq")
whose function is the delayed work; ``k.run(ms)`` runs it when due.

Blocks leave and re-enter the buddy lists through the allocator's
``isolate_free_page`` / ``putback_isolated_page`` (the kernel's
__isolate_free_page / __putback_isolated_page, which does not re-report).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import EBUSY, KernelBug
from ..lib.state import kernel_state
from .gfp import (
    GFP_KERNEL,
    MIGRATE_ISOLATE,
    MIGRATE_TYPES,
    MIGRATETYPE_NAMES,
)
from .memory_model import MAX_ORDER, Page, pageblock_order
from .page import PG_reported

PAGE_REPORTING_IDLE, PAGE_REPORTING_REQUESTED, PAGE_REPORTING_ACTIVE = 0, 1, 2
STATE_NAMES = ("IDLE", "REQUESTED", "ACTIVE")
PAGE_REPORTING_MIN_ORDER = pageblock_order  # x86_64; the machine's pageblock_order in general
PAGE_REPORTING_CAPACITY = 32
PAGE_REPORTING_DELAY = 2000  # ms (2 * HZ)
ALLOC_CMA = 0x80
WORKER = "page_reporting_wq"
SCATTERLIST_SIZE = 32  # sizeof(struct scatterlist) on x86_64


@dataclass
class ScatterEntry:
    """One scatterlist entry: sg_page() and sg->length (end marks the last entry)."""

    page: Page
    length: int
    end: bool = False

    @property
    def pfn(self) -> int:
        return self.page.pfn

    @property
    def order(self) -> int:
        return get_order(self.length)


def get_order(length: int) -> int:
    return max(0, ((length - 1) >> 12).bit_length())


class PageReportingDevInfo:
    """struct page_reporting_dev_info: report(prdev, sgl, nents) -> 0 or -errno."""

    def __init__(self, report: Callable[[PageReportingDevInfo, list, int], int], name: str = "prdev"):
        self.report = report
        self.name = name
        self.state = PAGE_REPORTING_IDLE

    def __repr__(self) -> str:
        return f"<PageReportingDevInfo {self.name} {STATE_NAMES[self.state]}>"


class PageReporting:
    """Per-machine page reporting state."""

    def __init__(self, k):
        self.k = k
        self.pr_dev_info: PageReportingDevInfo | None = None
        self.enabled = False  # page_reporting_enabled static key (never turned off)
        self.work_prdev: PageReportingDevInfo | None = None  # owner of the pending work
        self.last_prdev: PageReportingDevInfo | None = None
        self.isolated: dict[int, int] = {}  # pfn -> order, isolated by the running pass
        self.passes = 0
        self.report_calls = 0
        self.isolations = 0  # blocks isolated, all passes
        self.pages_reported_by_order: Counter = Counter()  # blocks reported, per order
        self.last_batch_sizes: list[int] = []
        self.batches: list[tuple[int, list[tuple[int, int]], int]] = []  # (ms, [(pfn, order)], err)
        self.pass_times: list[int] = []
        self.worker = k.sched.kthreads.get(WORKER) or k.sched.kthread_create(WORKER, self._work, 0)
        k.page_alloc.free_block_hooks.append(self.notify_free)

    # ------------------------------------------------------------ notify / request
    def notify_free(self, zone, pfn: int, order: int) -> None:
        """page_reporting_notify_free(order) at the end of __free_one_page()."""
        if not self.enabled or order < self.k.page_alloc.pageblock_order:
            return
        self.__page_reporting_notify()

    def __page_reporting_notify(self) -> None:
        prdev = self.pr_dev_info
        if prdev is not None:
            self.__page_reporting_request(prdev)

    def __page_reporting_request(self, prdev: PageReportingDevInfo) -> None:
        if prdev.state == PAGE_REPORTING_REQUESTED:
            return
        old, prdev.state = prdev.state, PAGE_REPORTING_REQUESTED
        if old != PAGE_REPORTING_IDLE:
            return
        self.schedule_delayed_work(prdev, PAGE_REPORTING_DELAY)

    def schedule_delayed_work(self, prdev: PageReportingDevInfo, delay: int) -> None:
        if self.worker.due is not None and self.work_prdev is prdev:
            return  # already pending
        self.work_prdev = prdev
        self.worker.due = self.k.now_ms + delay

    def cancel_delayed_work_sync(self, prdev: PageReportingDevInfo) -> None:
        if self.work_prdev is prdev:
            self.worker.due = None
            self.work_prdev = None

    # ------------------------------------------------------------ register
    def register(self, prdev: PageReportingDevInfo) -> None:
        if self.pr_dev_info is not None:
            raise EBUSY("page_reporting_register: a device is already registered")
        prdev.state = PAGE_REPORTING_IDLE
        self.__page_reporting_request(prdev)
        self.pr_dev_info = prdev
        self.last_prdev = prdev
        if not self.enabled:
            self.enabled = True
            self.k.printk("Free page reporting enabled")

    def unregister(self, prdev: PageReportingDevInfo) -> None:
        if self.pr_dev_info is prdev:
            self.pr_dev_info = None  # + synchronize_rcu()
            self.cancel_delayed_work_sync(prdev)

    # ------------------------------------------------------------ the work
    def _work(self, now_ms: int):
        prdev = self.work_prdev
        if prdev is None:
            return None
        return self.page_reporting_process(prdev)

    def page_reporting_process(self, prdev: PageReportingDevInfo) -> int | None:
        """One pass; returns the delay of the next pass or None (IDLE)."""
        k = self.k
        prdev.state = PAGE_REPORTING_ACTIVE
        self.passes += 1
        self.pass_times.append(k.now_ms)
        self.last_batch_sizes = []
        buf = self._kmalloc_sgl()  # kmalloc_array(32, sizeof(struct scatterlist), GFP_KERNEL)
        if buf is not None:
            sgl: list = [None] * PAGE_REPORTING_CAPACITY
            for pg in k.pgdats:  # for_each_zone
                for zone in pg.node_zones:
                    if self.page_reporting_process_zone(prdev, sgl, zone):
                        break
                else:
                    continue
                break
            if buf and hasattr(k, "kfree"):
                k.kfree(buf)
        if prdev.state == PAGE_REPORTING_ACTIVE:  # atomic_cmpxchg(ACTIVE -> IDLE)
            prdev.state = PAGE_REPORTING_IDLE
            self.work_prdev = None
            return None
        if prdev.state == PAGE_REPORTING_REQUESTED:
            return PAGE_REPORTING_DELAY
        return None

    def _kmalloc_sgl(self):
        """The scatterlist's memory: 32 * 32 bytes from kmalloc-1k (slab counters move
        while a pass runs); without a slab allocator only failslab is honoured."""
        k = self.k
        if hasattr(k, "kmalloc"):
            return k.kmalloc(PAGE_REPORTING_CAPACITY * SCATTERLIST_SIZE, GFP_KERNEL)
        return None if k.failslab_next() else 0

    def page_reporting_process_zone(self, prdev, sgl: list, zone) -> int:
        pa = self.k.page_alloc
        offset = [PAGE_REPORTING_CAPACITY]
        watermark = zone.low_wmark_pages() + (PAGE_REPORTING_CAPACITY << self.k.page_alloc.pageblock_order)
        if not pa.zone_watermark_ok(zone, 0, watermark, 0, ALLOC_CMA):
            return 0
        for order in range(self.k.page_alloc.pageblock_order, MAX_ORDER):
            for mt in range(MIGRATE_TYPES):
                if mt == MIGRATE_ISOLATE:
                    continue
                err = self.page_reporting_cycle(prdev, zone, order, mt, sgl, offset)
                if err:
                    return err
        leftover = PAGE_REPORTING_CAPACITY - offset[0]
        err = 0
        if leftover:
            sub = sgl[offset[0]:]
            err = self._report(prdev, sub)
            self.page_reporting_drain(prdev, sub, not err)
        return err

    def page_reporting_cycle(self, prdev, zone, order: int, mt: int, sgl: list, offset: list) -> int:
        k = self.k
        mm = k.memmap
        area = zone.free_area[order]
        fl = area.free_list[mt]
        if not fl:
            return 0
        page_len = 4096 << order
        budget = -(-area.nr_free // (PAGE_REPORTING_CAPACITY * 16))  # DIV_ROUND_UP
        err = 0
        walk = list(reversed(fl))  # head -> tail (the zone lock is held: no one else moves it)
        i = 0
        nxt = None
        while i < len(walk):
            pfn = walk[i]
            i += 1
            if mm.test(pfn, PG_reported):
                continue
            if budget < 0:
                prdev.state = PAGE_REPORTING_REQUESTED
                nxt = pfn
                break
            if offset[0]:
                if not self.isolate_free_page(zone, pfn, order, mt):
                    nxt = pfn
                    break
                offset[0] -= 1
                sgl[offset[0]] = ScatterEntry(Page(pfn, mm), page_len)
                continue
            _rotate_to_front(fl, pfn)
            err = self._report(prdev, sgl)  # zone lock dropped
            offset[0] = PAGE_REPORTING_CAPACITY
            budget -= 1
            self.page_reporting_drain(prdev, sgl, not err)
            walk = list(reversed(fl))
            i = 0
            nxt = walk[0] if walk else None
            if err:
                break
        else:
            nxt = None  # the walk reached the list head
        if nxt is not None and nxt in fl and next(reversed(fl)) != nxt:
            _rotate_to_front(fl, nxt)
        return err

    def _report(self, prdev, entries: list) -> int:
        k = self.k
        n = len(entries)
        for j, e in enumerate(entries):
            e.end = j == n - 1
        self.report_calls += 1
        self.last_batch_sizes.append(n)
        err = prdev.report(prdev, list(entries), n)
        err = int(err or 0)
        self.batches.append((k.now_ms, [(e.pfn, e.order) for e in entries], err))
        return err

    # ------------------------------------------------------------ isolation
    def isolate_free_page(self, zone, pfn: int, order: int, list_mt: int) -> int:
        """__isolate_free_page(page, order) through the allocator."""
        pa = self.k.page_alloc
        if not self.k.memmap.PageBuddy(pfn):
            raise KernelBug(f"__isolate_free_page: pfn {pfn:#x} is not PageBuddy")
        got = pa.isolate_free_page(pfn, order)
        if got:
            self.isolated[pfn] = order
            self.isolations += 1
        return got

    def putback_isolated_page(self, pfn: int, order: int, mt: int) -> None:
        """__putback_isolated_page(): __free_one_page(..., report=false)."""
        self.isolated.pop(pfn, None)
        self.k.page_alloc.putback_isolated_page(pfn, order, mt)

    def page_reporting_drain(self, prdev, entries: list, reported: bool) -> None:
        k = self.k
        mm = k.memmap
        pa = k.page_alloc
        for e in entries:
            pfn = e.pfn
            order = get_order(e.length)
            self.putback_isolated_page(pfn, order, pa.get_pageblock_migratetype(pfn))
            if not reported:
                continue
            self.pages_reported_by_order[order] += 1
            if mm.PageBuddy(pfn) and int(mm.private[pfn]) == order:
                mm.set(pfn, PG_reported)
        for j in range(len(entries)):  # sg_init_table()
            entries[j] = None

    # ------------------------------------------------------------ inspection
    def stats(self) -> dict:
        prdev = self.pr_dev_info or self.last_prdev
        return {"state": STATE_NAMES[prdev.state] if prdev is not None else None,
                "passes": self.passes, "report_calls": self.report_calls,
                "isolations": self.isolations,
                "pages_reported_by_order": dict(self.pages_reported_by_order),
                "last_batch_sizes": list(self.last_batch_sizes),
                "next_pass_ms": self.worker.due}


def _rotate_to_front(fl, pfn: int) -> None:
    """list_rotate_to_front(&page->lru, list): pfn becomes the head, the cyclic
    order is kept (free lists keep their head at the END of the OrderedDict)."""
    head_to_tail = list(reversed(fl))
    idx = head_to_tail.index(pfn)
    for x in head_to_tail[:idx]:
        fl.move_to_end(x, last=False)


# ---------------------------------------------------------------- API
def _state(k) -> PageReporting:
    return kernel_state(k, "page_reporting", PageReporting)


def init(k) -> PageReporting:
    """Install the free-path hook and the work's kernel thread (no boot option).
    With a slab allocator, kmalloc-1k gets its first slab now, as a booted
    kernel's would have (so a pass does not take a fresh slab page from the
    blocks it is about to report)."""
    fresh = not isinstance(getattr(k, "page_reporting", None), PageReporting)
    pr = _state(k)
    if fresh and hasattr(k, "kmalloc"):
        x = k.kmalloc(PAGE_REPORTING_CAPACITY * SCATTERLIST_SIZE, GFP_KERNEL)
        if x:
            k.kfree(x)
    return pr


def page_reporting_register(k, prdev: PageReportingDevInfo) -> None:
    _state(k).register(prdev)


def page_reporting_unregister(k, prdev: PageReportingDevInfo) -> None:
    _state(k).unregister(prdev)


def page_reporting_stats(k) -> dict:
    return _state(k).stats()


def PageReported(k, pfn: int) -> bool:
    """PG_reported on a free buddy head (the bit is PG_uptodate otherwise)."""
    mm = k.memmap
    return mm.PageBuddy(pfn) and mm.test(pfn, PG_reported)


def check(k) -> None:
    """No isolated page is on a free list; PG_reported only on order >= 9 buddy
    heads that sit on the free list of their order."""
    pr = getattr(k, "page_reporting", None)
    if not isinstance(pr, PageReporting):
        return
    mm = k.memmap
    for pfn, order in pr.isolated.items():
        if mm.PageBuddy(pfn):
            raise KernelBug(f"check: page_reporting: isolated pfn {pfn:#x} is also PageBuddy")
        z = k.page_zone_of(pfn)
        if any(pfn in fl for fl in z.free_area[order].free_list):
            raise KernelBug(f"check: page_reporting: isolated pfn {pfn:#x} is on a free list")
    for z in k.all_zones():
        for o in range(MAX_ORDER):
            for mt, fl in enumerate(z.free_area[o].free_list):
                for pfn in fl:
                    if mm.test(pfn, PG_reported) and o < k.page_alloc.pageblock_order:
                        raise KernelBug(f"check: page_reporting: order-{o} free block {pfn:#x} "
                                        f"({MIGRATETYPE_NAMES[mt]}) carries PG_reported")


# ---------------------------------------------------------------- proposal

