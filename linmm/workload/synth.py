"""Synthetic, seed-deterministic access traces (loads and stores only).

Every generator draws from ``np.random.default_rng(seed)``, so the same
arguments always give identical arrays.  Writes are emitted as kind S (2),
reads as kind L (1).
"""

from __future__ import annotations

import numpy as np

from .trace import KIND_L, KIND_S, PAGE_SHIFT, Trace

__all__ = ["sequential", "uniform", "zipf"]

DEFAULT_BASE = 0x7F0000000000
PAGE_SIZE = 1 << PAGE_SHIFT


def _check(n: int, base: int, write_ratio: float) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= base < 1 << 64:
        raise ValueError(f"base must fit in 64 bits, got {base:#x}")
    if not 0.0 <= write_ratio <= 1.0:
        raise ValueError(f"write_ratio must be in [0, 1], got {write_ratio}")


def _finish(offsets: np.ndarray, base: int, write_ratio: float,
            rng: np.random.Generator, source: str) -> Trace:
    """Add ``base``, draw the write mask and build the Trace."""
    addresses = offsets.astype(np.uint64) + np.uint64(base)
    writes = rng.random(len(offsets)) < write_ratio
    kinds = np.where(writes, np.uint8(KIND_S), np.uint8(KIND_L)).astype(np.uint8)
    return Trace(addresses, writes, kinds, source)


def sequential(n: int, base: int = DEFAULT_BASE, length: int | None = None,
               write_ratio: float = 0.0, seed: int = 0, stride: int = 64) -> Trace:
    """``n`` accesses at ``base + i*stride``; wraps around modulo ``length`` if given."""
    _check(n, base, write_ratio)
    if stride < 0:
        raise ValueError(f"stride must be >= 0, got {stride}")
    if length is not None and length <= 0:
        raise ValueError(f"length must be > 0, got {length}")
    rng = np.random.default_rng(seed)
    offsets = np.arange(n, dtype=np.uint64) * np.uint64(stride)
    if length is not None:
        offsets %= np.uint64(length)
    src = (f"sequential(n={n}, base={base:#x}, length={length}, stride={stride}, "
           f"write_ratio={write_ratio}, seed={seed})")
    return _finish(offsets, base, write_ratio, rng, src)


def uniform(n: int, base: int = DEFAULT_BASE, length: int = 64 << 20,
            write_ratio: float = 0.3, seed: int = 0) -> Trace:
    """``n`` accesses at byte offsets drawn uniformly from ``[base, base+length)``."""
    _check(n, base, write_ratio)
    if length <= 0:
        raise ValueError(f"length must be > 0, got {length}")
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, length, size=n, dtype=np.uint64)
    src = f"uniform(n={n}, base={base:#x}, length={length}, write_ratio={write_ratio}, seed={seed})"
    return _finish(offsets, base, write_ratio, rng, src)


def zipf(n: int, base: int = DEFAULT_BASE, length: int = 64 << 20, a: float = 1.2,
         write_ratio: float = 0.3, seed: int = 0) -> Trace:
    """``n`` accesses with Zipf(``a``) page popularity over ``[base, base+length)``.

    The region has ``P = ceil(length / 4096)`` pages; the page of popularity rank
    ``k`` (1-based) is chosen with probability proportional to ``k**-a`` (a
    bounded Zipf law, so any ``a > 0`` works).  Ranks are assigned to pages by a
    seeded random permutation, so hot pages are scattered over the region, and
    each access gets a uniformly random byte offset within its page (clipped to
    ``length``).
    """
    _check(n, base, write_ratio)
    if length <= 0:
        raise ValueError(f"length must be > 0, got {length}")
    if a <= 0:
        raise ValueError(f"a must be > 0, got {a}")
    rng = np.random.default_rng(seed)
    npages = -(-length // PAGE_SIZE)
    weights = np.arange(1, npages + 1, dtype=np.float64) ** -float(a)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(n), side="right")
    ranks = np.minimum(ranks, npages - 1)
    page_of_rank = rng.permutation(npages).astype(np.uint64)
    offsets = page_of_rank[ranks] << np.uint64(PAGE_SHIFT)
    offsets += rng.integers(0, PAGE_SIZE, size=n, dtype=np.uint64)
    np.minimum(offsets, np.uint64(length - 1), out=offsets)
    src = (f"zipf(n={n}, base={base:#x}, length={length}, a={a}, "
           f"write_ratio={write_ratio}, seed={seed})")
    return _finish(offsets, base, write_ratio, rng, src)
