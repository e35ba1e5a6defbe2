"""NEWS2 against the bands of the RCP NEWS2 observation chart (2017), edge by edge,
and against worked examples."""

from __future__ import annotations

import pytest

from medstream.clinical import Vital
from medstream.monitoring.news2 import (
    DEFAULT_STALE_MINUTES,
    PARAMETERS,
    ClinicalRisk,
    Consciousness,
    Observations,
    detail,
    news2,
    news2_now,
    pulse_score,
    respiration_score,
    spo2_score,
    stale_limits,
    systolic_score,
    temperature_score,
)


@pytest.mark.parametrize(
    ("rate", "score"),
    [
        (8, 3),
        (9, 1),
        (11, 1),
        (12, 0),
        (20, 0),
        (21, 2),
        (24, 2),
        (25, 3),
        (40, 3),
    ],
)
def test_respiration_bands(rate: float, score: int) -> None:
    assert respiration_score(rate) == score


@pytest.mark.parametrize(
    ("spo2", "score"), [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
)
def test_spo2_scale_1_bands(spo2: float, score: int) -> None:
    assert spo2_score(spo2, on_oxygen=False, scale_2=False) == score
    assert spo2_score(spo2, on_oxygen=True, scale_2=False) == score


@pytest.mark.parametrize(
    ("spo2", "on_oxygen", "score"),
    [
        (83, False, 3),
        (84, True, 2),
        (85, False, 2),
        (86, True, 1),
        (87, False, 1),
        (88, True, 0),
        (92, True, 0),
        (93, False, 0),
        (97, False, 0),
        (93, True, 1),
        (94, True, 1),
        (95, True, 2),
        (96, True, 2),
        (97, True, 3),
    ],
)
def test_spo2_scale_2_bands(spo2: float, on_oxygen: bool, score: int) -> None:
    assert spo2_score(spo2, on_oxygen=on_oxygen, scale_2=True) == score


@pytest.mark.parametrize(
    ("bp", "score"), [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)]
)
def test_systolic_bands(bp: float, score: int) -> None:
    assert systolic_score(bp) == score


@pytest.mark.parametrize(
    ("hr", "score"),
    [(40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3)],
)
def test_pulse_bands(hr: float, score: int) -> None:
    assert pulse_score(hr) == score


@pytest.mark.parametrize(
    ("temp", "score"),
    [(35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2)],
)
def test_temperature_bands(temp: float, score: int) -> None:
    assert temperature_score(temp) == score


def test_a_healthy_adult_scores_zero() -> None:
    score = news2(Observations(16, 98, False, 125, 72, Consciousness.ALERT, 36.8))
    assert score.total == 0
    assert score.risk is ClinicalRisk.LOW
    assert score.complete


def test_a_single_red_parameter_is_low_medium_risk() -> None:
    score = news2(Observations(16, 98, False, 125, 72, Consciousness.VOICE, 36.8))
    assert score.total == 3
    assert score.risk is ClinicalRisk.LOW_MEDIUM


def test_worked_example_sepsis_is_high_risk() -> None:
    # RR 24 (2), SpO2 93 on air (2), air (0), SBP 98 (2), HR 118 (2), alert (0), 38.6 (1)
    score = news2(Observations(24, 93, False, 98, 118, Consciousness.ALERT, 38.6))
    assert score.parts == {
        Vital.RESPIRATORY_RATE: 2,
        Vital.SPO2: 2,
        Vital.SUPPLEMENTAL_OXYGEN: 0,
        Vital.SYSTOLIC_BP: 2,
        Vital.HEART_RATE: 2,
        Vital.CONSCIOUSNESS: 0,
        Vital.TEMPERATURE: 1,
    }
    assert score.total == 9
    assert score.risk is ClinicalRisk.HIGH


def test_worked_example_oxygen_counts_two_and_medium_risk() -> None:
    # RR 22 (2), SpO2 95 on oxygen (1), oxygen (2), SBP 115 (0), HR 88 (0), alert, 37.2 (0)
    score = news2(Observations(22, 95, True, 115, 88, Consciousness.ALERT, 37.2))
    assert score.total == 5
    assert score.risk is ClinicalRisk.MEDIUM


def test_missing_parameters_make_the_score_incomplete() -> None:
    score = news2(Observations(heart_rate=135))
    assert score.total == 3
    assert not score.complete


# The latest complete picture. Times are hours; each example is a chart a ward could
# hold, scored the way the RCP chart is read: each parameter's latest value.
A = Consciousness.ALERT
SEPTIC_ROW = Observations(24, 93, False, 98, 118, A, None)  # everything but temperature


def test_a_temperature_only_last_row_scores_the_whole_picture() -> None:
    """Scoring the last row alone gave 1; the chart says 9 (the sepsis example above)."""
    times = [10.0, 11.0]
    sets = [SEPTIC_ROW, Observations(temperature=38.6)]
    assert news2(sets[-1]).total == 1
    score = news2_now(times, sets)
    assert score.total == 9
    assert score.complete
    assert score.ages[Vital.TEMPERATURE] == 0
    assert score.ages[Vital.HEART_RATE] == 60
    assert set(score.carried_forward) == set(PARAMETERS) - {Vital.TEMPERATURE}


def test_supplemental_oxygen_is_carried_forward() -> None:
    """Oxygen charted at 10:00 with the full set; at 11:00 only HR and SpO2. The 2 points
    for oxygen stay."""
    times = [10.0, 11.0]
    sets = [
        Observations(22, 95, True, 115, 88, A, 37.2),
        Observations(spo2=95, heart_rate=90),
    ]
    score = news2_now(times, sets)
    assert score.parts[Vital.SUPPLEMENTAL_OXYGEN] == 2
    assert score.total == 5
    assert score.risk is ClinicalRisk.MEDIUM


def test_a_value_older_than_its_limit_expires_and_the_score_says_partial() -> None:
    """Temperature charted 5 hours ago is past the 4-hour default: missing, and the
    score is partial rather than silently low."""
    times = [5.0, 10.0]
    sets = [Observations(temperature=39.5), SEPTIC_ROW]
    score = news2_now(times, sets)
    assert Vital.TEMPERATURE in score.missing
    assert not score.complete
    assert score.total == 8
    out = detail(score)
    assert out["news2_partial"] is True
    assert out["news2_missing"] == ["temperature"]
    assert "temperature" not in out["news2_stale_minutes"]


def test_consciousness_is_carried_for_twelve_hours_by_default() -> None:
    full = Observations(16, 97, False, 125, 72, Consciousness.VOICE, 36.8)
    later = Observations(16, 97, False, 125, 72, None, 36.8)
    assert news2_now([0.0, 10.0], [full, later]).parts[Vital.CONSCIOUSNESS] == 3
    expired = news2_now([0.0, 13.0], [full, later])
    assert Vital.CONSCIOUSNESS in expired.missing


def test_staleness_limits_are_configurable_and_checked() -> None:
    limits = stale_limits("temperature=360, consciousness=60")
    assert limits[Vital.TEMPERATURE] == 360
    assert limits[Vital.HEART_RATE] == DEFAULT_STALE_MINUTES[Vital.HEART_RATE]
    times, sets = [5.0, 10.0], [Observations(temperature=39.5), SEPTIC_ROW]
    assert news2_now(times, sets, limits=limits).parts[Vital.TEMPERATURE] == 2
    with pytest.raises(ValueError, match="PARAMETER=MINUTES"):
        stale_limits("temp=360")
    with pytest.raises(ValueError, match="positive"):
        stale_limits("temperature=0")


def test_spo2_scale_2_for_a_hypercapnic_patient_stays_for_the_stay() -> None:
    """SpO2 90 on air scores 3 on scale 1 and 0 on scale 2; a flag in any earlier row
    keeps the patient on scale 2."""
    flagged = Observations(18, 90, False, 130, 80, A, 37.0, spo2_scale_2=True)
    later = Observations(spo2=90, heart_rate=80)
    score = news2_now([0.0, 1.0], [flagged, later])
    assert score.parts[Vital.SPO2] == 0
    assert score.scale == 2
    assert news2(Observations(spo2=90)).parts[Vital.SPO2] == 3
    # on oxygen, scale 2 scores a high saturation: 97% is 3
    assert news2(Observations(spo2=97, on_oxygen=True, spo2_scale_2=True)).parts[Vital.SPO2] == 3


def test_a_single_parameter_scoring_three_is_a_red_score() -> None:
    score = news2_now([0.0], [Observations(16, 97, False, 125, 135, A, 36.8)])
    assert score.total == 3
    assert score.red_score
    assert score.risk is ClinicalRisk.LOW_MEDIUM
    assert detail(score)["news2_red_score"] is True
    assert not news2_now([0.0], [Observations(22, 95, False, 125, 95, A, 36.8)]).red_score


def test_oxygen_not_charted_is_missing_not_air() -> None:
    score = news2(Observations(16, 97, None, 125, 72, A, 36.8))
    assert Vital.SUPPLEMENTAL_OXYGEN in score.missing
    assert score.total == 0
