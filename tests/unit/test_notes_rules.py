"""The rule baseline labels negation, uncertainty and scope as CheXpert does."""

from __future__ import annotations

import pytest

from medstream.notes.rules import OBSERVATIONS, Status, label, mentions

A, P, U, N = Status.ABSENT, Status.PRESENT, Status.UNCERTAIN, Status.NOT_MENTIONED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "No pleural effusion or pneumothorax.",
            {"Pleural Effusion": A, "Pneumothorax": A, "No Finding": P},
        ),
        (
            "Small left pleural effusion. No pneumothorax.",
            {"Pleural Effusion": P, "Pneumothorax": A, "No Finding": A},
        ),
        ("Without evidence of fracture.", {"Fracture": A}),
        ("Pleural effusion is not seen.", {"Pleural Effusion": A}),
        ("The previously seen pneumothorax has resolved.", {"Pneumothorax": A}),
        ("Negative for pneumonia.", {"Pneumonia": A}),
    ],
)
def test_negation(text: str, expected: dict[str, Status]) -> None:
    labels = label(text)
    for observation, status in expected.items():
        assert labels[observation] is status, (observation, labels[observation])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Cannot exclude early consolidation in the right lower lobe.",
            {"Consolidation": U, "No Finding": N},
        ),
        (
            "Findings may represent atelectasis versus pneumonia.",
            {"Atelectasis": U, "Pneumonia": U},
        ),
        ("Possible small left effusion.", {"Pleural Effusion": U}),
        ("Opacity concerning for pneumonia.", {"Pneumonia": U, "Lung Opacity": P}),
        ("Edema cannot be excluded.", {"Edema": U}),
    ],
)
def test_uncertainty(text: str, expected: dict[str, Status]) -> None:
    labels = label(text)
    for observation, status in expected.items():
        assert labels[observation] is status, (observation, labels[observation])


def test_negation_scope_ends_at_a_clause_boundary() -> None:
    labels = label(
        "There is no evidence of focal consolidation, but there is mild pulmonary edema."
    )
    assert labels["Consolidation"] is A
    assert labels["Edema"] is P


def test_present_beats_uncertain_beats_absent_across_mentions() -> None:
    labels = label("No effusion on the right. Small left pleural effusion.")
    assert labels["Pleural Effusion"] is P


def test_no_finding_ignores_support_devices() -> None:
    labels = label("Endotracheal tube 4 cm above the carina. Lungs are clear.")
    assert labels["Support Devices"] is P
    assert labels["No Finding"] is P


def test_every_observation_gets_a_status_and_mentions_have_offsets() -> None:
    text = "Mild cardiomegaly."
    assert set(label(text)) == set(OBSERVATIONS)
    (mention,) = mentions(text)
    assert text[mention.start : mention.end] == "cardiomegaly"
