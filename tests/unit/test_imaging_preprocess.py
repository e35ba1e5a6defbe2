"""DICOM preprocessing on the real chest film in pydicom-data, and on phantoms written
as DICOM with every photometric and rescale variant the pipeline must undo."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO

from medstream.deadletter import InvalidMessage
from medstream.imaging.phantom import LABELS, SIZE, phantom, to_dicom
from medstream.imaging.preprocess import dicom_pixels, normalise, preprocess_dicom


def _rewrite(data: bytes, edit: object) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    edit(ds)  # type: ignore[operator]
    out = DicomBytesIO()
    ds.save_as(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def chest_film() -> bytes:
    with open(get_testdata_file("RG1_UNCR.dcm"), "rb") as handle:  # type: ignore[arg-type]
        return handle.read()


def test_real_chest_film_is_inverted_resized_and_standardised(chest_film: bytes) -> None:
    ds = pydicom.dcmread(io.BytesIO(chest_film))
    assert (ds.Rows, ds.Columns, ds.BitsStored) == (1955, 1841, 15)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    x = preprocess_dicom(chest_film)
    assert x.shape == (SIZE, SIZE)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()
    assert x.min() >= -2.0 - 1e-6
    assert x.max() <= 2.0 + 1e-6
    # MONOCHROME1 is inverted: the mediastinum and spine (dense) come out brighter
    # than the lung fields on either side of them.
    middle = x[30:90, 58:70].mean()
    assert middle > x[30:90, 20:45].mean() + 0.5
    assert middle > x[30:90, 83:108].mean() + 0.5


def test_monochrome2_of_the_same_film_gives_the_same_input(chest_film: bytes) -> None:
    def to_monochrome2(ds: pydicom.Dataset) -> None:
        top = (1 << ds.BitsStored) - 1
        ds.PixelData = (top - ds.pixel_array.astype(np.int32)).astype(np.uint16).tobytes()
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.WindowCenter = str(top - float(ds.WindowCenter))  # the same window, mirrored

    flipped = _rewrite(chest_film, to_monochrome2)
    assert np.allclose(preprocess_dicom(flipped), preprocess_dicom(chest_film), atol=0.02)


def test_rescale_slope_and_intercept_are_applied(chest_film: bytes) -> None:
    """The same radiance stored as (v - intercept) / slope with a negative intercept:
    without the modality LUT the percentiles, and so the input, would differ."""

    def rescaled(ds: pydicom.Dataset) -> None:
        values = ds.pixel_array.astype(np.float64)
        ds.PixelData = np.rint((values + 3000) / 2).astype(np.uint16).tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = "2", "-6000"
        del ds.WindowCenter, ds.WindowWidth

    plain = _rewrite(
        chest_film, lambda ds: (delattr(ds, "WindowCenter"), delattr(ds, "WindowWidth"))
    )
    assert np.allclose(
        dicom_pixels(_rewrite(chest_film, rescaled)), dicom_pixels(plain) - 0, atol=2
    )


def test_the_window_is_applied(chest_film: bytes) -> None:
    """A narrow window saturates most of the film; the full-range window does not."""

    def narrow(ds: pydicom.Dataset) -> None:
        ds.WindowCenter, ds.WindowWidth = "9000", "2000"

    windowed = dicom_pixels(_rewrite(chest_film, narrow))
    saturated = np.isclose(windowed, windowed.min()) | np.isclose(windowed, windowed.max())
    assert saturated.mean() > 0.3
    full = dicom_pixels(chest_film)
    assert (np.isclose(full, full.min()) | np.isclose(full, full.max())).mean() < 0.05


@pytest.mark.parametrize(
    ("monochrome1", "bits", "slope", "intercept"),
    [
        (True, 12, 1.0, 0.0),
        (False, 16, 1.0, 0.0),
        (True, 10, 0.5, -200.0),
        (False, 8, 1.0, 0.0),
    ],
)
def test_phantom_as_dicom_matches_the_phantom(
    monochrome1: bool, bits: int, slope: float, intercept: float
) -> None:
    image = phantom(np.random.default_rng(3)).image
    data = to_dicom(image, monochrome1=monochrome1, bits=bits, slope=slope, intercept=intercept)
    tolerance = 0.05 if bits > 8 else 0.1
    assert np.abs(preprocess_dicom(data) - normalise(image)).mean() < tolerance


def test_non_square_film_is_padded_not_stretched() -> None:
    image = np.ones((300, 150), np.float32)
    image[:, :75] = 0
    x = normalise(image)
    assert x.shape == (SIZE, SIZE)
    # Padding sits on the left and right, the film keeps its 2:1 aspect ratio.
    assert np.allclose(x[:, :30], (0 - 0.5) / 0.25)
    assert np.allclose(x[:, -30:], (0 - 0.5) / 0.25)


def test_colour_images_are_rejected_with_a_reason() -> None:
    with open(get_testdata_file("SC_rgb.dcm"), "rb") as handle:  # type: ignore[arg-type]
        data = handle.read()
    with pytest.raises(InvalidMessage) as caught:
        preprocess_dicom(data)
    assert caught.value.code == "imaging.not_grayscale"


def test_files_without_pixels_are_rejected_with_a_reason() -> None:
    with pytest.raises(InvalidMessage) as caught:
        preprocess_dicom(b"\0" * 128 + b"DICM" + b"\0" * 64)
    assert caught.value.code == "imaging.unreadable_pixels"


def test_phantom_prevalence_and_labels_are_consistent() -> None:
    rng = np.random.default_rng(0)
    items = [phantom(rng, size=64) for _ in range(400)]
    for item in items:
        findings = [item.labels[n] for n in LABELS[1:]]
        assert item.labels["No Finding"] == (not any(findings))
        assert (item.ctr >= 0.52) == item.labels["Cardiomegaly"]
    share = np.mean([item.labels["Pneumothorax"] for item in items])
    assert 0.01 < share < 0.12  # drawn at 5%: the rare class stays rare
