"""HL7 v2 over MLLP: frames in, one ACK out per message, in the connection's order.

MLLP wraps each message as 0x0B <message> 0x1C 0x0D. The reply is an ACK that echoes
MSH-10 in MSA-2:

- ``AA`` (``CA`` in enhanced mode) only after Kafka acknowledged the message;
- ``AR`` (``CR``) for a message that cannot be framed or parsed, with an ERR segment
  naming the stable code (docs/gateways.md), once its dead letter is acknowledged;
- ``AE`` (``CE``) when Kafka did not acknowledge in time: the sender retries.

A connection's messages are handled one at a time, so a sender that pipelines gets
its ACKs in order and its messages reach Kafka in order. python-hl7 parses MLLP too,
but as a server callback with no hook between the publish and the reply; the framing
here is twenty lines, and the reply is ours to time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from medstream.clinical import SourceFormat
from medstream.errors import InvalidMessage
from medstream.formats import hl7v2
from medstream.ops.gateways.edge import (
    ACK_LATENCY,
    CONNECTIONS,
    CONNECTIONS_TOTAL,
    TOO_LARGE,
    EdgePublisher,
    KafkaUnavailable,
)
from medstream.settings import Settings

log = logging.getLogger(__name__)

PROTOCOL = "mllp"
START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
NO_START_BLOCK = "mllp.no_start_block"
BUSY = "mllp.busy"
# HL7 table 0357 (message error condition codes) for the ERR segment.
HL7_ERROR = {
    "hl7.unsupported_version": ("203", "Unsupported version id"),
    "hl7.no_patient": ("101", "Required field missing"),
    TOO_LARGE: ("207", "Application internal error"),
    "gateway.kafka_unavailable": ("207", "Application internal error"),
}
SEGMENT_ERROR = ("100", "Segment sequence error")


def frame(message: bytes) -> bytes:
    """``message`` in an MLLP block."""
    return START_BLOCK + message + END_BLOCK


def unframe(block: bytes) -> bytes:
    """The message in the bytes before an end block; raise InvalidMessage when they do
    not start with the start block (whitespace between blocks is tolerated)."""
    stripped = block.lstrip(b" \t\r\n")
    if not stripped.startswith(START_BLOCK):
        raise InvalidMessage(
            NO_START_BLOCK,
            "The bytes before the MLLP end block (0x1C 0x0D) did not begin with the start "
            "block (0x0B); frame each message as 0x0B message 0x1C 0x0D.",
        )
    return stripped[1:]


@dataclass(frozen=True)
class MessageHeader:
    """The MSH fields an acknowledgement answers."""

    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    trigger: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = "2.5"
    accept_ack_type: str = ""

    @classmethod
    def of(cls, raw: bytes) -> MessageHeader:
        """The header of ``raw``, as far as it can be read (defaults otherwise)."""
        text = hl7v2.normalise_separators(hl7v2.decode(raw)).lstrip()
        if not text.startswith("MSH") or len(text) < 8:
            return cls()
        fields = text.split("\r", 1)[0].split(text[3])
        component = text[4]

        def at(number: int) -> str:  # MSH-n is fields[n - 1]: MSH-1 is the separator
            return fields[number - 1].strip() if len(fields) >= number else ""

        return cls(
            sending_application=at(3),
            sending_facility=at(4),
            receiving_application=at(5),
            receiving_facility=at(6),
            trigger=[*at(9).split(component), "", ""][1],
            control_id=at(10),
            processing_id=at(11) or "P",
            version=at(12) or "2.5",
            accept_ack_type=at(15).upper(),
        )

    @property
    def source_system(self) -> str | None:
        """MSH-3 and MSH-4, for the ``source-system`` header."""
        found = "^".join(p for p in (self.sending_application, self.sending_facility) if p)
        return found or None


def replies(header: MessageHeader, accepted: bool) -> bool:
    """Whether the sender asked for this acknowledgement: always in original mode (no
    MSH-15); in enhanced mode as MSH-15 says (AL always, NE never, ER on errors only,
    SU on success only)."""
    mode = header.accept_ack_type
    return mode in ("", "AL") or (mode == "ER" and not accepted) or (mode == "SU" and accepted)


def acknowledgement(
    header: MessageHeader, code: str, error: InvalidMessage | KafkaUnavailable | None = None
) -> bytes:
    """The ACK message for ``header``: MSA-1 ``code`` (``AA``, ``AE`` or ``AR``; the
    commit codes ``CA``, ``CE``, ``CR`` in enhanced mode), MSA-2 the original MSH-10,
    and for an error an ERR segment with the HL7 condition and our stable code."""
    if header.accept_ack_type:
        code = "C" + code[1]
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    control = f"ACK{time.time_ns() % 10**17}"
    segments = [
        "|".join(
            (
                "MSH",
                "^~\\&",
                hl7v2.escape(header.receiving_application or "MEDSTREAM"),
                hl7v2.escape(header.receiving_facility),
                hl7v2.escape(header.sending_application),
                hl7v2.escape(header.sending_facility),
                now,
                "",
                f"ACK^{hl7v2.escape(header.trigger)}^ACK" if header.trigger else "ACK",
                control,
                hl7v2.escape(header.processing_id),
                hl7v2.escape(header.version),
            )
        ),
        f"MSA|{code}|{hl7v2.escape(header.control_id)}",
    ]
    if error is not None:
        stable = error.code
        reason = error.reason if isinstance(error, InvalidMessage) else str(error)
        condition, text = HL7_ERROR.get(stable, SEGMENT_ERROR)
        severity = "E"
        segments.append(
            f"ERR|||{condition}^{text}^HL70357|{severity}|"
            f"{hl7v2.escape(stable)}^{hl7v2.escape(reason)}^MEDSTREAM"
        )
    return ("\r".join(segments) + "\r").encode()


class MllpListener:
    """The MLLP server: a bounded number of connections, each handled in order."""

    def __init__(self, edge: EdgePublisher, settings: Settings) -> None:
        self._edge = edge
        self._settings = settings
        self._slots = asyncio.Semaphore(settings.gateway_max_connections)
        # Connections waiting for a slot, at most as many again as the slots: past
        # that a new connection is closed at once (and audited).
        self._waiting = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on MEDSTREAM_MLLP_PORT (SO_REUSEPORT: replicas share the port)."""
        self._server = await asyncio.start_server(
            self._connection,
            self._settings.gateway_host,
            self._settings.mllp_port,
            reuse_port=True,
            limit=self._settings.mllp_max_bytes + len(END_BLOCK),
            ssl=tls_context(self._settings),
        )

    async def stop(self) -> None:
        """Stop listening and close the connections."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 10)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        idle = self._settings.gateway_idle_timeout_s
        if self._slots.locked():
            if self._waiting >= self._settings.gateway_max_connections:
                await self._turn_away(writer, peer)
                return
            # Over the limit, a connection waits for a slot and is not read meanwhile
            # (its transport is paused): the sender sees TCP backpressure, then a
            # close if no slot frees in time.
            writer.transport.pause_reading()  # type: ignore[attr-defined]
        self._waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), idle)
        except TimeoutError:
            await self._turn_away(writer, peer)
            return
        finally:
            self._waiting -= 1
        writer.transport.resume_reading()  # type: ignore[attr-defined]
        CONNECTIONS.labels(PROTOCOL).inc()
        CONNECTIONS_TOTAL.labels(PROTOCOL).inc()
        try:
            await self._serve(reader, writer, peer, idle)
        except (ConnectionError, OSError):
            pass  # the peer went away; an unacknowledged message is the sender's to resend
        finally:
            CONNECTIONS.labels(PROTOCOL).dec()
            self._slots.release()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _turn_away(self, writer: asyncio.StreamWriter, peer: str) -> None:
        writer.close()
        with contextlib.suppress(KafkaUnavailable):
            await self._edge.audit_refusal(PROTOCOL, peer, BUSY)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str, idle: float
    ) -> None:
        oversized = False
        while True:
            try:
                block = await asyncio.wait_for(reader.readuntil(END_BLOCK), idle)
            except asyncio.LimitOverrunError as overrun:
                # Drop what is buffered and go on dropping up to the end block.
                await reader.readexactly(overrun.consumed)
                oversized = True
                continue
            except (asyncio.IncompleteReadError, TimeoutError):
                return  # closed by the peer mid-frame or idle: nothing to acknowledge
            started = time.monotonic()
            if oversized:
                oversized = False
                reply: bytes | None = await self._too_large(peer)
            else:
                reply = await self.handle(block[: -len(END_BLOCK)], peer)
            if reply is not None:
                writer.write(frame(reply))
                await writer.drain()
            ACK_LATENCY.labels(PROTOCOL).observe(time.monotonic() - started)
            if reply is not None and (b"MSA|AE|" in reply or b"MSA|CE|" in reply):
                # Frames the sender pipelined behind the one it must resend would
                # otherwise overtake it: close, so it resends them all, in order.
                return

    async def handle(self, block: bytes, peer: str) -> bytes | None:
        """The reply to one block (the bytes before an end block), or None when the
        sender asked for no acknowledgement of this outcome."""
        try:
            raw = unframe(block)
        except InvalidMessage as error:
            return await self._refuse(block, MessageHeader.of(block), error, peer)
        header = MessageHeader.of(raw)
        try:
            outcome = await self._edge.submit(
                SourceFormat.HL7V2,
                raw,
                protocol=PROTOCOL,
                peer=peer,
                source_system=header.source_system,
            )
        except KafkaUnavailable as unavailable:
            return acknowledgement(header, "AE", unavailable)
        if isinstance(outcome, InvalidMessage):
            return acknowledgement(header, "AR", outcome) if replies(header, False) else None
        return acknowledgement(header, "AA") if replies(header, True) else None

    async def _refuse(
        self, raw: bytes, header: MessageHeader, error: InvalidMessage, peer: str
    ) -> bytes | None:
        try:
            await self._edge.refuse(SourceFormat.HL7V2, raw, error, protocol=PROTOCOL, peer=peer)
        except KafkaUnavailable as unavailable:
            # The refusal itself could not be recorded: let the sender retry.
            return acknowledgement(header, "AE", unavailable)
        return acknowledgement(header, "AR", error) if replies(header, False) else None

    async def _too_large(self, peer: str) -> bytes:
        error = InvalidMessage(
            TOO_LARGE,
            f"The MLLP frame is over the {self._settings.mllp_max_bytes}-byte limit "
            "(MEDSTREAM_MLLP_MAX_BYTES); split the message.",
        )
        try:
            await self._edge.audit_refusal(PROTOCOL, peer, TOO_LARGE, "message.rejected")
        except KafkaUnavailable as unavailable:
            return acknowledgement(MessageHeader(), "AE", unavailable)
        return acknowledgement(MessageHeader(), "AR", error)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server TLS context of MLLP over TLS (and HTTPS), when a certificate is set."""
    if settings.gateway_tls_cert_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.gateway_tls_cert_file, settings.gateway_tls_key_file)
    return context


def _peer(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    return str(address[0]) if isinstance(address, tuple) and address else "unknown"
