"""hmm_range_fault(): snapshot (and fault in) the CPU page table of a range for a device
that mirrors it (mm/hmm.c, the hmm_pfns API of hmm.md op 1).

Each entry of ``range.hmm_pfns`` is an input request ((entry & pfn_flags_mask) |
default_flags: HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE) that the walk replaces with an
output: 0, HMM_PFN_ERROR, or pfn | HMM_PFN_VALID [| HMM_PFN_WRITE].  A request that the
CPU page table cannot satisfy is faulted with handle_mm_fault() over the rest of the walk
span, after which the walk restarts from that address (-EBUSY inside the loop); an
invalidation of the notifier's interval since ``notifier_seq`` returns -EBUSY.
Not modelled yet: swap entries, device-private entries, huge PMDs, hugetlb (the core
has none of them).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import KernelBug
from .memory import FAULT_FLAG_REMOTE, FAULT_FLAG_WRITE, VM_FAULT_ERROR
from .mm_types import VM_IO, VM_MIXEDMAP, VM_PFNMAP, VM_READ, VM_WRITE
from .pgtable import PTE, _PAGE_PRESENT, pte_pfn, pte_present, pte_special, pte_write

HMM_PFN_VALID = 1 << 63
HMM_PFN_WRITE = 1 << 62
HMM_PFN_ERROR = 1 << 61
HMM_PFN_FLAGS = HMM_PFN_VALID | HMM_PFN_WRITE | HMM_PFN_ERROR
HMM_PFN_REQ_FAULT = HMM_PFN_VALID
HMM_PFN_REQ_WRITE = HMM_PFN_WRITE
HMM_RANGE_DEFAULT_TIMEOUT = 1000  # ms
HMM_NEED_FAULT, HMM_NEED_WRITE_FAULT = 1 << 0, 1 << 1
HMM_NEED_ALL_BITS = HMM_NEED_FAULT | HMM_NEED_WRITE_FAULT
_EINVAL, _EFAULT, _EPERM, _EBUSY = -22, -14, -1, -16


@dataclass
class HmmRange:
    """struct hmm_range (start/end page aligned, end exclusive)."""

    notifier: object
    start: int
    end: int
    hmm_pfns: list | None = None
    default_flags: int = 0
    pfn_flags_mask: int = 0
    dev_private_owner: object = None
    notifier_seq: int = 0
    _last: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.hmm_pfns is None:
            self.hmm_pfns = [0] * max(0, (self.end - self.start) >> 12)


def hmm_pfn_to_page(k, entry: int):
    return k.pfn_to_page(entry & ~HMM_PFN_FLAGS & 0xFFFFFFFFFFFFFFFF)


def hmm_pte_need_fault(rng: HmmRange, req: int, cpu_flags: int) -> int:
    if not req & HMM_PFN_REQ_FAULT:
        return 0
    if req & HMM_PFN_REQ_WRITE and not cpu_flags & HMM_PFN_WRITE:
        return HMM_NEED_FAULT | HMM_NEED_WRITE_FAULT
    if not cpu_flags & HMM_PFN_VALID:
        return HMM_NEED_FAULT
    return 0


def _req(rng: HmmRange, i: int) -> int:
    return (rng.hmm_pfns[i] & rng.pfn_flags_mask) | rng.default_flags


def hmm_range_need_fault(rng: HmmRange, i0: int, n: int, cpu_flags: int) -> int:
    """The OR of the entries' needs (stops early when every bit is set)."""
    if not (rng.default_flags | rng.pfn_flags_mask) & HMM_PFN_REQ_FAULT:
        return 0  # snapshot mode: nothing ever faults
    need = 0
    for i in range(i0, i0 + n):
        need |= hmm_pte_need_fault(rng, _req(rng, i), cpu_flags)
        if need == HMM_NEED_ALL_BITS:
            break
    return need


class Hmm:
    def __init__(self, k):
        self.k = k

    def hmm_range_fault(self, rng: HmmRange) -> int:
        """0, -EBUSY, -EFAULT, -EPERM or -EINVAL (hmm.md op 1)."""
        mm = rng.notifier.mm
        if mm is None or mm.mm_users <= 0:
            raise KernelBug("hmm_range_fault: the caller holds no mm_users reference")
        if len(rng.hmm_pfns) != max(0, (rng.end - rng.start) >> 12) or (rng.start | rng.end) & 0xFFF:
            raise KernelBug("hmm_range_fault: hmm_pfns does not match [start, end)")
        rng._last = rng.start
        while True:
            if rng.notifier.invalidate_seq != rng.notifier_seq:  # mmu_interval_check_retry
                return _EBUSY
            ret = self.walk_page_range(rng, rng._last)
            if ret != _EBUSY:
                return ret

    # ------------------------------------------------------------ the walk
    def walk_page_range(self, rng: HmmRange, start: int) -> int:
        if start >= rng.end:
            return _EINVAL
        k = self.k
        mm = rng.notifier.mm
        addr = start
        while addr < rng.end:
            vma = k.mmap.find_vma(mm, addr)
            if vma is None or vma.vm_start >= rng.end:
                return self.hole(rng, addr, rng.end, None) or 0
            if addr < vma.vm_start:
                r = self.hole(rng, addr, vma.vm_start, None)
                if r:
                    return r
                addr = vma.vm_start
            vend = min(vma.vm_end, rng.end)
            if vma.vm_flags & (VM_IO | VM_PFNMAP | VM_MIXEDMAP) or not vma.vm_flags & VM_READ:
                if hmm_range_need_fault(rng, self.idx(rng, addr), (vend - addr) >> 12, 0):
                    return _EFAULT  # test_walk
                self.fill(rng, addr, vend, HMM_PFN_ERROR)
                addr = vend
                continue
            while addr < vend:
                r, addr = self.walk_vma_span(rng, vma, addr, vend)
                if r:
                    return r
        return 0

    def walk_vma_span(self, rng: HmmRange, vma, addr: int, vend: int) -> tuple[int, int]:
        """The next span: a hole up to the level that has no entry, or a PTE table's span."""
        k = self.k
        pgt = k.pgt
        t = vma.vm_mm.pgd
        while t.level > PTE:
            sh = pgt.shift(t.level)
            ent = int(t.entries[(addr >> sh) & 511])
            if not ent & _PAGE_PRESENT:
                end = min(((addr >> sh) + 1) << sh, vend)
                return self.hole(rng, addr, end, vma), end
            t = pgt.tables[pte_pfn(ent)]
        end = min(((addr >> 21) + 1) << 21, vend)
        return self.handle_ptes(rng, vma, t, addr, end), end

    def hole(self, rng: HmmRange, addr: int, end: int, vma) -> int:
        need = hmm_range_need_fault(rng, self.idx(rng, addr), (end - addr) >> 12, 0)
        if vma is None:
            if need:
                return _EFAULT
            self.fill(rng, addr, end, HMM_PFN_ERROR)
            return 0
        if need:
            return self.hmm_vma_fault(rng, vma, addr, end, need)
        self.fill(rng, addr, end, 0)
        return 0

    def handle_ptes(self, rng: HmmRange, vma, t, addr: int, end: int) -> int:
        k = self.k
        for a in range(addr, end, 4096):
            i = self.idx(rng, a)
            req = _req(rng, i)
            pte = int(t.entries[(a >> 12) & 511])
            if not pte:
                need = hmm_pte_need_fault(rng, req, 0) if self._may_fault(rng) else 0
                if need:
                    return self.hmm_vma_fault(rng, vma, a, end, need)
                rng.hmm_pfns[i] = 0
                continue
            if not pte_present(pte):
                raise KernelBug(f"hmm_range_fault: non-present PTE {pte:#x} at {a:#x} (no swap yet)")
            cpu = HMM_PFN_VALID | (HMM_PFN_WRITE if pte_write(pte) else 0)
            need = hmm_pte_need_fault(rng, req, cpu) if self._may_fault(rng) else 0
            if need:
                return self.hmm_vma_fault(rng, vma, a, end, need)
            pfn = pte_pfn(pte)
            if pte_special(pte) and pfn != k.zero_pfn:
                if hmm_pte_need_fault(rng, req, 0):
                    return _EFAULT
                rng.hmm_pfns[i] = HMM_PFN_ERROR
                continue
            rng.hmm_pfns[i] = pfn | cpu
        return 0

    def hmm_vma_fault(self, rng: HmmRange, vma, addr: int, end: int, need: int) -> int:
        """handle_mm_fault() on every page of [addr, end), then restart the walk at addr."""
        rng._last = addr
        flags = FAULT_FLAG_REMOTE
        if need & HMM_NEED_WRITE_FAULT:
            if not vma.vm_flags & VM_WRITE:
                return _EPERM
            flags |= FAULT_FLAG_WRITE
        for a in range(addr, end, 4096):
            if self.k.memory.handle_mm_fault(vma, a, flags) & VM_FAULT_ERROR:
                return _EFAULT
        return _EBUSY

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _may_fault(rng: HmmRange) -> bool:
        return bool((rng.default_flags | rng.pfn_flags_mask) & HMM_PFN_REQ_FAULT)

    @staticmethod
    def idx(rng: HmmRange, addr: int) -> int:
        return (addr - rng.start) >> 12

    def fill(self, rng: HmmRange, addr: int, end: int, value: int) -> None:
        i, j = self.idx(rng, addr), self.idx(rng, end)
        rng.hmm_pfns[i:j] = [value] * (j - i)
