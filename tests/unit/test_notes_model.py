"""The mention-level notes model: negation and hedging in context, findings in other
words, probabilities that mean P(present), explanations on the mention and its cue, and
the committed package against the rule baseline on phrasing it never saw."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medstream.models.package import ModelIntegrityError, latest, load_package
from medstream.notes import model as notes
from medstream.notes.generator import reports
from medstream.notes.mentions import Mention
from medstream.notes.rules import OBSERVATIONS
from medstream.settings import get_settings

CASES = [
    ("No pleural effusion.", {"Pleural Effusion": "absent"}),
    ("Small left pleural effusion.", {"Pleural Effusion": "present"}),
    ("There is no evidence of pneumothorax.", {"Pneumothorax": "absent"}),
    ("A small pneumothorax cannot be excluded.", {"Pneumothorax": "uncertain"}),
    (
        "Right lower lobe opacity may represent atelectasis.",
        {"Atelectasis": "uncertain", "Lung Opacity": "present"},
    ),
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
    # a negated list: the last item too
    (
        "No focal airspace consolidation, effusion or pneumothorax is seen.",
        {"Consolidation": "absent", "Pleural Effusion": "absent", "Pneumothorax": "absent"},
    ),
    ("Mild pulmonary edema. No focal consolidation.", {"No Finding": "absent"}),
    # findings in other words, and words that name none of the 14
    ("Extensive airspace disease at the left base.", {"Lung Opacity": "present"}),
    ("Aspiration pneumonitis in the right lower lobe.", {"Pneumothorax": "not_mentioned"}),
    ("Small pericardial effusion.", {"Pleural Effusion": "not_mentioned"}),
    ("Small left pnuemothorax.", {"Pneumothorax": "present"}),
]


# The rules the hybrid adds (``notes.with_rules``), in sentences written for this test.
HYBRID_CASES = [
    ("There is no change in the small right pleural effusion.", {"Pleural Effusion": "present"}),
    ("Left basilar atelectasis, not significantly changed.", {"Atelectasis": "present"}),
    ("The left lower lobe pneumonia has not yet resolved.", {"Pneumonia": "present"}),
    ("The feeding tube has not been removed.", {"Support Devices": "present"}),
    ("No increased density at the bases to suggest pneumonia.", {"Pneumonia": "absent"}),
    ("Pneumothorax: none.", {"Pneumothorax": "absent"}),
    ("A tiny apical pneumothorax is suspected.", {"Pneumothorax": "uncertain"}),
    ("Equivocal right basilar consolidation.", {"Consolidation": "uncertain"}),
    ("Compression fracture of T12, age indeterminate.", {"Fracture": "present"}),
    ("No interval resolution of the right basilar consolidation.", {"Consolidation": "present"}),
    ("The bilateral effusions are not smaller than before.", {"Pleural Effusion": "present"}),
    ("The right lower lobe opacity has only partially cleared.", {"Lung Opacity": "present"}),
    ("The nasogastric tube has not been repositioned.", {"Support Devices": "present"}),
    ("No further growth of the left hilar mass.", {"Lung Lesion": "present"}),
    (
        "The left basilar opacity has not resolved and there is no pleural effusion.",
        {"Lung Opacity": "present", "Pleural Effusion": "absent"},
    ),
    ("Undisplaced fractures of the right 6th and 7th ribs.", {"Fracture": "present"}),
    ("Overlapping vessels rather than a nodule at the right base.", {"Lung Lesion": "absent"}),
    ("The right pigtail catheter has been taken out and removed.", {"Support Devices": "absent"}),
    ("Small apical pneumothorax after left chest drain removal.", {"Support Devices": "absent"}),
]


def _one(text: str, phrase: str, observation: str) -> list[notes.Found]:
    start = text.lower().index(phrase.lower())
    return [notes.Found(0, Mention(start, start + len(phrase), (observation,)), 0, 1, 3)]


def test_a_reading_with_no_word_for_it_moves_to_present() -> None:
    """Absent or uncertain where the sentence has no negation, normal state, hedge or
    comparison: most of the mass moves to present; with any such word, nothing moves."""
    text = "Acute nondisplaced fracture of the left clavicle. Contusion may be present."
    absent = np.array([[0.02, 0.95, 0.02, 0.01]])
    moved = notes.with_rules([text], _one(text, "fracture", "Fracture"), absent)
    assert moved[0].argmax() == notes.PRESENT
    assert moved[0].sum() == pytest.approx(1.0)
    uncertain = np.array([[0.2, 0.0, 0.8, 0.0]])
    assert notes.with_rules([text], _one(text, "fracture", "Fracture"), uncertain)[0].argmax() == 0
    for cued in (
        "No acute fracture of the left clavicle.",
        "Lucency in the clavicle, possibly a fracture.",
        "A vascular groove rather than a fracture.",
        "Fracture of the left clavicle excluded.",
    ):
        found = _one(cued, "fracture", "Fracture")
        assert np.array_equal(notes.with_rules([cued], found, absent), absent), cued


def test_a_pseudo_negation_speaks_of_its_own_mention_only() -> None:
    """ "Not larger" denies a change, not the nodule; "no new effusion" after a
    pseudo-negation is still a negation of the effusion."""
    absent = np.array([[0.02, 0.95, 0.02, 0.01]])
    text = "The right upper lobe nodule is not larger than on the prior study."
    moved = notes.with_rules([text], _one(text, "nodule", "Lung Lesion"), absent)
    assert moved[0].argmax() == notes.PRESENT
    text = "The basal opacity has not cleared, and there is no new effusion."
    found = _one(text, "effusion", "Pleural Effusion")
    assert np.array_equal(notes.with_rules([text], found, absent), absent)


def test_a_planned_removal_leaves_the_device_in() -> None:
    present = np.array([[0.9, 0.05, 0.04, 0.01]])
    text = "Removal of the left chest drain is recommended."
    found = _one(text, "chest drain", "Support Devices")
    assert np.array_equal(notes.with_rules([text], found, present), present)
    text = "Status post removal of the left chest drain."
    assert (
        notes.with_rules([text], _one(text, "chest drain", "Support Devices"), present)[0].argmax()
        == notes.ABSENT
    )


def test_a_site_named_alone_is_no_finding_to_move() -> None:
    """ "Mediastinal clips": the mediastinum named as a site, with no word for a finding."""
    text = "Mediastinal surgical clips are seen."
    absent = np.array([[0.02, 0.95, 0.02, 0.01]])
    found = _one(text, "Mediastinal", "Enlarged Cardiomediastinum")
    assert np.array_equal(notes.with_rules([text], found, absent), absent)


@pytest.mark.parametrize(("text", "expected"), HYBRID_CASES)
def test_the_hybrid_reads_what_the_rules_know(
    labeller: notes.Labeller, text: str, expected: dict[str, str]
) -> None:
    labels = notes.labels_output(labeller.probabilities([text])[0])
    for name, status in expected.items():
        assert labels[name]["status"] == status, (name, labels[name])


def test_the_hybrid_only_moves_what_a_rule_governs() -> None:
    """A confident reading that no rule speaks to is left exactly as it was."""
    texts = ["Large right pleural effusion."]
    found = [notes.Found(0, Mention(12, 28, ("Pleural Effusion",)), 0, 1, 3)]
    probs = np.array([[0.97, 0.01, 0.01, 0.01]])
    assert np.array_equal(notes.with_rules(texts, found, probs), probs)


@pytest.fixture(scope="module")
def labeller() -> notes.Labeller:
    return notes.Labeller(latest(get_settings().model_registry, notes.NAME))


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_statuses_in_context(labeller: notes.Labeller, text: str, expected: dict[str, str]) -> None:
    scores, _ = labeller.predict([text])
    labels = notes.labels_output(scores[0])
    assert set(labels) == set(OBSERVATIONS)
    for name, status in expected.items():
        assert labels[name]["status"] == status, (name, labels[name])


def test_probability_is_p_present_and_scores_sum_to_one(labeller: notes.Labeller) -> None:
    text = "No pneumothorax. Small right pleural effusion. Possible early pneumonia."
    scores, _ = labeller.predict([text])
    labels = notes.labels_output(scores[0])
    for label in labels.values():
        assert label["probability"] == label["scores"]["present"]
        assert sum(label["scores"].values()) == pytest.approx(1, abs=1e-3)
    assert labels["Pleural Effusion"]["probability"] > 0.5
    assert labels["Pneumothorax"]["probability"] < 0.2  # absent: unlikely present
    assert labels["Fracture"]["probability"] == 0  # not mentioned: nothing says present
    assert labels["Fracture"]["scores"]["not_mentioned"] == 1
    # a hedged finding is not stated present: low P(present), most weight on uncertain
    pneumonia = labels["Pneumonia"]
    assert pneumonia["probability"] < labels["Pleural Effusion"]["probability"]
    assert pneumonia["scores"]["uncertain"] > 0.5


def test_aggregation_follows_chexpert_in_probabilities() -> None:
    """Two mentions of one observation: P(present) = 1 - (1 - q1)(1 - q2), and so on;
    No Finding from the pathology."""
    effusion = ("Pleural Effusion",)
    windows = [
        notes.Found(0, Mention(0, 1, effusion), 0, 1, 1),
        notes.Found(0, Mention(2, 3, effusion), 0, 2, 2),
    ]
    q = np.array([[0.5, 0.3, 0.1, 0.1], [0.2, 0.2, 0.4, 0.2]])
    scores = notes.aggregate(1, windows, q)
    k = OBSERVATIONS.index("Pleural Effusion")
    present = 1 - 0.5 * 0.8
    present_or_uncertain = 1 - 0.4 * 0.4
    assert scores[0, k, 0] == pytest.approx(present)
    assert scores[0, k, 2] == pytest.approx(present_or_uncertain - present)
    assert scores[0, k, 3] == pytest.approx(0.1 * 0.2)
    assert scores[0, k].sum() == pytest.approx(1)
    no_finding = scores[0, OBSERVATIONS.index("No Finding")]
    assert no_finding[0] == pytest.approx(1 - present_or_uncertain)  # healthy
    assert no_finding[1] == pytest.approx(present)  # a pathology present
    assert notes.decide(scores)[0, k] == 0


def test_explanation_points_at_the_mention_and_its_negation(labeller: notes.Labeller) -> None:
    text = "Heart size is normal. There is no pleural effusion."
    scores, (spans,) = labeller.predict([text])
    assert scores.shape == (1, len(OBSERVATIONS), 4)
    assert spans
    assert all(0 <= s["start"] < s["end"] <= len(text) for s in spans)
    assert max(abs(s["weight"]) for s in spans) == 1.0
    words = {text[s["start"] : s["end"]].lower() for s in spans}
    assert words & {"effusion", "pleural"}
    assert words & {"no", "normal"}


def test_the_package_beats_the_rules_on_held_out_phrasing(labeller: notes.Labeller) -> None:
    """A fresh sample of the template families that training never saw."""
    items = reports(150, seed=424242, heldout=True)
    model = notes.evaluate(items, labeller.probabilities([r.text for r in items]))
    baseline = notes.evaluate_rules(items)
    assert model["macro_f1"] > baseline["macro_f1"]
    assert model["accuracy"] > baseline["accuracy"]


def test_a_package_for_another_base_model_is_refused(labeller: notes.Labeller) -> None:
    package = labeller.package
    forged = type(package)(
        package.name, package.version, package.folder, {**package.manifest, "base_sha256": "0" * 64}
    )
    with pytest.raises(ModelIntegrityError, match="another"):
        notes.Labeller(forged)


def test_a_package_of_the_old_architecture_is_refused() -> None:
    old = load_package(get_settings().model_registry / notes.NAME / "1.0.0")
    with pytest.raises(ModelIntegrityError, match="architecture"):
        notes.Labeller(old)


def test_the_package_seals_its_vocabulary(labeller: notes.Labeller, tmp_path: Path) -> None:
    copy = tmp_path / notes.NAME / labeller.package.version
    shutil.copytree(labeller.package.folder, copy)
    with (copy / "vocabulary.tsv").open("a") as handle:
        handle.write("Pneumothorax\tphrase\tair\n")
    with pytest.raises(ModelIntegrityError):
        load_package(copy)
    assert labeller.package.manifest["vocabulary"]["version"] == labeller.vocabulary.version
