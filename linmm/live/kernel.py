"""LiveKernel: this machine's real kernel behind the linmm.Kernel API.

    with LiveKernel() as k:              # root only; restores every knob it wrote
        t = k.spawn("a")
        a = t.mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        t.touch(a, write=True)
        print(k.read_file(f"/proc/{t.pid}/status"))
"""
from __future__ import annotations

import atexit
import errno as _errno
import fcntl
import json
import os
import pickle
import platform
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import weakref

from ..errors import ENOSYS, EPERM, ESRCH, Signal, from_errno
from . import _ptrace
from .task import LiveError, LiveSafetyError, LiveTask

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_child.py")
ROOT_MESSAGE = "live mode needs root (run as root, or use --model-only)"
JOURNAL_DIR = "/run/linmm-live"

# knobs whose write changes another knob: save both (the kernel's handlers zero the partner)
COUPLED = {
    "/proc/sys/vm/overcommit_ratio": ("/proc/sys/vm/overcommit_kbytes",),
    "/proc/sys/vm/overcommit_kbytes": ("/proc/sys/vm/overcommit_ratio",),
    "/proc/sys/vm/dirty_ratio": ("/proc/sys/vm/dirty_bytes",),
    "/proc/sys/vm/dirty_bytes": ("/proc/sys/vm/dirty_ratio",),
    "/proc/sys/vm/dirty_background_ratio": ("/proc/sys/vm/dirty_background_bytes",),
    "/proc/sys/vm/dirty_background_bytes": ("/proc/sys/vm/dirty_background_ratio",),
    "/proc/sys/vm/nr_hugepages": ("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",),
    "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages": ("/proc/sys/vm/nr_hugepages",),
}
# write-only actions with no state to save
TRIGGERS = ("/proc/sys/vm/stat_refresh", "/proc/sys/vm/drop_caches", "/proc/sys/vm/compact_memory")
_BINARY = re.compile(r"/proc/(\d+|self)/pagemap|/proc/kpage(flags|count|cgroup)")
_CLEAR_REFS = re.compile(r"/proc/(\d+)/clear_refs")


def unavailable_reason() -> str | None:
    """None when live mode can run here, else one line saying why not."""
    if sys.platform != "linux":
        return "live mode needs a Linux kernel"
    if platform.machine() != "x86_64":
        return "live mode needs an x86_64 kernel"
    if os.geteuid() != 0:
        return ROOT_MESSAGE
    return None


def _normalise(value: str) -> str:
    """The writable form of a value read back: "always [madvise] never" -> "madvise"."""
    m = re.fullmatch(r"[^\[\]]*\[([^\]]+)\][^\[\]]*\n?", value)
    return m.group(1) if m else value


_LOCK = {"fd": None, "users": 0}


def _acquire_host_lock(timeout: float) -> None:
    """One live session per machine at a time (two would save and restore the same knobs
    over each other): an flock on JOURNAL_DIR/lock, shared by the LiveKernels of one process."""
    if _LOCK["users"]:
        _LOCK["users"] += 1
        return
    os.makedirs(JOURNAL_DIR, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(JOURNAL_DIR, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise LiveError("another live session holds " + os.path.join(JOURNAL_DIR, "lock"))
            time.sleep(0.05)
    _LOCK["fd"], _LOCK["users"] = fd, 1


def _release_host_lock() -> None:
    if _LOCK["users"] <= 0:
        return
    _LOCK["users"] -= 1
    if _LOCK["users"] == 0 and _LOCK["fd"] is not None:
        os.close(_LOCK["fd"])              # drops the flock
        _LOCK["fd"] = None


_instances = iter(range(1, 1 << 62))


def _journal_path(pid: int, n: int) -> str:
    return os.path.join(JOURNAL_DIR, f"journal-{pid}-{n}.json")


def recover_journals() -> list[str]:
    """Restore knobs that a crashed live run (its process is gone) left changed."""
    done = []
    try:
        names = os.listdir(JOURNAL_DIR)
    except OSError:
        return done
    for name in names:
        m = re.fullmatch(r"journal-(\d+)-\d+\.json", name)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or os.path.exists(f"/proc/{pid}"):
            continue                             # still running (it restores itself)
        path = os.path.join(JOURNAL_DIR, name)
        try:
            with open(path) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            continue
        problems = _restore_values([(p, v) for p, v in saved])
        if not problems:
            os.unlink(path)
            done.extend(p for p, _ in saved)
    return done


def _read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write_text(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _restore_values(saved: list[tuple[str, str]]) -> list[str]:
    """Write the saved values back (latest first) until every file reads back its value;
    coupled knobs may need a second pass.  Returns what could not be restored."""
    problems: list[str] = []
    for _ in range(4):
        problems = []
        for path, value in reversed(saved):
            try:
                if _normalise(_read_text(path)) == value:
                    continue
                _write_text(path, value)
            except OSError as e:
                problems.append(f"{path}: {e.strerror}")
        bad = []
        for path, value in saved:
            try:
                if _normalise(_read_text(path)) != value:
                    bad.append(f"{path}: reads {_read_text(path)!r}, saved {value!r}")
            except OSError as e:
                bad.append(f"{path}: {e.strerror}")
        if not bad:
            return []
        problems = bad
    return problems


class LiveKernel:
    """The running kernel, as root.  Use as a context manager (or call close())."""

    live = True

    def __init__(self, cap_bytes: int = 1 << 30, max_tasks: int = 32, timeout: float = 120.0,
                 cpu: int | None = -1):
        reason = unavailable_reason()
        if reason is not None:
            raise (EPERM if reason == ROOT_MESSAGE else ENOSYS)(reason)
        self.cap_bytes = cap_bytes
        # every task runs on one CPU (default: the last one this process may use), so that
        # per-CPU batches an operation leaves behind are the ones settle() drains
        if cpu == -1:
            cpu = max(os.sched_getaffinity(0))
        self.cpu = cpu
        self.max_tasks = max_tasks
        self.timeout = timeout
        self.tasks: dict[int, LiveTask] = {}
        self._tracees: dict[int, LiveTask | None] = {}
        self._saved: list[tuple[str, str]] = []
        self._journal = _journal_path(os.getpid(), next(_instances))
        self._closed = False
        self.restore_problems: list[str] = []
        _acquire_host_lock(timeout)
        try:
            recover_journals()
        except BaseException:
            _release_host_lock()
            raise
        ref = weakref.ref(self)
        self._atexit = lambda: ref() is not None and ref().close()
        atexit.register(self._atexit)

    # ------------------------------------------------------------ lifetime
    def __enter__(self) -> "LiveKernel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Kill every live task, then restore every knob written."""
        if self._closed:
            return
        try:
            for t in list(self.tasks.values()):
                self._kill(t)
        finally:
            self.restore()
            self._closed = True
            atexit.unregister(self._atexit)
            _release_host_lock()

    def restore(self) -> list[str]:
        """Write back every saved value; returns (and keeps) the problems, if any."""
        problems = _restore_values(self._saved) if self._saved else []
        self.restore_problems = problems
        if not problems:
            self._saved = []
            try:
                os.unlink(self._journal)
            except OSError:
                pass
        else:
            print("linmm.live: could not restore: " + "; ".join(problems), file=sys.stderr)
        return problems

    # ------------------------------------------------------------ files
    def read_file(self, path: str, offset: int = 0, size: int | None = None):
        """The real file: str, or bytes for pagemap / kpageflags / kpagecount."""
        try:
            if _BINARY.fullmatch(path):
                fd = os.open(path, os.O_RDONLY)
                try:
                    if size is None:
                        raise LiveError(f"{path}: give a size (the file is sparse and huge)")
                    return os.pread(fd, size, offset)
                finally:
                    os.close(fd)
            text = _read_text(path)
        except OSError as e:
            raise from_errno(e.errno, f"{path}: {e.strerror}") from None
        return text[offset:] if size is None else text[offset:offset + size]

    def _save(self, path: str) -> None:
        if any(p == path for p, _ in self._saved):
            return
        try:
            value = _normalise(_read_text(path))
        except OSError as e:
            raise from_errno(e.errno, f"{path}: cannot save the old value: {e.strerror}") from None
        self._saved.append((path, value))
        os.makedirs(JOURNAL_DIR, mode=0o700, exist_ok=True)
        tmp = self._journal + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self._saved, f)
        os.replace(tmp, self._journal)

    def write_file(self, path: str, text) -> None:
        """Write a /proc/sys or /sys knob; its old value is saved first (and the values of
        knobs the write changes as a side effect), restored by restore()/close()."""
        path = os.path.normpath(path)
        if isinstance(text, int):
            text = str(text)
        m = _CLEAR_REFS.fullmatch(path)
        if m and int(m.group(1)) in self.tasks:
            pass                                 # a trigger on one of our own tasks
        elif path in TRIGGERS:
            pass
        elif path.startswith(("/proc/sys/", "/sys/")):
            self._check_host_memory(path, text)
            self._save(path)
            for other in COUPLED.get(path, ()):
                if os.path.exists(other):
                    self._save(other)
        else:
            raise LiveSafetyError(f"write_file: {path} is not a /proc/sys or /sys knob")
        try:
            _write_text(path, text)
        except OSError as e:
            raise from_errno(e.errno, f"{path}: {e.strerror}") from None

    def _check_host_memory(self, path: str, text: str) -> None:
        """Knobs that take host memory away at once stay within cap_bytes."""
        name = os.path.basename(path)
        try:
            value = int(str(text).split()[0])
        except (ValueError, IndexError):
            return                               # the kernel will refuse it
        size = 0
        if name in ("nr_hugepages", "nr_hugepages_mempolicy", "nr_overcommit_hugepages"):
            m = re.search(r"hugepages-(\d+)kB", path)
            size = value * (int(m.group(1)) << 10 if m else 2 << 20)
        elif name == "min_free_kbytes":
            size = value << 10
        if size > self.cap_bytes:
            raise LiveSafetyError(f"write_file: {path} = {value} would take {size >> 20} MiB of host "
                                  f"memory, over the {self.cap_bytes >> 20} MiB cap")

    # ------------------------------------------------------------ misc API
    def settle(self) -> None:
        """Make the global counters exact before reading them: drain the per-CPU LRU and
        mlock batches of the tasks' CPU (MADV_COLD on a task's own scratch page calls
        lru_add_drain() there) and fold the per-CPU vmstat differentials (reading
        /proc/sys/vm/stat_refresh).  The model has no such lag; it needs no settle()."""
        for t in list(self.tasks.values()):
            if t.state == "R":
                try:
                    t._request("madvise", (t._scratch, 4096, 20))     # MADV_COLD
                except Exception:                                     # noqa: BLE001
                    pass
                break
        try:
            _read_text("/proc/sys/vm/stat_refresh")
        except OSError:
            pass

    def run(self, ms: int) -> None:
        time.sleep(ms / 1000)

    def check(self) -> None:
        """Nothing to check on a real kernel (the model checks its invariants here)."""

    def dmesg(self) -> str:
        try:
            return subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    # ------------------------------------------------------------ tasks
    def spawn(self, name: str = "task", uid: int = 0) -> LiveTask:
        """A new live process running the command loop (as uid, without capabilities
        when uid != 0)."""
        if self._closed:
            raise LiveError("LiveKernel is closed")
        if len(self.tasks) >= self.max_tasks:
            raise LiveError(f"more than {self.max_tasks} live tasks")
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.set_inheritable(b.fileno(), True)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
            argv = [sys.executable, "-I", "-S", CHILD, str(b.fileno()), str(uid), name[:15]]
            pid = os.posix_spawn(sys.executable, argv, env, setpgroup=0)
        finally:
            b.close()
        try:
            _ptrace.seize(pid, _ptrace.PTRACE_O_TRACEFORK | _ptrace.PTRACE_O_EXITKILL)
        except OSError:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            a.close()
            raise
        a.setblocking(False)
        if self.cpu is not None:
            os.sched_setaffinity(pid, {self.cpu})
        t = LiveTask(self, pid, a, name, uid, 0)
        self.tasks[pid] = t
        self._tracees[pid] = t
        try:
            hello = self._recv_reply(t)
        except Exception:
            self._kill(t)
            raise
        if hello[0] != "ok" or hello[1] != pid:
            self._kill(t)
            raise LiveError(f"live task {pid} did not start: {hello!r}")
        self._warm(t)
        return t

    def _warm(self, t: LiveTask, rounds: int = 12) -> None:
        """Exercise the request path of every operation before a scenario counts faults:
        the interpreter's adaptive bytecode and allocator pools settle, and after a fork
        the pages they write are copied now rather than during a measured request."""
        _pid, scratch = t._request("ping")
        t._scratch = scratch
        spot = scratch + 8192                    # inside the task's own pre-faulted scratch
        for i in range(rounds):
            t._request("warmup")
            t._request("ping")
            n = (1, 3, 24, 100, 700)[i % 5]
            t._request("access", (n,), payload=[struct.pack("<Q", spot) * n, bytes([i & 1]) * n])
            t._request("write", (spot, 16 + i), payload=[bytes(16 + i)])
            t._request("read", (spot, 16 + i), raw=True)
            t._request("mincore", (scratch, 4096 * (1 + i % 3)))
            t._request("getrlimit", ("RLIMIT_MEMLOCK",))

    def _fork(self, parent: LiveTask, name: str | None) -> LiveTask:
        if len(self.tasks) >= self.max_tasks:
            raise LiveError(f"more than {self.max_tasks} live tasks")
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = parent._request("fork", (), fds=[b.fileno()])
        finally:
            b.close()
        a.setblocking(False)
        child = LiveTask(self, pid, a, name or parent.comm, parent.uid, 0)
        child.owned = type(parent.owned)(parent.owned.iv)
        child.mcl_future = False                 # MCL_FUTURE (def_flags) is not inherited
        child.parent = parent
        parent.children.append(child)
        self.tasks[pid] = child
        self._tracees[pid] = child
        hello = self._recv_reply(child)
        if hello != ("ok", pid):
            self._kill(child)
            raise LiveError(f"forked live task {pid} did not start: {hello!r}")
        self._warm(parent)
        self._warm(child)
        return child

    def _exit(self, t: LiveTask, code: int) -> None:
        if t.state != "R":
            raise ESRCH(f"exit: live task {t.pid} has exited")
        body = pickle.dumps(("exit", (code,)), protocol=4)
        self._send(t, struct.pack("<I", len(body)) + body)
        self._wait_gone(t)
        t.exit_code = code

    def _kill(self, t: LiveTask) -> None:
        if t.pid in self._tracees:
            try:
                os.kill(t.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._wait_gone(t)
        t._died()
        self.tasks.pop(t.pid, None)

    def _wait_gone(self, t: LiveTask) -> None:
        deadline = time.monotonic() + self.timeout
        while t.pid in self._tracees:
            self._poll()
            if t.pid in self._tracees:
                if time.monotonic() > deadline:
                    raise LiveError(f"live task {t.pid} does not exit")
                time.sleep(0.0005)
        self.tasks.pop(t.pid, None)
        t._died()

    # ------------------------------------------------------------ ptrace event loop
    def _poll(self) -> None:
        """Handle every pending ptrace stop and exit of our tracees."""
        for pid in list(self._tracees):
            while True:
                try:
                    wpid, st = os.waitpid(pid, os.WNOHANG | _ptrace.WALL)
                except ChildProcessError:
                    self._gone(pid)
                    break
                if wpid == 0:
                    break
                if not os.WIFSTOPPED(st):
                    self._gone(pid)
                    break
                self._stopped(pid, st)

    def _stopped(self, pid: int, st: int) -> None:
        sig, event = os.WSTOPSIG(st), st >> 16
        try:
            if event == _ptrace.PTRACE_EVENT_FORK:
                self._tracees.setdefault(_ptrace.geteventmsg(pid), None)
                _ptrace.cont(pid)
            elif event:
                _ptrace.cont(pid)                # initial stop of a forked task, group stop
            elif sig in (signal.SIGSEGV, signal.SIGBUS):
                signo, _err, code, addr = _ptrace.getsiginfo(pid)
                if code > 0:                     # raised by the kernel for a fault
                    t = self._tracees.get(pid)
                    if t is not None:
                        t._fatal = Signal(signo, code, addr, pid)
                        t.signals.append((signo, code, addr))
                    os.kill(pid, signal.SIGKILL)
                else:
                    _ptrace.cont(pid, sig)
            else:
                _ptrace.cont(pid, sig)
        except OSError as e:
            if e.errno != _errno.ESRCH:
                raise

    def _gone(self, pid: int) -> None:
        t = self._tracees.pop(pid, None)
        if t is not None:
            t._died()
            self.tasks.pop(pid, None)

    def _check_dead(self, t: LiveTask) -> None:
        if t.pid not in self._tracees:
            t._died()
            if t._fatal is not None:
                raise t._fatal
            raise ESRCH(f"live task {t.pid} died")

    def _wait(self, t: LiveTask, write: bool) -> None:
        """Wait until t's socket is ready, handling ptrace stops meanwhile."""
        delay = 0.0001
        deadline = time.monotonic() + self.timeout
        while True:
            if t._fatal is not None and t.pid in self._tracees:
                self._wait_gone_quiet(t)
            self._check_dead(t)
            r, w, _ = select.select([] if write else [t.sock], [t.sock] if write else [], [], delay)
            if r or w:
                return
            self._poll()
            if time.monotonic() > deadline:
                raise LiveError(f"live task {t.pid} does not answer")
            delay = min(delay * 2, 0.01)

    def _wait_gone_quiet(self, t: LiveTask) -> None:
        while t.pid in self._tracees:
            self._poll()
            if t.pid in self._tracees:
                time.sleep(0.0002)

    def _send(self, t: LiveTask, data) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            try:
                n = t.sock.send(view)
                view = view[n:]
            except BlockingIOError:
                self._wait(t, True)
            except (BrokenPipeError, ConnectionResetError):
                self._wait_gone_quiet_if_dying(t)
                self._check_dead(t)
                raise LiveError(f"live task {t.pid} closed its socket") from None

    def _wait_gone_quiet_if_dying(self, t: LiveTask) -> None:
        deadline = time.monotonic() + 5
        while t.pid in self._tracees and time.monotonic() < deadline:
            self._poll()
            time.sleep(0.0005)

    def _recv_exact(self, t: LiveTask, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                r = t.sock.recv_into(view[got:], n - got)
            except BlockingIOError:
                self._wait(t, False)
                continue
            except ConnectionResetError:
                r = 0
            if r == 0:
                self._wait_gone_quiet_if_dying(t)
                self._check_dead(t)
                raise LiveError(f"live task {t.pid} closed its socket")
            got += r
        return bytes(buf)

    def _recv_reply(self, t: LiveTask):
        (n,) = struct.unpack("<I", self._recv_exact(t, 4))
        return pickle.loads(self._recv_exact(t, n))


__all__ = ["LiveKernel", "unavailable_reason", "recover_journals", "LiveSafetyError"]
