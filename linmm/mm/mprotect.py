"""mprotect(2) (mm/mprotect.c): mprotect_fixup and change_protection."""
from __future__ import annotations

import numpy as np

from ..errors import EACCES, EINVAL, ENOMEM
from ..uapi import PROT_EXEC, PROT_GROWSDOWN, PROT_GROWSUP, PROT_READ, PROT_SEM, PROT_WRITE
from .mm_types import (VM_ACCOUNT, VM_EXEC, VM_GROWSDOWN, VM_HUGETLB, VM_LOCKED, VM_NORESERVE,
                       VM_READ, VM_SHARED, VM_WRITE, Vma)
from .mmap import page_align
from .mmu_notifier import MMU_NOTIFY_PROTECTION_VMA, MmuNotifierRange
from .pgtable import PMD_SHIFT, PUD_SHIFT, _PAGE_CHG_MASK, MASK64, vm_get_page_prot


class Mprotect:
    def __init__(self, k):
        self.k = k

    def do_mprotect_pkey(self, task, start: int, length: int, prot: int) -> None:
        k = self.k
        mm = task.mm
        grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
        prot &= ~(PROT_GROWSDOWN | PROT_GROWSUP)
        if grows == (PROT_GROWSDOWN | PROT_GROWSUP):
            raise EINVAL("mprotect: both GROWSDOWN and GROWSUP")
        if start & 0xFFF:
            raise EINVAL("mprotect: unaligned start")
        if not length:
            return
        length = page_align(length)
        end = start + length
        if end <= start or end > 1 << 64:
            raise ENOMEM("mprotect: range wraps")
        if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM):
            raise EINVAL("mprotect: unknown prot bits")
        reqprot = prot
        vma = k.mmap.find_vma(mm, start)
        if vma is None:
            raise ENOMEM("mprotect: no mapping")
        if grows & PROT_GROWSDOWN:
            if vma.vm_start >= end:
                raise ENOMEM("mprotect: no mapping")
            start = vma.vm_start
            if not vma.vm_flags & VM_GROWSDOWN:
                raise EINVAL("mprotect: PROT_GROWSDOWN on a non-stack mapping")
        elif vma.vm_start > start:
            raise ENOMEM("mprotect: unmapped start")
        nstart = start
        while True:
            newflags = ((VM_READ if prot & PROT_READ else 0) | (VM_WRITE if prot & PROT_WRITE else 0)
                        | (VM_EXEC if prot & PROT_EXEC else 0))
            newflags |= vma.vm_flags & ~(VM_READ | VM_WRITE | VM_EXEC)
            if (newflags & ~(newflags >> 4)) & (VM_READ | VM_WRITE | VM_EXEC):
                raise EACCES("mprotect: VM_MAY* forbids it")
            tmp = min(vma.vm_end, end)
            vma = self.mprotect_fixup(task, vma, nstart, tmp, newflags)
            nstart = max(tmp, vma.vm_end)
            if nstart >= end:
                return
            nxt = k.mmap.find_vma(mm, nstart)
            if nxt is None or nxt.vm_start != nstart:
                raise ENOMEM("mprotect: hole in range")
            vma = nxt
            prot = reqprot

    def mprotect_fixup(self, task, vma: Vma, start: int, end: int, newflags: int) -> Vma:
        k = self.k
        mm = vma.vm_mm
        oldflags = vma.vm_flags
        if newflags == oldflags:
            return vma
        nrpages = (end - start) >> 12
        charged = 0
        if newflags & VM_WRITE:
            if not k.mmap.may_expand_vm(mm, newflags, nrpages, task) and \
                    k.mmap.may_expand_vm(mm, oldflags, nrpages, task):
                raise ENOMEM("mprotect: may_expand_vm")
            if not oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE):
                charged = nrpages
                k.overcommit.security_vm_enough_memory_mm(mm, charged, task)
                newflags |= VM_ACCOUNT
        try:
            if start != vma.vm_start:
                k.mmap.split_vma(mm, vma, start, new_below=True)
            if end != vma.vm_end:
                k.mmap.split_vma(mm, vma, end, new_below=False)
        except ENOMEM:
            if charged:
                k.overcommit.vm_unacct_memory(charged)
            raise
        vma.vm_flags = newflags
        vma.vm_page_prot = vm_get_page_prot(newflags)
        self.change_protection(vma, start, end, vma.vm_page_prot)
        if (oldflags & (VM_WRITE | VM_SHARED | VM_LOCKED)) == VM_LOCKED and newflags & VM_WRITE:
            k.populate_vma_page_range(vma, start, end)
        k.mmap.vm_stat_account(mm, oldflags, -nrpages)
        k.mmap.vm_stat_account(mm, newflags, nrpages)
        return k.mmap.try_merge_around(mm, vma)

    def change_protection(self, vma: Vma, start: int, end: int, newprot: int) -> int:
        """change_pud_range/change_pmd_range/change_pte_range: one PROTECTION_VMA
        notification per PUD-sized chunk that has a populated PMD."""
        k = self.k
        mm = vma.vm_mm
        pages = 0
        a = start
        keep = np.uint64(_PAGE_CHG_MASK)
        newbits = np.uint64(newprot & ~_PAGE_CHG_MASK & MASK64)
        while a < end:
            pud_end = min(((a >> PUD_SHIFT) + 1) << PUD_SHIFT, end)
            rng = None
            b = a
            while b < pud_end:
                nxt = min(((b >> PMD_SHIFT) + 1) << PMD_SHIFT, pud_end)
                t = mm.pte_tables.get(b >> PMD_SHIFT)
                if t is not None:
                    if rng is None:
                        rng = MmuNotifierRange(MMU_NOTIFY_PROTECTION_VMA, 0, vma, mm, b, pud_end)
                        k.mmu_notifiers.invalidate_range_start(rng)
                    i0 = (b >> 12) & 511
                    i1 = i0 + ((nxt - b) >> 12)
                    ents = t.entries[i0:i1]
                    present = np.nonzero(ents)[0]
                    if len(present):
                        ptl = k.memory._ptl(mm, t)
                        k.pgt.spin_lock(ptl)
                        for off in present.tolist():
                            old = int(t.entries[i0 + off])
                            new = int((np.uint64(old) & keep) | newbits)
                            if new != old:
                                k.pgt.set_entry(t, i0 + off, new, "ptep_modify_prot_commit",
                                                b + ((off) << 12))
                                pages += 1
                        k.pgt.spin_unlock(ptl)
                b = nxt
            if rng is not None:
                k.mmu_notifiers.invalidate_range_end(rng)
            a = pud_end
        if pages:
            k.flush_tlb_mm_range(mm, start, end, False)
        return pages
