"""Where the ensemble goes wrong on a development set (``bench/deid/dev/``, or
``dev2/`` to ``dev5/`` with ``--set``): every missed identifier, every span
that is no PHI, and every clinical term it altered, with the detector that found it.
For development only.

    python bench/deid/diagnose.py [notes|guard|general ...] [--set dev2|dev3|dev4|dev5]

It refuses the hand-written evaluation sets in ``bench/deid/heldout/``: those are scored
only by ``evaluate.py``, in aggregate, so that no one tunes on them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))
sys.path.insert(0, str(Path(__file__).parent))

from evaluate import handwritten, survival  # noqa: E402

from medstream.deid.detect import load_detector  # noqa: E402
from medstream.deid.scoring import score_spans  # noqa: E402

DEV = Path(__file__).parent / "dev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="*", default=["notes", "guard", "general"])
    parser.add_argument("--quiet", action="store_true", help="Scores only.")
    parser.add_argument(
        "--set",
        choices=["dev", "dev2", "dev3", "dev4", "dev5"],
        default="dev",
        help="Which development set: dev (tuned on since the start), dev2 to dev5 "
        "(written later; dev4 is clinical text in other languages and has no guard part; dev5 is "
        "English notes dense with clinical look-alikes).",
    )
    args = parser.parse_args()
    detector = load_detector(ROOT / "models")
    for name in args.sets:
        if not (DEV.parent / args.set / f"{name}.jsonl").exists():
            continue  # dev4 has no guard sentences
        items = handwritten(name, DEV.parent / args.set)
        texts = [i["text"] for i in items]
        detector.prepare(texts)
        found = [detector.detect(t) for t in texts]
        spans = [[(s.start, s.end) for s in f if s.type.value != "PROFESSION"] for f in found]
        scores = score_spans([(i["text"], i["spans"]) for i in items], spans)
        keep = survival(items, [[(s.start, s.end) for s in f] for f in found])
        print(
            f"## {name}: recall {scores['token_recall']} / {scores['identifier_recall']}, "
            f"precision {scores['token_precision']}, kept {keep}"
        )
        for t, v in scores["by_type"].items():
            print(f"   {t:13} {v['token_recall']:.3f} of {v['tokens']}")
        if args.quiet:
            continue
        for item, predicted in zip(items, found, strict=True):
            text = item["text"]
            for s, e, kind in item["spans"]:
                if not any(p.start < e and p.end > s for p in predicted):
                    print(f"MISS {kind:12} {text[s:e]!r:40} …{text[max(0, s - 30) : e + 20]!r}")
            for p in predicted:
                if p.type.value == "PROFESSION":
                    continue
                if not any(s < p.end and e > p.start for s, e, _ in item["spans"]):
                    context = text[max(0, p.start - 30) : p.end + 20]
                    print(
                        f"FP   {p.type.value:12} {text[p.start : p.end]!r:40} {p.source}"
                        f"({p.confidence:.2f}) …{context!r}"
                    )
            for s, e in item["keep"]:
                hit = [p for p in predicted if p.start < e and p.end > s]
                if hit:
                    print(
                        f"KEEP {text[s:e]!r:30} altered by {hit[0].type.value} "
                        f"{text[hit[0].start : hit[0].end]!r} {hit[0].source}"
                        f"({hit[0].confidence:.2f}) …{text[max(0, s - 30) : e + 20]!r}"
                    )


if __name__ == "__main__":
    main()
