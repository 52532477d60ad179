"""Replay a trace on a booted kernel and collect what the memory manager did."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import Signal
from ..uapi import MAP_ANONYMOUS, MAP_FIXED_NOREPLACE, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE
from .trace import Trace

REGION_GAP_PAGES = 16  # pages closer than 64 KiB belong to one loader mapping


@dataclass
class ReplayResult:
    trace: Trace
    regions: list[tuple[int, int]]
    accesses: int = 0
    faults: int = 0
    major_faults: int = 0
    rss_timeline: list[tuple[int, int]] = field(default_factory=list)  # (accesses done, RSS kB)
    meminfo_before: str = ""
    meminfo_after: str = ""
    vmstat_before: str = ""
    vmstat_after: str = ""
    signal: Signal | None = None
    seconds: float = 0.0

    @property
    def rss_peak_kb(self) -> int:
        return max((r for _, r in self.rss_timeline), default=0)


def loader_regions(trace: Trace, gap_pages: int = REGION_GAP_PAGES) -> list[tuple[int, int]]:
    """Group the trace's pages into [start, end) address ranges a loader would have mapped."""
    pages = trace.pages()
    if not len(pages):
        return []
    breaks = np.flatnonzero(np.diff(pages) > np.uint64(gap_pages)) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(pages)]))
    return [(int(pages[s]) << 12, (int(pages[e - 1]) + 1) << 12) for s, e in zip(starts, ends)]


def _rss_kb(k, task) -> int:
    for line in k.read_file(f"/proc/{task.pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def replay(k, trace: Trace, *, chunk: int = 1 << 20, progress: bool | None = None,
           name: str = "replay") -> ReplayResult:
    """Spawn a task, map the trace's regions, replay every access in order."""
    task = k.spawn(name)
    regions = loader_regions(trace)
    prot = PROT_READ | PROT_WRITE | PROT_EXEC
    placed = []
    for start, end in regions:
        if any(v.vm_start < end and v.vm_end > start for v in task.mm.vmas):
            # the stack VMA already covers it (or part of it): map only the rest
            continue
        task.mmap(start, end - start, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE)
        placed.append((start, end))
    res = ReplayResult(trace=trace, regions=placed)
    res.meminfo_before = k.read_file("/proc/meminfo")
    res.vmstat_before = k.read_file("/proc/vmstat")
    ev0 = dict(k.vm_events)
    n = len(trace)
    show = sys.stderr.isatty() if progress is None else progress
    t0 = time.perf_counter()
    res.rss_timeline.append((0, _rss_kb(k, task)))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        try:
            task.access(trace.addresses[s:e], trace.writes[s:e])
        except Signal as sig:
            res.signal = sig
            res.accesses = s
            break
        res.accesses = e
        res.rss_timeline.append((e, _rss_kb(k, task)))
        if show:
            frac = e / n
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\rreplay [{bar:<30}] {frac:6.1%} {e:,}/{n:,}")
            sys.stderr.flush()
    if show:
        sys.stderr.write("\n")
    res.seconds = time.perf_counter() - t0
    res.faults = k.vm_events["pgfault"] - ev0["pgfault"]
    res.major_faults = k.vm_events["pgmajfault"] - ev0["pgmajfault"]
    res.meminfo_after = k.read_file("/proc/meminfo")
    res.vmstat_after = k.read_file("/proc/vmstat")
    return res
