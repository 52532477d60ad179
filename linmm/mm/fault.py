"""The x86 user page-fault handler and the simulated MMU (arch/x86/mm/fault.c).

``access()`` replays many accesses at once: present PTEs with the right
permission only get their accessed/dirty bits set, as hardware does; the
others are handled by do_user_addr_fault in program order.
"""
from __future__ import annotations

import numpy as np

from ..errors import ENOMEM, EPERM, Signal
from ..uapi import SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGKILL, SIGSEGV, BUS_ADRERR
from .memory import (FAULT_FLAG_USER, FAULT_FLAG_WRITE, VM_FAULT_OOM, VM_FAULT_SIGBUS,
                     VM_FAULT_SIGSEGV)
from .mm_types import DENSE_MASK, VM_EXEC, VM_GROWSDOWN, VM_READ, VM_WRITE
from .pgtable import PMD_SHIFT, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER

CHUNK = 1 << 20
SCALAR_MAX = 16
_U12, _U18, _U21 = np.uint64(12), np.uint64(18), np.uint64(21)


class Fault:
    def __init__(self, k):
        self.k = k

    def bad_area(self, task, addr: int, code: int):
        task.signals.append((SIGSEGV, code, addr))
        return Signal(SIGSEGV, code, addr, task.pid)

    def find_good_vma(self, task, addr: int, write: bool, present: bool):
        """The VMA for a fault at addr, growing the stack; raises Signal otherwise."""
        k = self.k
        mm = task.mm
        vma = k.mmap.find_vma(mm, addr)
        if vma is None:
            raise self.bad_area(task, addr, SEGV_MAPERR)
        if vma.vm_start > addr:
            if not vma.vm_flags & VM_GROWSDOWN:
                raise self.bad_area(task, addr, SEGV_MAPERR)
            try:
                k.mmap.expand_downwards(task, vma, addr)
            except (ENOMEM, EPERM):
                raise self.bad_area(task, addr, SEGV_MAPERR) from None
        if write:
            if not vma.vm_flags & VM_WRITE:
                raise self.bad_area(task, addr, SEGV_ACCERR)
        elif present or not vma.vm_flags & (VM_READ | VM_EXEC | VM_WRITE):
            raise self.bad_area(task, addr, SEGV_ACCERR)
        return vma

    def do_user_addr_fault(self, task, addr: int, write: bool) -> None:
        """One user fault; raises Signal (recorded on the task) on SIGSEGV/SIGBUS/OOM kill."""
        k = self.k
        present = self.pte_present_user(task.mm, addr)
        vma = self.find_good_vma(task, addr, write, present and not write)
        while True:
            ret = k.memory.handle_mm_fault(vma, addr, FAULT_FLAG_USER | (FAULT_FLAG_WRITE if write else 0))
            if not ret & (VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV):
                task.min_flt += 1
                if task.pending_kill:  # chosen by the OOM killer during this fault
                    raise Signal(SIGKILL, 0, None, task.pid)
                return
            if ret & VM_FAULT_OOM:
                self.pagefault_out_of_memory(task)
                continue
            if ret & VM_FAULT_SIGBUS:
                task.signals.append((SIGBUS, BUS_ADRERR, addr))
                raise Signal(SIGBUS, BUS_ADRERR, addr, task.pid)
            raise self.bad_area(task, addr, SEGV_MAPERR)

    def pagefault_out_of_memory(self, task) -> None:
        """VM_FAULT_OOM: the OOM killer runs unless current is already a victim; a
        killed current task dies with SIGKILL on its way back to user space."""
        k = self.k
        if not task.oom_victim and not getattr(task, "pending_kill", False):
            if not k.oom.out_of_memory(0, 0):
                task.pending_kill = True  # nothing killable: the faulting task dies
        if getattr(task, "pending_kill", False) or task.oom_victim:
            raise Signal(SIGKILL, 0, None, task.pid)

    @staticmethod
    def _pte_allows(mm, addr: int, write: bool) -> bool:
        t = mm.pte_tables.get(addr >> PMD_SHIFT)
        if t is None:
            return False
        pte = int(t.entries[(addr >> 12) & 511])
        ok = pte & (_PAGE_PRESENT | _PAGE_USER) == _PAGE_PRESENT | _PAGE_USER
        return ok and (not write or bool(pte & _PAGE_RW))

    @staticmethod
    def pte_present_user(mm, addr: int) -> bool:
        t = mm.pte_tables.get(addr >> PMD_SHIFT)
        return t is not None and bool(int(t.entries[(addr >> 12) & 511]) & _PAGE_PRESENT)

    # ------------------------------------------------------------ the MMU
    def access(self, task, addresses: np.ndarray, writes) -> None:
        """Replay accesses in order; faults in program order, A/D bits as hardware."""
        addresses = np.ascontiguousarray(addresses, dtype=np.uint64)
        n = len(addresses)
        if np.isscalar(writes) or np.ndim(writes) == 0:
            wall = bool(writes)
            warr = None
        else:
            warr = np.ascontiguousarray(writes, dtype=bool)
            if len(warr) != n:
                raise ValueError("access: writes must be a bool or an array as long as addresses")
            wall = None
        if n <= SCALAR_MAX:
            self._access_scalar(task, addresses.tolist(),
                                [wall] * n if warr is None else warr.tolist())
            return
        for s in range(0, n, CHUNK):
            a = addresses[s:s + CHUNK]
            w = warr[s:s + CHUNK] if warr is not None else wall
            self._access_chunk(task, a, w)

    def _access_scalar(self, task, addrs: list, writes: list) -> None:
        """A few accesses: walk the PTE index per address (no NumPy overhead)."""
        mm = task.mm
        for addr, write in zip(addrs, writes):
            while True:
                t = mm.pte_tables.get(addr >> PMD_SHIFT)
                if t is not None:
                    ents = t.entries
                    i = (addr >> 12) & 511
                    pte = int(ents[i])
                    if pte & (_PAGE_PRESENT | _PAGE_USER) == _PAGE_PRESENT | _PAGE_USER and \
                            (not write or pte & _PAGE_RW):
                        ents[i] = pte | (_PAGE_ACCESSED | _PAGE_DIRTY if write else _PAGE_ACCESSED)
                        break
                self.do_user_addr_fault(task, addr, write)

    def _lookup(self, mm, a: np.ndarray, w):
        """(flat pool index per access, ok mask): ok = present, user, writable if written."""
        pmd = a >> _U21
        region = pmd >> _U18
        rmin, rmax = int(region.min()), int(region.max())
        off = (pmd & np.uint64(DENSE_MASK)).astype(np.intp)
        if rmin == rmax:
            d = mm.pte_dense.get(rmin)
            rows = d[off] if d is not None else np.full(len(a), -1, np.int32)
        else:
            rows = np.full(len(a), -1, np.int32)
            for r, d in mm.pte_dense.items():
                if rmin <= r <= rmax:
                    m = region == np.uint64(r)
                    rows[m] = d[off[m]]
        hit = rows >= 0
        flat = rows.astype(np.intp) * 512 + ((a >> _U12) & np.uint64(511)).astype(np.intp)
        flat[~hit] = 0
        ptes = mm.pte_pool.reshape(-1)[flat]
        need = np.uint64(_PAGE_PRESENT | _PAGE_USER)
        ok = hit & ((ptes & need) == need)
        if w is True:
            ok &= (ptes & np.uint64(_PAGE_RW)) != 0
        elif w is not False:
            ok &= ~w | ((ptes & np.uint64(_PAGE_RW)) != 0)
        return flat, ok, ptes

    def _set_ad(self, mm, flat: np.ndarray, ok: np.ndarray, w, ptes: np.ndarray) -> None:
        """Hardware sets the accessed bit (and dirty on a write) in PTEs lacking it."""
        pool = mm.pte_pool.reshape(-1)
        A, D = np.uint64(_PAGE_ACCESSED), np.uint64(_PAGE_DIRTY)
        missing_a = ok & ((ptes & A) == 0)
        if missing_a.any():
            idx = flat[missing_a]
            pool[idx] = pool[idx] | A
        if w is False:
            return
        wd = ok & ((ptes & D) == 0)
        if w is not True:
            wd &= w
        if wd.any():
            idx = flat[wd]
            pool[idx] = pool[idx] | D

    def _access_chunk(self, task, a: np.ndarray, w) -> None:
        mm = task.mm
        start = 0
        while start < len(a):
            sub = a[start:]
            wsub = w if isinstance(w, bool) else w[start:]
            flat, ok, ptes = self._lookup(mm, sub, wsub)
            if ok.all():
                self._set_ad(mm, flat, ok, wsub, ptes)
                return
            bad = np.flatnonzero(~ok)
            f = int(bad[0])
            if f:
                self._set_ad(mm, flat[:f], ok[:f], wsub if isinstance(wsub, bool) else wsub[:f],
                             ptes[:f])
            self._fault_batch(task, sub, wsub, bad)
            start += f  # the first faulting access is served now: go on from it

    def _fault_batch(self, task, a: np.ndarray, w, bad: np.ndarray) -> None:
        """Handle the faults of the not-ok accesses `bad` (indices into a) in order."""
        k = self.k
        pages = a[bad] >> _U12
        wb = np.full(len(bad), w) if isinstance(w, bool) else w[bad]
        uniq, first = np.unique(pages, return_index=True)
        order = np.argsort(first, kind="stable")
        uniq, first = uniq[order], first[order]
        # stop before a repeat write to a page whose first fault was a read
        inv = np.searchsorted(uniq[np.argsort(uniq)], pages)
        rank = np.argsort(uniq)[inv]
        first_read = ~wb[first]
        danger = (np.arange(len(bad)) != first[rank]) & wb & first_read[rank]
        limit = int(np.flatnonzero(danger)[0]) if danger.any() else len(bad)
        sel = first < limit
        uniq, first = uniq[sel], first[sel]
        fw = wb[first]
        mm = task.mm
        i = 0
        n = len(uniq)
        while i < n:
            addr = int(uniq[i]) << 12
            write = bool(fw[i])
            vma = k.mmap.find_vma(mm, addr)
            t = mm.pte_tables.get(addr >> PMD_SHIFT)
            none = t is None or int(t.entries[(addr >> 12) & 511]) == 0
            if vma is not None and vma.vm_start <= addr and none and vma.is_anonymous() and \
                    (vma.vm_flags & (VM_WRITE if write else (VM_READ | VM_WRITE | VM_EXEC))):
                # a run of first-touch anon faults of the same kind in this VMA
                j = i + 1
                while j < n and bool(fw[j]) == write:
                    aj = int(uniq[j]) << 12
                    if not vma.vm_start <= aj < vma.vm_end:
                        break
                    tj = mm.pte_tables.get(aj >> PMD_SHIFT)
                    if tj is not None and int(tj.entries[(aj >> 12) & 511]) != 0:
                        break
                    j += 1
                addrs = uniq[i:j] << _U12
                done = k.memory.do_anonymous_pages(vma, addrs, write)
                task.min_flt += done
                if done < j - i or task.pending_kill:
                    self._finish_before(task, a, w, bad[first[i + done]] if i + done < n else len(a))
                    self.pagefault_out_of_memory(task)
                    return
                i = j
                continue
            if self._pte_allows(mm, addr, write):  # mapped meanwhile (fault-around)
                i += 1
                continue
            try:
                self.do_user_addr_fault(task, addr | (int(a[bad[first[i]]]) & 0xFFF), write)
            except Signal:
                self._finish_before(task, a, w, bad[first[i]])
                raise
            i += 1

    def _finish_before(self, task, a, w, upto: int) -> None:
        """Before raising a signal at access `upto`, the earlier accesses happened."""
        if upto:
            sub = a[:upto]
            wsub = w if isinstance(w, bool) else w[:upto]
            flat, ok, ptes = self._lookup(task.mm, sub, wsub)
            self._set_ad(task.mm, flat, ok, wsub, ptes)
