"""DICOM Part 10: the preamble and size checks, parsing (pydicom) and normalisation."""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from io import BytesIO

import pydicom
from pydicom.dataset import Dataset

from medstream.clinical import ClinicalPayload, ImagingEvent, Kind
from medstream.deadletter import InvalidMessage

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


def parse(raw: bytes, max_bytes: int) -> DicomUnit:
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
