"""Tests for linmm.workload: trace parsing/saving, synthetic generators, recording."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import linmm
from linmm.workload import (RecordError, Trace, TraceError, load_trace, read_lackey, read_npy,
                            record, save_trace, sequential, uniform, zipf)
from linmm.workload.trace import iter_lackey_chunks

LACKEY = (
    "==1234== Lackey, an example Valgrind tool\n"
    "==1234== Command: /bin/true\n"
    "==1234== \n"
    "I  04010000,3\n"
    " L 04222cac,8\n"
    "\n"
    " S 7ff000398,8\n"
    " M 0421d1a0,4\n"
    "-- some valgrind remark\n"
    "I  0401FFFF,16\n"           # upper-case hex; crosses a page boundary: still one access
    " L ffffffffffffffff,1\n"
    "==1234== Exit code:       0\n"
)
ADDRS = [0x04010000, 0x04222CAC, 0x7FF000398, 0x0421D1A0, 0x0401FFFF, 0xFFFFFFFFFFFFFFFF]
KINDS = [0, 1, 2, 3, 0, 1]
HAVE_VALGRIND = shutil.which("valgrind") is not None
DEMO = Path(linmm.__file__).parent / "data" / "demo.npz"
DEMO_COUNT = 3_149_586


def _assert_same(a: Trace, b: Trace) -> None:
    assert a.addresses.dtype == b.addresses.dtype == np.uint64
    assert a.kinds.dtype == b.kinds.dtype == np.uint8
    assert a.writes.dtype == b.writes.dtype == np.bool_
    np.testing.assert_array_equal(a.addresses, b.addresses)
    np.testing.assert_array_equal(a.kinds, b.kinds)
    np.testing.assert_array_equal(a.writes, b.writes)


# ------------------------------------------------------------------ lackey parsing

def test_read_lackey_exact(tmp_path: Path) -> None:
    p = tmp_path / "trace.txt"
    p.write_text(LACKEY)
    t = read_lackey(p)
    assert len(t) == 6
    assert t.addresses.dtype == np.uint64 and t.kinds.dtype == np.uint8 and t.writes.dtype == bool
    np.testing.assert_array_equal(t.addresses, np.array(ADDRS, dtype=np.uint64))
    np.testing.assert_array_equal(t.kinds, np.array(KINDS, dtype=np.uint8))
    np.testing.assert_array_equal(t.writes, [False, False, True, True, False, False])
    assert "trace.txt" in t.source
    np.testing.assert_array_equal(
        t.pages(), np.unique(np.array(ADDRS, dtype=np.uint64) >> np.uint64(12)))
    assert t.pages().dtype == np.uint64


def test_read_lackey_crlf_gzip_and_no_final_newline(tmp_path: Path) -> None:
    p = tmp_path / "trace.txt.gz"
    with gzip.open(p, "wt", newline="") as f:
        f.write(LACKEY.replace("\n", "\r\n").rstrip("\r\n"))
    t = load_trace(p)
    np.testing.assert_array_equal(t.addresses, np.array(ADDRS, dtype=np.uint64))
    np.testing.assert_array_equal(t.kinds, KINDS)


def test_small_chunks_match(tmp_path: Path) -> None:
    text = "".join(f"I  {0x400000 + 3 * i:08x},3\n S {0x1ffeff000 - 8 * i:x},8\n" for i in range(500))
    p = tmp_path / "t.txt"
    p.write_text(text)
    whole = read_lackey(p)
    with open(p, "rb") as f:
        parts = list(iter_lackey_chunks(f, "t.txt", chunk_bytes=37))
    np.testing.assert_array_equal(np.concatenate([a for a, _ in parts]), whole.addresses)
    np.testing.assert_array_equal(np.concatenate([k for _, k in parts]), whole.kinds)
    assert len(whole) == 1000 and read_lackey(p, max_accesses=7).addresses.tolist() == \
        whole.addresses[:7].tolist()


@pytest.mark.parametrize("bad, lineno, pattern", [
    (" L zz12,8", 5, r"bad address 'zz12'"),
    (" X 0400,8", 5, r"malformed line"),
    ("I  0400", 5, r"malformed line"),
    (" S 0400,8x", 5, r"bad size"),
    ("hello world", 5, r"malformed line"),
    (" L 1" + "0" * 16 + ",8", 5, r"64 bits"),
])
def test_malformed_line(tmp_path: Path, bad: str, lineno: int, pattern: str) -> None:
    p = tmp_path / "bad.txt"
    p.write_text("==1== hi\nI  04010000,3\n\n L 04222cac,8\n" + bad + "\nI  04010003,3\n")
    with pytest.raises(TraceError) as ei:
        read_lackey(p)
    msg = str(ei.value)
    assert f"bad.txt:{lineno}:" in msg
    assert re.search(pattern, msg), msg
    assert "\n" not in msg
    assert isinstance(ei.value, ValueError)


def test_malformed_line_number_across_chunks(tmp_path: Path) -> None:
    lines = ["I  04010000,3"] * 100_000 + ["garbage"]
    p = tmp_path / "big.txt"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError, match=r"big\.txt:100001: malformed"):
        read_lackey(p)


def test_lackey_parse_speed(tmp_path: Path) -> None:
    body = "I  0401ab70,3\n S 1fff000768,8\n L 04222cac,8\nI  0401b770,1\n M 0421d1a0,4\n"
    p = tmp_path / "speed.txt"
    p.write_text(body * 200_000)  # 1 M lines
    import time
    t0 = time.perf_counter()
    t = read_lackey(p)
    dt = time.perf_counter() - t0
    assert len(t) == 1_000_000
    assert dt < 3.0, f"parsing 1M lines took {dt:.2f}s"


# ------------------------------------------------------------------ numpy files

def test_save_load_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 5000
    addrs = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    addrs[:3] = [0, 2**64 - 1, 0]
    kinds = rng.integers(0, 4, size=n).astype(np.uint8)
    t = Trace(addrs, kinds >= 2, kinds, "x")
    out = tmp_path / "t.npz"
    save_trace(t, out)
    _assert_same(read_npy(out), t)
    _assert_same(load_trace(str(out)), t)
    # writes inconsistent with kinds survive too; empty traces work
    t2 = Trace(addrs[:10], np.ones(10, bool), np.zeros(10, np.uint8), "y")
    save_trace(t2, tmp_path / "t2.npz")
    _assert_same(load_trace(tmp_path / "t2.npz"), t2)
    empty = Trace(np.zeros(0, np.uint64), np.zeros(0, bool), np.zeros(0, np.uint8), "e")
    save_trace(empty, tmp_path / "e.npz")
    assert len(load_trace(tmp_path / "e.npz")) == 0
    with np.load(out) as z:
        assert z["addresses_delta"].dtype == np.int64 and "format" in z.files


def test_read_npy_addresses(tmp_path: Path) -> None:
    p = tmp_path / "a.npy"
    np.save(p, np.array([4096, 8192, 4100], dtype=np.int64))
    t = load_trace(p)
    np.testing.assert_array_equal(t.addresses, np.array([4096, 8192, 4100], np.uint64))
    assert not t.writes.any() and (t.kinds == 1).all()
    np.testing.assert_array_equal(t.pages(), np.array([1, 2], np.uint64))
    np.save(p, np.array([-1, 5]))
    with pytest.raises(TraceError, match="a.npy"):
        read_npy(p)
    np.save(p, np.array([1.5]))
    with pytest.raises(TraceError, match="integer"):
        read_npy(p)


def test_read_npz_plain(tmp_path: Path) -> None:
    p = tmp_path / "b.npz"
    np.savez(p, addresses=np.array([1, 2, 3], np.uint64), writes=np.array([0, 1, 0], bool))
    t = read_npy(p)
    np.testing.assert_array_equal(t.kinds, [1, 2, 1])
    np.testing.assert_array_equal(t.writes, [False, True, False])
    np.savez(p, addresses=np.array([1, 2, 3]), kinds=np.array([0, 3, 1], np.uint8))
    np.testing.assert_array_equal(read_npy(p).writes, [False, True, False])
    np.savez(p, addresses=np.array([1, 2, 3]), kinds=np.array([0, 1]))
    with pytest.raises(TraceError, match=r"b\.npz: field 'kinds'"):
        read_npy(p)
    np.savez(p, other=np.array([1]))
    with pytest.raises(TraceError, match="'addresses' missing"):
        read_npy(p)


# ------------------------------------------------------------------ generators

@pytest.mark.parametrize("gen", [sequential, uniform, zipf])
def test_generator_determinism(gen) -> None:
    a, b, c = gen(2000, seed=3, write_ratio=0.5), gen(2000, seed=3, write_ratio=0.5), \
        gen(2000, seed=4, write_ratio=0.5)
    _assert_same(a, b)
    assert len(a) == 2000
    assert not (np.array_equal(a.addresses, c.addresses) and np.array_equal(a.writes, c.writes))
    np.testing.assert_array_equal(a.writes, a.kinds == 2)
    assert set(np.unique(a.kinds).tolist()) <= {1, 2}


def test_sequential_stride() -> None:
    t = sequential(100, base=0x1000, stride=64)
    np.testing.assert_array_equal(t.addresses, 0x1000 + 64 * np.arange(100, dtype=np.uint64))
    assert not t.writes.any()
    w = sequential(10, base=0, length=256, stride=64)
    assert w.addresses.tolist() == [0, 64, 128, 192] * 2 + [0, 64]
    assert sequential(1000, write_ratio=1.0).writes.all()


def test_uniform_and_zipf_bounds_and_skew() -> None:
    base, length, n = 0x7F0000000000, 4 << 20, 50_000
    u = uniform(n, base=base, length=length, seed=1)
    z = zipf(n, base=base, length=length, a=1.2, seed=1)
    for t in (u, z):
        assert int(t.addresses.min()) >= base and int(t.addresses.max()) < base + length
    npages = length >> 12
    top_u = np.bincount((u.addresses - np.uint64(base)).astype(np.int64) >> 12).max() / n
    top_z = np.bincount((z.addresses - np.uint64(base)).astype(np.int64) >> 12).max() / n
    assert top_z > 20 * top_u and top_z > 20 / npages
    assert 0.25 < u.writes.mean() < 0.35


# ------------------------------------------------------------------ recording

@pytest.mark.skipif(not HAVE_VALGRIND, reason="valgrind not installed")
def test_record_true(tmp_path: Path) -> None:
    out = tmp_path / "true.npz"
    t = record(["/bin/true"], str(out))
    assert len(t) > 1000
    assert set(np.unique(t.kinds).tolist()) == {0, 1, 2, 3}
    _assert_same(load_trace(out), t)
    short = record(["/bin/true"], str(tmp_path / "s.npz"), max_accesses=100)
    assert len(short) == 100 and len(load_trace(tmp_path / "s.npz")) == 100


def test_record_without_valgrind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RecordError) as ei:
        record(["/bin/true"], str(tmp_path / "x.npz"))
    msg = str(ei.value)
    assert "valgrind is not installed" in msg and "apt-get install valgrind" in msg
    assert "\n" not in msg
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.skipif(not HAVE_VALGRIND, reason="valgrind not installed")
def test_record_bad_program(tmp_path: Path) -> None:
    for cmd in (["/nonexistent/prog"], ["/bin/false"]):
        with pytest.raises(RecordError) as ei:
            record(cmd, str(tmp_path / "x.npz"))
        assert "\n" not in str(ei.value) and cmd[0] in str(ei.value)


# ------------------------------------------------------------------ demo data

def test_demo_trace() -> None:
    t = load_trace(DEMO)
    assert len(t) == DEMO_COUNT
    readme = (DEMO.parent / "README.md").read_text()
    assert f"{DEMO_COUNT:,}" in readme
    assert set(np.unique(t.kinds).tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(t.writes, t.kinds >= 2)
    assert DEMO.stat().st_size < 3 << 20
