"""The kernel-side page access API on Kernel (highmem.md ops 1-9): page_address,
kmap/kunmap, kmap_atomic/kunmap_atomic, vmap/vunmap, kread/kwrite and the
clear/zero/copy helpers, which map their pages with kmap_atomic as the kernel does."""
from __future__ import annotations

from ..errors import KernelBug
from .highmem import PAGE_KERNEL, VM_MAP
from .memory_model import Page


class HighmemAPI:
    """Mixed into Kernel; ``self.highmem`` is the Highmem state."""

    def page_address(self, page: Page) -> int | None:
        """The kernel virtual address of a page: lowmem always, highmem only while kmapped."""
        return self.highmem.page_address(page.pfn)

    def PageHighMem(self, page: Page) -> bool:
        return self.highmem.PageHighMem(page.pfn)

    def kmap(self, page: Page) -> int:
        """Map a page for a while (may sleep); undo with kunmap(page)."""
        return self.highmem.kmap(page.pfn)

    def kunmap(self, page: Page) -> None:
        self.highmem.kunmap(page.pfn)

    def kmap_flush_unused(self) -> None:
        self.highmem.flush_all_zero_pkmaps()

    def kmap_atomic(self, page: Page) -> int:
        """Map a page on this CPU without sleeping; preemption and page faults stay
        disabled until kunmap_atomic(address)."""
        return self.highmem.kmap_atomic_pfn(page.pfn)

    def kmap_atomic_prot(self, page: Page, prot: int = PAGE_KERNEL) -> int:
        return self.highmem.kmap_atomic_pfn(page.pfn)

    def kmap_atomic_pfn(self, pfn: int) -> int:
        return self.highmem.kmap_atomic_pfn(pfn)

    def kunmap_atomic(self, vaddr: int) -> None:
        self.highmem.kunmap_atomic(vaddr)

    def vmap(self, pages: list, flags: int = VM_MAP, prot: int = PAGE_KERNEL) -> int | None:
        """Map pages contiguously in the vmalloc area; None when it is full or pages is empty."""
        return self.highmem.vmap([p.pfn for p in pages])

    def vunmap(self, addr: int) -> None:
        self.highmem.vunmap(addr)

    def kread(self, vaddr: int, n: int, allow_stale: bool = False) -> bytes:
        """Read kernel virtual memory through the kernel page tables (KernelOops if unmapped)."""
        return self.highmem.kread(vaddr, n, allow_stale)

    def kwrite(self, vaddr: int, data: bytes) -> None:
        self.highmem.kwrite(vaddr, data)

    def highmem_stats(self) -> dict:
        """Model-only: pkmap slots in use, pkmap TLB flushes, atomic slot high-water marks."""
        h = self.highmem
        return {"pkmap_in_use": sum(1 for c in h.pkmap_count if c >= 2),
                "pkmap_mapped": sum(1 for c in h.pkmap_count if c),
                "pkmap_flushes": h.stats["pkmap_flushes"],
                "atomic_high_water": list(h.stats["atomic_high_water"]),
                "atomic_in_use": list(h.kmap_atomic_idx)}

    # ------------------------------------------------------------ helpers (highmem.h)
    def clear_highpage(self, page: Page) -> None:
        kaddr = self.kmap_atomic(page)
        self.frames.clear(page.pfn)  # clear_page(kaddr)
        self.kunmap_atomic(kaddr)

    def clear_user_highpage(self, page: Page, vaddr: int = 0) -> None:
        self.clear_highpage(page)

    def zero_user_segments(self, page: Page, start1: int, end1: int, start2: int = 0,
                           end2: int = 0) -> None:
        if not (0 <= start1 <= end1 <= 4096 and 0 <= start2 <= end2 <= 4096):
            raise KernelBug(f"zero_user_segments: bad range {start1}-{end1}, {start2}-{end2}")
        kaddr = self.kmap_atomic(page)
        for s, e in ((start1, end1), (start2, end2)):
            if e > s and self.frames.has_data(page.pfn):
                self.frames.write(page.pfn, s, bytes(e - s))
        self.kunmap_atomic(kaddr)

    def zero_user_segment(self, page: Page, start: int, end: int) -> None:
        self.zero_user_segments(page, start, end, 0, 0)

    def zero_user(self, page: Page, start: int, size: int) -> None:
        self.zero_user_segments(page, start, start + size, 0, 0)

    def copy_highpage(self, to: Page, frm: Page) -> None:
        vfrom = self.kmap_atomic(frm)
        vto = self.kmap_atomic(to)
        self.frames.copy(to.pfn, frm.pfn)  # copy_page(vto, vfrom)
        self.kunmap_atomic(vto)
        self.kunmap_atomic(vfrom)

    def copy_user_highpage(self, to: Page, frm: Page, vaddr: int = 0, vma=None) -> None:
        self.copy_highpage(to, frm)
