"""mincore(2) (mm/mincore.c, v5.7)."""
from __future__ import annotations

import numpy as np

from ..errors import EINVAL, ENOMEM
from .pgtable import PMD_SHIFT


def do_mincore(k, task, start: int, length: int) -> bytes:
    if start & 0xFFF:
        raise EINVAL("mincore: unaligned start")
    if start + length > task.mm.task_size or start + length < start:
        raise ENOMEM("mincore: range beyond the user address space")
    pages = (length >> 12) + (1 if length & 0xFFF else 0)
    out = np.zeros(pages, np.uint8)
    mm = task.mm
    addr = start
    done = 0
    while done < pages:
        vma = k.mmap.find_vma(mm, addr)
        if vma is None or addr < vma.vm_start:
            raise ENOMEM("mincore: unmapped page in range")
        end = min(vma.vm_end, addr + ((pages - done) << 12))
        n = (end - addr) >> 12
        if not vma.is_anonymous() and vma.shmem is None and vma.vm_file is None:
            out[done:done + n] = 1
        else:
            a = addr
            while a < end:
                nxt = min(((a >> PMD_SHIFT) + 1) << PMD_SHIFT, end)
                i = done + ((a - addr) >> 12)
                cnt = (nxt - a) >> 12
                t = mm.pte_tables.get(a >> PMD_SHIFT)
                if t is not None:
                    i0 = (a >> 12) & 511
                    out[i:i + cnt] = t.entries[i0:i0 + cnt] != 0
                if vma.shmem is not None:  # holes: look the page up in the page cache
                    for j in range(cnt):
                        if not out[i + j]:
                            out[i + j] = vma.shmem.lookup(vma.linear_page_index(a + (j << 12))) is not None
                a = nxt
        done += n
        addr = end
    return out.tobytes()
