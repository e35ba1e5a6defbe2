"""The PHI detector MedStream runs: an ensemble, then a clinical guard.

- **The learned tagger** (``medstream.deid.tagger``) finds what has no grammar: names,
  places, organisations, professions and free-form identifiers, in any casing, with or
  without a cue word.
- **Patterns** (``medstream.deid.text``) find what has a grammar: e-mails, URLs, IPs,
  SSNs, phone and fax numbers, dates, ages over 89, street addresses, ZIP codes, and
  record numbers after their cue.
- **Known values**: the record's own structured identifiers (the patient's name, MRN,
  phones) wherever they recur in its text.

Their union is then checked by the **clinical guard**, which removes what only looks like
PHI:
- a fraction, score or ratio is a date only where a date can be: ``4/5`` strength,
  ``7/10`` pain, ``2/2`` (secondary to) and ``7.28/45/62`` are never dates, whereas
  ``on 3/14`` or a line that starts ``3/14:`` is;
- a term of the clinical lexicon (``data/clinical_lexicon.tsv``: eponyms, drugs,
  abbreviations, scales, section headers), with grades or plain words beside it, is
  never redacted unless a title stands before it ("Mr. Foley", "Dr Homans"), or the
  model is confident *and* another name cue does;
- ordinary English words (``data/ordinary_words.txt.gz``, SCOWL) are no names in text
  whose writer capitalises, unless a title or a kinship word says so;
- a span must have its type's shape: no dose after a name, no lab line for an address,
  no clinical code (GCS, TNM, spine levels) for an identifier.

docs/deid.md lists every rule; ``bench/deid/diagnose.py`` shows, on the development set,
which one decided each span.

Every span says which detectors found it (``source``), for ``medstream deid text
--explain`` and the de-identification summary.
"""

from __future__ import annotations

import csv
import gzip
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from medstream.deid.language import Languages, common, language_at, own, rare_in_english
from medstream.deid.text import (
    FOREIGN_MONTH_NAMES,
    REGION_CODES,
    ROAD,
    STATE_CODES,
    PhiType,
    Span,
    TextDetector,
    dictionaries,
    merge,
    region_in_address,
    world_places,
)
from medstream.models.package import latest

DATA = Path(__file__).resolve().parent / "data"
# What the tagger reports, as the CONTRACT's types.
TAGGER_TYPES = {t.value: t for t in PhiType} | {"PROFESSION": PhiType.PROFESSION}
# The lexicon's departments, specialties, roles and letter formulas.
SERVICE = frozenset({"service"})
# Words that join a service's words ("Dept of Nephrology", "Abt. für Innere Medizin").
_JOINERS = frozenset({"of", "for", "and", "de", "du", "des", "la", "le", "für", "und", "di", "del"})
# Spans of these types are checked against the lexicon (a drug is not a person).
GUARDED = {
    PhiType.NAME,
    PhiType.LOCATION,
    PhiType.ORGANIZATION,
    PhiType.PROFESSION,
    PhiType.OTHER,
    PhiType.ID,
}
# Types that a line in another language can make a common word ("Verlauf" as NAME,
# "Aufnahme über die" as ADDRESS); a profession is a common word by nature.
_FOREIGN_GUARDED = {PhiType.NAME, PhiType.LOCATION, PhiType.ORGANIZATION, PhiType.ADDRESS}
CONFIDENT = 0.9
# Below this the tagger is unsure, and an English word is taken for a word.
UNSURE = 0.5
# How sure the tagger must be that a bare m/d is a date when no cue says so.
MODEL_DATE = 0.8
# A bare m/d that might be a fraction: a date only with a date's context.
_BARE = re.compile(r"^\d{1,2}[/.]\d{1,2}$")
# A bare d-d is a range ("4-6 wks", "10-15 units") unless a strong date cue says otherwise.
_BARE_RANGE = re.compile(r"^\d{1,2}-\d{1,2}$")
# What follows a fraction, a count or a range, never a date: "2/3 of", "1/2 tab",
# "2/18 LN +", "6/12 history", "4-6 wks".
_QUANTITY_AFTER = re.compile(
    r"(?i:^\s*(?:of|days?|d|wks?|weeks?|mos?|months?|yrs?|years?|hrs?|hours?|h|mins?|minutes?|"
    r"secs?|tabs?|tablets?|caps?|capsules?|puffs?|doses?|units?|portions?|majority|strength|"
    r"ns|ln|nodes?|cores?|bottles?|sets?|times|x|history|hx|business|cups?|pos|positive|"
    r"neg|negative|ratio|split|dilution|od|os|ou|unaided|aided|pinhole|corrected|"
    r"uncorrected|\+|%)(?![a-z]))"
)
# A date's strong cues: what can stand before a date and not before a score ("on 4/5"
# but "from 2/5 to 4/5" is a strength that improved).
_STRONG_DATE_CUE_BEFORE = re.compile(
    r"(?i:\b(?:on|in|since|dated?|dos|seen|adm(?:itted)?|d/?c(?:'?d)?|discharged|returned|"
    r"started|stopped|began|due|appt|visit|f/u|follow[- ]?up|last|next|mon|tue|wed|thu|fri|"
    r"sat|sun|tues|weds|thur|thurs|monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    r"as of|effective|filled|refilled|dispensed|faxed|mailed|posted|sent|signed|received|"
    r"ordered|collected|picked up|"
    r"expires?|exp|dob|born)\s*[:#]?\s*)$"
)
_MIXED = re.compile(r"\d[.]\d+/|/\d+[.]\d")  # 7.28/45: a blood gas, never a date
# Digits only, with no four-digit year: what a row of scores can look like too.
_SHORT_NUMERIC = re.compile(r"^\d{1,2}[/.-]\d{1,2}(?:[/.-]\d{1,2})?$")
# Two separators that differ (1.5-20, 4.5-11): a range of decimals, never a date.
_DECIMAL_RANGE = re.compile(r"^\d{1,2}([/.-])\d{1,2}(?!\1)[/.-]\d{2,4}$")
_DATE_CUE_BEFORE = re.compile(
    r"(?i:\b(?:on|since|from|until|till|thru|through|by|dated?|dos|seen|adm(?:itted)?|"
    r"d/?c(?:'?d)?|discharged|returned|started|stopped|began|due|appt|visit|f/u|follow[- ]?up|"
    r"last|next|mon|tue|wed|thu|fri|sat|sun|tues|weds|thur|thurs|monday|tuesday|wednesday|"
    r"thursday|friday|"
    r"saturday|sunday|between|and|to|of|as of|effective|expires?|exp|dob|born)"
    r"\s*[:#]?\s*)$"
)
# British notes write durations as fractions of a week or year: "review in 6/12".
_DURATION_BEFORE = re.compile(r"(?i:\b(?:in|for|over|after|within|x|last|past|next|prior)\s*)$")
# What follows a duration in weeks, months or days: "3/12 old", "2/52 ago", "6/12 hx".
_DURATION_AFTER = re.compile(r"(?i:^\s*(?:old|ago|hx|history|duration|post|since)\b)")
# Types a clinical code can be mistaken for.
_CODED = frozenset({PhiType.ID, PhiType.MRN, PhiType.PHONE, PhiType.ZIP, PhiType.DATE, PhiType.SSN})
# From one time of day to another, on the 24-hour clock: "1300-1400", "0800 - 1630".
_HOURS = re.compile(r"(?:[01]\d|2[0-3])[0-5]\d\s*[-\u2013]\s*(?:[01]\d|2[0-3])[0-5]\d")
# A review, a repeat or a follow-up before an interval: "repeat USS 6/12", "review in
# fracture clinic at 3/12", "f/u 2/12".
_FOLLOW_UP_BEFORE = re.compile(
    r"(?i:\b(?:repeat|review|recheck|reassess|f/?u|follow[- ]?up|fu)\b[^.;:\n\d]{0,30}$)"
)
# A coding system before its code: "LOINC 4548-4", "SNOMED CT 44054006", "CPT 99285 +
# 93010", "ICD-10 R07.9", "NDC 0093-7146-56".
_CODE_SYSTEM_BEFORE = re.compile(
    r"(?i:\b(?:LOINC|SNOMED(?:[- ]?CT)?|CPT|HCPCS|ICD(?:-?1[01]|-?9)?(?:-?CM|-?AM|-?PCS)?|"
    r"OPCS(?:-?4)?|NDC|RxNorm|ATC|DRG|MS-DRG|HRG|read code)s?\s*(?:code\s*)?[:#]?\s*"
    r"(?:[\w.-]+\s*(?:[+,/&]|and)\s*)*)$"
)
# A dose schedule in fractions of a tablet: "1/2-1/2-3/4", "1/4 - 0 - 1/2".
_TABLET_FRACTIONS = re.compile(r"(?:[0-4]/[2-4]|[0-2])(?:\s*-\s*(?:[0-4]/[2-4]|[0-2])){2,3}")
_DATE_CUE_AFTER = re.compile(
    r"^(?:\s*(?:@|at)?\s*\d{1,2}:\d{2}|\s*-\s*\d{1,2}/\d{1,2}\b|\s*[AP]M\b|"
    r"\s+(?:[01]\d|2[0-3])[0-5]\d\b(?![.,]\d|\s*(?:mg|ml|units?|cc)\b)|:\s)"
)
_SCORE_CUE_BEFORE = re.compile(
    r"(?i:\b(?:strength|power|motor|mmt|tone|reflexes|dtrs?|pulses|sensation|pain|score|"
    r"scores|scale|gcs|apgars?|bp|sbp|dbp|pressure|abg|vbg|gas|ratio|dilution|titer|titre|"
    r"va|acuity|vision|iop|grade|x|ii|iii|iv|tab|tabs|of|bipap|cpap|bilevel|ipap|"
    r"epap|peep|vent|settings|simv|psv|prvc|avaps|ps|ac)\s*[:=]?\s*"
    # "pain now 6/10", "strength is 4/5": a filler word between the cue and the score
    r"(?:(?:now|currently|is|was|remains|still|today|rated|at)\s+)?)$"
)
# A score's own word earlier in the clause, with no date cue right before the value.
_SCORE_NEARBY = re.compile(
    r"(?i:\b(?:pain|score|scores|scale|gcs|apgars?|strength|power|reflexes|acuity|rated)\b)"
    r"[^.;\n]*$"
)
_NAME_CUE_BEFORE = re.compile(
    r"(?i:\b(?:dr|drs|mr|mrs|ms|miss|mx|prof|sister|nurse|rev|dear|wife|husband|son|"
    r"daughter|mother|father|brother|partner|patient|pt|name|signed|by|per|aka|a\.k\.a|"
    r"goes by|prefers|nicknamed|known as|called|re)\.?\s*[:,]?\s*[\"'\u201c]?)$"
)
# A clinical code right after a term: "Montreal A2L3B2p", "Ann Arbor IIIB".
_CODE_AFTER = re.compile(
    r"^\s*\(?(?:A[1-3]L[1-4]B[1-3]p?|[IV]{1,4}[A-E]?|[cpy]?T[0-4][a-d]?N[0-3])\b"
)
# Cues that stand as often before a method or a test as before a person ("by Simpson's").
_WEAK_CUE = re.compile(r"(?i:\b(?:by|per)\s*)$")
# Name cues that also stand before ordinary words ("pt clear she does not want…").
_WEAK_NAME_CUE = re.compile(r"(?i:\b(?:pt|patient|by|per|name|signed|re)\.?\s*[:,]?\s*)$")
_TITLE_BEFORE = re.compile(r"(?i:\b(?:dr|mr|mrs|ms|mx|miss|prof)\.?\s+)$")
_CREDENTIAL_AFTER = re.compile(
    r"^\s*,?\s*(?:RN|MD|DO|NP|PA|PA-C|PhD|LPN|CNA|RRT|MSW|LCSW|PharmD|RPh|CNM|CRNA|FNP|"
    r"APRN|DPT|OTR|SLP|MBBS|FRCP|FRCS|MRCP)\b"
)
_CLINICAL_HEAD_AFTER = re.compile(
    r"(?i:^(?:'s|s'|')?\s*(?:sign|signs|test|tests|maneuver|manoeuvre|criteria|score|scale|"
    r"classification|class|stage|grade|disease|syndrome|palsy|phenomenon|reflex|triad|"
    r"fracture|position|point|law|node|nodes|ulcer|lines|disorder|sarcoma|lymphoma|tumou?r|"
    r"catheter|tube|drain|procedure|operation|repair|incision|stain|equation|formula|rule|"
    r"respirations?|breathing|respiration|positive|negative|neg|pos|equivocal|present|"
    r"absent|coma|limb|loop|anastomosis|pouch|flap|fashion|type|variant|lesion|hernia|cyst|"
    r"gland|duct|space|zone|cells?|bodies|body|membrane|pentad|biplane|method|block|"
    r"reversal|takedown|triage|stool|chart|frame|collar|solution|splint|cast|pathway|"
    r"[a-z]+(?:itis|osis|opathy|emia|aemia|oma|ectomy|plasty|otomy|ostomy|"
    r"algia|plegia|ism)|\+|-)\b|^(?:'s)?\s*[+-](?!\s*[A-Za-z]{2})"
    # an instrument's name in words after it: "Ottawa ankle rules", "Edinburgh Postnatal
    # Depression Scale"
    # ("Manchester for assessment" is a journey, not an instrument)
    r"|^(?:'s)?(?:\s+(?!(?:for|to|in|at|on|with|the|a|an|by|from|via|near|into|is|was)\b)"
    r"[A-Za-z-]+){1,2}\s+(?:rules?|scale|score|criteria|classification|"
    r"questionnaire|inventory|index|test|signs?|syndrome|disease|tool|chart|model|"
    r"pathway|assessment|system|guidelines?)\b)"
)
_WORDS = re.compile("[\\w'\u2019-]+")
_EPONYM_PARTICLES = frozenset({"de", "von", "van", "du", "le", "la", "di"})
# A grade, a class or a count beside a term: "Clark IV", "Child-Pugh A", "Bishop 7".
_GRADE = re.compile(r"^(?:[IVX]{1,4}|[A-Za-z]|\d{1,3}(?:\.\d)?|[A-D]\d?|\d[a-dA-D])$")
# A score after an eponym: "Wells (PE) 6.0", "Glasgow 15", "Clark IV".
_SCORE_AFTER = re.compile(r"^(?:\s*\([A-Za-z ]{1,12}\))?\s*[:=]?\s*(?:\d|[IVX]{1,4}\b|[A-D]\b)")
# What stands before an eponym used as a disease, a procedure or a sign.
_CLINICAL_BEFORE = re.compile(
    r"(?i:\b(?:s/p|h/o|hx|hx of|history of|had|has|with known|known|possible|probable|"
    r"suspected|likely|no|not|c/w|consistent with|r/o|rule out|neg|negative|pos|positive|"
    r"modified|laparoscopic|lap|open|robotic|redo|prior|classic|pylorus-preserving|"
    r"standard|planned)\s*[:(]?\s*|[+-]\s*|"
    # a quantity of it: "1 L of Hartmann's", "500 mL Hartmann's", "plaster of Paris"
    r"\d\s*(?:l|ml|mls|litres?|liters?)\s+(?:of\s+)?|(?:plaster|bags?|litres?|liters?)\s+of\s+)$"
)


@dataclass(frozen=True)
class Lexicon:
    """The clinical lexicon: lower-cased term -> category."""

    terms: dict[str, str]

    @classmethod
    def load(cls, path: Path = DATA / "clinical_lexicon.tsv") -> Lexicon:
        with path.open(newline="") as handle:
            rows = [r for r in csv.reader(handle, delimiter="\t") if r and not r[0].startswith("#")]
        terms = {row[0].lower(): row[1] for row in rows}
        # A term that is also a first name or a city ("Brooke", "Montreal") is protected
        # only in a clinical context, whatever its row says.
        first, _, cities, _ = dictionaries()
        for term, category in terms.items():
            if category == "eponym" and (term in first or term in cities):
                terms[term] = "eponym_in_context"
        return cls(terms)

    def category(self, word: str) -> str | None:
        """A word's category in the lexicon, or None."""
        return self._category(word)

    def _category(self, word: str) -> str | None:
        word = word.lower().rstrip(".")
        for form in (word, re.sub("(?:'s|\u2019s|s'|')$", "", word)):
            if form in self.terms:
                return self.terms[form]
        return None

    def _word(self, word: str) -> str | None:
        """A word's category, or a hyphenated word's ("Kussmaul-type", "LIMA-LAD",
        "Roux-en-Y"): a term with only terms, grades or short lower-case joiners beside it."""
        category = self._category(word)
        if category is not None or "-" not in word.strip("-"):
            return category
        parts = [p for p in re.split(r"[-/]", word) if p]
        found = [c for p in parts if (c := self._category(p)) is not None]
        if found and all(
            self._category(p) is not None or _GRADE.match(p) or (p.islower() and len(p) <= 6)
            for p in parts
        ):
            return "eponym_in_context" if "eponym_in_context" in found else found[0]
        return None

    def clinical(
        self,
        text: str,
        start: int,
        end: int,
        filler: Callable[[str], bool] | None = None,
        ignore: frozenset[str] = frozenset(),
    ) -> bool:
        """Whether ``text[start:end]`` reads as clinical vocabulary, not an identifier:
        a term of the lexicon, with nothing beside it but terms, grades ("Clark IV",
        "Child-Pugh A", "Bishop 7") and lower-case words that are no name ("Nissen
        fundoplication"); and an eponym that is also a common surname stands in a
        clinical context (a clinical word or a score after it, "s/p", "hx of", "had"
        before it). Terms of the ``ignore`` categories count as no terms."""
        words = _WORDS.findall(text[start:end])
        if not words:
            return False
        categories = [None if len(w) == 1 else self._word(w) for w in words]
        categories = [None if c in ignore else c for c in categories]
        if all(c is None for c in categories):
            return False
        for i in range(len(words) - 1):  # "de Quervain's", "von Willebrand": one eponym
            if categories[i] is None and words[i] in _EPONYM_PARTICLES:
                categories[i] = categories[i + 1]
        for word, category in zip(words, categories, strict=True):
            if category is None and not (
                _GRADE.match(word) or (filler is not None and word.islower() and filler(word))
            ):
                return False
        if "eponym_in_context" in categories:
            inside = any(
                c is None and (w.isdigit() or (len(w) > 1 and (w.islower() or _GRADE.match(w))))
                for w, c in zip(words, categories, strict=True)
            ) or (  # "Weber A", "Mason II": a class after the eponym
                len(words) > 1
                and categories[-2] is not None
                and re.fullmatch("[A-D]|[IVX]{1,4}", words[-1]) is not None
            )
            return (
                inside
                or bool(_CLINICAL_HEAD_AFTER.match(text[end : end + 48]))
                or (
                    bool(_SCORE_AFTER.match(text[end : end + 16]))
                    # "Tokyo 153-0051", "Leeds LS1 3EX": a postcode, not a score
                    and not re.match(
                        r"\s*,?\s*(?:\d{4}|\d{3}-\d|[A-Z]{1,2}\d)", text[end : end + 16]
                    )
                )
                or bool(_CODE_AFTER.match(text[end : end + 16]))  # "Montreal A2L3B2p"
                or bool(_CLINICAL_BEFORE.search(text[max(0, start - 24) : start]))
                or text[start] in "+-"  # "+McMurray", "-Homans"
            )
        return True

    def term(self, value: str) -> bool:
        """Whether ``value`` as a whole is a lexicon term."""
        return self._category(value) is not None


_ROOM_BEFORE = re.compile(
    r"(?i:\b(?:rm|room|bed|bay|cubicle|cube|station|ward|unit|pod|suite|box)\.?\s*#?\s*)$"
)


def room(text: str, span: Span) -> bool:
    """A room number of three digits or more ("rm 394", "Room 4102B"): a place, i2b2's
    ROOM. A bed, bay, cubicle or ward of one or two ("bed 12", "Ward 7B", "Resus bay
    3") is furniture every ward has: it narrows down no one (``ward_furniture``)."""
    return (
        span.type is PhiType.LOCATION
        and bool(_ROOM_BEFORE.search(text[max(0, span.start - 12) : span.start]))
        and sum(c.isdigit() for c in text[span.start : span.end]) >= 3
    )


_FURNITURE_WORD = re.compile(
    r"(?i:rm|room|bed|beds|bay|cubicle|cube|ward|station|pod|side|resus|majors|minors|"
    r"recovery|theatre|theater|cot|chair|trolley|stretcher|and|&)$"
)


def ward_furniture(text: str, span: Span) -> bool:
    """A span of bed, bay, cubicle or ward numbers of one or two digits with their words
    ("14 Ward 7B" of "bed 14 Ward 7B", "12" of "Bed 12", "5" of "Room 5, bed 2"): the
    furniture of a ward, which every ward has, not a place that narrows anyone down."""
    value = text[span.start : span.end]
    before = re.search(r"([A-Za-z]+)\.?\s*#?\s*$", text[max(0, span.start - 16) : span.start])
    tokens = re.findall(r"[A-Za-z]+|\d+[A-Za-z]?", value)
    previous = before.group(1) if before else ""
    numbers = 0
    for token in tokens:
        if token[0].isdigit():
            if len(token.rstrip("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjklmnpqrstuvwxyz")) > 2:
                return False
            joined = previous.lower() in ("and", "&")  # "beds 3 and 4"
            if not (numbers if joined else _FURNITURE_WORD.match(previous)):
                return False
            numbers += 1
        elif not _FURNITURE_WORD.match(token):
            return False
        previous = token
    return numbers > 0


def title(text: str, start: int) -> bool:
    """A title right before ``start`` ("Mr. Homans", "Dr Crohn"): a person, whatever
    the word."""
    return bool(_TITLE_BEFORE.search(text[max(0, start - 8) : start]))


def name_cue(text: str, start: int, end: int | None = None) -> bool:
    """A title, a kinship word, a label or a nickname's cue right before ``start``, on
    the same line; or a credential right after ``end`` ("j. park, RN")."""
    before = text[max(0, start - 24) : start].rsplit("\n", maxsplit=1)[-1]
    if _NAME_CUE_BEFORE.search(before):
        return True
    quoted = re.search('["\u201c]$', before) and re.match('["\u201d]', text[end or 0 :][:1])
    if end is not None and quoted:
        return True  # a nickname in quotes: Nasiru "NL" Lawal
    return end is not None and bool(_CREDENTIAL_AFTER.match(text[end : end + 12]))


def real_date(text: str, start: int, end: int, confidence: float = 0.0) -> bool:
    """Whether a date-shaped span can be a date here. Full dates (a month name, a year,
    ISO) always can; a number mixing ``.`` and ``/`` (a blood gas) never; a bare ``m/d``
    never after a score's cue (strength, pain, GCS…) or before a quantity's word
    ("2/3 of", "2/18 LN"), and otherwise with a date's context (on, since, seen…, a time
    after it, the start of a line) or when the tagger, reading the whole sentence, is
    confident (``confidence``) it is a date. A value that reads as a score or a count
    ("4/5", "2/2", "3/10") or a range ("4-6") needs a strong date cue: the tagger's
    confidence is not enough."""
    value = text[start:end].strip()
    article = re.match(r"(?i:(?:on\s+)?the\s+)(?=\d)", value)
    if article:  # the tagger's "the 9th": judge the ordinal
        start = text.index(value, start) + article.end()
        value = value[article.end() :]
    leading = _LEADING_FRACTION.match(value)
    if leading and not _MONTH_NEAR.search(value):
        # the tagger's span ran on past the number ("3/4 of the"): judge the number
        start = text.index(value, start)
        end = start + leading.end()
        value = leading.group()
    if _MIXED.search(value) or _DECIMAL_RANGE.match(value):
        return False
    line_start = text.rfind("\n", 0, start) + 1
    before = text[line_start:start]
    after = text[end : end + 16]
    if _SHORT_NUMERIC.match(value) and _SCORE_CUE_BEFORE.search(before):
        return False  # "Apgars 8/9/10", "reflexes 2/2/1": scores in a row, not a date
    if _TIMINGS.match(value) and _MINUTES_AFTER.match(after):
        return False  # "Apgar 6/8/9 at 1/5/10 min": the minutes the scores were taken at
    if not month_word_date(text, start, end):
        return False
    if _ORDINAL.match(value):
        return ordinal_date(text, start, end)
    ranged = bool(_BARE_RANGE.match(value))
    if not (_BARE.match(value) or ranged):
        return True
    if "." in value:
        return False  # 4.5 is a number: a bare day and month are written with a slash
    parts = re.split(r"[/.-]", value)
    first, second = (int(n) for n in parts)
    if not ((1 <= first <= 12 and 1 <= second <= 31) or (1 <= second <= 12 and 1 <= first <= 31)):
        return False  # 16/18 is no month and day either way round
    if _SCORE_CUE_BEFORE.search(before) or (
        second in (7, 12)
        and (
            _DURATION_BEFORE.search(before)
            or _DURATION_AFTER.match(after)
            or (first < second and _FOLLOW_UP_BEFORE.search(before[-40:]))
        )
    ):
        return False  # "last 2/12", "3/12 old": months, not a date
    around = text[max(0, start - 14) : end + 14]
    offset = max(0, start - 14)
    if any(
        m.start() + offset <= start and end <= m.end() + offset
        for m in _TABLET_FRACTIONS.finditer(around)
    ):
        return False  # "Coumadin 5 mg 1/2-1/2-3/4": a dose schedule in tablets
    if _NAMED_SCORE_BEFORE.search(before):
        return False  # "AUDIT-C 9/12", "MoCA 22/30", "EPDS 15/30": a score's own name
    if _QUANTITY_AFTER.match(after):
        return False
    strong = bool(_STRONG_DATE_CUE_BEFORE.search(before))
    if not ranged and any(p.startswith("0") for p in parts):
        return True  # "3/04", "1/08": no score is written with a leading zero
    score_like = first == second or (first <= second and second in _SCORE_SCALES)
    if ranged or score_like:
        # "in" dates a month ("in 3/24") but not a count ("GNR in 1/2")
        strong = strong and not re.search(r"(?i:\bin\s*)$", before)
        # a range, "x of x" or a score out of ten or less: only a strong cue makes a date
        if first == second and re.search(r"(?i:\bin\s*)$", before):
            return False  # "in 2/2 bottles": a count, whatever follows
        return strong or bool(_DATE_CUE_AFTER.match(after))
    if strong or _DATE_CUE_BEFORE.search(before) or _DATE_CUE_AFTER.match(after[:12]):
        return True
    if _SCORE_NEARBY.search(before[-40:]):
        return False  # "pain now 6/10, was 9/10": a second score in the same breath
    # A line or list item that opens with the date: "3/14: CT head neg", "- 3/14 seen".
    if not before.strip(" -*•\t") and re.match(r"\s*[:\-]?\s*[A-Za-z]", text[end:]):
        return True
    return confidence >= MODEL_DATE


_TIMINGS = re.compile(r"^\d{1,2}/\d{1,2}/\d{1,2}$")
_MINUTES_AFTER = re.compile(r"(?i:^\s*(?:min|mins|minutes)\b)")
# A score's name right before its value: a hyphenated instrument ("AUDIT-C", "PHQ-9",
# "GAD-7", "EQ-5D") or a screening test scored out of a total.
_NAMED_SCORE_BEFORE = re.compile(
    r"(?:\b[A-Z][A-Za-z]{1,6}-[A-Z0-9]{1,4}|\b(?:MMSE|MoCA|EPDS|SLUMS|AMTS|AMT|ACE|FIM|MUST|"
    r"CIWA|COWS|NIHSS|RASS|CAM|AUDIT|PHQ|GAD|Barthel|Braden|Waterlow|Norton|Bishop|"
    r"MMT|MRC))\s*[:=]?\s*(?:score\s*)?$"
)
_LEADING_FRACTION = re.compile(r"^\d{1,2}[/.-]\d{1,2}(?=\s+[A-Za-z])")
# What scores and fractions are out of: strength /5, pain /10, reflexes /4, murmurs /6.
_SCORE_SCALES = {2, 3, 4, 5, 6, 10}
_ORDINAL = re.compile(r"(?i)^\d{1,2}(?:st|nd|rd|th)$")
_MONTH_NEAR = re.compile(r"(?i:\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b)")


def ordinal_date(text: str, start: int, end: int) -> bool:
    """A lone ordinal ("21st") is a date only as one: "on the 21st", "since the 3rd",
    "the 3rd of May", "May 3rd". Before the noun it counts it is an ordinal ("3rd
    admission", "4th dose", "2nd floor")."""
    before = text[max(0, start - 12) : start]
    after = text[end : end + 16]
    following = after.strip().removeprefix("of").strip()
    if _MONTH_NEAR.search(before[-6:]) or _MONTH_NEAR.match(following):
        return True
    if _COUNTED_AFTER.match(after):
        return False
    if re.match(r"\s+of\b", after):
        return True
    return bool(re.search(r"(?i:\b(?:on|the|by|until|till|since|from|before|after)\s*)$", before))


# What an ordinal counts when it is no date: "3rd admission", "2nd floor", "4th dose".
_COUNTED_AFTER = re.compile(
    r"(?i:^[\s-]*(?:floor|dose|admission|adm|time|times|day|visit|grade|degree|line|rib|toe|"
    r"finger|digit|trimester|percentile|centile|quartile|decile|cycle|round|attempt|episode|generation|year|week|"
    r"month|ics|intercostal|place|birthday|child|pregnancy|session|fraction|infusion|"
    r"cranial|nerve|decade|level|order|opinion|shift|party|tier|stage|course|lumbar|"
    r"metatarsal|metacarpal|ray|web|compartment|sound|heart|hs|st|ave|avenue|street)\b)"
)


_AMBIGUOUS_MONTHS = {"may", "march"}


def month_word_date(text: str, start: int, end: int) -> bool:
    """A month written alone, with no number, where the word has another reading ("may
    eat", "march", "Jan" the name) is a date only with a number or a date's preposition
    beside it."""
    value = text[start:end].strip().rstrip(".")
    if value.lower() not in _AMBIGUOUS_MONTHS:
        return True
    # a number beside it on its line: "3 May", "May 3rd", "may 2024"
    if re.search(r"\d(?:st|nd|rd|th)?(?:[ \t,.]*(?:of[ \t]+)?)$", text[max(0, start - 8) : start]):
        return True
    if re.match(r"[ \t,.'-]*\d", text[end : end + 8]):
        return True
    return bool(
        re.search(
            r"(?i:\b(?:in|since|by|until|till|of|early|late|mid|last|next|dob|born|birth|"
            r"discharged|admitted|seen|dated|from|to|through)\s*:?\s*)$",
            text[max(0, start - 14) : start],
        )
    )


@cache
def nations() -> frozenset[str]:
    """Countries, nations, peoples, languages and faiths, lower-cased
    (``data/nations.txt``): no Safe Harbor identifier."""
    lines = (DATA / "nations.txt").read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and line[0] != "#")


def national(text: str, span: Span) -> bool:
    """Whether a span is only a country, a nationality, a language or a faith ("FRANCE",
    "Muslim", "Dutch Reformed", "New Zealand"): none of these narrows a person down as
    Safe Harbor counts it. One that is also a first name ("France", "India") counts
    only in capitals or after a comma ("Lyon, France")."""
    known = nations()
    value = text[span.start : span.end].strip(" .,;:()")
    words = [
        w
        for w in re.findall(r"[\w'\u2019.-]+", value.lower())
        if w not in ("and", "of", "the", "&")
    ]
    if not (value.lower() in known or (words and all(w.rstrip(".") in known for w in words))):
        return False
    if not value.isupper() and re.search(
        r"[A-Z][\w'\u2019-]*[ \t]$|[ \t]of[ \t]$", text[max(0, span.start - 24) : span.start]
    ):
        return False  # "Camp Australia", "Bank of India": a name that holds a country
    first = dictionaries()[0]
    if any(w in first for w in words) and not value.isupper():
        return bool(re.search(r",[ \t]*$", text[max(0, span.start - 3) : span.start]))
    return True


@cache
def lexicon() -> Lexicon:
    """The clinical lexicon, read once."""
    return Lexicon.load()


class PhiDetector:
    """The ensemble and its guard. ``prepare`` runs the tagger once over many texts (a
    micro-batch); ``detect`` then finds them in its cache."""

    def __init__(
        self,
        tagger: object | None,
        patterns: TextDetector | None = None,
        terms: Lexicon | None = None,
        cache_size: int = 4096,
    ) -> None:
        self.tagger = tagger
        self.patterns = patterns or TextDetector()
        self.lexicon = terms or lexicon()
        self._names = self.patterns.first_names | self.patterns.last_names
        self._languages = Languages(frozenset(self.lexicon.terms))
        self._lines: tuple[str, list[tuple[int, int, str]]] = ("", [])
        self._cache: OrderedDict[str, list[Span]] = OrderedDict()
        self._cache_size = cache_size

    def prepare(self, texts: Iterable[str]) -> None:
        """Tag every text not tagged yet, in one batched pass."""
        wanted = list(dict.fromkeys(t for t in texts if t and t not in self._cache))
        for text, spans in zip(wanted, self._tag(wanted), strict=True):
            self._cache[text] = spans
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _tag(self, texts: Sequence[str]) -> list[list[Span]]:
        if self.tagger is None or not texts:
            return [[] for _ in texts]
        found = self.tagger.spans(texts)  # type: ignore[attr-defined]
        return [
            [
                Span(s.start, s.end, TAGGER_TYPES[s.type], "model", s.confidence)
                for s in spans
                if s.type in TAGGER_TYPES
            ]
            for spans in found
        ]

    def detect(self, text: str, known: Iterable[tuple[str, PhiType]] = ()) -> list[Span]:
        """Every PHI span in ``text``, guarded and merged so that none overlap."""
        if not text:
            return []
        model = self._cache.pop(text, None)
        if model is None:
            model = self._tag([text])[0]
        model = [tightened for s in model if (tightened := tighten(text, s)) is not None]
        model = self._institutions(text, model)
        candidates = [*model, *self.patterns.grammar(text), *self.patterns.known(text, known)]
        candidates = [d for s in candidates if (d := without_time(text, s)) is not None]
        candidates = [without_credentials(text, s) for s in candidates]
        candidates = [d for s in candidates if (d := one_line(text, s)) is not None]
        candidates = [d for s in candidates if (d := at_dash(text, s)) is not None]
        kept = [s for s in candidates if self._keep(text, s)]
        kept += self._attached_services(text, [s for s in candidates if s not in kept], kept)
        kept = [completed(text, s) for s in kept]
        kept += self._acronyms(text, kept)
        return merge([s for s in kept if not _lone_initial(text, s, kept)])

    def _acronyms(self, text: str, kept: list[Span]) -> list[Span]:
        """An organisation's acronym, defined in brackets right after its name
        ("Moi Teaching & Referral Hospital (MTRH)"), wherever it stands in the text: it
        names the same organisation. A clinical abbreviation is never one."""
        defined = {
            m.group(1)
            for span in kept
            if span.type is PhiType.ORGANIZATION
            and (m := _ACRONYM_AFTER.match(text, span.end)) is not None
            and not self.lexicon.term(m.group(1))
        }
        return [
            Span(m.start(), m.end(), PhiType.ORGANIZATION, "pattern", 1.0)
            for acronym in defined
            for m in re.finditer(rf"\b{re.escape(acronym)}\b", text)
        ]

    def _institutions(self, text: str, spans: list[Span]) -> list[Span]:
        """In a line in another language than English, the tagger's pieces of an
        institution's name, one after the other ("Moravská" "úvěrní" "banka"), joined
        into the organisation they name, so that the language guard does not take its
        common words one by one."""
        runs: list[list[Span]] = []
        for span in sorted(spans, key=lambda s: s.start):
            last = runs[-1][-1] if runs else None
            if (
                last is not None
                and last.type in _FOREIGN_GUARDED
                and span.type in _FOREIGN_GUARDED
                and text[last.end : span.start] in (" ", ", ")
            ):
                runs[-1].append(span)
            else:
                runs.append([span])
        out = []
        for run in runs:
            first, last = run[0], run[-1]
            words = re.findall(r"[^\W\d_]+", text[first.start : last.end])
            if (
                len(run) > 1
                and any(w.lower() in _INSTITUTIONS for w in words)
                and self._language(text, first.start) != "en"
            ):
                confidence = max(s.confidence for s in run)
                out.append(Span(first.start, last.end, PhiType.ORGANIZATION, "model", confidence))
            else:
                out.extend(run)
        return out

    def _language(self, text: str, offset: int) -> str:
        """The language of the line of ``text`` that holds ``offset`` (the last text's
        lines are kept; read into a local first, so that threads sharing the detector
        never mix two texts' lines)."""
        lines = self._lines
        if lines[0] is not text:
            lines = (text, self._languages.lines(text))
            self._lines = lines
        return language_at(lines[1], offset)

    def _attached_services(self, text: str, dropped: list[Span], kept: list[Span]) -> list[Span]:
        """An organisation's or an address's service words ("Rehab", "General
        Hospital", "Unit 3") that the tagger cut from the name before them
        ("Schildwolde", "拉萨县", "Glenwood Ave SE"): part of that name, so PHI with
        it, though alone they are a service."""
        proper = (PhiType.NAME, PhiType.ORGANIZATION, PhiType.LOCATION, PhiType.ADDRESS)
        names = [s for s in kept if s.type in proper]
        return [
            span
            for span in dropped
            if span.type in proper[1:]
            and span.source == "model"
            and any(
                0 <= span.start - n.end <= 1 and text[n.end : span.start].strip(" ") == ""
                for n in names
            )
            and self._services(text[span.start : span.end])
        ]

    def _services(self, value: str) -> bool:
        """Whether every word of ``value`` is a lexicon term, an organisation's word
        ("Hospital", "Unit"), a joiner or a number."""
        words = _WORDS.findall(value)
        return bool(words) and all(
            self.lexicon.term(w) or w.lower() in _ORG_SUFFIXES or w.lower() in _JOINERS
            for w in words
            if not w.isdigit()
        )

    def _keep(self, text: str, span: Span) -> bool:
        if span.source == "known":
            return True  # the record's own identifier: redacted wherever it stands
        value = text[span.start : span.end]
        if span.source == "pattern" and span.type is PhiType.LOCATION and ROAD.fullmatch(value):
            return True  # "SH5", "I-95": a road, by its grammar
        if span.type is PhiType.LOCATION and ward_furniture(text, span):
            return False  # "bed 12", "Ward 7B": a ward's furniture
        if not shaped(value, span.type) and not room(text, span):
            return False
        if (
            span.source == "pattern"
            and span.type is PhiType.LOCATION
            and (region_in_address(text, span.start, span.end) or value in REGION_CODES)
        ):
            return True  # "Ottawa ON K2A 1E1": a province, by an address's grammar
        if (
            span.source == "pattern"
            and span.type is PhiType.NAME
            and (self._dictionary(value) or self.lexicon.term(value))
        ):
            return False  # a transcript's "speaker" that is a word: "Vitals [08:00]:"
        if _CLINICAL_CODE.match(value.strip()):
            return False  # "E4V4M6", "cT2cN0", "G2P1", "L5/S1": clinical codes
        if (
            span.type in (PhiType.NAME, PhiType.LOCATION, PhiType.ORGANIZATION)
            and span.source == "model"
            and national(text, span)
            and not title(text, span.start)
            # "Holland MI", "Lebanon, PA 17042": a town named after a country
            and not re.match(r",?[ \t]+(?:[A-Z]{2}\b|\d)", text[span.end : span.end + 8])
        ):
            return False  # "FRANCE", "pt is Muslim", "Dutch Reformed"
        if span.type in _CODED and _CODE_SYSTEM_BEFORE.search(
            text[max(0, span.start - 40) : span.start]
        ):
            return False  # "LOINC 4548-4", "CPT 99285 + 93010": a clinical code
        if (
            span.type is PhiType.ZIP
            and (
                word := re.search(
                    r"([A-Za-z][\w-]*)\s+$", text[max(0, span.start - 24) : span.start]
                )
            )
            and self.lexicon.category(word.group(1)) == "drug"
        ):
            return False  # "Creon 25000": a drug's strength
        if span.type is PhiType.ID and _HOURS.fullmatch(value):
            return False  # "visit 1300-1400": a time of day, from and to
        if span.type in (PhiType.PHONE, PhiType.FAX) and not phone_like(text, span):
            return False
        if span.type is PhiType.DATE:
            confidence = span.confidence if span.source == "model" else 0.0
            return real_date(text, span.start, span.end, confidence)
        if (
            span.source == "model"
            and span.type in _NUMBERED
            and _UNIT_AFTER.match(text[span.end : span.end + 12])
        ):
            return False  # "levothyroxine 112 mcg", "100%": a dose or a measure
        if span.type is PhiType.NAME and _WEEKDAY_WORD.match(value) and not title(text, span.start):
            return False  # "much better than Tuesday", "OT visit booked Thurs"
        if span.type in (PhiType.ADDRESS, PhiType.ID, PhiType.ZIP) and span.source == "model":
            if _ROMAN_GRADE.match(value) or self.lexicon.clinical(*token_around(text, span)):
                return False  # "Gustilo IIIA", "House-Brackmann III", "Harvey-Bradshaw 11"
            words = value.split()
            lab_and_value = len(words) == 2 and re.fullmatch(r"[\d.,]+", words[1])
            if lab_and_value and self.lexicon.category(words[0]) == "abbreviation":
                return False  # "CA19-9 410", "BNP 4120": a lab and its value
        if span.type is not PhiType.ADDRESS and _MEASURE.search(value):  # (dates returned)
            return False  # "90mg", "3.375g q8h", "15x15", "26mm Sapien": a dose or a size
        if (
            span.source == "model"
            and span.type is PhiType.AGE
            and "/" in (text[span.start - 1 : span.start] + text[span.end : span.end + 1])
        ):
            return False  # "carbidopa-levodopa 25/100": a strength
        if span.type is PhiType.ZIP and _POSTCODE_CUE.search(
            text[max(0, span.start - 16) : span.start]
        ):
            return True  # "post code 3182", "zip: H-7380"
        # a number of five digits or fewer after a lab's abbreviation: a value, not an id
        numeric_id = (
            span.type is PhiType.ID
            and span.source == "model"
            and value.isdigit()
            and len(value) <= 5
        )
        if (span.type is PhiType.ZIP or numeric_id) and self._lab_value(text, span.start):
            return False  # "NT-proBNP 4120 (from 11800)": a lab value
        if span.type in _FOREIGN_GUARDED and span.source == "model" and self._foreign(text, span):
            # "Aufnahme", "humeur triste"; "Frau Koch", "Sra. Alta" stay
            return title(text, span.start) or bool(
                _FOREIGN_TITLE_BEFORE.search(text[max(0, span.start - 10) : span.start])
            )
        if span.source == "model" and span.type in (PhiType.ADDRESS, PhiType.ZIP):
            return self._place_number(text, span)
        cue = name_cue(text, span.start, span.end)
        # a profession or an organisation is ordinary words by nature ("art therapist",
        # "murphy clinic"): only terms count
        filler = None if span.type in (PhiType.PROFESSION, PhiType.ORGANIZATION) else self._filler
        if span.type in (PhiType.PROFESSION, PhiType.ORGANIZATION) and self._staff_role(text, span):
            return False  # "Dr Folake Adeyemi, Medical Officer": who signs, and as what
        if span.type is PhiType.ORGANIZATION and self._department(value):
            return False  # "Onc Clinic", "Grade Group": a service or a term, not a place
        several = len(value.split()) > 1
        # a profession is a role by nature: the lexicon's roles and services do not
        # make one a non-identifier ("Counsellor", "nurse, learning disability")
        ignore = SERVICE if span.type is PhiType.PROFESSION else frozenset()
        if (
            span.type in GUARDED
            and not (span.type is PhiType.PROFESSION and several)  # "Adult nurse"
            and self.lexicon.clinical(*token_around(text, span), filler, ignore)
        ):
            weak = bool(_WEAK_CUE.search(text[max(0, span.start - 8) : span.start]))
            return title(text, span.start) or (span.confidence >= CONFIDENT and cue and not weak)
        if span.type in GUARDED and span.source == "model" and dosed(text, span):
            return cue  # "Velphos 500 mg tid", "Eligard q6 mo": a drug, not a person
        if span.type in (PhiType.NAME, PhiType.LOCATION) and acronym(text, span):
            if not any(len(w) > 2 and w.lower() in self._names for w in value.split()):
                # "POA", "IVDU", "VNA": no name is spelt that way, unless a name stands
                # right before it ("Helfried GNATZ")
                return (
                    cue or self._after_name(text, span.start) or self._before_name(text, span.end)
                )
            return span.confidence >= CONFIDENT or cue
        if span.type in GUARDED and span.source == "model":
            if self._label(text, span):
                return False  # "Forename(s):", "Sex:": a form's label
            ordinary = self._ordinary(text, span)
            # a profession, or an organisation of several words ("mercy hospital"), is
            # ordinary words by nature
            named = span.type is PhiType.PROFESSION or (
                span.type is PhiType.ORGANIZATION and len(value.split()) > 1
            )
            if ordinary and not named:
                # "clear", "bolus": lower-case words, however sure the tagger is, unless
                # a title or a kinship word names a person ("son bill"); "She", "Physio"
                # at a line's start: words unless the tagger is sure
                if ordinary == "opening":
                    return cue or span.confidence >= CONFIDENT
                loose = _WEAK_NAME_CUE.search(text[max(0, span.start - 10) : span.start])
                return cue and loose is None
            lower = value.islower() or bool(ordinary)
            if lower and not named and span.confidence < UNSURE and self._dictionary(value):
                return cue  # "tolerated" at 0.12: a word the tagger is unsure of
            if self._plain_word(text, span):
                return span.confidence >= CONFIDENT or cue
        return True

    def _foreign(self, text: str, span: Span) -> bool:
        """Whether ``span`` stands in a line written in another language than English
        and holds only that language's common words ("Aufnahme über die", "humeur
        triste", "Faringe hiperémica"; ``language``): no number, no known name or place
        (with or without its accents), no institution's name ("Hospital Infantil
        Universitario Niño Jesús"), and a capital only where the language gives its
        words one (German nouns) or the span opens a line or a sentence."""
        lang = self._language(text, span.start)
        value = text[span.start : span.end]
        if lang == "en" or any(c.isdigit() for c in value):
            return False
        # an elided article or pronoun goes with its word: "J'ai", "l'ajout", "d'un"
        words = re.findall(r"[^\W\d_]+", re.sub(r"\b[^\W\d_]['\u2019](?=[^\W\d_])", "", value))
        if not words or (
            span.type is PhiType.ORGANIZATION
            and len(words) > 1
            and any(w.lower() in _INSTITUTIONS for w in words)
        ):
            return False
        if any(w.lower() in _STREETS for w in words):
            return False  # "Carrer de Mar", "Rue du Bugnon": a street's name
        before = text[max(0, span.start - 3) : span.start]
        opening = span.start == 0 or bool(re.search(r"(?:^|[\n.!?:;(]\s*|\n\s*[-*•]\s*)$", before))
        if span.type is PhiType.ADDRESS and not any(w.islower() for w in words):
            return False  # "Hauptstraße": a street, however common its words
        if words[-1][:1].isupper() and _HOUSE_NUMBER.match(text, span.end):
            return False  # "wh. Hauptstraße 12a", "Seeblick 7": a street before its number
        if span.type in (PhiType.ADDRESS, PhiType.LOCATION) and _NUMBER_BEFORE.search(
            text[max(0, span.start - 12) : span.start]
        ):
            return False  # "7 cours de l'Intendance": a street after its number
        if all(_FOREIGN_TITLE.fullmatch(w) for w in words):
            return True  # "Dra", "Sig", "Dott": a title alone, not the name after it
        writes_case = capitalises(text, span)
        for number, word in enumerate(words):
            lower = word.lower()
            forms = {lower, _folded(lower)}
            # a surname written in lower case is rarer than a word that spells one
            names = self.patterns.first_names if word.islower() else self._names
            header = word.isupper() and len(word) > 4  # "INFORME", "PROPOUŠTĚCÍ"
            if (
                forms & names
                or (len(word) < 2 and not word.islower())
                or (word.isupper() and not header)
            ):
                return False  # a name, an initial or an acronym ("AOK", "RK Kärnten")
            if word.islower():
                # a writer who capitalises writes a name with a capital: a word in lower
                # case is one ("dyslipidémie", "bibasales"); else it must be common
                if not (writes_case or common(word, lang) or self.lexicon.term(word)):
                    return False
                continue
            if forms & world_places() or not (lang == "de" or header or (number == 0 and opening)):
                return False
            # a capitalised word: the language's own ("Aufnahme"), or a noun by its
            # ending that English text does not use ("Thrombektomie", "Exploración")
            if not (own(word, lang) or (_NOUN_ENDING.search(lower) and rare_in_english(word))):
                return False
        return True

    def _lab_value(self, text: str, start: int) -> bool:
        """Whether a lab's or a measure's abbreviation stands right before a number
        ("SVR 1450", "BNP 4120 (from 11800)")."""
        before = text[max(0, start - 40) : start].rsplit("\n", maxsplit=1)[-1]
        found = re.search(
            r"([A-Za-z][\w-]*)\s*(?:[:=]|\s)\s*(?:\d[\d.,]*\s*)?(?:\(?\s*(?:from|was|to|of|prev)\s*)?$",
            before,
        )
        if found is None or found.group(1) in STATE_CODES:
            return False  # "FL 33127", "CA 90806": a state
        return self.lexicon.category(found.group(1)) == "abbreviation"

    def _label(self, text: str, span: Span) -> bool:
        """A word a form puts before a colon ("Forename(s):", "Sex:", "Numéro :")."""
        if not re.match(r"\s*(?:\(s\))?\s*:", text[span.end : span.end + 6]):
            return False
        return all(
            self._ordinary_word(w.lower(), strict=True) or self.lexicon.term(w)
            for w in _WORDS.findall(text[span.start : span.end])
        )

    def _staff_role(self, text: str, span: Span) -> bool:
        """A clinician's role after their titled name, to the end of the line ("Dr Emily
        Chua, Paediatric Advanced Trainee", "Sister A. Moyo, Ward Manager"): it says
        what the writer does, not who the patient is. The role ends in a role's word
        and holds no name."""
        line_start = text.rfind("\n", 0, span.start) + 1
        head = text[line_start : span.start]
        if not re.search(
            r"(?i:\b(?:dr|prof|professor|sister|nurse|mr|mrs|ms|miss)\b)\.?\s+"
            r"[A-Z][\w'.\u2019-]*(?:\s+[A-Z][\w'.\u2019-]*){0,3}\s*,\s*"
            r"(?:[A-Za-z]+\s+){0,3}$",
            head,
        ):
            return False
        tail_end = text.find("\n", span.end)
        rest = text[span.end : tail_end if tail_end != -1 else len(text)]
        words = re.findall(
            r"[A-Za-z]+", head.rsplit(",", 1)[-1] + text[span.start : span.end] + rest
        )
        return (
            bool(words)
            and len(words) <= 5
            and words[-1].lower() in _ROLE_HEADS
            and not any(
                w.lower() in self.patterns.first_names and not self.lexicon.term(w) for w in words
            )
        )

    def _department(self, value: str) -> bool:
        """An organisation's name made of clinical terms and an organisation's word alone
        ("Heme/Onc Clinic", "Grade Group"). Before an organisation's word, a place that is
        also an eponym makes none: "Providence Health Plan", "Mayo Clinic"."""
        every = re.findall(r"[^\W\d_]+", value)
        words = [w for w in every if w.lower() not in _ORG_SUFFIXES]
        no_place = len(words) < len(every)  # an organisation's word is in the name
        return bool(words) and all(
            self.lexicon.category(w) not in (None, "eponym_in_context" if no_place else None)
            for w in words
        )

    def _dictionary(self, value: str) -> bool:
        """Every word an English word that is no first name, nor a surname unless also a
        common word."""
        words = _WORDS.findall(value)
        return bool(words) and all(self._ordinary_word(w.lower(), strict=True) for w in words)

    def _after_name(self, text: str, start: int) -> bool:
        """Whether a capitalised word that is no English word stands right before
        ``start``, on the same line and with only a space between: a given name before
        a surname written in capitals."""
        before = re.search(
            r"(?:^|[ \t])([A-Z][a-z\u00c0-\u024f'-]+)[ \t]$", text[max(0, start - 30) : start]
        )
        return before is not None and not self._ordinary_word(before.group(1).lower(), strict=True)

    def _before_name(self, text: str, end: int) -> bool:
        """Whether a given name follows ``end``: "OKAFOR, Chidi", "EZE Ngozi"."""
        after = re.match(r",?[ \t]([A-Z][a-z\u00c0-\u024f'-]+)\b", text[end : end + 30])
        return after is not None and not self._ordinary_word(after.group(1).lower(), strict=True)

    def _place_number(self, text: str, span: Span) -> bool:
        """A street address or a postcode the tagger found must look like one: a number
        and a word that is no lab or unit abbreviation ("Na 136, K 4" is a lab line),
        or a postcode's grammar."""
        value = text[span.start : span.end]
        if span.type is PhiType.ZIP:
            if _POSTCODE.match(value.strip()) and not value.strip().isdigit():
                return True  # "SW1A 1AA", "K1A 0B1": a postcode's own grammar
            digits = sum(c.isdigit() for c in value)
            if digits >= 4 and re.search(r"[^\W\d_]{2}", value):
                return True  # "Zürich 8001": the town is in the span
            # a number alone is a postcode only after a place ("Bondi NSW 2026")
            before = re.search(
                r"([^\W\d_][\w'.-]*)[ \t,]+$", text[max(0, span.start - 30) : span.start]
            )
            after = re.match(r"[ \t]+([^\W\d_][\w'-]*)", text[span.end : span.end + 30])
            places = [m.group(1) for m in (before, after) if m is not None]
            return digits >= 5 or (
                digits == 4
                and bool(places)
                # a town in any script, capitalised where the writer capitalises
                and any(not w.islower() or text.islower() for w in places)
                and not any(self.lexicon.term(w) for w in places)
            )
        if re.search(r"\d{1,2}:\d{2}", value):
            return False  # a time
        words = [w for w in re.findall(r"[^\W_]+", value) if w.isalpha() and len(w) >= 2]
        if not words:
            return False
        if all(self.lexicon.term(w) or w in _CURRENCIES for w in words):
            return False  # "Na 136, K 4", "CZK 3": a lab line, an amount
        number = any(c in "0123456789" for c in value)
        # one word alone is part of an address unless it is an English word ("warehouse")
        return number or len(words) >= 2 or not self._dictionary(value)

    def _ordinary(self, text: str, span: Span) -> str | None:
        """Lower-case ordinary words ("clear", "bolus", "hemiarthroplasty"), in text whose
        writer capitalises, or one ordinary word capitalised only because a line or a
        sentence starts with it ("Physio", "She"). English words no first name spells
        and no surname spells unless it is a common word too; or clinical words by
        their ending (-ectomy, -itis, -ment…). Says which ("lower", "opening") or None."""
        words = _WORDS.findall(text[span.start : span.end])
        if not words or re.search(r"\b\w\.", text[span.start : span.end]):
            return None  # an initial ("j. park", "l.s."): a name's shape
        before = text[max(0, span.start - 3) : span.start]
        opening = len(words) == 1 and (
            span.start == 0 or bool(re.search(r"(?:^|[\n.!?:;(]\s*|\n\s*[-*•]\s*)$", before))
        )
        lower = all(w.islower() for w in words)
        if not lower and not (opening and words[0][:1].isupper() and words[0][1:].islower()):
            return None
        strict = not lower  # a capital at a line's start: no surname either
        if not all(self._ordinary_word(w.lower(), strict) for w in words):
            return None
        if lower:
            # only a writer who capitalises says something by writing lower case
            return "lower" if capitalises(text, span) else None
        return "opening"

    def _ordinary_word(self, word: str, strict: bool = False) -> bool:
        """An English word (SCOWL) or a clinical one by its ending, and no first name;
        ``strict``: no surname either, unless it is a common word too."""
        word = re.sub("(?:'s|\u2019s|')$", "", word)
        if word in self.patterns.first_names:
            return False
        suffix = bool(_CLINICAL_SUFFIX.search(word))
        if strict and word in self.patterns.last_names and word not in self.patterns.common:
            return suffix
        return word in ordinary_words() or suffix

    def _filler(self, word: str) -> bool:
        """A lower-case word that may stand beside a clinical term ("Nissen
        fundoplication", "heparin bolus"): an ordinary word that is no first name."""
        return self._ordinary_word(word.lower())

    def _plain_word(self, text: str, span: Span) -> bool:
        """Lower-case words that are no known first name or surname, in text whose
        writer capitalises ("basilar atelectasis"): a writer who capitalises writes a
        name with a capital, so these are ordinary words unless the tagger is sure."""
        words = text[span.start : span.end].split()
        if not words or not all(w.isalpha() and w.islower() for w in words):
            return False
        if any(w in self._names for w in words):
            return False
        return capitalises(text, span)


# What completes a span the tagger cut short: a street's word after a place or a street
# ("Bryce St", "Othaya Rd"), a house number beside a street ("227 Bowery", "Keileweg
# 12", "Linzer Gasse 14/3"), an id's check character ("4471092-K", "8841290-3").
_STREET_WORD_AFTER = re.compile(
    r"[ \t]+(?:St|Rd|Ave|Av|Blvd|Ln|Hwy|Street|Road|Avenue|Boulevard|Lane|Highway|Drive|"
    r"Close|Crescent|Terrace|Path|Mall|Park|Lake|Hills?)\b\.?"
)
_NUMBER_AFTER = re.compile(
    r"[ \t]+\d{1,5}[A-Za-z]?(?:[/-]\d{1,4}[A-Za-z]?)?\b"
    r"(?![ \t]*(?:%|(?i:mg|mcg|ml|mmol|mol|kg|g|cm|mm|l|iu|units?|h|hrs?|min|x)\b))"
)
_NUMBER_BEFORE = re.compile(r"\b\d{1,5}[A-Za-z]?(?:/\d{1,4})?,?[ \t]+$")
_CHECK_AFTER = re.compile(r"-[A-Z0-9]{1,2}\b(?![-/])")


# A house number after a street: not a date's or a time's first part ("Aufnahme
# 17.03.2025"), nor a quantity.
_HOUSE_NUMBER = re.compile(
    r"[ \t]+\d{1,5}[A-Za-z]?\b(?![.:,/-]?\d)(?![ \t]*(?:%|(?i:mg|ml|kg|g|cm|mm|h|min|x)\b))"
)


_UNIT_WORD = (
    r"(?:Flat|Apt|Apartment|Unit|Suite|Ste|Level|Lvl|Floor|Fl|Block|Blk|Lot|Plot|Stand|"
    r"Site|Shop|Bldg|Building|Tower|RR|Box|Private Bag|P\.?\s?O\.?\s?Box)"
)
_UNIT_BEFORE = re.compile(
    rf"(?:\b{_UNIT_WORD}\.?[ \t]*#?[ \t]*[A-Za-z]?\d{{1,5}}[A-Za-z]?(?:[ \t]+Phase[ \t]+\d+)?"
    rf"(?:,[ \t]*|[ \t]+|/)"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)[ \t]+(?i:floor),?[ \t]+"
    rf"|\b\d{{1,5}}[A-Za-z]?/)*"
    rf"(?:\b{_UNIT_WORD}\.?[ \t]+(?=$))?$"
)
_FLAT_AFTER = re.compile(
    rf",?[ \t]*(?:#\d{{1,3}}-\d{{1,4}}\b"
    rf"|{_UNIT_WORD}\.?[ \t]*#?[ \t]*(?:[A-Za-z]{{0,2}}\d{{1,4}}[A-Za-z]?|[A-Z])\b)"
)
# A place whose last word names a street: "Weserstraße", "Keizersgracht", "Elm St".
_STREET_ENDING = re.compile(
    r"(?i:(?:straße|strasse|gasse|weg|allee|laan|straat|gracht|vej|gade|gatan|vägen|"
    r"\bst|\bstreet|\brd|\broad|\bave|\bavenue|\blane|\bln)\.?)$"
)


def completed(text: str, span: Span) -> Span:
    """``span`` with what completes it (see above), or as it was."""
    start, end = span.start, span.end
    if span.type in (PhiType.LOCATION, PhiType.ADDRESS, PhiType.ORGANIZATION, PhiType.NAME):
        street = _STREET_WORD_AFTER.match(text, end)
        if street is not None and (span.type is not PhiType.NAME or street.end() - end <= 5):
            end = street.end()
    named = span.type is PhiType.LOCATION and bool(_STREET_ENDING.search(text[start:end]))
    if (span.type is PhiType.ADDRESS or named) and re.search(r"[^\W\d_]", text[start:end]):
        number = _NUMBER_AFTER.match(text, end)
        if number is not None:
            end = number.end()
        before = _NUMBER_BEFORE.search(text[max(0, start - 12) : start])
        if before is not None:
            start -= len(before.group(0))
    if span.type is PhiType.ADDRESS:
        # the unit, flat, floor or block before it, and a unit after it: "Flat 3B, ",
        # "Unit 4/", "Level 3, ", "Block 123 ", "RR 2, Site 4, "; ", #05-67", ", Apt 4"
        unit = _UNIT_BEFORE.search(text[max(0, start - 60) : start])
        bare = unit is not None and re.fullmatch(rf"{_UNIT_WORD}\.?[ \t]+", unit.group(0))
        if unit is not None and (not bare or text[start : start + 1].isdigit()):
            start -= len(unit.group(0))  # a unit's word alone only before its number
        after = _FLAT_AFTER.match(text, end)
        if after is not None:
            end = after.end()
    if span.type is PhiType.ID:
        check = _CHECK_AFTER.match(text, end)
        if check is not None:
            end = check.end()
    if (start, end) == (span.start, span.end):
        return span
    return Span(start, end, span.type, span.source, span.confidence)


def capitalises(text: str, span: Span) -> bool:
    """Whether the writer capitalises: a capital letter starts a word within 120
    characters of ``span``, the span aside (a window's cut first word aside too)."""
    start = max(0, span.start - 120)
    words = list(re.finditer(r"\S+", text[start : span.end + 120]))
    return any(
        m.group()[:1].isupper()
        for m in words
        if not (start > 0 and m.start() == 0) and not (span.start <= start + m.start() < span.end)
    )


def _folded(word: str) -> str:
    """``word`` without its accents ("ibáñez" -> "ibanez", "müller" -> "muller")."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


@cache
def ordinary_words() -> frozenset[str]:
    """SCOWL's lower-case English words (``data/ordinary_words.txt.gz``, its notice
    beside it)."""
    with gzip.open(DATA / "ordinary_words.txt.gz", "rt") as handle:
        return frozenset(handle.read().split())


# Clinical words by their ending: procedures, conditions, drug classes.
_CLINICAL_SUFFIX = re.compile(
    r"(?:ectomy|otomy|ostomy|plasty|pexy|rrhaphy|itis|osis|emia|aemia|algia|opathy|ology|"
    r"oscopy|scopy|graphy|uria|penia|cytosis|megaly|plegia|paresis|rrhea|rrhoea|rrhage|"
    r"lysis|ectasis|trophy|ement|ation|ization|isation|mab|tinib|pril|sartan|olol|statin|"
    r"floxacin|mycin|cillin|cycline|azole|tidine|dipine|gliptin|gliflozin|glutide|parin|"
    r"oxaban|gatran|azepam|azolam|oxetine|triptan|setron|lukast|terol|olone|asone|idine)$"
)
_ORG_SUFFIXES = frozenset({
    "clinic", "clinics", "hospital", "group", "center", "centre", "practice", "unit",
    "service", "services", "department", "dept", "associates", "pharmacy", "lab", "labs",
    "laboratory", "home", "health", "team", "ward",
})  # fmt: skip
# Words that make a span of several words an institution's name, in the languages of
# ``language.LANGUAGES``: "Hôpital de Gatineau", "Centre hospitalier universitaire".
_INSTITUTIONS = frozenset({
    "hospital", "hôpital", "hospitalier", "hospitalar", "ospedale", "ospedaliera",
    "spital", "krankenhaus", "klinik", "klinikum", "clinique", "clínica", "clinica",
    "kliniek", "ziekenhuis", "szpital", "nemocnice", "kórház", "sairaala", "sjukhus",
    "sygehus", "sykehus", "hastane", "hastanesi", "spitalul", "universitaire",
    "universitario", "universitaria", "universitário", "universitätsklinikum",
    "uniklinik", "centre", "centro", "zentrum", "centrum", "praxis", "cabinet",
    "consultorio", "ambulatorio", "apotheke", "pharmacie", "farmacia", "farmácia",
    "apotheek", "apteka", "école", "escuela", "escola", "scuola", "schule", "school",
    "bank", "banque", "banco", "banca", "kasse", "krankenkasse", "versicherung",
    "mutuelle", "assurance", "assurances", "seguros", "assicurazioni", "verzekeraar",
    "stiftung", "fondation", "fundación", "fundação", "fondazione", "stichting",
    "gmbh", "ag", "sa", "sarl", "sas", "srl", "spa", "bv", "nv", "ltda",
    "banka", "klinika", "poliklinika", "poliklinik", "policlinico", "lékárna", "przychodnia",
    "pojišťovna", "ubezpieczenia", "spółka", "fundacja", "szkoła", "škola", "univerzita",
    "uniwersytet", "universitet", "universitat", "universität", "universidad",
    "università", "universidade", "hôpitaux", "ospedali", "vårdcentral", "vårdcentralen",
    "sundhedscenter", "legesenter", "apotek", "apoteket", "sjukhuset", "sygehuset",
    "sykehuset", "eczane", "eczanesi", "okulu", "sro", "as", "oy", "ab", "aps",
})  # fmt: skip
# Endings of common nouns in those languages, clinical ones among them: "Thrombektomie",
# "Radiusfraktur", "Wortfindungsstörung", "Exploración", "Tratamiento", "Evolução".
_NOUN_ENDING = re.compile(
    r"(?:ung|ungen|keit|heit|schaft|ität|ismus|ose|itis|ie|ien|tomie|skopie|graphie|grafie|"
    r"therapie|fraktur|befund|ation|tion|sion|ment|ique|logie|pathie|ämie|urie|ción|sión|"
    r"miento|mento|zione|ção|ência|encia|idad|dade|ité|ologie|ologia|ología|anamnese|"
    r"anamnesis)$"
)
# Titles in those languages, before a name or standing alone in the tagger's span.
_FOREIGN_TITLE = re.compile(
    r"(?i:herr|herrn|frau|hr|fr|dhr|mevr|mme|mlle|sr|sra|srta|dña|don|doña|sig|sigra|"
    r"dott|dottssa|dottoressa|pan|pani|dr|dra|drª|prof|mudr|mgr|ing|mag|fru|bay|bayan)"
)
_FOREIGN_TITLE_BEFORE = re.compile(
    r"\b(?:Herrn?|Frau|Hr|Fr|Dhr|dhr|Mevr|mevr|Mme|Mlle|M|Sr|Sra|Srta|Dña|Don|Doña|Sig|"
    r"Sig\.ra|Dott|Dott\.ssa|Pan|Pani|Dra|MUDr|Mgr|Ing|Mag|Fru|Bay|Bayan)\.?\s+$"
)
# An acronym in brackets right after a name: "(MTRH)", "(OHSU)".
_ACRONYM_AFTER = re.compile(r"[ \t]*\(([A-Z][A-Z&]{1,7})\)")
# Words that name a street in those languages ("Carrer de Mar 88", "ul. Lipowa 3").
_STREETS = frozenset({
    "straße", "strasse", "str", "gasse", "weg", "platz", "allee", "ring", "rue", "avenue",
    "boulevard", "chemin", "impasse", "quai", "calle", "avenida", "paseo", "plaza",
    "carrer", "passeig", "rambla", "via", "viale", "piazza", "corso", "vicolo", "largo",
    "rua", "praça", "travessa", "alameda", "straat", "laan", "plein", "gracht", "kade",
    "gata", "gatan", "vägen", "vej", "gade", "vei", "veien", "gate", "gaten", "ulica",
    "ul", "aleja", "al", "ulice", "náměstí", "třída", "strada", "bulevardul", "utca",
    "út", "tér", "katu", "tie", "sokak", "sokağı", "caddesi", "cadde", "mahallesi",  # noqa: RUF001
})  # fmt: skip
_CURRENCIES = frozenset(
    [
        "EUR",
        "USD",
        "GBP",
        "CZK",
        "CHF",
        "JPY",
        "CAD",
        "AUD",
        "NZD",
        "INR",
        "ZAR",
        "BRL",
        "PLN",
        "HUF",
        "SEK",
        "NOK",
        "DKK",
        "MXN",
        "CNY",
    ]
)
# Types whose value is a number and can be mistaken for a dose or a measure.
_NUMBERED = {PhiType.AGE, PhiType.ZIP, PhiType.ID, PhiType.PHONE, PhiType.ADDRESS}
_WEEKDAY_WORD = re.compile(
    r"(?i)^(?:mon|tue|tues|wed|weds|thu|thur|thurs|fri|sat|sun)(?:day|nesday|sday|urday|"
    r"rsday)?\.?$"
)
_ROMAN_GRADE = re.compile(r"^[IVX]{1,4}[A-Ca-c]?$")
# A number with its unit written on: a dose, a size or a measure, never an identifier.
_MEASURE = re.compile(
    r"(?<![\w.])\d+(?:[.,]\d+)?(?:(?i:mg|mcg|µg|ug|kg|ml|mm|cm|iu|units?|meq|mmol|mmhg|kcal)"
    r"|g|l|fr|%)(?![A-Za-z\d])|(?<![\w.])\d{1,3}x\d{1,3}(?:cm|mm)?(?!\w)"
)
_UNIT_AFTER = re.compile(
    r"(?i:^\s*(?:mg|mcg|µg|ug|g|kg|lbs?|ml|l|%|mmhg|bpm|cm|mm|units?|u|iu|meq|mmol|"
    r"mg/dl|mmol/l|min|mins|hrs?|days?|wks?|k|x10)(?![a-z]))"
)
_DOSE_AFTER = re.compile(
    r"(?i:^\)?(?:\s*\(?\s*\d+(?:[.,]\d+)?\s*(?:mg|mcg|µg|ug|g|ml|units?|u|iu|meq|mmol|%|"
    r"puffs?|tabs?|caps?|drops?|gtts?)(?![a-z])|\s+(?:po|iv|ivp|ivpb|im|sc|sq|subq|sl|pr|"
    r"inh|neb|bid|tid|qid|qd|qhs|qam|qpm|prn|q\d+h?|q\d+\s*(?:wk|wks|mo|mos|d|days)|daily|"
    r"nightly|weekly|monthly|od|bd|tds|qds|nocte|mane|drip|gtt|infusion|patch|"
    r"ointment|cream|gel|tab|tabs|inj|injection)\b))"
)
_POSTCODE = re.compile(
    r"(?i:^(?:\d{4,6}(?:-\d{3,4})?|\d{2}-\d{3}|\d{3}-\d{4}|\d{3}\s\d{2}|"
    r"[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}|[A-Z]\d[A-Z]\s*\d[A-Z]\d|\d{4}\s?[A-Z]{2}|"
    r"[A-Z]{1,2}-\d{4,5}|[A-Z]\d[\dW]\s?[A-Z\d]{4})$)"
)
_POSTCODE_CUE = re.compile(
    r"(?i:\b(?:post\s?code|postal\s?code|zip(?:\s?code)?|plz|pin\s?code|c\.?p\.?|cap)\s*[:#]?\s*)$"
)
_STREET = re.compile(
    r"(?i:\b(?:street|st|road|rd|lane|ln|avenue|ave|way|drive|dr|court|ct|boulevard|blvd|"
    r"place|pl|terrace|crescent|close|highway|hwy|square|sq|parkway|pkwy|strasse|"
    r"stra\u00dfe|str|rue|via|calle|avenida|weg|gasse|platz|laan|ulica|ul|utca)\b|"
    r"(?:stra\u00dfe|strasse|weg|gasse|platz|laan)\b)"
)
# Clinical codes with the shape of an identifier: GCS, TNM, obstetric history, spine
# levels, murmur grades, Crohn's Montreal class.
_CLINICAL_CODE = re.compile(
    r"^(?:E[1-4]V[1-5T]M[1-6]|[cpyra]{0,2}T[0-4xX](?:is|[a-d])?(?:N[0-3xX][a-c]?)?(?:M[01xX][a-c]?)?"
    r"|G\d{1,2}P\d{1,2}(?:\d{3})?|[CTLS]\d{1,2}(?:[-/][CTLS]?\d{1,2})?|[IV]{1,3}/VI"
    r"|A[1-3]L[1-4]B[1-3]p?|[IVX]{1,4})$"
)


def dosed(text: str, span: Span) -> bool:
    """A word followed by a dose, a route or a frequency ("Velphos 500 mg tid", "Eligard
    q6 mo"): a drug."""
    first = re.match(r"\S+", text[span.start : span.end])
    end = span.start + (first.end() if first else 0)
    return bool(_DOSE_AFTER.match(text[end : end + 24]))


_TOKEN = re.compile(r"\S+")
# The tokens an e-mail address or a web address is made of; the label before it
# ("Email", "Portal:") is not part of it, though the tagger sometimes says so.
_TOKEN_OF = {PhiType.EMAIL: re.compile("@"), PhiType.URL: re.compile(r"[./]\w")}


# A time of day beside a date: "19.01.2025 14:07", "Thu 6 March, 8am-1pm", "9.15am Wed".
_TIME = r"\d{1,2}(?:[:.h]\d{2}(?::\d{2})?\s*(?:[ap]\.?m\.?)?|\s*[ap]\.?m\.?)(?![\w/])"
_TIME_AT_END = re.compile(
    rf"(?i:(?:[\s,T@]+|\s*,\s*|\s+at\s+){_TIME}(?:\s*(?:[-\u2013]|to)\s*{_TIME})?(?:\s*[A-Z]{{2,4}}T)?$)"
)
_TIME_AT_START = re.compile(rf"(?i:^{_TIME}(?:\s*(?:[-\u2013]|to)\s*{_TIME})?[\s,]+(?:on\s+)?)")


def without_time(text: str, span: Span) -> Span | None:
    """A date span without the time of day written beside it: Safe Harbor removes the
    elements of a date, not the hour ("Signed 2025-08-30 17:05" keeps "17:05"). A span
    that ends inside a time ("[09/03/25, 19" of "19:41") loses that piece too."""
    if span.type is not PhiType.DATE:
        return span
    start, end = span.start, span.end
    if re.match(r"[:.]\d{2}", text[end : end + 3]):
        cut = re.search(r"[\s,T@]+\d{1,2}$", text[start:end])
        if cut:
            end = start + cut.start()
    value = text[start:end]
    if (tail := _TIME_AT_END.search(value)) and _MONTH_OR_DIGITS.search(value[: tail.start()]):
        end = start + tail.start()
    value = text[start:end]
    if (head := _TIME_AT_START.match(value)) and _MONTH_OR_DIGITS.search(value[head.end() :]):
        start += head.end()
    if start >= end:
        return None
    return span if (start, end) == (span.start, span.end) else replace(span, start=start, end=end)


# The last word of a clinician's role: "Medical Officer", "Advanced Trainee".
_ROLE_WORDS = (
    "officer trainee registrar consultant fellow resident intern houseman sho specialist "
    "practitioner nurse sister matron midwife physician surgeon therapist physiotherapist "
    "pharmacist dietitian dietician psychologist psychiatrist paramedic technician "
    "technologist coordinator manager lead director assistant associate attending "
    "hospitalist clinician gp doctor worker counsellor counselor educator adviser advisor "
    "radiographer sonographer anaesthetist anesthetist obstetrician paediatrician "
    "pediatrician intensivist neurologist cardiologist oncologist geriatrician "
    "gastroenterologist dermatologist urologist endocrinologist nephrologist "
    "rheumatologist haematologist hematologist microbiologist pathologist radiologist "
    "chaplain visitor keyworker navigator student fy1 fy2 st1 st2 st3 st4 st5 st6 st7 ct1 "
    "ct2 pgy1 pgy2 pgy3 pgy4 hca rn rgn rmn"
)
_ROLE_HEADS = frozenset(_ROLE_WORDS.split())
# Letters after a name: degrees, memberships and registrations ("Aoife Brennan MICGP",
# "A. Hussain MRPharmS", "J Osei MBChB FRCS(Ed)"). They qualify the person; they are
# no part of the name. Letters that spell a surname in capitals ("WEI MA", "LAN DO")
# and short ones that are seldom after a name ("BA", "RD", "RM") are left out.
_POSTNOMINAL = re.compile(
    r"(?:[MF]RC(?:P|S|GP|OG|PCH|Psych|PI|SI|R|A|Path|EM|PC|SC|Ophth|Rad)|MICGP|MRPharmS|MPharmS|FRACP|FRACGP|FRACS|FRANZCP|FANZCA|"
    r"FACEM|FACP|FACC|FACS|FCEM|FFICM|FCFP|CCFP|MBChB|MBBCh|MBBS|BMBS|BMedSci|MBBCh|BDS|"
    r"MFDS|DCH|DRCOG|DFSRH|DipIMC|BSc|MSc|MBA|MPH|MD|PhD|RGN|RMN|RSCN|RNLD|RHV|"
    r"SCPHN|NMP|ANP|ACP|CNS|MCSP|HCPC|RN|BN|BSN|MSN|NP|FNP|DNP|PharmD|RPh|RPN|LPN|APRN|"
    r"CRNA|MSW|LCSW|OTR|SLP|DPT|RRT|EMT|EMT-P|NREMT|CCP|PA-C)"
    r"(?:\((?:UK|Ed|Edin|Glasg|Lond|Irel|I|EM|Hons)\))?"
)


# Types whose value is written on one line: a span of them that runs across a line
# break ran on past its value ("June 10, 2025\n\nCustomer Relations").
_ONE_LINE = frozenset(
    {
        PhiType.DATE,
        PhiType.ID,
        PhiType.MRN,
        PhiType.SSN,
        PhiType.PHONE,
        PhiType.FAX,
        PhiType.EMAIL,
        PhiType.URL,
        PhiType.IP,
        PhiType.AGE,
        PhiType.ZIP,
    }
)


def one_line(text: str, span: Span) -> Span | None:
    """A span of a one-line type cut to the first of its lines that can hold its type;
    None when none can."""
    if span.type not in _ONE_LINE or "\n" not in text[span.start : span.end]:
        return span
    offset = span.start
    for line in text[span.start : span.end].split("\n"):
        stripped = line.strip()
        if stripped and shaped(stripped, span.type):
            start = offset + line.index(stripped)
            return replace(span, start=start, end=start + len(stripped))
        offset += len(line) + 1
    return None


def at_dash(text: str, span: Span) -> Span | None:
    """A name or an identifier cut where a dash with spaces around it starts another item
    of the note ("Mr Kovačević - Na 121", "MRN 55021873 - Kernig neg"). A name keeps the
    longest run of parts with no number that are not all clinical terms ("LEFEBVRE -
    DUMONT", "Anne - Sophie" stay whole; "ortho - amara paoletti" keeps the name); an
    identifier keeps its first part that has a number."""
    if span.type not in (PhiType.NAME, PhiType.ID, PhiType.MRN, PhiType.SSN):
        return span
    value = text[span.start : span.end]
    dashes = list(re.finditer(r"\s+[-\u2013\u2014]\s+", value))
    if not dashes:
        return span
    bounds = [0, *(b for d in dashes for b in (d.start(), d.end())), len(value)]
    parts = list(zip(bounds[::2], bounds[1::2], strict=True))
    if span.type is PhiType.NAME:
        # the longest run of parts that can be a name: no number, not all clinical terms
        good = [
            shaped(value[a:b], span.type)
            and not any(c.isdigit() for c in value[a:b])
            and not all(lexicon().category(w) is not None for w in value[a:b].split())
            for a, b in parts
        ]
        runs, run = [], []
        for part, ok in zip(parts, good, strict=True):
            if ok:
                run.append(part)
            elif run:
                runs.append(run)
                run = []
        if run:
            runs.append(run)
        if not runs:
            return None
        best = max(runs, key=lambda r: sum(b - a for a, b in r))
        return replace(span, start=span.start + best[0][0], end=span.start + best[-1][1])
    for start, stop in parts:
        piece = value[start:stop]
        if any(c.isdigit() for c in piece) and shaped(piece, span.type):
            return replace(span, start=span.start + start, end=span.start + stop)
    return None


def without_credentials(text: str, span: Span) -> Span:
    """A name span without the degrees and memberships written after it ("Aoife Brennan
    MICGP" keeps "MICGP"): they say what the person is, not who."""
    if span.type is not PhiType.NAME:
        return span
    end = span.end
    while True:
        last = re.search(r"[\s,]+(\S+)$", text[span.start : end])
        if last is None or not _POSTNOMINAL.fullmatch(last.group(1).rstrip(",.")):
            break
        end = span.start + last.start()
    return span if end == span.end else replace(span, end=end)


def tighten(text: str, span: Span) -> Span | None:
    """An e-mail or web address span narrowed to the tokens that have its shape, and
    stripped of trailing punctuation; None when no token has it."""
    shape = _TOKEN_OF.get(span.type)
    if shape is None:
        return span
    tokens = [m for m in _TOKEN.finditer(text, span.start, span.end) if shape.search(m.group())]
    if not tokens:
        return None
    start, end = tokens[0].start(), tokens[-1].end()
    while end > start and text[end - 1] in ".,;:)!?'\"":
        end -= 1
    while start < end and text[start] in "(<'\"":
        start += 1
    return replace(span, start=start, end=end)


def acronym(text: str, span: Span) -> bool:
    """A short word in capitals amid mixed-case text ("PHI", "GNR", "RLL"), alone or
    with lower-case words ("PHI here"): an acronym, not a person or a place. In text
    written all in capitals, capitals say nothing."""
    words = text[span.start : span.end].split()
    shouted = [w for w in words if w.isalpha() and w.isupper() and len(w) <= 5]
    # An acronym with only lower-case words beside it ("PHI here") is still no name.
    if not shouted or any(w not in shouted and not w.islower() for w in words):
        return False
    window = text[max(0, span.start - 80) : span.end + 80]
    return any(c.islower() for c in window)


def _lone_initial(text: str, span: Span, spans: Sequence[Span]) -> bool:
    """A single letter is a name only as an initial beside one ("J. Park"): alone it is
    a grade, a lead or a category ("cat I")."""
    if (
        span.type is not PhiType.NAME
        or span.end - span.start > 1
        or span.source == "known"
        or not text[span.start].isascii()  # "磊": a whole name in its script
    ):
        return False
    return not any(
        other is not span
        and other.type is PhiType.NAME
        and (0 <= other.start - span.end <= 3 or 0 <= span.start - other.end <= 3)
        for other in spans
    )


_PHONE_CUE_BEFORE = re.compile(
    r"(?i:\b(?:pgr|pager|beeper|bleep|paged|ext|extn|x|tel|telephone|phone|ph|cell|mobile|"
    r"mob|call|called|contact|fax|on|at|number|no)\.?\s*[:#]?\s*)$"
)


_STRONG_PHONE_CUE = re.compile(r"(?i)pgr|pager|beeper|bleep|paged|ext|tel|phone|cell|mob|fax|x\b")
_CLOCK = re.compile(r"^(?:[01]\d|2[0-3])[0-5]\d$")


def phone_like(text: str, span: Span) -> bool:
    """A number of fewer than seven digits is a phone only after a phone's cue ("pgr
    4417", "ext 3321"): alone it is a time, a dose or a count."""
    value = text[span.start : span.end]
    digits = sum(c.isdigit() for c in value)
    if digits >= 7:
        return True
    before = text[max(0, span.start - 16) : span.start].rsplit("\n", maxsplit=1)[-1]
    cue = _PHONE_CUE_BEFORE.search(before)
    clock = _CLOCK.match(re.sub(r"\D", "", value))
    if cue and clock and not _STRONG_PHONE_CUE.search(cue.group()):
        return False  # "at 0800", "on 1430": a time
    return bool(cue)


def token_around(text: str, span: Span) -> tuple[str, int, int]:
    """The whole token a span lies in ("GAD" in "GAD-7", "CHA2DS2" in "CHA2DS2-VASc"):
    the lexicon judges the token, not a piece of it."""
    start, end = span.start, span.end
    while start > 0 and not text[start - 1].isspace() and text[start - 1] not in "(,;:":
        start -= 1
    while end < len(text) and not text[end].isspace() and text[end] not in "),;:":
        end += 1
    while end > start and text[end - 1] in ".!?":
        end -= 1
    return text, start, end


_WEEKDAY = re.compile(
    r"(?i)^(?:mon|tue|tues|wed|weds|thu|thur|thurs|fri|sat|sun)"
    r"(?:day|nesday|sday|urday|rsday)?\.?,?\s+"
)
_NUMBER_WORDS = re.compile(r"(?i)ninety|hundred")
_YEAR = re.compile(r"^(?:1[89]|20|21)\d\d$")
# Letters OCR reads for digits, in a date written in digits and separators only.
_OCR_DIGITS = str.maketrans("OolI", "0011")
_OCR_DATE = re.compile(r"^[\dOolI]{1,4}[/.-][\dOolI]{1,2}[/.-][\dOolI]{2,4}$")
# What a date written in digits looks like: d/m[/y], y-m-d, d.m.y, yyyymmdd, m/yyyy.
_NUMERIC_DATE = re.compile(
    r"^(?:\d{1,2}[/.-]\d{1,2}(?:[/.-]\d{2,4}|(?<=\.\d)\.|(?<=\.\d\d)\.)?|\d{4}[/.-]\d{1,2}(?:[/.-]\d{1,2})?"
    r"|(?:19|20)\d{6}|\d{1,2}/(?:19|20)\d\d)(?:[T ,].*)?$"
)
# A month's name or abbreviation, in English and the languages notes arrive in; a word
# that only starts like one ("febrile", "decels", "marked", "septic") is none, and a
# foreign abbreviation that is an English word ("set", "out", "ago") is spelt out.
_MONTH_WORD = (
    r"(?:jan(?:uary|vier|uar|eiro|naio)?|feb(?:ruary|rero|braio|ruar)?|f[ée]v(?:rier)?|"
    r"mar(?:ch|s|zo|ço)?|m[äa]rz|apr(?:il|ile)?|abr(?:il)?|avr(?:il)?|may|mai|mayo|maio|"
    r"maggio|jun(?:e|i|io|ho)?|juin|jul(?:y|i|io|ho)?|juil(?:let)?|aug(?:ust)?|"
    r"agosto|ao[uû]t|sep(?:t|tember|tiembre|tembre)?|setembro|settembre|"
    r"oct(?:ober|ubre|obre)?|okt(?:ober)?|outubro|ott(?:obre)?|"
    r"nov(?:ember|iembre|embre|embro)?|dec(?:ember)?|d[ée]c(?:embre)?|dez(?:ember|embro)?|"
    r"dici?embre|"
    + "|".join(sorted({re.escape(m) for m in FOREIGN_MONTH_NAMES}, key=len, reverse=True))
    + ")"
)
# What is left of a date once its time is cut off must still read as one.
_MONTH_OR_DIGITS = re.compile(
    rf"(?i)\d{{1,4}}[/.-]\d|(?<![^\W\d_]){_MONTH_WORD}(?![^\W\d_])|\d{{8}}"
)
_MONTH_OR_ORDINAL = re.compile(rf"(?i)(?<![^\W\d_]){_MONTH_WORD}(?![^\W\d_])|\d(?:st|nd|rd|th)\b")


def shaped(value: str, phi_type: PhiType) -> bool:
    """Whether ``value`` can be PHI of ``phi_type`` at all: a name has letters, an age
    over 89 is a number from 90, a phone has four digits or more, a lone year is no
    date (Safe Harbor keeps years). The learned tagger is sometimes sure of a type that
    its words cannot have; this drops those spans."""
    letters = sum(c.isalpha() for c in value)
    digits = sum(c.isdigit() for c in value)
    if phi_type in (PhiType.NAME, PhiType.LOCATION, PhiType.ORGANIZATION, PhiType.PROFESSION):
        # a word of letters alone: "71M", "4B", "POD1", "3L" are ages, beds and doses
        return any(t.isalpha() for t in re.findall(r"[^\W_]+", value))
    if phi_type is PhiType.ADDRESS:
        return letters > 0
    if phi_type is PhiType.AGE:
        numbers = [int(n) for n in re.findall(r"\d+", value)]
        return any(90 <= n <= 125 for n in numbers) or bool(_NUMBER_WORDS.search(value))
    if phi_type is PhiType.DATE:
        # "23 / 04 / 1975", as forms are filled; "Sat 9/30", "Thurs 2/24"
        bare = _WEEKDAY.sub("", re.sub(r"\s*([/.-])\s*", r"\1", value.strip()))
        if digits >= 2 and _OCR_DATE.match(bare):  # a scanned form's "O7/l4/1983"
            bare = bare.translate(_OCR_DIGITS)
        if _YEAR.match(bare):
            return False
        return bool(_MONTH_OR_ORDINAL.search(bare) or _NUMERIC_DATE.match(bare))
    if phi_type in (PhiType.PHONE, PhiType.FAX):
        return digits >= 4
    if phi_type in (PhiType.ID, PhiType.MRN, PhiType.SSN):
        return digits >= 4 or (digits >= 2 and letters + digits >= 6)
    if phi_type is PhiType.ZIP:
        return digits > 0
    if phi_type is PhiType.EMAIL:
        return "@" in value
    if phi_type is PhiType.IP:
        return value.count(".") == 3 or value.count(":") >= 2
    if phi_type is PhiType.URL:
        return letters > 0 and ("." in value or "/" in value)
    return letters + digits > 0


@cache
def load_detector(registry: Path) -> PhiDetector:
    """The ensemble with the latest verified PHI tagger of ``registry``, loaded once per
    process (on the GPU when there is one)."""
    from medstream.deid.tagger import NAME, Tagger  # noqa: PLC0415  (loads torch)

    return PhiDetector(Tagger(latest(registry, NAME)))


def default_detector() -> PhiDetector:
    """The ensemble of the configured model registry (``MEDSTREAM_MODEL_REGISTRY``)."""
    from medstream.settings import get_settings  # noqa: PLC0415

    return load_detector(get_settings().model_registry)
