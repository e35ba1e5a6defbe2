"""The leakage test: planted PHI goes through the real ingestion and deid services, then
every downstream topic, every service log and every table but the vault is scanned.
Not one planted value may be found."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream.kafka import make_consumer, make_producer
from medstream.settings import Settings
from medstream.topics import ALL_TOPICS

from .phi_fixtures import build
from .test_crash_between_commits import wait_for

DOWNSTREAM = [
    t.name
    for t in ALL_TOPICS
    if t.name.startswith(("medstream.deid.", "medstream.results.")) or t.name == "medstream.audit"
]


def _reader(settings: Settings, *topics: str) -> AIOKafkaConsumer:
    """A group-less consumer from the earliest offsets, for records up to 40 MiB."""
    return make_consumer(
        settings, *topics, group_id=None, max_partition_fetch_bytes=40 * 1024 * 1024
    )


def results_for(records: list, ids: list[str]) -> dict[str, dict]:  # type: ignore[type-arg]
    """The payloads of result events derived from inbound message ``ids``, by id."""
    found = {}
    for record in records:
        payload = json.loads(record.value)["payload"]
        if payload["inbound_message_ids"][0] in ids:
            found[payload["inbound_message_ids"][0]] = payload
    return found


async def read_topics(settings: Settings, topics: list[str], until, timeout_s: float = 90) -> list:  # type: ignore[no-untyped-def]
    consumer = _reader(settings, *topics)
    await consumer.start()
    records: list = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
            if until(records):
                break
    finally:
        await consumer.stop()
    return records


async def read_since(settings: Settings, topics: list[str], since_ms: int) -> list:  # type: ignore[type-arg]
    """Every record appended to ``topics`` since ``since_ms``, up to the end offsets at
    the time of the call: a complete read, however much older data the topics hold."""
    consumer = _reader(settings)
    await consumer.start()
    records: list = []
    try:
        consumer.subscribe(topics)
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        partitions = list(consumer.assignment())
        starts = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            found = starts.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pending = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
            if not pending:
                break
            for batch in (await consumer.getmany(*pending, timeout_ms=500)).values():
                records.extend(
                    r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)]
                )
        else:
            raise AssertionError("reading the downstream topics did not finish in 120 s")
    finally:
        await consumer.stop()
    return records


def texts_of(record) -> list[str]:  # type: ignore[no-untyped-def]
    """Everything a record carries, as text: value, headers, and embedded DICOM bytes."""
    value = record.value.decode("utf-8", errors="replace") if record.value else ""
    found = [value, (record.key or b"").decode("utf-8", errors="replace")]
    found += [v.decode("utf-8", errors="replace") for _, v in record.headers]
    try:
        payload = json.loads(value).get("payload", {})
    except (json.JSONDecodeError, AttributeError):
        payload = {}
    if isinstance(payload, dict) and payload.get("dicom_base64"):
        found.append(base64.b64decode(payload["dicom_base64"]).decode("latin-1"))
    return found


def leaks(haystacks: list[str], planted: dict[str, str]) -> list[str]:
    found = []
    for name, value in planted.items():
        needle = value.lower()
        if any(needle in h.lower() for h in haystacks):
            found.append(name)
    return found


async def test_no_planted_phi_downstream_of_deid(
    settings: Settings,
    engine: AsyncEngine,
    admin_engine: AsyncEngine,
    pipeline: Path,
) -> None:
    run = uuid.uuid4().hex[:8]
    planted = build(run)
    started_ms = int(time.time() * 1000) - 1000
    ids = {message_id for _, _, message_id in planted.messages}

    producer = make_producer(settings)
    await producer.start()
    try:
        for topic, value, message_id in planted.messages:
            await producer.send_and_wait(
                topic, value=value, headers=[("message-id", message_id.encode())]
            )
    finally:
        await producer.stop()

    def ours(records: list) -> list:  # type: ignore[type-arg]
        """Our de-identified events (results carry the inbound id too, and come later)."""
        return [
            r
            for r in records
            if r.topic.startswith("medstream.deid.")
            and dict(r.headers).get("inbound-message-id", b"").decode() in ids
        ]

    records = await read_topics(
        settings, DOWNSTREAM, until=lambda rs: len(ours(rs)) >= planted.expected_events
    )
    assert len(ours(records)) == planted.expected_events, "not every record was de-identified"

    async def relayed() -> bool:
        async with engine.connect() as conn:
            return (
                await conn.scalar(
                    text(
                        "SELECT count(*) FROM outbox"
                        " WHERE sent_at IS NULL AND quarantined_at IS NULL"
                    )
                )
                == 0
            )

    await wait_for(relayed, 60, "the outbox to drain")
    records = await read_since(settings, DOWNSTREAM, started_ms)

    # Topics: every record produced on every downstream topic since this run began,
    # not only ours (older records belong to earlier runs).
    topic_text = [t for r in records for t in texts_of(r)]
    assert not leaks(topic_text, planted.values), "PHI on a downstream topic"

    # The de-identified events really are there and carry the clinical content.
    kinds = {r.topic for r in ours(records)}
    assert {
        "medstream.deid.patient",
        "medstream.deid.vitals",
        "medstream.deid.document",
        "medstream.deid.imaging",
    } <= kinds
    document = next(r for r in ours(records) if r.topic == "medstream.deid.document")
    assert "pleural effusion" in document.value.decode()

    # Logs: the test's own service processes and the stack's.
    log_files = list(pipeline.glob("*.log")) + list((settings.state_dir / "services").glob("*.log"))
    assert log_files
    log_text = [p.read_text(errors="replace") for p in log_files]
    assert not leaks(log_text, planted.values), "PHI in a service log"

    # Tables: every text or bytea column of every table but those the CONTRACT puts at
    # the EHR boundary (the vault's two tables, and the outbound resources about the
    # real patient),
    # and but outbox rows on their way to a restricted topic.
    restricted = [t.name for t in ALL_TOPICS if t.restricted]
    async with admin_engine.connect() as conn:
        columns = (
            await conn.execute(
                text(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = 'public'"
                    " AND table_name NOT IN ('pseudonym_vault', 'vault_identity', 'fhir_resource')"
                    " AND data_type IN ('text', 'character varying', 'bytea', 'jsonb')"
                )
            )
        ).all()
        leaked = {}
        for table, column, data_type in columns:
            # Bytes are read as bytes and searched as Latin-1 here: PostgreSQL cannot
            # convert a NUL byte to text, and a payload may hold any byte.
            cast = column if data_type == "bytea" else f"{column}::text"
            where = " WHERE topic <> ALL(:restricted)" if table == "outbox" else ""
            rows = await conn.execute(
                text(f'SELECT {cast} FROM "{table}"{where}'),  # noqa: S608
                {"restricted": restricted} if where else {},
            )
            values = [
                bytes(row[0]).decode("latin-1") if data_type == "bytea" else row[0]
                for row in rows
                if row[0]
            ]
            found = leaks(values, planted.values)
            if found:
                leaked[f"{table}.{column}"] = found
    assert not leaked, f"PHI in a table outside the vault: {leaked}"

    # The vault does hold the link back, sealed.
    async with admin_engine.connect() as conn:
        vault = (await conn.execute(text("SELECT sealed FROM vault_identity"))).all()
    assert vault
    assert not leaks([bytes(r.sealed).decode("latin-1") for r in vault], planted.values)
