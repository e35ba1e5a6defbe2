"""Check the hand-written development set (stdlib only).

Usage: python3 bench/deid/dev/validate.py

Errors (exit status 1): a line that does not parse, a missing field, an id that is not
unique, a PHI type outside the allowed list, a phi or keep text that is not an exact
substring of its text, a keep occurrence that overlaps a phi occurrence.
Warnings (reported, not fatal): a phi occurrence glued to letters or digits on either
side (it would also label part of a longer word), a phi value repeated across records,
a note outside 3-15 lines, a note with fewer than 5 keep terms.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = {"notes": "dev-note-", "guard": "dev-guard-", "general": "dev-general-"}
TYPES = {
    "NAME",
    "DATE",
    "AGE",
    "PHONE",
    "FAX",
    "EMAIL",
    "URL",
    "IP",
    "SSN",
    "ID",
    "ADDRESS",
    "LOCATION",
    "ZIP",
    "ORGANIZATION",
    "OTHER",
}


def occurrences(text: str, value: str) -> list[tuple[int, int]]:
    """Every occurrence of value in text, overlapping ones included (as the scorer does)."""
    found, start = [], text.find(value)
    while value and start != -1:
        found.append((start, start + len(value)))
        start = text.find(value, start + 1)
    return found


def main() -> int:  # noqa: PLR0915  (one flat list of checks)
    errors: list[str] = []
    warnings: list[str] = []
    seen_ids: set[str] = set()
    phi_owner: dict[str, set[str]] = defaultdict(set)
    summary = {}
    for name, prefix in FILES.items():
        path = HERE / f"{name}.jsonl"
        if not path.exists():
            errors.append(f"{path.name}: missing")
            continue
        types: Counter[str] = Counter()
        records = keeps = 0
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.name}:{lineno}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"{where}: does not parse ({exc})")
                continue
            missing = [k for k in ("id", "style", "text", "phi", "keep") if k not in item]
            if missing:
                errors.append(f"{where}: missing {missing}")
                continue
            rid, text = item["id"], item["text"]
            where = f"{where} {rid}"
            records += 1
            if rid in seen_ids:
                errors.append(f"{where}: duplicate id")
            seen_ids.add(rid)
            if not rid.startswith(prefix):
                errors.append(f"{where}: id should start with {prefix}")
            if not isinstance(text, str) or not text:
                errors.append(f"{where}: empty text")
                continue
            phi_spans = []
            seen_phi = set()
            for p in item["phi"]:
                value, kind = p.get("text", ""), p.get("type")
                if kind not in TYPES:
                    errors.append(f"{where}: type {kind!r} not allowed ({value!r})")
                if (value, kind) in seen_phi:
                    warnings.append(f"{where}: phi {value!r} listed twice")
                seen_phi.add((value, kind))
                spans = occurrences(text, value)
                if not spans:
                    errors.append(f"{where}: phi {value!r} is not a substring of text")
                for s, e in spans:
                    if (s > 0 and text[s - 1].isalnum() and value[0].isalnum()) or (
                        e < len(text) and text[e].isalnum() and value[-1].isalnum()
                    ):
                        warnings.append(
                            f"{where}: phi {value!r} occurs inside a longer word at {s}"
                        )
                phi_spans.extend(spans)
                types[kind] += 1
                phi_owner[value].add(rid)
            for value in item["keep"]:
                spans = occurrences(text, value)
                keeps += 1
                if not spans:
                    errors.append(f"{where}: keep {value!r} is not a substring of text")
                for s, e in spans:
                    hit = [text[a:b] for a, b in phi_spans if a < e and b > s]
                    if hit:
                        errors.append(f"{where}: keep {value!r} at {s} overlaps phi {hit}")
            if name == "notes":
                lines = text.count("\n") + 1
                if not 3 <= lines <= 15:
                    warnings.append(f"{where}: {lines} lines (want 3-15)")
                if len(item["keep"]) < 5:
                    warnings.append(f"{where}: only {len(item['keep'])} keep terms")
        summary[name] = (records, keeps, types)
    for value, owners in sorted(phi_owner.items()):
        if len(owners) > 1:
            warnings.append(f"phi {value!r} repeated in {sorted(owners)}")

    total: Counter[str] = Counter()
    for name, (records, keeps, types) in summary.items():
        total.update(types)
        print(f"{name}.jsonl: {records} records, {sum(types.values())} phi, {keeps} keep")
        for kind in sorted(types):
            print(f"    {kind:<13} {types[kind]}")
    print(f"all files: {sum(total.values())} phi")
    for kind in sorted(total):
        print(f"    {kind:<13} {total[kind]}")
    for w in warnings:
        print("WARNING", w)
    for e in errors:
        print("ERROR", e)
    print(f"{len(errors)} errors, {len(warnings)} warnings")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
