"""The audit hash chain: how a row is hashed, and how a chain is verified.

Pure functions, no I/O, so the audit service, ``medstream audit verify`` and the tests
share them.

Each row's hash is ``sha256(prev_hash + "\\n" + canonical JSON of its content)``; the
content includes the chain number but not the row's ``seq``. The links therefore say
what the true order is, and ``seq`` is the order the table claims: verification
compares the two, which lets it tell a reordering from an edit. The first row of a
chain links to a genesis hash of the chain number, and the writer records each
chain's last link in ``audit_chain_head``, so a row removed from the end is caught too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

GENESIS_PREFIX = "medstream-audit-genesis:"
# The columns a row's hash covers, besides its previous hash.
CONTENT_COLUMNS = (
    "chain",
    "event_id",
    "recorded_at",
    "occurred_at",
    "actor",
    "action",
    "outcome",
    "entity",
    "patient_pseudonym",
    "message_id",
    "correlation_id",
    "causation_id",
    "resource",
)


def genesis(chain: int) -> str:
    """The hash the first row of ``chain`` links to (the migration computes the same)."""
    return hashlib.sha256(f"{GENESIS_PREFIX}{chain}".encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def content_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed part of a row, with times in one canonical form (and the resource
    parsed, where the driver returned JSONB as text)."""
    content = {column: _plain(row[column]) for column in CONTENT_COLUMNS}
    if isinstance(content["resource"], str):
        content["resource"] = json.loads(content["resource"])
    return content


def canonical(content: Mapping[str, Any]) -> bytes:
    """Content as canonical JSON: sorted keys, no spaces, ASCII only."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def link_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    """The hash of a row that follows ``prev_hash``."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(content)).hexdigest()


@dataclass(frozen=True)
class ChainRow:
    """One stored row as verification sees it."""

    seq: int
    prev_hash: str
    hash: str
    content: Mapping[str, Any]


class Tampering(StrEnum):
    """The kinds of change ``audit verify`` reports."""

    CHANGED = "changed"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"


@dataclass(frozen=True)
class Finding:
    """One sign of tampering: where (the row's ``seq``, as stored) and what."""

    chain: int
    kind: Tampering
    seq: int
    detail: str


def verify_chain(
    chain: int, rows: Sequence[ChainRow], head: tuple[int, str] | None
) -> list[Finding]:
    """Every sign of tampering in one chain; ``rows`` in stored (``seq``) order and
    ``head`` the (seq, hash) the writer last recorded, None if it recorded none."""
    return _Verifier(chain, list(rows), head).run()


class _Verifier:
    def __init__(self, chain: int, rows: list[ChainRow], head: tuple[int, str] | None) -> None:
        self.chain = chain
        self.rows = rows
        self.head = head
        self.genesis = genesis(chain)
        self.index_of: dict[str, int] = {}
        for i, row in enumerate(rows):
            self.index_of.setdefault(row.hash, i)
        self.has_successor = {row.prev_hash for row in rows}
        self.findings: dict[int, Finding] = {}

    def run(self) -> list[Finding]:
        for i, row in enumerate(self.rows):
            if link_hash(row.prev_hash, row.content) != row.hash:
                self._report(i, Tampering.CHANGED, "its content no longer matches its hash")
        misplaced = self._check_links()
        self._check_order(misplaced)
        self._check_head()
        return sorted(self.findings.values(), key=lambda f: (f.seq, f.kind.value))

    def _report(self, i: int, kind: Tampering, detail: str) -> None:
        self.findings.setdefault(i, Finding(self.chain, kind, self.rows[i].seq, detail))

    def _expected_prev(self, i: int) -> str:
        return self.rows[i - 1].hash if i else self.genesis

    def _check_links(self) -> list[int]:
        """Report deletions, rewrites and splices; return rows that link elsewhere."""
        misplaced = []
        for i, row in enumerate(self.rows):
            if row.prev_hash == self._expected_prev(i):
                continue
            two_back = self.rows[i - 2].hash if i >= 2 else (self.genesis if i == 1 else None)
            before = self.rows[i - 1] if i else None
            if (
                before is not None
                and row.prev_hash == two_back
                and before.hash not in self.has_successor
            ):
                self._report(i - 1, Tampering.INSERTED, "it is not part of the chain")
                continue
            if row.prev_hash == self.genesis or row.prev_hash in self.index_of:
                misplaced.append(i)
                continue
            # Its predecessor is gone: deleted, or rewritten with a new hash.
            if (
                before is not None
                and before.hash not in self.has_successor
                and before.prev_hash == self._expected_prev(i - 1)
                and row.seq == before.seq + 1
            ):
                self._report(i - 1, Tampering.CHANGED, "it was rewritten with a new hash")
            else:
                after = f"after seq {before.seq}" if before else "at the start"
                gap = row.seq - before.seq - 1 if before else row.seq - 1
                count = f"{gap} row(s)" if gap > 0 else "a row"
                self._report(i, Tampering.DELETED, f"{count} missing {after}")
        return misplaced

    def _link_order(self) -> list[int]:
        """Row indices in the order the links give, skipping spliced-in rows; a broken
        link continues from the earliest row not yet placed."""
        inserted = {i for i, f in self.findings.items() if f.kind is Tampering.INSERTED}
        successors: dict[str, list[int]] = {}
        for i, row in enumerate(self.rows):
            if i not in inserted:
                successors.setdefault(row.prev_hash, []).append(i)
        order: list[int] = []
        placed: set[int] = set()
        current = self.genesis
        candidates = len(self.rows) - len(inserted)
        while len(order) < candidates:
            following = [j for j in successors.get(current, []) if j not in placed]
            j = (
                following[0]
                if following
                else min(k for k in range(len(self.rows)) if k not in placed and k not in inserted)
            )
            placed.add(j)
            order.append(j)
            current = self.rows[j].hash
        return order

    def _check_order(self, misplaced: list[int]) -> None:
        if not misplaced:
            return
        order = self._link_order()
        stored = sorted(order)
        for true_position, j in enumerate(order):
            if stored[true_position] != j:
                self._report(j, Tampering.REORDERED, "the chain puts it at another position")
        for i in misplaced:
            link = self.rows[i].prev_hash
            predecessor = self.index_of.get(link)
            if i in self.findings or i - 1 in self.findings or predecessor in self.findings:
                continue
            self._report(i, Tampering.REORDERED, "it links to a row that is not before it")

    def _check_head(self) -> None:
        if self.head is None:
            if self.rows:
                self._report(0, Tampering.CHANGED, "the chain has rows but no recorded head")
            return
        head_seq, head_hash = self.head
        if head_hash in self.index_of:
            order = self._link_order()
            tail = order[order.index(self.index_of[head_hash]) + 1 :]
            for j in tail:
                self._report(j, Tampering.INSERTED, "it follows the last link the writer made")
            return
        if not self.rows:
            self.findings[-1] = Finding(
                self.chain, Tampering.DELETED, head_seq, f"all {head_seq} row(s) are missing"
            )
            return
        same_seq = [i for i, row in enumerate(self.rows) if row.seq == head_seq]
        if same_seq:
            self._report(same_seq[0], Tampering.CHANGED, "the last row is not the one written")
            return
        last = max(row.seq for row in self.rows)
        self.findings[-1] = Finding(
            self.chain,
            Tampering.DELETED,
            head_seq,
            f"the chain ended at seq {head_seq}; rows after seq {last} are missing",
        )
