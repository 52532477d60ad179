"""Scenarios that run on the model (linmm.Kernel) and on the live kernel (LiveKernel).

A scenario is a plain function taking a kernel and returning observations:

    @scenario(description="64 first-touch writes: 64 minor faults, RssAnon +256 kB",
              expected_differences={"soft_dirty": "live kernel built without CONFIG_MEM_SOFT_DIRTY"})
    def scenario_anon_write_faults(k) -> dict:
        t = k.spawn("s")
        a = region(t, 64)
        f0 = minflt(k, t)
        t.access(pages(a, 64), True)
        return {"minflt": minflt(k, t) - f0}

Rules: use only the Task API both backends share (spawn, mmap, munmap, mprotect,
madvise, mincore, mremap, mlock family, setrlimit, read, write, touch, access,
fork, exit; read_file / write_file of /proc and /sys), never absolute addresses
the kernel chose (use returned addresses, or MAP_FIXED_NOREPLACE at BASE + n),
and observations that do not depend on the host (deltas, booleans, errno names,
values relative to the machine's own MemTotal).  Importing this package loads
the catalogue (linmm.scenarios.catalogue_*).
"""
from __future__ import annotations

import re
import struct
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import Errno, Signal
from ..uapi import (MAP_ANONYMOUS, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED, PROT_READ,
                    PROT_WRITE, si_code_name, signal_name)

PAGE = 4096
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
BASE = 0x7E0000000000          # a PGD slot (512 GiB) that neither backend uses
RW = PROT_READ | PROT_WRITE
PRIV = MAP_PRIVATE | MAP_ANONYMOUS
SHARED = MAP_SHARED | MAP_ANONYMOUS
DEFAULT_MACHINE = {"ram": "4G"}

PM_PFN = (1 << 55) - 1
PM_SOFT_DIRTY, PM_EXCLUSIVE, PM_FILE, PM_SWAP, PM_PRESENT = 1 << 55, 1 << 56, 1 << 61, 1 << 62, 1 << 63


# ====================================================================== the format
@dataclass
class Scenario:
    name: str
    fn: Callable
    description: str
    expected_differences: dict[str, str] = field(default_factory=dict)
    needs_root: bool = False
    model_only: bool = False
    machine: dict = field(default_factory=lambda: dict(DEFAULT_MACHINE))
    group: str = ""

    def __call__(self, k) -> dict:
        return self.fn(k)


CATALOGUE: dict[str, Scenario] = {}


def scenario(name: str | None = None, description: str | None = None,
             expected_differences: dict[str, str] | None = None, needs_root: bool = False,
             model_only: bool = False, machine: dict | None = None):
    """Register fn (named scenario_<name>) in CATALOGUE with its metadata.

    expected_differences maps an observation key to the reason the live kernel differs
    (behaviour changed after v5.7, host noise); needs_root marks scenarios that write
    /proc/sys or /sys knobs or change another uid; model_only ones never run live."""
    def deco(fn):
        nm = name or fn.__name__.removeprefix("scenario_")
        if nm in CATALOGUE:
            raise ValueError(f"scenario {nm} defined twice")
        doc = " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())
        sc = Scenario(nm, fn, description or doc, dict(expected_differences or {}), needs_root,
                      model_only, dict(machine or DEFAULT_MACHINE),
                      fn.__module__.rsplit(".", 1)[-1].removeprefix("catalogue_"))
        CATALOGUE[nm] = sc
        fn.scenario = sc
        return fn
    return deco


# ====================================================================== helpers
def is_live(k) -> bool:
    return bool(getattr(k, "live", False))


def settle(k) -> None:
    """Before reading global counters: the live kernel folds per-CPU batches and vmstat
    differentials (LiveKernel.settle); the model has none."""
    if is_live(k):
        k.settle()


def minflt(k, t) -> int:
    """Minor faults of t: field 10 of /proc/<pid>/stat on the live kernel, Task.min_flt on
    the model (which has no /proc/<pid>/stat yet)."""
    if is_live(k):
        text = k.read_file(f"/proc/{t.pid}/stat")
        return int(text[text.rindex(")") + 2:].split()[7])
    return t.min_flt


def pages(addr: int, n: int, step: int = 1) -> np.ndarray:
    """The addresses of n pages from addr (every step-th page)."""
    return np.arange(addr, addr + n * step * PAGE, step * PAGE, dtype=np.uint64)


def region(t, npages: int, prot: int = RW, flags: int = PRIV, at: int = 0) -> int:
    """A mapping at BASE + at (MAP_FIXED_NOREPLACE): the same address on both backends."""
    return t.mmap(BASE + at, npages * PAGE, prot, flags | MAP_FIXED_NOREPLACE)


def status(k, t) -> dict:
    """/proc/<pid>/status: "kB" fields as ints (kB), others as strings."""
    out = {}
    for ln in k.read_file(f"/proc/{t.pid}/status").splitlines():
        key, _, val = ln.partition(":")
        val = val.strip()
        m = re.fullmatch(r"(\d+) kB", val)
        out[key] = int(m.group(1)) if m else val
    return out


def _host_wide(k) -> None:
    """Note that a live scenario read counters every process on the host moves."""
    if is_live(k):
        k.host_wide = True


def meminfo(k) -> dict:
    """/proc/meminfo in kB (settled first on the live kernel)."""
    _host_wide(k)
    settle(k)
    out = {}
    for ln in k.read_file("/proc/meminfo").splitlines():
        key, _, val = ln.partition(":")
        out[key] = int(val.split()[0])
    return out


def vmstat(k) -> dict:
    _host_wide(k)
    settle(k)
    return {a: int(b) for a, b in (ln.split() for ln in k.read_file("/proc/vmstat").splitlines())}


def smaps(k, t, addr: int) -> dict:
    """The smaps entry of the VMA containing addr: kB fields as ints, VmFlags as a list."""
    settle(k)
    out: dict = {}
    hit = False
    for ln in k.read_file(f"/proc/{t.pid}/smaps").splitlines():
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", ln)
        if m:
            if hit:
                break
            hit = int(m.group(1), 16) <= addr < int(m.group(2), 16)
            if hit:
                out["_range"] = (int(m.group(1), 16), int(m.group(2), 16))
            continue
        if not hit:
            continue
        key, _, val = ln.partition(":")
        val = val.strip()
        if key == "VmFlags":
            out[key] = val.split()
        else:
            mm = re.fullmatch(r"(\d+) kB", val)
            out[key] = int(mm.group(1)) if mm else val
    if not hit:
        raise KeyError(f"no VMA contains {addr:#x}")
    return out


def smaps_fields(k, t, addr: int, keys=("Rss", "Pss", "Shared_Clean", "Shared_Dirty",
                                         "Private_Clean", "Private_Dirty", "Referenced",
                                         "Anonymous", "LazyFree", "Swap", "Locked")) -> dict:
    s = smaps(k, t, addr)
    return {key: s.get(key) for key in keys}


def pagemap(k, t, addr: int, n: int = 1) -> list[int]:
    raw = k.read_file(f"/proc/{t.pid}/pagemap", (addr >> 12) * 8, 8 * n)
    return list(struct.unpack(f"<{n}Q", raw))


def pm_flags(v: int) -> str:
    """The flag bits of a pagemap entry other than soft-dirty, e.g. "present|exclusive"."""
    names = [n for b, n in ((PM_PRESENT, "present"), (PM_SWAP, "swap"), (PM_FILE, "file"),
                            (PM_EXCLUSIVE, "exclusive")) if v & b]
    return "|".join(names) or "-"


def mincore_bits(t, addr: int, n: int) -> str:
    """mincore() of n pages as a string of '0'/'1' (the low bit of each byte)."""
    return "".join(str(b & 1) for b in t.mincore(addr, n * PAGE))


def outcome(fn, *args) -> str:
    """"ok", the errno name (EINVAL ...) or "SIGSEGV/SEGV_MAPERR" of a call."""
    try:
        fn(*args)
    except Errno as e:
        return type(e).__name__
    except Signal as s:
        return f"{signal_name(s.signo)}/{si_code_name(s.signo, s.code)}"
    return "ok"


def signal_of(fn, *args, base: int | None = None) -> str:
    """The signal a call raised: "SIGSEGV/SEGV_MAPERR@+0x3000" (address relative to base)."""
    try:
        fn(*args)
    except Signal as s:
        where = ""
        if s.addr is not None:
            where = f"@+{s.addr - base:#x}" if base is not None else f"@{s.addr:#x}"
        return f"{signal_name(s.signo)}/{si_code_name(s.signo, s.code)}{where}"
    except Errno as e:
        return type(e).__name__
    return "no signal"


def maps_layout(k, t, base: int, npages: int) -> list[str]:
    """The VMAs overlapping [base, base + npages pages) as "first-end perms" in pages
    relative to base (clipped)."""
    out = []
    end = base + npages * PAGE
    for ln in k.read_file(f"/proc/{t.pid}/maps").splitlines():
        rng, perms = ln.split()[:2]
        s, e = (int(x, 16) for x in rng.split("-"))
        if e <= base or s >= end:
            continue
        out.append(f"{(max(s, base) - base) // PAGE}-{(min(e, end) - base) // PAGE} {perms}")
    return out


def sysctl(k, name: str, value=None):
    """Read (and first write, if value is given) /proc/sys/vm/<name>; int when numeric."""
    path = f"/proc/sys/vm/{name}"
    if value is not None:
        k.write_file(path, f"{value}\n")
    text = k.read_file(path).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def write_outcome(k, path: str, text: str) -> str:
    try:
        k.write_file(path, text)
    except Errno as e:
        return type(e).__name__
    return "ok"


# ====================================================================== running
@dataclass
class Side:
    obs: dict | None = None
    error: str | None = None         # the scenario raised: traceback text
    host_wide: bool = False          # live: read counters that other processes move too


@dataclass
class Result:
    scenario: Scenario
    model: Side
    live: Side | None                # None: not run live (model-only run, model_only scenario)
    reference: bool = False          # live side is the recorded reference, not a run
    rows: list = field(default_factory=list)   # (mark, key, model, live, note)
    verdict: str = "agree"           # agree | expected | unexpected
    attempts: int = 1                # live runs it took (host-wide counters: see run_both)


def run_model(sc: Scenario) -> Side:
    from ..config import MachineConfig
    from ..kernel import Kernel
    try:
        k = Kernel(MachineConfig(**sc.machine))
        obs = sc.fn(k)
        k.check()
        return Side(_plain(obs))
    except Exception:                                  # noqa: BLE001
        return Side(None, traceback.format_exc(limit=6))


def run_live(sc: Scenario, **live_kw) -> Side:
    from ..live import LiveKernel
    try:
        with LiveKernel(**live_kw) as k:
            obs = sc.fn(k)
            k.check()
        if k.restore_problems:
            return Side(None, "could not restore: " + "; ".join(k.restore_problems))
        return Side(_plain(obs), host_wide=getattr(k, "host_wide", False))
    except Exception:                                  # noqa: BLE001
        return Side(None, traceback.format_exc(limit=6))


def _plain(obs) -> dict:
    if not isinstance(obs, dict):
        raise TypeError(f"a scenario returns a dict of observations, not {type(obs).__name__}")

    def conv(v):
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, bytes):
            return v.hex()
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.bool_):
            return bool(v)
        return v
    out = {}

    def put(prefix: str, v) -> None:
        if isinstance(v, dict):                   # nested dicts: "child.Rss" ...
            for sub, x in v.items():
                put(f"{prefix}.{sub}", x)
        else:
            out[prefix] = conv(v)
    for key, v in obs.items():
        put(str(key), v)
    return out


_MISSING = "<missing>"


def compare(sc: Scenario, model: Side, live: Side | None, reference: bool = False) -> Result:
    """Classify one scenario: agree, expected (every difference declared) or unexpected."""
    r = Result(sc, model, live, reference)
    if model.error is not None or (live is not None and live.error is not None):
        r.verdict = "unexpected"
        return r
    if live is None:
        r.rows = [(" ", key, v, None, "") for key, v in model.obs.items()]
        return r
    keys = list(model.obs) + [key for key in live.obs if key not in model.obs]
    worst = "agree"
    for key in keys:
        mv, lv = model.obs.get(key, _MISSING), live.obs.get(key, _MISSING)
        if mv == lv:
            note = ""
            if key in sc.expected_differences:
                note = "(declared as a difference, but the same here)"
            r.rows.append((" ", key, mv, lv, note))
        elif key in sc.expected_differences:
            r.rows.append(("~", key, mv, lv, "expected: " + sc.expected_differences[key]))
            if worst == "agree":
                worst = "expected"
        else:
            r.rows.append(("!", key, mv, lv, "UNEXPECTED"))
            worst = "unexpected"
    r.verdict = worst
    return r


HOST_WIDE_RETRIES = 2


def run_both(sc: Scenario, live: bool = True, reference: dict | None = None,
             retries: int = HOST_WIDE_RETRIES) -> Result:
    """Run sc on the model and (live=True) on this machine's kernel, or compare with the
    recorded live observations `reference` ({"obs": ...}); classify the differences.

    Counters in /proc/meminfo and /proc/vmstat belong to the whole host: a busy process
    elsewhere (even the init process of a sandbox running with mlockall) moves them while
    a scenario measures.  A live run that read them and disagrees unexpectedly is repeated
    up to `retries` times; the result says how many runs it took."""
    model = run_model(sc)
    if sc.model_only or (not live and reference is None):
        return compare(sc, model, None)
    if not live:
        return compare(sc, model, Side(dict(reference["obs"])), reference=True)
    r = compare(sc, model, run_live(sc))
    attempt = 1
    while (r.verdict == "unexpected" and attempt <= retries and r.live.error is None
           and r.model.error is None and r.live.host_wide):
        attempt += 1
        r = compare(sc, model, run_live(sc))
    r.attempts = attempt
    return r


def select(names: list[str] | None = None) -> list[Scenario]:
    """Scenarios by name (or group name); all of them for None/[]."""
    if not names:
        return list(CATALOGUE.values())
    out = []
    for n in names:
        n = n.removeprefix("scenario_")
        if n in CATALOGUE:
            out.append(CATALOGUE[n])
            continue
        grp = [s for s in CATALOGUE.values() if s.group == n]
        if not grp:
            raise KeyError(n)
        out.extend(grp)
    return out


from . import catalogue_faults, catalogue_errnos, catalogue_overcommit  # noqa: E402,F401,I001
from . import catalogue_mlock, catalogue_procfs  # noqa: E402,F401,I001
