"""The PHI tagger's mechanics: long notes are cut into overlapping windows and spans come
back in character offsets; the package is verified on load; the synthetic data keeps its
held-out parts out of training."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medstream.deid import synth, tagger
from medstream.models.package import ModelIntegrityError, latest, load_package
from medstream.settings import Settings

PACKAGE = latest(Settings().model_registry, tagger.NAME)


def test_a_long_note_is_cut_into_overlapping_windows_that_cover_every_token() -> None:
    text = " ".join(f"word{i}" for i in range(600))
    windows = tagger.windows([text])
    assert len(windows) > 1
    assert all(len(w.ids) <= tagger.WINDOW for w in windows)
    covered = {offset for w in windows for offset in w.offsets}
    assert len(covered) == len(tagger.tokenizer()(text, add_special_tokens=False)["input_ids"])


def test_spans_are_words_in_character_offsets_and_never_punctuation_alone() -> None:
    text = "Seen by Ann Lee / 3.2"
    offsets = [(0, 4), (5, 7), (8, 11), (12, 15), (16, 17), (18, 21)]
    rows = np.zeros((len(offsets), len(tagger.LABELS)))
    rows[:, 0] = 1.0
    name = tagger.LABELS.index("B-NAME")
    for index in (2, 3, 4):  # "Ann", "Lee" and the "/" after them
        rows[index] = 0
        rows[index, name] = 1.0
    spans = tagger.decode(text, rows, offsets, threshold=0.5)
    assert [(text[s.start : s.end], s.type) for s in spans] == [("Ann Lee", "NAME")]


def test_a_long_note_is_tagged_end_to_end_in_offsets(tmp_path: Path) -> None:
    model = tagger.Tagger(PACKAGE)
    note = "Chest clear. " * 150 + "Called daughter Amaka Obi at 0803 555 0199."
    (spans,) = model.spans([note])
    found = {note[s.start : s.end] for s in spans}
    assert any("Amaka" in f for f in found), found


def test_a_tampered_package_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / tagger.NAME / PACKAGE.version
    shutil.copytree(PACKAGE.folder, copy)
    weights = copy / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        load_package(copy)


def test_the_package_says_what_it_is_and_is_not_for() -> None:
    card = PACKAGE.card
    assert "Not for clinical use" in card
    assert "held out" in card.lower()
    metrics = PACKAGE.json("metrics.json")
    assert 0 < metrics["threshold"] < 1
    for name in ("heldout_kinds", "heldout_locales", "heldout_families", "in_distribution"):
        assert metrics[name]["token_recall"] > 0.8


def test_training_never_sees_a_held_out_kind_locale_or_family() -> None:
    training = synth.notes(200, seed=1)
    assert not {n.kind for n in training} & set(synth.HELDOUT_KINDS)
    assert not {loc for n in training for loc in n.locales} & set(synth.HELDOUT_LOCALES)
    assert not {f for n in training for f in n.families} & set(synth.HELDOUT_FAMILIES)
    held = synth.heldout_sets(40, seed=2)
    assert {n.kind for n in held["heldout_kinds"]} <= set(synth.HELDOUT_KINDS)
    assert {loc for n in held["heldout_locales"] for loc in n.locales} <= set(synth.HELDOUT_LOCALES)
    assert {f for n in held["heldout_families"] for f in n.families} <= set(synth.HELDOUT_FAMILIES)


def test_spans_point_at_their_values() -> None:
    for note in synth.notes(50, seed=3):
        for start, end, _ in note.spans:
            assert note.text[start:end].strip() == note.text[start:end]
            assert note.text[start:end]
