"""Record a real program's memory accesses with valgrind's lackey tool."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from .trace import Trace, TraceError, parse_lackey_stream, save_trace

__all__ = ["RecordError", "record"]

_NO_VALGRIND = ("valgrind is not installed: install it with 'apt-get install valgrind' "
                "(Debian) or your distribution's package")


class RecordError(RuntimeError):
    """Recording failed; the message is a single line."""


def _one_line(text: str, limit: int = 200) -> str:
    """Squash ``text`` into one short line."""
    s = " ".join(text.split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _last_message(path: str) -> str:
    """The most informative line of a (valgrind) stderr capture, or ''."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 8192))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    vg = [ln for ln in lines if ln.startswith("valgrind:")]
    return (vg or lines or [""])[-1]


def record(cmd: list[str], out: str, *, max_accesses: int | None = None,
           check: bool = True, timeout: float | None = None) -> Trace:
    """Run ``cmd`` under ``valgrind --tool=lackey --trace-mem=yes`` and save its trace.

    The lackey log goes to a temporary file and is parsed in chunks (it can be
    hundreds of MB); the result, truncated to ``max_accesses`` if given, is
    written to ``out`` with :func:`save_trace` and returned.  The program's
    stdin/stdout are ``/dev/null``; forked/exec'd children are not traced.
    With ``check`` (default) a non-zero exit status of the program is an error.
    Raises :class:`RecordError` (one line) if valgrind is missing, the program
    cannot be started, exits non-zero, times out, or produces no trace.
    """
    if not cmd:
        raise RecordError("record: empty command")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RecordError(_NO_VALGRIND)
    prog = " ".join(cmd)
    out_dir = os.path.dirname(os.path.abspath(os.fspath(out)))
    if not os.path.isdir(out_dir):
        raise RecordError(f"cannot write {out!r}: directory {out_dir!r} does not exist")
    with tempfile.TemporaryDirectory(prefix="linmm-record-") as tmp:
        log = os.path.join(tmp, "lackey.log")
        err = os.path.join(tmp, "stderr.txt")
        argv = [valgrind, "--tool=lackey", "--trace-mem=yes", f"--log-file={log}", *cmd]
        try:
            with open(err, "wb") as errf:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=errf, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise RecordError(_one_line(f"{prog!r} timed out after {timeout} s under valgrind")) from None
        except OSError as e:
            raise RecordError(_one_line(f"cannot run valgrind ({valgrind}): {e}")) from None
        rc = proc.returncode
        if not os.path.exists(log) or os.path.getsize(log) == 0:
            msg = _last_message(err) or f"valgrind exited with status {rc} and wrote no log"
            raise RecordError(_one_line(f"cannot record {prog!r}: {msg}"))
        if check and rc != 0:
            detail = _last_message(err)
            why = f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            raise RecordError(_one_line(
                f"{prog!r} {why} under valgrind" + (f": {detail}" if detail else "")))
        try:
            with open(log, "rb") as f:
                trace = parse_lackey_stream(f, log, max_accesses)
        except TraceError as e:
            raise RecordError(_one_line(f"cannot parse lackey output of {prog!r}: {e}")) from None
        if len(trace) == 0:
            raise RecordError(_one_line(f"valgrind recorded no memory accesses for {prog!r}"))
    trace.source = f"valgrind lackey: {prog}"
    save_trace(trace, out)
    return trace
