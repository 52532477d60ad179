"""VMAs: lookup, split, merge, mmap_region, munmap, brk (mm/mmap.c)."""
from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from ..errors import EEXIST, EINVAL, ENOMEM, EOVERFLOW, EPERM, Errno
from ..uapi import (MAP_DENYWRITE, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_GROWSDOWN,
                    MAP_LOCKED, MAP_NONBLOCK, MAP_NORESERVE, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED,
                    MAP_SYNC, MAP_TYPE, PAGE_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE)
from .mm_types import (VM_ACCOUNT, VM_DATA_DEFAULT_FLAGS, VM_DENYWRITE, VM_EXEC, VM_GROWSDOWN,
                       VM_HUGETLB, VM_LOCKED, VM_LOCKED_CLEAR_MASK, VM_MAYEXEC, VM_MAYREAD,
                       VM_MAYSHARE, VM_MAYWRITE, VM_NORESERVE, VM_READ, VM_SHARED, VM_SOFTDIRTY,
                       VM_SPECIAL, VM_STACK, VM_SYNC, VM_WRITE, MmStruct, Vma)
from .mmu_gather import MmuGather
from .pgtable import PMD_SIZE, vm_get_page_prot

if TYPE_CHECKING:
    from ..kernel import Kernel

TASK_SIZE = 0x7FFFFFFFF000
DEFAULT_MAX_MAP_COUNT = 65530
STACK_GUARD_GAP = 256 << 12
PAGE_MASK = ~(PAGE_SIZE - 1)


def page_align(x: int) -> int:
    return (x + PAGE_SIZE - 1) & PAGE_MASK


def is_exec_mapping(flags: int) -> bool:
    return (flags & (VM_EXEC | VM_WRITE | VM_STACK)) == VM_EXEC


def is_stack_mapping(flags: int) -> bool:
    return (flags & VM_STACK) == VM_STACK


def is_data_mapping(flags: int) -> bool:
    return (flags & (VM_WRITE | VM_SHARED | VM_STACK)) == VM_WRITE


def vm_start_gap(vma: Vma) -> int:
    s = vma.vm_start
    if vma.vm_flags & VM_GROWSDOWN:
        s = max(0, s - STACK_GUARD_GAP)
    return s


def vm_end_gap(vma: Vma) -> int:
    return vma.vm_end


class MmapOps:
    def __init__(self, k: "Kernel"):
        self.k = k
        self.max_map_count = DEFAULT_MAX_MAP_COUNT
        self.mmap_min_addr = 65536
        self.stack_guard_gap = STACK_GUARD_GAP

    # ------------------------------------------------------------ lookup
    @staticmethod
    def find_vma(mm: MmStruct, addr: int) -> Vma | None:
        """The first VMA with vm_end > addr."""
        i = bisect.bisect_right(mm._starts, addr) - 1
        if i >= 0 and mm.vmas[i].vm_end > addr:
            return mm.vmas[i]
        i += 1
        return mm.vmas[i] if i < len(mm.vmas) else None

    @staticmethod
    def find_vma_prev(mm: MmStruct, addr: int) -> tuple[Vma | None, Vma | None]:
        i = bisect.bisect_right(mm._starts, addr) - 1
        if i >= 0 and mm.vmas[i].vm_end > addr:
            return mm.vmas[i], mm.vmas[i - 1] if i > 0 else None
        nxt = mm.vmas[i + 1] if i + 1 < len(mm.vmas) else None
        return nxt, mm.vmas[i] if i >= 0 else None

    @staticmethod
    def vmas_in(mm: MmStruct, start: int, end: int) -> list[Vma]:
        i = max(0, bisect.bisect_right(mm._starts, start) - 1)
        out = []
        while i < len(mm.vmas) and mm.vmas[i].vm_start < end:
            if mm.vmas[i].vm_end > start:
                out.append(mm.vmas[i])
            i += 1
        return out

    @staticmethod
    def neighbours(mm: MmStruct, vma: Vma) -> tuple[Vma | None, Vma | None]:
        i = mm.vmas.index(vma)
        return (mm.vmas[i - 1] if i else None, mm.vmas[i + 1] if i + 1 < len(mm.vmas) else None)

    # ------------------------------------------------------------ link
    @staticmethod
    def vma_link(mm: MmStruct, vma: Vma) -> None:
        i = bisect.bisect_left(mm._starts, vma.vm_start)
        mm.vmas.insert(i, vma)
        mm._starts.insert(i, vma.vm_start)
        mm.map_count += 1

    def vma_unlink(self, mm: MmStruct, vma: Vma) -> None:
        i = mm.vmas.index(vma)
        del mm.vmas[i]
        del mm._starts[i]
        mm.map_count -= 1

    def _restart(self, mm: MmStruct, vma: Vma, start: int) -> None:
        i = mm.vmas.index(vma)
        vma.vm_start = start
        mm._starts[i] = start

    def vm_stat_account(self, mm: MmStruct, flags: int, npages: int) -> None:
        mm.total_vm += npages
        if is_exec_mapping(flags):
            mm.exec_vm += npages
        elif is_stack_mapping(flags):
            mm.stack_vm += npages
        elif is_data_mapping(flags):
            mm.data_vm += npages

    def may_expand_vm(self, mm: MmStruct, flags: int, npages: int, task) -> bool:
        lim_as = task.rlimit("RLIMIT_AS")
        if mm.total_vm + npages > lim_as >> 12:
            return False
        lim_data = task.rlimit("RLIMIT_DATA")
        if is_data_mapping(flags) and mm.data_vm + npages > lim_data >> 12:
            return False
        return True

    # ------------------------------------------------------------ split / merge
    def split_vma(self, mm: MmStruct, vma: Vma, addr: int, new_below: bool) -> Vma:
        """__split_vma(): returns the new VMA; ENOMEM at max_map_count."""
        if mm.map_count >= self.max_map_count:
            raise ENOMEM("split_vma: max_map_count")
        new = Vma(mm, vma.vm_start, vma.vm_end, vma.vm_flags, vma.vm_pgoff, vma.vm_file)
        new.vm_page_prot = vma.vm_page_prot
        new.shmem = vma.shmem
        new.name = vma.name
        if vma.shmem is not None:
            vma.shmem.get()
        if new_below:
            new.vm_end = addr
            self._restart(mm, vma, addr)
            vma.vm_pgoff += (addr - new.vm_start) >> 12
        else:
            new.vm_start = addr
            new.vm_pgoff += (addr - vma.vm_start) >> 12
            vma.vm_end = addr
        self.k.rmap.anon_vma_clone(new, vma)
        new.anon_vma = vma.anon_vma
        self.vma_link(mm, new)
        return new

    @staticmethod
    def is_mergeable_anon_vma(av1, av2, vma: Vma | None) -> bool:
        """One side without an anon_vma merges if the other VMA's chain is singular."""
        if (av1 is None or av2 is None) and (vma is None or len(vma.anon_vma_chain) == 1):
            return True
        return av1 is av2

    @staticmethod
    def is_mergeable_vma(vma: Vma, flags: int, file, shmem=None) -> bool:
        return not ((vma.vm_flags ^ flags) & ~VM_SOFTDIRTY) and vma.vm_file is file and \
            vma.shmem is shmem

    def vma_merge(self, mm: MmStruct, prev: Vma | None, addr: int, end: int, flags: int,
                  anon_vma, file, pgoff: int, shmem=None) -> Vma | None:
        """vma_merge(): extend prev and/or next over [addr, end) if compatible."""
        if flags & VM_SPECIAL:
            return None
        nxt = self.find_vma(mm, prev.vm_end if prev else 0) if prev else (mm.vmas[0] if mm.vmas else None)
        if nxt is not None and nxt.vm_end == end:
            nxt = self.find_vma(mm, end)
        pglen = (end - addr) >> 12
        can_prev = (prev is not None and prev.vm_end == addr and
                    self.is_mergeable_vma(prev, flags, file, shmem) and
                    self.is_mergeable_anon_vma(anon_vma, prev.anon_vma, prev) and
                    prev.vm_pgoff + ((prev.vm_end - prev.vm_start) >> 12) == pgoff)
        can_next = (nxt is not None and end == nxt.vm_start and
                    self.is_mergeable_vma(nxt, flags, file, shmem) and
                    self.is_mergeable_anon_vma(anon_vma, nxt.anon_vma, nxt) and
                    nxt.vm_pgoff == pgoff + pglen)
        if can_prev:
            if can_next and self.is_mergeable_anon_vma(prev.anon_vma, nxt.anon_vma, None):
                prev.vm_end = nxt.vm_end
                self._absorb(mm, prev, nxt)
            else:
                prev.vm_end = end
            return prev
        if can_next:
            self._restart(mm, nxt, addr)
            nxt.vm_pgoff = pgoff
            return nxt
        return None

    def _absorb(self, mm: MmStruct, keep: Vma, gone: Vma) -> None:
        """vma_adjust's removal of a VMA that merged into keep."""
        if keep.anon_vma is None and gone.anon_vma is not None:
            keep.anon_vma = gone.anon_vma
            self.k.rmap.anon_vma_clone(keep, gone)
        self.vma_unlink(mm, gone)
        self.k.rmap.unlink_anon_vmas(gone)
        if gone.shmem is not None:
            gone.shmem.put(self.k)

    def try_merge_around(self, mm: MmStruct, vma: Vma) -> Vma:
        """vma_merge() of a whole VMA whose flags changed (mprotect, madvise, mlock):
        prev (and next too if all three fit) is preferred, else next."""
        prev, nxt = self.neighbours(mm, vma)
        can_prev = (prev is not None and prev.vm_end == vma.vm_start and
                    self.is_mergeable_vma(prev, vma.vm_flags, vma.vm_file, vma.shmem) and
                    self.is_mergeable_anon_vma(vma.anon_vma, prev.anon_vma, prev) and
                    prev.vm_pgoff + prev.vma_pages() == vma.vm_pgoff)
        can_next = (nxt is not None and nxt.vm_start == vma.vm_end and
                    self.is_mergeable_vma(nxt, vma.vm_flags, vma.vm_file, vma.shmem) and
                    self.is_mergeable_anon_vma(vma.anon_vma, nxt.anon_vma, nxt) and
                    nxt.vm_pgoff == vma.vm_pgoff + vma.vma_pages())
        if can_prev:
            prev.vm_end = vma.vm_end
            self._absorb(mm, prev, vma)
            if can_next and self.is_mergeable_anon_vma(prev.anon_vma, nxt.anon_vma, None):
                prev.vm_end = nxt.vm_end
                self._absorb(mm, prev, nxt)
            return prev
        if can_next:
            vma.vm_end = nxt.vm_end
            self._absorb(mm, vma, nxt)
        return vma

    # ------------------------------------------------------------ address space
    def get_unmapped_area(self, mm: MmStruct, addr: int, length: int, flags: int) -> int:
        task_size = mm.task_size
        if length > task_size:
            raise ENOMEM("get_unmapped_area: length")
        if flags & MAP_FIXED:
            if length > task_size - self.mmap_min_addr or addr > task_size - length:
                raise ENOMEM("get_unmapped_area: fixed")
            if addr & ~PAGE_MASK:
                raise EINVAL("get_unmapped_area: unaligned")
            return addr
        if addr:  # arch_get_unmapped_area_topdown(): the hint, if it fits
            addr &= PAGE_MASK & ((1 << 64) - 1)
            vma = self.find_vma(mm, addr)
            if task_size - length >= addr and (vma is None or addr + length <= vm_start_gap(vma)):
                return addr
        a = self.unmapped_area_topdown(mm, length, PAGE_SIZE, mm.mmap_base)
        if a is None:
            a = self.unmapped_area(mm, length, page_align(task_size // 3), task_size)
        if a is None:
            raise ENOMEM("get_unmapped_area: no room")
        return a

    @staticmethod
    def unmapped_area_topdown(mm: MmStruct, length: int, low: int, high: int) -> int | None:
        gap_end = high
        for vma in reversed(mm.vmas):
            if vm_end_gap(vma) >= gap_end:
                gap_end = min(gap_end, vm_start_gap(vma))
                continue
            if gap_end - vm_end_gap(vma) >= length and gap_end - length >= low:
                return gap_end - length
            gap_end = vm_start_gap(vma)
        if gap_end - low >= length:
            return gap_end - length
        return None

    @staticmethod
    def unmapped_area(mm: MmStruct, length: int, low: int, high: int) -> int | None:
        gap_start = low
        for vma in mm.vmas:
            if vm_start_gap(vma) <= gap_start:
                gap_start = max(gap_start, vm_end_gap(vma))
                continue
            if vm_start_gap(vma) - gap_start >= length:
                return gap_start if gap_start + length <= high else None
            gap_start = vm_end_gap(vma)
        return gap_start if gap_start + length <= high else None

    # ------------------------------------------------------------ mmap
    def do_mmap(self, task, addr: int, length: int, prot: int, flags: int, pgoff: int) -> int:
        k = self.k
        mm = task.mm
        if not length:
            raise EINVAL("mmap: length 0")
        if not flags & MAP_FIXED:  # round_hint_to_min()
            addr &= PAGE_MASK & ((1 << 64) - 1)
            if addr and addr < self.mmap_min_addr:
                addr = page_align(self.mmap_min_addr)
        length = page_align(length)
        if not length or length > 1 << 64:
            raise ENOMEM("mmap: length overflows")
        if pgoff + (length >> 12) >= 1 << 64:
            raise EOVERFLOW("mmap: offset overflows")
        if mm.map_count > self.max_map_count:
            raise ENOMEM("mmap: max_map_count")
        if flags & MAP_FIXED_NOREPLACE:
            flags |= MAP_FIXED
        addr = self.get_unmapped_area(mm, addr, length, flags)
        if flags & MAP_FIXED_NOREPLACE:
            vma = self.find_vma(mm, addr)
            if vma is not None and vma.vm_start < addr + length:
                raise EEXIST("mmap: MAP_FIXED_NOREPLACE over a mapping")
        if addr < self.mmap_min_addr and not task.cap_sys_rawio:
            raise EPERM("mmap: below mmap_min_addr")
        vm_flags = ((VM_READ if prot & PROT_READ else 0) | (VM_WRITE if prot & PROT_WRITE else 0)
                    | (VM_EXEC if prot & PROT_EXEC else 0))
        vm_flags |= ((VM_GROWSDOWN if flags & MAP_GROWSDOWN else 0)
                     | (VM_DENYWRITE if flags & MAP_DENYWRITE else 0)
                     | (VM_LOCKED if flags & MAP_LOCKED else 0) | (VM_SYNC if flags & MAP_SYNC else 0))
        vm_flags |= mm.def_flags | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
        if vm_flags & VM_LOCKED:
            k.mlock_future_check(task, mm, vm_flags, length)
        typ = flags & MAP_TYPE
        if typ == MAP_SHARED:
            if vm_flags & VM_GROWSDOWN:
                raise EINVAL("mmap: shared growsdown")
            pgoff = 0
            vm_flags |= VM_SHARED | VM_MAYSHARE
        elif typ == MAP_PRIVATE:
            pgoff = addr >> 12
        else:
            raise EINVAL("mmap: neither MAP_PRIVATE nor MAP_SHARED")
        if flags & MAP_NORESERVE and k.overcommit.overcommit_memory != 2:
            vm_flags |= VM_NORESERVE
        addr = self.mmap_region(task, addr, length, vm_flags, pgoff)
        if vm_flags & VM_LOCKED or (flags & (MAP_POPULATE | MAP_NONBLOCK)) == MAP_POPULATE:
            k.mm_populate(task, addr, length)
        return addr

    @staticmethod
    def accountable_mapping(vma_file, vm_flags: int) -> bool:
        if vma_file is not None and getattr(vma_file, "hugetlb", False):
            return False
        return (vm_flags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) == VM_WRITE

    def mmap_region(self, task, addr: int, length: int, vm_flags: int, pgoff: int, file=None) -> int:
        k = self.k
        mm = task.mm
        npages = length >> 12
        if not self.may_expand_vm(mm, vm_flags, npages, task):
            overlap = sum((min(v.vm_end, addr + length) - max(v.vm_start, addr)) >> 12
                          for v in self.vmas_in(mm, addr, addr + length))
            if not self.may_expand_vm(mm, vm_flags, npages - overlap, task):
                raise ENOMEM("mmap_region: may_expand_vm")
        if self.vmas_in(mm, addr, addr + length):
            self.do_munmap(task, addr, length)
        charged = 0
        if self.accountable_mapping(file, vm_flags):
            charged = npages
            k.overcommit.security_vm_enough_memory_mm(mm, charged, task)
            vm_flags |= VM_ACCOUNT
        _, prev = self.find_vma_prev(mm, addr)
        vma = None
        if not vm_flags & VM_SHARED:
            vma = self.vma_merge(mm, prev, addr, addr + length, vm_flags, None, file, pgoff)
        if vma is None:
            vma = Vma(mm, addr, addr + length, vm_flags, pgoff, file)
            vma.vm_page_prot = vm_get_page_prot(vm_flags)
            if file is None and vm_flags & VM_SHARED:
                try:
                    vma.shmem = k.shmem.shmem_zero_setup(length, vm_flags, task)
                except Errno:
                    if charged:
                        k.overcommit.vm_unacct_memory(charged)
                    raise
            self.vma_link(mm, vma)
        self.vm_stat_account(mm, vm_flags, npages)
        if vm_flags & VM_LOCKED:
            if vm_flags & VM_SPECIAL or vm_flags & VM_HUGETLB:
                vma.vm_flags &= VM_LOCKED_CLEAR_MASK
            else:
                mm.locked_vm += npages
        vma.vm_flags |= VM_SOFTDIRTY
        vma.vm_page_prot = vm_get_page_prot(vma.vm_flags)
        return addr

    # ------------------------------------------------------------ munmap
    def do_munmap(self, task, start: int, length: int) -> None:
        """__do_munmap()."""
        mm = task.mm
        if start & ~PAGE_MASK or start > mm.task_size or length > mm.task_size - start:
            raise EINVAL("munmap: bad range")
        length = page_align(length)
        if not length:
            raise EINVAL("munmap: length 0")
        end = start + length
        vmas = self.vmas_in(mm, start, end)
        if not vmas:
            return
        first, last = vmas[0], vmas[-1]
        if first.vm_start < start:
            if end < first.vm_end and mm.map_count >= self.max_map_count:
                raise ENOMEM("munmap: max_map_count")
            self.split_vma(mm, first, start, new_below=False)
        last = self.vmas_in(mm, end - 1, end)[0] if self.vmas_in(mm, end - 1, end) else None
        if last is not None and last.vm_end > end:
            self.split_vma(mm, last, end, new_below=True)
        vmas = self.vmas_in(mm, start, end)
        mm.update_hiwater_vm()
        for v in vmas:
            if v.vm_flags & VM_LOCKED:
                mm.locked_vm -= v.vma_pages()
                self.k.munlock_vma_pages_all(v)
        prev = self.find_vma_prev(mm, start)[1]
        i = mm.vmas.index(vmas[-1]) + 1
        nxt = mm.vmas[i] if i < len(mm.vmas) else None
        for v in vmas:
            self.vma_unlink(mm, v)
        self.unmap_region(mm, vmas, prev, nxt, start, end)
        self.remove_vma_list(mm, vmas)

    def unmap_region(self, mm: MmStruct, vmas: list[Vma], prev, nxt, start: int, end: int) -> None:
        k = self.k
        k.vmscan.lru_add_drain()
        tlb = MmuGather(k, mm, start, end)
        mm.update_hiwater_rss()
        k.memory.unmap_vmas(tlb, vmas, start, end)
        self.free_pgtables(tlb, mm, vmas, prev.vm_end if prev else 0, nxt.vm_start if nxt else 0)
        tlb.tlb_finish_mmu()

    def free_pgtables(self, tlb: MmuGather, mm: MmStruct, vmas: list[Vma], floor: int,
                      ceiling: int) -> None:
        """free_pgtables(): nearby VMAs (within PMD_SIZE) go down in one call."""
        k = self.k
        k.current_tlb = tlb
        try:
            i = 0
            while i < len(vmas):
                addr = vmas[i].vm_start
                k.rmap.unlink_anon_vmas(vmas[i])
                while i + 1 < len(vmas) and vmas[i + 1].vm_start <= vmas[i].vm_end + PMD_SIZE:
                    i += 1
                    k.rmap.unlink_anon_vmas(vmas[i])
                nxt = vmas[i + 1].vm_start if i + 1 < len(vmas) else ceiling
                k.pgt.free_pgd_range(mm, addr, vmas[i].vm_end, floor, nxt)
                i += 1
        finally:
            k.current_tlb = None

    def remove_vma_list(self, mm: MmStruct, vmas: list[Vma]) -> None:
        nr_accounted = 0
        for v in vmas:
            n = v.vma_pages()
            if v.vm_flags & VM_ACCOUNT:
                nr_accounted += n
            self.vm_stat_account(mm, v.vm_flags, -n)
            if v.shmem is not None:
                v.shmem.put(self.k)
        if nr_accounted:
            self.k.overcommit.vm_unacct_memory(nr_accounted)

    # ------------------------------------------------------------ brk
    def sys_brk(self, task, brk: int) -> int:
        mm = task.mm
        origbrk = mm.brk
        if brk < mm.start_brk:
            return origbrk
        lim = task.rlimit("RLIMIT_DATA")
        if brk - mm.start_brk + (mm.end_data - mm.start_data) > lim:
            return origbrk
        newbrk, oldbrk = page_align(brk), page_align(mm.brk)
        if oldbrk == newbrk:
            mm.brk = brk
            return brk
        if brk <= mm.brk:
            mm.brk = brk
            try:
                self.do_munmap(task, newbrk, oldbrk - newbrk)
            except Errno:
                mm.brk = origbrk
                return origbrk
            return brk
        nxt = self.find_vma(mm, oldbrk)
        if nxt is not None and newbrk + PAGE_SIZE > vm_start_gap(nxt):
            return origbrk
        try:
            self.do_brk_flags(task, oldbrk, newbrk - oldbrk, 0)
        except Errno:
            return origbrk
        mm.brk = brk
        if mm.def_flags & VM_LOCKED:
            self.k.mm_populate(task, oldbrk, newbrk - oldbrk)
        return brk

    def do_brk_flags(self, task, addr: int, length: int, flags: int) -> None:
        k = self.k
        mm = task.mm
        length = page_align(length)
        flags |= VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT | mm.def_flags
        self.get_unmapped_area(mm, addr, length, MAP_FIXED)
        if self.vmas_in(mm, addr, addr + length):
            self.do_munmap(task, addr, length)
        npages = length >> 12
        if not self.may_expand_vm(mm, flags, npages, task):
            raise ENOMEM("brk: may_expand_vm")
        if mm.map_count > self.max_map_count:
            raise ENOMEM("brk: max_map_count")
        k.overcommit.security_vm_enough_memory_mm(mm, npages, task)
        _, prev = self.find_vma_prev(mm, addr)
        vma = self.vma_merge(mm, prev, addr, addr + length, flags, None, None, addr >> 12)
        if vma is None:
            vma = Vma(mm, addr, addr + length, flags, addr >> 12)
            vma.vm_page_prot = vm_get_page_prot(flags)
            self.vma_link(mm, vma)
        mm.total_vm += npages
        mm.data_vm += npages
        if flags & VM_LOCKED:
            mm.locked_vm += npages
        vma.vm_flags |= VM_SOFTDIRTY

    # ------------------------------------------------------------ stack
    def expand_downwards(self, task, vma: Vma, address: int) -> None:
        """expand_stack(): grow a VM_GROWSDOWN VMA down to address (ENOMEM on refusal)."""
        k = self.k
        mm = vma.vm_mm
        address &= PAGE_MASK
        if address < self.mmap_min_addr:
            raise EPERM("expand_stack: below mmap_min_addr")
        _, prev = self.find_vma_prev(mm, vma.vm_start)
        if prev is not None and not prev.vm_flags & VM_GROWSDOWN and \
                prev.vm_flags & (VM_READ | VM_WRITE | VM_EXEC) and \
                address - prev.vm_end < self.stack_guard_gap:
            raise ENOMEM("expand_stack: guard gap")
        k.rmap.anon_vma_prepare(vma)
        if address >= vma.vm_start:
            return
        size = vma.vm_end - address
        grow = (vma.vm_start - address) >> 12
        if size > task.rlimit("RLIMIT_STACK"):
            raise ENOMEM("acct_stack_growth: RLIMIT_STACK")
        if not self.may_expand_vm(mm, vma.vm_flags, grow, task):
            raise ENOMEM("acct_stack_growth: may_expand_vm")
        if vma.vm_flags & VM_LOCKED and (mm.locked_vm + grow) << 12 > task.rlimit("RLIMIT_MEMLOCK") \
                and not task.cap_ipc_lock:
            raise ENOMEM("acct_stack_growth: RLIMIT_MEMLOCK")
        k.overcommit.security_vm_enough_memory_mm(mm, grow, task)
        if vma.vm_flags & VM_LOCKED:
            mm.locked_vm += grow
        self.vm_stat_account(mm, vma.vm_flags, grow)
        self._restart(mm, vma, address)
        vma.vm_pgoff -= grow
