"""A synthetic physiology simulator for ward patients, for training and testing the
deterioration model. Not physiology-grade: it is built to make the learning task honest.

Physiology and charting are separate processes, because on a real ward how often a
nurse charts depends on the ward as much as on the patient:
- **Physiology** runs on a 15-minute grid. Patients are stable, or deteriorate along a
  sepsis-like or a respiratory-failure trajectory. Baselines vary between patients
  (some stable patients live near NEWS2 thresholds: chronic hypoxaemia, atrial
  fibrillation, low blood pressure), so NEWS2 raises false alarms. Onset, speed, shape
  and which vitals move are randomised per patient (domain randomisation).
- **The outcome** is deterioration: the true physiology reaching NEWS2 7 (for half an
  hour), or an unplanned ICU transfer or death at the end of a deteriorating
  trajectory, whichever comes first. The stay on the ward ends there.
- **Charting** is drawn by a policy:
  - ``coupled``: 4-hourly, tightening to 1-2-hourly as the charted NEWS2 rises (what
    the first version simulated, and what a confounded model learns from);
  - ``decoupled``: a schedule drawn per patient with no regard to acuity: hourly,
    2-, 4- or 6-hourly, irregular, with partial rows (heart rate and SpO2 only, blood
    pressure and heart rate, a temperature alone) and long gaps;
  - ``inverse``: sicker patients charted *less* often, as at night or on a busy ward.
- Values go missing at random and there are artefacts: SpO2 probe dropouts, heart-rate
  spikes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medstream.monitoring.news2 import Consciousness, Observations, news2

TRAJECTORIES = ("stable", "sepsis", "respiratory")
ACVPU = [Consciousness.ALERT, Consciousness.CONFUSION, Consciousness.VOICE, Consciousness.PAIN]
POLICIES = ("coupled", "decoupled", "inverse")
GRID_HOURS = 0.25
ROW_KINDS = ("full", "hr_spo2", "bp_hr", "temperature")


@dataclass
class SimulatedPatient:
    """One ward stay as charted: observation sets in hours from admission, the event
    time if any, and the true physiology on the grid (for re-charting)."""

    patient_id: str
    trajectory: str
    event_hour: float | None
    times: list[float] = field(default_factory=list)
    observations: list[Observations] = field(default_factory=list)
    truth: list[dict[str, float]] = field(default_factory=list, repr=False)
    end_hour: float = 0.0


def _ramp(t: float, onset: float, event: float, shape: float) -> float:
    """Severity from 0 at onset to 1 at the event, convex or concave by ``shape``."""
    if t <= onset:
        return 0.0
    return float(min(1.0, (t - onset) / max(event - onset, 1e-3)) ** shape)


def physiology(
    rng: np.random.Generator, patient_id: str, stay_hours: float = 72
) -> SimulatedPatient:
    """One patient's true physiology on the grid, and when they deteriorate."""
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
    transfer = onset = None
    shape = rng.uniform(0.6, 2.5)
    if trajectory != "stable":
        transfer = float(rng.uniform(12, stay_hours))
        onset = float(transfer - rng.uniform(6, 30))
    gain = {
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
    patient = SimulatedPatient(patient_id, trajectory, None)
    on_oxygen = bool(rng.random() < 0.05)
    scale_2 = base["spo2"] < 92.5 and rng.random() < 0.5  # a target of 88-92%
    phase = rng.uniform(0, 2 * np.pi)
    end = transfer if transfer is not None else stay_hours
    high = 0
    t = 0.0
    while t < end:
        severity = _ramp(t, onset, transfer, shape) if onset is not None and transfer else 0.0
        circadian = np.sin(2 * np.pi * t / 24 + phase)
        values = {
            k: base[k]
            + gain.get(k, 0.0) * severity
            + noise[k] * 0.5 * rng.normal()
            + (3 * circadian if k == "hr" else 0.0)
            for k in base
        }
        if values["spo2"] < 92 and not on_oxygen and rng.random() < 0.1:
            on_oxygen = True  # staff start oxygen, which raises SpO2
        if on_oxygen:
            values["spo2"] += 3.5
        level = 0
        if severity > 0.6 and rng.random() < severity * 0.5:
            level = int(rng.integers(1, 4 if severity > 0.9 else 2))
        state = {
            "rr": float(np.clip(values["rr"], 6, 45)),
            "spo2": float(np.clip(values["spo2"], 70, 100)),
            "sbp": float(np.clip(values["sbp"], 60, 230)),
            "hr": float(np.clip(values["hr"], 30, 190)),
            "temp": float(np.clip(values["temp"], 33.5, 41.5)),
            "o2": float(on_oxygen),
            "level": float(level),
            "scale_2": float(scale_2),
            "t": t,
        }
        patient.truth.append(state)
        high = high + 1 if _true_news2(state) >= 7 else 0
        if high >= 2 and t >= 2:  # NEWS2 7 sustained for half an hour: deterioration
            patient.event_hour = round(t, 2)
            break
        t += GRID_HOURS
    if patient.event_hour is None and transfer is not None:
        patient.event_hour = round(transfer, 2)  # ICU transfer or death
    patient.end_hour = patient.event_hour if patient.event_hour is not None else stay_hours
    return patient


def _true_news2(state: dict[str, float]) -> int:
    return news2(_observations(state, "full")).total


def _observations(
    state: dict[str, float], kind: str, rng: np.random.Generator | None = None
) -> Observations:
    """What a nurse charts of ``state``: the row's kind decides which parameters; ``rng``
    adds measurement noise, random omissions and artefacts."""

    def read(value: float, sd: float, digits: int = 0) -> float:
        noisy = value + (sd * rng.normal() if rng is not None else 0.0)
        return round(noisy, digits) if digits else float(round(noisy))

    def maybe(value: object, missing: float) -> object:
        return None if rng is not None and rng.random() < missing else value

    spo2 = read(state["spo2"], 0.6)
    heart = read(state["hr"], 2.0)
    if rng is not None and rng.random() < 0.01:
        spo2 = float(rng.integers(70, 85))  # a probe dropout
    if rng is not None and rng.random() < 0.005:
        heart *= 2  # a spike
    full = kind == "full"
    return Observations(
        respiratory_rate=maybe(read(state["rr"], 1.0), 0.05) if full else None,  # type: ignore[arg-type]
        spo2=maybe(min(spo2, 100.0), 0.04) if kind in ("full", "hr_spo2") else None,  # type: ignore[arg-type]
        on_oxygen=bool(state["o2"]) if kind in ("full", "hr_spo2") else None,
        systolic_bp=maybe(read(state["sbp"], 4.0), 0.05) if kind in ("full", "bp_hr") else None,  # type: ignore[arg-type]
        heart_rate=(
            maybe(heart, 0.03) if kind in ("full", "hr_spo2", "bp_hr") else None  # type: ignore[arg-type]
        ),
        consciousness=maybe(ACVPU[int(state["level"])], 0.2) if full else None,  # type: ignore[arg-type]
        temperature=(
            maybe(read(state["temp"], 0.1, 1), 0.1) if kind in ("full", "temperature") else None  # type: ignore[arg-type]
        ),
        spo2_scale_2=bool(state["scale_2"]),
    )


def chart(
    patient: SimulatedPatient,
    rng: np.random.Generator,
    policy: str,
    *,
    every: float | None = None,
    partial: float | None = None,
) -> SimulatedPatient:
    """The same stay charted under ``policy``: a new SimulatedPatient with the same
    physiology and outcome and its own rows. ``every`` (hours) and ``partial`` (the
    share of partial rows) fix a decoupled schedule, for re-charting the same patients
    at another frequency."""
    if policy not in POLICIES:
        raise ValueError(f"charting policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    charted = SimulatedPatient(
        patient.patient_id, patient.trajectory, patient.event_hour, truth=patient.truth
    )
    charted.end_hour = patient.end_hour
    regime = every if every is not None else rng.choice([1.0, 2.0, 4.0, 6.0, 0.0])  # 0: irregular
    if partial is None:
        partial = rng.uniform(0.0, 0.6)  # this ward's share of partial rows
    t = float(rng.uniform(0, 1.5))
    last_score = 0
    while t < patient.end_hour:
        state = patient.truth[min(int(t / GRID_HOURS), len(patient.truth) - 1)]
        if policy == "coupled":
            kind = "full"
        else:
            kind = "full" if rng.random() >= partial else str(rng.choice(ROW_KINDS[1:]))
        obs = _observations(state, kind, rng)
        charted.times.append(round(t, 2))
        charted.observations.append(obs)
        if policy == "coupled":
            last_score = news2(obs).total
            interval = 4.0 if last_score < 3 else 2.0 if last_score < 5 else 1.0
            interval *= rng.uniform(0.75, 1.3)
        elif policy == "decoupled":
            interval = regime * rng.uniform(0.8, 1.25) if regime else rng.uniform(0.5, 6.0)
            if every is None and rng.random() < 0.04:
                interval += rng.uniform(6, 12)  # a long gap: anyone, sick or not
        else:  # inverse: the sicker, the longer until the next row
            acuity = _true_news2(state)
            interval = (2.0 + 1.0 * acuity) * rng.uniform(0.75, 1.3)
        t += max(interval, 0.25)
    return charted


def simulate_patient(
    rng: np.random.Generator, patient_id: str, stay_hours: float = 72, policy: str = "decoupled"
) -> SimulatedPatient:
    """One patient's stay, charted under ``policy``."""
    return chart(physiology(rng, patient_id, stay_hours), rng, policy)


def simulate(
    n_patients: int, seed: int, stay_hours: float = 72, policy: str = "decoupled"
) -> list[SimulatedPatient]:
    """``n_patients`` independent stays, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [
        simulate_patient(rng, f"sim-{seed}-{i:05d}", stay_hours, policy) for i in range(n_patients)
    ]
