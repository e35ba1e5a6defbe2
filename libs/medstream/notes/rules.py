"""A NegEx-style rule labeller for the 14 CheXpert observations: the baseline the notes
Transformer must beat, and a readable reference for how a report is labelled.

For each sentence, each mention of an observation is classified by the triggers
around it:
- negation before it ("no", "without", "negative for", "free of", "no evidence of")
  or after it ("is not seen", "has resolved");
- uncertainty ("may", "possible", "cannot exclude", "could represent", "concerning
  for", "versus").

A trigger's scope ends at a clause boundary ("but", "however", ";") or after a few
words. Across mentions the CheXpert rule applies: present beats uncertain beats
absent. No Finding is present when no other observation (Support Devices aside) is
present or uncertain, absent when one is present, and not mentioned when the only
findings are uncertain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

OBSERVATIONS = (
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
)

MENTIONS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (
        r"enlarged cardiomediastin\w*",
        r"widen\w* (?:of the )?mediastin\w*",
        r"mediastinal widening",
        r"mediastinum is widened",
    ),
    "Cardiomegaly": (
        r"cardiomegaly",
        r"enlarged heart",
        r"heart (?:size )?is enlarged",
        r"cardiac enlargement",
        r"enlarged cardiac silhouette",
        r"heart size is increased",
    ),
    "Lung Opacity": (
        r"opacit(?:y|ies)",
        r"opacification",
        r"infiltrat\w*",
        r"haziness",
        r"airspace disease",
        r"density",
        r"densities",
    ),
    "Lung Lesion": (r"nodules?", r"mass(?:es)?", r"lesions?", r"tumou?r"),
    "Edema": (
        r"(?:pulmonary |interstitial |alveolar )?oedema",
        r"(?:pulmonary |interstitial |alveolar )?edema",
        r"(?:pulmonary )?vascular congestion",
        r"fluid overload",
    ),
    "Consolidation": (r"consolidat\w*",),
    "Pneumonia": (r"pneumonias?", r"infection"),
    "Atelectasis": (r"atelecta\w*", r"collapse"),
    "Pneumothorax": (r"pneumothora(?:x|ces)",),
    "Pleural Effusion": (r"(?:pleural )?effusions?", r"pleural fluid", r"hydrothorax"),
    "Pleural Other": (
        r"pleural thickening",
        r"fibrothorax",
        r"pleural scarring",
        r"pleural plaques?",
    ),
    "Fracture": (r"fractures?", r"fractured"),
    "Support Devices": (
        r"(?:endotracheal|et|nasogastric|ng|chest|feeding|tracheostomy) tube",
        r"picc(?: line)?",
        r"central (?:venous )?(?:line|catheter)",
        r"catheter",
        r"pacemaker",
        r"pacer",
        r"(?:sternotomy )?wires",
        r"port-?a-?cath",
        r"\bport\b",
        r"drain",
        r"stent",
        r"icd",
        r"lines? and tubes",
        r"support devices?",
    ),
}

NEGATION_BEFORE = re.compile(
    r"\b(?:no|not|without|negative for|free of|no evidence of|no signs? of|absence of|"
    r"resolution of|resolved|clear of|rule[sd]? out|ruled out|nor|neither)\b",
    re.I,
)
NEGATION_AFTER = re.compile(
    r"^[^.;]{0,30}?\b(?:is|are|was|were|has|have)?\s*(?:not (?:seen|identified|present|"
    r"visualized|demonstrated|appreciated)|absent|resolved|cleared|removed)\b",
    re.I,
)
UNCERTAIN = re.compile(
    r"\b(?:may|might|possibl[ey]|probabl[ey]|likely|questionable|question of|suspect\w*|"
    r"cannot (?:be )?exclude\w*|cannot (?:be )?ruled? out|can ?not be excluded|not excluded|"
    r"could (?:be|represent)|may represent|concerning for|suggest\w*|versus|vs\.?|"
    r"differential|equivocal|borderline|indeterminate)\b",
    re.I,
)
# Post-triggers: uncertainty about what came before ("edema cannot be excluded").
UNCERTAIN_AFTER = re.compile(
    r"^[^.;]{0,25}?\b(?:cannot (?:be )?(?:excluded|ruled out)|can ?not be excluded|not excluded|"
    r"(?:is|are) (?:possible|likely|probable|suspected|questioned|not ruled out))\b|^\s*\?",
    re.I,
)
TERMINATION = re.compile(r"\b(?:but|however|although|though|except|which|aside from)\b|[;:]", re.I)
SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
SCOPE_WORDS = 6


class Status(StrEnum):
    """The CONTRACT's label statuses."""

    PRESENT = "present"
    ABSENT = "absent"
    UNCERTAIN = "uncertain"
    NOT_MENTIONED = "not_mentioned"


@dataclass(frozen=True)
class Mention:
    """One mention of an observation, with the status its context gives it."""

    observation: str
    start: int
    end: int
    status: Status


_COMPILED = {
    name: re.compile(r"\b(?:" + "|".join(patterns) + r")\b", re.I)
    for name, patterns in MENTIONS.items()
}
_RANK = {Status.PRESENT: 3, Status.UNCERTAIN: 2, Status.ABSENT: 1, Status.NOT_MENTIONED: 0}


def _scope_before(sentence: str, start: int) -> str:
    """The words before a mention that a trigger may govern: back to a clause boundary,
    at most SCOPE_WORDS words."""
    before = sentence[:start]
    cut = max((m.end() for m in TERMINATION.finditer(before)), default=0)
    words = before[cut:].split()
    return " ".join(words[-SCOPE_WORDS:])


@dataclass(frozen=True)
class Triggers:
    """Which triggers govern a mention: a negation, a hedge, and a hedge that no reading
    of the sentence can make an assertion ("equivocal", "is suspected")."""

    negated: bool
    hedged: bool
    strongly_hedged: bool


# Hedges that are never an assertion, whatever else the sentence says: before the
# mention ("equivocal consolidation") or right after it ("pneumothorax is suspected").
STRONG_HEDGE = re.compile(
    r"\b(?:equivocal|suspected|suspicious for|worrisome for|questionable)\b", re.I
)
STRONG_HEDGE_AFTER = re.compile(
    r"^\s*(?:is|are|was|were)?\s*(?:suspected|equivocal|questionable|not excluded|"
    r"cannot (?:be )?(?:excluded|ruled out)|can ?not be excluded)\b",
    re.I,
)


def triggers_at(text: str, start: int, end: int) -> Triggers:
    """The triggers that govern ``text[start:end]`` (a mention found by any finder) in
    its sentence, with the same scopes as ``mentions``."""
    for sentence_match in SENTENCE.finditer(text):
        if sentence_match.start() <= start < sentence_match.end():
            offset = sentence_match.start()
            return _triggers(
                sentence_match.group(0), start - offset, min(end, sentence_match.end()) - offset
            )
    return Triggers(negated=False, hedged=False, strongly_hedged=False)


def _triggers(sentence: str, start: int, end: int) -> Triggers:
    before = _scope_before(sentence, start)
    after = TERMINATION.split(sentence[end:], maxsplit=1)[0]
    return Triggers(
        negated=bool(NEGATION_BEFORE.search(before) or NEGATION_AFTER.search(after)),
        hedged=bool(UNCERTAIN.search(before) or UNCERTAIN_AFTER.search(after)),
        strongly_hedged=bool(STRONG_HEDGE.search(before) or STRONG_HEDGE_AFTER.match(after)),
    )


def status_at(text: str, start: int, end: int) -> Status:
    """The status the triggers give ``text[start:end]``: hedged beats negated."""
    return _status_of(triggers_at(text, start, end))


def _status_of(found: Triggers) -> Status:
    if found.hedged:
        return Status.UNCERTAIN
    return Status.ABSENT if found.negated else Status.PRESENT


def mentions(text: str) -> list[Mention]:
    """Every observation mention in ``text`` with its status."""
    found: list[Mention] = []
    for sentence_match in SENTENCE.finditer(text):
        sentence = sentence_match.group(0)
        offset = sentence_match.start()
        for name, pattern in _COMPILED.items():
            for match in pattern.finditer(sentence):
                status = _status_of(_triggers(sentence, match.start(), match.end()))
                found.append(Mention(name, offset + match.start(), offset + match.end(), status))
    return found


def label(text: str) -> dict[str, Status]:
    """A status for each of the 14 observations (CheXpert aggregation)."""
    labels = dict.fromkeys(OBSERVATIONS, Status.NOT_MENTIONED)
    for mention in mentions(text):
        if _RANK[mention.status] > _RANK[labels[mention.observation]]:
            labels[mention.observation] = mention.status
    pathology = [n for n in OBSERVATIONS if n not in ("No Finding", "Support Devices")]
    if any(labels[n] is Status.PRESENT for n in pathology):
        labels["No Finding"] = Status.ABSENT
    elif not any(labels[n] is Status.UNCERTAIN for n in pathology):
        labels["No Finding"] = Status.PRESENT
    return labels
