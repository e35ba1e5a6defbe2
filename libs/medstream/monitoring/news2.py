"""NEWS2, the Royal College of Physicians' National Early Warning Score 2 (2017).

Pure functions: the baseline every monitoring result is emitted with. Bands follow the
RCP NEWS2 observation chart; SpO2 scale 2 is for patients with a target of 88-92%
(for example hypercapnic respiratory failure) and must be chosen by a clinician.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from medstream.clinical import Vital


class Consciousness(StrEnum):
    """ACVPU: alert, new confusion, voice, pain, unresponsive."""

    ALERT = "A"
    CONFUSION = "C"
    VOICE = "V"
    PAIN = "P"
    UNRESPONSIVE = "U"


class ClinicalRisk(StrEnum):
    """The RCP's clinical risk bands and the response each triggers."""

    LOW = "low"
    LOW_MEDIUM = "low-medium"  # a single parameter scores 3: urgent ward-based response
    MEDIUM = "medium"  # 5 or 6: key threshold for urgent response
    HIGH = "high"  # 7 or more: emergency response


@dataclass(frozen=True)
class Observations:
    """One set of observations; None where a value was not charted."""

    respiratory_rate: float | None = None
    spo2: float | None = None
    on_oxygen: bool = False
    systolic_bp: float | None = None
    heart_rate: float | None = None
    consciousness: Consciousness | None = None
    temperature: float | None = None
    spo2_scale_2: bool = False


@dataclass(frozen=True)
class News2Score:
    """The aggregate score, each parameter's part of it, and the risk band."""

    total: int
    parts: dict[Vital, int]
    risk: ClinicalRisk
    complete: bool  # every parameter was charted


def _band(value: float, bands: list[tuple[float, int]], top: int) -> int:
    """The score of the first band whose upper bound ``value`` does not exceed."""
    for upper, score in bands:
        if value <= upper:
            return score
    return top


def respiration_score(rate: float) -> int:
    """≤8: 3; 9-11: 1; 12-20: 0; 21-24: 2; ≥25: 3."""
    return _band(rate, [(8, 3), (11, 1), (20, 0), (24, 2)], 3)


def spo2_score(spo2: float, *, on_oxygen: bool, scale_2: bool) -> int:
    """Scale 1: ≤91: 3; 92-93: 2; 94-95: 1; ≥96: 0. Scale 2: ≤83: 3; 84-85: 2;
    86-87: 1; 88-92 (or ≥93 on air): 0; on oxygen 93-94: 1; 95-96: 2; ≥97: 3."""
    if not scale_2:
        return _band(spo2, [(91, 3), (93, 2), (95, 1)], 0)
    if spo2 <= 92 or not on_oxygen:
        return _band(spo2, [(83, 3), (85, 2), (87, 1)], 0)
    return _band(spo2, [(94, 1), (96, 2)], 3)


def systolic_score(pressure: float) -> int:
    """≤90: 3; 91-100: 2; 101-110: 1; 111-219: 0; ≥220: 3."""
    return _band(pressure, [(90, 3), (100, 2), (110, 1), (219, 0)], 3)


def pulse_score(rate: float) -> int:
    """≤40: 3; 41-50: 1; 51-90: 0; 91-110: 1; 111-130: 2; ≥131: 3."""
    return _band(rate, [(40, 3), (50, 1), (90, 0), (110, 1), (130, 2)], 3)


def temperature_score(celsius: float) -> int:
    """≤35.0: 3; 35.1-36.0: 1; 36.1-38.0: 0; 38.1-39.0: 1; ≥39.1: 2."""
    return _band(round(celsius, 1), [(35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1)], 2)


def news2(obs: Observations) -> News2Score:
    """NEWS2 for one set of observations. Missing parameters score 0 and make the
    score incomplete, which callers must show: a partial NEWS2 understates risk."""
    parts: dict[Vital, int] = {}
    if obs.respiratory_rate is not None:
        parts[Vital.RESPIRATORY_RATE] = respiration_score(obs.respiratory_rate)
    if obs.spo2 is not None:
        parts[Vital.SPO2] = spo2_score(obs.spo2, on_oxygen=obs.on_oxygen, scale_2=obs.spo2_scale_2)
    parts[Vital.SUPPLEMENTAL_OXYGEN] = 2 if obs.on_oxygen else 0
    if obs.systolic_bp is not None:
        parts[Vital.SYSTOLIC_BP] = systolic_score(obs.systolic_bp)
    if obs.heart_rate is not None:
        parts[Vital.HEART_RATE] = pulse_score(obs.heart_rate)
    if obs.consciousness is not None:
        parts[Vital.CONSCIOUSNESS] = 0 if obs.consciousness is Consciousness.ALERT else 3
    if obs.temperature is not None:
        parts[Vital.TEMPERATURE] = temperature_score(obs.temperature)
    total = sum(parts.values())
    if total >= 7:
        risk = ClinicalRisk.HIGH
    elif total >= 5:
        risk = ClinicalRisk.MEDIUM
    elif any(score == 3 for score in parts.values()):
        risk = ClinicalRisk.LOW_MEDIUM
    else:
        risk = ClinicalRisk.LOW
    complete = all(
        value is not None
        for value in (
            obs.respiratory_rate,
            obs.spo2,
            obs.systolic_bp,
            obs.heart_rate,
            obs.consciousness,
            obs.temperature,
        )
    )
    return News2Score(total, parts, risk, complete)
