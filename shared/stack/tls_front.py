"""The embedded broker's TLS listener: a process that terminates TLS and relays bytes to Tansu.

Tansu 0.6 cannot serve TLS itself: its ``--cert`` and ``--key`` flags are declared mutually
exclusive (so both cannot be given), and its broker builds a TLS acceptor it never uses
(docs/embedded-broker.md). So ``kafkaml up --kafka-security ssl`` runs Tansu on a loopback
port and this relay on the advertised one: clients speak TLS, verify the broker's certificate
by name, and see one broker. It relays bytes, never parses them.

    python -m shared.stack.tls_front --listen 127.0.0.1:9093 --target 127.0.0.1:9092 \\
        --cert server.pem --key server.key
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import ssl

from shared.process import on_stop_signals

log = logging.getLogger("kafkaml.tls-front")
CHUNK = 256 * 1024


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


async def serve(listen: tuple[str, int], target: tuple[str, int], context: ssl.SSLContext) -> None:
    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection(*target)
        except OSError as exc:
            log.warning("cannot reach the broker at %s:%d: %s", *target, exc)
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, broker_writer), _pipe(broker_reader, client_writer))

    server = await asyncio.start_server(relay, *listen, ssl=context)
    stop = asyncio.Event()
    on_stop_signals(lambda _sig: stop.set(), asyncio.get_running_loop())
    log.info("TLS on %s:%d, relaying to %s:%d", *listen, *target)
    async with server:
        await stop.wait()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, type=_address)
    parser.add_argument("--target", required=True, type=_address)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    asyncio.run(serve(args.listen, args.target, context))


if __name__ == "__main__":
    main()
