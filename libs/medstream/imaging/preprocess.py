"""DICOM chest radiograph to model input: pydicom for the pixel pipeline, MONAI for the
intensity and spatial transforms.

1. Modality LUT: RescaleSlope and RescaleIntercept (or a Modality LUT Sequence).
2. VOI LUT: the first window (WindowCenter/WindowWidth) or VOI LUT Sequence, when the
   file has one.
3. MONOCHROME1 is inverted, so that dense is bright for every input.
4. Percentile clipping (0.5 to 99.5) to [0, 1]: robust to windows that span the whole
   range, to collimator edges and to burnt-in markers.
5. Resize (area) so the longest side is SIZE, pad to a square, then standardise.

The phantoms of the training set go through steps 4 and 5 too, so training and serving
share one normalisation.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
from monai.transforms import Resize, ScaleIntensityRangePercentiles, SpatialPad
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from medstream.errors import InvalidMessage
from medstream.imaging.phantom import SIZE

LOWER_PERCENTILE, UPPER_PERCENTILE = 0.5, 99.5
MEAN, STD = 0.5, 0.25


def normalise(image: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Steps 4 and 5 on a 2-D image where dense is bright: (size, size) float32."""
    channel = np.asarray(image, np.float32)[None]
    scaled = ScaleIntensityRangePercentiles(
        lower=LOWER_PERCENTILE, upper=UPPER_PERCENTILE, b_min=0.0, b_max=1.0, clip=True
    )(channel)
    if scaled.shape[1:] != (size, size):
        scaled = Resize(spatial_size=size, size_mode="longest", mode="area")(scaled)
        scaled = SpatialPad(spatial_size=(size, size), value=0.0)(scaled)
    return np.asarray((np.asarray(scaled, np.float32)[0] - MEAN) / STD, np.float32)


def dicom_pixels(data: bytes) -> np.ndarray:
    """Steps 1 to 3: the first frame of a DICOM file as float32, dense bright.

    Raises InvalidMessage (a clear, PHI-free reason) for files that are not a 2-D
    grayscale image."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=False)
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001  (pydicom raises many types on bad files)
        raise InvalidMessage(
            "imaging.unreadable_pixels",
            f"The DICOM pixel data cannot be decoded ({type(exc).__name__}).",
        ) from None
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in {"MONOCHROME1", "MONOCHROME2"}:
        raise InvalidMessage(
            "imaging.not_grayscale",
            f"Photometric interpretation {photometric or 'missing'} is not a grayscale "
            "radiograph (MONOCHROME1 or MONOCHROME2).",
        )
    if pixels.ndim == 3:
        pixels = pixels[0]  # the first frame of a multi-frame image
    if pixels.ndim != 2 or min(pixels.shape) < 16:
        raise InvalidMessage(
            "imaging.not_2d", "The pixel data is not a 2-D image of at least 16x16."
        )
    values = np.asarray(apply_modality_lut(pixels, ds), np.float32)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        values = np.asarray(apply_voi_lut(values, ds, index=0), np.float32)
    if photometric == "MONOCHROME1":
        values = values.max() - values
    return values


def preprocess_dicom(data: bytes, size: int = SIZE) -> np.ndarray:
    """A DICOM file's bytes to the model's (size, size) input."""
    return normalise(dicom_pixels(data), size)


def display(model_input: np.ndarray) -> np.ndarray:
    """A model input back to an 8-bit grayscale image, for heatmap overlays."""
    return np.asarray(np.clip((model_input * STD + MEAN) * 255, 0, 255), np.uint8)
