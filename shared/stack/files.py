"""The local stack's state files are its owner's alone: secrets, logs, pid files, data.

User code runs on the same machine (as another user when the stack runs as root, see
``shared.stack.sandboxuser``): everything the stack writes is created owner-only (umask
0077, files 0600, folders 0700), and :func:`secure_tree` tightens a home an older version
left readable. The one exception is the home itself when the embedded PostgreSQL runs as
its own system user: that user must walk through the home to its data folder, so the home
is opened for traversal only (0711): nobody else can list it, and every file and folder in
it is its owner's alone. (Not by group: the library runs ``pg_ctl`` with our groups.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)

OWNER_FILE = 0o600
OWNER_DIR = 0o700
# rwx for the owner, x (traverse, not list) for others: see the module's docstring.
TRAVERSE_DIR = 0o711
UMASK = 0o077


def owner_only_umask() -> int:
    """Make every file and folder this process (and its children) creates owner-only; the old umask."""
    return os.umask(UMASK)


def read_or_create_secret(path: Path, nbytes: int = 24) -> str:
    """A secret kept in ``path`` (mode 0600), created on first use."""
    with contextlib.suppress(FileNotFoundError):
        value = path.read_text(encoding="utf-8").strip()
        if value:
            os.chmod(path, OWNER_FILE)
            return value
    value = secrets.token_urlsafe(nbytes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, OWNER_FILE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    os.chmod(path, OWNER_FILE)  # an existing empty file keeps its mode through O_CREAT
    return value


def secure_tree(root: Path) -> None:
    """Files under ``root`` 0600, folders 0700, ``root`` included; what we do not own is left alone.

    PostgreSQL's data folder belongs to its own system user when we run as root and is kept
    0700 by PostgreSQL itself; sockets and links are skipped.
    """
    uid = os.geteuid()
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        _chmod(here, OWNER_DIR, uid)
        for name in files:
            _chmod(here / name, OWNER_FILE, uid)
        # Not walked into: folders of another owner (pgdata) are that owner's business.
        dirs[:] = [d for d in dirs if _owned(here / d, uid)]


def restrict_home(home: Path, *, traversable: bool = False) -> None:
    """The home 0700, or 0711 when another user (the embedded PostgreSQL's) must pass through it."""
    os.chmod(home, TRAVERSE_DIR if traversable else OWNER_DIR)


def _owned(path: Path, uid: int) -> bool:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    return info.st_uid == uid and stat.S_ISDIR(info.st_mode)


def _chmod(path: Path, mode: int, uid: int) -> None:
    try:
        info = path.lstat()
        if info.st_uid != uid or not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            return
        if stat.S_IMODE(info.st_mode) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:  # gone meanwhile (a rotated log, a temporary file)
        return
