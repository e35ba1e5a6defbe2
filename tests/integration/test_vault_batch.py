"""Per batch, on the real PostgreSQL and Redis: deid reads every offset with one Redis
round trip and one statement and writes every identity with one and two, as the deid
principal (whose Redis ACL must allow what the batch path sends); results re-links a
batch in two statements and stores its resources in one. Duplicates inside a batch
and concurrent batches are serialised by the primary keys."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream.deid.engine import PatientIdentity
from medstream.deid.vault import (
    OffsetRead,
    PseudonymVault,
    RelinkRequest,
    RelinkSeal,
    VaultCipher,
    VaultWrite,
)
from medstream.platform.identities import redis_user
from medstream.platform.secrets import development_secret
from medstream.settings import LOCAL_REDIS_PORT, Settings
from medstream.writeback.resources import OutboundResource, PatientLink
from medstream.writeback.store import StoreItem, store_many


class CountingRedis:
    """The deid client, counting the calls that each cost one round trip."""

    def __init__(self, inner: Redis) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name in ("get", "mget", "set", "delete", "pipeline"):
            self.calls[name] += 1
        return attribute


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[CountingRedis]:
    client = Redis.from_url(
        f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0",
        username=redis_user("deid"),
        password=development_secret(settings.state_dir, "redis-deid"),
        socket_timeout=5,
    )
    yield CountingRedis(client)
    await client.aclose()


@pytest.fixture
def statements(engine: AsyncEngine) -> Iterator[Counter[str]]:
    """The statements sent on the test's engine, by their first word."""
    counts: Counter[str] = Counter()

    def before(conn: object, cursor: object, statement: str, *args: object) -> None:
        counts[statement.split(maxsplit=1)[0].upper()] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    yield counts
    event.remove(engine.sync_engine, "before_cursor_execute", before)


def identity(mrn: str, extra: str | None = None) -> PatientIdentity:
    identifiers = [{"system": "mrn", "value": mrn}]
    if extra:
        identifiers.append({"system": "ssn", "value": extra})
    return PatientIdentity(mrn, identifiers)


def vault_of(settings: Settings, redis: CountingRedis | None) -> PseudonymVault:
    # The results seal can seal and open, so the test can re-link what it wrote.
    return PseudonymVault(
        VaultCipher.from_settings(settings),
        redis,  # type: ignore[arg-type]
        "test",
        RelinkSeal.for_service(settings, "results"),
    )


async def test_a_batch_reads_and_writes_the_vault_in_one_round_trip_each(
    settings: Settings, engine: AsyncEngine, redis: CountingRedis, statements: Counter[str]
) -> None:
    run = uuid.uuid4().hex[:8]
    vault = vault_of(settings, redis)
    pseudonyms = [f"psn-batch-{run}-{i}" for i in range(6)]
    # Each patient twice in the batch; the first patient's second record brings a new
    # identity fragment, the others repeat theirs.
    writes = [
        VaultWrite(p, identity(f"MRN-{run}-{i}"), 10 + i, "c", f"w-{run}-{i}-a")
        for i, p in enumerate(pseudonyms)
    ] + [
        VaultWrite(
            p,
            identity(f"MRN-{run}-{i}", "123-45-6789" if i == 0 else None),
            10 + i,
            "c",
            f"w-{run}-{i}-b",
        )
        for i, p in enumerate(pseudonyms)
    ]
    statements.clear()
    async with engine.begin() as conn:
        recorded = await vault.record_many(conn, writes)
    assert statements["INSERT"] == 2
    assert redis.calls["mget"] == 1
    assert recorded.created == {p: 10 + i for i, p in enumerate(pseudonyms)}
    first, second = recorded.events[:6], recorded.events[6:]
    assert [len(e) for e in first] == [1] * 6
    for written in first:
        assert written[0].value.count(b'"created":true') == 1
    assert len(second[0]) == 1
    assert b'"created":false' in second[0][0].value
    assert b'"identity_added":true' in second[0][0].value
    assert second[1:] == [[]] * 5

    # Offsets before the cache is refreshed: one MGET and one SELECT for the whole
    # batch, and an audited read for each record; an unknown patient gets its derived
    # offset.
    unknown = f"psn-batch-{run}-unknown"
    reads = [OffsetRead(p, 99, "c", f"r-{run}-{i}") for i, p in enumerate(pseudonyms)]
    reads.append(OffsetRead(unknown, 42, "c", f"r-{run}-u"))
    statements.clear()
    redis.calls.clear()
    async with engine.begin() as conn:
        answers = await vault.offsets(conn, reads)
    assert statements["SELECT"] == 1
    assert redis.calls["mget"] == 1
    assert [offset for offset, _ in answers] == [10, 11, 12, 13, 14, 15, 42]
    assert all(len(audit) == 1 for _, audit in answers)
    assert b'"found":false' in answers[-1][1][0].value

    # After the commit: one pipelined round trip marks the fragments seen and caches
    # the offsets the batch created. The stored offsets then come from Redis (no audit,
    # no read of the row); only the unknown patient still goes to PostgreSQL.
    redis.calls.clear()
    await vault.after_commit(writes, recorded.created)
    assert redis.calls["pipeline"] == 1
    statements.clear()
    async with engine.begin() as conn:
        again = await vault.offsets(conn, reads)
    assert [offset for offset, _ in again] == [10, 11, 12, 13, 14, 15, 42]
    assert [len(audit) for _, audit in again] == [0] * 6 + [1]
    assert statements["SELECT"] == 1

    # The same writes again: all seen in the cache, so nothing is written.
    statements.clear()
    async with engine.begin() as conn:
        assert (await vault.record_many(conn, writes)).events == [[]] * 12
    assert statements["INSERT"] == 0

    # Both fragments of the first patient are merged at re-link.
    async with engine.begin() as conn:
        entry, _ = await vault.relink(conn, pseudonyms[0], correlation_id="c", dedupe_key="x")
    assert entry is not None
    assert entry.offset_days == 10
    assert {i["system"] for i in entry.identity.identifiers} == {"mrn", "ssn"}


async def test_concurrent_batches_for_one_patient_create_it_once_and_keep_both_fragments(
    settings: Settings, engine: AsyncEngine
) -> None:
    run = uuid.uuid4().hex[:8]
    pseudonym = f"psn-race-{run}"
    vault = vault_of(settings, None)  # no cache: both batches must reach PostgreSQL
    started = asyncio.Event()

    async def batch(fragment: str, offset: int, hold: bool) -> list[list[Any]]:
        write = VaultWrite(pseudonym, identity(f"MRN-{run}", fragment), offset, "c", fragment)
        async with engine.begin() as conn:
            events = (await vault.record_many(conn, [write])).events
            if hold:
                started.set()
                await asyncio.sleep(0.5)  # the other batch waits on the primary key
            return events

    async def second() -> list[list[Any]]:
        await started.wait()
        return await batch("B", 20, hold=False)

    first_events, second_events = await asyncio.gather(batch("A", 10, hold=True), second())
    assert b'"created":true' in first_events[0][0].value
    assert b'"created":false' in second_events[0][0].value  # first writer wins
    assert b'"identity_added":true' in second_events[0][0].value
    async with engine.begin() as conn:
        entry, _ = await vault.relink(conn, pseudonym, correlation_id="c", dedupe_key="y")
    assert entry is not None
    assert entry.offset_days == 10
    assert {i["value"] for i in entry.identity.identifiers} == {f"MRN-{run}", "A", "B"}


async def test_results_relink_a_batch_in_two_statements_and_store_it_in_one(
    settings: Settings, engine: AsyncEngine, statements: Counter[str]
) -> None:
    run = uuid.uuid4().hex[:8]
    vault = vault_of(settings, None)
    known = [f"psn-relink-{run}-{i}" for i in range(4)]
    async with engine.begin() as conn:
        await vault.record_many(
            conn,
            [VaultWrite(p, identity(f"MRN-R-{run}-{i}"), i, "c", p) for i, p in enumerate(known)],
        )
    requests = [RelinkRequest(p, "c", f"relink-{p}") for p in [*known, f"psn-relink-{run}-none"]]
    statements.clear()
    async with engine.begin() as conn:
        answers = await vault.relink_many(conn, requests)
    assert statements["SELECT"] == 2
    assert [e.identity.ehr_patient_id if e else None for e, _ in answers] == [
        *(f"MRN-R-{run}-{i}" for i in range(4)),
        None,
    ]
    assert [e.offset_days if e else None for e, _ in answers] == [0, 1, 2, 3, None]
    assert all(b'"action":"vault.relink"' in event.value for _, event in answers)

    # Two results of one batch for the same inbound message and model: the first one's
    # resources are stored and published, the second is a duplicate, as one at a time.
    def item(event_id: str, n: int) -> StoreItem:
        patient = PatientLink(f"MRN-R-{run}-0", [], 0)
        resources = [
            OutboundResource(
                f"Observation:k{k}",
                {"resourceType": "Observation", "id": f"{event_id}-{k}", "status": "final"},
            )
            for k in range(n)
        ]
        return StoreItem(resources, f"in-{run}", "model-x", "1.0.0", patient, "c", event_id)

    first, second = item(f"ev1-{run}", 3), item(f"ev2-{run}", 2)
    statements.clear()
    async with engine.begin() as conn:
        published = await store_many(conn, [first, second])
    assert statements["INSERT"] == 1
    assert [len(p) for p in published] == [3, 0]
    assert {m.message_id for m in published[0]} == {
        f"fhir:Observation/ev1-{run}-{k}" for k in range(3)
    }
    async with engine.begin() as conn:
        again = await store_many(conn, [first, item(f"ev3-{run}", 4)])
    assert [len(p) for p in again] == [0, 1]  # only the kind not stored before is new
