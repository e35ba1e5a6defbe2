"""FHIR validation of the resources MedStream writes, side by side in one run: full
validation with fhir.resources on every resource (before) against ``validated``'s
shape plan (each shape validated in full once, then each value against its FHIR
primitive type). The resources are the AuditEvent of an audit record and the
resources of a monitoring, an imaging and a notes result, each with fresh values
(ids and times) every time, as in the services.

    .venv/bin/python bench/e2e/fhir_validation.py   (results: bench/results/fhir-validation.json)
"""

from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))
sys.path.insert(0, str(ROOT))

from fhir.resources.R4B import get_fhir_model_class  # noqa: E402

from medstream.fhir_r4 import validated  # noqa: E402
from tests.unit.test_fhir_fast_validation import RESOURCES  # noqa: E402

ROUNDS, PER_ROUND = 5, 300


def fresh(resource: dict[str, Any], n: int) -> dict[str, Any]:
    """A copy with a new id and new times, as the next event would have."""
    made = copy.deepcopy(resource)
    made["id"] = str(uuid.uuid4())
    when = (datetime(2026, 11, 30, tzinfo=UTC) + timedelta(seconds=n)).isoformat()
    for key in ("recorded", "issued", "occurrenceDateTime", "effectiveDateTime"):
        if key in made:
            made[key] = when
    return made


def full(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def main() -> None:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for resource in RESOURCES:
        kinds.setdefault(resource["resourceType"], []).append(resource)
    rows = {}
    for kind, resources in kinds.items():
        timings: dict[str, list[float]] = {"full": [], "shape plan": []}
        for round_ in range(ROUNDS):
            batch = [fresh(r, round_ * PER_ROUND + i) for i in range(PER_ROUND) for r in resources]
            for name, fn in (("full", full), ("shape plan", validated)):
                started = time.perf_counter()
                for resource in batch:
                    fn(resource)
                timings[name].append((time.perf_counter() - started) / len(batch) * 1e6)
        full_us = statistics.median(timings["full"])
        plan_us = statistics.median(timings["shape plan"])
        rows[kind] = {
            "full_us": round(full_us, 1),
            "shape_plan_us": round(plan_us, 1),
            "speed_up": round(full_us / plan_us, 2),
        }
        print(f"{kind:20} full {full_us:8.1f} µs, shape plan {plan_us:7.1f} µs", end="")
        print(f", x{full_us / plan_us:.2f}")
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rounds": ROUNDS,
        "per_round": PER_ROUND,
        "by_resource_type": rows,
    }
    out = ROOT / "bench" / "results" / "fhir-validation.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
