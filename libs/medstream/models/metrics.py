"""Discrimination metrics for held-out evaluation, in numpy (no scikit-learn needed)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted as one half)."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("AUROC needs both positive and negative examples")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_scores = s[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(first, counts, strict=True):
        ranks[order[start : start + count]] = start + (count + 1) / 2
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def auprc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Average precision: the area under the precision-recall curve, step-wise, with
    tied scores treated as one threshold."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    if not y.any():
        raise ValueError("AUPRC needs positive examples")
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    true_pos = np.cumsum(y_sorted)
    # The last index of each distinct threshold.
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]
    precision = true_pos[last] / (last + 1)
    recall = true_pos[last] / y.sum()
    previous_recall = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - previous_recall) * precision))
