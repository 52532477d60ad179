"""MMU notifiers (mm/mmu_notifier.c, v5.7): classic and interval subscribers.

mmu_notifier.rst: every change that removes, downgrades or re-points a PTE
is announced to the mm's subscribers; invalidate_range_start is never called
under a page-table lock; interval subscribers get a collision-retry sequence.
"""
from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import KernelBug

MMU_NOTIFY_UNMAP, MMU_NOTIFY_CLEAR, MMU_NOTIFY_PROTECTION_VMA = 0, 1, 2
MMU_NOTIFY_PROTECTION_PAGE, MMU_NOTIFY_SOFT_DIRTY, MMU_NOTIFY_RELEASE = 3, 4, 5
MMU_NOTIFIER_RANGE_BLOCKABLE = 1
ULONG_MAX = (1 << 64) - 1
EVENT_NAMES = ("MMU_NOTIFY_UNMAP", "MMU_NOTIFY_CLEAR", "MMU_NOTIFY_PROTECTION_VMA",
               "MMU_NOTIFY_PROTECTION_PAGE", "MMU_NOTIFY_SOFT_DIRTY", "MMU_NOTIFY_RELEASE")


@dataclass
class MmuNotifierRange:
    event: int
    flags: int
    vma: Any
    mm: Any
    start: int
    end: int


@dataclass
class MmuNotifierOps:
    release: Callable | None = None
    clear_flush_young: Callable | None = None
    clear_young: Callable | None = None
    test_young: Callable | None = None
    change_pte: Callable | None = None
    invalidate_range_start: Callable | None = None
    invalidate_range_end: Callable | None = None
    invalidate_range: Callable | None = None
    alloc_notifier: Callable | None = None
    free_notifier: Callable | None = None


class MmuNotifier:
    def __init__(self, ops: MmuNotifierOps | None = None):
        self.ops = ops or MmuNotifierOps()
        self.mm = None
        self.users = 0
        self.hashed = False


@dataclass
class MmuIntervalNotifierOps:
    invalidate: Callable


class MmuIntervalNotifier:
    def __init__(self):
        self.start = 0
        self.last = 0
        self.ops: MmuIntervalNotifierOps | None = None
        self.mm = None
        self.invalidate_seq = 0
        self.in_tree = False
        self.deferred = False


@dataclass
class MmuNotifierSubscriptions:
    itree: list = field(default_factory=list)  # interval subscribers by start
    deferred_list: list = field(default_factory=list)  # (op, sub)
    has_itree: bool = False
    invalidate_seq: int = 2
    active_invalidate_ranges: int = 0
    list: list = field(default_factory=builtins.list)  # classic subscribers, newest first
    grabs: int = 0  # classic subscribers holding mmgrab (register until unregister/free)


class MmuNotifiers:
    """The notifier calls of one kernel."""

    def __init__(self, k):
        self.k = k
        self.pending_free: list = []

    # ------------------------------------------------------------ registration
    def register_locked(self, mn: MmuNotifier | None, mm) -> int:
        if mm.mm_users <= 0:
            raise KernelBug("mmu_notifier_register: mm_users is 0")
        subs = mm.notifier_subscriptions
        if subs is None:
            subs = mm.notifier_subscriptions = MmuNotifierSubscriptions()
        if mn is not None:
            self.k.mmgrab(mm, "mmu_notifier")
            subs.grabs += 1
            mn.mm = mm
            mn.users = 1
            mn.hashed = True
            subs.list.insert(0, mn)
        else:
            subs.has_itree = True
        return 0

    def unregister(self, mn: MmuNotifier, mm) -> None:
        if mm.mm_count <= 0:
            raise KernelBug("mmu_notifier_unregister: mm_count is 0")
        if mn.hashed:
            if mn.ops.release:
                mn.ops.release(mn, mm)
            mm.notifier_subscriptions.list.remove(mn)
            mn.hashed = False
        if mm.notifier_subscriptions is not None:
            mm.notifier_subscriptions.grabs -= 1
        self.k.mmdrop(mm, "mmu_notifier")

    def get_locked(self, ops: MmuNotifierOps, mm):
        subs = mm.notifier_subscriptions
        if subs is not None:
            for mn in subs.list:
                if mn.ops is ops and mn.hashed:
                    if mn.users == 0xFFFFFFFF:
                        return -75  # -EOVERFLOW
                    mn.users += 1
                    return mn
        mn = ops.alloc_notifier(mm)
        if isinstance(mn, int):
            return mn
        mn.ops = ops
        ret = self.register_locked(mn, mm)
        if ret:
            ops.free_notifier(mn)
            return ret
        return mn

    def put(self, mn: MmuNotifier) -> None:
        if mn.users == 0:
            self.k.printk("WARNING: mmu_notifier_put: users is 0")
            return
        mn.users -= 1
        if mn.users:
            return
        mn.mm.notifier_subscriptions.list.remove(mn)
        mn.hashed = False
        self.pending_free.append(mn)

    def synchronize(self) -> None:
        while self.pending_free:
            mn = self.pending_free.pop(0)
            mm = mn.mm
            if mn.ops.free_notifier:
                mn.ops.free_notifier(mn)
            if mm.notifier_subscriptions is not None:
                mm.notifier_subscriptions.grabs -= 1
            self.k.mmdrop(mm, "mmu_notifier")

    # ------------------------------------------------------------ interval
    def interval_insert_locked(self, sub: MmuIntervalNotifier, mm, start: int, length: int,
                               ops: MmuIntervalNotifierOps) -> int:
        if mm.notifier_subscriptions is None or not mm.notifier_subscriptions.has_itree:
            ret = self.register_locked(None, mm)
            if ret:
                return ret
        if length == 0 or start + length - 1 > ULONG_MAX:
            return -75  # -EOVERFLOW
        if mm.mm_count <= 0:
            return -22
        subs = mm.notifier_subscriptions
        if sub.in_tree or sub.deferred:
            raise KernelBug("mmu_interval_notifier_insert: subscriber inserted twice")
        sub.start, sub.last, sub.ops, sub.mm = start, start + length - 1, ops, mm
        self.k.mmgrab(mm, "mmu_interval_notifier")
        if subs.active_invalidate_ranges:
            if subs.invalidate_seq & 1:
                sub.deferred = True
                subs.deferred_list.append(("insert", sub))
            else:
                subs.invalidate_seq = (subs.invalidate_seq | 1) & ULONG_MAX
                self._tree_insert(subs, sub)
            sub.invalidate_seq = subs.invalidate_seq
        else:
            sub.invalidate_seq = (subs.invalidate_seq - 1) & ULONG_MAX
            self._tree_insert(subs, sub)
        return 0

    @staticmethod
    def _tree_insert(subs, sub) -> None:
        subs.itree.append(sub)
        subs.itree.sort(key=lambda s: (s.start, s.last))
        sub.in_tree = True

    def interval_remove(self, sub: MmuIntervalNotifier) -> None:
        if self.k.in_notifier_callback:
            raise KernelBug("mmu_interval_notifier_remove called from an invalidate callback")
        mm = sub.mm
        subs = mm.notifier_subscriptions
        if subs.invalidate_seq & 1:
            if sub.deferred:
                subs.deferred_list = [(o, s) for o, s in subs.deferred_list if s is not sub]
                sub.deferred = False
                self.k.mmdrop(mm, "mmu_interval_notifier")
            else:
                subs.deferred_list.append(("remove", sub))
            return
        if not sub.in_tree:
            self.k.printk("WARNING: mmu_interval_notifier_remove: not in the tree")
        else:
            subs.itree.remove(sub)
            sub.in_tree = False
        self.k.mmdrop(mm, "mmu_interval_notifier")

    def read_begin(self, sub: MmuIntervalNotifier) -> int:
        from ..errors import WouldBlock
        seq = sub.invalidate_seq
        if seq == sub.mm.notifier_subscriptions.invalidate_seq:
            raise WouldBlock("mmu_interval_read_begin: invalidation in progress")
        return seq

    # ------------------------------------------------------------ invalidation
    def _overlapping(self, subs, start: int, end: int) -> list:
        last = (end - 1) & ULONG_MAX
        return [s for s in subs.itree if s.start <= last and s.last >= start]

    def _int_start(self, subs, rng: MmuNotifierRange) -> int:
        subs.active_invalidate_ranges += 1
        hit = self._overlapping(subs, rng.start, rng.end)
        if not hit:
            return 0
        subs.invalidate_seq |= 1
        cur = subs.invalidate_seq
        for sub in hit:
            self.k.in_notifier_callback += 1
            try:
                ok = sub.ops.invalidate(sub, rng, cur)
            finally:
                self.k.in_notifier_callback -= 1
            if not ok:
                if rng.flags & MMU_NOTIFIER_RANGE_BLOCKABLE:
                    self.k.printk("WARNING: CPU: 0 PID: 0 at mm/mmu_notifier.c:493 "
                                  "mn_itree_invalidate")
                else:
                    self._int_end(subs)
                    return -11
        return 0

    def _int_end(self, subs) -> None:
        subs.active_invalidate_ranges -= 1
        if subs.active_invalidate_ranges or not subs.invalidate_seq & 1:
            return
        subs.invalidate_seq = (subs.invalidate_seq + 1) & ULONG_MAX
        for op, sub in subs.deferred_list:
            if op == "insert":
                sub.deferred = False
                self._tree_insert(subs, sub)
            else:
                if sub in subs.itree:
                    subs.itree.remove(sub)
                sub.in_tree = False
                self.k.mmdrop(sub.mm, "mmu_interval_notifier")
        subs.deferred_list.clear()

    def invalidate_range_start(self, rng: MmuNotifierRange, blockable: bool = True) -> int:
        mm = rng.mm
        subs = mm.notifier_subscriptions
        if blockable:
            rng.flags |= MMU_NOTIFIER_RANGE_BLOCKABLE
            self.k.might_sleep("include/linux/mmu_notifier.h", 434)
        else:
            rng.flags &= ~MMU_NOTIFIER_RANGE_BLOCKABLE
        if subs is None:
            return 0
        if subs.has_itree:
            ret = self._int_start(subs, rng)
            if ret:
                return ret
        err = 0
        for mn in list(subs.list):
            if mn.ops.invalidate_range_start:
                r = mn.ops.invalidate_range_start(mn, rng)
                if r:
                    self.k.printk(f"{mn.ops.invalidate_range_start!r} callback failed with {r} in "
                                  f"{'' if blockable else 'non-'}blockable context.")
                    err = r
        return err

    def invalidate_range_end(self, rng: MmuNotifierRange, only_end: bool = False) -> None:
        subs = rng.mm.notifier_subscriptions
        if subs is None:
            return
        if subs.has_itree:
            self._int_end(subs)
        for mn in list(subs.list):
            if not only_end and mn.ops.invalidate_range:
                mn.ops.invalidate_range(mn, rng.mm, rng.start, rng.end)
            if mn.ops.invalidate_range_end:
                mn.ops.invalidate_range_end(mn, rng)

    def invalidate_range(self, mm, start: int, end: int) -> None:
        subs = mm.notifier_subscriptions
        if subs is None:
            return
        for mn in list(subs.list):
            if mn.ops.invalidate_range:
                mn.ops.invalidate_range(mn, mm, start, end)

    def change_pte(self, mm, addr: int, pte: int) -> None:
        subs = mm.notifier_subscriptions
        if subs is None:
            return
        for mn in list(subs.list):
            if mn.ops.change_pte:
                mn.ops.change_pte(mn, mm, addr, pte)

    def release(self, mm) -> None:
        subs = mm.notifier_subscriptions
        if subs is None:
            return
        if subs.has_itree:
            rng = MmuNotifierRange(MMU_NOTIFY_RELEASE, MMU_NOTIFIER_RANGE_BLOCKABLE, None, mm, 0,
                                   ULONG_MAX)
            if self._int_start(subs, rng):
                self.k.printk("WARNING: mmu_notifier_release: interval invalidate failed")
            self._int_end(subs)
        for mn in list(subs.list):
            if mn.ops.release:
                mn.ops.release(mn, mm)
        for mn in subs.list:
            mn.hashed = False
        subs.list.clear()


class Recorder:
    """Test helper: log every notification an mm receives (mmu_notifier.md)."""

    def __init__(self, k, mm, interval: bool = True):
        self.k = k
        self.mm = mm
        self.log: list[tuple] = []
        self.interval = interval
        if interval:
            self.sub = MmuIntervalNotifier()

            def inv(sub, rng, cur_seq):
                self.log.append((rng.event, rng.flags, rng.start, rng.end, cur_seq))
                sub.invalidate_seq = cur_seq
                return True
            k.mmu_interval_notifier_insert(self.sub, mm, 0, ULONG_MAX & ~0xFFF,
                                           MmuIntervalNotifierOps(inv))
        else:
            def rec(name):
                def f(mn, *args):
                    self.log.append((name,) + tuple(
                        (a.event, a.start, a.end) if isinstance(a, MmuNotifierRange) else a
                        for a in args if a is not mm))
                    return 0
                return f
            ops = MmuNotifierOps(release=rec("release"), change_pte=rec("change_pte"),
                                 invalidate_range_start=rec("invalidate_range_start"),
                                 invalidate_range_end=rec("invalidate_range_end"),
                                 invalidate_range=rec("invalidate_range"))
            self.sub = MmuNotifier(ops)
            k.mmu_notifier_register(self.sub, mm)

    def close(self) -> None:
        if self.interval:
            self.k.mmu_interval_notifier_remove(self.sub)
        else:
            self.k.mmu_notifier_unregister(self.sub, self.mm)
