"""What every gateway listener does with a message: check it, publish it, audit it.

The acknowledgement a sender gets is the promise that the message will not be lost,
so a listener replies *accepted* only after Kafka acknowledged both the message
(acks=all, idempotent) and its audit event. There is no outbox here: the gateway has
no database effect to make atomic with the publish, and the sender's own retry is the
recovery when Kafka is unavailable. A retry of a message whose first publish did land
after all is harmless: ingestion's inbox keeps one outcome per message id.

A message that fails the checks ingestion would make is refused at the door: the
sender is told why (a stable code), and the original bytes go to the topic's
dead-letter topic, acknowledged before the refusal is sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram

from medstream.audit import audit_message
from medstream.budget import offload
from medstream.clinical import SourceFormat
from medstream.errors import InvalidMessage
from medstream.events import AuditOutcome
from medstream.ingest import DERIVE_ID, ingest
from medstream.outbox import OutboundMessage, refusal_code
from medstream.received import MESSAGE_ID_HEADER, SOURCE_SYSTEM_HEADER, message_id_for
from medstream.replay import TOPIC_OF_FORMAT
from medstream.settings import Settings
from medstream.topics import MAX_MESSAGE_BYTES, dead_letter_topic

log = logging.getLogger(__name__)

ACTOR = "gateway"
CONNECTIONS = Gauge("medstream_gateway_open_connections", "Open connections", ["protocol"])
CONNECTIONS_TOTAL = Counter(
    "medstream_gateway_connections_total", "Connections accepted", ["protocol"]
)
MESSAGES = Counter(
    "medstream_gateway_messages_total", "Messages by outcome", ["protocol", "outcome"]
)
BYTES = Counter("medstream_gateway_bytes_total", "Message bytes received", ["protocol"])
REFUSALS = Counter(
    "medstream_gateway_refusals_total", "Messages and connections refused", ["protocol", "code"]
)
ACK_LATENCY = Histogram(
    "medstream_gateway_ack_seconds",
    "From a message's last byte to its acknowledgement being sent",
    ["protocol"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

KAFKA_UNAVAILABLE = "gateway.kafka_unavailable"
# topic, value, key, headers
Record = tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]
TOO_LARGE = "gateway.too_large"
# The inbound topics take records of up to MAX_MESSAGE_BYTES, headers and batch framing
# included: a message must leave room for them.
MAX_RECORD_BYTES = MAX_MESSAGE_BYTES - 256 * 1024


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge in time: the sender must retry (never told success)."""

    code = KAFKA_UNAVAILABLE
    reason = (
        "Kafka did not acknowledge the message in time; nothing was accepted. "
        "Retry: a message that did land is not processed twice."
    )

    def __init__(self) -> None:
        super().__init__(self.reason)


class Busy(KafkaUnavailable):
    """The gateway could not check the message in its budget: retry later, as when
    Kafka is unavailable (MLLP AE, DICOM 0xA700, HTTP 503)."""

    code = "gateway.busy"
    reason = "The gateway is busy and could not check the message in time; retry later."


@dataclass(frozen=True)
class Checked:
    """A message that passed ingestion's checks: its id and its Kafka key."""

    message_id: str
    key: bytes | None


class EdgePublisher:
    """Checks, publishes and audits what the listeners receive (one per process)."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings) -> None:
        self._producer = producer
        self._settings = settings

    async def check(self, source_format: SourceFormat, raw: bytes) -> Checked:
        """Run ingestion's checks on ``raw``, off the event loop and under the message
        budget; raise InvalidMessage (with its stable code) if ingestion would refuse,
        or Busy when the checks could not finish in their budget (retryable: that says
        more about the gateway's load than about the message)."""
        if len(raw) > MAX_RECORD_BYTES:
            raise InvalidMessage(
                TOO_LARGE,
                f"The message is {len(raw)} bytes, over the {MAX_RECORD_BYTES}-byte "
                "record limit of the inbound topics.",
            )

        def checked() -> Checked:
            message_id = message_id_for(raw, (), DERIVE_ID[source_format])
            result = ingest(
                source_format,
                raw,
                message_id=message_id,
                dicom_max_bytes=self._settings.dicom_max_bytes,
            )
            key = result.records[0].ehr_patient_id.encode() if result.records else None
            return Checked(message_id, key)

        try:
            return await offload(ACTOR, self._settings.message_budget_s, checked)
        except InvalidMessage as error:
            if error.code.endswith(".too_costly"):
                raise Busy from None
            raise

    async def submit(
        self,
        source_format: SourceFormat,
        raw: bytes,
        *,
        protocol: str,
        peer: str,
        source_system: str | None = None,
    ) -> str | InvalidMessage:
        """What every listener does with a message: check it, then accept it (its id is
        returned) or refuse it (its dead letter acknowledged, the refusal returned).
        Raises KafkaUnavailable (or Busy) when the sender must retry."""
        try:
            checked = await self.check(source_format, raw)
            await self.accept(
                source_format,
                raw,
                checked,
                protocol=protocol,
                peer=peer,
                source_system=source_system,
            )
        except InvalidMessage as error:
            await self.refuse(source_format, raw, error, protocol=protocol, peer=peer)
            return error
        return checked.message_id

    async def accept(
        self,
        source_format: SourceFormat,
        raw: bytes,
        checked: Checked,
        *,
        protocol: str,
        peer: str,
        source_system: str | None = None,
    ) -> None:
        """Publish ``raw`` to its inbound topic and audit it; return once Kafka has
        acknowledged both, or raise KafkaUnavailable."""
        topic = TOPIC_OF_FORMAT[source_format]
        headers = [(MESSAGE_ID_HEADER, checked.message_id.encode())]
        # Only a header ingestion will read as it is: a sending application's name in
        # odd bytes must not make an accepted message fail its header checks later.
        if source_system and source_system.isascii() and source_system.isprintable():
            headers.append((SOURCE_SYSTEM_HEADER, source_system[:128].encode()))
        audit = self._audit(
            "gateway.accepted",
            checked.message_id,
            {"protocol": protocol, "topic": topic, "bytes": len(raw), "peer": peer},
        )
        await self._send(
            (topic, raw, checked.key, headers),
            (audit.topic, audit.value, audit.key, _headers(audit)),
        )
        MESSAGES.labels(protocol, "accepted").inc()
        BYTES.labels(protocol).inc(len(raw))

    async def refuse(
        self,
        source_format: SourceFormat,
        raw: bytes,
        error: InvalidMessage,
        *,
        protocol: str,
        peer: str,
    ) -> str:
        """Dead-letter ``raw`` with ``error`` and audit the refusal; return the message
        id. Raises KafkaUnavailable (the sender must then retry, not give up)."""
        topic = TOPIC_OF_FORMAT[source_format]
        # Off the event loop: the id parses JSON or DICOM headers.
        message_id = await asyncio.to_thread(message_id_for, raw, (), DERIVE_ID[source_format])
        # The action every stage's rejections share, so the ledger and lineage see it.
        audit = self._audit(
            "message.rejected",
            message_id,
            {"protocol": protocol, "topic": topic, "code": error.code, "peer": peer},
            failed=True,
        )
        letters = []
        if len(raw) <= MAX_RECORD_BYTES:  # a larger one no topic can hold
            letters.append(
                (
                    dead_letter_topic(topic),
                    raw,
                    None,
                    edge_dead_letter_headers(topic, error, message_id, protocol),
                )
            )
        await self._send(*letters, (audit.topic, audit.value, audit.key, _headers(audit)))
        MESSAGES.labels(protocol, "refused").inc()
        REFUSALS.labels(protocol, error.code).inc()
        log.warning(
            "message refused at the gateway",
            extra={"protocol": protocol, "message_id": message_id, "error_code": error.code},
        )
        return message_id

    async def audit_refusal(
        self, protocol: str, peer: str, code: str, action: str = "gateway.connection_refused"
    ) -> None:
        """Audit a refusal with no message to dead-letter: an association or connection
        turned away, or (``message.rejected``) a frame larger than any topic holds."""
        audit = self._audit(action, None, {"protocol": protocol, "peer": peer, "code": code}, True)
        REFUSALS.labels(protocol, code).inc()
        await self._send((audit.topic, audit.value, audit.key, _headers(audit)))

    async def audit_access(
        self, action: str, client: str, details: dict[str, object], failed: bool = False
    ) -> None:
        """Audit a read of stored results, or a refused one, by ``client`` (no PHI in
        ``details``: resource ids and counts, never the patient searched for). Raises
        KafkaUnavailable: a read that cannot be audited is not served."""
        audit = self._audit(action, None, {"client": client, **details}, failed)
        await self._send((audit.topic, audit.value, audit.key, _headers(audit)))

    def _audit(
        self,
        action: str,
        message_id: str | None,
        details: dict[str, object],
        failed: bool = False,
    ) -> OutboundMessage:
        stamp = f"{time.time_ns()}" if message_id is None else message_id
        return audit_message(
            actor=ACTOR,
            action=action,
            entity=message_id,
            message_id=message_id,
            correlation_id=message_id or f"gateway:{stamp}",
            outcome=AuditOutcome.MINOR_FAILURE if failed else AuditOutcome.SUCCESS,
            details=details,
            dedupe_key=f"{ACTOR}:{action}:{stamp}",
        )

    async def _send(self, *records: Record) -> None:
        async def publish_all() -> None:
            futures = [
                await self._producer.send(topic, value=value, key=key, headers=headers)
                for topic, value, key, headers in records
            ]
            await asyncio.gather(*futures)

        try:
            # send() itself waits for metadata when no broker answers: bounded too.
            await asyncio.wait_for(publish_all(), timeout=self._settings.gateway_ack_timeout_s)
        except (KafkaError, TimeoutError, OSError) as exc:
            code = refusal_code(exc)
            if code is not None:  # refused for good (too large...): a retry cannot help
                raise InvalidMessage(
                    code, "Kafka refused the record for good; it cannot be accepted."
                ) from None
            log.warning(
                "Kafka did not acknowledge; the sender is told to retry",
                extra={"error_class": type(exc).__name__},
            )
            raise KafkaUnavailable from None


def _headers(message: OutboundMessage) -> list[tuple[str, bytes]]:
    headers = {**message.headers, MESSAGE_ID_HEADER: message.message_id}
    return [(k, v.encode()) for k, v in headers.items()]


def edge_dead_letter_headers(
    topic: str, error: InvalidMessage, message_id: str, protocol: str
) -> list[tuple[str, bytes]]:
    """The CONTRACT's dead-letter headers for a message refused before it reached its
    topic: no partition or offset yet (``-1``, Kafka's "none"), stage ``gateway``."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    values = {
        MESSAGE_ID_HEADER: message_id,
        "error.stage": ACTOR,
        "error.code": error.code,
        "error.message": error.reason,
        "error.class": type(error).__name__,
        "original.topic": topic,
        "original.partition": "-1",
        "original.offset": "-1",
        "original.timestamp": str(now_ms),
        "gateway.protocol": protocol,
    }
    return [(k, v.encode()) for k, v in values.items()]
