"""Confinement of a process that runs code strangers wrote, applied before that code starts.

One implementation for every such process: the validator's sandbox children
(in-process, after a fork) and the trainers and inferencers a launcher starts
(through :meth:`Confinement.command`, a wrapper that confines itself, then
execs). What it does, in order:

* **supervision** (:func:`supervise`): the code runs in a child of a small
  supervisor that runs no user code. The supervisor is a child subreaper, so
  whatever the code starts stays below it even after ``fork()`` +
  ``setsid()``, and where the kernel lets us (root) the child is the first
  process of a new PID namespace: when it dies, the kernel kills every
  process in that namespace. When it exits, the supervisor kills what is left.
* **namespaces**: no network (an empty network namespace, loopback down) and a
  private mount namespace in which the code's import path is read-only and
  ``/proc`` shows only the namespace's processes. Each needs CAP_SYS_ADMIN;
  without it, that part is skipped and :func:`probe` says so.
* **rlimits**, soft = hard so the code cannot raise them: processes
  (``RLIMIT_NPROC`` counts every process and thread of the real uid and is
  not enforced for root: it only holds when ``run_as`` gives the code a uid of
  its own), address space, file size, open files, CPU seconds, no core dumps.
* a private **working directory** (also ``HOME`` and ``TMPDIR``), never on
  ``sys.path``; ``PYTHONSAFEPATH=1`` for any Python the code starts.
* an optional **privilege drop** to ``run_as = (uid, gid)``, without
  supplementary groups; last, since the steps above need root.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import shutil
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

import psutil

__all__ = ["Confinement", "Limits", "make_work_dir", "probe", "remove_work_dir", "supervise"]

# linux/sched.h, linux/prctl.h, linux/mount.h
CLONE_NEWNS: Final = 0x00020000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000
_PR_SET_PDEATHSIG: Final = 1
_PR_SET_CHILD_SUBREAPER: Final = 36
_MS_RDONLY: Final = 1
_MS_NOSUID: Final = 2
_MS_NODEV: Final = 4
_MS_NOEXEC: Final = 8
_MS_REMOUNT: Final = 32
_MS_BIND: Final = 4096
_MS_REC: Final = 16384
_MS_PRIVATE: Final = 1 << 18

_MB: Final = 2**20
# How long the supervisor keeps killing what its child left behind.
_SWEEP_S: Final = 5.0


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    """unshare(2); Python's ``os.unshare`` only exists from 3.12."""
    _check(_libc().unshare(ctypes.c_int(flags)), "unshare")


def _prctl(option: int, value: int) -> None:
    _check(_libc().prctl(ctypes.c_int(option), ctypes.c_ulong(value), 0, 0, 0), "prctl")


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    def raw(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    libc = _libc()
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    _check(libc.mount(raw(source), raw(target), raw(fstype), flags, None), f"mount {target}")


@dataclass(frozen=True)
class Limits:
    """Resource limits; ``None`` leaves a limit as inherited."""

    processes: int | None = 64  # RLIMIT_NPROC: per real uid, and not for root (see the module docstring)
    address_space_mb: int | None = 8192  # RLIMIT_AS: virtual memory; TensorFlow alone maps ~1.1 GB
    file_size_mb: int | None = 64  # RLIMIT_FSIZE: a larger write fails with EFBIG
    open_files: int | None = 256  # RLIMIT_NOFILE
    cpu_s: int | None = 120  # RLIMIT_CPU: SIGXCPU at the limit, SIGKILL 5 s later

    def rlimits(self) -> list[tuple[int, int, int]]:
        """(resource, soft, hard) for each limit that is set; no core dumps always."""
        out = [(resource.RLIMIT_CORE, 0, 0)]
        if self.processes is not None:
            out.append((resource.RLIMIT_NPROC, self.processes, self.processes))
        if self.address_space_mb is not None:
            out.append((resource.RLIMIT_AS, self.address_space_mb * _MB, self.address_space_mb * _MB))
        if self.file_size_mb is not None:
            out.append((resource.RLIMIT_FSIZE, self.file_size_mb * _MB, self.file_size_mb * _MB))
        if self.open_files is not None:
            out.append((resource.RLIMIT_NOFILE, self.open_files, self.open_files))
        if self.cpu_s is not None:
            out.append((resource.RLIMIT_CPU, self.cpu_s, self.cpu_s + 5))
        return out


@dataclass(frozen=True)
class Confinement:
    """What to do to a process before user code runs in it. JSON-able (:meth:`to_json`)."""

    limits: Limits = field(default_factory=Limits)
    # (uid, gid) to become; None keeps ours. Give user code a uid nothing else uses.
    run_as: tuple[int, int] | None = None
    # The code's working directory (and HOME, TMPDIR); see make_work_dir().
    work_dir: str | None = None
    # False: an empty network namespace, where the kernel allows it (CAP_SYS_ADMIN).
    network: bool = True
    # Made read-only in a private mount namespace (root only); "sys.path": our import path.
    read_only: tuple[str, ...] = ("sys.path",)
    # A new session and process group, so that the group can be killed as one.
    new_session: bool = True
    # Applied last: the supervisor's pid namespace makes the child pid 1 in it.
    pid_namespace: bool = True
    # Folders covered by an empty read-only tmpfs in that mount namespace (a stack's state
    # folder: its token and database URL); unlike the read-only ones, hidden even from root.
    hidden: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Confinement:
        data: dict[str, Any] = json.loads(text)
        limits = Limits(**data.pop("limits", {}))
        run_as = data.pop("run_as", None)
        read_only = tuple(data.pop("read_only", ("sys.path",)))
        hidden = tuple(data.pop("hidden", ()))
        return cls(
            limits=limits,
            run_as=None if run_as is None else (int(run_as[0]), int(run_as[1])),
            read_only=read_only,
            hidden=hidden,
            **data,
        )

    def apply(self) -> list[str]:
        """Confine the calling process (single-threaded, e.g. just forked). Returns what could
        not be done (each a sentence for a log line); raises OSError where a failure would leave
        the code less confined than asked and no fallback exists (rlimits, the uid drop)."""
        skipped: list[str] = []
        if self.new_session:
            with contextlib.suppress(PermissionError):  # already a group leader: keep that group
                os.setsid()
        if not self.network:
            try:
                unshare(CLONE_NEWNET)
            except OSError as exc:
                skipped.append(f"network not cut off (no network namespace: {exc.strerror})")
        paths = self._read_only_paths()
        hidden = [os.path.realpath(p) for p in self.hidden if os.path.isdir(p)]
        if self.work_dir is not None:  # a folder that holds the work dir cannot be hidden
            work = os.path.realpath(self.work_dir)
            kept = [p for p in hidden if _is_within(work, p)]
            skipped.extend(f"{p} not hidden: the work dir is inside it" for p in kept)
            hidden = [p for p in hidden if p not in kept]
        if paths or hidden:
            try:
                _private_mounts(paths, hidden)
            except OSError as exc:
                skipped.append(f"import path not read-only, nothing hidden (no mount namespace: {exc.strerror})")
        for which, soft, hard in self.limits.rlimits():
            resource.setrlimit(which, (soft, hard))
        if self.work_dir is not None:
            os.chdir(self.work_dir)
            os.environ.update({"HOME": self.work_dir, "TMPDIR": self.work_dir})
            tempfile.tempdir = None  # gettempdir() reads TMPDIR again
        os.environ["PYTHONSAFEPATH"] = "1"
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        sys.dont_write_bytecode = True
        _clean_sys_path(self.work_dir)
        if self.run_as is not None:
            uid, gid = self.run_as
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
                raise OSError(f"could not become uid {uid} gid {gid}")
        elif self.limits.processes is not None and os.getuid() == 0:
            skipped.append("process limit not enforced by the kernel (root ignores RLIMIT_NPROC; set a uid)")
        # After the uid change, which clears it: die with the supervisor.
        with contextlib.suppress(OSError):
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        return skipped

    def preexec(self) -> Callable[[], None]:
        """For ``subprocess.Popen(preexec_fn=...)``: only from a single-threaded parent (Python's
        warning about preexec_fn and threads applies). No supervisor, no PID namespace: prefer
        :meth:`command`."""

        def confine() -> None:
            self.apply()

        return confine

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run confined and supervised: ``python -m shared.confine JSON -- argv...``."""
        return [sys.executable, "-m", "shared.confine", self.to_json(), "--", *argv]

    def _read_only_paths(self) -> list[str]:
        found: list[str] = []
        for entry in self.read_only:
            for path in sys.path if entry == "sys.path" else [entry]:
                if not path or not os.path.isabs(path) or not os.path.isdir(path):
                    continue
                real = os.path.realpath(path)
                inside = self.work_dir is not None and _is_within(os.path.realpath(self.work_dir), real)
                if not inside and real != "/" and real not in found:
                    found.append(real)
        return found


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _clean_sys_path(work_dir: str | None) -> None:
    """No relative entry (the working directory) and nothing inside the work dir on sys.path."""
    real_work = os.path.realpath(work_dir) if work_dir else None
    sys.path[:] = [
        p for p in sys.path if p and os.path.isabs(p) and not (real_work and _is_within(os.path.realpath(p), real_work))
    ]
    sys.path_importer_cache.clear()


def _private_mounts(paths: list[str], hidden: list[str]) -> None:
    unshare(CLONE_NEWNS)
    # Nothing done here may reach the host's mounts.
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    for path in hidden:  # first: a recursive bind below copies these mounts
        _mount("tmpfs", path, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    for path in paths:
        _mount(path, path, None, _MS_BIND | _MS_REC)
        _mount(None, path, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY)
    if os.getpid() == 1:  # first process of a new PID namespace: a /proc of that namespace only
        with contextlib.suppress(OSError):
            _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)


def probe() -> dict[str, bool]:
    """Which namespaces this process may create (forks once; call where forking is safe)."""
    flags = {"pid": CLONE_NEWPID, "network": CLONE_NEWNET, "mount": CLONE_NEWNS}
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 0
        for bit, flag in enumerate(flags.values()):
            try:
                unshare(flag)
                code |= 1 << bit
            except OSError:
                pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return {name: code >= 0 and bool(code & (1 << bit)) for bit, name in enumerate(flags)}


# --- supervision ---------------------------------------------------------------


def _kill_descendants() -> None:
    """Kill everything below us until nothing is left (we are a subreaper: orphans come back)."""
    deadline = time.monotonic() + _SWEEP_S
    me = psutil.Process()
    while time.monotonic() < deadline:
        try:
            left = me.children(recursive=True)
        except psutil.Error:
            return
        for process in left:
            with contextlib.suppress(psutil.Error):
                process.kill()
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        if not left:
            return
        time.sleep(0.01)


# How often a signal held for the program (``supervise``) is looked at again.
_HELD_SIGNAL_EVERY_S: Final = 0.05


def supervise(
    target: Callable[[], int],
    *,
    pid_namespace: bool = True,
    new_session: bool = True,
    close_fds: Sequence[int] = (),
) -> int:
    """Run ``target()`` in a child and wait for it, in this process as its supervisor; returns the
    child's exit code (negative: the signal that killed it), after killing all it left behind.
    This process must run no user code: it is what keeps that code's processes together.
    ``close_fds`` are the child's alone: closed here once it runs (a pipe's end, so that its
    reader sees the child's death)."""
    if new_session:
        with contextlib.suppress(PermissionError):
            os.setsid()
    with contextlib.suppress(OSError):
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    with contextlib.suppress(OSError):
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    is_init = False  # the child is its PID namespace's init
    if pid_namespace:
        with contextlib.suppress(OSError):
            unshare(CLONE_NEWPID)
            is_init = True
    child = os.fork()
    if child == 0:
        code = 1
        try:
            code = target()
        finally:
            os._exit(code)
    for fd in close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)

    # The kernel drops a signal that a namespace's init has no handler for, and a worker
    # installs its handlers only once its interpreter has started: a stop request that came
    # before would be lost (and the launcher kill it after its grace). So it is held until then,
    # looked at again on a timer (no thread: the supervisor may be under the program's limits).
    held: list[int] = []

    def deliver_held(_signum: int = 0, _frame: object = None) -> None:
        for signum in list(held):
            if _catches(child, signum):
                held.remove(signum)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signum)
        if held:
            signal.setitimer(signal.ITIMER_REAL, _HELD_SIGNAL_EVERY_S)

    def forward(signum: int, _frame: object) -> None:
        if is_init and not _catches(child, signum):
            held.append(signum)
            deliver_held()
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    signal.signal(signal.SIGALRM, deliver_held)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        if pid == child:
            break
    _kill_descendants()
    return os.waitstatus_to_exitcode(status)


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its ``SigCgt`` mask); True when that
    cannot be read (the process is gone, or no /proc): then there is nothing to wait for."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError):
        pass
    return True


def exit_like(code: int) -> None:
    """End this process the way a child ended (its exit code, or the signal that killed it)."""
    if code < 0:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
            time.sleep(1.0)
        os._exit(128 - code)
    os._exit(code)


# --- the working directory -------------------------------------------------------


def make_work_dir(base: str | None = None, run_as: tuple[int, int] | None = None, prefix: str = "kafkaml-") -> str:
    """A fresh private directory (mode 0700), owned by ``run_as`` when given."""
    path = tempfile.mkdtemp(prefix=prefix, dir=base)
    if run_as is not None:
        os.chown(path, *run_as)
    return path


def remove_work_dir(path: str) -> None:
    """Remove it with whatever the code left inside, even read-only folders."""

    def make_writable(_function: object, failed: str, _error: object) -> None:
        with contextlib.suppress(OSError):
            parent = os.path.dirname(failed)
            os.chmod(parent, os.stat(parent).st_mode | stat.S_IRWXU)
            os.chmod(failed, stat.S_IRWXU)
            if os.path.isdir(failed) and not os.path.islink(failed):
                shutil.rmtree(failed, ignore_errors=True)
            else:
                os.unlink(failed)

    shutil.rmtree(path, onerror=make_writable)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m shared.confine CONFINEMENT_JSON -- PROGRAM ARGS...``: confine, supervise, exec."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--":
        sys.exit("usage: python -m shared.confine CONFINEMENT_JSON -- PROGRAM [ARGS...]")
    confinement = Confinement.from_json(args[0])
    program = args[2:]

    # The supervisor made the session; the program stays in its group, so the group is all of it.
    inner = replace(confinement, new_session=False)

    def run() -> int:
        for line in inner.apply():
            print(f"kafkaml confine: {line}", file=sys.stderr, flush=True)
        os.execvp(program[0], program)

    exit_like(supervise(run, pid_namespace=confinement.pid_namespace, new_session=confinement.new_session))


if __name__ == "__main__":
    main()
