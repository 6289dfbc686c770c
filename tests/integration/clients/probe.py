"""One Kafka client tried against a broker, as a user of that client would; prints one JSON line.

Run by ``test_compatibility.py`` in its own process, so that each client can bring its own
path (kafka-python 2.0.2 cannot share a virtual environment with the current kafka-python).
It imports nothing from the project: only the standard library and the client under test.

    python probe.py CLIENT basic --bootstrap HOST:PORT --src TOPIC --dst TOPIC --count N
    python probe.py CLIENT group --bootstrap HOST:PORT --src TOPIC --group G --count N [--documented]

``basic`` produces N records to ``dst`` and reads ``src`` from the beginning without a group;
``group`` reads ``src`` in a fresh group, with the client's defaults or with the settings
docs/clients.md gives (``--documented``), and times subscribe → first record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

# The settings docs/clients.md gives: the embedded broker holds a first JoinGroup for half the
# session timeout, and an empty fetch for the whole fetch wait.
SESSION_MS = 6000
HEARTBEAT_MS = 1000
FETCH_WAIT_MS = 10
PLAIN_TIMEOUT_S = 15.0
# A client's defaults (a 45 s session: about 23 s per join here) can take one join more when
# the two cores are busy (seen in CI: kafka-python 3.0 had no record after 45 s).
GROUP_TIMEOUT_S = 75.0

Result = dict[str, Any]


def failure(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:160]


def librdkafka_error(stderr: bytes) -> str:
    """The last librdkafka log line, without its level, time, thread and broker prefix."""
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return "no error output"
    last = next((line for line in reversed(lines) if "|FAIL|" in line), lines[-1])
    message = re.sub(r"^%\d\|[^|]*\|[^|]*\|[^|]*\| \[[^\]]*\]: (\S+/\S+: )?", "", last)
    return message.removeprefix("% ERROR: ").split(": probably due to")[0][:120]


def values(count: int) -> list[bytes]:
    return [json.dumps({"values": [float(i)]}).encode() for i in range(count)]


# --- aiokafka ---------------------------------------------------------------------------


def aiokafka_basic(args: argparse.Namespace) -> Result:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    async def produce() -> Result:
        producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap)
        await producer.start()
        try:
            for value in values(args.count):
                await producer.send_and_wait(args.dst, value)
        finally:
            await producer.stop()
        return {"ok": True, "count": args.count}

    async def plain() -> Result:
        consumer = AIOKafkaConsumer(bootstrap_servers=args.bootstrap, fetch_max_wait_ms=FETCH_WAIT_MS)
        await consumer.start()
        try:
            partition = TopicPartition(args.src, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            got, deadline = 0, time.monotonic() + PLAIN_TIMEOUT_S
            while got < args.count and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    got += len(records)
        finally:
            await consumer.stop()
        return {"ok": got >= args.count, "count": got}

    return {"produce": guarded(lambda: asyncio.run(produce())), "plain": guarded(lambda: asyncio.run(plain()))}


def aiokafka_group(args: argparse.Namespace) -> Result:
    from aiokafka import AIOKafkaConsumer

    settings: dict[str, Any] = {}
    if args.documented:
        settings = {
            "session_timeout_ms": SESSION_MS,
            "heartbeat_interval_ms": HEARTBEAT_MS,
            "fetch_max_wait_ms": FETCH_WAIT_MS,
        }

    async def run() -> Result:
        consumer = AIOKafkaConsumer(
            args.src, bootstrap_servers=args.bootstrap, group_id=args.group, auto_offset_reset="earliest", **settings
        )
        started = time.monotonic()
        await consumer.start()
        try:
            return await timed_reads(started, args.count, lambda: consumer.getmany(timeout_ms=200))
        finally:
            await consumer.stop()

    return asyncio.run(run())


async def timed_reads(started: float, count: int, poll: Callable[[], Any]) -> Result:
    got, first = 0, None
    while got < count and time.monotonic() - started < GROUP_TIMEOUT_S:
        for records in (await poll()).values():
            if records and first is None:
                first = time.monotonic() - started
            got += len(records)
    return {"ok": got >= count, "count": got, "seconds": first}


# --- confluent-kafka (librdkafka) ---------------------------------------------------------


def confluent_basic(args: argparse.Namespace) -> Result:
    from confluent_kafka import Consumer, Producer, TopicPartition

    def produce() -> Result:
        producer = Producer({"bootstrap.servers": args.bootstrap})
        errors: list[str] = []
        for value in values(args.count):
            producer.produce(args.dst, value, on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)
        left = producer.flush(10)
        if errors or left:
            return {"ok": False, "error": errors[0] if errors else f"{left} records not acknowledged"}
        return {"ok": True, "count": args.count}

    def plain() -> Result:
        # No group: librdkafka still wants a group.id string, but assign() never joins it.
        consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "unused", "fetch.wait.max.ms": 10})
        try:
            consumer.assign([TopicPartition(args.src, 0, 0)])
            got, deadline, error = 0, time.monotonic() + PLAIN_TIMEOUT_S, None
            while got < args.count and time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is None:
                    continue
                if message.error():
                    error = str(message.error())
                    continue
                got += 1
        finally:
            consumer.close()
        return {"ok": got >= args.count, "count": got, **({"error": error} if error and got < args.count else {})}

    return {"produce": guarded(produce), "plain": guarded(plain)}


def confluent_group(args: argparse.Namespace) -> Result:
    from confluent_kafka import Consumer

    config: dict[str, Any] = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
    }
    if args.documented:
        config.update({"session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": HEARTBEAT_MS})
        config["fetch.wait.max.ms"] = FETCH_WAIT_MS
    consumer = Consumer(config)
    started = time.monotonic()
    consumer.subscribe([args.src])
    got, first, error = 0, None, None
    try:
        while got < args.count and time.monotonic() - started < GROUP_TIMEOUT_S:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                error = str(message.error())
                continue
            if first is None:
                first = time.monotonic() - started
            got += 1
    finally:
        consumer.close()
    result: Result = {"ok": got >= args.count, "count": got, "seconds": first}
    if error and got < args.count:
        result["error"] = error
    return result


# --- kafka-python (2.0.2 or current: whichever is first on the path) --------------------


def kafka_python_basic(args: argparse.Namespace) -> Result:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    def produce() -> Result:
        producer = KafkaProducer(bootstrap_servers=args.bootstrap)
        futures = [producer.send(args.dst, value) for value in values(args.count)]
        producer.flush(10)
        for future in futures:
            future.get(timeout=10)
        producer.close()
        return {"ok": True, "count": args.count}

    def plain() -> Result:
        consumer = KafkaConsumer(bootstrap_servers=args.bootstrap, fetch_max_wait_ms=FETCH_WAIT_MS)
        partition = TopicPartition(args.src, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        got, deadline = 0, time.monotonic() + PLAIN_TIMEOUT_S
        while got < args.count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got += len(records)
        consumer.close()
        return {"ok": got >= args.count, "count": got}

    return {"produce": guarded(produce), "plain": guarded(plain)}


def kafka_python_group(args: argparse.Namespace) -> Result:
    from kafka import KafkaConsumer

    settings: dict[str, Any] = {}
    if args.documented:
        settings = {
            "session_timeout_ms": SESSION_MS,
            "heartbeat_interval_ms": HEARTBEAT_MS,
            "fetch_max_wait_ms": FETCH_WAIT_MS,
        }
    started = time.monotonic()
    # Upstream Kafka-ML's reading pattern, with the offset reset a first run needs.
    consumer = KafkaConsumer(
        args.src, bootstrap_servers=args.bootstrap, group_id=args.group, auto_offset_reset="earliest", **settings
    )
    got, first = 0, None
    try:
        while got < args.count and time.monotonic() - started < GROUP_TIMEOUT_S:
            for records in consumer.poll(timeout_ms=200).values():
                if records and first is None:
                    first = time.monotonic() - started
                got += len(records)
    finally:
        consumer.close()
    return {"ok": got >= args.count, "count": got, "seconds": first}


# --- kcat (librdkafka's command-line client) ---------------------------------------------


def kcat_basic(args: argparse.Namespace) -> Result:
    def produce() -> Result:
        lines = b"".join(value + b"\n" for value in values(args.count))
        done = subprocess.run(
            ["kcat", "-P", "-b", args.bootstrap, "-t", args.dst], input=lines, capture_output=True, timeout=30
        )
        if done.returncode:
            return {"ok": False, "error": librdkafka_error(done.stderr)}
        return {"ok": True, "count": args.count}

    def plain() -> Result:
        command = ["kcat", "-C", "-b", args.bootstrap, "-t", args.src, "-o", "beginning", "-c", str(args.count), "-e"]
        done = subprocess.run(command, capture_output=True, timeout=PLAIN_TIMEOUT_S + 15)
        got = len(done.stdout.splitlines())
        result: Result = {"ok": got >= args.count, "count": got}
        if got < args.count:
            result["error"] = librdkafka_error(done.stderr)
        return result

    return {"produce": guarded(produce), "plain": guarded(plain)}


def kcat_group(args: argparse.Namespace) -> Result:
    command = ["kcat", "-b", args.bootstrap, "-G", args.group, "-c", str(args.count), "-q"]
    command += ["-X", "auto.offset.reset=earliest"]
    if args.documented:
        command += ["-X", f"session.timeout.ms={SESSION_MS}", "-X", f"heartbeat.interval.ms={HEARTBEAT_MS}"]
        command += ["-X", f"fetch.wait.max.ms={FETCH_WAIT_MS}"]
    command.append(args.src)
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got, first = 0, None
    try:
        assert process.stdout is not None
        for _line in iter(process.stdout.readline, b""):
            if first is None:
                first = time.monotonic() - started
            got += 1
            if got >= args.count:
                break
        process.wait(GROUP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    result: Result = {"ok": got >= args.count, "count": got, "seconds": first}
    if got < args.count and process.stderr is not None:
        result["error"] = librdkafka_error(process.stderr.read())
    return result


# --- faust ---------------------------------------------------------------------------------


def faust_app(args: argparse.Namespace) -> Any:
    import faust

    settings: dict[str, Any] = {}
    if args.documented:
        settings = {
            "broker_session_timeout": SESSION_MS / 1000,
            "broker_heartbeat_interval": HEARTBEAT_MS / 1000,
            "broker_rebalance_timeout": SESSION_MS / 1000,
        }
    return faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        value_serializer="raw",
        store="memory://",
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        **settings,
    )


def finish(args: argparse.Namespace, result: Result) -> None:
    """Prints the result and ends the process: a faust worker takes seconds to stop cleanly."""
    print(json.dumps({"version": args.version, **result}), flush=True)
    os._exit(0)


def run_faust(args: argparse.Namespace, app: Any, on_timeout: Callable[[], Result]) -> Result:
    import faust

    threading.Timer(GROUP_TIMEOUT_S, lambda: finish(args, on_timeout())).start()
    faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()
    return on_timeout()


def faust_basic(args: argparse.Namespace) -> Result:
    app = faust_app(args)
    topic = app.topic(args.dst, value_serializer="raw")
    # faust has no reading without a group: an agent always consumes in the app's group.
    plain = {"ok": False, "skip": "faust always reads in a group (its app id)"}

    @app.agent(topic)
    async def ignore(stream: Any) -> None:  # a worker without an agent does not start
        async for _value in stream:
            pass

    @app.task
    async def produce() -> None:
        try:
            for value in values(args.count):
                await (await topic.send(value=value))
            finish(args, {"produce": {"ok": True, "count": args.count}, "plain": plain})
        except Exception as exc:
            finish(args, {"produce": {"ok": False, "error": failure(exc)}, "plain": plain})

    return run_faust(args, app, lambda: {"produce": {"ok": False, "error": "timed out"}, "plain": plain})


def faust_group(args: argparse.Namespace) -> Result:
    started = time.monotonic()
    app = faust_app(args)
    outcome: Result = {"ok": False, "count": 0, "seconds": None}

    @app.agent(app.topic(args.src, value_serializer="raw"))
    async def read(stream: Any) -> None:
        async for _value in stream:
            if outcome["seconds"] is None:
                outcome["seconds"] = time.monotonic() - started
            outcome["count"] += 1
            if outcome["count"] >= args.count:
                finish(args, outcome | {"ok": True})

    return run_faust(args, app, lambda: outcome)


# --- driver ------------------------------------------------------------------------------

CLIENTS: dict[str, tuple[Callable[[argparse.Namespace], Result], Callable[[argparse.Namespace], Result]]] = {
    "aiokafka": (aiokafka_basic, aiokafka_group),
    "confluent-kafka": (confluent_basic, confluent_group),
    "kafka-python": (kafka_python_basic, kafka_python_group),
    "kcat": (kcat_basic, kcat_group),
    "faust": (faust_basic, faust_group),
}


def guarded(step: Callable[[], Result]) -> Result:
    try:
        return step()
    except Exception as exc:
        return {"ok": False, "error": failure(exc)}


def version_of(client: str) -> str:
    try:
        if client == "aiokafka":
            import aiokafka

            return str(aiokafka.__version__)
        if client == "confluent-kafka":
            import confluent_kafka

            return f"{confluent_kafka.version()} (librdkafka {confluent_kafka.libversion()[0]})"
        if client == "kafka-python":
            import kafka

            return str(kafka.__version__)
        if client == "faust":
            import faust

            return str(faust.__version__)
        done = subprocess.run(["kcat", "-V"], capture_output=True, text=True, timeout=10)
        found = re.search(r"Version (\S+).*librdkafka (\S+)", done.stdout)
        return f"{found[1]} (librdkafka {found[2]})" if found else done.stdout.strip()[:40]
    except Exception as exc:  # the client does not import here: that is the finding
        raise Unavailable(failure(exc)) from exc


class Unavailable(Exception):
    """The client cannot be imported or run on this machine."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("client", choices=sorted(CLIENTS))
    parser.add_argument("mode", choices=["basic", "group"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--src", required=True)
    parser.add_argument("--dst", default="")
    parser.add_argument("--group", default="probe")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--documented", action="store_true")
    args = parser.parse_args()
    try:
        version = version_of(args.client)
    except Unavailable as exc:
        print(json.dumps({"unavailable": str(exc)}), flush=True)
        return
    args.version = version
    basic, group = CLIENTS[args.client]
    result = basic(args) if args.mode == "basic" else guarded(lambda: group(args))
    print(json.dumps({"version": version, **result}), flush=True)


if __name__ == "__main__":
    main()
