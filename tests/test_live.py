"""linmm.live and the scenario catalogue (issue 4).

* test_model[<scenario>]: every catalogue scenario on the model alone (always), its
  observations compared with the live observations recorded on Linux 6.18 in
  linmm/scenarios/reference.py; only declared differences may remain.
* test_live[<scenario>]: where root and an x86_64 Linux kernel are available, the
  scenario on both backends; only declared differences may remain.
* The live backend itself: exact fault counting, signals, fork, the safety rules
  (knobs restored on failure and after a crash, refusals outside the scenario's
  memory, the host-memory cap) and the `linmm diff` command.
"""
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import linmm
from linmm.live import (ROOT_MESSAGE, LiveKernel, LiveLimitError, LiveSafetyError,
                        unavailable_reason)
from linmm.live.diff import main_diff
from linmm.scenarios import BASE, CATALOGUE, PAGE, PRIV, RW, minflt, pages, region, run_both

try:
    from linmm.scenarios.reference import KERNEL, LIVE_REFERENCE
except ImportError:                      # pragma: no cover - the module ships with linmm
    KERNEL, LIVE_REFERENCE = None, {}

LIVE_REASON = unavailable_reason()
needs_live = pytest.mark.skipif(LIVE_REASON is not None, reason=f"live kernel unavailable: {LIVE_REASON}")
NAMES = list(CATALOGUE)
SUMMARY = re.compile(r"(\d+) scenarios: (\d+) agree, (\d+) expected differences, (\d+) unexpected")


def _unexpected(r) -> str:
    lines = [f"{r.scenario.name}: {r.verdict}"]
    for side, s in (("model", r.model), ("live", r.live)):
        if s is not None and s.error:
            lines.append(f"{side} side failed:\n{textwrap.indent(s.error, '  ')}")
    lines += [f"  {key}: model {mv!r} != live {lv!r}" for mark, key, mv, lv, _ in r.rows if mark == "!"]
    return "\n".join(lines)


# ====================================================================== the catalogue
def test_catalogue_size_and_metadata():
    assert len(CATALOGUE) >= 30
    for name, sc in CATALOGUE.items():
        assert sc.fn.__name__ == f"scenario_{name}"
        assert sc.description, name
        for key, reason in sc.expected_differences.items():
            assert reason and len(reason) > 20, (name, key)
    groups = {sc.group for sc in CATALOGUE.values()}
    assert {"faults", "errnos", "overcommit", "mlock", "procfs"} <= groups


@pytest.mark.parametrize("name", NAMES)
def test_model(name):
    """The scenario on the model alone (k.check() after it), against the recorded live
    observations: every difference must be declared."""
    sc = CATALOGUE[name]
    ref = LIVE_REFERENCE.get(name)
    r = run_both(sc, live=False, reference=ref)
    if r.model.error is not None:
        pytest.fail(f"{name}: the model side failed:\n{r.model.error}", pytrace=False)
    if ref is None:
        pytest.skip(f"no recorded live observations for {name}")
    if r.verdict == "unexpected":
        pytest.fail(_unexpected(r), pytrace=False)


@needs_live
@pytest.mark.parametrize("name", NAMES)
def test_live(name):
    """The scenario on the model and on this machine's kernel: only declared differences
    (a scenario reading host-wide counters gets two more live runs if other processes
    disturbed it)."""
    r = run_both(CATALOGUE[name])
    if r.verdict == "unexpected":
        pytest.fail(_unexpected(r), pytrace=False)


# ====================================================================== linmm diff
def test_diff_model_only_ends_with_the_summary_line(capsys):
    rc = main_diff(["--model-only", "madv_dontneed_zeroes", "mmap_errnos", "pagemap_bits"])
    out = capsys.readouterr().out
    last = out.rstrip("\n").split("\n")[-1]
    assert SUMMARY.fullmatch(last), last
    assert last == "3 scenarios: 2 agree, 1 expected differences, 0 unexpected"
    assert rc == 0
    assert "~ soft_dirty" in out and "expected:" in out


def test_diff_unknown_scenario_is_a_usage_error(capsys):
    assert main_diff(["no_such_scenario", "--model-only"]) == 2
    assert "no scenario or group" in capsys.readouterr().err


def test_diff_without_root_refuses_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main_diff(["mmap_errnos"]) == 2
    err = capsys.readouterr().err
    assert err == f"linmm diff: {ROOT_MESSAGE}\n"


def test_live_kernel_without_root_raises_eperm_in_one_line(monkeypatch):
    if sys.platform != "linux":
        pytest.skip("not Linux")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(linmm.errors.EPERM) as ei:
        LiveKernel()
    msg = str(ei.value)
    assert "live mode needs root" in msg and "\n" not in msg


def test_diff_runs_as_a_module():
    r = subprocess.run([sys.executable, "-m", "linmm.live.diff", "--model-only", "mincore_errnos_and_bits"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().split("\n")[-1] == "1 scenarios: 1 agree, 0 expected differences, 0 unexpected"


@needs_live
def test_diff_live_marks_expected_differences(capsys):
    rc = main_diff(["mprotect_ro_rw_then_write", "mlock_gap_enomem", "munmap_errnos"])
    out = capsys.readouterr().out
    assert out.rstrip().split("\n")[-1] == "3 scenarios: 1 agree, 2 expected differences, 0 unexpected"
    assert rc == 0
    assert re.search(r"~ minflt_writes_after_mprotect_rw +8 +0", out)


# ====================================================================== the live backend
@pytest.fixture
def lk():
    if LIVE_REASON is not None:
        pytest.skip(f"live kernel unavailable: {LIVE_REASON}")
    with LiveKernel() as k:
        yield k


def test_live_fault_counts_are_exact(lk):
    """minflt deltas of a live task count exactly the faults the scenario asked for, over
    many requests of every kind, in a task and in its forked child."""
    rng = np.random.default_rng(7)
    t = lk.spawn("exact")
    a = region(t, 4096, RW, PRIV)
    t.access(pages(a, 1024), True)
    b = region(t, 4, at=1 << 30)
    t.access(pages(b, 4), True)
    c = t.fork()
    for task, base in ((c, a), (t, a + 2048 * PAGE)):
        off, bad = 0, []
        spot = [b, b + (64 << 20)]
        task.access(pages(b, 4), True)             # break COW after the fork, unmeasured
        for i in range(140):
            n = int(rng.integers(0, 9))
            f0 = minflt(lk, task)
            op = i % 7
            want = 0
            if op == 0:
                task.access(pages(base + off * PAGE, n), True)
                want = n
                off += n
            elif op == 1:
                task.mprotect(base, PAGE, RW)
            elif op == 2:
                task.read(a, 64)
            elif op == 3:
                task.mincore(a, 4 * PAGE)
            elif op == 4:                          # the PTEs move with the pages: no fault
                spot.reverse()
                task.mremap(spot[1], 4 * PAGE, 4 * PAGE, linmm.MREMAP_MAYMOVE | linmm.MREMAP_FIXED,
                            spot[0])
            elif op == 5:
                task.mlock(spot[0], 4 * PAGE)      # present pages: no fault
                task.munlock(spot[0], 4 * PAGE)
            else:
                task.write(spot[0] + 8, b"abc")    # present, already written: no fault
            got = minflt(lk, task) - f0
            if got != want:
                bad.append((task.pid, i, op, n, got))
        assert not bad


def test_live_signal_ends_the_task(lk):
    t = lk.spawn("sig")
    a = region(t, 2, linmm.PROT_READ)
    with pytest.raises(linmm.Signal) as si:
        t.touch(a + 100, True)
    assert (si.value.signo, si.value.code, si.value.addr) == (linmm.SIGSEGV, linmm.SEGV_ACCERR, a + 100)
    assert t.signals == [(linmm.SIGSEGV, linmm.SEGV_ACCERR, a + 100)]
    assert t.state != "R" and t.pid not in lk.tasks
    with pytest.raises(linmm.errors.ESRCH):
        t.mincore(a, PAGE)
    assert t.pid not in lk._tracees


def test_live_errors_are_linmm_errno_classes(lk):
    t = lk.spawn("err")
    with pytest.raises(linmm.errors.EINVAL) as ei:
        t.munmap(BASE + 1, PAGE)
    assert ei.value.errno == 22
    with pytest.raises(linmm.errors.ENOMEM):
        t.mprotect(BASE + 64 * PAGE, PAGE, RW)
    with pytest.raises(linmm.errors.ENOSYS):
        t.brk(0)


def test_live_fork_exit_and_close(lk):
    t = lk.spawn("fork")
    a = region(t, 4)
    t.write(a, b"parent")
    c = t.fork()
    assert c.pid != t.pid and c.read(a, 6) == b"parent"
    c.write(a, b"child!")
    assert t.read(a, 6) == b"parent"
    with open(f"/proc/{c.pid}/status") as f:
        assert re.search(rf"^PPid:\s+{t.pid}$", f.read(), re.M)
    c.exit()
    assert c.state != "R" and c.pid not in lk.tasks
    pid = t.pid
    lk.close()
    assert not os.path.exists(f"/proc/{pid}/stat") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]


def test_live_refuses_memory_the_scenario_did_not_map(lk):
    t = lk.spawn("guard")
    foreign = t._scratch                       # the command loop's own scratch buffer
    for call in (lambda: t.mmap(foreign, PAGE, RW, PRIV | linmm.MAP_FIXED),
                 lambda: t.munmap(foreign, PAGE), lambda: t.mprotect(foreign, PAGE, RW),
                 lambda: t.madvise(foreign, PAGE, linmm.MADV_DONTNEED),
                 lambda: t.mlock(foreign, PAGE), lambda: t.touch(foreign, True),
                 lambda: t.write(foreign, b"x"), lambda: t.read(foreign, 1),
                 lambda: t.mremap(foreign, PAGE, 2 * PAGE, linmm.MREMAP_MAYMOVE)):
        with pytest.raises(LiveSafetyError):
            call()
    # calls the kernel rejects before looking at any VMA still reach it
    with pytest.raises(linmm.errors.EINVAL):
        t.munmap(foreign + 1, PAGE)
    # memory the scenario mapped, and holes, are fine
    a = region(t, 2)
    t.mprotect(a, 2 * PAGE, RW)
    t.munmap(a, 2 * PAGE)
    with pytest.raises(linmm.errors.ENOMEM):
        t.mprotect(a, PAGE, RW)


def test_live_host_memory_cap():
    if LIVE_REASON is not None:
        pytest.skip(f"live kernel unavailable: {LIVE_REASON}")
    with LiveKernel(cap_bytes=64 << 20) as k:
        t = k.spawn("cap")
        a = t.mmap(0, 256 << 20, RW, PRIV)          # mapping is fine, touching all is not
        with pytest.raises(LiveLimitError):
            t.access(pages(a, 65536), True)
        with pytest.raises(LiveLimitError):
            t.mmap(0, 128 << 20, RW, PRIV | linmm.MAP_POPULATE)
        with pytest.raises(LiveLimitError):
            t.mlock(a, 128 << 20)
        t.access(pages(a, 16), True)                 # small touches pass
        assert "VmRSS" in k.read_file(f"/proc/{t.pid}/status")


def _knob(path):
    with open(path) as f:
        return f.read()


def test_live_knobs_restored_on_exception():
    if LIVE_REASON is not None:
        pytest.skip(f"live kernel unavailable: {LIVE_REASON}")
    ratio, kbytes = "/proc/sys/vm/overcommit_ratio", "/proc/sys/vm/overcommit_kbytes"
    before = _knob(ratio), _knob(kbytes)
    with pytest.raises(RuntimeError, match="boom"):
        with LiveKernel() as k:
            k.write_file(kbytes, "1048576")          # zeroes overcommit_ratio as a side effect
            assert _knob(ratio) == "0\n"
            k.write_file(ratio, "77")
            with pytest.raises(linmm.errors.EINVAL):
                k.write_file("/proc/sys/vm/overcommit_memory", "3")
            raise RuntimeError("boom")
    assert (_knob(ratio), _knob(kbytes)) == before


def test_live_write_v57_refuses_is_restored():
    """A value v5.7 refuses (an unknown zswap compressor) that this kernel may accept while
    zswap is off: whatever the kernel did, the old value is back afterwards."""
    if LIVE_REASON is not None:
        pytest.skip(f"live kernel unavailable: {LIVE_REASON}")
    path = "/sys/module/zswap/parameters/compressor"
    if not os.path.exists(path):
        pytest.skip("no zswap on this kernel")
    before = _knob(path)
    with LiveKernel() as k:
        try:
            k.write_file(path, "linmm-no-such-compressor")
        except linmm.errors.Errno:
            pass
    assert _knob(path) == before


def test_live_journal_restores_after_a_crash():
    """A live run killed before it could restore leaves a journal; the next LiveKernel()
    writes the saved values back."""
    if LIVE_REASON is not None:
        pytest.skip(f"live kernel unavailable: {LIVE_REASON}")
    path = "/proc/sys/vm/overcommit_ratio"
    before = _knob(path)
    code = ("import os; from linmm.live import LiveKernel; k = LiveKernel(); "
            f"k.write_file({path!r}, '63'); os._exit(3)")
    try:
        r = subprocess.run([sys.executable, "-c", code], timeout=60)
        assert r.returncode == 3
        assert _knob(path) == "63\n"                 # the crashed run left it changed
        with LiveKernel():
            assert _knob(path) == before             # recovered at start
    finally:
        if _knob(path) != before:
            with open(path, "w") as f:
                f.write(before)


def test_live_task_api_matches_the_model():
    """LiveTask offers every Task method the scenarios use."""
    from linmm.live import LiveTask
    for name in ("mmap", "munmap", "mprotect", "madvise", "mincore", "mremap", "brk", "mlock",
                 "mlock2", "munlock", "mlockall", "munlockall", "setrlimit", "read", "write",
                 "touch", "access", "fork", "exit"):
        assert callable(getattr(LiveTask, name)), name
        assert callable(getattr(linmm.Task, name)), name
