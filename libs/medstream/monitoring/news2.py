"""NEWS2, the Royal College of Physicians' National Early Warning Score 2 (2017).

Pure functions: the baseline every monitoring result is emitted with. Bands follow the
RCP NEWS2 observation chart; SpO2 scale 2 is for patients with a target of 88-92%
(for example hypercapnic respiratory failure) and must be chosen by a clinician.

Real charting is partial: a row may hold only a heart rate and SpO2, or only a
temperature. ``picture`` therefore scores the latest *complete picture*: each
parameter's latest value, carried forward within a staleness limit per parameter
(``DEFAULT_STALE_MINUTES``: 4 hours for the vital signs and oxygen, 12 hours for
consciousness; ``MEDSTREAM_NEWS2_STALE_MINUTES`` overrides them), and says which values
were carried, how old each is, and which are missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
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
    on_oxygen: bool | None = None  # None: not charted (scored as air, and said missing)
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
    complete: bool  # every parameter had a value
    missing: tuple[Vital, ...] = ()  # parameters with no value: scored 0, so the total
    # understates the risk
    ages: dict[Vital, float] = field(default_factory=dict)  # minutes since each was charted
    scale: int = 1  # the SpO2 scale used

    @property
    def red_score(self) -> bool:
        """A single parameter scores 3: the RCP's red score, an urgent ward response
        whatever the total."""
        return any(score == 3 for score in self.parts.values())

    @property
    def carried_forward(self) -> tuple[Vital, ...]:
        """Parameters whose value came from an earlier row than the latest."""
        return tuple(v for v, age in self.ages.items() if age > 0)


# NEWS2's seven parameters, in the RCP chart's order.
PARAMETERS = (
    Vital.RESPIRATORY_RATE,
    Vital.SPO2,
    Vital.SUPPLEMENTAL_OXYGEN,
    Vital.SYSTOLIC_BP,
    Vital.HEART_RATE,
    Vital.CONSCIOUSNESS,
    Vital.TEMPERATURE,
)
FIELD = {
    Vital.RESPIRATORY_RATE: "respiratory_rate",
    Vital.SPO2: "spo2",
    Vital.SUPPLEMENTAL_OXYGEN: "on_oxygen",
    Vital.SYSTOLIC_BP: "systolic_bp",
    Vital.HEART_RATE: "heart_rate",
    Vital.CONSCIOUSNESS: "consciousness",
    Vital.TEMPERATURE: "temperature",
}
# How long a charted value still stands for the patient now. Vital signs and oxygen:
# 4 hours, the RCP's minimum observation frequency for a low score (12-hourly is the
# floor only for a NEWS2 of 0); consciousness changes less often and is charted less.
DEFAULT_STALE_MINUTES: dict[Vital, float] = {
    **dict.fromkeys(PARAMETERS, 240.0),
    Vital.CONSCIOUSNESS: 720.0,
}


def stale_limits(spec: str | None) -> dict[Vital, float]:
    """The staleness limits, with ``spec`` ("temperature=360,consciousness=720", in
    minutes) overriding the defaults. Raises ValueError naming what is wrong."""
    limits = dict(DEFAULT_STALE_MINUTES)
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        name, _, minutes = item.partition("=")
        try:
            vital = Vital(name.strip())
            value = float(minutes)
        except ValueError:
            raise ValueError(
                f"MEDSTREAM_NEWS2_STALE_MINUTES: {item.strip()!r} is not PARAMETER=MINUTES "
                f"with PARAMETER one of {', '.join(v.value for v in PARAMETERS)}"
            ) from None
        if vital not in limits or not value > 0:
            raise ValueError(
                f"MEDSTREAM_NEWS2_STALE_MINUTES: {item.strip()!r} must name a NEWS2 "
                "parameter and a positive number of minutes"
            )
        limits[vital] = value
    return limits


def picture(
    times: Sequence[float],
    sets: Sequence[Observations],
    end: int | None = None,
    limits: Mapping[Vital, float] = DEFAULT_STALE_MINUTES,
) -> tuple[Observations, dict[Vital, float]]:
    """The latest complete picture at row ``end`` (the last row by default): each
    parameter's latest value at or before it, if charted within its staleness limit,
    and each value's age in minutes. ``times`` are hours. A patient flagged for SpO2
    scale 2 in any row stays on it."""
    end = len(sets) - 1 if end is None else end
    now = times[end]
    values: dict[str, object] = {}
    ages: dict[Vital, float] = {}
    for vital in PARAMETERS:
        name = FIELD[vital]
        for index in range(end, -1, -1):
            age = (now - times[index]) * 60
            if age > limits[vital]:
                break
            value = getattr(sets[index], name)
            if value is not None:
                values[name] = value
                ages[vital] = round(age, 1)
                break
    scale_2 = any(s.spo2_scale_2 for s in sets[: end + 1])
    return replace(Observations(**values), spo2_scale_2=scale_2), ages  # type: ignore[arg-type]


def news2_now(
    times: Sequence[float],
    sets: Sequence[Observations],
    end: int | None = None,
    limits: Mapping[Vital, float] = DEFAULT_STALE_MINUTES,
) -> News2Score:
    """NEWS2 on the latest complete picture (``picture``), with its ages."""
    merged, ages = picture(times, sets, end, limits)
    score = news2(merged)
    return replace(score, ages=ages)


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
    score incomplete, which callers must show: a partial NEWS2 understates risk.
    Supplemental oxygen not charted scores as air and is listed as missing."""
    parts: dict[Vital, int] = {}
    if obs.respiratory_rate is not None:
        parts[Vital.RESPIRATORY_RATE] = respiration_score(obs.respiratory_rate)
    if obs.spo2 is not None:
        parts[Vital.SPO2] = spo2_score(
            obs.spo2, on_oxygen=bool(obs.on_oxygen), scale_2=obs.spo2_scale_2
        )
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
    missing = tuple(v for v in PARAMETERS if getattr(obs, FIELD[v]) is None)
    if total >= 7:
        risk = ClinicalRisk.HIGH
    elif total >= 5:
        risk = ClinicalRisk.MEDIUM
    elif any(score == 3 for score in parts.values()):
        risk = ClinicalRisk.LOW_MEDIUM
    else:
        risk = ClinicalRisk.LOW
    return News2Score(total, parts, risk, not missing, missing, scale=2 if obs.spo2_scale_2 else 1)


def detail(score: News2Score) -> dict[str, object]:
    """The CONTRACT's NEWS2 fields for a score on the latest complete picture."""
    return {
        "news2": score.total,
        "news2_risk": score.risk.value,
        "news2_partial": not score.complete,
        "news2_missing": [v.value for v in score.missing],
        "news2_stale_minutes": {v.value: age for v, age in score.ages.items()},
        "news2_red_score": score.red_score,
        "news2_spo2_scale": score.scale,
        "news2_parts": {v.value: part for v, part in score.parts.items()},
    }


def totals(values: Mapping[Vital, object], on_oxygen: object, scale_2: bool) -> object:
    """NEWS2 totals over arrays (numpy): ``values`` maps each numeric parameter (and
    CONSCIOUSNESS as a level, 0 for alert) to an array with NaN where there is no value;
    ``on_oxygen`` is a 0/1 array. The same bands as the scalar functions above, for
    scoring many moments at once."""
    import numpy as np  # noqa: PLC0415  (only where arrays are scored)

    def bands(v: object, limits: list[float], scores: list[int], top: int) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        out = np.select([v <= limit for limit in limits], scores, top)
        return np.where(np.isnan(v), 0, out)

    rr = bands(values[Vital.RESPIRATORY_RATE], [8, 11, 20, 24], [3, 1, 0, 2], 3)
    spo2 = np.asarray(values[Vital.SPO2], dtype=np.float64)
    oxygen = np.nan_to_num(np.asarray(on_oxygen, dtype=np.float64)) > 0
    if scale_2:
        low = bands(spo2, [83, 85, 87], [3, 2, 1], 0)
        high = bands(spo2, [94, 96], [1, 2], 3)
        spo2_part = np.where(np.isnan(spo2), 0, np.where(oxygen & (spo2 > 92), high, low))
    else:
        spo2_part = bands(spo2, [91, 93, 95], [3, 2, 1], 0)
    sbp = bands(values[Vital.SYSTOLIC_BP], [90, 100, 110, 219], [3, 2, 1, 0], 3)
    hr = bands(values[Vital.HEART_RATE], [40, 50, 90, 110, 130], [3, 1, 0, 1, 2], 3)
    level = np.asarray(values[Vital.CONSCIOUSNESS], dtype=np.float64)
    acvpu = np.where(np.nan_to_num(level) > 0, 3, 0)
    temperature = np.round(np.asarray(values[Vital.TEMPERATURE], dtype=np.float64), 1)
    temp = bands(temperature, [35.0, 36.0, 38.0, 39.0], [3, 1, 0, 1], 2)
    return rr + spo2_part + 2 * oxygen + sbp + hr + acvpu + temp
