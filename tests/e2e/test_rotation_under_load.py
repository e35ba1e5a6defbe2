"""Vault key rotation under the whole pipeline's load: vitals and documents keep
flowing while ``medstream vault rotate-key`` runs, the command is SIGKILLed halfway
and run again, every result is re-linked to the patient it came from, and the ledger
check passes. The vault is rotated back at the end, so later tests find it under the
stack's own key."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream import stack as local_stack
from medstream.demo.feed import Feed
from medstream.settings import Settings

from .conftest import FAULT_ENV, flowing, ledger_check, send, start_services
from .test_faults import feed

MEDSTREAM = str(Path(sys.executable).parent / "medstream")


def _keys(current: tuple[str, str], previous: str) -> dict[str, str]:
    return {
        "MEDSTREAM_VAULT_KEY": current[1],
        "MEDSTREAM_VAULT_KEY_ID": current[0],
        "MEDSTREAM_VAULT_PREVIOUS_KEYS": previous,
    }


def _restart(stack: local_stack.Stack, env: dict[str, str]) -> None:
    local_stack.down_services(stack, print)
    start_services(stack, {**FAULT_ENV, **env})


def _rotate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MEDSTREAM, "vault", "rotate-key"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


async def _key_ids(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT key_id, count(*) FROM pseudonym_vault GROUP BY key_id")
        )
        return {row[0]: row[1] for row in rows}


# One process of each service: the test restarts them with the rotation's keys.
@pytest.mark.parametrize("services", [1], indirect=True, ids=["1-replica"])
async def test_rotation_under_load_loses_nothing_and_relinks_every_result(
    settings: Settings, services: local_stack.Stack, engine: AsyncEngine
) -> None:
    old = (settings.vault_key_id, settings.vault_key.get_secret_value())
    new = ("r" + uuid.uuid4().hex[:8], base64.b64encode(os.urandom(32)).decode())
    rotating = _keys(new, f"{old[0]}:{old[1]}")
    # The first run gives its patients vault rows under the stack's key; the same
    # messages again, under new ids, meet those rows while they rotate.
    hospital = feed(patients=3, hours=3)
    first = await send(settings, hospital)
    await ledger_check(settings, engine, first)
    assert old[0] in await _key_ids(engine)

    try:
        # deid and results accept both keys and seal under the new one (step 1 of the
        # runbook, docs/security.md), then the stream flows while the rows rotate.
        _restart(services, rotating)
        again = Feed(
            [replace(m, message_id=f"{m.message_id}-rot") for m in hospital.messages],
            hospital.patients,
        )
        run, sending = flowing(settings, again, seconds=30)
        await asyncio.sleep(3)
        slow = subprocess.Popen(
            [MEDSTREAM, "vault", "rotate-key", "--batch", "5", "--pause-s", "0.3"],
            env={**os.environ, **rotating},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert slow.stdout is not None
        line = await asyncio.to_thread(slow.stdout.readline)
        assert "rows re-encrypted" in line, line
        slow.send_signal(signal.SIGKILL)
        slow.wait(timeout=30)
        assert (await _key_ids(engine)).get(old[0], 0) > 0, "the kill came too late"
        done = await asyncio.to_thread(_rotate, rotating)
        assert done.returncode == 0, done.stdout + done.stderr
        await sending
        await ledger_check(settings, engine, run, timeout_s=420)
        assert set(await _key_ids(engine)) == {new[0]}

        # Every stored resource names the patient whose message it answers.
        patient_of = {m.message_id: m.key for m in run.feed.messages if m.family}
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT inbound_message_id, ehr_patient_reference FROM fhir_resource"
                        " WHERE inbound_message_id = ANY(:ids)"
                    ),
                    {"ids": list(patient_of)},
                )
            ).all()
        assert rows, "no result was stored"
        wrong = [
            (message, reference)
            for message, reference in rows
            if reference != f"Patient/{patient_of[message]}"
        ]
        assert not wrong, f"results re-linked to the wrong patient: {wrong[:5]}"
    finally:
        # Back to the stack's key: the services read both while the rows rotate back.
        back = _keys(old, f"{new[0]}:{new[1]}")
        _restart(services, back)
        returned = await asyncio.to_thread(_rotate, back)
        _restart(services, {})
    assert returned.returncode == 0, returned.stdout + returned.stderr
    assert set(await _key_ids(engine)) == {old[0]}
