"""The notes Transformer on negation and uncertainty, its explanations, and the
committed package against the rule baseline on phrasing it never saw in training."""

from __future__ import annotations

import pytest

from medstream.models.package import latest
from medstream.notes import model as notes
from medstream.notes.generator import reports
from medstream.notes.rules import OBSERVATIONS
from medstream.settings import get_settings

CASES = [
    ("No pleural effusion.", {"Pleural Effusion": "absent"}),
    ("Small left pleural effusion.", {"Pleural Effusion": "present"}),
    ("There is no evidence of pneumothorax.", {"Pneumothorax": "absent"}),
    ("A small pneumothorax cannot be excluded.", {"Pneumothorax": "uncertain"}),
    ("Right lower lobe opacity may represent atelectasis.", {"Atelectasis": "uncertain"}),
    ("Heart size is normal.", {"Cardiomegaly": "absent"}),
    ("Moderate cardiomegaly.", {"Cardiomegaly": "present"}),
    (
        "No pneumothorax, but there is a small right pleural effusion.",
        {"Pneumothorax": "absent", "Pleural Effusion": "present"},
    ),
    ("Findings concerning for pneumonia.", {"Pneumonia": "uncertain"}),
    ("Endotracheal tube in standard position.", {"Support Devices": "present"}),
    (
        "INDICATION: Evaluate for pneumonia.\nFINDINGS: The lungs are clear. No effusion.",
        {"Pneumonia": "not_mentioned", "Pleural Effusion": "absent", "No Finding": "present"},
    ),
]


@pytest.fixture(scope="module")
def labeller() -> notes.Labeller:
    return notes.Labeller(latest(get_settings().model_registry, notes.NAME))


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_negation_and_uncertainty(
    labeller: notes.Labeller, text: str, expected: dict[str, str]
) -> None:
    probs, _ = labeller.predict([text])
    labels = notes.labels_output(probs[0])
    assert set(labels) == set(OBSERVATIONS)
    for name, status in expected.items():
        assert labels[name]["status"] == status, (name, labels[name])


def test_explanation_points_at_the_mention_and_its_negation(labeller: notes.Labeller) -> None:
    text = "Heart size is normal. There is no pleural effusion."
    probs, (spans,) = labeller.predict([text])
    assert probs.shape == (1, len(OBSERVATIONS), 4)
    assert spans
    assert all(0 <= s["start"] < s["end"] <= len(text) for s in spans)
    assert max(abs(s["weight"]) for s in spans) == 1.0
    words = {text[s["start"] : s["end"]].lower() for s in spans}
    assert "effusion" in words or "pleural" in words


def test_the_package_beats_the_rules_on_held_out_phrasing(labeller: notes.Labeller) -> None:
    """A fresh sample of the template families that training never saw."""
    items = reports(150, seed=424242, heldout=True)
    model = notes.evaluate(items, labeller.probabilities([r.text for r in items]))
    baseline = notes.evaluate_rules(items)
    assert model["macro_f1"] > baseline["macro_f1"]
    assert model["accuracy"] > baseline["accuracy"]


def test_a_package_for_another_base_model_is_refused(
    labeller: notes.Labeller, tmp_path: object
) -> None:
    package = labeller.package
    forged = type(package)(
        package.name, package.version, package.folder, {**package.manifest, "base_sha256": "0" * 64}
    )
    with pytest.raises(Exception, match="another"):
        notes.Labeller(forged)
