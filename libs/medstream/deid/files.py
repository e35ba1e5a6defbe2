"""De-identifying whole files for ``medstream deid fhir|hl7v2|dicom``: the same engine
as the deid service, applied to each unit of a file."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from medstream.clinical import SourceFormat
from medstream.deid.engine import DeidEngine
from medstream.formats import dicom, fhir, hl7v2

SUFFIX = {SourceFormat.FHIR: ".json", SourceFormat.HL7V2: ".hl7", SourceFormat.DICOM: ".dcm"}


def split_hl7_file(text: str) -> list[str]:
    """The messages of an ER7 file: each starts at a line beginning with MSH."""
    lines = hl7v2.normalise_separators(text).split("\r")
    messages: list[list[str]] = []
    for line in lines:
        if line.startswith("MSH"):
            messages.append([line])
        elif messages and line.strip():
            messages[-1].append(line)
    return ["\r".join(m) for m in messages]


def deidentify_file(
    engine: DeidEngine, source_format: SourceFormat, path: Path
) -> tuple[Path, Path]:
    """Write ``<name>.deid<ext>`` and ``<name>.deid-summary.json`` beside ``path``."""
    raw = path.read_bytes()
    summaries: list[dict[str, Any]] = []
    if source_format is SourceFormat.FHIR:
        data = fhir.parse(raw)
        outputs = []
        for unit in fhir.split(data):
            patient = unit.ehr_patient_id or "unknown"
            result = engine.fhir(unit.resource, patient)
            outputs.append(json.loads(result.source))
            summaries.append({"resourceType": unit.resource_type, **result.summary})
        if data["resourceType"] == "Bundle":
            # fullUrl and request can hold the EHR's ids; the entries alone are kept.
            content: Any = {
                "resourceType": "Bundle",
                "type": data.get("type", "collection"),
                "entry": [{"resource": r} for r in outputs],
            }
        else:
            content = outputs[0]
        body = (json.dumps(content, indent=2) + "\n").encode()
    elif source_format is SourceFormat.HL7V2:
        cleaned = []
        for message in split_hl7_file(hl7v2.decode(raw)):
            hl7_unit = hl7v2.parse(message.encode())
            result = engine.hl7v2(hl7_unit.text, hl7_unit.ehr_patient_id or "unknown")
            cleaned.append(result.source)
            summaries.append({"message_type": hl7_unit.message_type, **result.summary})
        body = ("\r\n".join(cleaned) + "\r\n").encode()
    else:
        unit_dicom = dicom.parse(raw, max_bytes=len(raw) + 1)
        result = engine.dicom(raw, unit_dicom.ehr_patient_id or "unknown")
        body = base64.b64decode(result.source)
        summaries.append(result.summary)
    stem = path.name.removesuffix(path.suffix)
    out = path.with_name(f"{stem}.deid{SUFFIX[source_format]}")
    out.write_bytes(body)
    summary_path = path.with_name(f"{stem}.deid-summary.json")
    summary_path.write_text(
        json.dumps(
            {
                "input": path.name,
                "output": out.name,
                "format": source_format.value,
                "units": summaries,
            },
            indent=2,
        )
        + "\n"
    )
    return out, summary_path
