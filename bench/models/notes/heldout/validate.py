#!/usr/bin/env python3
"""Validate the held-out notes-labeller evaluation sets in this folder.

Checks: valid JSON per line, unique ids, exact key set, only the 14 CheXpert
observation names and the 3 statuses, minimum counts, the No Finding rule,
and prints per-observation/status counts.  Run:  python3 validate.py
"""

import collections
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OBS = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]
STATUSES = ["present", "absent", "uncertain"]
PATHOLOGY = [o for o in OBS if o not in ("No Finding", "Support Devices")]


def load(name, prefix):
    rows, ids, texts, errors = [], set(), set(), []
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                errors.append(f"{name}:{n}: blank line")
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"{name}:{n}: bad JSON: {e}")
                continue
            if set(obj) != {"id", "text", "labels"}:
                errors.append(f"{name}:{n}: keys {sorted(obj)}")
                continue
            if not (isinstance(obj["id"], str) and obj["id"].startswith(prefix)):
                errors.append(f"{name}:{n}: bad id {obj['id']!r}")
            if obj["id"] in ids:
                errors.append(f"{name}:{n}: duplicate id {obj['id']}")
            ids.add(obj["id"])
            if not isinstance(obj["text"], str) or not obj["text"].strip():
                errors.append(f"{name}:{n}: empty text")
            if obj["text"] in texts:
                errors.append(f"{name}:{n}: duplicate text")
            texts.add(obj["text"])
            if not isinstance(obj["labels"], dict) or not obj["labels"]:
                errors.append(f"{name}:{n}: labels must be a non-empty object")
                continue
            for k, v in obj["labels"].items():
                if k not in OBS:
                    errors.append(f"{name}:{n}: unknown observation {k!r}")
                if v not in STATUSES:
                    errors.append(f"{name}:{n}: unknown status {v!r} for {k}")
            rows.append(obj)
    return rows, errors


def counts(rows):
    c = collections.Counter()
    for r in rows:
        for k, v in r["labels"].items():
            c[(k, v)] += 1
    return c


def table(title, rows):
    c = counts(rows)
    print(f"\n{title} (n={len(rows)})")
    print(f"{'observation':28s} {'present':>8s} {'absent':>8s} {'uncertain':>10s} {'total':>6s}")
    for o in OBS:
        p, a, u = c[(o, "present")], c[(o, "absent")], c[(o, "uncertain")]
        print(f"{o:28s} {p:8d} {a:8d} {u:10d} {p + a + u:6d}")


def main():
    reps, e1 = load("reports.jsonl", "r")
    sents, e2 = load("negation.jsonl", "s")
    errors = e1 + e2

    # No Finding rule (CheXpert): present iff no pathology is present/uncertain;
    # absent when a pathology is present; omitted when only uncertain ones exist.
    for r in reps:
        lab = r["labels"]
        pos = any(lab.get(o) == "present" for o in PATHOLOGY)
        unc = any(lab.get(o) == "uncertain" for o in PATHOLOGY)
        nf = lab.get("No Finding")
        want = "absent" if pos else (None if unc else "present")
        if nf != want:
            errors.append(f"reports {r['id']}: No Finding={nf}, expected {want}")
    for s in sents:
        if "No Finding" in s["labels"]:
            errors.append(f"negation {s['id']}: No Finding should not be labelled in sentences")

    n_normal = sum(r["labels"].get("No Finding") == "present" for r in reps)
    n_multi = sum(len(r["labels"]) >= 3 for r in reps)
    kinds = collections.Counter()
    for s in sents:
        vals = set(s["labels"].values())
        if vals == {"absent"}:
            kinds["negation (all absent)"] += 1
        elif "absent" in vals:
            kinds["mixed (negated list + present/uncertain)"] += 1
        else:
            kinds["hedge (uncertain, no absent)"] += 1

    if len(reps) < 160:
        errors.append(f"only {len(reps)} reports")
    if len(sents) < 220:
        errors.append(f"only {len(sents)} sentences")
    if kinds["negation (all absent)"] < 120:
        errors.append("fewer than 120 negation sentences")
    if kinds["hedge (uncertain, no absent)"] < 80:
        errors.append("fewer than 80 hedge sentences")

    table("reports.jsonl", reps)
    print(
        f"normal (No Finding present): {n_normal} ({100 * n_normal / len(reps):.0f}%); "
        f">=3 labels: {n_multi}; with line breaks: {sum(chr(10) in r['text'] for r in reps)}"
    )
    table("negation.jsonl", sents)
    for k, v in sorted(kinds.items()):
        print(f"  {k}: {v}")
    print(f"  sentences with >=3 labels: {sum(len(s['labels']) >= 3 for s in sents)}")

    if errors:
        print("\nERRORS:")
        for e in errors:
            print("  " + e)
        sys.exit(1)
    print("\nOK")


if __name__ == "__main__":
    main()
