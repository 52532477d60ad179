"""mmu_gather (mm/mmu_gather.c): batch TLB flushes and the frees behind them.

Pages and page-table pages removed from an address space are freed only
after the TLB flush; the flush tells secondary MMUs (invalidate_range) first,
mmu_notifier.rst case A.
"""
from __future__ import annotations


class MmuGather:
    def __init__(self, k, mm, start: int, end: int, fullmm: bool = False):
        self.k = k
        self.mm = mm
        self.start, self.end = start, end
        self.fullmm = fullmm
        self.pages: list[int] = []
        self.tables: list = []
        self.flush_start = None
        self.flush_end = None

    def tlb_remove_tlb_entry(self, addr: int) -> None:
        if self.flush_start is None or addr < self.flush_start:
            self.flush_start = addr
        if self.flush_end is None or addr + 4096 > self.flush_end:
            self.flush_end = addr + 4096

    def remove_page(self, pfn: int) -> None:
        self.pages.append(pfn)

    def remove_table(self, table) -> None:
        self.tables.append(table)
        if self.flush_start is None or table.base < self.flush_start:
            self.flush_start = table.base

    def tlb_flush_mmu(self) -> None:
        """tlb_flush_mmu_tlbonly (+ invalidate_range) then free what was gathered."""
        k = self.k
        if self.flush_start is not None:
            s = self.start if self.fullmm else self.flush_start
            e = self.end if self.fullmm else max(self.flush_end or 0, s)
            k.mmu_notifiers.invalidate_range(self.mm, s, e)
            k.flush_tlb_mm_range(self.mm, s, e, bool(self.tables))
            self.flush_start = self.flush_end = None
        if self.pages:
            pages, self.pages = self.pages, []
            k.vmscan.release_pages(pages)
        if self.tables:
            tables, self.tables = self.tables, []
            for t in tables:
                k.pgt.free_table(t)

    def tlb_finish_mmu(self) -> None:
        self.tlb_flush_mmu()
