"""page_owner.md acceptance scenarios (v5.7 mm/page_owner.c, tools/vm/page_owner_sort.c).

Machines: the 256 MiB vm layout (zones DMA + DMA32, two 128 MiB sections)
booted with "page_owner=on" unless stated; scenario 11 uses a single 8 MiB
DMA32 zone.  /sys/kernel/debug/page_owner is read with
linmm.mm.page_owner.read_page_owner(k) (whole file) and PageOwnerFile (read(2)
calls with a buffer size).

Not covered (need unmodelled subsystems): 8 (THP faults and split_huge_page),
9 (migration: move_pages / mbind / compaction).
"""
import re
import struct

import numpy as np
import pytest

import linmm
from linmm import GFP_KERNEL, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
from linmm.errors import EACCES, ENOENT, ENOMEM
from linmm.mm import gfp as G
from linmm.mm import page_owner as PO
from linmm.mm.memory_model import PAGE_OFFSET
from linmm.tools import page_owner_sort

ANON = "Page allocated via order 0, mask 0x100dca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO)\n"
PGTABLE = "mask 0x400dc0(GFP_KERNEL_ACCOUNT|__GFP_ZERO)"
FRAME = re.compile(r"^ [A-Za-z_][A-Za-z0-9_.]*\+0x[0-9a-f]+/0x[0-9a-f]+$")


def machine(cmdline="page_owner=on", **kw):
    k = linmm.Kernel(linmm.MachineConfig(ram=kw.pop("ram", "256M"), cmdline=cmdline, **kw))
    PO.init(k)
    return k


def check(k):
    k.check()
    PO.check(k)


def records(text):
    """{pfn: record text (with its trailing blank line)}; also checks the layout."""
    out = {}
    assert text.endswith("\n\n") or text == ""
    for rec in text.split("\n\n")[:-1]:
        lines = rec.split("\n")
        assert lines[0].startswith("Page allocated via order ")
        m = re.fullmatch(r"PFN (\d+) type (\w+) Block (\d+) type (\w+) Flags (0x[0-9a-f]+)\((.*)\)", lines[1])
        assert m, lines[1]
        pfn = int(m.group(1))
        assert int(m.group(3)) == pfn >> 9
        for fr in lines[2:]:
            assert FRAME.match(fr) or fr.startswith("Page has been migrated, last migrate reason: "), fr
        assert 1 <= len([x for x in lines[2:] if FRAME.match(x)]) <= 16
        out[pfn] = rec + "\n\n"
    return out


def stack_of(rec):
    return [ln for ln in rec.split("\n") if FRAME.match(ln)]


def task_pfns(k, t, addr, n):
    raw = k.read_file(f"/proc/{t.pid}/pagemap", (addr >> 12) * 8, n * 8)
    vals = struct.unpack(f"<{n}Q", raw)
    assert all(v >> 63 for v in vals)
    return [v & ((1 << 55) - 1) for v in vals]


def scenario4(k):
    t = k.spawn("owner-test")
    a = t.mmap(0, 40960, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    for i in range(10):
        t.write(a + i * 4096, b"\x01")
    return t, a, task_pfns(k, t, a, 10)


# ---------------------------------------------------------------- 1-3
def test_page_owner_s1_disabled_by_default():
    k = machine(cmdline="")
    assert "page_owner is disabled" in k.dmesg()
    with pytest.raises(ENOENT):
        PO.read_page_owner(k)
    with pytest.raises(ENOENT):
        PO.PageOwnerFile(k)
    assert "Number of mixed blocks" not in PO.proc_pagetypeinfo(k)
    assert "Number of mixed blocks" not in k.read_file("/proc/pagetypeinfo")
    assert "page_ext" not in k.dmesg()
    k.alloc_pages(GFP_KERNEL, 0)
    check(k)


def test_page_owner_s1b_memory_cost_24_bytes_per_page():
    off = machine(cmdline="")
    on = machine()
    # two present 128 MiB sections: 2 * 32768 * 24 bytes = 384 pages of page_ext
    assert "allocated 1572864 bytes of page_ext" in on.dmesg()
    def free_and_pcp(k):  # init drains the pcp lists: compare free + pcp pages
        return k.global_free_pages() + sum(pc.count for z in k.all_zones() for pc in z.pageset)
    assert free_and_pcp(off) - free_and_pcp(on) == 384
    check(on)


def test_page_owner_s2_malformed_option():
    k = machine(cmdline="page_owner")
    assert "Malformed early option 'page_owner'" in k.dmesg()
    assert "page_owner is disabled" in k.dmesg()
    assert not k.page_owner.inited
    with pytest.raises(ENOENT):
        PO.read_page_owner(k)
    k2 = machine(cmdline="page_owner=1")  # v5.7 compares with "on" only
    assert not k2.page_owner.inited


def test_page_owner_s3_early_allocated_pages():
    k = machine()
    log = k.dmesg()
    lines = re.findall(r"^Node (\d+), zone +(\w+): page owner found early allocated (\d+) pages$", log, re.MULTILINE)
    assert [(n, z) for n, z, _ in lines] == [("0", "DMA"), ("0", "DMA32")]
    assert "Node 0, zone      DMA: page owner found early allocated" in log  # %8s
    counts = {z: int(c) for _, z, c in lines}
    assert counts == {"DMA": 0, "DMA32": 384}  # the page_ext tables themselves
    recs = records(PO.read_page_owner(k))
    early = {p: r for p, r in recs.items() if r.startswith("Page allocated via order 0, mask 0x0()\n")}
    assert len(early) == 384
    stacks = {tuple(stack_of(r)) for r in early.values()}
    assert len(stacks) == 1
    (st,) = stacks
    assert st[0].startswith(" register_early_stack+") and len(st) == 4
    assert all(" type Unmovable " in r.split("\n")[1] for r in early.values())
    check(k)


# ---------------------------------------------------------------- 4-6
def test_page_owner_s4_user_fault_records():
    k = machine()
    t, a, pfns = scenario4(k)
    recs = records(PO.read_page_owner(k))
    mine = [recs[p] for p in pfns]
    assert len(mine) == 10 and len(set(pfns)) == 10
    for p, r in zip(pfns, mine):
        lines = r.split("\n")
        assert lines[0] + "\n" == ANON
        assert re.fullmatch(rf"PFN {p} type Movable Block {p >> 9} type Movable "
                            r"Flags 0x[0-9a-f]+\(uptodate\|lru\|active\|swapbacked\)", lines[1])
        assert int(lines[1].split("Flags ")[1].split("(")[0], 16) == int(k.memmap.flags[p])
    stacks = {tuple(stack_of(r)) for r in mine}
    assert len(stacks) == 1
    (st,) = stacks
    assert st[-1].startswith(" page_fault+")
    names = [f.split("+")[0].strip() for f in st]
    assert names == ["get_page_from_freelist", "__alloc_pages_nodemask", "alloc_pages_vma",
                     "handle_mm_fault", "do_user_addr_fault", "page_fault"]
    # R(task): exactly these 10 records carry the anonymous-fault stack
    assert sum(1 for r in recs.values() if r.startswith(ANON) and tuple(stack_of(r)) == st) == 10
    pte = t.mm.pte_tables[a >> 21].pfn
    lines = recs[pte].split("\n")
    assert lines[0] == f"Page allocated via order 0, {PGTABLE}"
    assert " type Unmovable Block " in lines[1]
    check(k)


def test_page_owner_s4b_batched_fault_path_gives_same_stack():
    k = machine()
    t, _, pfns = scenario4(k)
    b = t.mmap(0, 64 << 12, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    t.access(np.arange(b, b + (64 << 12), 4096, dtype=np.uint64), True)  # the vectorised path
    recs = records(PO.read_page_owner(k))
    st = {tuple(stack_of(recs[p])) for p in pfns + task_pfns(k, t, b, 64)}
    assert len(st) == 1
    check(k)


def test_page_owner_s5_task_exit_clears_allocated():
    k = machine()
    t, _, pfns = scenario4(k)
    t.exit()
    recs = records(PO.read_page_owner(k))
    assert not set(pfns) & set(recs)
    lines = PO.dump_page_owner(k, pfns[3])
    assert lines[0] == "page_owner tracks the page as freed"
    assert lines[1] == ("page last allocated via order 0, migratetype Movable, "
                        "gfp_mask 0x100dca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO)")
    i = lines.index("page last free stack trace:")
    alloc, free = lines[2:i], lines[i + 1:]
    assert alloc and all(FRAME.match(x) for x in alloc) and alloc[-1].startswith(" page_fault+")
    assert free and all(FRAME.match(x) for x in free)
    assert free[-1].startswith(" entry_SYSCALL_64_after_hwframe+")
    assert any(x.startswith(" do_exit+") for x in free)
    assert "page_owner tracks the page as freed" in k.dmesg()
    # a page that never had an owner
    never = next(p for p in range(1 << 16) if k.memmap.PageBuddy(p) and not k.page_owner.ext_flags[p])
    assert PO.dump_page_owner(k, never) == ["page_owner info is not present (never set?)"]
    check(k)


def test_page_owner_s6_page_owner_sort(tmp_path, capsys):
    k = machine()
    scenario4(k)
    full = PO.read_page_owner(k)
    text = "".join(ln for ln in full.splitlines(keepends=True) if not ln.startswith("PFN"))
    src, dst = tmp_path / "page_owner.txt", tmp_path / "sorted.txt"
    src.write_text(text)
    assert page_owner_sort.main([str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    blocks = text.split("\n\n")[:-1]
    runs = sum(1 for i, b in enumerate(blocks) if i == 0 or blocks[i - 1] != b)
    assert out == f"loaded {runs}\nsorting ....\nculling\n"
    res = dst.read_text()
    entries = re.findall(r"^(\d+) times:\n((?:.+\n)+)\n", res, re.MULTILINE)
    assert "".join(f"{n} times:\n{b}\n" for n, b in entries) == res
    counts = [int(n) for n, _ in entries]
    assert counts == sorted(counts, reverse=True)
    assert sum(counts) == len(blocks)
    anon = [(int(n), b) for n, b in entries if b.startswith(ANON)]
    assert len(anon) == 1 and anon[0][0] == 10
    assert anon[0][1].splitlines()[-1].startswith(" page_fault+")
    assert counts[0] == 384  # the early pages
    check(k)


def test_page_owner_sort_usage_and_limits(tmp_path, capsys):
    assert page_owner_sort.main(["only-one"]) == 1
    cap = capsys.readouterr()
    assert cap.out == "Usage: ./program <input> <output>\n" and cap.err.startswith("open: : ")
    assert page_owner_sort.main([str(tmp_path / "missing"), str(tmp_path / "o")]) == 1
    assert capsys.readouterr().out == "Usage: ./program <input> <output>\n"
    small = tmp_path / "small"
    small.write_text("a\n\nb\n\n")  # 6 bytes: max_size 0
    assert page_owner_sort.main([str(small), str(tmp_path / "o2")]) == 1
    assert capsys.readouterr().out == "max_size too small??\n"
    f = tmp_path / "f"
    f.write_text("x\ny\n\n" * 30 + "z\n\n" * 40 + "x\ny\n\n" * 5 + "tail-without-blank\n")
    assert page_owner_sort.main([str(f), str(tmp_path / "o3")]) == 0
    assert capsys.readouterr().out == "loaded 3\nsorting ....\nculling\n"
    assert (tmp_path / "o3").read_text() == "40 times:\nz\n\n35 times:\nx\ny\n\n"


# ---------------------------------------------------------------- 7
def test_page_owner_s7_order_tails_split_compound():
    k = machine()
    page = k.alloc_pages(GFP_KERNEL, 2)
    p = page.pfn
    recs = records(PO.read_page_owner(k))
    assert recs[p].startswith("Page allocated via order 2, mask 0xcc0(GFP_KERNEL)\n")
    assert not {p + 1, p + 2, p + 3} & set(recs)
    st = stack_of(recs[p])
    assert [f.split("+")[0].strip() for f in st] == ["get_page_from_freelist", "__alloc_pages_nodemask",
                                                     "alloc_pages_current"]
    PO.split_page(k, p, 2)
    recs = records(PO.read_page_owner(k))
    for q in range(p, p + 4):
        assert recs[q].startswith("Page allocated via order 0, mask 0xcc0(GFP_KERNEL)\n")
        assert stack_of(recs[q]) == st
    check(k)
    for q in range(p, p + 4):
        k.free_pages(k.pfn_to_page(q), 0)
    check(k)
    comp = k.alloc_pages(GFP_KERNEL | G.__GFP_COMP, 3)
    recs = records(PO.read_page_owner(k))
    assert recs[comp.pfn].startswith("Page allocated via order 3, mask 0x40cc0(GFP_KERNEL|__GFP_COMP)\n")
    assert not set(range(comp.pfn + 1, comp.pfn + 8)) & set(recs)
    check(k)


def test_page_owner_gfp_and_pageflag_formats():
    assert PO.format_gfp(0) == ""
    assert PO.format_gfp(G.GFP_TRANSHUGE_LIGHT) == "GFP_TRANSHUGE_LIGHT"
    assert G.GFP_TRANSHUGE_LIGHT == 0x1C20CA
    assert PO.format_gfp(G.GFP_TRANSHUGE | G.__GFP_NORETRY) == "GFP_TRANSHUGE|__GFP_NORETRY"
    assert G.GFP_TRANSHUGE | G.__GFP_NORETRY == 0x1D24CA
    frag = G.GFP_ATOMIC | G.__GFP_COMP | G.__GFP_NOWARN | G.__GFP_NORETRY | G.__GFP_NOMEMALLOC
    assert PO.format_gfp(frag) == "GFP_ATOMIC|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC"
    assert PO.format_gfp(G.GFP_KERNEL_ACCOUNT) == "GFP_KERNEL_ACCOUNT"
    assert PO.format_gfp(0x800000 | G.GFP_KERNEL) == "GFP_KERNEL|0x800000"
    assert PO.format_page_flags((1 << 2) | (1 << 4) | (1 << 5) | (1 << 19) | (5 << 58)) == \
        "uptodate|lru|active|swapbacked"
    assert PO.format_page_flags((1 << 0) | (1 << 7) | (1 << 16)) == "locked|waiters|head"


# ---------------------------------------------------------------- 10
def test_page_owner_s10_short_read_skips_record():
    k = machine()
    scenario4(k)
    recs = list(records(PO.read_page_owner(k)).values())
    f = PO.PageOwnerFile(k)
    with pytest.raises(ENOMEM):
        f.read(64)
    assert f.read(4096) == recs[1]
    assert f.read(4096) == recs[2]
    with pytest.raises(EACCES):
        PO.PageOwnerFile(k, "w")
    with pytest.raises(EACCES):
        PO.write_page_owner(k, "x")
    # a buffer exactly the record's size is too small too (snprintf's NUL)
    g = PO.PageOwnerFile(k)
    with pytest.raises(ENOMEM):
        g.read(len(recs[0]))
    g2 = PO.PageOwnerFile(k)
    assert g2.read(len(recs[0]) + 1) == recs[0]
    # reading to the end returns "" (EOF)
    h = PO.PageOwnerFile(k)
    got = []
    while (r := h.read(4096)):
        got.append(r)
    assert got == recs
    check(k)


# ---------------------------------------------------------------- 11
def test_page_owner_s11_mixed_blocks():
    k = linmm.Kernel(linmm.MachineConfig(zones={"DMA32": "8M"}, cmdline="page_owner=on"))
    PO.init(k)
    z = k.pgdats[0].node_zones[1]
    pa = k.page_alloc
    t = k.spawn("mixer")
    r = t.mmap(0, 401 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    t.touch(r, True)  # page tables now; one page elsewhere
    movable = G.GFP_HIGHUSER_MOVABLE | G.__GFP_MEMALLOC | G.__GFP_NOWARN
    blocks = []
    while (p := pa.alloc_pages_nodemask(movable, 9)) is not None:
        blocks.append(p)
    while any(z.free_area[o].free_list[G.MIGRATE_MOVABLE] for o in range(11)):
        assert pa.alloc_pages_nodemask(movable, 0) is not None
    while pa.alloc_pages_nodemask(G.GFP_NOWAIT | G.__GFP_MEMALLOC | G.__GFP_NOWARN, 0) is not None:
        pass
    assert z.vm_stat["nr_free_pages"] == 0

    def mixed_row():
        text = PO.proc_pagetypeinfo(k)
        tail = text.split("Number of mixed blocks ")[1]
        return [int(x) for x in re.search(r"Node 0, zone    DMA32 (.*)\n", tail).group(1).split()]
    assert mixed_row() == [0, 0, 0, 0, 0]
    x = next(b for b in blocks if pa.get_pageblock_migratetype(b) == G.MIGRATE_MOVABLE)
    k.free_pages(k.pfn_to_page(x), 9)
    t.access(np.arange(r + 4096, r + 401 * 4096, 4096, dtype=np.uint64), True)
    assert sum(1 for p in task_pfns(k, t, r, 401) if x <= p < x + 512) == 400
    assert z.vm_stat["nr_free_pages"] == 112
    page = k.alloc_pages(GFP_KERNEL, 0)
    assert x <= page.pfn < x + 512
    assert pa.get_pageblock_migratetype(x) == G.MIGRATE_MOVABLE  # not converted
    assert mixed_row() == [0, 1, 0, 0, 0]
    text = k.read_file("/proc/pagetypeinfo")  # the core file does not have the table yet
    assert "Number of blocks type" in text
    check(k)
    k.free_pages(page, 0)
    assert mixed_row() == [0, 0, 0, 0, 0]
    check(k)


# ---------------------------------------------------------------- 12
def test_page_owner_s12_slab_page():
    k = machine()
    cache = k.kmem_cache_create("owner_test_3000", 3000)
    obj = k.kmem_cache_alloc(cache, GFP_KERNEL)
    head = k.slub._slab_of[(obj - PAGE_OFFSET) >> 12].pfn
    rec = records(PO.read_page_owner(k))[head]
    order = int(rec.split("order ")[1].split(",")[0])
    assert order == 3  # 10 objects of 3000 bytes per 32 KiB slab
    # allocate_slab(): (GFP_KERNEL | __GFP_COMP | NOWARN | NORETRY | NOMEMALLOC) & ~__GFP_RECLAIM
    assert rec.startswith("Page allocated via order 3, mask 0xd20c0(__GFP_IO|__GFP_FS|__GFP_NOWARN|"
                          "__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC)\n")
    flags = rec.split("\n")[1].split("(")[1].rstrip(")").split("|")
    assert "slab" in flags and "head" in flags
    names = [f.split("+")[0].strip() for f in stack_of(rec)]
    assert names[:2] == ["get_page_from_freelist", "__alloc_pages_nodemask"]
    assert "allocate_slab" in names and "new_slab" in names and "___slab_alloc" in names
    assert names[-1] == "kmem_cache_alloc" and names.count("kmem_cache_alloc") == 1
    check(k)
    k.kmem_cache_free(cache, obj)
    k.kmem_cache_destroy(cache)
    check(k)


# ---------------------------------------------------------------- 13
def test_page_owner_s13_deterministic():
    def run():
        k = machine()
        t, a, _ = scenario4(k)
        c = t.fork()
        c.write(a, b"\x02")
        k.alloc_pages(GFP_KERNEL, 2)
        c.exit()
        return PO.read_page_owner(k)
    assert run() == run()


def test_page_owner_stack_depot_full_uses_failure_handle():
    k = machine()
    k.page_owner.depot.limit = len(k.page_owner.depot)  # full
    page = k.alloc_pages(GFP_KERNEL, 0)
    rec = records(PO.read_page_owner(k))[page.pfn]
    assert stack_of(rec)[0].startswith(" register_failure_stack+")
    check(k)
