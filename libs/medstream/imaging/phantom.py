"""A generator of synthetic chest-radiograph phantoms (PA view), for the reference CNN.

Each phantom is an attenuation map (brighter = denser, as MONOCHROME2 shows it) built
from simple shapes, then put through a simulated acquisition:

- **Anatomy.** Torso soft tissue; two lungs with a domed diaphragm and smooth vascular
  texture that fades towards the periphery; mediastinum and spine; a heart whose
  cardiothoracic ratio (CTR) is drawn per patient; nine posterior ribs a side and the
  clavicles. Body size, lung shape, centring and inspiration vary per patient.
- **Findings**, each drawn independently at a ward-like prevalence:
  - *Cardiomegaly*: CTR 0.52 to 0.64 (normal 0.38 to 0.52), so borderline hearts
    are hard;
  - *Lung Opacity*: one or two patchy, textured consolidations inside a lung, from
    faint to dense;
  - *Pleural Effusion*: fluid at one or both bases, from costophrenic blunting to a
    moderate effusion, with a meniscus rising laterally;
  - *Pneumothorax*: an apical and lateral crescent with no lung markings, from a
    thin rim to a large one, bounded by a faint visceral pleural line.
  - *No Finding* is the absence of all four.
- **Acquisition.** Rotation, scale and shift (patient positioning), exposure (gamma,
  contrast, brightness), detector blur, quantum noise, and sometimes a bright side
  marker in a corner.

The point is a reproducible, documented task with known ground truth, to train and
test the whole imaging path (DICOM preprocessing, CNN, explanation, worker) offline.
Phantoms are not radiographs: a model trained on them is **not for clinical use**.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SIZE = 128
FINDINGS = ("Cardiomegaly", "Lung Opacity", "Pleural Effusion", "Pneumothorax")
LABELS = ("No Finding", *FINDINGS)
# Ward-like prevalence (inpatient chest films); Pneumothorax is the rare class.
PREVALENCE = {
    "Cardiomegaly": 0.14,
    "Lung Opacity": 0.22,
    "Pleural Effusion": 0.16,
    "Pneumothorax": 0.05,
}


@dataclass(frozen=True)
class Phantom:
    """One phantom image and its ground truth."""

    image: np.ndarray  # float32, SIZE x SIZE, MONOCHROME2 (bright = dense)
    labels: dict[str, bool]
    ctr: float

    def target(self) -> np.ndarray:
        """The label vector in LABELS order."""
        return np.asarray([self.labels[name] for name in LABELS], dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Gaussian-filtered white noise (through the FFT), unit variance."""
    noise = rng.standard_normal((size, size))
    freq = np.fft.fftfreq(size)
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    kernel = np.exp(-(fx**2 + fy**2) * (scale * size) ** 2 / 2)
    smooth = np.real(np.fft.ifft2(np.fft.fft2(noise) * kernel))
    return np.asarray((smooth - smooth.mean()) / (smooth.std() + 1e-9), np.float32)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0.05:
        return image
    size = image.shape[0]
    freq = np.fft.fftfreq(size)
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    kernel = np.exp(-2 * (math.pi * sigma) ** 2 * (fx**2 + fy**2))
    return np.real(np.fft.ifft2(np.fft.fft2(image) * kernel)).astype(np.float32)


def draw_labels(rng: np.random.Generator) -> dict[str, bool]:
    """Independent findings at PREVALENCE; No Finding when none is present."""
    labels = {name: bool(rng.random() < PREVALENCE[name]) for name in FINDINGS}
    return {"No Finding": not any(labels.values()), **labels}


def phantom(
    rng: np.random.Generator, labels: dict[str, bool] | None = None, size: int = SIZE
) -> Phantom:
    """One phantom with ``labels`` (drawn at PREVALENCE when None)."""
    labels = labels or draw_labels(rng)
    lin = np.linspace(-1, 1, size, dtype=np.float32)
    y, x = np.meshgrid(lin, lin, indexing="ij")
    # Patient geometry.
    body = rng.uniform(0.80, 0.95)
    cx = rng.normal(0, 0.03)
    lung_w = rng.uniform(0.31, 0.36) * body
    lung_h = rng.uniform(0.52, 0.64)
    lung_y = rng.uniform(-0.12, 0.0)
    lung_dx = rng.uniform(0.42, 0.47) * body
    img = np.zeros((size, size), np.float32)
    torso = (x - cx) ** 2 / body**2 + (y / 1.25) ** 2 < 1
    img[torso] = 0.42
    texture = _smooth_noise(rng, size, 0.02)
    lungs: list[Lung] = []
    for side in (-1, 1):
        lx = cx + side * lung_dx
        # Narrower at the apex: the half-width grows with depth.
        width = lung_w * (0.75 + 0.25 * np.clip((y - lung_y + lung_h) / (2 * lung_h), 0, 1) * 1.6)
        mask = ((x - lx) / width) ** 2 + ((y - lung_y) / lung_h) ** 2 < 1
        lungs.append((side, lx, mask))
        # Vascular markings: stronger near the hilum, fading to the periphery.
        hilum = np.exp(-(((x - (lx - side * lung_w * 0.5)) / 0.35) ** 2 + ((y - 0.0) / 0.5) ** 2))
        img[mask] = (0.10 + 0.035 * texture * (0.4 + hilum) + 0.05 * hilum)[mask]
    # Mediastinum and spine.
    medi = (np.abs(x - cx) < 0.11 + 0.05 * (y > 0.1)) & (y > -0.95) & torso
    img[medi] = np.maximum(img[medi], 0.58)
    spine = (np.abs(x - cx) < 0.06) & torso
    img[spine] += 0.08
    # Heart: the cardiothoracic ratio sets its width.
    thorax_width = 2 * (lung_dx + lung_w)
    ctr = rng.uniform(0.52, 0.64) if labels["Cardiomegaly"] else rng.uniform(0.38, 0.52)
    heart_w = ctr * thorax_width / 2
    heart_x = cx + heart_w * rng.uniform(0.15, 0.3)
    heart_y = lung_y + lung_h * rng.uniform(0.45, 0.6)
    heart_h = rng.uniform(0.22, 0.3)
    heart = ((x - heart_x) / heart_w) ** 2 + ((y - heart_y) / heart_h) ** 2 < 1
    img[heart] = np.maximum(img[heart], 0.62)
    # Ribs (posterior arcs) and clavicles.
    for side, lx, _ in lungs:
        for k in range(9):
            y0 = lung_y - lung_h * 0.95 + k * lung_h * 0.21
            arc = y0 + 0.10 * ((x - lx) / (lung_w * 1.2)) ** 2 - side * 0.06 * (x - lx)
            rib = (np.abs(y - arc) < 0.022) & (np.abs(x - lx) < lung_w * 1.35) & torso
            img[rib] += 0.10
        clavicle = (np.abs(y - (lung_y - lung_h * 0.9 + 0.1 * side * (x - cx))) < 0.025) & (
            np.abs(x - (cx + side * 0.35)) < 0.3
        )
        img[clavicle] += 0.15
    _findings(img, rng, labels, lungs, texture, (x, y), (lung_y, lung_h, lung_w))
    return Phantom(_acquire(img, rng), labels, float(ctr))


Lung = tuple[int, float, np.ndarray]  # side (-1 right of image, +1 left), centre x, mask


def _findings(
    img: np.ndarray,
    rng: np.random.Generator,
    labels: dict[str, bool],
    lungs: list[Lung],
    texture: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray],
    shape: tuple[float, float, float],
) -> None:
    """Draw the lung and pleural findings into ``img`` (Cardiomegaly is the heart's
    size, drawn with the anatomy)."""
    x, y = grid
    lung_y, lung_h, lung_w = shape
    if labels["Lung Opacity"]:
        patchy = np.clip(0.6 + 0.6 * _smooth_noise(rng, img.shape[0], 0.04), 0, 1.5)
        for _ in range(rng.integers(1, 3)):
            side, lx, mask = lungs[rng.integers(0, 2)]
            oy = lung_y + rng.uniform(-0.5, 0.6) * lung_h
            ox = lx + rng.uniform(-0.5, 0.5) * lung_w
            sigma = rng.uniform(0.05, 0.15)
            blob = np.exp(-((x - ox) ** 2 + (y - oy) ** 2) / (2 * sigma**2))
            img += (mask * blob * patchy * rng.uniform(0.06, 0.30)).astype(np.float32)
    if labels["Pleural Effusion"]:
        sides = [lungs[rng.integers(0, 2)]] if rng.random() < 0.6 else lungs
        for side, lx, mask in sides:
            level = lung_y + lung_h * rng.uniform(0.55, 0.85)
            meniscus = level - 0.25 * np.clip(side * (x - lx) / lung_w, 0, 1.2) ** 2
            fluid = mask & (y > meniscus)
            edge = np.clip((y - meniscus) / 0.05, 0, 1)
            img[fluid] = np.maximum(img[fluid], (0.10 + 0.40 * edge)[fluid])
    if labels["Pneumothorax"]:
        side, lx, mask = lungs[rng.integers(0, 2)]
        depth = rng.uniform(0.08, 0.35)
        # The collapsed lung: the lung shrunk towards the hilum.
        sx, sy = lx - side * lung_w * depth * 0.5, lung_y + lung_h * depth * 0.5
        inner = ((x - sx) / (lung_w * (1 - depth))) ** 2 + (
            (y - sy) / (lung_h * (1 - depth * 0.6))
        ) ** 2
        collapsed = mask & (inner < 1)
        air = mask & ~collapsed
        img[air] = 0.05 + 0.01 * texture[air]
        line = mask & (np.abs(inner - 1) < 0.08)
        img[line] = rng.uniform(0.12, 0.24)


def _acquire(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Acquisition: positioning, exposure, blur, noise and a side marker."""
    size = img.shape[0]
    img = _affine(img, rng)
    img = np.clip(img, 0, None)
    img = img ** rng.uniform(0.8, 1.25) * rng.uniform(0.85, 1.15) + rng.uniform(-0.05, 0.05)
    img = _blur(img, rng.uniform(0.0, 1.0))
    img = img + rng.normal(0, rng.uniform(0.01, 0.05), img.shape).astype(np.float32)
    if rng.random() < 0.5:
        r0, c0 = rng.integers(3, 14), rng.choice([rng.integers(3, 14), size - 18])
        img[r0 : r0 + 6, c0 : c0 + 5] = 0.95
    return np.asarray(img, np.float32)


def _affine(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate (±6°), scale (0.92 to 1.08) and shift (±4%), nearest-neighbour-free
    (bilinear) and with air outside the field."""
    size = image.shape[0]
    angle = math.radians(rng.uniform(-6, 6))
    scale = rng.uniform(0.92, 1.08)
    shift = rng.uniform(-0.04, 0.04, 2)
    lin = np.linspace(-1, 1, size, dtype=np.float32)
    y, x = np.meshgrid(lin, lin, indexing="ij")
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    src_x = cos * (x - shift[0]) + sin * (y - shift[1])
    src_y = -sin * (x - shift[0]) + cos * (y - shift[1])
    fx = (src_x + 1) * (size - 1) / 2
    fy = (src_y + 1) * (size - 1) / 2
    x0 = np.clip(np.floor(fx).astype(int), 0, size - 2)
    y0 = np.clip(np.floor(fy).astype(int), 0, size - 2)
    wx, wy = np.clip(fx - x0, 0, 1), np.clip(fy - y0, 0, 1)
    out = (
        image[y0, x0] * (1 - wx) * (1 - wy)
        + image[y0, x0 + 1] * wx * (1 - wy)
        + image[y0 + 1, x0] * (1 - wx) * wy
        + image[y0 + 1, x0 + 1] * wx * wy
    )
    inside = (fx >= 0) & (fx <= size - 1) & (fy >= 0) & (fy <= size - 1)
    return np.where(inside, out, 0.0).astype(np.float32)


def phantoms(count: int, seed: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``count`` phantoms from ``seed``: images (N, size, size) and targets (N, 5)."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size), np.float32)
    targets = np.empty((count, len(LABELS)), np.float32)
    for i in range(count):
        item = phantom(rng, size=size)
        images[i], targets[i] = item.image, item.target()
    return images, targets


def to_dicom(
    image: np.ndarray,
    *,
    monochrome1: bool = True,
    bits: int = 12,
    slope: float = 1.0,
    intercept: float = 0.0,
    patient_id: str = "PHANTOM",
    seed: int = 0,
) -> bytes:
    """A phantom as a DICOM Part 10 CR file: stored values span ``bits`` bits, inverted
    when ``monochrome1``, with RescaleSlope ``slope`` and RescaleIntercept
    ``intercept``."""
    from pydicom.dataset import Dataset, FileMetaDataset  # noqa: PLC0415
    from pydicom.filebase import DicomBytesIO  # noqa: PLC0415
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid  # noqa: PLC0415

    low, high = float(image.min()), float(image.max())
    levels = (1 << bits) - 1
    scaled = (image - low) / max(high - low, 1e-9) * levels
    if monochrome1:
        scaled = levels - scaled
    # Stored values span the stored bits; the modality LUT maps s to slope * s + intercept.
    stored = np.clip(np.rint(scaled), 0, levels).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1")  # CR Image Storage
    sop = generate_uid(entropy_srcs=[f"phantom-{seed}-{patient_id}"])
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[f"study-{seed}-{patient_id}"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[f"series-{seed}-{patient_id}"])
    ds.Modality = "CR"
    ds.PatientID = patient_id
    ds.PatientName = "Phantom^Synthetic"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
    ds.PixelData = stored.tobytes()
    buffer = DicomBytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
