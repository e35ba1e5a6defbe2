"""`medstream demo`, small: it starts what is missing, replays the hospital, waits for
every outcome and prints the summary, exiting 0 only when the ledger adds up."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from medstream.settings import Settings

from .conftest import StallWatch


async def test_the_demo_runs_green_and_reports_every_section(settings: Settings) -> None:
    medstream = Path(sys.executable).parent / "medstream"
    watch = StallWatch(settings)
    watch.start()
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [str(medstream), "demo", "--patients", "3", "--hours", "2", "--malformed", "12"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "COLUMNS": "160"},
        )
    finally:
        await watch.stop()
    assert not watch.stalls, f"stalled partitions: {watch.stalls}"
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    for section in (
        "Messages per stage",
        "Dead letters per code",
        "End-to-end latency",
        "Highest-risk patients",
        "audit verify: intact",
        "consumer lag: 0",
        "demo passed",
    ):
        assert section in out, section
    assert re.search(r"monitoring results stored\s*│\s*24\s", out), "2 h x 4 sets x 3 patients"
    assert re.search(r"imaging results stored\s*│\s*3\s", out)
    assert re.search(r"dead-lettered at ingestion\s*│\s*12\s", out)
