"""An evaluation a charting-confounded deterioration model fails, side by side in one run.

The same simulator physiology, charted three ways (simulator.chart):
- ``decoupled``: how often a patient is charted has nothing to do with how sick they are;
- ``inverse``: sicker patients are charted *less* often (night, a busy ward);
- ``coupled``: sicker patients are charted more often (the confounded world, for
  reference).
Each stay is scored every 2 hours of clock time, so a stay counts the same however
often it was charted. At 6, 12 and 24 hours: the model, NEWS2 on the latest complete
picture, and two charting-only baselines (rows in the last 24 hours; hours since the
last row) by AUROC and AUPRC, and the model's calibration (ECE, Brier).

The same comparison on stays from an **independent simulator** (independent_sim.py),
written separately from the training simulator without reading it, under its own three
charting modes (``ward``: an RCP escalation protocol; ``fixed``: acuity-blind
schedules; ``inverse``). The model never saw its output.

Then the **re-charting test**: the same patients charted 4-hourly, hourly, and hourly with
half the extra rows partial, the hourly versions containing the 4-hourly rows, scored
just after each 4-hourly round (so the freshest full set is the same in every version);
the model's AUROC may move by at most 0.02.

    .venv/bin/python bench/models/monitoring/confounding.py [--patients N] [--card]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "libs"))

from medstream.models.metrics import auroc  # noqa: E402
from medstream.models.package import amend_card, latest  # noqa: E402
from medstream.monitoring import model as monitoring  # noqa: E402
from medstream.monitoring.news2 import Consciousness, Observations  # noqa: E402
from medstream.monitoring.simulator import SimulatedPatient, chart, physiology  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import independent_sim  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SEED = 20261130  # never a training, validation or card seed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=1500)
    parser.add_argument(
        "--card", action="store_true", help="Also write the figures into the package's card."
    )
    args = parser.parse_args()
    package = latest(ROOT / "models", monitoring.NAME)
    model = monitoring.load_model(package)
    rng = np.random.default_rng(SEED)
    stays = [physiology(rng, f"bench-{i:05d}") for i in range(args.patients)]
    report: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "model": f"{package.name} {package.version} ({package.checksum[:12]})",
        "patients": args.patients,
        "scored": "every 2 hours of clock time",
        "cohorts": {},
        "independent": {},
        "recharting": {},
    }
    for policy in ("decoupled", "inverse", "coupled"):
        charting = np.random.default_rng(SEED + 1)
        points = monitoring.scoring_points([chart(s, charting, policy) for s in stays], at="clock")
        report["cohorts"][policy] = monitoring.compare(model, points)
        row = report["cohorts"][policy]["12h"]
        print(
            f"{policy:10s} 12 h: model {row['model_auroc']}  NEWS2 {row['news2_auroc']}  "
            f"rows {row['rows_24h_auroc']}  since-last-row {row['hours_since_row_auroc']}",
            flush=True,
        )
    for mode in independent_sim.CHARTING_MODES:
        stays_i = [adapt(s) for s in independent_sim.generate(args.patients, SEED, mode)]
        points = monitoring.scoring_points(stays_i, at="clock")
        report["independent"][mode] = monitoring.compare(model, points)
        row = report["independent"][mode]["12h"]
        print(
            f"independent {mode:8s} 12 h: model {row['model_auroc']}  NEWS2 "
            f"{row['news2_auroc']}  rows {row['rows_24h_auroc']}  since-last-row "
            f"{row['hours_since_row_auroc']}",
            flush=True,
        )
    # Re-charting: the same stays charted 4-hourly, then hourly and hourly with half the
    # extra rows partial, where the hourly versions *contain* the 4-hourly rows and add
    # rows between them. Each version is scored just after every 4-hourly round, so the
    # freshest full set is the same in all of them: they differ only in how much was
    # charted in between, which a model reading physiology should not rank by.
    charting = np.random.default_rng(SEED + 2)
    sparse = [chart(s, charting, "decoupled", every=4.0, partial=0.0) for s in stays]
    versions = {
        "4-hourly": sparse,
        "hourly": [
            nest(a, chart(s, charting, "decoupled", every=1.0, partial=0.0))
            for a, s in zip(sparse, stays, strict=True)
        ],
        "hourly, half partial": [
            nest(a, chart(s, charting, "decoupled", every=1.0, partial=0.5))
            for a, s in zip(sparse, stays, strict=True)
        ],
    }
    rounds = {p.patient_id: [t + 0.01 for t in p.times] for p in sparse}
    aurocs: dict[str, dict[str, float]] = {}
    for name, charted in versions.items():
        points = monitoring.scoring_points(charted, at=lambda p: rounds[p.patient_id])
        logits = monitoring.predict_logits(model, points.x)
        aurocs[name] = {
            f"{h}h": round(auroc(points.y[:, k], logits[:, k]), 4)
            for k, h in enumerate(monitoring.HORIZONS)
        }
        aurocs[name]["news2_12h"] = round(auroc(points.y[:, 1], points.news2), 4)
        aurocs[name]["rows_24h_12h"] = round(auroc(points.y[:, 1], points.rows_24h), 4)
        print(f"re-charted {name:22s} {aurocs[name]}", flush=True)
    spread = {
        f"{h}h": round(
            max(a[f"{h}h"] for a in aurocs.values()) - min(a[f"{h}h"] for a in aurocs.values()), 4
        )
        for h in monitoring.HORIZONS
    }
    report["recharting"] = {"auroc": aurocs, "largest_change": spread}
    targets = {
        "model_beats_news2_by_0.03_everywhere": all(
            scores[f"{h}h"]["model_auroc"] >= scores[f"{h}h"]["news2_auroc"] + 0.03
            for policy, scores in report["cohorts"].items()
            for h in monitoring.HORIZONS
        ),
        "charting_only_at_most_0.60_on_decoupled_and_inverse": all(
            report["cohorts"][p][f"{h}h"][k] <= 0.60
            for p in ("decoupled", "inverse")
            for h in monitoring.HORIZONS
            for k in ("rows_24h_auroc", "hours_since_row_auroc")
        ),
        "recharting_moves_auroc_at_most_0.02": max(spread.values()) <= 0.02,
        "independent_simulator_model_beats_news2_by_0.03": all(
            scores[f"{h}h"]["model_auroc"] >= scores[f"{h}h"]["news2_auroc"] + 0.03
            for scores in report["independent"].values()
            for h in monitoring.HORIZONS
        ),
    }
    report["targets"] = targets
    print(json.dumps(targets, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "models-monitoring-confounding.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.card:
        amend_card(package, CARD_HEADING, card_section(report))


CARD_HEADING = "The confounding test and an independent simulator"


def card_section(report: dict[str, Any]) -> str:
    """The card's section with this run's figures: the independent simulator first."""
    rows = [
        f"From `bench/models/monitoring/confounding.py` ({report['date']}, "
        f"{report['patients']} stays per cohort, scored {report['scored']}). AUROC of the "
        "model against NEWS2 on the latest complete picture and the charting-only "
        "baselines (rows in the last 24 h; hours since the last row), and the model's ECE.",
        "",
        "| simulator | charting | hours | model | NEWS2 | rows | since last row | ECE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for simulator, key in (("independent", "independent"), ("training's", "cohorts")):
        for charting, scores in report[key].items():
            for hours in monitoring.HORIZONS:
                m = scores[f"{hours}h"]
                rows.append(
                    f"| {simulator} | {charting} | {hours} | {m['model_auroc']} | "
                    f"{m['news2_auroc']} | {m['rows_24h_auroc']} | "
                    f"{m['hours_since_row_auroc']} | {m['model_ece']} |"
                )
    rows += ["", "Re-charting the same stays (AUROC at 6 / 12 / 24 h):", ""]
    for name, scores in report["recharting"]["auroc"].items():
        rows.append(f"- {name}: {scores['6h']} / {scores['12h']} / {scores['24h']}")
    change = report["recharting"]["largest_change"]
    rows.append(f"- largest change: {max(change.values())} (target 0.02)")
    return "\n".join(rows)


def nest(sparse: SimulatedPatient, dense: SimulatedPatient) -> SimulatedPatient:
    """``sparse``'s rows plus ``dense``'s rows that fall between them (more than 15
    minutes from any sparse row): the same stay, charted more often."""
    rows = list(zip(sparse.times, sparse.observations, strict=True))
    rows += [
        (t, o)
        for t, o in zip(dense.times, dense.observations, strict=True)
        if min((abs(t - u) for u in sparse.times), default=1.0) > 0.25
    ]
    rows.sort(key=lambda row: row[0])
    nested = SimulatedPatient(
        sparse.patient_id,
        sparse.trajectory,
        sparse.event_hour,
        [t for t, _ in rows],
        [o for _, o in rows],
    )
    nested.end_hour = sparse.end_hour
    return nested


def adapt(stay: dict[str, Any]) -> SimulatedPatient:
    """An independent-simulator stay as the model's input type."""
    times, sets = [], []
    for row in stay["rows"]:
        level = row.get("consciousness")
        times.append(float(row["hour"]))
        sets.append(
            Observations(
                respiratory_rate=row.get("respiratory_rate"),
                spo2=row.get("spo2"),
                on_oxygen=row.get("on_oxygen"),
                systolic_bp=row.get("systolic_bp"),
                heart_rate=row.get("heart_rate"),
                consciousness=Consciousness(level) if level else None,
                temperature=row.get("temperature"),
                spo2_scale_2=bool(row.get("spo2_scale_2", False)),
            )
        )
    patient = SimulatedPatient(stay["id"], stay["cohort"], stay["event_hour"], times, sets)
    patient.end_hour = float(stay["end_hour"])
    return patient


if __name__ == "__main__":
    main()
