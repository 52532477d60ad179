"""Memory-access traces: the :class:`Trace` container and its readers/writers.

Supported inputs:

* valgrind ``--tool=lackey --trace-mem=yes`` text (optionally gzip-compressed),
* ``.npy`` 1-D integer arrays of addresses (all treated as loads),
* ``.npz`` archives with ``addresses`` and optional ``writes``/``kinds``, or the
  compact delta-encoded archives written by :func:`save_trace`.
"""

from __future__ import annotations

import gzip
import os
import re
import zipfile
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np

__all__ = [
    "TraceError", "Trace", "read_lackey", "read_npy", "load_trace", "save_trace",
    "iter_lackey_chunks", "parse_lackey_stream",
    "KIND_I", "KIND_L", "KIND_S", "KIND_M", "KIND_NAMES", "PAGE_SHIFT",
]

PAGE_SHIFT = 12
KIND_I, KIND_L, KIND_S, KIND_M = 0, 1, 2, 3
KIND_NAMES = "ILSM"

#: value of the ``format`` key in archives written by :func:`save_trace`
#: (addresses delta-encoded per stream: I fetches vs. L/S/M data accesses).
FORMAT_MARKER = "linmm-trace-delta-v1"

_CHUNK_BYTES = 1 << 22  # 4 MiB of text per vectorised parse step


class TraceError(ValueError):
    """A trace file is malformed; the message is one line naming file and line/field."""


@dataclass(eq=False)
class Trace:
    """A sequence of memory accesses in program order.

    ``kinds`` uses 0 = I (instruction fetch), 1 = L (load), 2 = S (store),
    3 = M (modify, i.e. load+store of the same address); ``writes`` is True for
    S and M.  Arrays are coerced to uint64 / bool / uint8 on construction.
    """

    addresses: np.ndarray
    writes: np.ndarray
    kinds: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        self.addresses = np.ascontiguousarray(self.addresses, dtype=np.uint64).reshape(-1)
        self.writes = np.ascontiguousarray(self.writes, dtype=bool).reshape(-1)
        self.kinds = np.ascontiguousarray(self.kinds, dtype=np.uint8).reshape(-1)
        n = len(self.addresses)
        if len(self.writes) != n or len(self.kinds) != n:
            raise ValueError(
                f"Trace arrays differ in length: addresses={n} writes={len(self.writes)} "
                f"kinds={len(self.kinds)}")

    def __len__(self) -> int:
        return int(self.addresses.shape[0])

    def __repr__(self) -> str:
        return f"Trace(n={len(self)}, pages={len(self.pages())}, source={self.source!r})"

    def pages(self) -> np.ndarray:
        """Unique page numbers (``address >> 12``), sorted, uint64."""
        return np.unique(self.addresses >> np.uint64(PAGE_SHIFT))


# --------------------------------------------------------------------------- lackey text

_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i
_IS_DEC = np.zeros(256, dtype=bool)
_IS_DEC[ord("0"):ord("9") + 1] = True
_DATA_KIND = np.full(256, 255, dtype=np.uint8)
_DATA_KIND[ord("L")], _DATA_KIND[ord("S")], _DATA_KIND[ord("M")] = KIND_L, KIND_S, KIND_M
_SLOW_RE = re.compile(r"^\s*([ILSM])\s+([^,\s]+),\s*(\S+)\s*$")
_PAD = b"\n\n\n\n"


def _slow_line(line: bytes, where: str) -> tuple[int, int] | None:
    """Parse one line the slow way; None for lines to skip, TraceError if malformed."""
    text = line.decode("latin-1")
    stripped = text.strip()
    if not stripped or text.startswith(("==", "--")):
        return None
    m = _SLOW_RE.match(text)
    if m is None:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise TraceError(f"{where}: malformed line {shown!r}")
    kind_ch, hex_s, size_s = m.groups()
    if not re.fullmatch(r"[0-9a-fA-F]+", hex_s):
        raise TraceError(f"{where}: bad address {hex_s[:40]!r}")
    addr = int(hex_s, 16)
    if addr >= 1 << 64:
        raise TraceError(f"{where}: address {hex_s[:40]!r} does not fit in 64 bits")
    if not size_s.isdigit() or not size_s.isascii():
        raise TraceError(f"{where}: bad size {size_s[:20]!r}")
    return addr, KIND_NAMES.index(kind_ch)


def _parse_block(buf: bytes, name: str, line0: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse a block of complete lines (``buf`` ends with ``\\n``) into (addresses, kinds).

    ``line0`` is the number of lines before this block (for error messages).
    """
    a = np.frombuffer(buf + _PAD, dtype=np.uint8)
    nl = np.flatnonzero(a[: len(buf)] == 10)
    n = len(nl)
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = nl[:-1] + 1
    ends = nl.astype(np.int64)
    ends -= (ends > starts) & (a[ends - 1] == 13)  # tolerate CRLF
    ln = ends - starts
    b0, b1, b2 = a[starts], a[starts + 1], a[starts + 2]
    skip = (ln == 0) | ((ln >= 2) & (((b0 == 61) & (b1 == 61)) | ((b0 == 45) & (b1 == 45))))
    dkind = _DATA_KIND[b1]
    is_i = (b0 == 73) & (b1 == 32)
    is_d = (b0 == 32) & (dkind != 255)
    cand = np.flatnonzero((is_i | is_d) & (b2 == 32) & (ln >= 6) & ~skip)

    addr_all = np.zeros(n, dtype=np.uint64)
    kind_all = np.where(is_i, np.uint8(KIND_I), dkind)
    done = skip.copy()  # lines fully handled (skipped or parsed by the fast path)

    if len(cand):
        s, e = starts[cand], ends[cand]
        commas = np.flatnonzero(a == 44)
        ci = np.searchsorted(commas, s + 3)
        c = np.append(commas, len(a))[ci]
        hl, dl = c - s - 3, e - c - 1
        ok = (c < e) & (hl >= 1) & (hl <= 16) & (dl >= 1)
        s, c, e, hl, dl, cand = s[ok], c[ok], e[ok], hl[ok], dl[ok], cand[ok]
    if len(cand):
        w = int(hl.max())
        cols = np.arange(w, dtype=np.int64)[:, None]
        digits = _HEX[a[c[None, :] - w + cols]]            # (w, m), right-aligned
        digits[cols < (w - hl)[None, :]] = 0                 # left padding
        good = (digits != 255).all(axis=0)
        d = int(dl.max())
        dcols = np.arange(d, dtype=np.int64)[:, None]
        dec = _IS_DEC[a[np.minimum(c[None, :] + 1 + dcols, len(a) - 1)]]
        good &= (dec | (dcols >= dl[None, :])).all(axis=0)
        val = np.zeros(len(cand), dtype=np.uint64)
        four = np.uint64(4)
        for j in range(w):
            val <<= four
            val |= digits[j]
        addr_all[cand[good]] = val[good]
        done[cand[good]] = True

    keep = ~skip
    for i in np.flatnonzero(~done).tolist():
        r = _slow_line(buf[starts[i]:ends[i]], f"{name}:{line0 + i + 1}")
        if r is None:
            keep[i] = False
        else:
            addr_all[i], kind_all[i] = r
    return addr_all[keep], kind_all[keep]


def iter_lackey_chunks(f: BinaryIO, name: str,
                       chunk_bytes: int = _CHUNK_BYTES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(addresses, kinds)`` arrays from lackey text read from binary file ``f``.

    Reads ``chunk_bytes`` at a time and parses each block of whole lines with
    numpy, so memory use is bounded by the chunk size, not the file size.
    """
    carry = b""
    line0 = 0
    while True:
        data = f.read(chunk_bytes)
        if not data:
            break
        buf = carry + data
        cut = buf.rfind(b"\n")
        if cut < 0:
            carry = buf
            continue
        block, carry = buf[: cut + 1], buf[cut + 1:]
        yield _parse_block(block, name, line0)
        line0 += block.count(b"\n")
    if carry:
        yield _parse_block(carry + b"\n", name, line0)


def parse_lackey_stream(f: BinaryIO, name: str, max_accesses: int | None = None) -> Trace:
    """Parse lackey text from an open binary file into a :class:`Trace`.

    Stops early (without reading the rest) once ``max_accesses`` accesses are read.
    """
    if max_accesses is not None and max_accesses < 0:
        raise ValueError(f"max_accesses must be >= 0, got {max_accesses}")
    addrs: list[np.ndarray] = []
    kinds: list[np.ndarray] = []
    total = 0
    for a, k in iter_lackey_chunks(f, name):
        if max_accesses is not None and total + len(a) >= max_accesses:
            keep = max_accesses - total
            addrs.append(a[:keep])
            kinds.append(k[:keep])
            break
        addrs.append(a)
        kinds.append(k)
        total += len(a)
    addr = np.concatenate(addrs) if addrs else np.zeros(0, np.uint64)
    kind = np.concatenate(kinds) if kinds else np.zeros(0, np.uint8)
    return Trace(addr, kind >= KIND_S, kind, name)


def read_lackey(path: str | os.PathLike, max_accesses: int | None = None) -> Trace:
    """Read valgrind lackey ``--trace-mem=yes`` output (plain, or gzip if named ``*.gz``).

    Lines are ``I  ADDR,SIZE`` / `` L ADDR,SIZE`` / `` S ...`` / `` M ...`` with ADDR in
    hex (no ``0x``) and SIZE in decimal.  Lines starting with ``==`` or ``--`` and
    blank lines are skipped; anything else raises :class:`TraceError` naming
    ``file:line``.  ``M`` (modify) is one access with ``writes`` True.  An access
    whose ``[addr, addr+size)`` straddles a 4096-byte page boundary is still
    recorded as one access at ``addr`` (the size is validated but not kept).
    """
    name = os.fspath(path)
    opener = gzip.open if str(name).endswith(".gz") else open
    try:
        with opener(name, "rb") as f:
            return parse_lackey_stream(f, str(name), max_accesses)
    except (OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise TraceError(f"{name}: cannot read: {e}") from e


# --------------------------------------------------------------------------- numpy files

def _int_field(arr: np.ndarray, where: str) -> np.ndarray:
    """Validate a 1-D integer address array and return it as uint64."""
    if arr.ndim != 1:
        raise TraceError(f"{where}: expected a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TraceError(f"{where}: expected an integer array, got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and len(arr) and int(arr.min()) < 0:
        raise TraceError(f"{where}: negative address {int(arr.min())}")
    return arr.astype(np.uint64)


def read_npy(path: str | os.PathLike) -> Trace:
    """Read a ``.npy`` address array (all loads) or a ``.npz`` trace archive.

    ``.npz`` archives hold ``addresses`` and optional ``writes`` (bool) and ``kinds``
    (uint8, 0..3); missing ``kinds`` become S for writes and L otherwise, missing
    ``writes`` are derived from ``kinds``.  Archives with ``format`` equal to
    ``linmm-trace-delta-v1`` are the delta-encoded ones written by :func:`save_trace`.
    """
    name = os.fspath(path)
    try:
        data = np.load(name, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise TraceError(f"{name}: cannot read: {' '.join(str(e).split()) or type(e).__name__}") from e
    if isinstance(data, np.ndarray):
        addr = _int_field(data, f"{name}")
        n = len(addr)
        return Trace(addr, np.zeros(n, bool), np.full(n, KIND_L, np.uint8), str(name))
    with data:
        keys = set(data.files)
        raw_kinds = data["kinds"] if "kinds" in keys else None
        if "format" in keys:
            fmt = str(data["format"])
            if fmt != FORMAT_MARKER:
                raise TraceError(f"{name}: field 'format': unknown trace format {fmt!r}")
            if "addresses_delta" not in keys or raw_kinds is None:
                raise TraceError(f"{name}: field 'addresses_delta'/'kinds' missing")
            delta = data["addresses_delta"]
            if delta.ndim != 1 or delta.dtype != np.int64:
                raise TraceError(f"{name}: field 'addresses_delta': expected 1-D int64")
            if raw_kinds.shape != delta.shape:
                raise TraceError(f"{name}: field 'kinds': shape {raw_kinds.shape} != {delta.shape}")
            addr = _delta_decode(delta, raw_kinds)
        elif "addresses" in keys:
            addr = _int_field(data["addresses"], f"{name}: field 'addresses'")
        else:
            raise TraceError(f"{name}: field 'addresses' missing (keys: {sorted(keys)})")
        n = len(addr)
        kinds = writes = None
        if raw_kinds is not None:
            kinds = raw_kinds
            if kinds.shape != (n,) or kinds.dtype.kind not in "iu":
                raise TraceError(f"{name}: field 'kinds': expected {n} integers, got "
                                 f"shape {kinds.shape} dtype {kinds.dtype}")
            if n and (int(kinds.min()) < 0 or int(kinds.max()) > KIND_M):
                raise TraceError(f"{name}: field 'kinds': values must be 0..3")
            kinds = kinds.astype(np.uint8)
        if "writes" in keys:
            writes = data["writes"]
            if writes.shape != (n,) or writes.dtype.kind not in "biu":
                raise TraceError(f"{name}: field 'writes': expected {n} booleans, got "
                                 f"shape {writes.shape} dtype {writes.dtype}")
            writes = writes.astype(bool)
    if kinds is None:
        kinds = np.where(writes, np.uint8(KIND_S), np.uint8(KIND_L)) if writes is not None \
            else np.full(n, KIND_L, np.uint8)
    if writes is None:
        writes = kinds >= KIND_S
    return Trace(addr, writes, kinds, str(name))


def load_trace(path: str | os.PathLike) -> Trace:
    """Load a trace, choosing the reader by extension (``.npz``/``.npy`` else lackey text)."""
    name = str(os.fspath(path))
    if name.endswith((".npz", ".npy")):
        return read_npy(name)
    return read_lackey(name)


def _streams(kinds: np.ndarray) -> list[np.ndarray]:
    """Indices of the two delta streams: instruction fetches, and data accesses."""
    is_i = kinds == KIND_I
    return [np.flatnonzero(is_i), np.flatnonzero(~is_i)]


def _delta_encode(addr: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Delta-encode ``addr`` separately within the I stream and the L/S/M stream.

    Each element becomes its difference (mod 2**64) from the previous address of
    the same stream; the first of each stream is the address itself.  Splitting
    the streams keeps deltas small (code and data live far apart), which makes
    the zlib-compressed archive ~40% smaller than a single delta stream.
    """
    delta = np.empty_like(addr)
    for idx in _streams(kinds):
        if len(idx):
            x = addr[idx]
            d = np.empty_like(x)
            d[0] = x[0]
            np.subtract(x[1:], x[:-1], out=d[1:])  # uint64 wrap-around
            delta[idx] = d
    return delta.view(np.int64)


def _delta_decode(delta: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_delta_encode`."""
    d = delta.view(np.uint64)
    addr = np.empty_like(d)
    for idx in _streams(kinds):
        addr[idx] = np.cumsum(d[idx], dtype=np.uint64)
    return addr


def save_trace(trace: Trace, path: str | os.PathLike) -> None:
    """Write ``trace`` as a compact ``.npz`` that :func:`read_npy` reads back exactly.

    Keys: ``format`` (marker), ``addresses_delta`` (int64, see :func:`_delta_encode`),
    ``kinds`` (uint8), ``source`` (str); ``writes`` is stored only if it differs
    from ``kinds >= 2``.
    """
    addr = np.ascontiguousarray(trace.addresses, dtype=np.uint64)
    kinds = np.asarray(trace.kinds, dtype=np.uint8)
    delta = _delta_encode(addr, kinds)
    extra = {}
    if not np.array_equal(np.asarray(trace.writes, bool), kinds >= KIND_S):
        extra["writes"] = np.asarray(trace.writes, bool)
    name = os.fspath(path)
    with open(name, "wb") as f:  # a file object stops numpy from appending ".npz"
        np.savez_compressed(f, format=np.array(FORMAT_MARKER), addresses_delta=delta.view(np.int64),
                            kinds=kinds, source=np.array(str(trace.source)), **extra)
