"""Scoring free-text de-identification against gold spans, the same way everywhere:
the tagger's training report, its model card and ``bench/deid``.

A token is a run of letters or digits. A gold token is PHI of the type of the gold span
that covers it. It counts as found if any predicted span covers any part of it, whatever
type was predicted, because a redaction protects the patient whatever its label. An
identifier (a gold span) is found when every one of its tokens is. Precision is the
share of predicted tokens that are gold PHI.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

TOKEN = re.compile(r"[^\W_]+")

Gold = tuple[str, Sequence[tuple[int, int, str]]]


def _covered(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(s < end and e > start for s, e in spans)


def score_spans(
    gold: Sequence[Gold], predicted: Sequence[Sequence[tuple[int, int]]]
) -> dict[str, Any]:
    """Recall by token and by identifier, overall and per type, and token precision."""
    tokens: Counter[str] = Counter()
    found: Counter[str] = Counter()
    identifiers: Counter[str] = Counter()
    identifiers_found: Counter[str] = Counter()
    predicted_tokens = true_tokens = 0
    for (text, spans), guesses in zip(gold, predicted, strict=True):
        for start, end, phi_type in spans:
            inner = [m.span() for m in TOKEN.finditer(text, start, end)]
            if not inner:
                continue
            hits = [_covered(s, e, guesses) for s, e in inner]
            tokens[phi_type] += len(inner)
            found[phi_type] += sum(hits)
            identifiers[phi_type] += 1
            identifiers_found[phi_type] += all(hits)
        gold_spans = [(s, e) for s, e, _ in spans]
        for match in TOKEN.finditer(text):
            if _covered(*match.span(), guesses):
                predicted_tokens += 1
                true_tokens += _covered(*match.span(), gold_spans)

    def ratio(a: int, b: int) -> float:
        return round(a / b, 4) if b else float("nan")

    return {
        "notes": len(gold),
        "gold_tokens": sum(tokens.values()),
        "token_recall": ratio(sum(found.values()), sum(tokens.values())),
        "identifier_recall": ratio(sum(identifiers_found.values()), sum(identifiers.values())),
        "token_precision": ratio(true_tokens, predicted_tokens),
        "by_type": {
            t: {
                "tokens": tokens[t],
                "token_recall": ratio(found[t], tokens[t]),
                "identifiers": identifiers[t],
                "identifier_recall": ratio(identifiers_found[t], identifiers[t]),
            }
            for t in sorted(tokens)
        },
    }
