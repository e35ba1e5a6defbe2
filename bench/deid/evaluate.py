"""Free-text de-identification, side by side in one run: MedStream's ensemble (learned
tagger, patterns, clinical guard), MedStream's rules alone (the engine before the
tagger), and Presidio with spaCy.

    make bench-deid                       # all three (builds .venv-bench for Presidio)
    python bench/deid/evaluate.py --no-presidio

Scored first on text no generator produced: the hand-written clinical notes, the
general-text PII set and the guard suite in ``bench/deid/heldout/`` (never trained or
tuned on). Then on the generator's held-out-by-construction sets (note kinds, name and
address sources, sentence families), then in distribution, then on the template corpus
the rules were tuned on, and last on the hand-written development set in
``bench/deid/dev/`` that the clinical guard was tuned on (``diagnose.py``).

Scoring is ``medstream.deid.scoring``: recall by token and by identifier, per type,
token precision; plus the survival of the clinical terms each hand-written text lists,
and the guard suite's values altered. Speed is characters per second over the same
texts, model loading excluded for every system, wall clock on this machine (and CPU
seconds beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))

from medstream.deid.detect import load_detector  # noqa: E402
from medstream.deid.scoring import score_spans  # noqa: E402
from medstream.deid.synth import heldout_sets, notes  # noqa: E402
from medstream.deid.text import TextDetector  # noqa: E402

HELDOUT = Path(__file__).parent / "heldout"
DEV = Path(__file__).parent / "dev"
CORPUS = Path(__file__).parent / "corpus"
RESULTS = ROOT / "bench" / "results"
PRESIDIO_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
# Speed is measured over the texts of these sets together.
SPEED_SETS = (
    "handwritten_notes",
    "general_text",
    "heldout_kinds",
    "heldout_locales",
    "heldout_families",
)

Spans = list[tuple[int, int, str]]
# The hand-written sets annotate the CONTRACT's Safe Harbor types only: a profession span
# there is neither right nor wrong, so it is left out of their recall and precision (it
# still counts if it alters a clinical term).
UNANNOTATED = {
    name: {"PROFESSION"}
    for name in ("handwritten_notes", "general_text", "guard_suite", "dev_notes", "dev_general",
                 "dev_guard")
}  # fmt: skip


def occurrences(text: str, value: str) -> list[tuple[int, int]]:
    """Every occurrence of ``value`` in ``text`` (exact, case-sensitive)."""
    found, start = [], text.find(value)
    while value and start != -1:
        found.append((start, start + len(value)))
        start = text.find(value, start + 1)
    return found


def handwritten(name: str, folder: Path = HELDOUT) -> list[dict[str, Any]]:
    """A hand-written set: text, gold spans from the listed PHI, and keep occurrences."""
    items = []
    for line in (folder / f"{name}.jsonl").read_text().splitlines():
        item = json.loads(line)
        text = item["text"]
        spans = [
            (s, e, p["type"]) for p in item.get("phi", []) for s, e in occurrences(text, p["text"])
        ]
        keep = [span for value in item.get("keep", []) for span in occurrences(text, value)]
        items.append({"text": text, "spans": spans, "keep": keep})
    return items


def generated() -> dict[str, list[dict[str, Any]]]:
    """The generator's held-out-by-construction sets and an in-distribution set, with
    seeds no training run uses."""
    sets = dict(heldout_sets(300, seed=7001))
    sets["in_distribution"] = notes(300, seed=7005)
    return {
        name: [{"text": n.text, "spans": n.spans, "keep": []} for n in items]
        for name, items in sets.items()
    }


def templates() -> list[dict[str, Any]]:
    """The template corpus the rules were built on (both its parts)."""
    items = []
    for part in ("notes", "held_out"):
        for line in (CORPUS / f"{part}.jsonl").read_text().splitlines():
            note = json.loads(line)
            spans = [(g["start"], g["end"], g["type"]) for g in note["spans"]]
            items.append({"text": note["text"], "spans": spans, "keep": []})
    return items


def survival(items: Sequence[dict[str, Any]], predicted: Sequence[Spans]) -> dict[str, Any]:
    """Keep occurrences no predicted span touches, of all listed."""
    total = altered = 0
    for item, spans in zip(items, predicted, strict=True):
        for start, end in item["keep"]:
            total += 1
            altered += any(s < end and e > start for s, e in spans)
    return {
        "terms": total,
        "altered": altered,
        "survival": round(1 - altered / total, 4) if total else float("nan"),
    }


def medstream_runner() -> Callable[[list[str]], list[Spans]]:
    detector = load_detector(ROOT / "models")
    detector.prepare(["Warm up the pipeline once, Dr. Example."])

    def run(texts: list[str]) -> list[Spans]:
        detector.prepare(texts)
        return [[(s.start, s.end, s.type.value) for s in detector.detect(t)] for t in texts]

    return run


def rules_runner() -> Callable[[list[str]], list[Spans]]:
    detector = TextDetector()
    return lambda texts: [
        [(s.start, s.end, s.type.value) for s in detector.detect(t)] for t in texts
    ]


def timed(run: Callable[[list[str]], list[Spans]], texts: list[str]) -> dict[str, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    spans = run(texts)
    return {
        "spans": spans,
        "wall_seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
    }


def presidio(datasets: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    if not PRESIDIO_PYTHON.exists():
        raise SystemExit(
            "Presidio's virtualenv is missing: run `make bench-deid`, which builds it."
        )
    done = subprocess.run(
        [str(PRESIDIO_PYTHON), str(Path(__file__).parent / "presidio_run.py")],
        input=json.dumps(datasets),
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-presidio", action="store_true", help="MedStream only.")
    args = parser.parse_args()
    datasets: dict[str, list[dict[str, Any]]] = {
        "handwritten_notes": handwritten("notes"),
        "general_text": handwritten("general"),
        "guard_suite": handwritten("guard"),
        **generated(),
        "templates": templates(),
        # the development set the guard was tuned on, last: it measures memory
        "dev_notes": handwritten("notes", DEV),
        "dev_general": handwritten("general", DEV),
        "dev_guard": handwritten("guard", DEV),
    }
    texts = {name: [item["text"] for item in items] for name, items in datasets.items()}
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for system, make in (("medstream", medstream_runner), ("medstream_rules", rules_runner)):
        run = make()
        runs[system] = {name: timed(run, batch) for name, batch in texts.items()}
        print(f"{system}: scored", flush=True)
    if not args.no_presidio:
        runs["presidio"] = presidio(texts)
        print("presidio: scored", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for system, per_set in runs.items():
        results[system] = {}
        for name, items in datasets.items():
            found = per_set[name]["spans"]
            ignored = UNANNOTATED.get(name, set())
            scored = [[(a, b) for a, b, kind in spans if kind not in ignored] for spans in found]
            scores = score_spans([(i["text"], i["spans"]) for i in items], scored)
            scores["keep"] = survival(items, [[(a, b) for a, b, _ in spans] for spans in found])
            results[system][name] = scores
        speed_sets = SPEED_SETS
        chars = sum(len(t) for name in speed_sets for t in texts[name])
        wall = sum(per_set[name]["wall_seconds"] for name in speed_sets)
        cpu = sum(per_set[name]["cpu_seconds"] for name in speed_sets)
        results[system]["speed"] = {
            "chars": chars,
            "wall_seconds": round(wall, 3),
            "chars_per_second": round(chars / wall),
            "chars_per_cpu_second": round(chars / cpu),
        }
    report: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "sets": {name: len(items) for name, items in datasets.items()},
        "results": results,
    }
    if "presidio" in results:
        ours, theirs = results["medstream"], results["presidio"]
        report["ratios"] = {
            "speed_medstream_over_presidio": round(
                ours["speed"]["chars_per_second"] / theirs["speed"]["chars_per_second"], 2
            ),
            "cpu_speed_medstream_over_presidio": round(
                ours["speed"]["chars_per_cpu_second"] / theirs["speed"]["chars_per_cpu_second"], 2
            ),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "deid.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"wrote {RESULTS / 'deid.json'}")


def table(report: dict[str, Any]) -> str:
    """The README's table: one row per set and system."""
    lines = [
        "| set | system | token recall | identifier recall | name recall | precision "
        "| clinical terms kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in report["sets"]:
        for system, per_set in report["results"].items():
            s = per_set[name]
            name_recall = s["by_type"].get("NAME", {}).get("token_recall", float("nan"))
            keep = s["keep"]
            kept = (
                f"{keep['survival']:.4f} ({keep['altered']} of {keep['terms']} altered)"
                if keep["terms"]
                else ""
            )
            lines.append(
                f"| {name} | {system} | {s['token_recall']:.4f} | {s['identifier_recall']:.4f} | "
                f"{name_recall:.4f} | {s['token_precision']:.4f} | {kept} |"
            )
    for system, per_set in report["results"].items():
        speed = per_set["speed"]
        lines.append(
            f"| speed | {system} | {speed['chars_per_second']:,} chars/s wall, "
            f"{speed['chars_per_cpu_second']:,} per CPU-second | | | | |"
        )
    if "ratios" in report:
        lines.append(f"| ratio | medstream / presidio | {report['ratios']} | | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
