"""Audit anchors: signatures, the anchor file, and the check against a chain."""

from __future__ import annotations

import json
from pathlib import Path

from medstream.audit.anchor import Anchor, AnchorFile, anchors_of, check, sign, signed_record
from medstream.audit.chain import ChainRow, Tampering

KEY = b"k" * 32


def rows(*hashes: str) -> list[ChainRow]:
    return [ChainRow(i + 1, "p", h, {}) for i, h in enumerate(hashes)]


def test_a_signature_depends_on_every_field_and_the_key() -> None:
    anchor = Anchor(3, 7, "ab" * 32, "2026-11-30T06:00:00+00:00")
    assert sign(anchor, KEY) == sign(anchor, KEY)
    assert sign(anchor, KEY) != sign(anchor, b"other" * 8)
    for changed in (
        Anchor(4, 7, anchor.hash, anchor.at),
        Anchor(3, 8, anchor.hash, anchor.at),
        Anchor(3, 7, "cd" * 32, anchor.at),
    ):
        assert sign(changed, KEY) != sign(anchor, KEY)


def test_the_file_keeps_each_chains_latest_valid_anchor(tmp_path: Path) -> None:
    file = AnchorFile(tmp_path / "anchors.jsonl")
    first = anchors_of({1: (5, "a"), 2: (9, "b")})
    later = anchors_of({1: (8, "c")})
    assert file.append(signed_record(a, KEY) for a in first + later) == 3
    with file.path.open("a") as handle:
        handle.write(json.dumps({**signed_record(later[0], KEY), "seq": 99}) + "\n")
        handle.write("not json\n")
    latest, problems = file.latest(KEY)
    assert {c: a.seq for c, a in latest.items()} == {1: 8, 2: 9}
    assert problems == [
        "line 4 of anchors.jsonl has a bad signature",
        "line 5 of anchors.jsonl is not an anchor",
    ]
    assert file.latest(b"wrong" * 8)[0] == {}


def test_check_finds_a_rewritten_or_cut_chain() -> None:
    anchor = Anchor(1, 2, "h2", "t")
    assert check(1, rows("h1", "h2", "h3"), anchor) == []
    assert check(1, rows("h1", "h2", "h3"), None) == []
    (changed,) = check(1, rows("h1", "x2", "x3"), anchor)
    assert (changed.kind, changed.seq) == (Tampering.CHANGED, 2)
    (cut,) = check(1, rows("h1"), anchor)
    assert (cut.kind, cut.seq) == (Tampering.DELETED, 2)


def test_an_older_anchor_catches_a_rewrite_a_later_anchor_blessed() -> None:
    """A tail rewritten below an anchor, then signed again at a later head, passes the
    newest anchor but not the older one."""
    older, newer = Anchor(1, 2, "h2", "t1"), Anchor(1, 3, "x3", "t2")
    forged = rows("h1", "x2", "x3")
    assert check(1, forged, newer) == []
    (found,) = check(1, forged, [older, newer])
    assert (found.kind, found.seq) == (Tampering.CHANGED, 2)


def test_every_keeps_all_valid_anchors_in_order(tmp_path: Path) -> None:
    file = AnchorFile(tmp_path / "anchors.jsonl")
    file.append(
        signed_record(a, KEY) for a in anchors_of({1: (8, "c")}) + anchors_of({1: (5, "a")})
    )
    every, problems = file.every(KEY)
    assert [a.seq for a in every[1]] == [5, 8]
    assert problems == []
