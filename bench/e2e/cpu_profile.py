"""Where the platform's CPU goes: a sampling profile of every service while the
pipeline is saturated with vital signs (the family furthest from its model ceiling).

    make bench-profile LABEL=after
    (or: make up && .venv/bin/python bench/e2e/cpu_profile.py after)

py-spy samples each running service (100 Hz, native frames off) for the burst. The
stacks are folded, and for each service the report keeps its CPU samples, the share
of them in each area of the code (PostgreSQL, Kafka, JSON, pydantic, FHIR validation,
hashing, the model, MedStream's own code) and the 25 functions with the most samples
of their own. Results: bench/results/profile-<label>.json. MEDSTREAM_PROFILE_KEEP=<dir>
keeps the folded stacks there.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))
sys.path.insert(0, str(ROOT / "bench" / "e2e"))

from pipeline import vital_signs, wait_settled  # noqa: E402

from medstream import stack as local_stack  # noqa: E402
from medstream.demo.feed import Feed  # noqa: E402
from medstream.demo.run import publish  # noqa: E402
from medstream.settings import get_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BURST = 1500
SECONDS = 45
# Where a frame's file lives says which area of the code it is.
AREAS = (
    ("postgresql (asyncpg, sqlalchemy)", ("asyncpg", "sqlalchemy")),
    ("kafka (aiokafka)", ("aiokafka",)),
    ("fhir validation (fhir.resources)", ("fhir/resources", "fhir_core", "fhir.resources")),
    ("pydantic", ("pydantic",)),
    ("json", ("json/", "orjson")),
    ("hashing and crypto", ("hashlib", "hmac", "cryptography")),
    ("model (torch, transformers)", ("torch", "transformers", "monai")),
    ("medstream", ("medstream", "services/")),
    ("asyncio and the event loop", ("asyncio", "selectors")),
)


def log(message: str) -> None:
    print(f"[profile] {message}", file=sys.stderr, flush=True)


def area_of(frame: str) -> str:
    for area, markers in AREAS:
        if any(marker in frame for marker in markers):
            return area
    return "other"


def summarise(folded: Path) -> dict[str, Any]:
    """Samples per area (by the innermost frame that belongs to one) and the functions
    with the most samples of their own."""
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in reversed(frames):
            area = area_of(frame)
            if area != "other" or frame is frames[0]:
                areas[area] += count
                break
    return {
        "samples": total,
        "share_by_area": {k: round(v / total, 3) for k, v in areas.most_common()} if total else {},
        "top_own": [{"function": f, "share": round(c / total, 3)} for f, c in own.most_common(25)]
        if total
        else [],
    }


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else "now"
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is missing: `make bench-profile` installs it")
    settings = get_settings()
    stack = local_stack.Stack(settings.state_dir)
    running = local_stack.services_running(stack)
    if not running or not all(running.values()):
        raise SystemExit("start the stack and its services first: `make up`")
    folder = Path(tempfile.mkdtemp(prefix="medstream-profile-"))
    pids = {
        name: int((stack.state_dir / "services" / f"{name}.pid").read_text()) for name in running
    }
    burst = vital_signs(125, 3, 15, f"p{int(time.time()) % 100000}", BURST)
    log(f"profiling {len(pids)} services for {SECONDS}s while {len(burst)} vital-sign sets flow")
    spies = {
        name: subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--duration", str(SECONDS), "--rate", "100",
             "--format", "raw", "--output", str(folder / f"{name}.txt"), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    }  # fmt: skip
    started = time.monotonic()
    asyncio.run(publish(settings, burst, lambda n: None))
    settled = asyncio.run(wait_settled(Feed(burst, []), timeout_s=600))
    elapsed = time.monotonic() - started
    for process in spies.values():
        process.wait(timeout=SECONDS + 60)
    services = {
        name: summarise(folder / f"{name}.txt")
        for name in pids
        if (folder / f"{name}.txt").exists()
    }
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "label": label,
        "burst": len(burst),
        "unsettled": settled["pending"],
        "seconds_to_settle": round(elapsed, 1),
        "vital_sign_sets_per_s": round(len(burst) / elapsed, 1),
        "sampling": f"py-spy, 100 Hz, {SECONDS} s per service",
        "services": services,
    }
    keep = os.environ.get("MEDSTREAM_PROFILE_KEEP")
    if keep:  # the raw folded stacks, for a closer look (py-spy's own format)
        shutil.copytree(folder, keep, dirs_exist_ok=True)
        log(f"folded stacks kept in {keep}")
    shutil.rmtree(folder, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"profile-{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {n: {"samples": s["samples"], **s["share_by_area"]} for n, s in services.items()},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
