"""DICOM Part 10: the preamble and size checks, parsing (pydicom) and normalisation."""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from io import BytesIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from medstream import budget
from medstream.clinical import DATE_MAX, DATE_MIN, ClinicalPayload, ImagingEvent, Kind
from medstream.errors import InvalidMessage
from medstream.formats.limits import LIMITS, InputLimits

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"


@dataclass(frozen=True)
class DicomUnit:
    """One DICOM instance with its patient and kinds."""

    dataset: Dataset
    ehr_patient_id: str | None
    kinds: list[Kind]


def derive_message_id(raw: bytes) -> str | None:
    """The CONTRACT's DICOM id: the SOPInstanceUID."""
    dataset = pydicom.dcmread(
        BytesIO(raw), stop_before_pixels=True, specific_tags=["SOPInstanceUID"]
    )
    uid = dataset.get("SOPInstanceUID")
    return f"dicom:{uid}" if uid else None


def parse(raw: bytes, max_bytes: int, limits: InputLimits = LIMITS) -> DicomUnit:
    """Check size and preamble, then parse; raise InvalidMessage with a stable code."""
    if len(raw) > max_bytes:
        raise InvalidMessage(
            "dicom.too_large",
            f"The DICOM file is {len(raw)} bytes, over the {max_bytes}-byte limit "
            "(MEDSTREAM_DICOM_MAX_BYTES).",
        )
    if (
        len(raw) < PREAMBLE_LENGTH + len(MAGIC)
        or raw[PREAMBLE_LENGTH : PREAMBLE_LENGTH + 4] != MAGIC
    ):
        raise InvalidMessage(
            "dicom.no_preamble",
            "The file has no DICOM Part 10 preamble ('DICM' at byte 128).",
        )
    dataset = read(raw)
    check_structure(dataset, limits)
    if any(element.tag.group == 0 for element in dataset):
        raise InvalidMessage(
            "dicom.command_elements",
            "The data set holds Command Set (0000,xxxx) elements, which a stored file may not.",
        )
    if not dataset.get("SOPInstanceUID"):
        raise InvalidMessage("dicom.no_sop_instance", "The file has no SOPInstanceUID.")
    patient = str(dataset.get("PatientID") or "").strip() or None
    kinds = [Kind.IMAGING] if "PixelData" in dataset else []
    if kinds:
        _check_pixel_length(dataset)
    # pydicom reads some data sets it cannot write back; de-identification must write
    # them, so such a file is rejected here, at the door, not later in deid.
    to_bytes(dataset)
    if kinds and patient is None:
        raise InvalidMessage("dicom.no_patient", "The image has no PatientID.")
    return DicomUnit(dataset, patient, kinds)


def _check_pixel_length(dataset: Dataset) -> None:
    """pydicom reads a file cut short without complaint; the pixel data length tells."""
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        return
    try:
        compressed = syntax.is_compressed
    except (ValueError, AttributeError):  # not a UID at all, or not a transfer syntax
        raise InvalidMessage(
            "dicom.bad_transfer_syntax", "TransferSyntaxUID is not a DICOM transfer syntax."
        ) from None
    if compressed:
        return
    try:
        expected = (
            int(dataset.Rows)
            * int(dataset.Columns)
            * int(dataset.get("SamplesPerPixel", 1))
            * int(dataset.get("NumberOfFrames", 1) or 1)
            * int(dataset.BitsAllocated)
        ) // 8
    except (AttributeError, TypeError, ValueError):
        raise InvalidMessage(
            "dicom.bad_image_header", "Rows, Columns or BitsAllocated is missing or invalid."
        ) from None
    if len(dataset.PixelData or b"") < expected:
        raise InvalidMessage(
            "dicom.truncated",
            f"The pixel data holds {len(dataset.PixelData or b'')} of the {expected} bytes "
            "its header declares; the file was cut short.",
        )


def read(raw: bytes) -> Dataset:
    """Parse Part 10 bytes, with every element decoded now so errors surface here."""
    try:
        dataset = pydicom.dcmread(BytesIO(raw))
        for _ in dataset.iterall():
            pass
        dataset.file_meta  # noqa: B018  (the meta group must be readable too)
    except Exception:  # noqa: BLE001  (pydicom raises a dozen exception types on corrupt input)
        raise InvalidMessage(
            "dicom.unparsable", "The DICOM data set could not be parsed."
        ) from None
    return dataset


def check_structure(dataset: Dataset, limits: InputLimits = LIMITS) -> None:
    """Count the elements and the sequence depth with an explicit stack, and check
    every date against the accepted window; raise InvalidMessage if one is exceeded."""
    stack: list[tuple[Dataset, int]] = [(dataset, 0)]
    elements = 0
    while stack:
        current, depth = stack.pop()
        for element in current:
            elements += 1
            if elements % 1000 == 0:
                budget.check()
            if elements > limits.dicom_max_elements:
                raise InvalidMessage(
                    "dicom.too_many_elements",
                    f"The data set has more than {limits.dicom_max_elements} elements.",
                )
            if element.VR == "SQ":
                if depth + 1 > limits.dicom_max_sequence_depth:
                    raise InvalidMessage(
                        "dicom.too_deep",
                        f"Sequences nest deeper than the limit of "
                        f"{limits.dicom_max_sequence_depth} levels.",
                    )
                stack.extend((item, depth + 1) for item in element.value)
            elif element.VR in ("DA", "DT") and _year_out_of_range(element.value):
                raise InvalidMessage(
                    "dicom.date_out_of_range",
                    f"A date element is outside {DATE_MIN.year} to {DATE_MAX.year}.",
                )


def _year_out_of_range(value: object) -> bool:
    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    for item in values:
        text = str(item or "").strip()
        if (
            len(text) >= 4
            and text[:4].isdigit()
            and not DATE_MIN.year <= int(text[:4]) <= DATE_MAX.year
        ):
            return True
    return False


def to_bytes(dataset: Dataset) -> bytes:
    """Part 10 bytes of ``dataset``, keeping its transfer syntax."""
    out = BytesIO()
    try:
        dataset.save_as(out, enforce_file_format=True)
    except (ValueError, TypeError, OverflowError, AttributeError, KeyError, struct.error):
        raise InvalidMessage(
            "dicom.unwritable", "The de-identified data set could not be written as DICOM."
        ) from None
    return out.getvalue()


def normalise(raw: bytes, patient: str) -> list[ClinicalPayload]:
    """The imaging event of one instance, referring to the patient as ``patient``."""
    dataset = pydicom.dcmread(BytesIO(raw), stop_before_pixels=True)
    return [
        ImagingEvent(
            patient=patient,
            sop_instance_uid=str(dataset.SOPInstanceUID),
            study_instance_uid=str(dataset.get("StudyInstanceUID") or "") or None,
            modality=str(dataset.get("Modality") or "") or None,
            rows=int(dataset.Rows) if "Rows" in dataset else None,
            columns=int(dataset.Columns) if "Columns" in dataset else None,
            dicom_base64=base64.b64encode(raw).decode("ascii"),
        )
    ]
