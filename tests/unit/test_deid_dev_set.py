"""The hand-written development set (``bench/deid/dev/``) is well formed: every listed
identifier and every term that must survive is an exact substring of its text, types are
the CONTRACT's, and no term to keep overlaps an identifier. A silently missing substring
would drop out of the scores, so this guards what ``bench/deid/diagnose.py`` reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medstream.deid.text import PhiType

DEV = Path(__file__).resolve().parents[2] / "bench" / "deid" / "dev"
TYPES = {t.value for t in PhiType} - {"MRN", "PROFESSION"}


def spans(text: str, value: str) -> list[tuple[int, int]]:
    found, start = [], text.find(value)
    while start != -1:
        found.append((start, start + len(value)))
        start = text.find(value, start + 1)
    return found


SETS = [
    (folder, name)
    for folder in ("dev", "dev2", "dev3", "dev4")
    for name in ("notes", "guard", "general")
    if folder != "dev4" or name != "guard"  # dev4 (other languages) has no guard part
]


@pytest.mark.parametrize(("folder", "name"), SETS)
def test_the_development_set_is_well_formed(folder: str, name: str) -> None:
    path = DEV.parent / folder / f"{name}.jsonl"
    items = [json.loads(line) for line in path.read_text().splitlines()]
    assert len({item["id"] for item in items}) == len(items)
    for item in items:
        text = item["text"]
        phi = [s for p in item["phi"] for s in spans(text, p["text"])]
        assert all(p["type"] in TYPES for p in item["phi"]), item["id"]
        assert all(spans(text, p["text"]) for p in item["phi"]), item["id"]
        for value in item["keep"]:
            kept = spans(text, value)
            assert kept, (item["id"], value)
            assert not any(s < e2 and s2 < e for s, e in kept for s2, e2 in phi), (
                item["id"],
                value,
            )
