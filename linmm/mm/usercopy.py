"""Kernel access to user memory: access_process_vm (mm/memory.c) and copy_to_user /
copy_from_user (lib/usercopy.c), which do not fault with page faults disabled
(inside kmap_atomic).  Mixed into Kernel."""
from __future__ import annotations

import numpy as np

from ..errors import EINVAL, KernelBug


class UserCopy:
    # ------------------------------------------------------------ user memory copy
    def access_process_vm(self, task, addr: int, n: int, data: bytes | None) -> bytes | None:
        """copy_from_user / copy_to_user: fault pages in as the task would, move bytes."""
        from .pgtable import PMD_SHIFT, pte_pfn
        if n < 0 or addr < 0 or addr + n > 1 << 64:
            raise EINVAL("bad user range")
        out = bytearray() if data is None else None
        write = data is not None
        a, end = addr, addr + n
        mm = task.mm
        while a < end:
            page_end = min((a | 0xFFF) + 1, end)
            self.fault.access(task, np.array([a], np.uint64), write)
            t = mm.pte_tables[a >> PMD_SHIFT]
            pfn = pte_pfn(int(t.entries[(a >> 12) & 511]))
            off = a & 0xFFF
            if write:
                self.frames.write(pfn, off, data[a - addr:page_end - addr])
            else:
                out += self.frames.read(pfn, off, page_end - a)
            a = page_end
        return bytes(out) if out is not None else None


    def _user_ctx(self, op: str):
        ctx = self.current_ctx()
        if ctx.mm is None:
            raise KernelBug(f"{op} from {ctx.comm}/{ctx.pid}, which has no mm (use_mm first)")
        return ctx

    def copy_to_user(self, addr: int, data: bytes) -> int:
        """Write user memory of the current context's mm (faults as the user would);
        returns the bytes not copied: 0, or with page faults disabled (inside
        kmap_atomic) the part from the first page that would need a fault."""
        ctx = self._user_ctx("copy_to_user")
        data = bytes(data)
        if ctx.pagefault_disabled:
            return self._copy_user_nofault(ctx.mm, addr, len(data), data, None)
        self.access_process_vm(ctx, addr, len(data), data)
        return 0

    def copy_from_user(self, addr: int, n: int, out: bytearray | None = None):
        """Read user memory.  Kernel form: with ``out`` (a bytearray of n bytes) fill it and
        return the bytes not copied (the rest zero-filled); without it, return the bytes
        (EFAULT if page faults are disabled and a page is not present)."""
        ctx = self._user_ctx("copy_from_user")
        if ctx.pagefault_disabled:
            buf = bytearray(n)
            left = self._copy_user_nofault(ctx.mm, addr, n, None, buf)
            if out is None:
                if left:
                    from ..errors import EFAULT
                    raise EFAULT("copy_from_user: page faults are disabled")
                return bytes(buf)
            out[:n] = buf
            return left
        data = self.access_process_vm(ctx, addr, n, None)
        if out is None:
            return data
        out[:n] = data
        return 0

    def _copy_user_nofault(self, mm, addr: int, n: int, data: bytes | None, buf) -> int:
        """__copy_{to,from}_user_inatomic(): stop at the first page whose PTE would fault."""
        from .pgtable import PMD_SHIFT, pte_pfn, pte_present, pte_write
        a, end = addr, addr + n
        while a < end:
            page_end = min((a | 0xFFF) + 1, end)
            t = mm.pte_tables.get(a >> PMD_SHIFT)
            pte = int(t.entries[(a >> 12) & 511]) if t is not None else 0
            if not pte_present(pte) or (data is not None and not pte_write(pte)):
                return end - a
            pfn, off = pte_pfn(pte), a & 0xFFF
            if data is not None:
                self.frames.write(pfn, off, data[a - addr:page_end - addr])
            else:
                buf[a - addr:page_end - addr] = self.frames.read(pfn, off, page_end - a)
            a = page_end
        return 0

