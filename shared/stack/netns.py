"""A network of its own for the embedded broker behind the relay, so that only the relay reaches it.

Secured, Tansu speaks plain Kafka without a login on a loopback port and the relay
(``shared.stack.broker_front``) adds TLS and SASL in front of it. On the host's loopback any
local process, model code included, could skip the relay and connect to that port. Where the
kernel allows (root: CAP_SYS_ADMIN), Tansu therefore starts in a network namespace of its own,
with only a loopback device, and the relay opens each connection to it from a thread that has
entered that namespace (``setns`` applies to the calling thread; a socket stays in the namespace
it was made in). Nothing in the host's network can reach Tansu then, the relay's port is the
only way in. Without the capability Tansu stays on the host's loopback, and the stack logs so.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
from concurrent.futures import ThreadPoolExecutor

from shared.confine import CLONE_NEWNET, probe, unshare

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def can_isolate() -> bool:
    """Whether this process may give a child a network namespace (forks once)."""
    return probe()["network"]


def loopback_up() -> None:
    """Brings ``lo`` up in the calling process's network namespace (a new one has it down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def isolate() -> None:
    """For a ``preexec_fn``: a new network namespace with its loopback up."""
    unshare(CLONE_NEWNET)
    loopback_up()


def namespace_of(pid: int) -> str:
    return f"/proc/{pid}/ns/net"


def is_isolated(pid: int) -> bool:
    """Whether ``pid`` runs in another network namespace than ours."""
    return os.readlink(namespace_of(pid)) != os.readlink(namespace_of(os.getpid()))


def enter(path: str) -> None:
    """Moves the calling *thread* into the network namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(ctypes.c_int(fd), ctypes.c_int(CLONE_NEWNET)) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns {path}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def connector(path: str) -> ThreadPoolExecutor:
    """One thread inside the namespace at ``path``: what it connects is connected from there."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="netns", initializer=enter, initargs=(path,))
