"""The user that users' code runs as on a local stack: not the services' user, so it reads none of their secrets.

``kafkaml up`` run as root creates a system user ``kafkaml-sandbox`` (``useradd``, once) and
hands its uid/gid to the processes that start user code (``KAFKAML_SANDBOX_UID``/``_GID``);
they switch to it before running any (``shared.confine``). A real passwd entry rather than a
bare high uid: Python and its libraries look the user up (``getpass.getuser()``, ``~`` in
Keras' and PyTorch's cache paths) and fail without one. The stack's home, logs, ``stack.json``
and PostgreSQL data are owner-only (``shared.stack.files``), and the kernel refuses another
uid's ``/proc/<pid>/environ``, so user code learns no token and no database password.

The user must be able to run this Python and import this project: when one of their folders is
closed to other users (an interpreter under ``/root``), ``up`` opens it for traversal only
(``o+x``, as the embedded PostgreSQL library does for its own files), checks by running Python
as that user, and, should that still fail, says so and runs user code as itself.

Not root, the stack cannot switch users: user code then runs as the services' user. What
does not hold then is said once, in the log and in docs/security.md.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import shared
from shared.settings import Settings

log = logging.getLogger(__name__)

SANDBOX_USER = "kafkaml-sandbox"
# The validator's children get a user of their own: RLIMIT_NPROC counts every process and thread
# of a uid, so a validation's process limit would otherwise count the trainers' threads too.
VALIDATION_USER = "kafkaml-validation"

SAME_USER_WARNING = (
    "Kafka-ML is not running as root (uid %d): users' model code runs as this same user, so it "
    "CAN read this stack's home (stack.json with the API token and the database URL, the database "
    "passwords, the logs) and every service's /proc/<pid>/environ. Its own environment still holds "
    "no secret and its errors are still scrubbed; run `kafkaml up` as root to run it as %s"
)


class SandboxUserError(RuntimeError):
    """The sandbox user could not be found or created."""


@dataclass(frozen=True)
class SandboxIdentity:
    uid: int
    gid: int


def sandbox_identity(settings: Settings) -> SandboxIdentity | None:
    """Who user code runs as: the configured ids, else (as root) ``kafkaml-sandbox``, else None (ourselves)."""
    if settings.sandbox_uid is not None:
        gid = settings.sandbox_gid if settings.sandbox_gid is not None else settings.sandbox_uid
        return SandboxIdentity(settings.sandbox_uid, gid)
    if os.geteuid() != 0:
        log.warning(SAME_USER_WARNING, os.geteuid(), SANDBOX_USER)
        return None
    identity = ensure_user(SANDBOX_USER)
    open_for_traversal(code_folders())
    problem = cannot_run_python(identity)
    if problem is not None:
        log.error(
            "users' model code cannot run as %s: %s; make this Python and project readable to other users. "
            "Until then: " + SAME_USER_WARNING,
            SANDBOX_USER, problem, os.geteuid(), SANDBOX_USER,
        )  # fmt: skip
        return None
    log.info("users' model code runs as %s (uid %d, gid %d)", SANDBOX_USER, identity.uid, identity.gid)
    return identity


def validation_identity(settings: Settings, sandbox: SandboxIdentity | None) -> SandboxIdentity | None:
    """Who the validator's children run as: the configured ids, else (as root, when workers have
    the sandbox user) ``kafkaml-validation``, else the sandbox user's identity (or None)."""
    if settings.validation_uid is not None:
        gid = settings.validation_gid if settings.validation_gid is not None else settings.validation_uid
        return SandboxIdentity(settings.validation_uid, gid)
    if sandbox is None or os.geteuid() != 0 or settings.sandbox_uid is not None:
        return sandbox
    identity = ensure_user(VALIDATION_USER)
    problem = cannot_run_python(identity)
    if problem is not None:
        log.error("model validation cannot run as %s: %s; it runs as %s", VALIDATION_USER, problem, SANDBOX_USER)
        return sandbox
    log.info("model validation runs as %s (uid %d, gid %d)", VALIDATION_USER, identity.uid, identity.gid)
    return identity


def code_folders() -> list[Path]:
    """What user code's processes read: the interpreter, its standard library, the packages, this project."""
    found = [Path(sys.executable).resolve(), Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()]
    found += [Path(p).resolve() for p in sys.path if p and Path(p).is_dir()]
    found.append(Path(shared.__file__).resolve().parent.parent)
    return found


def open_for_traversal(paths: Iterable[Path]) -> None:
    """Give others ``x`` (pass through, not list) on every folder above ``paths`` that lacks it."""
    done: set[Path] = set()
    for path in paths:
        for folder in path.parents:
            if folder in done:
                continue
            done.add(folder)
            mode = stat.S_IMODE(folder.stat().st_mode)
            if not mode & stat.S_IXOTH:
                os.chmod(folder, mode | stat.S_IXOTH)
                log.warning("opened %s for traversal (o+x) so that user code can run this Python", folder)


def cannot_run_python(identity: SandboxIdentity) -> str | None:
    """None when ``identity`` can start this Python and import this project, else why not."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", "import json, multiprocessing, shared.settings"],
            user=identity.uid, group=identity.gid, extra_groups=[], cwd="/", capture_output=True, text=True,
            timeout=120, check=False, env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": _project_path()},
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return None


def _project_path() -> str:
    return str(Path(shared.__file__).resolve().parent.parent)


def ensure_user(name: str) -> SandboxIdentity:
    """The uid/gid of system user ``name``, created (no home, no login shell) when missing."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise SandboxUserError(
                f"no user {name} and no useradd to create it: create it, or set KAFKAML_SANDBOX_UID "
                "and KAFKAML_SANDBOX_GID to an unprivileged user"
            ) from None
        argv = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
        argv += ["--shell", "/usr/sbin/nologin", "--comment", "Kafka-ML user code", name]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SandboxUserError(f"could not create the user {name}: {done.stderr.strip()}") from None
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise SandboxUserError(f"the user {name} is root's uid or gid; it must be unprivileged")
    return SandboxIdentity(entry.pw_uid, entry.pw_gid)
