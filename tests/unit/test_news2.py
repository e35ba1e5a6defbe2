"""NEWS2 against the bands of the RCP NEWS2 observation chart (2017), edge by edge,
and against worked examples."""

from __future__ import annotations

import pytest

from medstream.clinical import Vital
from medstream.monitoring.news2 import (
    ClinicalRisk,
    Consciousness,
    Observations,
    news2,
    pulse_score,
    respiration_score,
    spo2_score,
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
