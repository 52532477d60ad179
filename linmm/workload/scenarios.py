"""Synthetic scenarios that need more than one task (fork-and-write)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..uapi import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE


@dataclass
class ForkAndWriteResult:
    pages: int
    children: int
    parent_faults: int
    child_faults: list[int]
    cow_copies: int  # anon pages allocated by the children's writes
    checksum_ok: bool


def fork_and_write(k, pages: int = 1024, children: int = 4, write_fraction: float = 0.5,
                   seed: int = 0) -> ForkAndWriteResult:
    """A parent fills `pages` pages, forks `children`, each child writes a random
    fraction of the pages (copy-on-write) and checks the parent's data is intact."""
    rng = np.random.default_rng(seed)
    parent = k.spawn("fork-parent")
    length = pages << 12
    a = parent.mmap(0, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    f0 = k.vm_events["pgfault"]
    parent.write(a, data)
    parent_faults = k.vm_events["pgfault"] - f0
    child_faults = []
    anon0 = sum(pg.vm_stat["nr_anon_pages"] for pg in k.pgdats)
    kids = []
    for i in range(children):
        c = parent.fork(f"fork-child{i}")
        kids.append(c)
        idx = np.flatnonzero(rng.random(pages) < write_fraction)
        f0 = k.vm_events["pgfault"]
        c.access(np.uint64(a) + (idx.astype(np.uint64) << np.uint64(12)), True)
        child_faults.append(k.vm_events["pgfault"] - f0)
    copies = sum(pg.vm_stat["nr_anon_pages"] for pg in k.pgdats) - anon0
    ok = parent.read(a, length) == data
    for c in kids:
        c.exit()
    parent.exit()
    return ForkAndWriteResult(pages, children, parent_faults, child_faults, copies, ok)
