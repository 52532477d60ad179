"""SLUB debugging: the CONFIG_SLUB_DEBUG half of mm/slub.c (object layout checks,
red zones, poisoning, alloc/free tracking, the BUG/INFO/FIX reports, validation).

Mixed into Slub; the methods use the same state (self.k, caches, slabs)."""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..errors import ENOSYS, KernelBug
from ..lib.bitmap import bitmap_list
from .page import PG_slab
from .slab_common import (MAX_OBJS_PER_PAGE, PAGE_OFFSET, PAGE_SIZE, POISON_END, POISON_FREE,
                          POISON_INUSE, SIZEOF_PTR, SLAB_CONSISTENCY_CHECKS, SLAB_POISON,
                          SLAB_RED_ZONE, SLAB_STORE_USER, SLAB_TRACE, SLUB_RED_ACTIVE,
                          SLUB_RED_INACTIVE, TAINT_BAD_PAGE, TRACK_ADDRS_COUNT, TRACK_SIZE,
                          _OBJECT_POISON, page_struct, print_hex_dump, print_tainted)

if TYPE_CHECKING:
    from .slub import KmemCache, KmemCacheNode, Slab

TRACK_ALLOC, TRACK_FREE = 0, 1
_U64 = (1 << 64) - 1
_TRACK = struct.Struct("<Q16QiiQ")
# model entry points: where a reported stack trace stops
_API = {"kmem_cache_alloc", "kmem_cache_alloc_node", "kmem_cache_zalloc", "kmalloc", "kmalloc_node",
        "kzalloc", "kfree", "kmem_cache_free", "kmem_cache_destroy", "kmem_cache_shrink",
        "kmem_cache_create", "kmem_cache_create_usercopy", "ksize"}


def _bswap64(x: int) -> int:
    return int.from_bytes(x.to_bytes(8, "little"), "big")




class SlubDebug:
    def get_map(self, s: KmemCache, page: Slab) -> set:
        out = set()
        p = page.freelist
        guard = page.objects + 1
        while p is not None and guard > 0:
            out.add(p)
            p = self.get_freepointer(s, p)
            guard -= 1
        return out

    # ================================================================ debugging
    @staticmethod
    def freeptr_outside_object(s: KmemCache) -> bool:
        return s.offset >= s.inuse

    def get_info_end(self, s: KmemCache) -> int:
        return s.inuse + SIZEOF_PTR if s.offset >= s.inuse else s.inuse

    def get_track(self, s: KmemCache, obj: int, alloc: int) -> int:
        return obj + self.get_info_end(s) + alloc * TRACK_SIZE

    @staticmethod
    def size_from_object(s: KmemCache) -> int:
        return s.size - s.red_left_pad if s.flags & SLAB_RED_ZONE else s.size

    def _ret_ip(self, frames=None) -> int:
        """_RET_IP_: the address in the caller of the allocator entry point."""
        if frames is None:
            frames = self._frames(64)
        for i, (_name, _addr, kern, raw) in enumerate(frames):
            if kern and raw in _API:
                # the caller: first frame after the outermost API entry of this call
                j = i
                while j + 1 < len(frames) and frames[j + 1][2] and frames[j + 1][3] in _API:
                    j += 1
                if j + 1 < len(frames):
                    return frames[j + 1][1]
                return frames[j][1]
        return frames[-1][1] if frames else self.syms.addr_of("kernel_init")

    def set_track(self, s: KmemCache, obj: int, alloc: int, addr: int | None) -> None:
        """set_track(); addr None = the _RET_IP_ of the current allocator call."""
        p = self.get_track(s, obj, alloc)
        if addr is None or addr:
            frames = self._frames(64)
            if addr is None:
                addr = self._ret_ip(frames)
            addrs = [f[1] for f in frames[3:3 + TRACK_ADDRS_COUNT]]  # stack_trace_save(.., 3)
            addrs += [0] * (TRACK_ADDRS_COUNT - len(addrs))
            k = self.k
            data = _TRACK.pack(addr, *addrs, k.current_cpu(), k.current_ctx().pid, self.jiffies())
            self.write(p, data)
        else:
            self.memset(p, 0, TRACK_SIZE)

    def print_track(self, what: str, p: int) -> None:
        vals = _TRACK.unpack(self.read(p, TRACK_SIZE))
        addr, addrs, cpu, pid, when = vals[0], vals[1:17], vals[17], vals[18], vals[19]
        if not addr:
            return
        self.printk(f"INFO: {what} in {self.syms.pS(addr)} age={(self.jiffies() - when) & _U64} "
                    f"cpu={cpu & 0xFFFFFFFF} pid={pid}")
        for a in addrs:
            if not a:
                break
            self.printk(f"\t{self.syms.pS(a)}")

    def print_tracking(self, s: KmemCache, obj: int) -> None:
        if not s.flags & SLAB_STORE_USER:
            return
        self.print_track("Allocated", self.get_track(s, obj, TRACK_ALLOC))
        self.print_track("Freed", self.get_track(s, obj, TRACK_FREE))

    def print_page_info(self, page: Slab) -> None:
        fl = int(self.k.memmap.flags[page.pfn])
        self.printk(f"INFO: Slab 0x{page_struct(page.pfn):016x} objects={page.objects} "
                    f"used={page.inuse & 0xFFFF} fp=0x{(page.freelist or 0):016x} flags=0x{fl:04x}")

    def slab_bug(self, s: KmemCache, msg: str) -> None:
        self.printk("=" * 77)
        self.printk(f"BUG {s.name} ({print_tainted(self.k.tainted)}): {msg}")
        self.printk("-" * 77)
        self.printk("")
        self.add_taint(TAINT_BAD_PAGE)

    def slab_fix(self, s: KmemCache, msg: str) -> None:
        for line in f"FIX {s.name}: {msg}".split("\n"):
            self.printk(line)

    def print_section(self, prefix: str, addr: int, length: int) -> None:
        for line in print_hex_dump(prefix, addr, self.read(addr, length)):
            self.printk(line)

    def print_trailer(self, s: KmemCache, page: Slab, p: int) -> None:
        addr = page.base
        self.print_tracking(s, p)
        self.print_page_info(page)
        fp = self._raw_fp(s, p)
        self.printk(f"INFO: Object 0x{p:016x} @offset={p - addr} fp=0x{fp:016x}")
        self.printk("")
        if s.flags & SLAB_RED_ZONE:
            self.print_section("Redzone ", p - s.red_left_pad, s.red_left_pad)
        elif p > addr + 16:
            self.print_section("Bytes b4 ", p - 16, 16)
        self.print_section("Object ", p, min(s.object_size, PAGE_SIZE))
        if s.flags & SLAB_RED_ZONE:
            self.print_section("Redzone ", p + s.object_size, s.inuse - s.object_size)
        off = self.get_info_end(s)
        if s.flags & SLAB_STORE_USER:
            off += 2 * TRACK_SIZE
        if off != self.size_from_object(s):
            self.print_section("Padding ", p + off, self.size_from_object(s) - off)
        self.dump_stack()

    def _raw_fp(self, s: KmemCache, p: int) -> int:
        try:
            return self.get_freepointer(s, p) or 0
        except KernelBug:
            return 0

    def object_err(self, s: KmemCache, page: Slab, obj: int, reason: str) -> None:
        self.slab_bug(s, reason)
        self.print_trailer(s, page, obj)

    def slab_err(self, s: KmemCache, page: Slab, msg: str) -> None:
        self.slab_bug(s, msg[:99])
        self.print_page_info(page)
        self.dump_stack()

    def init_object(self, s: KmemCache, obj: int, val: int) -> None:
        if s.flags & SLAB_RED_ZONE:
            self.memset(obj - s.red_left_pad, val, s.red_left_pad)
        if s.flags & _OBJECT_POISON:
            self.memset(obj, POISON_FREE, s.object_size - 1)
            self.memset(obj + s.object_size - 1, POISON_END, 1)
        if s.flags & SLAB_RED_ZONE:
            self.memset(obj + s.object_size, val, s.inuse - s.object_size)

    def restore_bytes(self, s: KmemCache, message: str, data: int, start: int, end: int) -> None:
        self.slab_fix(s, f"Restoring 0x{start:016x}-0x{end - 1:016x}=0x{data:x}\n")
        self.memset(start, data, end - start)

    def check_bytes_and_report(self, s: KmemCache, page: Slab, obj: int, what: str, start: int,
                               value: int, nbytes: int) -> int:
        fault = self.memchr_inv(start, value, nbytes)
        if fault is None:
            return 1
        end = start + nbytes
        while end > fault and self._byte(end - 1) == value:
            end -= 1
        self.slab_bug(s, f"{what} overwritten")
        self.printk(f"INFO: 0x{fault:016x}-0x{end - 1:016x} @offset={fault - page.base}. "
                    f"First byte 0x{self._byte(fault):x} instead of 0x{value:x}")
        self.print_trailer(s, page, obj)
        self.restore_bytes(s, what, value, fault, end)
        return 0

    def check_pad_bytes(self, s: KmemCache, page: Slab, p: int) -> int:
        off = self.get_info_end(s)
        if s.flags & SLAB_STORE_USER:
            off += 2 * TRACK_SIZE
        if self.size_from_object(s) == off:
            return 1
        return self.check_bytes_and_report(s, page, p, "Object padding", p + off, POISON_INUSE,
                                           self.size_from_object(s) - off)

    def slab_pad_check(self, s: KmemCache, page: Slab) -> int:
        if not s.flags & SLAB_POISON:
            return 1
        start = page.base
        length = PAGE_SIZE << page.order
        end = start + length
        remainder = length % s.size
        if not remainder:
            return 1
        pad = end - remainder
        fault = self.memchr_inv(pad, POISON_INUSE, remainder)
        if fault is None:
            return 1
        while end > fault and self._byte(end - 1) == POISON_INUSE:
            end -= 1
        self.slab_err(s, page, f"Padding overwritten. 0x{fault:016x}-0x{end - 1:016x} "
                               f"@offset={fault - start}")
        self.print_section("Padding ", pad, remainder)
        self.restore_bytes(s, "slab padding", POISON_INUSE, fault, end)
        return 0

    def check_object(self, s: KmemCache, page: Slab, obj: int, val: int) -> int:
        p = obj
        endobject = obj + s.object_size
        if s.flags & SLAB_RED_ZONE:
            if not self.check_bytes_and_report(s, page, obj, "Redzone", obj - s.red_left_pad, val,
                                               s.red_left_pad):
                return 0
            if not self.check_bytes_and_report(s, page, obj, "Redzone", endobject, val,
                                               s.inuse - s.object_size):
                return 0
        elif s.flags & SLAB_POISON and s.object_size < s.inuse:
            self.check_bytes_and_report(s, page, p, "Alignment padding", endobject, POISON_INUSE,
                                        s.inuse - s.object_size)
        if s.flags & SLAB_POISON:
            if val != SLUB_RED_ACTIVE and s.flags & _OBJECT_POISON and (
                    not self.check_bytes_and_report(s, page, p, "Poison", p, POISON_FREE,
                                                    s.object_size - 1)
                    or not self.check_bytes_and_report(s, page, p, "Poison", p + s.object_size - 1,
                                                       POISON_END, 1)):
                return 0
            self.check_pad_bytes(s, page, p)
        if not self.freeptr_outside_object(s) and val == SLUB_RED_ACTIVE:
            return 1
        if not self.check_valid_pointer(s, page, self._raw_fp_or_bad(s, p)):
            self.object_err(s, page, p, "Freepointer corrupt")
            self.set_freepointer(s, p, None)
            return 0
        return 1

    def _raw_fp_or_bad(self, s: KmemCache, p: int):
        a = p + s.offset - PAGE_OFFSET
        v = self._q[a >> 12][(a & 4095) >> 3]
        if s.random:
            v ^= s.random ^ _bswap64(p + s.offset)
        return v or None

    def check_valid_pointer(self, s: KmemCache, page: Slab, obj: int | None) -> int:
        if obj is None:
            return 1
        base = page.base
        if s.flags & SLAB_RED_ZONE:
            obj -= s.red_left_pad
        if obj < base or obj >= base + page.objects * s.size or (obj - base) % s.size:
            return 0
        return 1

    def check_slab(self, s: KmemCache, page: Slab) -> int:
        if not self.k.memmap.test(page.pfn, PG_slab):
            self.slab_err(s, page, "Not a valid slab page")
            return 0
        maxobj = self.order_objects(page.order, s.size)
        if page.objects > maxobj:
            self.slab_err(s, page, f"objects {page.objects} > max {maxobj}")
            return 0
        if page.inuse > page.objects:
            self.slab_err(s, page, f"inuse {page.inuse & 0xFFFF} > max {page.objects}")
            return 0
        self.slab_pad_check(s, page)
        return 1

    def on_freelist(self, s: KmemCache, page: Slab, search: int | None) -> int:
        nr = 0
        obj = None
        fp = page.freelist
        while fp is not None and nr <= page.objects:
            if fp == search:
                return 1
            if not self.check_valid_pointer(s, page, fp):
                if obj is not None:
                    self.object_err(s, page, obj, "Freechain corrupt")
                    self.set_freepointer(s, obj, None)
                else:
                    self.slab_err(s, page, "Freepointer corrupt")
                    page.freelist = None
                    page.inuse = page.objects
                    self.slab_fix(s, "Freelist cleared")
                    return 0
                break
            obj = fp
            fp = self.get_freepointer(s, obj)
            nr += 1
        max_objects = min(self.order_objects(page.order, s.size), MAX_OBJS_PER_PAGE)
        if page.objects != max_objects:
            self.slab_err(s, page, f"Wrong number of objects. Found {page.objects} but should be "
                                   f"{max_objects}")
            page.objects = max_objects
            self.slab_fix(s, "Number of objects adjusted.")
        if page.inuse != page.objects - nr:
            self.slab_err(s, page, f"Wrong object count. Counter is {page.inuse} but counted "
                                   f"were {page.objects - nr}")
            page.inuse = page.objects - nr
            self.slab_fix(s, "Object count adjusted.")
        return 1 if search is None else 0

    def trace(self, s: KmemCache, page: Slab, obj: int, alloc: int) -> None:
        if s.flags & SLAB_TRACE:
            self.printk(f"TRACE {s.name} {'alloc' if alloc else 'free'} 0x{obj:016x} "
                        f"inuse={page.inuse} fp=0x{(page.freelist or 0):016x}")
            if not alloc:
                self.print_section("Object ", obj, s.object_size)
            self.dump_stack()

    def alloc_consistency_checks(self, s, page, obj) -> int:
        if not self.check_slab(s, page):
            return 0
        if not self.check_valid_pointer(s, page, obj):
            self.object_err(s, page, obj, "Freelist Pointer check fails")
            return 0
        if not self.check_object(s, page, obj, SLUB_RED_INACTIVE):
            return 0
        return 1

    def alloc_debug_processing(self, s: KmemCache, page: Slab, obj: int, addr: int) -> int:
        if s.flags & SLAB_CONSISTENCY_CHECKS and not self.alloc_consistency_checks(s, page, obj):
            if self.k.memmap.test(page.pfn, PG_slab):
                self.slab_fix(s, "Marking all objects used")
                page.inuse = page.objects
                page.freelist = None
                page.abandoned = True
            return 0
        if s.flags & SLAB_STORE_USER:
            self.set_track(s, obj, TRACK_ALLOC, addr)
        self.trace(s, page, obj, 1)
        self.init_object(s, obj, SLUB_RED_ACTIVE)
        return 1

    def free_consistency_checks(self, s, page, obj, addr) -> int:
        if not self.check_valid_pointer(s, page, obj):
            self.slab_err(s, page, f"Invalid object pointer 0x{obj:016x}")
            return 0
        if self.on_freelist(s, page, obj):
            self.object_err(s, page, obj, "Object already free")
            return 0
        if not self.check_object(s, page, obj, SLUB_RED_ACTIVE):
            return 0
        if s is not page.cache:
            if not self.k.memmap.test(page.pfn, PG_slab):
                self.slab_err(s, page, f"Attempt to free object(0x{obj:016x}) outside of slab")
            else:
                self.object_err(s, page, obj, "page slab pointer corrupt.")
            return 0
        return 1

    def free_debug_processing(self, s, page, head, tail, bulk_cnt, addr) -> int:
        obj = head
        cnt = 0
        ret = 0
        while True:
            if s.flags & SLAB_CONSISTENCY_CHECKS and cnt == 0 and not self.check_slab(s, page):
                break
            cnt += 1
            if s.flags & SLAB_CONSISTENCY_CHECKS and \
                    not self.free_consistency_checks(s, page, obj, addr):
                break
            if s.flags & SLAB_STORE_USER:
                self.set_track(s, obj, TRACK_FREE, addr)
            self.trace(s, page, obj, 0)
            self.init_object(s, obj, SLUB_RED_INACTIVE)
            if obj != tail:
                obj = self.get_freepointer(s, obj)
                continue
            ret = 1
            break
        if cnt != bulk_cnt:
            self.slab_err(s, page, f"Bulk freelist count({bulk_cnt}) invalid({cnt})\n")
        if not ret:
            self.slab_fix(s, f"Object at 0x{obj:016x} not freed")
        return ret

    # ---------------------------------------------------------------- validate
    def validate_slab(self, s: KmemCache, page: Slab) -> int:
        if not self.check_slab(s, page) or not self.on_freelist(s, page, None):
            return 0
        free = self.get_map(s, page)
        for p in self._objects(s, page):
            if p in free and not self.check_object(s, page, p, SLUB_RED_INACTIVE):
                return 0
        for p in self._objects(s, page):
            if p not in free and not self.check_object(s, page, p, SLUB_RED_ACTIVE):
                return 0
        return 1

    def validate_slab_node(self, s: KmemCache, n: KmemCacheNode) -> int:
        count = 0
        for page in list(n.partial):
            self.validate_slab(s, page)
            count += 1
        if count != n.nr_partial:
            self.printk(f"SLUB {s.name}: {count} partial slabs counted but counter={n.nr_partial}")
        if not s.flags & SLAB_STORE_USER:
            return count
        for page in list(n.full):
            self.validate_slab(s, page)
            count += 1
        if count != n.nr_slabs:
            self.printk(f"SLUB: {s.name} {count} slabs counted but counter={n.nr_slabs}")
        return count

    def validate_slab_cache(self, s: KmemCache) -> int:
        self.flush_all(s)
        return sum(self.validate_slab_node(s, n) for n in s.node)

    def any_slab_objects(self, s: KmemCache) -> bool:
        return any(n.total_objects for n in s.node)

    # ---------------------------------------------------------------- alloc/free_calls
    def list_locations(self, s: KmemCache, alloc: int) -> str:
        if not s.flags & SLAB_STORE_USER:
            raise ENOSYS(f"{'alloc' if alloc == TRACK_ALLOC else 'free'}_calls: no store_user")
        self.flush_all(s)
        locs: dict[int, dict] = {}
        now = self.jiffies()
        for node, n in enumerate(s.node):
            if not n.nr_slabs:
                continue
            for page in list(n.partial) + list(n.full):
                free = self.get_map(s, page)
                for p in self._objects(s, page):
                    if p in free:
                        continue
                    vals = _TRACK.unpack(self.read(self.get_track(s, p, alloc), TRACK_SIZE))
                    addr, cpu, pid, when = vals[0], vals[17], vals[18], vals[19]
                    age = (now - when) & _U64
                    loc = locs.get(addr)
                    if loc is None:
                        locs[addr] = loc = {"count": 0, "sum": 0, "min_time": age, "max_time": age,
                                            "min_pid": pid, "max_pid": pid, "cpus": set(),
                                            "nodes": set()}
                    loc["count"] += 1
                    loc["sum"] += age
                    loc["min_time"] = min(loc["min_time"], age)
                    loc["max_time"] = max(loc["max_time"], age)
                    loc["min_pid"] = min(loc["min_pid"], pid)
                    loc["max_pid"] = max(loc["max_pid"], pid)
                    loc["cpus"].add(cpu)
                    loc["nodes"].add(page.nid)
        out = []
        for addr in sorted(locs):
            loc = locs[addr]
            line = f"{loc['count']:7d} "
            line += self.syms.pS(addr) if addr else "<not-available>"
            if loc["sum"] != loc["min_time"]:
                line += f" age={loc['min_time']}/{loc['sum'] // loc['count']}/{loc['max_time']}"
            else:
                line += f" age={loc['min_time']}"
            if loc["min_pid"] != loc["max_pid"]:
                line += f" pid={loc['min_pid']}-{loc['max_pid']}"
            else:
                line += f" pid={loc['min_pid']}"
            if self.ncpus > 1 and loc["cpus"]:
                line += " cpus=" + bitmap_list(loc["cpus"])
            if self.nnodes > 1 and loc["nodes"]:
                line += " nodes=" + bitmap_list(loc["nodes"])
            out.append(line + "\n")
        if not out:
            return "No data\n"
        return "".join(out)

    # ================================================================ invariants
    def check(self) -> None:
        """Raise KernelBug on a broken slab invariant (freelists, counts, lists)."""
        k = self.k
        mm = k.memmap
        seen_pages: dict[Slab, str] = {}

        def bug(msg: str) -> None:
            raise KernelBug(f"check: slub: {msg}")

        def place(page: Slab, where: str) -> None:
            if page in seen_pages:
                bug(f"{page!r} is both {seen_pages[page]} and {where}")
            seen_pages[page] = where

        def walk(s: KmemCache, page: Slab, head, what: str) -> list[int]:
            out = []
            seen = set()
            p = head
            while p is not None:
                if p in seen:
                    bug(f"{what} of {s.name} slab pfn {page.pfn:#x} loops at object {p:016x}")
                if not self.check_valid_pointer(s, page, p):
                    bug(f"{what} of {s.name} slab pfn {page.pfn:#x} holds {p & _U64:016x}, not an "
                        f"object of the slab")
                seen.add(p)
                out.append(p)
                if len(out) > page.objects:
                    bug(f"{what} of {s.name} slab pfn {page.pfn:#x} longer than the slab")
                p = self._raw_fp_or_bad(s, p)
            return out

        live = set(self.caches)
        for s in live:
            for cpu, c in enumerate(s.cpu_slab):
                if c.page is not None:
                    place(c.page, f"cpu {cpu} slab")
                    if c.page.cache is not s or not c.page.frozen:
                        bug(f"cpu {cpu} slab {c.page!r} of {s.name} is foreign or not frozen")
                elif c.freelist is not None:
                    bug(f"{s.name} cpu {cpu}: a cpu freelist without a cpu slab")
                p = c.partial
                n = 0
                while p is not None:
                    place(p, f"on cpu {cpu} partial list")
                    if not p.frozen or p.cache is not s:
                        bug(f"cpu partial slab {p!r} of {s.name} is foreign or not frozen")
                    p = p.next
                    n += 1
                    if n > len(self.slabs):
                        bug(f"{s.name} cpu {cpu}: cpu partial list loops")
            for nid, n in enumerate(s.node):
                if n.nr_partial != len(n.partial):
                    bug(f"{s.name} node {nid}: nr_partial {n.nr_partial} but {len(n.partial)} "
                        f"slabs listed")
                for page in n.partial:
                    place(page, f"on node {nid} partial list")
                    if page.frozen or page.nid != nid or page.cache is not s:
                        bug(f"partial slab {page!r} frozen, foreign or on the wrong node")
                for page in n.full:
                    place(page, f"on node {nid} full list")
                    if not s.flags & SLAB_STORE_USER or page.frozen or page.freelist is not None:
                        bug(f"full-list slab {page!r} of {s.name} is not a full tracked slab")
        per_node: dict[tuple, list] = {}
        for pfn, page in self.slabs.items():
            s = page.cache
            if s not in live:
                bug(f"slab pfn {pfn:#x} belongs to a destroyed cache {s.name}")
            if not mm.test(pfn, PG_slab):
                bug(f"slab pfn {pfn:#x} lacks PG_slab")
            for p in range(pfn, pfn + (1 << page.order)):
                if self._slab_of.get(p) is not page:
                    bug(f"pfn {p:#x} of slab {page!r} is not mapped to it")
            if page.objects > self.order_objects(page.order, s.size):
                bug(f"{page!r}: objects {page.objects} exceed the slab")
            if page.frozen and page not in seen_pages and not page.abandoned:
                bug(f"{page!r} is frozen but no cpu holds it")
            if page.nid != mm.page_to_nid(pfn):
                bug(f"{page!r}: node {page.nid} but the page is on node {mm.page_to_nid(pfn)}")
            chain = walk(s, page, page.freelist, "freelist")
            cpu_chain: list[int] = []
            for cpu, c in enumerate(s.cpu_slab):
                if c.page is page:
                    cpu_chain = walk(s, page, c.freelist, f"cpu {cpu} freelist")
            both = set(chain) & set(cpu_chain)
            if both:
                bug(f"object {min(both):016x} of {s.name} is on the page and the cpu freelist")
            if page.inuse + len(chain) != page.objects or page.inuse < 0:
                bug(f"{page!r}: inuse {page.inuse} + {len(chain)} free != {page.objects} objects")
            if not page.frozen and page not in seen_pages:
                if page.freelist is not None:
                    bug(f"{page!r} has free objects but is on no list")
                if s.flags & SLAB_STORE_USER and not self.slab_abandoned(page):
                    bug(f"full {page!r} of a store_user cache is not on the full list")
            per_node.setdefault((s, page.nid), []).append(page)
        for s in live:
            for nid, n in enumerate(s.node):
                pages = per_node.get((s, nid), [])
                if n.nr_slabs != len(pages) or n.total_objects != sum(p.objects for p in pages):
                    bug(f"{s.name} node {nid}: nr_slabs {n.nr_slabs}/total_objects "
                        f"{n.total_objects} but {len(pages)} slabs with "
                        f"{sum(p.objects for p in pages)} objects")
        for pfn, order in self._large.items():
            if int(mm.refcount[pfn]) < 1:
                bug(f"kmalloc_large block pfn {pfn:#x} has refcount {int(mm.refcount[pfn])}")

    @staticmethod
    def slab_abandoned(page: Slab) -> bool:
        return page.abandoned
