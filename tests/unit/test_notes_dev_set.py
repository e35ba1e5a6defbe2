"""The notes development sets (``bench/models/notes/dev/``, ``dev3/`` and ``dev4/``), on
which the hybrid's rules were written or tried, are well formed: unique ids, the 14
observations, CheXpert's statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medstream.notes.rules import OBSERVATIONS

DEV = Path(__file__).resolve().parents[2] / "bench" / "models" / "notes" / "dev"


@pytest.mark.parametrize("folder", ["dev", "dev3", "dev4"])
@pytest.mark.parametrize("name", ["negation", "reports"])
def test_the_notes_development_set_is_well_formed(folder: str, name: str) -> None:
    path = DEV.parent / folder / f"{name}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len({row["id"] for row in rows}) == len(rows) >= 40
    for row in rows:
        assert row["text"].strip(), row["id"]
        assert set(row["labels"]) <= set(OBSERVATIONS), row["id"]
        assert set(row["labels"].values()) <= {"present", "absent", "uncertain"}, row["id"]
