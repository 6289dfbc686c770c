"""Version switches: which version a replica serves, and changing it without stopping.

**Which version.** The orchestrator tells an inference's replicas to serve another
version with a ``SwitchModelVersion`` on the jobs topic (compacted, one partition,
keyed by inference id), signed with the inference's own key, after it sent the
version's artifact chunks again. A replica reads that topic without a group: at
start up to its end, where the latest switch for its inference overrides the
spec's version, then live for as long as it serves. It obeys only a switch about
its own inference that verifies with its own key (``Keyring(own=...)``: the bus
key never reaches a replica); anything else addressed to it (by key or by
payload) goes to the dead-letter topic with the reason and changes nothing
(by every replica that reads it, at each start too: the topic keeps it).

**Load beside, switch between micro-batches.** The :class:`Switcher` fetches the
version's artifact, loads and warms it up in a thread while the current model
goes on serving; then it hands the model to the serving loop, which takes it
between two micro-batches (the batch in flight finishes with the old one; see
``Inferencer.stage``). A failed load keeps the version that serves, says why in the
log and in an ``InferenceStatusChanged`` (still ``running``, with the error). Inputs
are not touched by any of this: offsets are committed as always, so none is lost
or answered twice. A distributed chain's sub-models are inferences of their own:
each switches when its own switch arrives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from services.inferencer.events import ReplicaEvents
from services.inferencer.model import ServedModel, check_outputs, fetch_artifact, load_model, warm_up
from shared.codecs import Decoder
from shared.errors import Undecodable, WorkloadFailed
from shared.events.inference import ServeSpec
from shared.events.signing import Forged, Key, Keyring
from shared.events.versions import SwitchModelVersion, VersionSwitch
from shared.kafka import Producer, make_consumer, received_from
from shared.process import Backoff
from shared.settings import Settings
from shared.topics import topics_for

__all__ = ["Staged", "SwitchListener", "Switcher", "switched"]

log = logging.getLogger("kafkaml.inferencer")

# At start, the jobs topic is read up to its end within this time (then the replica goes on
# with what it found, and the rest arrives live).
REPLAY_TIMEOUT_S: Final = 20.0
_CONSUMER_NAME: Final = "inferencer-switch"
_SWITCH_TYPE: Final = b'"SwitchModelVersion"'
RETRY: Final = Backoff(initial=0.5, maximum=10.0)


def switched(spec: ServeSpec, switch: VersionSwitch) -> ServeSpec:
    """The spec as it would be had it named the switch's version."""
    return spec.model_copy(
        update={"artifact_sha256": switch.sha256, "artifact_format": switch.format, "model_version": switch.version}
    )


class SwitchListener:
    """The jobs topic, read for the switches of one inference (module docstring)."""

    def __init__(self, settings: Settings, spec: ServeSpec, producer: Producer) -> None:
        self.settings = settings
        self.spec = spec
        self.producer = producer
        self.topic = topics_for(settings).jobs
        self.dead_letter_topic = topics_for(settings).dead_letters
        self.key = str(spec.inference_id).encode()
        # Only the inference's own key verifies: a switch signed by any other (the bus key too) is refused.
        own = Key.of(spec.signing_key) if spec.signing_key is not None else None
        self.keyring = Keyring(own=own)
        self.consumer: Any = None

    async def replay(self, timeout_s: float = REPLAY_TIMEOUT_S) -> VersionSwitch | None:
        """Starts reading; the latest valid switch up to the topic's end at start (None: there is none)."""
        self.consumer = consumer = make_consumer(self.settings, self.topic, group_id=None)
        await consumer.start()
        deadline = time.monotonic() + timeout_s
        while not consumer.assignment():
            if time.monotonic() > deadline:
                log.warning("no partition of %s after %g s: serving the spec's version", self.topic, timeout_s)
                return None
            await asyncio.sleep(0.05)
        partitions = list(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        latest: VersionSwitch | None = None
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                log.warning("%s not read to its end within %g s: later switches arrive live", self.topic, timeout_s)
                break
            for records in (await consumer.getmany(timeout_ms=200, max_records=500)).values():
                for record in records:
                    latest = await self.check(record) or latest
        return latest

    async def listen(self, on_switch: Callable[[VersionSwitch], None], stop: asyncio.Event) -> None:
        """Hands every valid switch that arrives to ``on_switch`` until ``stop`` (after :meth:`replay`)."""
        consumer = self.consumer
        assert consumer is not None, "replay() first"
        delays = RETRY.delays()
        while not stop.is_set():
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=100)
                for records in batches.values():
                    for record in records:
                        switch = await self.check(record)
                        if switch is not None:
                            on_switch(switch)
                delays = RETRY.delays()
            except Exception as exc:  # the broker away: switches wait, serving goes on
                log.warning("reading switches from %s failed (%s: %s): retrying", self.topic, type(exc).__name__, exc)
                await asyncio.sleep(next(delays))

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def check(self, record: Any) -> VersionSwitch | None:
        """The record's switch when it is one for us that verifies; a bad one addressed to us is dead-lettered."""
        value: bytes | None = record.value
        ours = record.key == self.key
        if not ours and (value is None or _SWITCH_TYPE not in value):
            return None  # cheap: a trainer's or another inference's spec is not decoded at all
        own = self.spec.inference_id
        try:
            message = self.keyring.open(
                value,
                list(record.headers or []),
                lambda m: isinstance(m, SwitchModelVersion) and m.payload.inference_id == own,
            )
        except Undecodable as exc:
            if ours:
                await self._refuse(record, f"{exc.detail}")
            return None
        except Forged as exc:
            await self._refuse(record, f"a SwitchModelVersion for inference {own} that does not verify: {exc.detail}")
            return None
        if message is None:
            if ours:
                await self._refuse(record, f"not a SwitchModelVersion for inference {own}")
            return None
        assert isinstance(message, SwitchModelVersion)
        switch = message.payload
        if switch.result_id != self.spec.result_id:
            await self._refuse(
                record, f"a switch to a model of result {switch.result_id}; inference {own} serves result "
                f"{self.spec.result_id}"
            )  # fmt: skip
            return None
        return switch

    async def _refuse(self, record: Any, reason: str) -> None:
        log.warning("dead-lettering %s:%d:%d: %s", record.topic, record.partition, record.offset, reason)
        await self.producer.dead_letter(self.dead_letter_topic, received_from(record), reason, consumer=_CONSUMER_NAME)


class Staged:
    """A loaded, warmed-up model, ready to serve from the next micro-batch."""

    def __init__(self, model: ServedModel, version: int, sha256: str, seconds: float) -> None:
        self.model = model
        self.version = version
        self.sha256 = sha256
        self.seconds = seconds


class Stages(Protocol):
    """What the switcher needs of the serving loop."""

    def stage(self, staged: Staged) -> None: ...


class Switcher:
    """Loads the version asked for beside the one that serves, then stages it (module docstring).

    Switches are taken in order, the latest winning: one that arrives while another
    loads replaces it as the next to load.
    """

    def __init__(
        self,
        settings: Settings,
        spec: ServeSpec,
        *,
        device: str,
        decoder: Decoder,
        distributed: bool,
        events: ReplicaEvents,
        stop: asyncio.Event,
        artifact_timeout_s: float,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.device = device
        self.decoder = decoder
        self.distributed = distributed
        self.events = events
        self.stop = stop
        self.artifact_timeout_s = artifact_timeout_s
        self.version = spec.model_version
        self.sha256 = spec.artifact_sha256
        self._pending: VersionSwitch | None = None
        self._wake = asyncio.Event()

    def request(self, switch: VersionSwitch) -> None:
        self._pending = switch
        self._wake.set()

    async def run(self, loop: Stages) -> None:
        while not self.stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            switch, self._pending = self._pending, None
            if switch is None:
                continue
            if switch.sha256 == self.sha256 and switch.version == self.version:
                log.info("switch to version %d: already serving it", switch.version)
                continue
            started = time.monotonic()
            try:
                staged = await self._load(switch)
            except Exception as exc:
                reason = exc.detail if isinstance(exc, WorkloadFailed) else f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, WorkloadFailed):
                    log.exception("switch to version %d failed", switch.version)
                error = f"could not switch to version {switch.version}, still serving version {self.version}: {reason}"
                log.error("%s", error)
                try:
                    await self.events.status("running", error)
                except Exception as publish:  # the broker away: the log has it
                    log.warning("could not report the failed switch: %s", publish)
                continue
            if staged is None:  # stopping
                return
            if self._pending is not None:
                log.info("version %d loaded, but a newer switch arrived meanwhile: that one is next", switch.version)
                continue
            self.version, self.sha256 = staged.version, staged.sha256
            log.info("version %d loaded beside the serving one in %.1f s", staged.version, time.monotonic() - started)
            loop.stage(staged)

    async def _load(self, switch: VersionSwitch) -> Staged | None:
        spec = switched(self.spec, switch)
        artifact = await fetch_artifact(self.settings, spec, self.artifact_timeout_s, self.stop)
        if artifact is None:
            return None
        # In threads: the serving loop (this event loop) goes on with the old model meanwhile.
        model = await asyncio.to_thread(load_model, spec, artifact, self.device)
        outputs, seconds = await asyncio.to_thread(warm_up, model, self.decoder)
        check_outputs(outputs, distributed=self.distributed)
        return Staged(model, switch.version, switch.sha256, seconds)
