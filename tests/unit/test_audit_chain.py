"""The audit chain's verification: every kind of tampering is found and named, and an
untouched chain passes. The same kinds are tested on real PostgreSQL in
tests/integration/test_audit_trail.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from medstream.audit.chain import ChainRow, Tampering, genesis, link_hash, verify_chain

CHAIN = 3


def build(n: int) -> list[ChainRow]:
    rows, prev = [], genesis(CHAIN)
    for seq in range(1, n + 1):
        content = {"chain": CHAIN, "event_id": f"e{seq}", "action": "message.received"}
        row = ChainRow(seq, prev, link_hash(prev, content), content)
        rows.append(row)
        prev = row.hash
    return rows


def head(rows: list[ChainRow]) -> tuple[int, str]:
    return rows[-1].seq, rows[-1].hash


def kinds(rows: list[ChainRow], recorded: tuple[int, str] | None) -> list[tuple[str, int]]:
    return [(f.kind.value, f.seq) for f in verify_chain(CHAIN, rows, recorded)]


def test_an_untouched_chain_passes() -> None:
    rows = build(6)
    assert verify_chain(CHAIN, rows, head(rows)) == []
    assert verify_chain(CHAIN, [], None) == []


def test_a_changed_row_is_reported() -> None:
    rows = build(6)
    recorded = head(rows)
    rows[2] = replace(rows[2], content={**rows[2].content, "action": "vault.read"})
    assert kinds(rows, recorded) == [("changed", 3)]


def test_a_row_rewritten_with_a_recomputed_hash_is_reported() -> None:
    rows = build(6)
    recorded = head(rows)
    content = {**rows[2].content, "action": "vault.read"}
    rows[2] = replace(rows[2], content=content, hash=link_hash(rows[2].prev_hash, content))
    assert kinds(rows, recorded) == [("changed", 3)]


@pytest.mark.parametrize(("position", "expected"), [(0, 2), (2, 4), (5, 6)])
def test_a_deleted_row_is_reported(position: int, expected: int) -> None:
    """Reported at the row after the gap, or at the head's seq for the last row."""
    rows = build(6)
    recorded = head(rows)
    del rows[position]
    found = verify_chain(CHAIN, rows, recorded)
    assert [f.kind for f in found] == [Tampering.DELETED]
    assert found[0].seq == expected


def test_a_spliced_in_row_is_reported_even_with_a_valid_hash() -> None:
    rows = build(6)
    recorded = head(rows)
    content = {"chain": CHAIN, "event_id": "forged", "action": "result.stored"}
    forged = ChainRow(4, rows[2].hash, link_hash(rows[2].hash, content), content)
    shifted = [replace(r, seq=r.seq + 1) for r in rows[3:]]
    assert kinds([*rows[:3], forged, *shifted], recorded) == [("inserted", 4)]


def test_a_row_appended_behind_the_writers_back_is_reported() -> None:
    rows = build(4)
    recorded = head(rows)
    content = {"chain": CHAIN, "event_id": "forged", "action": "result.stored"}
    rows.append(ChainRow(5, rows[-1].hash, link_hash(rows[-1].hash, content), content))
    assert kinds(rows, recorded) == [("inserted", 5)]


def test_swapped_rows_are_reported_as_reordered() -> None:
    rows = build(6)
    recorded = head(rows)
    swapped = [*rows[:2], replace(rows[3], seq=3), replace(rows[2], seq=4), *rows[4:]]
    assert kinds(swapped, recorded) == [("reordered", 3), ("reordered", 4)]


def test_a_row_moved_far_is_reported_as_reordered() -> None:
    rows = build(8)
    recorded = head(rows)
    moved = [rows[0], *rows[2:], rows[1]]
    moved = [replace(r, seq=i + 1) for i, r in enumerate(moved)]
    found = verify_chain(CHAIN, moved, recorded)
    assert found
    assert {f.kind for f in found} == {Tampering.REORDERED}


def test_a_row_moved_to_another_chain_fails_its_hash() -> None:
    rows = build(3)
    recorded = head(rows)
    rows[1] = replace(rows[1], content={**rows[1].content, "chain": CHAIN + 1})
    assert kinds(rows, recorded) == [("changed", 2)]


def test_a_truncated_chain_is_reported() -> None:
    rows = build(3)
    found = verify_chain(CHAIN, [], head(rows))
    assert [(f.kind, f.seq) for f in found] == [(Tampering.DELETED, 3)]


def test_rows_without_a_head_are_reported() -> None:
    assert kinds(build(2), None) == [("changed", 1)]
