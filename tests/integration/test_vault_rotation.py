"""Vault key rotation on the real database: ``medstream vault rotate-key`` re-encrypts
every row under the new key while writers go on, survives a SIGKILL halfway and a
rerun, and every patient re-links to the same identity afterwards. The table is
rotated back at the end, so the other tests find it under the stack's own key."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream.deid.engine import PatientIdentity
from medstream.deid.vault import PseudonymVault, RelinkSeal, VaultCipher, VaultWrite
from medstream.settings import Settings

MEDSTREAM = str(Path(sys.executable).parent / "medstream")
NEW_KEY = base64.b64encode(os.urandom(32)).decode()
ROWS = 40


def cli_env(settings: Settings, *, current: tuple[str, str], previous: str) -> dict[str, str]:
    return {
        **os.environ,
        "MEDSTREAM_VAULT_KEY": current[1],
        "MEDSTREAM_VAULT_KEY_ID": current[0],
        "MEDSTREAM_VAULT_PREVIOUS_KEYS": previous,
        "MEDSTREAM_STATE_DIR": str(settings.state_dir),
    }


async def record(vault: PseudonymVault, engine: AsyncEngine, run: str, n: int) -> dict[str, str]:
    made = {}
    for i in range(n):
        pseudonym, mrn = f"psn-rot{run}{i:04d}", f"ROT-{run}-{i}"
        async with engine.begin() as conn:
            await vault.record(
                conn,
                VaultWrite(
                    pseudonym,
                    PatientIdentity(mrn, [{"system": "mrn", "value": mrn}]),
                    7,
                    f"rot-{run}",
                    f"rot-{run}-{i}",
                ),
            )
        made[pseudonym] = mrn
    return made


async def key_ids(engine: AsyncEngine, pseudonyms: list[str]) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT key_id, count(*) FROM pseudonym_vault WHERE pseudonym = ANY(:p)"
                " GROUP BY key_id"
            ),
            {"p": pseudonyms},
        )
        return {row[0]: row[1] for row in rows}


async def test_rotation_is_online_resumable_and_relinks_every_patient(
    settings: Settings, engine: AsyncEngine
) -> None:
    run = uuid.uuid4().hex[:8]
    old = settings.vault_key.get_secret_value()
    old_id = settings.vault_key_id
    before = VaultCipher.from_settings(settings)
    patients = await record(
        PseudonymVault(before, None, "test", RelinkSeal.for_service(settings, "results")),
        engine,
        run,
        ROWS,
    )

    rotating = cli_env(settings, current=("r" + run, NEW_KEY), previous=f"{old_id}:{old}")
    # Slowly, five rows a batch, so that it can be killed halfway.
    slow = subprocess.Popen(
        [MEDSTREAM, "vault", "rotate-key", "--batch", "5", "--pause-s", "0.3"],
        env=rotating,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Meanwhile the services go on: a deid configured for the rotation writes new rows.
    during = VaultCipher(base64.b64decode(NEW_KEY), "r" + run, {old_id: base64.b64decode(old)})
    patients |= await record(
        PseudonymVault(during, None, "test", RelinkSeal.for_service(settings, "deid")),
        engine,
        run + "b",
        10,
    )
    assert slow.stderr is not None
    line = await asyncio.to_thread(slow.stderr.readline)
    assert "rows re-encrypted" in line, line
    slow.send_signal(signal.SIGKILL)
    slow.wait(timeout=30)
    halfway = await key_ids(engine, list(patients))
    assert halfway.get(old_id, 0) > 0, "the kill came too late to test resuming"

    done = subprocess.run(
        [MEDSTREAM, "vault", "rotate-key"],
        env=rotating,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert await key_ids(engine, list(patients)) == {"r" + run: len(patients)}
    after = PseudonymVault(
        VaultCipher(base64.b64decode(NEW_KEY), "r" + run),
        None,
        "test",
        RelinkSeal.for_service(settings, "results"),
    )
    async with engine.begin() as conn:
        for pseudonym, mrn in patients.items():
            entry, _ = await after.relink(
                conn, pseudonym, correlation_id="rot", dedupe_key=f"check-{pseudonym}"
            )
            assert entry is not None
            assert entry.identity.ehr_patient_id == mrn
            assert entry.offset_days == 7

    # Without the old key, a row under it cannot be read: the command says what to set.
    unknown = subprocess.run(
        [MEDSTREAM, "vault", "rotate-key"],
        env=cli_env(settings, current=(old_id, old), previous=""),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert unknown.returncode == 2
    assert "MEDSTREAM_VAULT_PREVIOUS_KEYS" in unknown.stderr

    back = subprocess.run(
        [MEDSTREAM, "vault", "rotate-key"],
        env=cli_env(settings, current=(old_id, old), previous=f"r{run}:{NEW_KEY}"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert back.returncode == 0, back.stderr
    assert await key_ids(engine, list(patients)) == {old_id: len(patients)}
