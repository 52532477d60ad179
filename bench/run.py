"""linmm benchmarks (issue 3).  Run: python bench/run.py [--quick]

Prints medians of several repetitions; no assertion, figures go to the notes.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time

import numpy as np

import linmm
from linmm import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE


def median_time(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench_replay_resident(n: int, reps: int) -> None:
    """t.access over n addresses whose pages are all mapped, vs one np.bincount pass."""
    k = linmm.Kernel(linmm.MachineConfig(ram="1G"))
    t = k.spawn("bench")
    length = 64 << 20
    a = t.mmap(0, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    t.access(np.arange(a, a + length, 4096, dtype=np.uint64), True)  # make every page resident
    rng = np.random.default_rng(1)
    addrs = (np.uint64(a) + rng.integers(0, length, n, dtype=np.uint64))
    writes = rng.random(n) < 0.3
    faults0 = k.vm_events["pgfault"]
    t_access = median_time(lambda: t.access(addrs, writes), reps)
    assert k.vm_events["pgfault"] == faults0, "resident replay must not fault"
    pages = addrs >> np.uint64(12)
    t_np = median_time(lambda: np.bincount((pages - pages.min()).astype(np.int64)), reps)
    print(f"replay of resident pages: {n / t_access / 1e6:.1f} M accesses/s "
          f"({t_access:.3f} s for {n / 1e6:.0f} M); np.bincount pass {t_np:.3f} s; "
          f"ratio {t_access / t_np:.1f}x")


def bench_first_touch(n_pages: int, reps: int) -> None:
    """First-touch anonymous write faults per second (t.access over fresh pages)."""
    rates = []
    for _ in range(reps):
        k = linmm.Kernel(linmm.MachineConfig(ram="2G"))
        t = k.spawn("bench")
        a = t.mmap(0, n_pages << 12, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        addrs = np.arange(a, a + (n_pages << 12), 4096, dtype=np.uint64)
        f0 = k.vm_events["pgfault"]
        gc.collect()
        t0 = time.perf_counter()
        t.access(addrs, True)
        dt = time.perf_counter() - t0
        assert k.vm_events["pgfault"] - f0 == n_pages
        rates.append(n_pages / dt)
    r = statistics.median(rates)
    # the same through single-page touches (one fault per call), for comparison
    k = linmm.Kernel(linmm.MachineConfig(ram="1G"))
    t = k.spawn("bench")
    m = 20000
    a = t.mmap(0, m << 12, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    t0 = time.perf_counter()
    for i in range(m):
        t.touch(a + (i << 12), True)
    single = m / (time.perf_counter() - t0)
    print(f"first-touch anonymous faults: {r / 1e3:.0f} k/s batched ({n_pages} pages); "
          f"{single / 1e3:.0f} k/s one t.touch() per page")


_BOOT_CHILD = r"""
import resource, sys, time, gc
import linmm
gc.collect()
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096
r0 = rss()
t0 = time.perf_counter()
k = linmm.Kernel(linmm.MachineConfig(ram='16G'))
dt = time.perf_counter() - t0
gc.collect()
r1 = rss()
pages = k.layout.present_pages()
print(dt, (r1 - r0) / pages, k.memmap.nbytes() / k.memmap.nr)
"""


def bench_boot(reps: int) -> None:
    """Boot time and host RSS growth per simulated page of a 16 GiB machine (fresh process)."""
    times, per_page = [], []
    for _ in range(reps):
        out = subprocess.run([sys.executable, "-c", _BOOT_CHILD], capture_output=True, text=True,
                             check=True).stdout.split()
        times.append(float(out[0]))
        per_page.append(float(out[1]))
        declared = float(out[2])
    print(f"boot of a 16 GiB machine: {statistics.median(times):.3f} s; host RSS growth "
          f"{statistics.median(per_page):.1f} bytes per simulated page "
          f"(memmap arrays {declared:.0f} bytes per pfn, calloc'ed)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    args = ap.parse_args()
    reps = 3 if args.quick else 5
    bench_replay_resident(2_000_000 if args.quick else 20_000_000, reps)
    bench_first_touch(50_000 if args.quick else 200_000, 3)
    bench_boot(3)


if __name__ == "__main__":
    main()
