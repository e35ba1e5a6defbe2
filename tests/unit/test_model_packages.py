"""Model packages are verified on every load; metrics match hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medstream.models.metrics import auprc, auroc
from medstream.models.package import (
    PACKAGE_FILES,
    ModelIntegrityError,
    amend_card,
    latest,
    load_package,
    write_manifest,
)
from medstream.paths import REPO_ROOT


def make_package(root: Path, version: str) -> Path:
    folder = root / "toy" / version
    folder.mkdir(parents=True)
    for name in PACKAGE_FILES:
        (folder / name).write_text(json.dumps({"file": name, "version": version}))
    write_manifest(folder, "toy", version, {})
    return folder


def test_a_sealed_package_loads_and_a_tampered_one_is_refused(tmp_path: Path) -> None:
    folder = make_package(tmp_path, "1.0.0")
    package = load_package(folder)
    assert (package.name, package.version) == ("toy", "1.0.0")
    assert len(package.checksum) == 64
    (folder / "weights.pt").write_text("swapped weights")
    with pytest.raises(ModelIntegrityError, match="does not match the manifest"):
        load_package(folder)


def test_a_folder_without_manifest_is_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(ModelIntegrityError, match="no manifest"):
        load_package(tmp_path)


def test_latest_compares_versions_numerically(tmp_path: Path) -> None:
    for version in ("1.2.0", "1.10.0", "1.9.3"):
        make_package(tmp_path, version)
    assert latest(tmp_path, "toy").version == "1.10.0"
    with pytest.raises(ModelIntegrityError, match="medstream models train"):
        latest(tmp_path, "absent")


def test_the_committed_monitoring_package_verifies() -> None:
    package = latest(REPO_ROOT / "models", "monitoring")
    assert "Not for clinical use" in package.card
    for policy, scores in package.json("metrics.json")["held_out"].items():
        for hours in (6, 12, 24):
            held = scores[f"{hours}h"]
            assert held["model_auroc"] > held["news2_auroc"], (policy, hours)


def test_amending_a_card_replaces_its_section_and_reseals(tmp_path: Path) -> None:
    folder = make_package(tmp_path, "1.0.0")
    (folder / "card.md").write_text("# toy\n\n## Evaluation\nold\n\n## Limits\nsome\n")
    package = write_manifest(folder, "toy", "1.0.0", {"framework": "x"})
    amended = amend_card(package, "Evaluation", "new figures")
    assert amended.card == "# toy\n\n## Evaluation\nnew figures\n\n## Limits\nsome\n"
    assert amended.manifest["framework"] == "x"
    assert amended.checksum != package.checksum
    again = amend_card(load_package(folder), "Unseen data", "added")
    assert again.card.endswith("## Unseen data\nadded\n")


def test_auroc_and_auprc_against_hand_computed_values() -> None:
    labels, scores = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert auroc(labels, scores) == pytest.approx(0.75)
    assert auprc(labels, scores) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert auroc([0, 1, 0, 1], [1, 1, 1, 1]) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.1
    assert auroc(y, rng.random(2000)) == pytest.approx(0.5, abs=0.06)
    with pytest.raises(ValueError, match="both"):
        auroc([1, 1], [0.2, 0.3])
