"""The deterioration model's inputs, a tiny training run, explanations, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from medstream.clinical import Vital
from medstream.monitoring import model as monitoring
from medstream.monitoring.news2 import Consciousness, Observations
from medstream.monitoring.simulator import simulate

MEDSTREAM = str(Path(sys.executable).parent / "medstream")


def coded(
    time: str,
    hr: float,
    rr: float,
    spo2: float,
    sbp: float,
    temp_f: float,
    acvpu: str = "A",
    fio2: float = 21,
) -> list[dict[str, object]]:
    return [
        {"time": time, "code": "8867-4", "value": hr, "unit": "/min"},
        {"time": time, "code": "9279-1", "value": rr, "unit": "/min"},
        {"time": time, "code": "59408-5", "value": spo2, "unit": "%"},
        {"time": time, "code": "8480-6", "value": sbp, "unit": "mm[Hg]"},
        {"time": time, "code": "8462-4", "value": 70, "unit": "mm[Hg]"},
        {"time": time, "code": "8310-5", "value": temp_f, "unit": "[degF]"},
        {"time": time, "code": "80288-4", "value": acvpu, "unit": ""},
        {"time": time, "code": "3150-0", "value": fio2, "unit": "%"},
    ]


def test_coded_observations_group_by_time_with_units_and_oxygen() -> None:
    items = coded("2026-03-14T12:00:00Z", 110, 24, 93, 98, 101.3, "C", 35) + coded(
        "2026-03-14T08:00:00Z", 80, 16, 97, 125, 98.6
    )
    times, sets = monitoring.observation_sets(items)
    assert times == [0.0, 4.0]
    assert sets[0].temperature == pytest.approx(37.0)
    assert sets[1].consciousness is Consciousness.CONFUSION
    assert sets[1].on_oxygen
    assert not sets[0].on_oxygen


def test_oxygen_flow_rate_fractions_and_the_scale_2_flag_are_read() -> None:
    items = [
        {"time": "2026-03-14T08:00:00Z", "code": "3151-8", "value": 2, "unit": "L/min"},
        {"time": "2026-03-14T09:00:00Z", "code": "3150-0", "value": 0.21, "unit": "1"},
        {"time": "2026-03-14T10:00:00Z", "code": "3150-0", "value": 0.4, "unit": "1"},
        {
            "time": "2026-03-14T10:00:00Z",
            "code": "59408-5",
            "value": 90,
            "unit": "%",
            "spo2_scale": 2,
        },
    ]
    _, sets = monitoring.observation_sets(items)
    assert [s.on_oxygen for s in sets] == [True, False, True]
    assert sets[2].spo2_scale_2


def test_the_input_is_an_hourly_grid_whatever_the_charting() -> None:
    """Hourly and 4-hourly charting of the same values give inputs of the same shape;
    the row count is not an input."""
    row = Observations(16, 97, False, 125, 72, Consciousness.ALERT, 36.8)
    hourly = monitoring.grid([float(h) for h in range(24)], [row] * 24, 23.0)
    sparse = monitoring.grid([3.0, 7.0, 11.0, 15.0, 19.0, 23.0], [row] * 6, 23.0)
    assert hourly.shape == sparse.shape == (monitoring.STEPS, len(monitoring.FEATURES))
    values = slice(0, monitoring.P)
    assert np.allclose(hourly[-1, values], sparse[-1, values])  # the same physiology
    assert hourly[-1, 3 * monitoring.P] == sparse[-1, 3 * monitoring.P] == 0  # NEWS2 0


def test_a_tiny_training_run_produces_scored_metrics() -> None:
    config = monitoring.TrainingConfig(
        train_patients=120, validation_patients=40, test_patients=60, epochs=1
    )
    model, metrics = monitoring.train(config)
    for policy in ("decoupled", "inverse", "coupled"):
        held = metrics["held_out"][policy]
        assert held["points"] > 0
        assert 0.0 <= held["12h"]["model_auroc"] <= 1.0
    patient = next(p for p in simulate(40, 5) if p.trajectory != "stable")
    window = monitoring.window(patient.times, patient.observations, len(patient.times) - 1)
    weights = monitoring.explain(model, window)
    assert set(weights) >= {"heart_rate", "respiratory_rate", "spo2"}
    assert sum(abs(w) for w in weights.values()) == pytest.approx(1.0, abs=1e-3)


def test_explanation_notes_name_carried_and_missing_drivers() -> None:
    ages = {Vital.HEART_RATE: 0.0, Vital.TEMPERATURE: 95.0}
    notes = monitoring.explanation_notes(
        {"heart_rate": 0.5, "temperature": 0.3, "spo2": -0.15, "systolic_bp": 0.05}, ages
    )
    assert notes == {"temperature": "carried forward, 95 minutes old", "spo2": "missing"}


def test_predict_monitoring_cli_ranks_a_deteriorating_patient_higher() -> None:
    stable = [
        o for h in range(6) for o in coded(f"2026-03-14T{h * 4:02d}:00:00Z", 76, 15, 97, 128, 98.4)
    ]
    worsening = [
        o
        for h, (hr, rr, spo2, sbp, temp) in enumerate(
            [
                (82, 16, 96, 124, 99.0),
                (94, 19, 95, 115, 100.2),
                (104, 21, 94, 108, 101.0),
                (112, 23, 93, 101, 101.8),
                (121, 25, 92, 94, 102.4),
                (128, 27, 91, 88, 102.9),
            ]
        )
        for o in coded(
            f"2026-03-14T{h * 2:02d}:00:00Z", hr, rr, spo2, sbp, temp, "C" if h == 5 else "A"
        )
    ]
    lines = "\n".join(
        json.dumps({"id": i, "observations": obs})
        for i, obs in (("stable", stable), ("worsening", worsening))
    )
    result = subprocess.run(
        [MEDSTREAM, "predict", "monitoring"],
        input=lines,
        capture_output=True,
        text=True,
        check=True,
    )
    out = {row["id"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert out["worsening"]["risk"] > out["stable"]["risk"]
    assert out["stable"]["news2"] == 0
    assert out["worsening"]["news2"] >= 7
    assert out["worsening"]["horizon_hours"] == 12
    assert set(out["worsening"]["risk_by_horizon"]) == {"6", "12", "24"}
    assert set(out["worsening"]["explanation"]) >= {"heart_rate", "systolic_bp"}
    assert out["worsening"]["news2_partial"] is False
    assert out["worsening"]["news2_missing"] == []
    assert out["worsening"]["news2_red_score"] is True  # SBP 88 scores 3


def test_predict_monitoring_cli_carries_forward_and_says_so() -> None:
    """The last row is a temperature alone: NEWS2 comes from the whole picture, and the
    output says what was carried and how old it is."""
    full = coded("2026-03-14T10:00:00Z", 118, 24, 93, 98, 98.6)
    last = [{"time": "2026-03-14T11:00:00Z", "code": "8310-5", "value": 38.6, "unit": "Cel"}]
    line = json.dumps({"id": "p", "observations": [*full, *last]})
    result = subprocess.run(
        [MEDSTREAM, "predict", "monitoring"], input=line, capture_output=True, text=True, check=True
    )
    out = json.loads(result.stdout)
    assert out["news2"] == 9
    assert out["news2_stale_minutes"]["heart_rate"] == 60
    assert out["news2_stale_minutes"]["temperature"] == 0
    assert out["news2_partial"] is False


def test_onnx_runtime_and_torch_give_the_same_logits() -> None:
    """ONNX Runtime is the default CPU path (bench/models); it must agree with torch."""
    import numpy as np  # noqa: PLC0415

    from medstream.models.package import latest  # noqa: PLC0415
    from medstream.paths import REPO_ROOT  # noqa: PLC0415

    package = latest(REPO_ROOT / "models", "monitoring")
    scorer = monitoring.Scorer(package, monitoring.load_model(package))
    assert scorer.runtime == "onnxruntime"
    windows, _, _ = monitoring.examples(simulate(20, 11))
    for batch in (windows[:1], windows[:64]):
        onnx = scorer.logits(batch)
        torch_logits = monitoring.predict_logits(scorer.model, batch)
        assert np.allclose(onnx, torch_logits, atol=1e-4)


def test_acvpu_is_read_from_letters_and_words() -> None:
    assert monitoring.acvpu("A") is Consciousness.ALERT
    assert monitoring.acvpu("New confusion") is Consciousness.CONFUSION
    assert monitoring.acvpu("Responds to voice") is Consciousness.VOICE
    assert monitoring.acvpu("responds to pain") is Consciousness.PAIN
    assert monitoring.acvpu("Unresponsive") is Consciousness.UNRESPONSIVE
    assert monitoring.acvpu("Alert") is Consciousness.ALERT
    assert monitoring.acvpu("??") is None


def test_a_late_event_is_scored_at_its_own_time() -> None:
    """The row scored is the last at or before the event, never a later one."""
    items = [
        {"time": f"2026-03-14T{h:02d}:00:00Z", "code": "8867-4", "value": v, "unit": "/min"}
        for h, v in ((6, 80), (7, 90), (9, 140))
    ]
    times, _ = monitoring.observation_sets(items)
    at = datetime(2026, 3, 14, 7, 0, tzinfo=UTC)
    assert monitoring.row_at(items, times, at) == 1
    assert monitoring.row_at(items, times, datetime(2026, 3, 14, 10, 0, tzinfo=UTC)) == 2
