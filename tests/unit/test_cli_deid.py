"""`medstream deid` as the CONTRACT describes it, run as a user would."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from pydicom.data import get_testdata_file

MEDSTREAM = str(Path(sys.executable).parent / "medstream")
FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_deid_text_jsonl_round_trip() -> None:
    lines = [
        {"id": "n1", "text": "Seen by Dr. Alice Wong on 03/12/2026, call 617-555-0199."},
        {"id": "n2", "text": "No PHI here.", "patient": "p9"},
    ]
    result = subprocess.run(
        [MEDSTREAM, "deid", "text"],
        input="\n".join(json.dumps(x) for x in lines),
        capture_output=True,
        text=True,
        check=True,
    )
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out] == ["n1", "n2"]
    first = out[0]
    for span in first["spans"]:
        assert lines[0]["text"][span["start"] : span["end"]]  # offsets index the input
        assert span["replacement"] in first["text"]
    assert {s["type"] for s in first["spans"]} == {"NAME", "DATE", "PHONE"}
    assert "Alice" not in first["text"]
    assert "03/12/2026" not in first["text"]
    assert out[1] == {"id": "n2", "text": "No PHI here.", "spans": []}


def test_deid_text_reports_a_bad_line_and_what_to_send() -> None:
    result = subprocess.run(
        [MEDSTREAM, "deid", "text"], input="not json\n", capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert '"id" and "text"' in result.stderr


def test_deid_files_write_outputs_and_summaries(tmp_path: Path) -> None:
    files = {
        "hl7v2": shutil.copy(FIXTURES / "oru_r01.hl7", tmp_path / "oru.hl7"),
        "fhir": shutil.copy(FIXTURES / "bundle_r4.json", tmp_path / "bundle.json"),
        "dicom": shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct.dcm"),
    }
    for kind, path in files.items():
        subprocess.run([MEDSTREAM, "deid", kind, str(path)], capture_output=True, check=True)
    assert "Smithson" not in (tmp_path / "oru.deid.hl7").read_text()
    bundle = json.loads((tmp_path / "bundle.deid.json").read_text())
    assert bundle["resourceType"] == "Bundle"
    assert len(bundle["entry"]) == 7
    assert "Smithson" not in json.dumps(bundle)
    summary = json.loads((tmp_path / "ct.deid-summary.json").read_text())
    assert summary["format"] == "dicom"
    assert summary["units"][0]["actions"]
    assert (tmp_path / "ct.deid.dcm").stat().st_size > 1000
