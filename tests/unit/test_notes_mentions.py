"""The notes vocabulary finds mentions: in other words, longest first, blocked where a
phrase names none of the 14, and through dictation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from medstream.notes.mentions import Vocabulary, edits, vocabulary


def found(text: str) -> dict[str, tuple[str, ...]]:
    return {text[m.start : m.end]: m.observations for m in vocabulary().find(text)}


@pytest.mark.parametrize(
    ("text", "phrase", "observations"),
    [
        ("Extensive airspace disease at the left base.", "airspace disease", ("Lung Opacity",)),
        ("A closure device projects over the heart.", "closure device", ("Support Devices",)),
        (
            "Blunting of the left costophrenic angle.",
            "Blunting of the left costophrenic angle",
            ("Pleural Effusion",),
        ),
        ("Mild pulmonary vascular congestion.", "pulmonary vascular congestion", ("Edema",)),
        (
            "Small right hydropneumothorax.",
            "hydropneumothorax",
            ("Pneumothorax", "Pleural Effusion"),
        ),
        (
            "Heart and mediastinum are normal.",
            "Heart and mediastinum",
            ("Cardiomegaly", "Enlarged Cardiomediastinum"),
        ),
        ("Fractured sternotomy wire.", "Fractured sternotomy wire", ("Support Devices",)),
        ("Congestive heart failure.", "Congestive heart failure", ("Edema",)),
    ],
)
def test_phrases_in_other_words(text: str, phrase: str, observations: tuple[str, ...]) -> None:
    assert found(text).get(phrase) == observations


@pytest.mark.parametrize(
    "text",
    ["Aspiration pneumonitis.", "Small pericardial effusion.", "No pneumoperitoneum."],
)
def test_blocking_phrases_hide_the_shorter_match(text: str) -> None:
    assert found(text) == {}


@pytest.mark.parametrize(
    ("text", "typo", "observation"),
    [
        ("Small left pnuemothorax.", "pnuemothorax", "Pneumothorax"),
        ("Small left pneumo thorax.", "pneumo thorax", "Pneumothorax"),
        ("Moderate cardiomegally.", "cardiomegally", "Cardiomegaly"),
        ("Bibasilar atelectesis.", "atelectesis", "Atelectasis"),
        ("Right plural effusion.", "plural effusion", "Pleural Effusion"),
    ],
)
def test_dictation_errors(text: str, typo: str, observation: str) -> None:
    assert found(text).get(typo) == (observation,)


def test_short_words_are_never_matched_loosely() -> None:
    assert found("Barium enema.") == {}  # one letter from edema, another word entirely


def test_edit_distance() -> None:
    assert edits("pnuemothorax", "pneumothorax", 2) == 1  # a transposition
    assert edits("cardiomegally", "cardiomegaly", 2) == 1
    assert edits("abcdef", "uvwxyz", 2) == 3  # gives up past the limit


def test_the_vocabulary_is_versioned_data(tmp_path: Path) -> None:
    assert vocabulary().version != "unversioned"
    assert len(vocabulary().sha256) == 64
    bad = tmp_path / "vocabulary.tsv"
    bad.write_text("Pneumothorax\tregex\tptx\n")
    with pytest.raises(ValueError, match="kind must be"):
        Vocabulary.load(bad)
    bad.write_text("Pneumothorax ptx\n")
    with pytest.raises(ValueError, match="three tab-separated"):
        Vocabulary.load(bad)
