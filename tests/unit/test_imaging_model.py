"""The committed imaging package: verified at load, labels phantoms it never saw, and
explains with a heatmap that lies over the finding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medstream.imaging import model as imaging
from medstream.imaging.phantom import LABELS, phantom
from medstream.imaging.preprocess import normalise
from medstream.models.package import latest
from medstream.settings import get_settings


@pytest.fixture(scope="module")
def classifier() -> imaging.Classifier:
    return imaging.Classifier(latest(get_settings().model_registry, imaging.NAME))


def _case(seed: int, **present: bool) -> np.ndarray:
    findings = {name: present.get(name.replace(" ", "_").lower(), False) for name in LABELS[1:]}
    labels = {"No Finding": not any(findings.values()), **findings}
    return normalise(phantom(np.random.default_rng(seed), labels).image)


def test_card_names_its_labels_and_says_not_for_clinical_use(
    classifier: imaging.Classifier,
) -> None:
    card = classifier.package.card
    assert "Not for clinical use" in card
    for name in LABELS:
        assert name in card
    assert classifier.labels == list(LABELS)


def test_phantoms_it_never_saw_are_labelled(classifier: imaging.Classifier) -> None:
    seeds = range(900, 910)
    normal = imaging.predict_batch(classifier, np.stack([_case(s) for s in seeds]))
    effusion = imaging.predict_batch(
        classifier, np.stack([_case(s, pleural_effusion=True) for s in seeds])
    )
    heart = imaging.predict_batch(
        classifier, np.stack([_case(s, cardiomegaly=True) for s in seeds])
    )
    mean = lambda preds, name: float(np.mean([p.labels[name] for p in preds]))  # noqa: E731
    assert mean(effusion, "Pleural Effusion") > 0.7
    assert mean(normal, "Pleural Effusion") < 0.3
    assert mean(heart, "Cardiomegaly") > 0.6
    assert mean(normal, "Cardiomegaly") < 0.3
    assert mean(normal, "No Finding") > 0.6


def test_heatmap_is_a_png_over_the_film_and_explains_the_top_finding(
    classifier: imaging.Classifier,
) -> None:
    x = _case(901, pleural_effusion=True)
    (prediction,) = imaging.predict_batch(classifier, x[None])
    assert prediction.explained == "Pleural Effusion"
    image = Image.open(io.BytesIO(prediction.heatmap_png))
    assert image.format == "PNG"
    assert image.size == (256, 256)
    assert image.mode == "RGB"


def test_gradcam_weighs_the_lower_chest_for_an_effusion(classifier: imaging.Classifier) -> None:
    """Effusions sit at the bases: the heatmap's mass lies mostly in the lower half."""
    inputs = np.stack([_case(s, pleural_effusion=True) for s in range(920, 930)])[:, None]
    _, targets, maps = classifier.predict(inputs)
    explained = targets == LABELS.index("Pleural Effusion")
    assert explained.sum() >= 7  # small effusions (costophrenic blunting) can be missed
    lower = maps[explained, 64:, :].sum(axis=(1, 2)) / maps[explained].sum(axis=(1, 2)).clip(1e-9)
    assert float(np.median(lower)) > 0.5
