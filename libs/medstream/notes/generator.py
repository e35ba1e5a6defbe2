"""A generator of synthetic chest-radiograph reports with gold CheXpert labels, per
report and per mention.

Every phrase that names an observation is marked while the report is written, with the
status it has there, so a report comes with its **mentions** (character spans, each with
an observation and a status) as well as its report-level labels, which are derived from
the mentions by CheXpert's rules: present beats uncertain beats absent; No Finding is
present when no pathology is present or uncertain, absent when one is present, and not
mentioned when the only findings are uncertain.

What the reports teach (each kind comes in phrasing families; ``heldout=True`` writes
only the families that training never sees, to measure generalisation to wording):
- assertion, change over time and interpretation ("consistent with", "in keeping with");
- negation near and far: "no", "without", "negative for", "free of", "is not seen",
  long negated lists ("no focal consolidation, large effusion, pneumothorax or acute
  displaced rib fracture"), a cue far from the finding ("no evidence of acute
  cardiopulmonary disease, including …"), "neither … nor", double negatives ("no
  evidence to suggest"), resolution ("previously seen … no longer visualized",
  "interval removal of the tube");
- hedges: "possible", "borderline", "may represent", "suggestive of", "cannot exclude",
  "X versus Y", "favored to represent", and a finding with its hedged interpretation
  ("opacity, likely atelectasis": the opacity present, the atelectasis uncertain);
- comparisons with prior studies ("decreased", "improved", "unchanged" stay present);
- findings in other words ("airspace disease", "a closure device projects over the
  heart", "blunting of the costophrenic angle", "vascular congestion");
- what is *not* a finding: indications and histories ("evaluate for pneumonia"),
  findings outside the 14 (pneumonitis, pericardial effusion, emphysema, an elevated
  hemidiaphragm), and words that merely appear ("projects over the heart");
- headers (EXAM, HISTORY, COMPARISON, TECHNIQUE), organ-system templates ("Lines/tubes:
  None."), numbered impressions, multi-exam reports (chest plus spine, shoulder or
  abdomen), and the noise of real text: dictation errors ("pnuemothorax", "plural
  effusion", "pneumo thorax"), repeated words and redaction marks ("XXXX", "___").
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from medstream.notes.rules import OBSERVATIONS, Status

PATHOLOGY = [n for n in OBSERVATIONS if n not in ("No Finding", "Support Devices")]
STATUS_ORDER = list(Status)  # present, absent, uncertain, not_mentioned
_RANK = {Status.NOT_MENTIONED: 0, Status.ABSENT: 1, Status.UNCERTAIN: 2, Status.PRESENT: 3}

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
        "? {np}.",
        "Presumed {np}.",
        "Perhaps {np}.",
        "Concern for {np}.",
        "Findings favor {np}.",
        "{Np} is probable.",
        "{Np} may be present.",
        "Indeterminate {np}.",
        "Borderline {np}.",
        "Subtle {np} versus artifact.",
        "Mild {np} is not ruled out.",
    ),
    (
        "Cannot rule out {np}.",
        "Possibly {np}.",
        "{Np} is suspected.",
        "Differential includes {np}.",
    ),
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

# Surface forms per observation seen in other words; training uses the first ones,
# the held-out phrasing uses the last of each (see _noun).
OTHER_WORDS: dict[str, tuple[str, ...]] = {
    "Lung Opacity": (
        "airspace disease {loc}",
        "airspace process {loc}",
        "ill-defined density {loc}",
        "ground-glass opacity {loc}",
        "hazy density {loc}",
        "{side} airspace disease",
    ),
    "Lung Lesion": ("lesion {loc}", "nodular focus {loc}", "cavitary lesion {loc}"),
    "Edema": (
        "pulmonary vascular congestion",
        "interstitial prominence consistent with edema",
        "cephalization of the pulmonary vasculature",
        "mild vascular congestion",
    ),
    "Pneumonia": ("infection {loc}", "pna", "bronchopneumonia"),
    "Atelectasis": (
        "atelectatic change {loc}",
        "collapse of the {loc2}",
        "{side} basilar atelectasis",
    ),
    "Pleural Effusion": (
        "blunting of the {side2} costophrenic angle",
        "layering {side2} pleural fluid",
        "meniscus of fluid at the {side2} base",
        "loculated {side2} effusion",
    ),
    "Pleural Other": ("calcified pleural plaques", "apical pleural thickening", "fibrothorax"),
    "Fracture": (
        "healed {side2} rib fracture",
        "old {side2} clavicle fracture",
        "acute displaced fracture of the {side2} posterior sixth rib",
        "healing fractures of the {side2} ribs",
    ),
    "Support Devices": (
        "tracheostomy tube",
        "Dobhoff tube",
        "{side2} chest wall pacemaker",
        "septal closure device",
        "surgical clips",
        "{side2} subclavian central venous catheter",
        "aortic valve replacement",
        "{side2} pigtail catheter",
        "left ventricular assist device",
    ),
}
# Whole sentences that assert a device or a finding without the usual noun.
PRESENT_SENTENCES["Support Devices"] = (
    *PRESENT_SENTENCES["Support Devices"],
    "A closure device projects over the heart.",
    "Left chest wall AICD with leads in the right atrium and ventricle.",
    "Surgical clips are seen in the right upper quadrant.",
    "Median sternotomy wires are intact.",
    "Enteric tube tip is in the stomach.",
    "Tracheostomy tube is in place.",
)
PRESENT_SENTENCES["Cardiomegaly"] = (
    *PRESENT_SENTENCES["Cardiomegaly"],
    "The cardiac silhouette is enlarged, unchanged.",
    "Heart size remains enlarged.",
)
PRESENT_SENTENCES["Pleural Effusion"] = (
    "The {side2} costophrenic angle is blunted.",
    "Blunting of the {side2} costophrenic angle.",
)
# Hedged sentences about the heart and mediastinum: "borderline" is uncertain.
UNCERTAIN_SENTENCES: dict[str, tuple[str, ...]] = {
    "Cardiomegaly": (
        "Heart size is borderline enlarged.",
        "Borderline enlarged cardiac silhouette.",
        "Borderline cardiomegaly.",
        "The heart is possibly mildly enlarged.",
        "Heart size is at the upper limits of normal.",
    ),
    "Enlarged Cardiomediastinum": (
        "The mediastinum is possibly widened, likely due to AP technique.",
        "Mediastinal contours are borderline widened.",
    ),
}
NORMAL["Cardiomegaly"] = (
    *NORMAL["Cardiomegaly"],
    "Heart size is normal.",
    "Normal cardiac silhouette.",
    "The heart is normal in size.",
)
NORMAL["Enlarged Cardiomediastinum"] = (
    *NORMAL["Enlarged Cardiomediastinum"],
    "The mediastinum is not widened.",
    "Mediastinal contours are normal.",
)
NORMAL["Pleural Effusion"] = (
    "The costophrenic angles are sharp.",
    "Costophrenic angles are clear.",
)
# Findings outside the 14 and phrases that name nothing: never labelled.
DISTRACTORS = (
    "Hyperinflated but clear lungs.",
    "The lungs are hyperinflated.",
    "Elevated right hemidiaphragm.",
    "Emphysematous changes.",
    "Small hiatal hernia.",
    "Degenerative changes of the thoracic spine.",
    "Mild scoliosis.",
    "Calcified granuloma in the left upper lobe.",
    "Radiation pneumonitis in the right upper lobe.",
    "Findings may represent aspiration pneumonitis.",
    "No pericardial effusion.",
    "Small pericardial effusion on the prior CT.",
    "No pneumoperitoneum.",
    "Subcutaneous emphysema in the left chest wall.",
    "Aortic knob calcification.",
    "The aorta is tortuous.",
    "Overlying EKG leads.",
    "Degenerative change of the shoulders.",
    "Surgical history of cholecystectomy.",
)
# Lists: longer than the one-noun forms, with the modifiers real lists carry.
LIST_ITEMS = {
    "Enlarged Cardiomediastinum": ("mediastinal widening", "widened mediastinum"),
    "Cardiomegaly": ("cardiomegaly", "cardiac enlargement"),
    "Lung Opacity": ("focal opacity", "airspace opacity", "infiltrate", "airspace disease"),
    "Lung Lesion": ("nodule", "suspicious pulmonary nodule", "mass", "lung mass"),
    "Edema": ("edema", "pulmonary edema", "vascular congestion", "interstitial edema"),
    "Consolidation": ("consolidation", "focal consolidation", "focal airspace consolidation"),
    "Pneumonia": ("pneumonia", "infection"),
    "Atelectasis": ("atelectasis", "lobar collapse"),
    "Pneumothorax": ("pneumothorax", "visible pneumothorax", "PTX"),
    "Pleural Effusion": ("effusion", "pleural effusion", "large pleural effusion", "effusions"),
    "Pleural Other": ("pleural thickening", "pleural plaques"),
    "Fracture": ("fracture", "acute displaced rib fracture", "acute osseous fracture"),
    "Support Devices": ("chest tube", "central line"),
}
NEGATED_LISTS = (  # families; the last is held out
    (
        "No {list}.",
        "There is no {list}.",
        "No evidence of {list}.",
        "There is no evidence of {list}.",
        "No {list} is seen.",
        "No {list} is identified.",
    ),
    (
        "Without {list}.",
        "Negative for {list}.",
        "The lungs are clear without {list}.",
        "No radiographic evidence of {list}.",
        "No signs of {list}.",
        "No definite {list}.",
    ),
    (  # the cue far from the findings
        "There is no evidence of acute cardiopulmonary disease, including {list}.",
        "No acute findings, specifically no {list}.",
        "No acute process is identified, and in particular there is no {list}.",
        "No findings to suggest {list}.",
        "There is no evidence to suggest {list}.",
        "{List} are not seen.",
        "{List} are absent.",
    ),
    (
        "The lungs are clear, with no {list}.",
        "No convincing signs of {list}.",
        "{List} are not identified.",
        "There is neither {a} nor {b}.",
        "Free of {list}.",
    ),
)
HEDGED_LISTS = (  # families; the last is held out
    (
        "Possible {list}.",
        "{List} cannot be excluded.",
        "Cannot exclude {list}.",
        "Findings may represent {list}.",
        "This may be due to {list}.",
        "{List} are possible.",
        "Findings could be related to {list}.",
        "Early {list} cannot be entirely excluded.",
    ),
    (
        "Differential considerations include {list}.",
        "Suggestive of {list}.",
        "Concerning for {list}.",
        "This could reflect {list}.",
        "Probable {list}.",
        "Worrisome for {list}.",
        "Findings raise concern for {list}.",
        "Questionable {list}.",
        "Likely {list}.",
        "{List} not excluded.",
    ),
    (
        "Suspicious for {list}.",
        "Equivocal {list}.",
        "Findings might represent {list}.",
        "Cannot be certain whether this reflects {list}.",
        "Presumed {list}.",
    ),
    ("Favored to represent {list}.", "{List} are not excluded.", "Question of {list}."),
)
ABSENT_EXTRA = (  # resolution and comparison forms, by family; last held out
    (
        "The previously seen {np} is no longer visualized.",
        "{Np} seen on the prior study has resolved.",
        "No residual {np}.",
        "Interval resolution of the {np}.",
    ),
    (
        "Compared with the prior exam, the {np} has resolved.",
        "The {np} has completely cleared.",
        "No longer seen is the {np}.",
    ),
    ("The {np} noted previously is no longer present.", "Resolved {np}."),
)
PRESENT_EXTRA = (  # comparisons that stay present
    (
        "{Np}, decreased since the prior study.",
        "Compared to the prior exam, the {np} has improved.",
        "{Np} is unchanged from the prior exam.",
        "Slight interval decrease in the {np}.",
    ),
    (
        "The previously seen {np} has decreased in size.",
        "Persistent but improved {np}.",
        "{Np} in keeping with the known history.",
    ),
    ("Little change in the {np}.", "Again noted is {np}, slightly smaller."),
)
UNCERTAIN_EXTRA = (
    (
        "Borderline {np}.",
        "Subtle {np} cannot be entirely excluded.",
        "Findings are suggestive of {np}.",
    ),
    ("Likely {np}, although this is not certain.", "{Np} is possible."),
    ("Probable early {np}.", "Suspected {np}."),
)
DEVICE_REMOVED = (
    "Interval removal of the {np}.",
    "The {np} has been removed.",
    "The {np} is no longer present.",
)
INDICATIONS = (
    "Evaluate for {short}.",
    "? {short}.",
    "Rule out {short}.",
    "Assess for {short}.",
    "Concern for {short}.",
    "r/o {short}.",
    "Cough and fever, evaluate for {short}.",
    "History of {short}.",
    "Follow-up {short}.",
    "s/p {device} placement, assess for {short}.",
)
HEADERS = (
    "EXAM: CHEST PA AND LATERAL",
    "EXAM: Chest, 1 view, portable.",
    "EXAMINATION: CHEST (PORTABLE AP)",
    "TECHNIQUE: Frontal and lateral views of the chest.",
    "COMPARISON: XXXX",
    "COMPARISON: ___",
    "Comparison: Chest radiograph from yesterday.",
    "COMPARISON: None.",
)
OTHER_EXAMS = (  # (header, sentence, its mention: phrase, observation, status)
    (
        "LUMBAR SPINE:",
        "Mild compression fracture of L1, unchanged.",
        ("fracture", "Fracture", Status.PRESENT),
    ),
    (
        "THORACIC SPINE:",
        "No acute fracture or malalignment.",
        ("fracture", "Fracture", Status.ABSENT),
    ),
    (
        "RIGHT SHOULDER:",
        "No acute fracture or dislocation.",
        ("fracture", "Fracture", Status.ABSENT),
    ),
    (
        "LEFT SHOULDER:",
        "Healing fracture of the proximal humerus.",
        ("fracture", "Fracture", Status.PRESENT),
    ),
    ("ABDOMEN:", "Nonobstructive bowel gas pattern. No free air.", None),
    (
        "ABDOMEN:",
        "Enteric tube tip in the stomach.",
        ("Enteric tube", "Support Devices", Status.PRESENT),
    ),
    (
        "CERVICAL SPINE:",
        "Degenerative disc disease at C5-6. No fracture.",
        ("fracture", "Fracture", Status.ABSENT),
    ),
)
TYPOS = {
    "pneumothorax": ("pnuemothorax", "pneumothroax", "pneumo thorax", "pneumothorx"),
    "pleural": ("plural",),
    "effusion": ("effussion", "efusion"),
    "cardiomegaly": ("cardiomegally", "cardiomegalie"),
    "atelectasis": ("atelectesis", "atelactasis"),
    "consolidation": ("consolodation", "consolidaton"),
    "pneumonia": ("pnuemonia", "pneumonai"),
    "opacity": ("opactiy", "opacitiy"),
}
CONTRASTS = (", but ", "; however, ", ". ", ", though ")


@dataclass(frozen=True)
class Report:
    """One synthetic report, its gold labels, and its marked mentions (start, end,
    observation, status): the phrases that name an observation, with their status."""

    text: str
    labels: dict[str, Status]
    mentions: tuple[tuple[int, int, str, Status], ...] = field(default=())


def _mark(phrase: str, name: str, status: Status) -> str:
    """Wrap ``phrase`` in invisible marks that carry its observation and status."""
    return f"\x01{OBSERVATIONS.index(name):02d}{STATUS_ORDER.index(status)}\x02{phrase}\x03"


_MARK = re.compile(r"(\x01\d{3}\x02[^\x03]*\x03)")


def _unmark(marked: str) -> tuple[str, list[tuple[int, int, str, Status]]]:
    out: list[str] = []
    spans = []
    length = 0
    for part in _MARK.split(marked):
        if part.startswith("\x01"):
            code, phrase = part[1:4], part[5:-1]
            name, status = OBSERVATIONS[int(code[:2])], STATUS_ORDER[int(code[2])]
            lead = len(phrase) - len(phrase.lstrip())
            body = phrase.strip()
            if body:
                spans.append((length + lead, length + lead + len(body), name, status))
            out.append(phrase)
            length += len(phrase)
        else:
            out.append(part)
            length += len(part)
    return "".join(out), spans


def _outside(marked: str, change: object) -> str:
    """Apply ``change`` (a function of a string) to the text outside the marks."""
    return "".join(
        part if part.startswith("\x01") else change(part)  # type: ignore[operator]
        for part in _MARK.split(marked)
    )


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


def _cap(text: str) -> str:
    """Upper-case the first letter, skipping marks."""
    return re.sub(r"^([^A-Za-z]*)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def _sentence(template: str, noun: str) -> str:
    text = template.replace("{np}", noun).replace("{Np}", _cap(noun))
    return _cap(text)


def _split(rng: random.Random, options: Sequence[str], heldout: bool) -> str:
    """A choice among the training options, or the held-out last one."""
    return options[-1] if heldout else rng.choice(options[:-1]) if len(options) > 1 else options[0]


def _family(rng: random.Random, families: Sequence[Sequence[str]], heldout: bool) -> str:
    chosen = families[-1] if heldout else families[rng.randrange(len(families) - 1)]
    return rng.choice(chosen)


# Words real reports put before a finding; none of them hedges or negates it.
MODIFIERS = (
    "extensive",
    "patchy",
    "dense",
    "subtle",
    "mild",
    "minimal",
    "small",
    "large",
    "focal",
    "diffuse",
    "scattered",
    "streaky",
    "faint",
    "new",
    "increased",
    "moderate",
    "severe",
    "tiny",
    "marked",
    "overall",
)


def _noun(rng: random.Random, name: str, heldout: bool) -> str:
    nouns = list(NOUNS[name])
    other = OTHER_WORDS.get(name, ())
    if other and rng.random() < 0.35:
        noun = _fill(_split(rng, other, heldout), rng)
    else:
        noun = _fill(rng.choice(nouns), rng)
    if name != "Support Devices" and rng.random() < 0.25:
        noun = f"{rng.choice(MODIFIERS)} {noun}"
    return noun


def _joined(items: list[str], rng: random.Random) -> str:
    if len(items) == 1:
        return items[0]
    last = rng.choice((" or ", ", or ", " and ", ", and "))
    return ", ".join(items[:-1]) + last + items[-1]


class _Writer:
    """Writes one report's sentences, marking every mention."""

    def __init__(self, rng: random.Random, heldout: bool) -> None:
        self.rng = rng
        self.heldout = heldout
        self.sentences: list[str] = []

    def add(self, sentence: str) -> None:
        self.sentences.append(sentence)

    def negated_list(self, names: list[str]) -> None:
        rng = self.rng
        template = _family(rng, NEGATED_LISTS, self.heldout)
        items = [_mark(rng.choice(LIST_ITEMS[n]), n, Status.ABSENT) for n in names]
        if "{a}" in template:
            template = template.replace("{a}", items[0]).replace("{b}", items[-1])
            items = [items[0], items[-1]]
            self.add(_cap(template))
            return
        joined = _joined(items, rng)
        self.add(_cap(template.replace("{list}", joined).replace("{List}", _cap(joined))))

    def hedged_list(self, names: list[str]) -> None:
        rng = self.rng
        template = _family(rng, HEDGED_LISTS, self.heldout)
        items = [_mark(rng.choice(LIST_ITEMS[n]), n, Status.UNCERTAIN) for n in names]
        joined = (
            ", ".join(items[:-1])
            + rng.choice((" or ", ", or ", " versus ", " vs ", " and/or ", " and "))
            + items[-1]
        )
        self.add(_cap(template.replace("{list}", joined).replace("{List}", _cap(joined))))

    def one(self, name: str, status: Status) -> None:
        rng, heldout = self.rng, self.heldout
        if status is Status.ABSENT and name in NORMAL and rng.random() < 0.4:
            self.add(_mark(rng.choice(NORMAL[name])[:-1], name, status) + ".")
            return
        if status is Status.PRESENT and name in PRESENT_SENTENCES and rng.random() < 0.35:
            sentence = _fill(rng.choice(PRESENT_SENTENCES[name]), rng)
            self.add(_mark(sentence[:-1], name, status) + ".")
            return
        if status is Status.UNCERTAIN and name in UNCERTAIN_SENTENCES and rng.random() < 0.5:
            sentence = rng.choice(UNCERTAIN_SENTENCES[name])
            self.add(_mark(sentence[:-1], name, status) + ".")
            return
        if status is Status.ABSENT and name == "Support Devices" and rng.random() < 0.6:
            noun = _mark(_noun(rng, name, heldout), name, status)
            self.add(_sentence(rng.choice(DEVICE_REMOVED), noun))
            return
        families = {
            Status.PRESENT: (PRESENT, PRESENT_EXTRA),
            Status.ABSENT: (ABSENT, ABSENT_EXTRA),
            Status.UNCERTAIN: (UNCERTAIN, UNCERTAIN_EXTRA),
        }[status]
        group = families[1] if rng.random() < 0.3 else families[0]
        noun = _mark(_noun(rng, name, heldout), name, status)
        self.add(_sentence(_family(rng, group, heldout), noun))

    def relation(self) -> None:
        """A finding with its interpretation: the finding present, the interpretations
        uncertain (hedged) or present (asserted)."""
        rng = self.rng
        template, status = rng.choice(RELATIONS)
        finding = rng.choice(list(FINDING))
        first, second = rng.sample([n for n in INTERPRETATION if n != finding], 2)
        text = (
            template.replace(
                "{A}", _mark(_fill(rng.choice(FINDING[finding]), rng), finding, Status.PRESENT)
            )
            .replace("{B}", _mark(rng.choice(INTERPRETATION[first]), first, status))
            .replace("{C}", _mark(rng.choice(INTERPRETATION[second]), second, status))
        )
        self.add(_cap(text))


def _lists(
    writer: _Writer, pool: list[str], chosen: list[str], status_of: dict[str, Status]
) -> set[str]:
    """Negated and hedged lists, often padded with observations the report says
    nothing else about; returns the observations they name."""
    rng = writer.rng
    absent = [n for n in chosen if status_of[n] is Status.ABSENT]
    uncertain = [n for n in chosen if status_of[n] is Status.UNCERTAIN]
    listed: set[str] = set()
    # Negated lists, often padded with observations the report says nothing else about.
    if (len(absent) >= 2 and rng.random() < 0.6) or rng.random() < 0.35:
        extra = [n for n in pool if n not in chosen and n != "Support Devices"]
        names = absent + rng.sample(extra, k=min(len(extra), rng.randint(0, 4)))
        if len(names) >= 2:
            rng.shuffle(names)
            writer.negated_list(names)
            listed.update(names)
    if (len(uncertain) >= 2 and rng.random() < 0.5) or (uncertain and rng.random() < 0.25):
        extra = [n for n in pool if n not in chosen and n != "Support Devices"]
        names = uncertain + rng.sample(extra, k=min(len(extra), rng.randint(0, 2)))
        if len(names) >= 2:
            rng.shuffle(names)
            writer.hedged_list(names)
            listed.update(names)
    return listed


def report(rng: random.Random, heldout: bool = False) -> Report:
    """One report, its labels and its mentions."""
    writer = _Writer(rng, heldout)
    weights = {Status.PRESENT: 0.42, Status.ABSENT: 0.36, Status.UNCERTAIN: 0.22}
    pool = [*PATHOLOGY, "Support Devices"]
    chosen = rng.sample(pool, k=rng.choice((0, 1, 1, 2, 2, 3, 3, 4, 5)))
    status_of = {n: rng.choices(list(weights), weights=list(weights.values()))[0] for n in chosen}
    listed = _lists(writer, pool, chosen, status_of)
    for name in chosen:
        if name not in listed:
            writer.one(name, status_of[name])
    if rng.random() < 0.3:
        writer.relation()
    sentences = writer.sentences
    lungs_abnormal = any(
        status_of.get(n) is Status.PRESENT
        for n in ("Lung Opacity", "Consolidation", "Pneumonia", "Edema", "Lung Lesion")
    )
    fillers = [
        "" if lungs_abnormal else "The lungs are clear.",
        "Osseous structures are intact." if "Fracture" not in status_of else "",
        "Comparison is made to the prior study.",
        rng.choice(DISTRACTORS),
        rng.choice(DISTRACTORS) if rng.random() < 0.3 else "",
    ]
    for filler in fillers:
        if filler and rng.random() < 0.45:
            sentences.insert(rng.randrange(len(sentences) + 1), filler)
    for name in ("Cardiomegaly", "Enlarged Cardiomediastinum"):
        if name not in status_of and rng.random() < 0.35:
            sentences.append(_mark(rng.choice(NORMAL[name])[:-1], name, Status.ABSENT) + ".")
    # Contrast within one sentence: "No pneumothorax, but small effusion."
    if len(sentences) >= 2 and rng.random() < 0.25:
        first, second = sentences[0], sentences[1]
        if first.endswith(".") and second:
            joined = first[:-1] + rng.choice(CONTRASTS) + second[:1].lower() + second[1:]
            sentences[:2] = [joined]
    if rng.random() < 0.3:
        rng.shuffle(sentences)
    indication = _indication(rng)
    text = _layout(rng, sentences, indication)
    if rng.random() < 0.2:
        for us, uk in BRITISH.items():
            text = re.sub(rf"(?<![oO]){us}", uk, text)
    text = _noise(rng, text)
    clean, mentions = _unmark(text)
    labels = dict.fromkeys(OBSERVATIONS, Status.NOT_MENTIONED)
    for _, _, name, status in mentions:
        if _RANK[status] > _RANK[labels[name]]:
            labels[name] = status
    no_finding(labels)
    return Report(clean, labels, tuple(mentions))


def _indication(rng: random.Random) -> str:
    if rng.random() >= 0.6:
        return ""
    suspected = rng.choice(PATHOLOGY)
    return (
        rng.choice(INDICATIONS)
        .replace("{short}", rng.choice(LIST_ITEMS[suspected]))
        .replace("{device}", rng.choice(("chest tube", "central line", "ET tube", "PICC")))
    )


def _layout(rng: random.Random, sentences: list[str], indication: str) -> str:
    if not sentences:
        sentences = [
            rng.choice(
                (
                    "No acute cardiopulmonary process.",
                    "No acute cardiopulmonary abnormality.",
                    "Normal chest radiograph.",
                    "No acute intrathoracic process.",
                )
            )
        ]
    style = rng.randrange(6)
    findings = " ".join(sentences)
    impression_items = sentences[-min(len(sentences), rng.randint(1, 2)) :]
    if style == 0:
        parts = ["FINDINGS: " + findings, "IMPRESSION: " + " ".join(impression_items)]
    elif style == 1:
        numbered = " ".join(f"{i}. {s}" for i, s in enumerate(impression_items, start=1))
        parts = ["Findings: " + findings, "Impression: " + numbered]
    elif style == 2:
        parts = [findings]
    elif style == 3:
        parts = [
            "PA and lateral views of the chest.",
            findings.lower() if rng.random() < 0.3 else findings,
        ]
    elif style == 4:
        parts = [
            "FINDINGS:\n" + "\n".join(sentences),
            "IMPRESSION:\n" + "\n".join(impression_items),
        ]
    else:
        parts = [findings.upper()] if rng.random() < 0.5 else ["FINDINGS: " + findings.upper()]
    if indication:
        parts.insert(
            0,
            rng.choice(
                (
                    "INDICATION: ",
                    "Clinical history: ",
                    "History: ",
                    "HISTORY: ",
                    "REASON FOR EXAM: ",
                )
            )
            + indication,
        )
    if rng.random() < 0.4:
        parts.insert(0, rng.choice(HEADERS))
    if rng.random() < 0.12:
        header, sentence, mention = rng.choice(OTHER_EXAMS)
        if mention is not None:
            phrase, name, status = mention
            sentence = sentence.replace(phrase, _mark(phrase, name, status), 1)
        parts.append(header + " " + sentence)
    return rng.choice(("\n", " ", "\n\n")).join(parts)


def _noise(rng: random.Random, text: str) -> str:
    """Dictation errors, repeated words and redaction marks."""
    if rng.random() < 0.15:  # a misspelled mention
        words = [w for w in TYPOS if w in text.lower()]
        if words:
            word = rng.choice(words)
            typo = rng.choice(TYPOS[word])
            text = re.sub(word, typo, text, count=1, flags=re.I)
    if rng.random() < 0.1:  # a repeated word outside the mentions
        text = _outside(text, lambda s: re.sub(r"\b(the|is|of|and)\b", r"\1 \1", s, count=1))
    if rng.random() < 0.15:  # redaction marks
        text = _outside(
            text,
            lambda s: re.sub(
                r"\b(?:prior|yesterday|exam|study|radiograph)\b",
                lambda m: rng.choice(("XXXX", "___", m.group(0))),
                s,
            ),
        )
        if rng.random() < 0.5:
            text += rng.choice(
                (" Findings discussed with Dr. XXXX at XXXX.", " Dr. ___ was notified.")
            )
    return text


def no_finding(labels: dict[str, Status]) -> None:
    """CheXpert's No Finding, as the hand-written sets label it: present when no
    pathology is present or uncertain, absent when one is present, not mentioned when
    the only findings are uncertain."""
    if any(labels[n] is Status.PRESENT for n in PATHOLOGY):
        labels["No Finding"] = Status.ABSENT
    elif any(labels[n] is Status.UNCERTAIN for n in PATHOLOGY):
        labels["No Finding"] = Status.NOT_MENTIONED
    else:
        labels["No Finding"] = Status.PRESENT


def reports(count: int, seed: int, heldout: bool = False) -> list[Report]:
    """``count`` reports from ``seed``."""
    rng = random.Random(seed)  # noqa: S311  (synthetic text, not secrets)
    return [report(rng, heldout) for _ in range(count)]


def as_targets(items: Sequence[Report]) -> list[list[int]]:
    """Class indices (present, absent, uncertain, not_mentioned) per observation."""
    return [[STATUS_ORDER.index(r.labels[name]) for name in OBSERVATIONS] for r in items]
