"""The notes Transformer against the NegEx-style rules, on text the generator did not
write: 20 chest radiograph reports written by hand in the style of real ones
(bench/models/notes/handwritten.jsonl; observations a report does not list are not
mentioned), and on the generator's unseen phrasing families.

    .venv/bin/python bench/models/notes_compare.py
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))

from medstream.models.package import latest  # noqa: E402
from medstream.notes import model as notes  # noqa: E402
from medstream.notes.generator import Report, reports  # noqa: E402
from medstream.notes.rules import OBSERVATIONS, Status  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def handwritten() -> list[Report]:
    items = []
    for line in (ROOT / "bench/models/notes/handwritten.jsonl").read_text().splitlines():
        row = json.loads(line)
        labels = {name: Status(row["labels"].get(name, "not_mentioned")) for name in OBSERVATIONS}
        items.append(Report(row["text"], labels))
    return items


def main() -> None:
    package = latest(ROOT / "models", notes.NAME)
    labeller = notes.Labeller(package)
    sets = {
        "handwritten_real_style": handwritten(),
        "generator_unseen_phrasing": reports(500, 777, heldout=True),
    }
    report: dict[str, object] = {
        "date": datetime.now(UTC).date().isoformat(),
        "model": f"{package.name} {package.version} ({package.checksum[:12]})",
    }
    for name, items in sets.items():
        model = notes.evaluate(items, labeller.probabilities([r.text for r in items]))
        rules = notes.evaluate_rules(items)
        report[name] = {"reports": len(items), "model": model, "rules": rules}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "models-notes-compare.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
