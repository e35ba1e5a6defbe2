"""The MLLP listener's connection handling, on a real socket with a stand-in for the
publisher (the publishing itself is tested on the real stack, tests/e2e/
test_gateways.py): order per connection, the connection limit with backpressure, idle
timeouts, oversized frames, and AE when Kafka does not answer."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from medstream.clinical import SourceFormat
from medstream.errors import InvalidMessage
from medstream.ops.gateways.edge import Checked, KafkaUnavailable
from medstream.ops.gateways.mllp import END_BLOCK, MllpListener, frame
from medstream.platform.tls import ensure_local_ca
from medstream.settings import Settings

pytestmark = pytest.mark.unit


class FakeEdge:
    """Records what it was asked to publish; fails as told."""

    def __init__(self) -> None:
        self.accepted: list[bytes] = []
        self.refused: list[str] = []
        self.kafka_down = False
        self.release = asyncio.Event()
        self.release.set()

    async def check(self, source_format: SourceFormat, raw: bytes) -> Checked:
        if not raw.startswith(b"MSH"):
            raise InvalidMessage("hl7.no_msh", "no MSH")
        return Checked("hl7:x", None)

    async def accept(
        self, source_format: SourceFormat, raw: bytes, checked: Checked, **_: Any
    ) -> None:
        await self.release.wait()
        if self.kafka_down:
            raise KafkaUnavailable
        self.accepted.append(raw)

    async def refuse(
        self, source_format: SourceFormat, raw: bytes, error: InvalidMessage, **_: Any
    ) -> str:
        self.refused.append(error.code)
        return "x"

    async def submit(
        self, source_format: SourceFormat, raw: bytes, **where: Any
    ) -> str | InvalidMessage:
        try:
            checked = await self.check(source_format, raw)
            await self.accept(source_format, raw, checked, **where)
        except InvalidMessage as error:
            await self.refuse(source_format, raw, error, **where)
            return error
        return checked.message_id

    async def audit_refusal(self, protocol: str, peer: str, code: str, action: str = "") -> None:
        self.refused.append(code)


def message(control: str) -> bytes:
    return f"MSH|^~\\&|A|B|C|D|20261130||ADT^A01|{control}|P|2.5\rPID|1||X\r".encode()


@asynccontextmanager
async def listening(edge: FakeEdge, **settings: Any) -> AsyncIterator[int]:
    values = {
        "mllp_port": 0,
        "gateway_max_connections": 4,
        "gateway_idle_timeout_s": 5.0,
        **settings,
    }
    listener = MllpListener(edge, Settings(**values))  # type: ignore[arg-type]
    await listener.start()
    assert listener._server is not None
    port = listener._server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        await listener.stop()


async def send(port: int, *frames: bytes) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(frames))  # pipelined: all at once
    await writer.drain()
    replies = [await asyncio.wait_for(reader.readuntil(END_BLOCK), 10) for _ in frames]
    writer.close()
    return replies


async def test_pipelined_messages_are_acknowledged_in_order() -> None:
    edge = FakeEdge()
    async with listening(edge) as port:
        replies = await send(port, *(frame(message(f"C{n}")) for n in range(20)))
    assert [r.split(b"MSA|AA|")[1].split(b"\r")[0] for r in replies] == [
        f"C{n}".encode() for n in range(20)
    ]
    assert edge.accepted == [message(f"C{n}") for n in range(20)]


async def test_kafka_unavailable_is_ae_and_never_aa() -> None:
    edge = FakeEdge()
    edge.kafka_down = True
    async with listening(edge) as port:
        (reply,) = await send(port, frame(message("K1")))
    assert b"MSA|AE|K1" in reply
    assert b"gateway.kafka_unavailable" in reply


async def test_after_an_ae_the_connection_closes_so_pipelined_frames_keep_their_order() -> None:
    edge = FakeEdge()
    edge.kafka_down = True
    async with listening(edge) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame(message("P1")) + frame(message("P2")))
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(END_BLOCK), 10)
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert b"MSA|AE|P1" in first
    assert rest == b"", "P2 must not be answered (or published) before P1 is resent"


async def test_past_the_waiting_limit_a_connection_is_turned_away() -> None:
    edge = FakeEdge()
    edge.release.clear()
    async with listening(edge, gateway_max_connections=1) as port:
        holding = asyncio.create_task(send(port, frame(message("HOLD"))))
        await asyncio.sleep(0.3)
        waiting = await asyncio.open_connection("127.0.0.1", port)  # waits for the slot
        await asyncio.sleep(0.3)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at once
        writer.close()
        waiting[1].close()
        edge.release.set()
        await holding
    assert "mllp.busy" in edge.refused


async def test_an_oversized_frame_is_refused_and_the_connection_goes_on() -> None:
    edge = FakeEdge()
    async with listening(edge, mllp_max_bytes=64 * 1024) as port:
        big = frame(message("BIG") + b"OBX|" + b"x" * 300_000 + b"\r")
        replies = await send(port, big, frame(message("AFTER")))
    assert b"MSA|AR|" in replies[0]
    assert b"gateway.too_large" in replies[0]
    assert b"MSA|AA|AFTER" in replies[1]
    assert edge.refused == ["gateway.too_large"]


async def test_over_the_limit_a_connection_waits_for_a_slot() -> None:
    edge = FakeEdge()
    edge.release.clear()  # the first connection's message is held in "Kafka"
    async with listening(edge, gateway_max_connections=1) as port:
        first = asyncio.create_task(send(port, frame(message("FIRST"))))
        await asyncio.sleep(0.3)
        second = asyncio.create_task(send(port, frame(message("SECOND"))))
        await asyncio.sleep(0.5)
        assert not second.done(), "a connection past the limit must wait"
        edge.release.set()
        assert b"MSA|AA|FIRST" in (await first)[0]
        assert b"MSA|AA|SECOND" in (await asyncio.wait_for(second, 10))[0]


async def test_an_idle_connection_is_closed() -> None:
    edge = FakeEdge()
    async with listening(edge, gateway_idle_timeout_s=0.5) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the gateway
        writer.close()


async def test_mllp_over_tls(tmp_path: Path) -> None:
    """IHE ATNA's secure transport: the same listener behind TLS (a certificate from a
    throwaway CA, the way the stack makes the brokers')."""
    files = ensure_local_ca(tmp_path / "tls")
    edge = FakeEdge()
    settings = {
        "gateway_tls_cert_file": files.broker_keystore,
        "gateway_tls_key_file": files.broker_keystore,
    }
    async with listening(edge, **settings) as port:
        client = ssl.create_default_context(cafile=str(files.ca_cert))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        writer.write(frame(message("TLS1")))
        await writer.drain()
        reply = await asyncio.wait_for(reader.readuntil(END_BLOCK), 10)
        writer.close()
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await send(port, frame(message("PLAIN")))  # a plain client gets nothing
    assert b"MSA|AA|TLS1" in reply
    assert edge.accepted == [message("TLS1")]


async def test_connections_and_acknowledgement_latency_are_measured() -> None:
    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"protocol": "mllp"}) or 0.0

    before = (
        sample("medstream_gateway_connections_total"),
        sample("medstream_gateway_ack_seconds_count"),
    )
    edge = FakeEdge()
    async with listening(edge) as port:
        await send(port, frame(message("M1")), frame(message("M2")))
    assert sample("medstream_gateway_connections_total") == before[0] + 1
    assert sample("medstream_gateway_ack_seconds_count") == before[1] + 2
    for _ in range(40):  # the handler sees the client's close a moment later
        if sample("medstream_gateway_open_connections") == 0:
            break
        await asyncio.sleep(0.05)
    assert sample("medstream_gateway_open_connections") == 0
