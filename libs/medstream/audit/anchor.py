"""Audit anchors: each chain's head, signed outside PostgreSQL.

The hash chain catches any change to the audit rows *unless* someone who can switch the
triggers off (a database superuser) rewrites a chain's tail and its recorded head with
correct hashes. An anchor closes that gap: the chain's head (its sequence number and
hash) at a moment, HMAC-signed with a key the database never holds, kept where the
database cannot reach it: an append-only file, and the compacted topic
``medstream.audit.anchors`` (one record per chain, the latest). ``audit verify`` then
checks that the anchored row is still in the chain with the anchored hash; a rewritten
tail cannot keep that hash without the whole chain before it, and a new anchor cannot
be forged without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from medstream.audit.chain import ChainRow, Finding, Tampering


@dataclass(frozen=True)
class Anchor:
    """A chain's head at ``at``: its last sequence number and that row's hash."""

    chain: int
    seq: int
    hash: str
    at: str

    def message(self) -> bytes:
        """The signed bytes: the fields as canonical JSON."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


def sign(anchor: Anchor, key: bytes) -> str:
    """The anchor's HMAC-SHA256 under ``key``, hex."""
    return hmac.new(key, anchor.message(), hashlib.sha256).hexdigest()


def signed_record(anchor: Anchor, key: bytes) -> dict[str, object]:
    """The anchor with its signature, as written to the file and the topic."""
    return {**asdict(anchor), "hmac": sign(anchor, key)}


def anchors_of(heads: Mapping[int, tuple[int, str]], now: datetime | None = None) -> list[Anchor]:
    """Anchors for chain heads ``{chain: (seq, hash)}``."""
    at = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    return [Anchor(chain, seq, digest, at) for chain, (seq, digest) in sorted(heads.items())]


class AnchorFile:
    """The append-only file of signed anchors, one JSON object a line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, records: Iterable[Mapping[str, object]]) -> int:
        """Append ``records`` and make them durable (fsync); return how many."""
        lines = [json.dumps(r, sort_keys=True) + "\n" for r in records]
        if not lines:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a") as handle:
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
        return len(lines)

    def latest(self, key: bytes) -> tuple[dict[int, Anchor], list[str]]:
        """Each chain's latest anchor whose signature verifies, and a note for each line
        that does not (forged, damaged or signed with another key)."""
        every, problems = self.every(key)
        return {chain: anchors[-1] for chain, anchors in every.items()}, problems

    def every(self, key: bytes) -> tuple[dict[int, list[Anchor]], list[str]]:
        """Every anchor whose signature verifies, per chain in sequence order, and a
        note for each line that does not. Verification checks them all: a tail
        rewritten below an older anchor and signed again later is still caught by the
        older one."""
        found: dict[int, list[Anchor]] = {}
        problems: list[str] = []
        if not self.path.exists():
            return found, problems
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            try:
                record = json.loads(line)
                anchor = Anchor(
                    int(record["chain"]), int(record["seq"]), str(record["hash"]), record["at"]
                )
                valid = hmac.compare_digest(sign(anchor, key), str(record["hmac"]))
            except (ValueError, KeyError, TypeError):
                problems.append(f"line {number} of {self.path.name} is not an anchor")
                continue
            if not valid:
                problems.append(f"line {number} of {self.path.name} has a bad signature")
                continue
            found.setdefault(anchor.chain, []).append(anchor)
        for anchors in found.values():
            anchors.sort(key=lambda a: (a.seq, a.at))
        return found, problems


def check(
    chain: int, rows: Sequence[ChainRow], anchors: Anchor | Sequence[Anchor] | None
) -> list[Finding]:
    """Whether the chain still holds every anchored row with its anchored hash."""
    if anchors is None:
        return []
    if isinstance(anchors, Anchor):
        anchors = [anchors]
    by_seq = {row.seq: row for row in rows}
    findings: list[Finding] = []
    reported: set[int] = set()
    for anchor in anchors:
        for finding in _check_one(chain, by_seq, anchor):
            if finding.seq not in reported:
                reported.add(finding.seq)
                findings.append(finding)
    return findings


def _check_one(chain: int, by_seq: Mapping[int, ChainRow], anchor: Anchor) -> list[Finding]:
    stored = by_seq.get(anchor.seq)
    if stored is None:
        return [
            Finding(
                chain,
                Tampering.DELETED,
                anchor.seq,
                f"the row anchored at {anchor.at} is gone: the chain was cut below its anchor",
            )
        ]
    if stored.hash != anchor.hash:
        return [
            Finding(
                chain,
                Tampering.CHANGED,
                anchor.seq,
                f"the row's hash differs from its anchor of {anchor.at}: the chain was "
                "rewritten up to here, hashes recomputed",
            )
        ]
    return []
