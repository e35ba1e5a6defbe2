"""ingestion: consumes the inbound topics, validates, and emits identified records.

Invalid messages go to ``<topic>.dlt`` with a stable code. Valid messages that no model
uses are acknowledged and counted. Every outcome is audited.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream.audit import audit_message
from medstream.budget import offload
from medstream.clinical import IdentifiedRecord
from medstream.consumer import Handler
from medstream.envelope import Envelope, utc_now
from medstream.ingest import DERIVE_ID, FORMAT_OF_TOPIC, IDENTIFIED_TOPIC, ingest
from medstream.outbox import OutboundMessage
from medstream.received import INBOUND_MESSAGE_ID_HEADER, SOURCE_SYSTEM_HEADER, Received
from medstream.runtime import ServiceRuntime, run

NAME = "ingestion"
GROUP = "medstream-ingestion"
EVENT_TYPE = "medstream.identified.v1"
RECORDS = Counter("medstream_ingestion_records_total", "Identified records emitted", ["format"])
# The topics this stage consumes; each has its dead-letter topic in the registry.
CONSUMES = tuple(FORMAT_OF_TOPIC)
UNUSED = Counter("medstream_ingestion_unused_total", "Valid units no model uses", ["unit"])


def make_handler(dicom_max_bytes: int, budget_s: float) -> Handler:
    """The handler for every inbound topic (the topic decides the format). Parsing and
    validation run off the event loop, under the message's budget."""

    async def handle(conn: AsyncConnection, received: Received) -> Sequence[OutboundMessage]:
        source_format = FORMAT_OF_TOPIC[received.topic]
        result = await offload(
            NAME,
            budget_s,
            ingest,
            source_format,
            received.value,
            message_id=received.message_id,
            dicom_max_bytes=dicom_max_bytes,
            source_system=received.header(SOURCE_SYSTEM_HEADER),
        )
        # An inbound topic's producer is outside MedStream: the correlation id starts
        # here, with the message id, whatever headers it set.
        correlation = received.message_id
        messages = []
        for index, record in enumerate(result.records):
            envelope = Envelope[IdentifiedRecord](
                event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{received.message_id}#{index}")),
                event_type=EVENT_TYPE,
                schema_version=1,
                correlation_id=correlation,
                occurred_at=utc_now(),
                payload=record,
            )
            messages.append(
                OutboundMessage(
                    topic=IDENTIFIED_TOPIC[source_format],
                    value=envelope.model_dump_json().encode(),
                    key=record.ehr_patient_id.encode(),
                    message_id=envelope.event_id,
                    headers={INBOUND_MESSAGE_ID_HEADER: received.message_id},
                )
            )
        RECORDS.labels(source_format.value).inc(len(result.records))
        for unit in result.unused:
            UNUSED.labels(unit).inc()
        messages.append(
            audit_message(
                actor=NAME,
                action="message.received",
                entity=received.message_id,
                message_id=received.message_id,
                correlation_id=correlation,
                details={
                    "topic": received.topic,
                    "records": len(result.records),
                    "unused": result.unused,
                    **(
                        {"ignored_headers": received.ignored_headers}
                        if received.ignored_headers
                        else {}
                    ),
                },
                dedupe_key=f"{NAME}:{received.message_id}",
            )
        )
        return messages

    return handle


async def wire(runtime: ServiceRuntime) -> None:
    """One processor for the inbound topics, each with its format's id deriver. Their
    producers are outside MedStream, so internal headers on them are not trusted."""
    settings = runtime.settings
    processor = runtime.processor(
        group=GROUP,
        handler=make_handler(settings.dicom_max_bytes, settings.message_budget_s),
        stage=NAME,
    )
    runtime.consumers.subscribe(
        *CONSUMES,
        processor=processor,
        derive_id={topic: DERIVE_ID[fmt] for topic, fmt in FORMAT_OF_TOPIC.items()},
        trusted=False,
        # The handler writes nothing itself (its effects are the messages it returns),
        # so a record it refuses has nothing to roll back.
        savepoints=False,
    )


def main() -> None:
    """Run the ingestion service."""
    run(NAME, wire)
