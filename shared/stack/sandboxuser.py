"""The user that users' code runs as on a local stack: not the services' user, so it reads none of their secrets.

``kafkaml up`` run as root creates a system user ``kafkaml-sandbox`` (``useradd``, once) and
hands its uid/gid to the processes that start user code (``KAFKAML_SANDBOX_UID``/``_GID``);
they switch to it before running any (``shared.confine``). A real passwd entry rather than a
bare high uid: Python and its libraries look the user up (``getpass.getuser()``, ``~`` in
Keras' and PyTorch's cache paths) and fail without one. The stack's home, logs, ``stack.json``
and PostgreSQL data are owner-only (``shared.stack.files``), and the kernel refuses another
uid's ``/proc/<pid>/environ``, so user code learns no token and no database password.

Not root, the stack cannot switch users: user code then runs as the services' user. What
does not hold then is said once, in the log and in docs/security.md.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass

from shared.settings import Settings

log = logging.getLogger(__name__)

SANDBOX_USER = "kafkaml-sandbox"

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
    log.info("users' model code runs as %s (uid %d, gid %d)", SANDBOX_USER, identity.uid, identity.gid)
    return identity


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
