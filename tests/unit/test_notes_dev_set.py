"""The notes development set (``bench/models/notes/dev/``), on which the hybrid's rules
were written, is well formed: unique ids, the 14 observations, CheXpert's statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medstream.notes.rules import OBSERVATIONS

DEV = Path(__file__).resolve().parents[2] / "bench" / "models" / "notes" / "dev"


@pytest.mark.parametrize("name", ["negation", "reports"])
def test_the_notes_development_set_is_well_formed(name: str) -> None:
    rows = [json.loads(line) for line in (DEV / f"{name}.jsonl").read_text().splitlines()]
    assert len({row["id"] for row in rows}) == len(rows) > 50
    for row in rows:
        assert row["text"].strip(), row["id"]
        assert set(row["labels"]) <= set(OBSERVATIONS), row["id"]
        assert set(row["labels"].values()) <= {"present", "absent", "uncertain"}, row["id"]
