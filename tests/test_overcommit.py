"""Acceptance scenarios of shared/spec/overcommit-accounting.md.

The spec's Machine O has 1 GiB of swap, which linmm does not model yet.  These
tests run on Machine O' = MachineConfig(zones={"DMA32": "1G", "Normal": "3G"}):
totalram_pages = 262144 + 786432 = 1048576, total_swap_pages = 0, no hugepages,
and every expected number is recomputed from the spec's formulas
(op 1 vm_commit_limit, op 2 __vm_enough_memory) with total_swap_pages = 0:

    CommitLimit (ratio 50) = 1048576 * 50 // 100 + 0 = 524288 pages = 2097152 kB

Every spawned task owns a 132 KiB stack VMA (33 pages) that carries VM_ACCOUNT
(spec op 3 "stack VMAs carry VM_ACCOUNT"), so C0 = 33 pages per live task.
"""
import re

import pytest

import linmm
from linmm import (MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, MREMAP_MAYMOVE,
                   PROT_NONE, PROT_READ, PROT_WRITE)
from linmm.mm.mm_types import VM_ACCOUNT, VM_NORESERVE

PAGE = 4096
MiB = 1 << 20
GiB = 1 << 30
TOTALRAM = 1048576          # pages: DMA32 1 GiB (262144) + Normal 3 GiB (786432)
SWAP = 0                    # total_swap_pages: swap is not modelled
STACK_PAGES = 33            # the 132 KiB stack VMA of k.spawn()
STACK_START = 0x7FFFFFFDE000
BRK0 = 0x555555559000
RW = PROT_READ | PROT_WRITE
PRIV = MAP_PRIVATE | MAP_ANONYMOUS
LIMIT50 = TOTALRAM * 50 // 100 + SWAP   # = 524288 pages


# ---------------------------------------------------------------- helpers
def machine_o():
    return linmm.Kernel(linmm.MachineConfig(zones={"DMA32": "1G", "Normal": "3G"}))


def meminfo_line(k, key):
    lines = [ln for ln in k.read_file("/proc/meminfo").split("\n") if ln.startswith(key + ":")]
    assert len(lines) == 1, f"/proc/meminfo must have exactly one {key} line"
    return lines[0]


def kb_line(key, kb):
    """show_val_kb(): a 16-column label, the value in %8lu, then ' kB'."""
    label = key + ":"
    assert len(label) <= 16
    return label + " " * (16 - len(label)) + f"{kb:8d} kB"


def committed_pages(k):
    """Committed_AS read from /proc/meminfo, checked for its exact format, in pages."""
    line = meminfo_line(k, "Committed_AS")
    m = re.fullmatch(r"Committed_AS:   ( *\d+) kB", line)
    assert m and len(m.group(1)) >= 8, repr(line)
    kb = int(m.group(1))
    assert line == kb_line("Committed_AS", kb)
    assert kb % 4 == 0
    return kb // 4


def assert_committed(k, pages):
    assert meminfo_line(k, "Committed_AS") == kb_line("Committed_AS", pages * 4)


def assert_limit(k, pages):
    assert meminfo_line(k, "CommitLimit") == kb_line("CommitLimit", pages * 4)


def sysctl(k, name, value):
    k.write_file(f"/proc/sys/vm/{name}", f"{value}\n")
    assert k.read_file(f"/proc/sys/vm/{name}") == f"{value}\n"


def mode2_no_reserves(k):
    """overcommit_memory = 2 and both reserves 0: allowed = CommitLimit = 524288 pages."""
    sysctl(k, "overcommit_memory", 2)
    sysctl(k, "admin_reserve_kbytes", 0)
    sysctl(k, "user_reserve_kbytes", 0)


def vma_at(t, addr):
    for v in t.mm.vmas:
        if v.vm_start <= addr < v.vm_end:
            return v
    return None


def maps(k, t):
    return k.read_file(f"/proc/{t.pid}/maps")


def vmflags_of(k, t, start):
    """The VmFlags mnemonics of the smaps entry that starts at start."""
    lines = k.read_file(f"/proc/{t.pid}/smaps").split("\n")
    head = [i for i, ln in enumerate(lines) if ln.startswith(f"{start:08x}-")]
    assert len(head) == 1, f"no smaps entry at {start:#x}"
    for ln in lines[head[0]:]:
        if ln.startswith("VmFlags: "):
            return ln[len("VmFlags: "):].split()
    raise AssertionError("no VmFlags line")


def free_pages(k):
    return sum(z.vm_stat["nr_free_pages"] for pg in k.pgdats for z in pg.node_zones)


# ---------------------------------------------------------------- scenarios
def test_overcommit_s1_defaults():
    k = machine_o()
    assert k.totalram_pages() == TOTALRAM
    free_kbytes = int(meminfo_line(k, "MemFree").split()[1])   # right after boot
    assert k.read_file("/proc/sys/vm/overcommit_memory") == "0\n"
    assert k.read_file("/proc/sys/vm/overcommit_ratio") == "50\n"
    assert k.read_file("/proc/sys/vm/overcommit_kbytes") == "0\n"
    # init_admin_reserve: min(free_kbytes/32, 8192); init_user_reserve: min(free_kbytes/32, 131072)
    assert k.read_file("/proc/sys/vm/admin_reserve_kbytes") == f"{min(free_kbytes // 32, 8192)}\n"
    assert k.read_file("/proc/sys/vm/user_reserve_kbytes") == f"{min(free_kbytes // 32, 131072)}\n"
    # CommitLimit = 1048576 * 50 // 100 + 0 = 524288 pages = 2097152 kB
    assert meminfo_line(k, "CommitLimit") == "CommitLimit:     2097152 kB"
    assert meminfo_line(k, "Committed_AS") == "Committed_AS:          0 kB"
    # the two lines follow WritebackTmp (balance-spec meminfo order)
    keys = [ln.split(":")[0] for ln in k.read_file("/proc/meminfo").split("\n") if ln]
    i = keys.index("WritebackTmp")
    assert keys[i + 1:i + 3] == ["CommitLimit", "Committed_AS"]
    k.check()


def test_overcommit_api_kernel_entry_points():
    """Spec ops 1 and 2 name the entry points k.vm_commit_limit() -> int and
    k.vm_enough_memory(mm, pages, task) -> None (ENOMEM, charge undone, on refusal).
    Only refusals are exercised here, so no charge is left without a VMA."""
    k = machine_o()
    t = k.spawn("api")
    c0 = STACK_PAGES
    assert k.vm_commit_limit() == LIMIT50 == 524288       # 1048576 * 50 // 100 + 0
    with pytest.raises(linmm.errors.ENOMEM):              # mode 0: 1048577 > 1048576 + 0
        k.vm_enough_memory(t.mm, TOTALRAM + SWAP + 1, t)
    assert_committed(k, c0)
    mode2_no_reserves(k)
    with pytest.raises(linmm.errors.ENOMEM):              # mode 2: 33 + 524255 = 524288, not <
        k.vm_enough_memory(t.mm, LIMIT50 - c0, t)
    assert_committed(k, c0)
    sysctl(k, "overcommit_kbytes", 4096)                  # 4096 >> 2 = 1024 pages + 0 swap
    assert k.vm_commit_limit() == 1024
    k.check()


def test_overcommit_s2_mode0_single_request_check():
    k = machine_o()
    t = k.spawn("s2")
    c0 = STACK_PAGES
    assert committed_pages(k) == c0
    free0 = free_pages(k)
    before = maps(k, t)
    # 1048577 pages > totalram 1048576 + swap 0 -> ENOMEM
    with pytest.raises(linmm.errors.ENOMEM) as ei:
        t.mmap(0, (TOTALRAM + SWAP + 1) * PAGE, RW, PRIV)
    assert ei.value.errno == 12
    assert maps(k, t) == before
    assert_committed(k, c0)
    # 1048576 pages (= totalram + swap) succeeds: + 1048576 pages = + 4194304 kB
    n = TOTALRAM + SWAP
    a = t.mmap(0, n * PAGE, RW, PRIV)
    assert_committed(k, c0 + n)
    assert meminfo_line(k, "Committed_AS") == kb_line("Committed_AS", 4 * 33 + 4194304)
    assert free_pages(k) == free0            # nothing was allocated (no page faulted)
    k.check()
    # mode 0 only looks at the request: a second one succeeds too
    b = t.mmap(0, n * PAGE, RW, PRIV)
    assert_committed(k, c0 + 2 * n)
    k.check()
    t.munmap(a, n * PAGE)
    t.munmap(b, n * PAGE)
    assert_committed(k, c0)
    k.check()


def test_overcommit_s3_map_noreserve():
    k = machine_o()
    t = k.spawn("s3")
    c0 = STACK_PAGES
    # mode 0: MAP_NORESERVE sets VM_NORESERVE, the mapping is not accountable
    a = t.mmap(0, GiB, RW, PRIV | MAP_NORESERVE)
    assert_committed(k, c0)
    fl = vmflags_of(k, t, a)
    assert "nr" in fl and "ac" not in fl
    k.check()
    # mode 2 ignores MAP_NORESERVE: + 262144 pages = + 1048576 kB
    sysctl(k, "overcommit_memory", 2)
    b = t.mmap(0, GiB, RW, PRIV | MAP_NORESERVE)
    assert_committed(k, c0 + GiB // PAGE)
    assert meminfo_line(k, "Committed_AS") == kb_line("Committed_AS", 132 + 1048576)
    fl = vmflags_of(k, t, b)
    assert "ac" in fl and "nr" not in fl
    k.check()
    t.munmap(b, GiB)
    t.munmap(a, GiB)
    assert_committed(k, c0)
    k.check()


def test_overcommit_s4_mode1_always():
    k = machine_o()
    t = k.spawn("s4")
    c0 = STACK_PAGES
    sysctl(k, "overcommit_memory", 1)
    size = 64 * GiB                                   # 16777216 pages > RAM + swap
    a = t.mmap(0, size, RW, PRIV)
    assert_committed(k, c0 + size // PAGE)
    assert meminfo_line(k, "Committed_AS") == kb_line("Committed_AS", 132 + 67108864)
    free0 = free_pages(k)
    for i in range(10):
        t.touch(a + i * PAGE, write=True)
    assert free_pages(k) < free0                      # pages were really faulted in
    assert_committed(k, c0 + size // PAGE)            # ... and cost nothing more
    k.check()
    t.munmap(a, size)
    assert_committed(k, c0)
    k.check()


def test_overcommit_s5_mode2_limit_exact():
    k = machine_o()
    t = k.spawn("s5")
    c0 = STACK_PAGES
    mode2_no_reserves(k)
    # allowed = 524288 (no admin/user reserve); OK iff committed incl. the charge < allowed.
    # The last page that fits leaves Committed_AS = 524287 = allowed - 1.
    n = (LIMIT50 - 1) - c0                            # 524254 pages
    before = maps(k, t)
    with pytest.raises(linmm.errors.ENOMEM):          # one page more: 524288 is not < 524288
        t.mmap(0, (n + 1) * PAGE, RW, PRIV)
    assert maps(k, t) == before
    assert_committed(k, c0)
    a = t.mmap(0, n * PAGE, RW, PRIV)
    assert_committed(k, LIMIT50 - 1)
    assert meminfo_line(k, "Committed_AS") == "Committed_AS:    2097148 kB"
    nvmas = len(t.mm.vmas)
    before = maps(k, t)
    with pytest.raises(linmm.errors.ENOMEM):
        t.mmap(0, PAGE, RW, PRIV)
    assert meminfo_line(k, "Committed_AS") == "Committed_AS:    2097148 kB"
    assert len(t.mm.vmas) == nvmas and maps(k, t) == before   # the failed call made no VMA
    k.check()
    t.munmap(a, n * PAGE)
    assert_committed(k, c0)
    k.check()


def test_overcommit_s6_mode2_admin_and_user_reserves():
    k = machine_o()
    user = k.spawn("user", uid=1000)
    root = k.spawn("root")
    assert user.cap_sys_admin is False and root.cap_sys_admin is True
    c0 = 2 * STACK_PAGES
    # total_vm = 100000 pages for both: the stack (33) + a PROT_NONE private mapping of
    # 99967 pages (not writable -> not accountable, costs no commit)
    for t in (user, root):
        t.mmap(0, (100000 - STACK_PAGES) * PAGE, PROT_NONE, PRIV)
        assert t.mm.total_vm == 100000
    assert_committed(k, c0)
    sysctl(k, "overcommit_memory", 2)
    sysctl(k, "admin_reserve_kbytes", 8192)
    sysctl(k, "user_reserve_kbytes", 131072)
    # allowed = 524288 - (8192 >> 2 = 2048, non-root only) - min(100000 // 32 = 3125, 131072 >> 2)
    allowed_user = LIMIT50 - 2048 - 3125              # 519115
    allowed_root = LIMIT50 - 3125                     # 521163
    assert (allowed_user, allowed_root) == (519115, 521163)
    # non-root: succeeds iff C0 + n < 519115
    n = allowed_user - c0
    with pytest.raises(linmm.errors.ENOMEM):
        user.mmap(0, n * PAGE, RW, PRIV)
    assert_committed(k, c0)
    a = user.mmap(0, (n - 1) * PAGE, RW, PRIV)
    assert_committed(k, allowed_user - 1)
    k.check()
    user.munmap(a, (n - 1) * PAGE)
    assert_committed(k, c0)
    # root: no admin reserve, succeeds iff C0 + n < 521163
    n = allowed_root - c0
    with pytest.raises(linmm.errors.ENOMEM):
        root.mmap(0, n * PAGE, RW, PRIV)
    assert_committed(k, c0)
    b = root.mmap(0, (n - 1) * PAGE, RW, PRIV)
    assert_committed(k, allowed_root - 1)
    k.check()
    root.munmap(b, (n - 1) * PAGE)
    assert_committed(k, c0)
    k.check()


def test_overcommit_s7_mprotect_charges_on_write():
    k = machine_o()
    t = k.spawn("s7")
    c0 = STACK_PAGES
    a = t.mmap(0, GiB, PROT_READ, PRIV)
    assert_committed(k, c0)
    t.mprotect(a, GiB, RW)
    assert_committed(k, c0 + 262144)                  # + 1048576 kB
    assert "ac" in vmflags_of(k, t, a)
    k.check()
    t.mprotect(a, GiB, PROT_READ)                     # removing write never uncharges
    assert_committed(k, c0 + 262144)
    k.check()
    t.munmap(a, GiB)
    assert_committed(k, c0)
    k.check()

    # mode 2 with too little room: allowed = 524288 (no reserves).  A filler of
    # 524288 - 262144 - 33 = 262111 pages leaves committed = 262144, and the mprotect
    # would make it 524288, which is not < 524288.
    mode2_no_reserves(k)
    ro = t.mmap(0, GiB, PROT_READ, PRIV)
    filler = LIMIT50 - 262144 - c0
    f = t.mmap(0, filler * PAGE, RW, PRIV)
    assert_committed(k, c0 + filler)
    line = [ln for ln in maps(k, t).split("\n") if ln.startswith(f"{ro:08x}-")]
    assert len(line) == 1 and line[0].split()[1] == "r--p"
    with pytest.raises(linmm.errors.ENOMEM):
        t.mprotect(ro, GiB, RW)
    assert_committed(k, c0 + filler)
    line2 = [ln for ln in maps(k, t).split("\n") if ln.startswith(f"{ro:08x}-")]
    assert line2 == line                              # still read-only, same extent
    assert not vma_at(t, ro).vm_flags & VM_ACCOUNT
    with pytest.raises(linmm.Signal) as si:
        t.touch(ro, write=True)
    assert si.value.signo == 11
    k.check()
    # one page of room more and the same mprotect fits exactly (524287 < 524288)
    t.munmap(f, PAGE)
    t.mprotect(ro, GiB, RW)
    assert_committed(k, LIMIT50 - 1)
    k.check()


def test_overcommit_s9_shared_anonymous():
    k = machine_o()
    t = k.spawn("s9")
    c0 = STACK_PAGES
    size = 100 * MiB                                  # VM_ACCT(size) = 25600 pages
    a = t.mmap(0, size, RW, MAP_SHARED | MAP_ANONYMOUS)
    assert_committed(k, c0 + 25600)                   # + 102400 kB at mmap
    k.check()
    c = t.fork()
    # the child adds nothing for the shmem object; only its own copy of the
    # accounted stack VMA (33 pages, dup_mmap charges every VM_ACCOUNT VMA)
    assert_committed(k, c0 + 25600 + STACK_PAGES)
    k.check()
    t.munmap(a, size)                                 # the child still maps it
    assert_committed(k, c0 + 25600 + STACK_PAGES)
    k.check()
    c.munmap(a, size)                                 # last user: object destroyed
    assert_committed(k, c0 + STACK_PAGES)
    k.check()
    c.exit()
    assert_committed(k, c0)
    k.check()

    # MAP_NORESERVE in mode 0: per-page charge (shmem_acct_block)
    b = t.mmap(0, size, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE)
    assert_committed(k, c0)                           # + 0 at mmap
    t.touch(b, write=True)
    assert_committed(k, c0 + 1)                       # + 4 kB
    t.touch(b + 10 * PAGE, write=True)
    t.touch(b + 20 * PAGE, write=False)               # a read fault allocates a shmem page too
    assert_committed(k, c0 + 3)
    t.touch(b, write=True)                            # not a first touch: nothing more
    t.touch(b + 20 * PAGE, write=True)
    assert_committed(k, c0 + 3)
    k.check()
    t.munmap(b, size)                                 # object destroyed: - 4 kB per page
    assert_committed(k, c0)
    k.check()


def test_overcommit_s10_fork_charge_and_mode2_failure():
    k = machine_o()
    t = k.spawn("s10")
    a = t.mmap(0, GiB, RW, PRIV)
    c0 = STACK_PAGES + 262144
    assert_committed(k, c0)
    ntasks = len(k.tasks)
    c = t.fork()
    # dup_mmap charges each VM_ACCOUNT VMA again: the 1 GiB mapping (+1048576 kB)
    # and the 33-page stack (+132 kB)
    assert_committed(k, c0 + 262144 + STACK_PAGES)
    k.check()
    c.exit()
    assert_committed(k, c0)
    assert len(k.tasks) == ntasks
    k.check()

    # mode 2: allowed (root) = 524288 - min(total_vm // 32, 131072 >> 2)
    #                        = 524288 - min(262177 // 32 = 8193, 32768) = 516095
    # room = 516095 - 262177 = 253918 pages < 1 GiB (262144 pages) -> fork fails
    sysctl(k, "overcommit_memory", 2)
    assert k.read_file("/proc/sys/vm/user_reserve_kbytes") == "131072\n"
    assert t.mm.total_vm == 262144 + STACK_PAGES
    assert 516095 - c0 < 262144
    with pytest.raises(linmm.errors.ENOMEM):
        t.fork()
    assert_committed(k, c0)
    assert len(k.tasks) == ntasks
    assert t.children == []
    k.check()
    t.munmap(a, GiB)
    assert_committed(k, STACK_PAGES)
    k.check()


def test_overcommit_s11_brk():
    k = machine_o()
    t = k.spawn("s11")
    c0 = STACK_PAGES
    assert t.brk(0) == BRK0
    assert t.brk(BRK0 + MiB) == BRK0 + MiB
    assert_committed(k, c0 + 256)                     # + 1024 kB
    heap = vma_at(t, BRK0)
    assert heap is not None and heap.vm_end == BRK0 + MiB and heap.vm_flags & VM_ACCOUNT
    k.check()
    assert t.brk(BRK0) == BRK0
    assert_committed(k, c0)                           # - 1024 kB
    assert vma_at(t, BRK0) is None
    k.check()

    # mode 2 at the limit: committed = allowed - 1 = 524287, growth by one page refused
    mode2_no_reserves(k)
    filler = (LIMIT50 - 1) - c0
    t.mmap(0, filler * PAGE, RW, PRIV)
    assert_committed(k, LIMIT50 - 1)
    assert t.brk(BRK0 + PAGE) == BRK0                 # the old break, no errno
    assert_committed(k, LIMIT50 - 1)
    assert vma_at(t, BRK0) is None
    assert "[heap]" not in maps(k, t)
    k.check()


def test_overcommit_s12_mremap():
    k = machine_o()
    t = k.spawn("s12")
    c0 = STACK_PAGES
    a = t.mmap(0, MiB, RW, PRIV)
    assert_committed(k, c0 + 256)
    b = t.mremap(a, MiB, 2 * MiB, MREMAP_MAYMOVE)
    assert_committed(k, c0 + 512)                     # + 1024 kB
    k.check()
    assert t.mremap(b, 2 * MiB, MiB) == b
    assert_committed(k, c0 + 256)                     # - 1024 kB
    k.check()

    # mode 2 at the limit: the grow fails with ENOMEM, the old mapping is intact
    mode2_no_reserves(k)
    t.write(b, b"intact")
    filler = (LIMIT50 - 1) - (c0 + 256)
    # placed away from b (at an 8 GiB hint) so that it cannot merge with it
    assert t.mmap(8 * GiB, filler * PAGE, RW, PRIV) == 8 * GiB
    assert_committed(k, LIMIT50 - 1)
    line = [ln for ln in maps(k, t).split("\n") if ln.startswith(f"{b:08x}-")]
    assert line == [f"{b:08x}-{b + MiB:08x} rw-p 00000000 00:00 0 "]
    with pytest.raises(linmm.errors.ENOMEM):
        t.mremap(b, MiB, 2 * MiB, MREMAP_MAYMOVE)
    with pytest.raises(linmm.errors.ENOMEM):
        t.mremap(b, MiB, 2 * MiB, 0)
    assert_committed(k, LIMIT50 - 1)
    assert [ln for ln in maps(k, t).split("\n") if ln.startswith(f"{b:08x}-")] == line
    v = vma_at(t, b)
    assert (v.vm_start, v.vm_end) == (b, b + MiB) and v.vm_flags & VM_ACCOUNT
    assert t.read(b, 6) == b"intact"
    k.check()


def test_overcommit_s13_sysctls():
    k = machine_o()
    # overcommit_memory: proc_dointvec_minmax 0..2
    for bad in ("3", "-1", "abc"):
        with pytest.raises(linmm.errors.EINVAL) as ei:
            k.write_file("/proc/sys/vm/overcommit_memory", bad + "\n")
        assert ei.value.errno == 22
        assert k.read_file("/proc/sys/vm/overcommit_memory") == "0\n"
    # overcommit_kbytes = 1048576: ratio reads 0, CommitLimit = 1048576 >> 2 + 0
    #   = 262144 pages = 1048576 kB
    k.write_file("/proc/sys/vm/overcommit_kbytes", "1048576\n")
    assert k.read_file("/proc/sys/vm/overcommit_kbytes") == "1048576\n"
    assert k.read_file("/proc/sys/vm/overcommit_ratio") == "0\n"
    assert meminfo_line(k, "CommitLimit") == "CommitLimit:     1048576 kB"
    # negative overcommit_kbytes: unsigned parse -> EINVAL, unchanged
    with pytest.raises(linmm.errors.EINVAL):
        k.write_file("/proc/sys/vm/overcommit_kbytes", "-1\n")
    assert k.read_file("/proc/sys/vm/overcommit_kbytes") == "1048576\n"
    assert k.read_file("/proc/sys/vm/overcommit_ratio") == "0\n"
    # overcommit_ratio = 60: kbytes reads 0, CommitLimit = 1048576 * 60 // 100 + 0
    #   = 629145 pages = 2516580 kB
    k.write_file("/proc/sys/vm/overcommit_ratio", "60\n")
    assert k.read_file("/proc/sys/vm/overcommit_ratio") == "60\n"
    assert k.read_file("/proc/sys/vm/overcommit_kbytes") == "0\n"
    assert meminfo_line(k, "CommitLimit") == "CommitLimit:     2516580 kB"
    # non-numeric ratio -> EINVAL, unchanged
    with pytest.raises(linmm.errors.EINVAL):
        k.write_file("/proc/sys/vm/overcommit_ratio", "abc\n")
    assert k.read_file("/proc/sys/vm/overcommit_ratio") == "60\n"
    # overcommit_ratio is a plain integer: a negative value is accepted
    k.write_file("/proc/sys/vm/overcommit_ratio", "-5\n")
    assert k.read_file("/proc/sys/vm/overcommit_ratio") == "-5\n"
    assert k.read_file("/proc/sys/vm/overcommit_kbytes") == "0\n"
    k.write_file("/proc/sys/vm/overcommit_ratio", "50\n")
    assert_limit(k, LIMIT50)
    # the mode is valid at 0, 1, 2
    for mode in ("2", "1", "0"):
        k.write_file("/proc/sys/vm/overcommit_memory", mode + "\n")
        assert k.read_file("/proc/sys/vm/overcommit_memory") == mode + "\n"
    k.check()


def test_overcommit_s15_stack_growth_mode2():
    k = machine_o()
    t = k.spawn("s15")
    c0 = STACK_PAGES
    stack = vma_at(t, STACK_START)
    assert (stack.vm_start, stack.vm_end) == (STACK_START, 0x7FFFFFFFF000)
    mode2_no_reserves(k)
    allowed = LIMIT50                                  # 524288, no reserves
    # room for exactly one more page: Committed_AS = allowed - 2 = 524286
    filler = (allowed - 2) - c0
    t.mmap(0, filler * PAGE, RW, PRIV)
    assert_committed(k, allowed - 2)
    # a touch of the page just below the stack VMA grows it by one page (+4 kB)
    t.touch(STACK_START - PAGE, write=True)
    assert stack.vm_start == STACK_START - PAGE
    assert_committed(k, allowed - 1)
    assert meminfo_line(k, "Committed_AS") == "Committed_AS:    2097148 kB"
    k.check()
    # the next page below: acct_stack_growth refused -> SIGSEGV, nothing changed
    addr = STACK_START - 2 * PAGE
    with pytest.raises(linmm.Signal) as si:
        t.touch(addr, write=True)
    assert si.value.signo == 11 and si.value.addr == addr
    # arch/x86/mm/fault.c: expand_stack() failure -> bad_area() -> SEGV_MAPERR
    assert si.value.code == 1
    assert t.signals[-1] == (11, 1, addr)
    assert stack.vm_start == STACK_START - PAGE
    assert_committed(k, allowed - 1)
    k.check()


def test_overcommit_s17_partial_munmap():
    k = machine_o()
    t = k.spawn("s17")
    c0 = STACK_PAGES
    a = t.mmap(0, MiB, RW, PRIV)
    assert_committed(k, c0 + 256)
    t.munmap(a + 384 * 1024, 256 * 1024)              # the middle 256 KiB
    assert_committed(k, c0 + 256 - 64)                # - 256 kB
    lo, hi = vma_at(t, a), vma_at(t, a + 640 * 1024)
    assert (lo.vm_start, lo.vm_end) == (a, a + 384 * 1024)
    assert (hi.vm_start, hi.vm_end) == (a + 640 * 1024, a + MiB)
    assert lo.vm_flags & VM_ACCOUNT and hi.vm_flags & VM_ACCOUNT
    assert not lo.vm_flags & VM_NORESERVE
    assert "ac" in vmflags_of(k, t, a) and "ac" in vmflags_of(k, t, a + 640 * 1024)
    assert vma_at(t, a + 384 * 1024) is None
    k.check()
    t.munmap(a, MiB)
    assert_committed(k, c0)
    k.check()


# ---------------------------------------------------------------- live kernel
def test_overcommit_live_mode0_rule_matches_formula():
    """Spec 'Live-kernel check': in mode 0 a private RW anonymous mmap of
    (MemTotal + SwapTotal) kB + 4096 bytes fails with ENOMEM and (M + S) kB succeeds.
    Nothing is touched, so the live machine only sees a transient commit charge."""
    import ctypes
    with open("/proc/sys/vm/overcommit_memory") as f:
        if f.read().strip() != "0":
            pytest.skip("live kernel not in overcommit mode 0")
    info = {}
    with open("/proc/meminfo") as f:
        for ln in f:
            key, rest = ln.split(":", 1)
            info[key] = rest.split()[0]
    total = (int(info["MemTotal"]) + int(info["SwapTotal"])) * 1024
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_uint64
    libc.mmap.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int64]
    libc.munmap.argtypes = [ctypes.c_uint64, ctypes.c_uint64]
    ctypes.set_errno(0)
    r = libc.mmap(0, total + PAGE, RW, PRIV, -1, 0)
    assert r == (1 << 64) - 1 and ctypes.get_errno() == 12
    r = libc.mmap(0, total, RW, PRIV, -1, 0)
    assert r != (1 << 64) - 1
    assert libc.munmap(r, total) == 0
    # the model applies the same rule with its own totalram (swap 0)
    k = machine_o()
    t = k.spawn("live")
    with pytest.raises(linmm.errors.ENOMEM) as ei:
        t.mmap(0, (TOTALRAM + SWAP) * PAGE + PAGE, RW, PRIV)
    assert ei.value.errno == 12
    t.munmap(t.mmap(0, (TOTALRAM + SWAP) * PAGE, RW, PRIV), (TOTALRAM + SWAP) * PAGE)
    k.check()
