"""mm_struct, vm_area_struct, anon_vma (include/linux/mm_types.h, mm.h, rmap.h)."""
from __future__ import annotations

import itertools

import numpy as np

# vm_flags (include/linux/mm.h, v5.7)
VM_NONE, VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 0, 0x1, 0x2, 0x4, 0x8
VM_MAYREAD, VM_MAYWRITE, VM_MAYEXEC, VM_MAYSHARE = 0x10, 0x20, 0x40, 0x80
VM_GROWSDOWN, VM_UFFD_MISSING, VM_PFNMAP, VM_DENYWRITE = 0x100, 0x200, 0x400, 0x800
VM_UFFD_WP, VM_LOCKED, VM_IO, VM_SEQ_READ, VM_RAND_READ = 0x1000, 0x2000, 0x4000, 0x8000, 0x10000
VM_DONTCOPY, VM_DONTEXPAND, VM_LOCKONFAULT, VM_ACCOUNT = 0x20000, 0x40000, 0x80000, 0x100000
VM_NORESERVE, VM_HUGETLB, VM_SYNC, VM_ARCH_1 = 0x200000, 0x400000, 0x800000, 0x1000000
VM_WIPEONFORK, VM_DONTDUMP, VM_SOFTDIRTY, VM_MIXEDMAP = 0x2000000, 0x4000000, 0x8000000, 0x10000000
VM_HUGEPAGE, VM_NOHUGEPAGE, VM_MERGEABLE = 0x20000000, 0x40000000, 0x80000000
VM_GROWSUP = VM_NONE
VM_STACK = VM_GROWSDOWN
VM_DATA_DEFAULT_FLAGS = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
VM_STACK_DEFAULT_FLAGS = VM_DATA_DEFAULT_FLAGS
VM_STACK_FLAGS = VM_STACK | VM_STACK_DEFAULT_FLAGS | VM_ACCOUNT
VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP
VM_LOCKED_CLEAR_MASK = ~(VM_LOCKED | VM_LOCKONFAULT)

# mm counters
MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES = 0, 1, 2, 3
NR_MM_COUNTERS = 4
MM_COUNTER_NAMES = ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SWAPENTS", "MM_SHMEMPAGES")

# mm->flags
MMF_VM_MERGEABLE, MMF_VM_HUGEPAGE, MMF_OOM_SKIP, MMF_UNSTABLE = 16, 17, 21, 22
MMF_OOM_VICTIM, MMF_OOM_REAP_QUEUED = 25, 26

_ids = itertools.count(1)
DENSE_BITS = 18  # pmd indexes per 512 GiB region
DENSE_MASK = (1 << DENSE_BITS) - 1


class AnonVma:
    """struct anon_vma: the root and the VMAs chained to it (its interval tree)."""

    __slots__ = ("id", "root", "parent", "vmas", "degree", "refcount")

    def __init__(self, parent: "AnonVma | None" = None):
        self.id = next(_ids) << 1  # even: low bit is PAGE_MAPPING_ANON
        self.parent = parent or self
        self.root = parent.root if parent else self
        self.vmas: set = set()
        self.degree = 1
        self.refcount = 1

    def __repr__(self) -> str:
        return f"<anon_vma {self.id:#x}>"


class Vma:
    """struct vm_area_struct."""

    __slots__ = ("vm_start", "vm_end", "vm_flags", "vm_mm", "vm_pgoff", "vm_file",
                 "anon_vma", "anon_vma_chain", "name", "shmem", "vm_page_prot", "id")

    def __init__(self, mm, start: int, end: int, flags: int, pgoff: int = 0, file=None):
        self.vm_mm = mm
        self.vm_start = start
        self.vm_end = end
        self.vm_flags = flags
        self.vm_pgoff = pgoff
        self.vm_file = file
        self.anon_vma: AnonVma | None = None
        self.anon_vma_chain: list[AnonVma] = []
        self.name: str | None = None  # "[heap]", "[stack]"
        self.shmem = None
        self.vm_page_prot = 0
        self.id = next(_ids)

    def __repr__(self) -> str:
        return f"<vma {self.vm_start:#x}-{self.vm_end:#x} {self.vm_flags:#x}>"

    def vma_pages(self) -> int:
        return (self.vm_end - self.vm_start) >> 12

    def is_anonymous(self) -> bool:
        """vma_is_anonymous(): no vm_ops (shared anon mappings are shmem files)."""
        return self.vm_file is None and self.shmem is None

    def linear_page_index(self, addr: int) -> int:
        return ((addr - self.vm_start) >> 12) + self.vm_pgoff

    def is_cow_mapping(self) -> bool:
        return (self.vm_flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE


class MmStruct:
    """struct mm_struct."""

    def __init__(self, k, owner=None):
        self.id = next(_ids)
        self.k = k
        self.owner = owner
        self.owner_pid = owner.pid if owner is not None else 0
        self.mm_users = 1
        self.mm_count = 1
        self.freed = False
        self.vmas: list[Vma] = []  # sorted by vm_start
        self._starts: list[int] = []
        self.map_count = 0
        self.total_vm = self.locked_vm = self.pinned_vm = 0
        self.data_vm = self.exec_vm = self.stack_vm = 0
        self.hiwater_rss = self.hiwater_vm = 0
        self.rss_stat = [0] * NR_MM_COUNTERS
        self.pgtables_bytes = 0
        self.start_code = self.end_code = self.start_data = self.end_data = 0
        self.start_brk = self.brk = self.start_stack = 0
        self.mmap_base = 0
        self.task_size = 0x7FFFFFFFF000
        self.def_flags = 0
        self.flags = 0
        self.notifier_subscriptions = None
        self.page_table_lock = None  # SpinLock, set by pgtable.mm_init_pgtables
        self.pgd = None
        self.pmd_huge_pte = None
        # PTE tables: rows of one per-mm pool so the batched access path can
        # gather entries of many tables in one NumPy operation.
        self.pte_pool = np.zeros((8, 512), np.uint64)
        self.free_rows: list[int] = list(range(7, -1, -1))
        self.pte_tables: dict[int, object] = {}  # pmd index (addr >> 21) -> PageTable
        self.pte_dense: dict[int, np.ndarray] = {}  # (addr >> 39) -> pool row per pmd index

    def __repr__(self) -> str:
        return f"<mm {self.id:#x} pid={self.owner_pid}>"

    # ---- PTE pool
    def alloc_row(self) -> int:
        if not self.free_rows:
            n = len(self.pte_pool)
            pool = np.zeros((n * 2, 512), np.uint64)
            pool[:n] = self.pte_pool
            self.pte_pool = pool
            self.free_rows = list(range(2 * n - 1, n - 1, -1))
        row = self.free_rows.pop()
        self.pte_pool[row] = 0
        return row

    def free_row(self, row: int) -> None:
        self.pte_pool[row] = 0
        self.free_rows.append(row)

    def set_pte_table(self, key: int, table) -> None:
        """Index a PTE table by its pmd index (addr >> 21), or drop it (table None).

        Besides the dict, each 512 GiB region in use keeps a dense int32 map from
        pmd index to pool row (-1 = none): the batched access path looks up
        millions of addresses with one gather instead of a search."""
        slot, off = key >> DENSE_BITS, key & DENSE_MASK
        d = self.pte_dense.get(slot)
        if table is None:
            del self.pte_tables[key]
            d[off] = -1
            return
        self.pte_tables[key] = table
        if d is None:
            d = self.pte_dense[slot] = np.full(1 << DENSE_BITS, -1, np.int32)
        d[off] = table.row

    # ---- counters
    def get_mm_counter(self, member: int) -> int:
        return self.rss_stat[member]

    def add_mm_counter(self, member: int, value: int) -> None:
        self.rss_stat[member] += value

    def get_mm_rss(self) -> int:
        return self.rss_stat[MM_FILEPAGES] + self.rss_stat[MM_ANONPAGES] + self.rss_stat[MM_SHMEMPAGES]

    def update_hiwater_rss(self) -> None:
        self.hiwater_rss = max(self.hiwater_rss, self.get_mm_rss())

    def update_hiwater_vm(self) -> None:
        self.hiwater_vm = max(self.hiwater_vm, self.total_vm)
