"""The de-identification policy: versioned, reviewable data files, one table per format.

``policy/fhir.csv`` names FHIR paths and ``policy/hl7v2.csv`` HL7 fields, each with an
action. DICOM has four tables (``dicom_e11.csv``, PS3.15 Table E.1-1; ``dicom.csv``, the
options and allow-list; ``dicom_private_keep.csv``; ``dicom_burned_in.csv``), resolved by
``medstream.deid.dicom_profile``. ``zip3_restricted.csv`` lists the
ZIP prefixes that generalise to 000. ``VERSION`` is recorded in every de-identified
record, so a record can always be traced to the rules that made it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from medstream.deid.dicom_profile import DicomProfile

POLICY_DIR = Path(__file__).resolve().parent / "policy"


@dataclass(frozen=True)
class Policy:
    """All tables of one policy version."""

    version: str
    fhir: dict[str, dict[str, str]]  # resource type -> path -> action
    hl7v2: dict[str, dict[int, str]]  # segment -> field number -> action
    dicom: DicomProfile
    restricted_zip3: frozenset[str]


def _rows(name: str, folder: Path) -> list[dict[str, str]]:
    with (folder / name).open(newline="") as handle:
        lines = [line for line in handle if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(lines))


@lru_cache(maxsize=4)
def load_policy(folder: Path = POLICY_DIR) -> Policy:
    """Read and check the policy tables in ``folder``."""
    fhir: dict[str, dict[str, str]] = {}
    for row in _rows("fhir.csv", folder):
        fhir.setdefault(row["resource"], {})[row["path"]] = row["action"]
    hl7: dict[str, dict[int, str]] = {}
    for row in _rows("hl7v2.csv", folder):
        hl7.setdefault(row["segment"], {})[int(row["field"])] = row["action"]
    dicom = DicomProfile.from_rows(
        _rows("dicom_e11.csv", folder),
        _rows("dicom.csv", folder),
        _rows("dicom_private_keep.csv", folder),
        _rows("dicom_burned_in.csv", folder),
    )
    zips = frozenset(row["zip3"] for row in _rows("zip3_restricted.csv", folder))
    return Policy(
        version=(folder / "VERSION").read_text().strip(),
        fhir=fhir,
        hl7v2=hl7,
        dicom=dicom,
        restricted_zip3=zips,
    )


def generalise_zip(value: str, restricted: frozenset[str]) -> str:
    """Safe Harbor ZIP: the first three digits, or 000 for a sparsely populated prefix."""
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) < 3:
        return "000"
    prefix = digits[:3]
    return "000" if prefix in restricted else prefix
