"""A generator of synthetic chest-radiograph reports with gold CheXpert labels.

Each report draws a status for each observation (most are not mentioned; a few are
present, absent or uncertain), then writes them in one of several house styles:
- full prose or telegraphic fragments, upper- or mixed-case headers, numbered
  impressions, British or American spelling, abbreviations (ETT, NGT, PTX, CHF);
- a clinical indication that names a suspected finding without asserting it ("evaluate
  for pneumonia"): it does not count as a mention, since the indication is the question
  and not the answer;
- negation in its usual forms ("no", "without", "no evidence of", "negative for",
  "is not seen", "has resolved", lists such as "no effusion, pneumothorax or
  consolidation"), and clauses that end a trigger's scope ("no pneumothorax, but a small
  effusion");
- uncertainty ("cannot exclude", "may represent", "possible", "concerning for",
  "X versus Y", "not excluded", "likely", "suggestive of");
- severity, laterality and location, and change over time ("stable", "new",
  "increased", "persistent").

Labels follow the CheXpert rules: per observation, present beats uncertain beats
absent; No Finding is present only when no pathology is present or uncertain.

Phrasings come in families; ``heldout=True`` uses families that training never sees,
to measure generalisation to unseen wording (the bench's held-out split).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from medstream.notes.rules import OBSERVATIONS, Status

PATHOLOGY = [n for n in OBSERVATIONS if n not in ("No Finding", "Support Devices")]

# Surface forms per observation; {side} and {sev} are filled in.
NOUNS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (
        "widening of the mediastinum",
        "mediastinal widening",
        "enlarged cardiomediastinal silhouette",
        "widened mediastinum",
    ),
    "Cardiomegaly": (
        "cardiomegaly",
        "enlargement of the cardiac silhouette",
        "cardiac enlargement",
        "enlarged heart",
    ),
    "Lung Opacity": (
        "{side} opacity",
        "{loc2} opacity",
        "{side} opacities",
        "airspace opacity {loc}",
        "hazy opacity {loc}",
        "{side} infiltrate",
        "patchy opacification {loc}",
        "retrocardiac opacity",
        "perihilar opacities",
    ),
    "Lung Lesion": (
        "{size} nodule {loc}",
        "mass {loc}",
        "pulmonary nodule",
        "spiculated lesion {loc}",
        "nodular density {loc}",
    ),
    "Edema": (
        "pulmonary edema",
        "interstitial edema",
        "{sev} pulmonary oedema",
        "vascular congestion",
        "alveolar edema",
        "CHF",
    ),
    "Consolidation": (
        "consolidation {loc}",
        "{side} consolidation",
        "focal consolidation",
        "multifocal consolidations",
    ),
    "Pneumonia": ("pneumonia", "{side} pneumonia", "infectious process", "{loc2} pneumonia"),
    "Atelectasis": (
        "{side} atelectasis",
        "atelectasis {loc}",
        "subsegmental atelectasis",
        "plate-like atelectasis",
        "{loc2} collapse",
    ),
    "Pneumothorax": ("{side} pneumothorax", "pneumothorax", "PTX", "apical pneumothorax"),
    "Pleural Effusion": (
        "{sev} {side2} pleural effusion",
        "pleural effusion",
        "{side2} effusion",
        "{sev} effusions",
        "pleural fluid",
        "blunting of the {side2} costophrenic angle",
    ),
    "Pleural Other": ("pleural thickening", "{side2} pleural thickening", "pleural plaques"),
    "Fracture": (
        "{side2} rib fracture",
        "fracture",
        "displaced fracture of the {side2} clavicle",
        "rib fractures",
        "compression fracture",
    ),
    "Support Devices": (
        "endotracheal tube",
        "{side2} internal jugular central venous catheter",
        "dual-lead pacemaker",
        "ETT",
        "nasogastric tube",
        "NG tube",
        "{side2} PICC line",
        "right internal jugular central venous catheter",
        "pacemaker",
        "{side2} chest tube",
        "sternotomy wires",
    ),
}
# Whole sentences that assert an observation without its usual noun.
PRESENT_SENTENCES: dict[str, tuple[str, ...]] = {
    "Support Devices": (
        "Endotracheal tube terminates 4 cm above the carina.",
        "Nasogastric tube courses below the diaphragm.",
        "Right PICC line tip projects over the cavoatrial junction.",
        "Left internal jugular catheter tip is in the mid SVC.",
        "Interval placement of a right chest tube.",
        "Pacemaker leads are in expected position.",
        "Feeding tube tip is in the stomach.",
    ),
    "Cardiomegaly": (
        "Heart size is mildly enlarged.",
        "The heart is moderately enlarged.",
        "The cardiac silhouette is enlarged.",
        "Heart size is enlarged but stable.",
        "The heart is markedly enlarged.",
    ),
    "Enlarged Cardiomediastinum": (
        "The mediastinum is widened.",
        "The cardiomediastinal silhouette is enlarged.",
        "Mediastinal contours are widened.",
    ),
}
# A finding and what it may be: "opacity, which may represent pneumonia".
FINDING = {
    "Lung Opacity": (
        "{side} opacity",
        "patchy opacities {loc}",
        "retrocardiac opacity",
        "perihilar opacities",
        "multifocal opacities",
    ),
    "Consolidation": (
        "consolidation {loc}",
        "multifocal consolidations",
        "dense consolidation",
        "{loc2} consolidation",
    ),
}
INTERPRETATION = {
    "Pneumonia": ("pneumonia", "infection", "early pneumonia", "multifocal pneumonia"),
    "Atelectasis": ("atelectasis", "subsegmental atelectasis", "compressive atelectasis"),
    "Edema": ("edema", "asymmetric pulmonary edema"),
    "Consolidation": ("consolidation",),
}
RELATIONS = (  # template, status of the interpretations
    ("{A}, which may represent {B}.", Status.UNCERTAIN),
    ("{A}, likely {B}.", Status.UNCERTAIN),
    ("{A} concerning for {B}.", Status.UNCERTAIN),
    ("{A}, {B} versus {C}.", Status.UNCERTAIN),
    ("{A}, which could reflect {B} or {C}.", Status.UNCERTAIN),
    ("{A} may be due to {B}.", Status.UNCERTAIN),
    ("{A}, which likely reflects {B}.", Status.UNCERTAIN),
    ("{A}; {B} cannot be excluded.", Status.UNCERTAIN),
    ("{A}, which may reflect {B}, although {C} cannot be excluded.", Status.UNCERTAIN),
    ("{A} consistent with {B}.", Status.PRESENT),
    ("{A}, compatible with {B}.", Status.PRESENT),
    ("{A} with adjacent {B}.", Status.PRESENT),
    ("{A} with associated {B}.", Status.PRESENT),
)
_RANK = {Status.NOT_MENTIONED: 0, Status.ABSENT: 1, Status.UNCERTAIN: 2, Status.PRESENT: 3}

# Short forms for lists ("no effusion, pneumothorax or consolidation").
SHORT = {
    "Enlarged Cardiomediastinum": "mediastinal widening",
    "Cardiomegaly": "cardiomegaly",
    "Lung Opacity": "focal opacity",
    "Lung Lesion": "nodule",
    "Edema": "edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "effusion",
    "Pleural Other": "pleural thickening",
    "Fracture": "fracture",
    "Support Devices": "tube",
}
# Normal statements that negate an observation without naming it.
NORMAL: dict[str, tuple[str, ...]] = {
    "Cardiomegaly": (
        "Heart size is normal.",
        "The heart is not enlarged.",
        "Normal heart size.",
        "heart size within normal limits.",
    ),
    "Enlarged Cardiomediastinum": (
        "The cardiomediastinal silhouette is within normal limits.",
        "Normal mediastinal contours.",
        "cardiomediastinal silhouette is unremarkable.",
    ),
}

PRESENT = (
    # family 0: plain assertion
    (
        "There is {np}.",
        "{Np}.",
        "{Np} is present.",
        "{Np} is noted.",
        "{Np} is seen.",
        "The radiograph demonstrates {np}.",
        "There is evidence of {np}.",
        "{Np} is identified.",
    ),
    # family 1: change over time
    (
        "Stable {np}.",
        "Interval increase in {np}.",
        "New {np}.",
        "Persistent {np}.",
        "{Np}, unchanged.",
        "Worsening {np}.",
        "Slightly improved {np}.",
        "Residual {np}.",
        "Increasing {np} since the prior exam.",
        "{Np} is new.",
        "{Np} has increased.",
    ),
    # family 2: interpretive
    (
        "Findings consistent with {np}.",
        "Compatible with {np}.",
        "{Np} has developed.",
        "Appearance is typical of {np}.",
        "Findings are diagnostic of {np}.",
        "{Np} is again demonstrated.",
    ),
    # family 3 (held out): other wording
    (
        "Redemonstrated {np}.",
        "Again seen is {np}.",
        "Unchanged appearance of {np}.",
        "Evidence of {np}.",
    ),
)
ABSENT = (
    (
        "No {np}.",
        "There is no {np}.",
        "No evidence of {np}.",
        "No convincing {np}.",
        "There is no evidence of {np}.",
        "No visible {np}.",
    ),
    (
        "Without {np}.",
        "Negative for {np}.",
        "{Np} is not seen.",
        "No definite {np}.",
        "{Np} is not appreciated.",
        "Without evidence of {np}.",
        "No findings to suggest {np}.",
    ),
    (
        "{Np} has resolved.",
        "Resolution of the previously seen {np}.",
        "Interval resolution of {np}.",
        "The previously noted {np} is no longer seen.",
        "{Np} has cleared.",
    ),
    (
        "{Np} is not identified.",
        "No radiographic evidence of {np}.",
        "Free of {np}.",
        "{Np} is absent.",
    ),
)
UNCERTAIN = (
    (
        "Possible {np}.",
        "{Np} cannot be excluded.",
        "Cannot exclude {np}.",
        "{Np} cannot be entirely excluded.",
        "Possible early {np}.",
        "Equivocal {np}.",
        "Question of {np}.",
    ),
    (
        "This may represent {np}.",
        "Concerning for {np}.",
        "Suggestive of {np}.",
        "Probable {np}.",
        "Suspicious for {np}.",
        "Worrisome for {np}.",
        "Raising concern for {np}.",
        "Findings could represent {np}.",
    ),
    (
        "Questionable {np}.",
        "{Np} is not excluded.",
        "Likely {np}.",
        "Could reflect {np}.",
        "May be due to {np}.",
        "Findings may be related to {np}.",
        "Superimposed {np} is not entirely excluded.",
    ),
    (
        "Cannot rule out {np}.",
        "Possibly {np}.",
        "{Np} is suspected.",
        "Differential includes {np}.",
    ),
)
INDICATIONS = (
    "Evaluate for {short}.",
    "? {short}.",
    "Rule out {short}.",
    "Assess for {short}.",
    "Concern for {short}.",
)
SIDES = ("right", "left", "bilateral", "right basilar", "left basilar", "bibasilar")
SIDES2 = ("right", "left", "bilateral")
LOCS = (
    "in the right lower lobe",
    "at the left base",
    "in the right upper lobe",
    "in the lingula",
    "at the lung bases",
    "in the left mid lung",
    "in the right middle lobe",
)
LOC2 = ("right lower lobe", "left lower lobe", "right upper lobe", "left upper lobe", "lingular")
SEVERITY = ("small", "moderate", "large", "trace", "mild", "")
SIZES = ("5 mm", "8 mm", "1.2 cm", "small", "2 cm")
BRITISH = {
    "edema": "oedema",
    "Edema": "Oedema",
    "hemorrhage": "haemorrhage",
    "opacification": "opacification",
}


@dataclass(frozen=True)
class Report:
    """One synthetic report and its gold labels."""

    text: str
    labels: dict[str, Status]


def _fill(template: str, rng: random.Random) -> str:
    return (
        template.replace("{side}", rng.choice(SIDES))
        .replace("{side2}", rng.choice(SIDES2))
        .replace("{loc}", rng.choice(LOCS))
        .replace("{loc2}", rng.choice(LOC2))
        .replace("{sev}", rng.choice(SEVERITY))
        .replace("{size}", rng.choice(SIZES))
        .replace("  ", " ")
        .strip()
    )


def _sentence(template: str, noun: str) -> str:
    text = template.replace("{np}", noun).replace("{Np}", noun[:1].upper() + noun[1:])
    return text[:1].upper() + text[1:]


def _families(heldout: bool, count: int) -> list[int]:
    return [count - 1] if heldout else list(range(count - 1))


def report(rng: random.Random, heldout: bool = False) -> Report:
    """One report with its labels."""
    labels = dict.fromkeys(OBSERVATIONS, Status.NOT_MENTIONED)
    weights = {Status.PRESENT: 0.45, Status.ABSENT: 0.35, Status.UNCERTAIN: 0.20}
    chosen = rng.sample([*PATHOLOGY, "Support Devices"], k=rng.choice((0, 1, 1, 2, 2, 3, 3, 4, 5)))
    for name in chosen:
        labels[name] = rng.choices(list(weights), weights=list(weights.values()))[0]
    sentences: list[str] = []
    absent_names = [n for n in chosen if labels[n] is Status.ABSENT]
    # Negated lists: several absent observations in one sentence.
    if len(absent_names) >= 2 and rng.random() < 0.6:
        items = [SHORT[n] for n in absent_names]
        joined = ", ".join(items[:-1]) + rng.choice((" or ", ", or ", " and ")) + items[-1]
        sentences.append(
            _sentence(rng.choice(("No {np}.", "There is no {np}.", "No evidence of {np}.")), joined)
        )
        absent_names = []
    for name in chosen:
        status = labels[name]
        if status is Status.ABSENT and name not in absent_names:
            continue
        if status is Status.ABSENT and name in NORMAL and rng.random() < 0.4:
            sentences.append(rng.choice(NORMAL[name]))
            continue
        if status is Status.PRESENT and name in PRESENT_SENTENCES and rng.random() < 0.4:
            sentences.append(rng.choice(PRESENT_SENTENCES[name]))
            continue
        families = {Status.PRESENT: PRESENT, Status.ABSENT: ABSENT, Status.UNCERTAIN: UNCERTAIN}[
            status
        ]
        family = families[rng.choice(_families(heldout, len(families)))]
        noun = _fill(rng.choice(NOUNS[name]), rng)
        sentences.append(_sentence(rng.choice(family), noun))
    if rng.random() < 0.3:
        sentences.insert(rng.randrange(len(sentences) + 1), _relation(rng, labels))
    # Distractors: normal statements about things not labelled, and an indication.
    normal_fillers = [
        "The lungs are clear."
        if not any(
            labels[n] is Status.PRESENT
            for n in ("Lung Opacity", "Consolidation", "Pneumonia", "Edema")
        )
        else "",
        "Osseous structures are intact." if labels["Fracture"] is Status.NOT_MENTIONED else "",
        "No acute osseous abnormality."
        if labels["Fracture"] is Status.NOT_MENTIONED and rng.random() < 0.3
        else "",
        "Comparison is made to the prior study.",
    ]
    for filler in normal_fillers:
        if filler and rng.random() < 0.5:
            sentences.insert(rng.randrange(len(sentences) + 1), filler)
    for name in ("Cardiomegaly", "Enlarged Cardiomediastinum"):
        if labels[name] is Status.NOT_MENTIONED and rng.random() < 0.35:
            sentences.append(rng.choice(NORMAL[name]))
            labels[name] = Status.ABSENT
    # Contrast within one sentence: "No pneumothorax, but small effusion."
    if len(sentences) >= 2 and rng.random() < 0.25:
        first, second = sentences[0], sentences[1]
        if first.endswith(".") and second:
            sentences[:2] = [
                first[:-1]
                + rng.choice((", but ", "; however, ", ". "))
                + second[:1].lower()
                + second[1:]
            ]
    rng.shuffle(sentences) if rng.random() < 0.3 else None
    indication = ""
    if rng.random() < 0.6:
        suspected = rng.choice(PATHOLOGY)
        indication = rng.choice(INDICATIONS).replace("{short}", SHORT[suspected])
    text = _layout(rng, sentences, indication, labels)
    if rng.random() < 0.2:
        for us, uk in BRITISH.items():
            text = text.replace(us, uk)
    _no_finding(labels)
    return Report(text, labels)


def _relation(rng: random.Random, labels: dict[str, Status]) -> str:
    """A finding with its interpretation, labelled as CheXpert reads it: the finding
    present, the interpretations uncertain (hedged) or present (asserted)."""
    template, status = rng.choice(RELATIONS)
    finding = rng.choice(list(FINDING))
    choices = [n for n in INTERPRETATION if n != finding]
    first, second = rng.sample(choices, 2)
    text = (
        template.replace("{A}", _fill(rng.choice(FINDING[finding]), rng))
        .replace("{B}", rng.choice(INTERPRETATION[first]))
        .replace("{C}", rng.choice(INTERPRETATION[second]))
    )
    named = [(finding, Status.PRESENT), (first, status)]
    if "{C}" in template:
        named.append((second, status))
    for name, new in named:
        if _RANK[new] > _RANK[labels[name]]:
            labels[name] = new
    return text[:1].upper() + text[1:]


def _layout(
    rng: random.Random, sentences: list[str], indication: str, labels: dict[str, Status]
) -> str:
    if not sentences:
        sentences = [
            rng.choice(
                (
                    "No acute cardiopulmonary process.",
                    "No acute cardiopulmonary abnormality.",
                    "Normal chest radiograph.",
                )
            )
        ]
    style = rng.randrange(4)
    findings = " ".join(sentences)
    impression_items = sentences[-min(len(sentences), rng.randint(1, 2)) :]
    if style == 0:
        parts = ["FINDINGS: " + findings, "IMPRESSION: " + " ".join(impression_items)]
    elif style == 1:
        numbered = " ".join(f"{i}. {s}" for i, s in enumerate(impression_items, start=1))
        parts = ["Findings: " + findings, "Impression: " + numbered]
    elif style == 2:
        parts = [findings]
    else:
        parts = [
            "PA and lateral views of the chest.",
            findings.lower() if rng.random() < 0.3 else findings,
        ]
    if indication:
        parts.insert(
            0, rng.choice(("INDICATION: ", "Clinical history: ", "History: ")) + indication
        )
    if rng.random() < 0.3:
        parts.insert(
            0 if not indication else 1,
            rng.choice(
                (
                    "TECHNIQUE: Portable AP chest.",
                    "COMPARISON: None.",
                    "Comparison: Chest radiograph from yesterday.",
                )
            ),
        )
    return rng.choice(("\n", " ", "\n\n")).join(parts)


def _no_finding(labels: dict[str, Status]) -> None:
    if not any(labels[n] in (Status.PRESENT, Status.UNCERTAIN) for n in PATHOLOGY):
        labels["No Finding"] = Status.PRESENT
    else:
        labels["No Finding"] = Status.NOT_MENTIONED


def reports(count: int, seed: int, heldout: bool = False) -> list[Report]:
    """``count`` reports from ``seed``."""
    rng = random.Random(seed)  # noqa: S311  (synthetic text, not secrets)
    return [report(rng, heldout) for _ in range(count)]


def as_targets(items: Sequence[Report]) -> list[list[int]]:
    """Class indices (present, absent, uncertain, not_mentioned) per observation."""
    order = list(Status)
    return [[order.index(r.labels[name]) for name in OBSERVATIONS] for r in items]
