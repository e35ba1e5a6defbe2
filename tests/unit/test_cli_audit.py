"""`medstream audit` without a database says what to do next instead of a traceback."""

import os
import subprocess
import sys
from pathlib import Path

MEDSTREAM = str(Path(sys.executable).parent / "medstream")
NOWHERE = {"MEDSTREAM_DATABASE_URL": "postgresql+asyncpg://x:y@127.0.0.1:9/none"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MEDSTREAM, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **NOWHERE, "COLUMNS": "200"},
        timeout=60,
        check=False,
    )


def test_verify_without_a_database_exits_2_and_says_how_to_start_it() -> None:
    done = run("audit", "verify")
    assert done.returncode == 2
    assert "PostgreSQL is unreachable" in done.stderr
    assert "medstream up" in done.stderr
    assert "Traceback" not in done.stderr


def test_query_refuses_a_time_without_a_zone() -> None:
    done = run("audit", "query", "--since", "2026-11-28T10:00:00")
    assert done.returncode == 2
    assert "no time zone" in done.stderr
