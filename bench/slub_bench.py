"""SLUB benchmark (issue 5): kmem_cache_alloc + kmem_cache_free pairs per second.

    python bench/slub_bench.py [--n 300000] [--debug-n 5000] [--reps 5]

Prints the median of --reps runs for a 64-byte cache without debugging (the
per-cpu fast paths) and booted with "slub_debug" (every operation takes the
slow path: consistency checks, red zones, poisoning, alloc/free tracks).
Also kmalloc(64) + kfree pairs.  No assertion; the figures go to the notes.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time

import linmm
from linmm import GFP_KERNEL
from linmm.mm.slub import get_slub


def pairs_per_second(cmdline: str, n: int, reps: int, kmalloc: bool = False) -> float:
    rates = []
    for _ in range(reps):
        k = linmm.Kernel(linmm.MachineConfig(ram="256M", cmdline=cmdline))
        sl = get_slub(k)
        if kmalloc:
            alloc, free = sl.kmalloc, sl.kfree
            args = (64, GFP_KERNEL)
            for _ in range(100):  # warm the cpu slab
                free(alloc(*args))
            gc.collect()
            t0 = time.perf_counter()
            for _ in range(n):
                free(alloc(64, GFP_KERNEL))
        else:
            c = sl.kmem_cache_create("bench64", 64)
            alloc, free = sl.kmem_cache_alloc, sl.kmem_cache_free
            for _ in range(100):
                free(c, alloc(c, GFP_KERNEL))
            gc.collect()
            t0 = time.perf_counter()
            for _ in range(n):
                free(c, alloc(c, GFP_KERNEL))
        rates.append(n / (time.perf_counter() - t0))
        sl.check()
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300_000, help="pairs per run without debugging")
    ap.add_argument("--debug-n", type=int, default=5_000, help="pairs per run with slub_debug")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    rows = [("kmem_cache_alloc+free, no debug", "", a.n, False),
            ("kmem_cache_alloc+free, slub_debug (FZPU)", "slub_debug", a.debug_n, False),
            ("kmalloc(64)+kfree, no debug", "", a.n, True),
            ("kmalloc(64)+kfree, slub_debug (FZPU)", "slub_debug", a.debug_n, True)]
    for label, cmdline, n, km in rows:
        r = pairs_per_second(cmdline, n, a.reps, km)
        print(f"{label:44s} {r:12,.0f} pairs/s  (median of {a.reps} x {n:,})")


if __name__ == "__main__":
    main()
