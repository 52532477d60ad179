"""k.check(): the invariants CONFIG_DEBUG_VM and friends would catch."""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..errors import KernelBug
from .gfp import MIGRATE_ISOLATE
from .memory_model import MAX_ORDER
from .mm_types import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, VM_ACCOUNT
from .page import PG_lru
from .pgtable import PMD, PTE, PUD, _PAGE_RW, _PAGE_SPECIAL, pte_present


def _bug(msg: str) -> None:
    raise KernelBug(f"check: {msg}")


def check_kernel(k) -> None:
    check_free_lists(k)
    mapped = check_page_tables(k)
    check_refcounts(k, mapped)
    check_lru(k)
    check_commit(k)
    check_mm_refs(k)
    check_locks(k)
    check_compound(k)
    if getattr(k, "slub", None) is not None:
        k.slub.check()
    k.sparse.check()
    k.highmem.check()
    k.memremap.check()
    from . import page_frag, page_owner, page_reporting
    page_owner.check(k)
    page_frag.check(k)
    page_reporting.check(k)


def dump_page(k, pfn: int, reason: str | None = None) -> None:
    """__dump_page() (mm/debug.c, v5.7) without the "raw:" hex lines: the model keeps no
    lru pointers or memcg to print there."""
    from .page_owner import format_page_flags
    mm = k.memmap
    head = mm.compound_head_pfn(pfn)
    mapcount = mm.page_mapcount(pfn) if not mm.page_has_type(pfn) else 0
    mapping = int(mm.mapping[pfn]) & 0xFFFFFFFFFFFFFFFF
    line = (f"page:{k.pfn_to_page(pfn).address:016x} refcount:{int(mm.refcount[head])} "
            f"mapcount:{mapcount} mapping:{mapping:016x} index:{int(mm.index[pfn]):#x}")
    if mm.PageCompound(pfn):
        line += f" compound_mapcount: {0}"
    k.printk(line)
    flags = int(mm.flags[pfn])
    kind = "anon " if int(mm.mapping[head]) & 1 and not mm.PageTail(pfn) else ""
    k.printk(f"{kind}flags: {flags:#x}({format_page_flags(flags)})")
    if reason:
        k.printk(f"page dumped because: {reason}")


def check_compound(k) -> None:
    """Every compound page: a PG_head head with its order, 2^order - 1 tails pointing at
    it with TAIL_MAPPING and refcount 0; no tail without such a head."""
    from .page import PG_head, TAIL_MAPPING
    mm = k.memmap
    heads = np.flatnonzero((mm.flags >> np.uint64(PG_head)) & np.uint64(1))
    tails = np.flatnonzero(mm.compound_head)
    expect = 0
    for h in heads.tolist():
        order = int(mm.compound_order[h])
        if not order:
            _bug(f"compound head pfn {h:#x} has order 0")
        seg = slice(h + 1, h + (1 << order))
        if np.any(mm.compound_head[seg] != h + 1) or np.any(mm.mapping[seg] != TAIL_MAPPING) \
                or np.any(mm.refcount[seg] != 0):
            _bug(f"compound page pfn {h:#x} order {order}: a tail lost its head, mapping or count")
        expect += (1 << order) - 1
    if len(tails) != expect:
        _bug(f"{len(tails)} tail pages but {expect} belong to compound heads")


def check_free_lists(k) -> None:
    mm = k.memmap
    for z in k.all_zones():
        nr_free = 0
        for o in range(MAX_ORDER):
            area = z.free_area[o]
            n = 0
            for mt, fl in enumerate(area.free_list):
                for pfn in fl:
                    n += 1
                    if pfn & ((1 << o) - 1):
                        _bug(f"free block pfn {pfn:#x} order {o} is not aligned")
                    if not mm.PageBuddy(pfn) or int(mm.private[pfn]) != o:
                        _bug(f"pfn {pfn:#x} on {z.name} free list order {o} lacks PageBuddy/order")
                    if not z.zone_spans_pfn(pfn) or k.page_zone_of(pfn) is not z:
                        _bug(f"pfn {pfn:#x} on the free list of zone {z.name} belongs elsewhere")
                    if int(mm.refcount[pfn]):
                        _bug(f"free pfn {pfn:#x} has refcount {int(mm.refcount[pfn])}")
                    if mt != MIGRATE_ISOLATE:
                        nr_free += 1 << o
            if n != area.nr_free:
                _bug(f"{z.name} order {o}: nr_free {area.nr_free} but {n} blocks listed")
        if nr_free != z.vm_stat["nr_free_pages"]:
            _bug(f"{z.name}: NR_FREE_PAGES {z.vm_stat['nr_free_pages']} but {nr_free} pages on free lists")
        for cpu, pcp in enumerate(z.pageset):
            if pcp.count != sum(len(lst) for lst in pcp.lists):
                _bug(f"{z.name} cpu {cpu}: pcp count {pcp.count} != listed pages")
            for lst in pcp.lists:
                for pfn in lst:
                    if mm.PageBuddy(pfn) or int(mm.refcount[pfn]):
                        _bug(f"pcp page pfn {pfn:#x} is buddy or referenced")
    # no page is both on a buddy list and inside another free block
    total = sum(z.vm_stat["nr_free_pages"] for z in k.all_zones())
    if total < 0:
        _bug("negative free page count")


def check_page_tables(k) -> Counter:
    """Walk every user mm; return how many PTEs map each pfn."""
    mapped: Counter = Counter()
    for mm in list(k.mms.values()):
        if mm.mm_users > 0:
            check_mm(k, mm, mapped)
    return mapped


def check_mm(k, mm, mapped: Counter) -> None:
    pgt = k.pgt
    rss = [0, 0, 0, 0]
    tables = {PTE: 0, PMD: 0, PUD: 0}
    seen_pte_tables = {}
    stack = [mm.pgd]
    while stack:
        t = stack.pop()
        if t.level in tables:
            tables[t.level] += 1
        if t.level == PTE:
            seen_pte_tables[t.base >> 21] = t
            if t.mm is not mm:
                _bug(f"PTE table {t!r} in mm of pid {mm.owner_pid} is owned by another mm")
            ents = t.entries
            for i in np.flatnonzero(ents).tolist():
                pte = int(ents[i])
                addr = t.base + (i << 12)
                vma = k.mmap.find_vma(mm, addr)
                if vma is None or vma.vm_start > addr:
                    _bug(f"pid {mm.owner_pid}: PTE {pte:#x} at {addr:#x} outside every VMA")
                if not pte_present(pte):
                    _bug(f"pid {mm.owner_pid}: non-present PTE {pte:#x} at {addr:#x}")
                pfn = (pte >> 12) & ((1 << 40) - 1)
                if pte & _PAGE_SPECIAL:
                    if pfn != k.zero_pfn or pte & _PAGE_RW:
                        _bug(f"pid {mm.owner_pid}: special PTE {pte:#x} at {addr:#x}")
                    continue
                mapped[pfn] += 1
                rss[k.memory.mm_counter(pfn)] += 1
            continue
        for i in np.flatnonzero(t.entries).tolist():
            ent = int(t.entries[i])
            child = pgt.tables.get((ent >> 12) & ((1 << 40) - 1))
            if child is None or child.parent is not t or child.pidx != i:
                _bug(f"pid {mm.owner_pid}: {t!r} entry {i} points to no table")
            stack.append(child)
    if seen_pte_tables.keys() != mm.pte_tables.keys() or \
            any(seen_pte_tables[kk] is not mm.pte_tables[kk] for kk in seen_pte_tables):
        _bug(f"pid {mm.owner_pid}: the PTE-table index disagrees with the page-table walk")
    want = 4096 * (tables[PTE] + tables[PMD] + tables[PUD])
    if mm.pgtables_bytes != want:
        _bug(f"pid {mm.owner_pid}: pgtables_bytes {mm.pgtables_bytes} but tables make {want}")
    private = [0, 0, 0, 0]
    for t in k.tasks.values():
        if getattr(t, "mm", None) is mm and hasattr(t, "rss_private"):
            private = [a + b for a, b in zip(private, t.rss_private)]
    for member in (MM_FILEPAGES, MM_ANONPAGES, MM_SHMEMPAGES):
        if mm.rss_stat[member] + private[member] != rss[member]:
            _bug(f"pid {mm.owner_pid}: rss counter {member} is {mm.rss_stat[member]} "
                 f"but {rss[member]} pages are mapped")
    prev_end = 0
    for v in mm.vmas:
        if v.vm_start >= v.vm_end or v.vm_start < prev_end or v.vm_start & 0xFFF or v.vm_end & 0xFFF:
            _bug(f"pid {mm.owner_pid}: bad VMA layout at {v!r}")
        prev_end = v.vm_end
    if mm.map_count != len(mm.vmas) or mm._starts != [v.vm_start for v in mm.vmas]:
        _bug(f"pid {mm.owner_pid}: map_count/VMA index out of sync")
    if mm.total_vm != sum(v.vma_pages() for v in mm.vmas):
        _bug(f"pid {mm.owner_pid}: total_vm {mm.total_vm} != VMA pages "
             f"{sum(v.vma_pages() for v in mm.vmas)}")


def check_refcounts(k, mapped: Counter) -> None:
    mm = k.memmap
    pvec_refs = Counter()
    for pvec in k.vmscan.lru_add_pvec + k.vmscan.lru_lazyfree_pvec:
        pvec_refs.update(pvec)
    cache_refs = Counter()
    for obj in k.shmem.objects:
        cache_refs.update(obj.pages.values())
    for pfn, n in mapped.items():
        mc = mm.page_mapcount(pfn)
        if mc != n:
            _bug(f"pfn {pfn:#x}: mapcount {mc} but {n} PTEs map it")
        rc = int(mm.refcount[pfn])
        if rc != n + pvec_refs[pfn] + cache_refs[pfn]:
            _bug(f"pfn {pfn:#x}: refcount {rc} != {n} mappings + {pvec_refs[pfn]} pagevec + "
                 f"{cache_refs[pfn]} page cache references")
    anon = np.flatnonzero(mm._mapcount1 > 0)
    for pfn in anon.tolist():
        if mm.PageTable(pfn) or mm.PageBuddy(pfn):
            continue
        if pfn not in mapped:
            _bug(f"pfn {pfn:#x} has mapcount {mm.page_mapcount(pfn)} but no PTE maps it")


def check_lru(k) -> None:
    mm = k.memmap
    vs = k.vmscan
    for nid, lv in enumerate(vs.lruvecs):
        pg = k.pgdats[nid]
        for lru, lst in enumerate(lv.lists):
            name = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")[lru]
            if pg.vm_stat["nr_" + name] != len(lst):
                _bug(f"node {nid}: nr_{name} {pg.vm_stat['nr_' + name]} but {len(lst)} pages listed")
            for pfn in lst:
                if not mm.test(pfn, PG_lru) or vs.page_lru(pfn) != lru:
                    _bug(f"pfn {pfn:#x} on LRU {name} with flags {int(mm.flags[pfn]):#x}")
    n_anon = sum(1 for p in np.flatnonzero(mm.mapping & 1).tolist() if mm.page_mapcount(p) > 0)
    if n_anon != sum(pg.vm_stat["nr_anon_pages"] for pg in k.pgdats):
        _bug(f"nr_anon_pages {sum(pg.vm_stat['nr_anon_pages'] for pg in k.pgdats)} but "
             f"{n_anon} mapped anonymous pages")


def check_commit(k) -> None:
    want = 0
    for mm in k.mms.values():
        want += sum(v.vma_pages() for v in mm.vmas if v.vm_flags & VM_ACCOUNT)
    want += sum(o.charged for o in k.shmem.objects)
    if k.overcommit.vm_committed_as != want:
        _bug(f"vm_committed_as {k.overcommit.vm_committed_as} but mappings and shmem charge {want}")


def check_mm_refs(k) -> None:
    mms = {id(m): m for m in k.mms.values()}
    ctxs = list(k.tasks.values()) + [c.idle for c in k.sched.cpus]
    for c in ctxs:
        for m in (c.mm, c.active_mm):
            if m is not None:
                mms[id(m)] = m
    users = Counter()
    lazy = Counter()
    for c in ctxs:
        if c.mm is not None:
            users[id(c.mm)] += 1
            if c.active_mm is not c.mm and k.sched.cpus[c.cpu].curr is c:
                _bug(f"{c!r} runs with active_mm != mm")
        elif c.active_mm is not None:
            lazy[id(c.active_mm)] += 1
    for cpu in k.sched.cpus:
        if cpu.prev_mm is not None:
            lazy[id(cpu.prev_mm)] += 1
            mms[id(cpu.prev_mm)] = cpu.prev_mm
    for key, m in mms.items():
        if m is k.init_mm:
            continue
        if m.freed:
            _bug(f"use-after-free: a task or CPU still points to the freed mm of pid {m.owner_pid}")
        if m.mm_users < users[key]:
            _bug(f"mm of pid {m.owner_pid}: mm_users {m.mm_users} < {users[key]} tasks using it")
        subs = m.notifier_subscriptions
        notif = 0
        if subs is not None:
            notif = subs.grabs + len(subs.itree) + \
                sum(1 for op, _ in subs.deferred_list if op == "insert")
        oom = sum(1 for t in k.tasks.values() if getattr(t, "oom_mm", None) is m) + \
            sum(1 for x in k.pending_mmdrops if x is m)
        want = (1 if m.mm_users else 0) + lazy[key] + notif + getattr(m, "open_files", 0) + oom
        if m.mm_count != want:
            _bug(f"mm of pid {m.owner_pid}: mm_count {m.mm_count} != {want} "
                 f"(users {m.mm_users}, lazy {lazy[key]}, notifiers {notif})")
        if m.mm_users == 0 and (m.vmas or m.get_mm_rss() or m.pgtables_bytes):
            _bug(f"mm of pid {m.owner_pid}: mm_users 0 but VMAs/RSS/page tables remain")


def check_locks(k) -> None:
    for c in list(k.tasks.values()) + [cpu.idle for cpu in k.sched.cpus]:
        if c.held_locks:
            _bug(f"{c!r} still holds {', '.join(lk.name for lk in c.held_locks)}")
