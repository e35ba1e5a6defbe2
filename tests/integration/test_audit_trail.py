"""The audit trail on real PostgreSQL: the services' role can only append, a trigger
stops even the owner from changing or deleting a row, the chain trigger refuses a row
that is not the next link, and `audit verify` catches each kind of tampering done by
a superuser (who can switch the triggers off).

Each test writes its own chain, numbered far above the audit topic's partitions, and
removes it afterwards, so the shared trail stays intact for the other tests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from medstream.audit.anchor import AnchorFile
from medstream.audit.chain import Tampering, content_of, link_hash
from medstream.audit.trail import append, export_anchors, moved_below, verify
from medstream.envelope import Envelope
from medstream.events import AuditRecord
from medstream.settings import LOCAL_POSTGRES_PORT, Settings
from medstream.stack import POSTGRES_DEV_PASSWORD

SUPERUSER_URL = (
    f"postgresql+asyncpg://postgres:{POSTGRES_DEV_PASSWORD}@127.0.0.1:{LOCAL_POSTGRES_PORT}"
    "/medstream"
)
ROWS = 6
INSERT_ROW = (
    "INSERT INTO audit_event (chain, seq, event_id, recorded_at, occurred_at, actor, action,"
    " outcome, entity, patient_pseudonym, message_id, correlation_id, causation_id, resource,"
    " prev_hash, hash) VALUES (:chain, :seq, :event_id, :recorded_at, :occurred_at, :actor,"
    " :action, :outcome, :entity, :patient_pseudonym, :message_id, :correlation_id,"
    " :causation_id, CAST(:resource AS jsonb), :prev_hash, :hash)"
)


def event(i: int) -> Envelope[AuditRecord]:
    return Envelope[AuditRecord](
        event_type="medstream.audit.v1",
        schema_version=1,
        correlation_id=f"corr-{i}",
        occurred_at=datetime.now(UTC),
        patient_pseudonym="psn-testtesttesttesttest",
        payload=AuditRecord(actor="test", action="vault.read", entity="psn-testtesttesttesttest"),
    )


@pytest.fixture
async def superuser(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(SUPERUSER_URL)
    yield engine
    await engine.dispose()


@pytest.fixture
async def chain(engine: AsyncEngine, superuser: AsyncEngine) -> AsyncIterator[int]:
    """A chain of ROWS rows appended by the services' role; removed afterwards."""
    number = 100_000 + uuid.uuid4().int % 1_000_000
    async with engine.begin() as conn:
        await append(conn, number, [event(i) for i in range(ROWS)])
    yield number
    async with superuser.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text("DELETE FROM audit_event WHERE chain = :c"), {"c": number})
        await conn.execute(text("DELETE FROM audit_chain_head WHERE chain = :c"), {"c": number})


async def findings(engine: AsyncEngine, number: int) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        (report,) = await verify(conn, chains=[number])
    assert report.rows >= ROWS - 1
    return [(f.kind.value, f.seq) for f in report.findings]


async def tamper(superuser: AsyncEngine, *statements: str, **params: object) -> None:
    """Run statements as the superuser with triggers off, as an attacker with root could."""
    async with superuser.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            await conn.execute(text(statement), params)


def cli_verify(number: int) -> int:
    medstream = Path(sys.executable).parent / "medstream"
    done = subprocess.run(
        [str(medstream), "audit", "verify", "--chain", str(number), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(done.stdout)
    assert report["ok"] == (done.returncode == 0)
    return done.returncode


async def test_the_services_role_can_only_append(engine: AsyncEngine, chain: int) -> None:
    for statement in (
        "UPDATE audit_event SET action = 'x' WHERE chain = :c",
        "DELETE FROM audit_event WHERE chain = :c",
        "TRUNCATE audit_event",
        "UPDATE audit_chain_head SET seq = 0 WHERE chain = :c",
    ):
        with pytest.raises(DBAPIError, match="permission denied"):
            async with engine.begin() as conn:
                await conn.execute(text(statement), {"c": chain})


async def test_the_trigger_stops_even_the_owner(admin_engine: AsyncEngine, chain: int) -> None:
    for statement in (
        "UPDATE audit_event SET action = 'x' WHERE chain = :c",
        "DELETE FROM audit_event WHERE chain = :c",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with admin_engine.begin() as conn:
                await conn.execute(text(statement), {"c": chain})


async def test_a_row_that_is_not_the_next_link_is_refused(engine: AsyncEngine, chain: int) -> None:
    async with engine.connect() as conn:
        last = (
            (
                await conn.execute(
                    text("SELECT * FROM audit_event WHERE chain = :c ORDER BY seq DESC LIMIT 1"),
                    {"c": chain},
                )
            )
            .mappings()
            .one()
        )
    forged = {**last, "event_id": str(uuid.uuid4()), "seq": last["seq"] + 1, "prev_hash": "0" * 64}
    forged["resource"] = json.dumps(forged["resource"])
    with pytest.raises(DBAPIError, match="not the next link"):
        async with engine.begin() as conn:
            await conn.execute(
                text(INSERT_ROW),
                forged,
            )


async def test_concurrent_writers_keep_one_chain(engine: AsyncEngine, chain: int) -> None:
    async def write(offset: int) -> None:
        async with engine.begin() as conn:
            await append(conn, chain, [event(offset + i) for i in range(5)])

    await asyncio.gather(*(write(100 * k) for k in range(4)))
    assert await findings(engine, chain) == []


async def test_an_untouched_chain_passes_in_the_cli(chain: int) -> None:
    assert await asyncio.to_thread(cli_verify, chain) == 0


async def test_a_changed_row_is_caught(
    engine: AsyncEngine, superuser: AsyncEngine, chain: int
) -> None:
    await tamper(
        superuser,
        "UPDATE audit_event SET action = 'vault.write' WHERE chain = :c AND seq = 3",
        c=chain,
    )
    assert await findings(engine, chain) == [(Tampering.CHANGED.value, 3)]
    assert await asyncio.to_thread(cli_verify, chain) == 1


async def test_a_deleted_row_is_caught(
    engine: AsyncEngine, superuser: AsyncEngine, chain: int
) -> None:
    await tamper(superuser, "DELETE FROM audit_event WHERE chain = :c AND seq = 3", c=chain)
    assert await findings(engine, chain) == [(Tampering.DELETED.value, 4)]


async def test_a_deleted_last_row_is_caught(
    engine: AsyncEngine, superuser: AsyncEngine, chain: int
) -> None:
    await tamper(
        superuser, "DELETE FROM audit_event WHERE chain = :c AND seq = :s", c=chain, s=ROWS
    )
    assert await findings(engine, chain) == [(Tampering.DELETED.value, ROWS)]


async def test_an_inserted_row_is_caught_even_with_a_valid_hash(
    engine: AsyncEngine, superuser: AsyncEngine, chain: int
) -> None:
    async with engine.connect() as conn:
        before = (
            (
                await conn.execute(
                    text("SELECT * FROM audit_event WHERE chain = :c AND seq = 3"), {"c": chain}
                )
            )
            .mappings()
            .one()
        )
    forged = {**before, "event_id": str(uuid.uuid4()), "action": "result.stored"}
    forged["prev_hash"] = before["hash"]
    forged["hash"] = link_hash(before["hash"], content_of(forged))
    forged["resource"] = json.dumps(forged["resource"])
    await tamper(
        superuser,
        "UPDATE audit_event SET seq = seq + 1000000 WHERE chain = :chain AND seq > 3",
        "UPDATE audit_event SET seq = seq - 999999 WHERE chain = :chain AND seq > 1000000",
        INSERT_ROW,
        **{**forged, "seq": 4},
    )
    assert await findings(engine, chain) == [(Tampering.INSERTED.value, 4)]


async def test_reordered_rows_are_caught(
    engine: AsyncEngine, superuser: AsyncEngine, chain: int
) -> None:
    await tamper(
        superuser,
        "UPDATE audit_event SET seq = -1 WHERE chain = :c AND seq = 2",
        "UPDATE audit_event SET seq = 2 WHERE chain = :c AND seq = 3",
        "UPDATE audit_event SET seq = 3 WHERE chain = :c AND seq = -1",
        c=chain,
    )
    assert await findings(engine, chain) == [
        (Tampering.REORDERED.value, 2),
        (Tampering.REORDERED.value, 3),
    ]


async def test_a_rewritten_tail_passes_the_chain_but_not_its_signed_anchor(
    engine: AsyncEngine, superuser: AsyncEngine, chain: int, tmp_path: Path
) -> None:
    """A superuser rewrites the last row of a chain with a recomputed hash and moves the
    head to match: the chain alone cannot tell. The anchor signed before can, and
    the CLI says so."""
    key = b"anchor-key-for-this-test-only-0123456789"
    async with engine.begin() as conn:
        records = await export_anchors(conn, key)
    anchors = AnchorFile(tmp_path / "anchors.jsonl")
    assert anchors.append(r for r in records if r["chain"] == chain) == 1
    anchored, problems = anchors.latest(key)
    assert problems == []
    assert anchored[chain].seq == ROWS

    async with engine.connect() as conn:
        last = (
            (
                await conn.execute(
                    text("SELECT * FROM audit_event WHERE chain = :c AND seq = :s"),
                    {"c": chain, "s": ROWS},
                )
            )
            .mappings()
            .one()
        )
    forged = {**last, "actor": "someone-else"}
    forged["hash"] = link_hash(last["prev_hash"], content_of(forged))
    await tamper(
        superuser,
        "UPDATE audit_event SET actor = :actor, hash = :hash WHERE chain = :c AND seq = :s",
        "UPDATE audit_chain_head SET hash = :hash WHERE chain = :c",
        actor="someone-else",
        hash=forged["hash"],
        c=chain,
        s=ROWS,
    )
    assert await findings(engine, chain) == []  # the chain alone is fooled
    async with engine.connect() as conn:  # and the audit service will not re-sign it
        assert await moved_below(conn, {chain: (ROWS, anchored[chain].hash)}) == {chain}
    async with engine.connect() as conn:
        (report,) = await verify(conn, chains=[chain], anchors=anchored)
    assert [(f.kind.value, f.seq) for f in report.findings] == [(Tampering.CHANGED.value, ROWS)]

    medstream = Path(sys.executable).parent / "medstream"
    env = {**os.environ, "MEDSTREAM_AUDIT_ANCHOR_KEY": key.decode()}
    done = subprocess.run(
        [
            *(str(medstream), "audit", "verify", "--chain", str(chain), "--json"),
            *("--anchors", str(anchors.path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 1, done.stderr
    assert "rewritten up to here" in done.stdout

    with anchors.path.open("a") as handle:  # a forged anchor line is refused
        handle.write(json.dumps({**records[0], "seq": 1, "hmac": "0" * 64}) + "\n")
    assert len(anchors.latest(key)[1]) == 1
