"""mremap(2) (mm/mremap.c, v5.7): resize in place or move page tables."""
from __future__ import annotations

from ..errors import EFAULT, EINVAL, ENOMEM, Errno
from ..uapi import MAP_FIXED, MAP_SHARED, MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE
from .mm_types import (VM_ACCOUNT, VM_DONTEXPAND, VM_HUGETLB, VM_LOCKED, VM_MAYSHARE, VM_PFNMAP,
                       VM_SHARED, Vma)
from .mmap import page_align
from .mmu_notifier import MMU_NOTIFY_UNMAP, MmuNotifierRange
from .pgtable import PMD_SHIFT, PMD_SIZE, _PAGE_PRESENT, _PAGE_SOFT_DIRTY, vm_get_page_prot


class Mremap:
    def __init__(self, k):
        self.k = k

    def sys_mremap(self, task, addr: int, old_len: int, new_len: int, flags: int, new_addr: int) -> int:
        k = self.k
        mm = task.mm
        if flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP):
            raise EINVAL("mremap: unknown flags")
        if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
            raise EINVAL("mremap: MREMAP_FIXED without MREMAP_MAYMOVE")
        if flags & MREMAP_DONTUNMAP and (not flags & MREMAP_MAYMOVE or old_len != new_len):
            raise EINVAL("mremap: MREMAP_DONTUNMAP needs MAYMOVE and equal lengths")
        if addr & 0xFFF:
            raise EINVAL("mremap: unaligned address")
        old_len = page_align(old_len) & ((1 << 64) - 1)
        new_len = page_align(new_len) & ((1 << 64) - 1)
        if not new_len:
            raise EINVAL("mremap: new length 0")
        if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP):
            return self.mremap_to(task, addr, old_len, new_addr, new_len, flags)
        if old_len >= new_len:
            if old_len != new_len:
                k.mmap.do_munmap(task, addr + new_len, old_len - new_len)
            return addr
        vma, charged = self.vma_to_resize(task, addr, old_len, new_len, flags)
        try:
            if old_len == vma.vm_end - addr and self.vma_expandable(mm, vma, new_len - old_len):
                pages = (new_len - old_len) >> 12
                vma.vm_end = addr + new_len
                k.mmap.vm_stat_account(mm, vma.vm_flags, pages)
                if vma.vm_flags & VM_LOCKED:
                    mm.locked_vm += pages
                    k.mm_populate(task, addr + old_len, new_len - old_len)
                return addr
            if not flags & MREMAP_MAYMOVE:
                raise ENOMEM("mremap: cannot grow in place")
            map_flags = MAP_SHARED if vma.vm_flags & VM_MAYSHARE else 0
            new_addr = k.mmap.get_unmapped_area(mm, 0, new_len, map_flags)
            return self.move_vma(task, vma, addr, old_len, new_len, new_addr, flags)
        except Errno:
            if charged:
                k.overcommit.vm_unacct_memory(charged)
            raise

    def vma_to_resize(self, task, addr: int, old_len: int, new_len: int, flags: int):
        k = self.k
        mm = task.mm
        vma = k.mmap.find_vma(mm, addr)
        if vma is None or vma.vm_start > addr:
            raise EFAULT("mremap: address not mapped")
        if not old_len and not vma.vm_flags & (VM_SHARED | VM_MAYSHARE):
            self.k.printk_once(f"{task.comm} ({task.pid}): attempted to duplicate a private mapping "
                               f"with mremap.  This is not supported.")
            raise EINVAL("mremap: duplicating a private mapping")
        if vma.vm_flags & VM_HUGETLB:
            raise EINVAL("mremap: hugetlb mapping")
        if flags & MREMAP_DONTUNMAP and (not vma.is_anonymous() or vma.vm_flags & VM_SHARED):
            raise EINVAL("mremap: MREMAP_DONTUNMAP on a non-private-anonymous mapping")
        if old_len > vma.vm_end - addr:
            raise EFAULT("mremap: range crosses a mapping boundary")
        if new_len == old_len:
            return vma, 0
        if vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
            raise EFAULT("mremap: mapping cannot expand")
        if vma.vm_flags & VM_LOCKED:
            k.mlock_future_check(task, mm, vma.vm_flags, new_len - old_len)
        if not k.mmap.may_expand_vm(mm, vma.vm_flags, (new_len - old_len) >> 12, task):
            raise ENOMEM("mremap: may_expand_vm")
        charged = 0
        if vma.vm_flags & VM_ACCOUNT:
            charged = (new_len - old_len) >> 12
            k.overcommit.security_vm_enough_memory_mm(mm, charged, task)
        return vma, charged

    def vma_expandable(self, mm, vma: Vma, delta: int) -> bool:
        end = vma.vm_end + delta
        i = mm.vmas.index(vma)
        if i + 1 < len(mm.vmas) and mm.vmas[i + 1].vm_start < end:
            return False
        try:
            self.k.mmap.get_unmapped_area(mm, vma.vm_start, end - vma.vm_start, MAP_FIXED)
        except Errno:
            return False
        return True

    def mremap_to(self, task, addr: int, old_len: int, new_addr: int, new_len: int, flags: int) -> int:
        k = self.k
        mm = task.mm
        if new_addr & 0xFFF:
            raise EINVAL("mremap: unaligned new address")
        if new_len > mm.task_size or new_addr > mm.task_size - new_len:
            raise EINVAL("mremap: new range beyond TASK_SIZE")
        if addr + old_len > new_addr and new_addr + new_len > addr:
            raise EINVAL("mremap: old and new ranges overlap")
        if flags & MREMAP_FIXED:
            k.mmap.do_munmap(task, new_addr, new_len)
        if old_len >= new_len:
            if old_len != new_len:
                k.mmap.do_munmap(task, addr + new_len, old_len - new_len)
            old_len = new_len
        vma, charged = self.vma_to_resize(task, addr, old_len, new_len, flags)
        try:
            if flags & MREMAP_DONTUNMAP and not k.mmap.may_expand_vm(mm, vma.vm_flags, old_len >> 12, task):
                raise ENOMEM("mremap: may_expand_vm")
            map_flags = (MAP_FIXED if flags & MREMAP_FIXED else 0) | \
                (MAP_SHARED if vma.vm_flags & VM_MAYSHARE else 0)
            ret = k.mmap.get_unmapped_area(mm, new_addr, new_len, map_flags)
            if not flags & MREMAP_FIXED:
                new_addr = ret
            return self.move_vma(task, vma, addr, old_len, new_len, new_addr, flags)
        except Errno:
            if charged:
                k.overcommit.vm_unacct_memory(charged)
            raise

    def move_vma(self, task, vma: Vma, old_addr: int, old_len: int, new_len: int, new_addr: int,
                 flags: int) -> int:
        """mm/mremap.c move_vma(): VM_ACCOUNT is hidden while the old range is unmapped so
        that its charge moves with the pages; the excess is charged back afterwards."""
        k = self.k
        mm = vma.vm_mm
        if mm.map_count >= k.mmap.max_map_count - 3:
            raise ENOMEM("mremap: max_map_count")
        vm_flags = vma.vm_flags
        new_pgoff = vma.vm_pgoff + ((old_addr - vma.vm_start) >> 12)
        new_vma, vma = self.copy_vma(vma, new_addr, new_len, new_pgoff, old_addr)
        moved = self.move_page_tables(vma, old_addr, new_vma, new_addr, old_len)
        if moved < old_len:
            self.move_page_tables(new_vma, new_addr, vma, old_addr, moved)
            k.mmap.do_munmap(task, new_addr, new_len)
            raise ENOMEM("mremap: page-table allocation failed")
        excess = 0
        split = False
        if vm_flags & VM_ACCOUNT:
            vma.vm_flags &= ~VM_ACCOUNT
            excess = vma.vm_end - vma.vm_start - old_len
            if old_addr > vma.vm_start and old_addr + old_len < vma.vm_end:
                split = True
        hiwater_vm = mm.hiwater_vm
        k.mmap.vm_stat_account(mm, vma.vm_flags, new_len >> 12)
        if flags & MREMAP_DONTUNMAP:
            if vm_flags & VM_ACCOUNT:
                vma.vm_flags |= VM_ACCOUNT
                k.overcommit.vm_acct_memory(new_len >> 12)
            mm.hiwater_vm = hiwater_vm
            return new_addr
        try:
            k.mmap.do_munmap(task, old_addr, old_len)
        except Errno:
            k.overcommit.vm_unacct_memory(excess >> 12)
            excess = 0
        if vm_flags & VM_LOCKED:
            mm.locked_vm += new_len >> 12
        mm.hiwater_vm = hiwater_vm
        if excess and vma in mm.vmas:
            vma.vm_flags |= VM_ACCOUNT
            if split:
                i = mm.vmas.index(vma)
                if i + 1 < len(mm.vmas):
                    mm.vmas[i + 1].vm_flags |= VM_ACCOUNT
        return new_addr

    def copy_vma(self, vma: Vma, addr: int, length: int, pgoff: int, old_addr: int):
        """The new VMA (maybe merged with a neighbour) and the source VMA, which is the
        merged VMA itself when the move merged into the source (copy_vma's *vmap)."""
        k = self.k
        mm = vma.vm_mm
        if vma.anon_vma is None and vma.is_anonymous():
            pgoff = addr >> 12
        _, prev = k.mmap.find_vma_prev(mm, addr)
        new = k.mmap.vma_merge(mm, prev, addr, addr + length, vma.vm_flags, vma.anon_vma,
                               vma.vm_file, pgoff, vma.shmem)
        if new is not None:
            if new.vm_start <= old_addr < new.vm_end:
                vma = new
            return new, vma
        new = Vma(mm, addr, addr + length, vma.vm_flags, pgoff, vma.vm_file)
        new.vm_page_prot = vm_get_page_prot(vma.vm_flags)
        new.shmem = vma.shmem
        if new.shmem is not None:
            new.shmem.get()
        new.anon_vma = vma.anon_vma
        k.rmap.anon_vma_clone(new, vma)
        k.mmap.vma_link(mm, new)
        return new, vma

    def move_page_tables(self, vma: Vma, old_addr: int, new_vma: Vma, new_addr: int, length: int) -> int:
        """Move PTEs (or whole PTE tables, move_normal_pmd) from old to new; bytes moved."""
        k = self.k
        mm = vma.vm_mm
        pgt = k.pgt
        old_end = old_addr + length
        start = old_addr
        rng = MmuNotifierRange(MMU_NOTIFY_UNMAP, 0, vma, mm, old_addr, old_end)
        k.mmu_notifiers.invalidate_range_start(rng)
        try:
            while old_addr < old_end:
                extent = min(((old_addr >> PMD_SHIFT) + 1 << PMD_SHIFT) - old_addr, old_end - old_addr,
                             ((new_addr >> PMD_SHIFT) + 1 << PMD_SHIFT) - new_addr)
                old_t = mm.pte_tables.get(old_addr >> PMD_SHIFT)
                if old_t is None:
                    old_addr += extent
                    new_addr += extent
                    continue
                if extent == PMD_SIZE and mm.pte_tables.get(new_addr >> PMD_SHIFT) is None:
                    if self.move_normal_pmd(mm, old_t, old_addr, new_addr):
                        old_addr += extent
                        new_addr += extent
                        continue
                    return old_addr - start
                new_t = pgt.pte_alloc_path(mm, new_addr)
                if new_t is None:
                    return old_addr - start
                self.move_ptes(vma, old_t, old_addr, old_addr + extent, new_t, new_addr)
                old_addr += extent
                new_addr += extent
        finally:
            k.mmu_notifiers.invalidate_range_end(rng)
        return length

    def move_normal_pmd(self, mm, old_t, old_addr: int, new_addr: int) -> bool:
        """Re-point a whole PTE table from the old PMD entry to the new one."""
        k = self.k
        pgt = k.pgt
        old_pmd = old_t.parent
        new_pmd = pgt.pte_alloc_path_upto_pmd(mm, new_addr)
        if new_pmd is None:
            return False
        old_ptl = pgt.pmd_lockptr(mm, old_pmd)
        new_ptl = pgt.pmd_lockptr(mm, new_pmd)
        pgt.spin_lock(old_ptl)
        if new_ptl is not old_ptl:
            pgt.spin_lock(new_ptl, nested=True)
        entry = int(old_pmd.entries[old_t.pidx])
        pgt.set_entry(old_pmd, old_t.pidx, 0, "pmd_clear", old_addr)
        nidx = (new_addr >> PMD_SHIFT) & 511
        pgt.set_entry(new_pmd, nidx, entry, "set_pmd_at", new_addr)
        mm.set_pte_table(old_addr >> PMD_SHIFT, None)
        old_t.parent, old_t.pidx, old_t.base = new_pmd, nidx, new_addr & ~(PMD_SIZE - 1)
        mm.set_pte_table(new_addr >> PMD_SHIFT, old_t)
        if new_ptl is not old_ptl:
            pgt.spin_unlock(new_ptl)
        pgt.spin_unlock(old_ptl)
        k.flush_tlb_mm_range(mm, old_addr, old_addr + PMD_SIZE, False)
        return True

    def move_ptes(self, vma: Vma, old_t, old_addr: int, old_end: int, new_t, new_addr: int) -> None:
        k = self.k
        mm = vma.vm_mm
        pgt = k.pgt
        old_ptl, new_ptl = k.memory._ptl(mm, old_t), k.memory._ptl(mm, new_t)
        pgt.spin_lock(old_ptl)
        if new_ptl is not old_ptl:
            pgt.spin_lock(new_ptl, nested=True)
        flush = False
        a, b = old_addr, new_addr
        while a < old_end:
            oi, ni = (a >> 12) & 511, (b >> 12) & 511
            pte = int(old_t.entries[oi])
            if pte:
                pgt.set_entry(old_t, oi, 0, "ptep_get_and_clear", a)
                if pte & _PAGE_PRESENT:
                    flush = True
                pgt.set_entry(new_t, ni, pte | _PAGE_SOFT_DIRTY, "set_pte_at", b)
            a += 4096
            b += 4096
        if flush:
            k.flush_tlb_mm_range(mm, old_addr, old_end, False)
        if new_ptl is not old_ptl:
            pgt.spin_unlock(new_ptl)
        pgt.spin_unlock(old_ptl)
