"""A synthetic physiology simulator for ward patients, for training and testing the
deterioration model. Not physiology-grade: it is built to make the learning task honest.

Patients are stable, or deteriorate along a sepsis-like or a respiratory-failure
trajectory until an event (unplanned ICU transfer) ends their ward stay.
- Baselines vary between patients (some stable patients live near NEWS2 thresholds,
  such as chronic hypoxaemia or tachycardia), so NEWS2 raises false alarms.
- Deterioration onset, speed, shape and which vitals move are randomised per patient.
- Charting is 4-hourly with jitter, and tightens to 1-2-hourly as NEWS2 rises, as on a
  real ward.
- Values go missing per vital (temperature and consciousness more often), and there are
  artefacts: SpO2 probe dropouts, HR spikes and transcription slips.
- Every dynamic is drawn from wide ranges per patient (domain randomisation), so a
  model cannot learn one curve; acceptance scores patients from a simulator we do not
  see.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medstream.monitoring.news2 import Consciousness, Observations, news2

TRAJECTORIES = ("stable", "sepsis", "respiratory")
ACVPU = [Consciousness.ALERT, Consciousness.CONFUSION, Consciousness.VOICE, Consciousness.PAIN]


@dataclass
class SimulatedPatient:
    """One ward stay: observations in hours from admission, and the event time if any."""

    patient_id: str
    trajectory: str
    event_hour: float | None
    times: list[float] = field(default_factory=list)
    observations: list[Observations] = field(default_factory=list)


def _ramp(t: float, onset: float, event: float, shape: float) -> float:
    """Severity from 0 at onset to 1 at the event, convex or concave by ``shape``."""
    if t <= onset:
        return 0.0
    return float(min(1.0, (t - onset) / max(event - onset, 1e-3)) ** shape)


def simulate_patient(
    rng: np.random.Generator, patient_id: str, stay_hours: float = 72
) -> SimulatedPatient:
    """One patient's stay."""
    trajectory = str(rng.choice(TRAJECTORIES, p=[0.8, 0.12, 0.08]))
    base = {
        "hr": rng.normal(78, 11),
        "rr": rng.normal(16, 2),
        "spo2": rng.normal(96.5, 1.5),
        "sbp": rng.normal(128, 16),
        "temp": rng.normal(36.8, 0.35),
    }
    if rng.random() < 0.15:  # chronic conditions that keep NEWS2 raised while stable
        which = rng.choice(["copd", "af", "hypotension"])
        if which == "copd":
            base["spo2"] -= rng.uniform(3, 6)
            base["rr"] += rng.uniform(2, 6)
        elif which == "af":
            base["hr"] += rng.uniform(15, 35)
        else:
            base["sbp"] -= rng.uniform(15, 30)
    noise = {
        "hr": rng.uniform(2, 6),
        "rr": rng.uniform(0.8, 2),
        "spo2": rng.uniform(0.5, 1.2),
        "sbp": rng.uniform(4, 10),
        "temp": rng.uniform(0.1, 0.3),
    }
    event = onset = None
    shape = rng.uniform(0.6, 2.5)
    if trajectory != "stable":
        event = float(rng.uniform(12, stay_hours))
        onset = float(event - rng.uniform(6, 30))
    severity_gain = {
        "sepsis": {
            "hr": rng.uniform(15, 50),
            "rr": rng.uniform(4, 14),
            "spo2": -rng.uniform(0, 5),
            "sbp": -rng.uniform(15, 55),
            "temp": rng.uniform(0.8, 2.6) * (1 if rng.random() < 0.8 else -1),
        },
        "respiratory": {
            "hr": rng.uniform(5, 30),
            "rr": rng.uniform(6, 18),
            "spo2": -rng.uniform(4, 14),
            "sbp": rng.uniform(-10, 15),
            "temp": rng.uniform(-0.2, 0.8),
        },
    }.get(trajectory, {})
    patient = SimulatedPatient(patient_id, trajectory, event)
    t = float(rng.uniform(0, 2))
    on_oxygen = bool(rng.random() < 0.05)
    phase = rng.uniform(0, 2 * np.pi)
    while t < (event if event is not None else stay_hours):
        severity = _ramp(t, onset, event, shape) if onset is not None and event is not None else 0.0
        circadian = np.sin(2 * np.pi * t / 24 + phase)
        values = {
            k: base[k]
            + severity_gain.get(k, 0.0) * severity
            + noise[k] * rng.normal()
            + (3 * circadian if k == "hr" else 0.0)
            for k in base
        }
        if values["spo2"] < 92 and not on_oxygen and rng.random() < 0.7:
            on_oxygen = True  # staff start oxygen, which raises SpO2
        if on_oxygen:
            values["spo2"] += rng.uniform(2, 5)
        level = 0
        if severity > 0.6 and rng.random() < severity * 0.5:
            level = int(rng.integers(1, 4 if severity > 0.9 else 2))
        obs = Observations(
            respiratory_rate=_maybe(rng, round(float(np.clip(values["rr"], 6, 45))), 0.05),
            spo2=_maybe(rng, _artefact(rng, round(float(np.clip(values["spo2"], 70, 100)))), 0.06),
            on_oxygen=on_oxygen,
            systolic_bp=_maybe(rng, round(float(np.clip(values["sbp"], 60, 230))), 0.05),
            heart_rate=_maybe(rng, _spike(rng, round(float(np.clip(values["hr"], 30, 190)))), 0.04),
            consciousness=_maybe(rng, ACVPU[level], 0.2),
            temperature=_maybe(rng, round(float(np.clip(values["temp"], 33.5, 41.5)), 1), 0.15),
        )
        patient.times.append(round(t, 2))
        patient.observations.append(obs)
        score = news2(obs).total
        interval = 4.0 if score < 3 else 2.0 if score < 5 else 1.0
        t += interval * rng.uniform(0.75, 1.3)
    return patient


def _maybe(rng: np.random.Generator, value, missing: float):  # type: ignore[no-untyped-def]
    return None if rng.random() < missing else value


def _artefact(rng: np.random.Generator, spo2: int) -> int:
    return int(rng.integers(70, 85)) if rng.random() < 0.01 else spo2


def _spike(rng: np.random.Generator, hr: int) -> int:
    return hr * 2 if rng.random() < 0.005 else hr


def simulate(n_patients: int, seed: int, stay_hours: float = 72) -> list[SimulatedPatient]:
    """``n_patients`` independent stays, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [simulate_patient(rng, f"sim-{seed}-{i:05d}", stay_hours) for i in range(n_patients)]
