#!/usr/bin/env python3
"""Validate the hand-written held-out de-identification sets (stdlib only).

Checks, per file:
  * every line is a JSON object with the expected fields;
  * ids are unique (across all three files as well);
  * every PHI type is one of the documented types;
  * every phi/keep substring occurs in its text;
  * no occurrence of a keep string overlaps any occurrence of a phi string;
  * record counts meet the minimums (notes >= 70, general >= 100, guard >= 320);
  * guard: every sentence has keep values, and roughly 10% also hold PHI.
Prints counts per file and per PHI type. Exit status 1 on any failure.
"""

import collections
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
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
FILES = {"notes.jsonl": 70, "general.jsonl": 100, "guard.jsonl": 320}


def occurrences(text, sub):
    out, i = [], text.find(sub)
    while i != -1:
        out.append((i, i + len(sub)))
        i = text.find(sub, i + 1)
    return out


def main():  # noqa: PLR0915  (one flat list of checks)
    problems, seen_ids = [], set()
    summary = {}
    for name, minimum in FILES.items():
        recs = []
        with open(HERE / name, encoding="utf-8") as f:
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    problems.append(f"{name}:{ln}: blank line")
                    continue
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError as e:
                    problems.append(f"{name}:{ln}: bad JSON: {e}")
        need = {"id", "text", "phi", "keep"} | ({"style"} if name != "guard.jsonl" else set())
        per_type = collections.Counter()
        occ_type = collections.Counter()
        with_phi = 0
        for r in recs:
            rid = r.get("id")
            missing = need - r.keys()
            if missing:
                problems.append(f"{name}:{rid}: missing fields {sorted(missing)}")
                continue
            if rid in seen_ids:
                problems.append(f"{name}:{rid}: duplicate id")
            seen_ids.add(rid)
            text = r["text"]
            phi_spans = []
            if r["phi"]:
                with_phi += 1
            values = [p["text"] for p in r["phi"]]
            if len(values) != len(set(values)):
                problems.append(f"{name}:{rid}: a phi value is listed twice")
            for p in r["phi"]:
                if p.get("type") not in TYPES:
                    problems.append(f"{name}:{rid}: unknown type {p.get('type')!r}")
                occ = occurrences(text, p["text"])
                if not p["text"] or not occ:
                    problems.append(f"{name}:{rid}: phi {p['text']!r} not in text")
                per_type[p["type"]] += 1
                occ_type[p["type"]] += len(occ)
                phi_spans += occ
            if len(r["keep"]) != len(set(r["keep"])):
                problems.append(f"{name}:{rid}: a keep value is listed twice")
            for k in r["keep"]:
                occ = occurrences(text, k)
                if not k or not occ:
                    problems.append(f"{name}:{rid}: keep {k!r} not in text")
                for s, e in occ:
                    for ps, pe in phi_spans:
                        if s < pe and ps < e:
                            problems.append(
                                f"{name}:{rid}: keep {k!r} overlaps phi {text[ps:pe]!r}"
                            )
            if name == "guard.jsonl" and not r["keep"]:
                problems.append(f"{name}:{rid}: guard sentence without keep values")
        if len(recs) < minimum:
            problems.append(f"{name}: {len(recs)} records, minimum is {minimum}")
        if name == "guard.jsonl" and recs and not 0.07 <= with_phi / len(recs) <= 0.15:
            problems.append(
                f"{name}: {with_phi}/{len(recs)} sentences hold PHI, expected about 10%"
            )
        summary[name] = (len(recs), with_phi, per_type, occ_type, sum(len(r["keep"]) for r in recs))

    for name, (n, with_phi, per_type, occ_type, n_keep) in summary.items():
        print(
            f"{name}: {n} records, {with_phi} with PHI, "
            f"{sum(per_type.values())} PHI entries ({sum(occ_type.values())} occurrences), "
            f"{n_keep} keep entries"
        )
        for t in sorted(per_type, key=lambda t: (-per_type[t], t)):
            print(f"    {t:<13} {per_type[t]:>4} entries  {occ_type[t]:>4} occurrences")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print("  " + p)
        return 1
    print("\nOK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
