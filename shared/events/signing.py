"""Signed messages: who may say what on the bus.

Trainers and inferencers run strangers' code and reach the broker by design, so a
message's place on a topic proves nothing about its author. Every message the
project publishes on its own topics carries a ``kafkaml-signature`` header, an
HMAC-SHA256 of the record's exact value bytes (docs/contracts.md, "Signing"):

    kafkaml-signature: alg=hmac-sha256;kid=<key id>;signer=<signer>;sig=<hex>

The signer names the key, and so what it may say:

* ``bus``: the bus key itself (``KAFKAML_BUS_KEY``): the API, the services, and
  users who publish commands themselves. Anything.
* ``validator``: HMAC(bus key, "validator"), held by the validator's parent
  process: validation requests and answers only.
* ``job:<job id>:results:<ids>`` / ``job:<job id>:inference:<id>``: HMAC(bus
  key, signer), put in a worker's spec by the orchestrator: that worker's own
  events, about its own results or inference only.

A key derived for a signer cannot sign as another (it would need the bus key),
so the verifier reads what a key may do from the signer it claims. ``kid`` (the
first 8 hex digits of the signing key's SHA-256) tells which of the configured
bus keys it comes from, so a key can be rotated while old messages are still read.
Verification is one function, :meth:`Keyring.open`, which every consumer calls.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, overload

from pydantic import Field

from shared.errors import KafkaMLError
from shared.events.envelope import Envelope, Payload
from shared.settings import Settings

__all__ = [
    "ALGORITHM",
    "BUS",
    "SIGNATURE_HEADER",
    "VALIDATOR",
    "Forged",
    "Key",
    "Keyring",
    "SigningKey",
    "Signs",
    "inference_signer",
    "job_signer",
    "key_id",
    "validator_key",
]

SIGNATURE_HEADER = "kafkaml-signature"
ALGORITHM = "hmac-sha256"
BUS = "bus"
VALIDATOR = "validator"

# What each kind of signer may publish, by message type (the names are a public contract).
VALIDATOR_TYPES = frozenset({"ValidateModel", "ModelValidated", "ModelValidationFailed"})
TRAINER_TYPES = frozenset(
    {
        "TrainingStatusChanged",
        "TrainingProgress",
        "EpochCompleted",
        "TrainingFinished",
        "TrainingFailed",
        "ArtifactChunk",
        "WindowCompleted",
        "ModelVersionPublished",
    }
)
# SwitchModelVersion: the orchestrator signs it with the inference's key, the only key its replicas
# can check; a replica that signs one speaks only for its own inference.
INFERENCER_TYPES = frozenset(
    {"InferenceStatusChanged", "InferenceStats", "InferenceVersionChanged", "SwitchModelVersion"}
)

Header = tuple[str, bytes]

# The header's value, as the published schema (schemas/signature.schema.json) states it.
SIGNATURE_PATTERN = (
    r"^alg=hmac-sha256;kid=[0-9a-f]{8};"
    r"signer=(bus|validator|job:[0-9a-f-]+:(results:[0-9]+(,[0-9]+)*|inference:[0-9]+));sig=[0-9a-f]{64}$"
)


def header_schema() -> dict[str, object]:
    """The JSON Schema of the ``kafkaml-signature`` header's value (a public contract)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": SIGNATURE_HEADER,
        "description": (
            "Value (ASCII) of the Kafka header kafkaml-signature that every message on the internal "
            "topics carries. sig is the lowercase hex HMAC-SHA256 of the record's value bytes, exactly "
            "as sent, keyed with the signer's key; for signer=bus that key is the UTF-8 bytes of the "
            "bus key (KAFKAML_BUS_KEY, stack.json's bus_key), and kid is the first 8 hex digits of "
            "SHA-256 of the key (for bus: of those bytes). Other signers use HMAC-SHA256(bus key, "
            "signer) as key. A message without a valid signature from a key allowed to say it is "
            "dead-lettered."
        ),
        "type": "string",
        "pattern": SIGNATURE_PATTERN,
        "examples": ["alg=hmac-sha256;kid=1a2b3c4d;signer=bus;sig=" + "0" * 64],
    }


class Forged(KafkaMLError):
    """A message whose signature is missing, wrong, or from a key that may not say it:
    it goes to the dead-letter topic with this reason and changes nothing."""

    status = 401
    title = "Unverified message"


class SigningKey(Payload):
    """A derived key as a job spec carries it to its worker (the bus key never leaves the services)."""

    signer: str = Field(description="what the key may sign, e.g. job:<job id>:results:1,2")
    kid: str = Field(description="id of the key: the first 8 hex digits of its SHA-256")
    key: str = Field(description="the derived key, hex", repr=False)


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def derive(bus_key: bytes, signer: str) -> bytes:
    """The key of ``signer``: the bus key itself for ``bus``, else HMAC-SHA256(bus key, signer)."""
    return bus_key if signer == BUS else hmac.new(bus_key, signer.encode(), hashlib.sha256).digest()


def validator_key(bus_key: str) -> str:
    """``KAFKAML_VALIDATOR_KEY`` for a bus key (the first, while one is rotated), in hex."""
    return derive(bus_key.split(",")[0].strip().encode(), VALIDATOR).hex()


def job_signer(job_id: str, result_ids: Sequence[int]) -> str:
    return f"job:{job_id}:results:{','.join(str(r) for r in result_ids)}"


def inference_signer(job_id: str, inference_id: int) -> str:
    return f"job:{job_id}:inference:{inference_id}"


class Signs(Protocol):
    def header(self, message: Envelope, value: bytes) -> Header: ...


@dataclass(frozen=True)
class Key:
    """One key that signs as one signer."""

    signer: str
    secret: bytes = field(repr=False)

    @property
    def kid(self) -> str:
        return key_id(self.secret)

    @classmethod
    def of(cls, spec: SigningKey) -> Key:
        return cls(spec.signer, bytes.fromhex(spec.key))

    def header(self, message: Envelope, value: bytes) -> Header:
        sig = hmac.new(self.secret, value, hashlib.sha256).hexdigest()
        return SIGNATURE_HEADER, f"alg={ALGORITHM};kid={self.kid};signer={self.signer};sig={sig}".encode()


def may_say(signer: str, message: Envelope) -> str | None:
    """Why ``signer`` may not publish ``message``, or None when it may."""
    if signer == BUS:
        return None
    if signer == VALIDATOR:
        return None if message.type in VALIDATOR_TYPES else f"the validator's key may not sign {message.type}"
    parts = signer.split(":")
    if len(parts) == 4 and parts[0] == "job" and parts[2] in ("results", "inference"):
        allowed, entity, owned = (
            (TRAINER_TYPES, "result_id", parts[3].split(","))
            if parts[2] == "results"
            else (INFERENCER_TYPES, "inference_id", [parts[3]])
        )
        if message.type not in allowed:
            return f"the key of job {parts[1]} may not sign {message.type}"
        about = getattr(message.payload, entity, None)
        if str(about) not in owned:
            return f"the key of job {parts[1]} may not sign a {message.type} about {entity} {about}"
        return None
    return f"unknown signer {signer!r}"


def parse_header(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    values = [v for k, v in headers if k == SIGNATURE_HEADER]
    if not values:
        raise Forged(f"unsigned: no {SIGNATURE_HEADER} header (see docs/contracts.md, Signing)")
    if len(values) > 1:
        raise Forged(f"{len(values)} {SIGNATURE_HEADER} headers: a message carries one")
    try:
        fields = dict(part.split("=", 1) for part in values[0].decode("ascii").split(";"))
    except (UnicodeDecodeError, ValueError):
        raise Forged(f"{SIGNATURE_HEADER} is not alg=…;kid=…;signer=…;sig=…") from None
    missing = [name for name in ("alg", "kid", "signer", "sig") if name not in fields]
    if missing:
        raise Forged(f"{SIGNATURE_HEADER} lacks {', '.join(missing)}")
    if fields["alg"] != ALGORITHM:
        raise Forged(f"{SIGNATURE_HEADER}: unknown algorithm {fields['alg']!r} (only {ALGORITHM})")
    return fields


class Keyring:
    """The keys one process holds: bus keys (the first signs, all verify), or a derived key only
    (the validator's). Signs what the process publishes and verifies what it consumes."""

    def __init__(self, bus_keys: Sequence[str] = (), own: Key | None = None) -> None:
        self._roots = [k.encode() for k in bus_keys]  # the first signs
        self._own = own

    @classmethod
    def of(cls, settings: Settings, *, required: bool = False) -> Keyring:
        """From ``KAFKAML_BUS_KEY`` (comma-separated while a key is rotated: the first signs)
        or, for the validator, ``KAFKAML_VALIDATOR_KEY``. ``required``: a service that verifies."""
        roots = [k.strip() for k in (settings.bus_key or "").split(",") if k.strip()]
        own = None
        if not roots and settings.validator_key:
            own = Key(VALIDATOR, bytes.fromhex(settings.validator_key))
        if required and not roots and own is None:
            raise RuntimeError(
                "KAFKAML_BUS_KEY is not set: the services sign and verify every message with it "
                "(`kafkaml up` makes one and writes it to stack.json)"
            )
        return cls(roots, own)

    @property
    def can_sign(self) -> bool:
        return bool(self._roots) or self._own is not None

    def key(self, signer: str = BUS) -> Key:
        """The key that signs as ``signer``, derived from the current bus key."""
        if not self._roots:
            if self._own is not None and self._own.signer == signer:
                return self._own
            raise RuntimeError(f"no bus key here to sign as {signer}")
        return Key(signer, derive(self._roots[0], signer))

    def signing_key(self, signer: str) -> SigningKey:
        """A derived key as a job spec carries it."""
        key = self.key(signer)
        return SigningKey(signer=key.signer, kid=key.kid, key=key.secret.hex())

    def header(self, message: Envelope, value: bytes) -> Header:
        # Validation requests are signed with the validator's key: the validator holds only that one.
        signer = VALIDATOR if message.topic == "validation" or not self._roots else BUS
        return self.key(signer).header(message, value)

    def verify(self, message: Envelope, value: bytes, headers: Sequence[tuple[str, bytes]]) -> None:
        """Raises ``Forged`` unless ``message`` carries a valid signature of a key that may say it."""
        fields = parse_header(headers)
        signer = fields["signer"]
        candidates = [derive(root, signer) for root in self._roots]
        if self._own is not None and signer == self._own.signer:
            candidates.append(self._own.secret)
        secret = next((key for key in candidates if key_id(key) == fields["kid"]), None)
        if secret is None:
            raise Forged(f"signed with an unknown key (kid {fields['kid']!r}) as {signer!r}")
        expected = hmac.new(secret, value, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields["sig"]):
            raise Forged(f"wrong signature for signer {signer!r}: the value was not signed with its key")
        refusal = may_say(signer, message)
        if refusal is not None:
            raise Forged(refusal)

    @overload
    def open(self, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> Envelope: ...
    @overload
    def open(
        self, value: bytes | None, headers: Sequence[tuple[str, bytes]], wanted: Callable[[Envelope], bool]
    ) -> Envelope | None: ...
    def open(
        self,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        wanted: Callable[[Envelope], bool] | None = None,
    ) -> Envelope | None:
        """The one way a consumer reads a message: decoded (``Undecodable``), then, if
        ``wanted`` (default: every message), verified (``Forged``); None when not wanted."""
        from shared.events import decode  # the package imports this module's names

        message = decode(value)
        if wanted is not None and not wanted(message):
            return None
        self.verify(message, value or b"", headers)
        return message
