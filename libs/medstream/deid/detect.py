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
  abbreviations, scales, section headers) is never redacted unless the model is
  confident *and* a name cue stands beside it ("Mr. Foley", "Dr Homans").

Every span says which detectors found it (``source``), for ``medstream deid text
--explain`` and the de-identification summary.
"""

from __future__ import annotations

import csv
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from medstream.deid.text import PhiType, Span, TextDetector, merge
from medstream.models.package import latest

DATA = Path(__file__).resolve().parent / "data"
# What the tagger reports, as the CONTRACT's types.
TAGGER_TYPES = {t.value: t for t in PhiType} | {"PROFESSION": PhiType.PROFESSION}
# Spans of these types are checked against the lexicon (a drug is not a person).
GUARDED = {
    PhiType.NAME,
    PhiType.LOCATION,
    PhiType.ORGANIZATION,
    PhiType.PROFESSION,
    PhiType.OTHER,
    PhiType.ID,
}
CONFIDENT = 0.9
# How sure the tagger must be that a bare m/d is a date when no cue says so.
MODEL_DATE = 0.8
# A bare m/d that might be a fraction: a date only with a date's context.
_BARE = re.compile(r"^\d{1,2}[/.]\d{1,2}$")
_MIXED = re.compile(r"\d[.]\d+/|/\d+[.]\d")  # 7.28/45: a blood gas, never a date
# Digits only, with no four-digit year: what a row of scores can look like too.
_SHORT_NUMERIC = re.compile(r"^\d{1,2}[/.-]\d{1,2}(?:[/.-]\d{1,2})?$")
# Two separators that differ (1.5-20, 4.5-11): a range of decimals, never a date.
_DECIMAL_RANGE = re.compile(r"^\d{1,2}([/.-])\d{1,2}(?!\1)[/.-]\d{2,4}$")
_DATE_CUE_BEFORE = re.compile(
    r"(?i:\b(?:on|since|from|until|till|thru|through|by|dated?|dos|seen|adm(?:itted)?|"
    r"d/?c(?:'?d)?|discharged|returned|started|stopped|began|due|appt|visit|f/u|follow[- ]?up|"
    r"last|next|mon|tue|wed|thu|fri|sat|sun|monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday|between|and|to|of|as of|effective|expires?|exp|dob|born)"
    r"\s*[:#]?\s*)$"
)
# British notes write durations as fractions of a week or year: "review in 6/12".
_DURATION_BEFORE = re.compile(r"(?i:\b(?:in|for|over|after|within|x)\s*)$")
_DATE_CUE_AFTER = re.compile(r"^(?:\s*(?:@|at)?\s*\d{1,2}:\d{2}|\s*-\s*\d{1,2}/\d{1,2}\b)")
_SCORE_CUE_BEFORE = re.compile(
    r"(?i:\b(?:strength|power|motor|mmt|tone|reflexes|dtrs?|pulses|sensation|pain|score|"
    r"scores|scale|gcs|apgars?|bp|sbp|dbp|pressure|abg|vbg|gas|sats?|ratio|dilution|titer|titre|"
    r"va|acuity|vision|iop|grade|x|ii|iii|iv|tab|tabs|of|dose|doses)\s*[:=]?\s*"
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
    r"daughter|mother|father|brother|partner|patient|pt|name|signed|by|per)\.?\s*[:,]?\s*)$"
)
_CLINICAL_HEAD_AFTER = re.compile(
    r"(?i:^(?:'s|s'|')?\s*(?:sign|signs|test|tests|maneuver|manoeuvre|criteria|score|scale|"
    r"classification|class|stage|grade|disease|syndrome|palsy|phenomenon|reflex|triad|"
    r"fracture|position|point|law|node|nodes|ulcer|lines|disorder|sarcoma|lymphoma|tumou?r|"
    r"catheter|tube|drain|procedure|operation|repair|incision|stain|equation|formula|rule|"
    r"respirations?|breathing|respiration|positive|negative|neg|pos|equivocal|present|"
    r"absent|\+|-)\b|^(?:'s)?\s*[+-])"
)
_WORDS = re.compile("[\\w'\u2019-]+")


@dataclass(frozen=True)
class Lexicon:
    """The clinical lexicon: lower-cased term -> category."""

    terms: dict[str, str]

    @classmethod
    def load(cls, path: Path = DATA / "clinical_lexicon.tsv") -> Lexicon:
        with path.open(newline="") as handle:
            rows = [r for r in csv.reader(handle, delimiter="\t") if r and not r[0].startswith("#")]
        return cls({row[0].lower(): row[1] for row in rows})

    def _category(self, word: str) -> str | None:
        word = word.lower().rstrip(".")
        for form in (word, re.sub("(?:'s|\u2019s|s'|')$", "", word)):
            if form in self.terms:
                return self.terms[form]
        return None

    def clinical(self, text: str, start: int, end: int) -> bool:
        """Whether ``text[start:end]`` reads as clinical vocabulary, not an identifier:
        every word is a term, and an eponym that is also a common surname is followed by
        a clinical word (sign, test, criteria, disease, +, -…)."""
        words = _WORDS.findall(text[start:end])
        if not words:
            return False
        categories = [self._category(w) for w in words]
        if any(c is None for c in categories):
            return False
        if "eponym_in_context" in categories:
            return bool(_CLINICAL_HEAD_AFTER.match(text[end : end + 24]))
        return True

    def term(self, value: str) -> bool:
        """Whether ``value`` as a whole is a lexicon term."""
        return self._category(value) is not None


def name_cue(text: str, start: int) -> bool:
    """A title, a kinship word or a label right before ``start``, on the same line."""
    before = text[max(0, start - 24) : start].rsplit("\n", maxsplit=1)[-1]
    return bool(_NAME_CUE_BEFORE.search(before))


def real_date(text: str, start: int, end: int, confidence: float = 0.0) -> bool:
    """Whether a date-shaped span can be a date here. Full dates (a month name, a year,
    ISO) always can; a number mixing ``.`` and ``/`` (a blood gas) never; a bare ``m/d``
    never after a score's cue (strength, pain, GCS…), and otherwise with a date's
    context (on, since, seen…, a time after it, the start of a line) or when the
    tagger, reading the whole sentence, is confident (``confidence``) it is a date."""
    value = text[start:end].strip()
    if _MIXED.search(value) or _DECIMAL_RANGE.match(value):
        return False
    line_start = text.rfind("\n", 0, start) + 1
    before = text[line_start:start]
    if _SHORT_NUMERIC.match(value) and _SCORE_CUE_BEFORE.search(before):
        return False  # "Apgars 8/9/10", "reflexes 2/2/1": scores in a row, not a date
    if not _BARE.match(value):
        return True
    if "." in value:
        return False  # 4.5 is a number: a bare day and month are written with a slash
    first, second = (int(n) for n in re.split(r"[/.]", value))
    if not ((1 <= first <= 12 and 1 <= second <= 31) or (1 <= second <= 12 and 1 <= first <= 31)):
        return False  # 16/18 is no month and day either way round
    if _SCORE_CUE_BEFORE.search(before) or (second in (7, 12) and _DURATION_BEFORE.search(before)):
        return False
    if _DATE_CUE_BEFORE.search(before) or _DATE_CUE_AFTER.match(text[end : end + 12]):
        return True
    if _SCORE_NEARBY.search(before[-40:]):
        return False  # "pain now 6/10, was 9/10": a second score in the same breath
    # A line or list item that opens with the date: "3/14: CT head neg", "- 3/14 seen".
    if not before.strip(" -*•\t") and re.match(r"\s*[:\-]?\s*[A-Za-z]", text[end:]):
        return True
    return confidence >= MODEL_DATE


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
        candidates = [*model, *self.patterns.grammar(text), *self.patterns.known(text, known)]
        kept = [s for s in candidates if self._keep(text, s)]
        return merge([s for s in kept if not _lone_initial(text, s, kept)])

    def _keep(self, text: str, span: Span) -> bool:
        if span.source == "known":
            return True  # the record's own identifier: redacted wherever it stands
        if not shaped(text[span.start : span.end], span.type):
            return False
        if span.type in (PhiType.PHONE, PhiType.FAX) and not phone_like(text, span):
            return False
        if span.type is PhiType.DATE:
            confidence = span.confidence if span.source == "model" else 0.0
            return real_date(text, span.start, span.end, confidence)
        if span.type in GUARDED and self.lexicon.clinical(*token_around(text, span)):
            return span.confidence >= CONFIDENT and name_cue(text, span.start)
        if span.type in (PhiType.NAME, PhiType.LOCATION) and acronym(text, span):
            return span.confidence >= CONFIDENT or name_cue(text, span.start)
        if span.type in GUARDED and span.source == "model" and self._plain_word(text, span):
            return span.confidence >= CONFIDENT or name_cue(text, span.start)
        return True

    def _plain_word(self, text: str, span: Span) -> bool:
        """Lower-case words that are no known first name or surname, in text whose
        writer capitalises ("basilar atelectasis"): a writer who capitalises writes a
        name with a capital, so these are ordinary words unless the tagger is sure."""
        words = text[span.start : span.end].split()
        if not words or not all(w.isalpha() and w.islower() for w in words):
            return False
        if any(w in self._names for w in words):
            return False
        window = text[max(0, span.start - 120) : span.end + 120]
        return any(w[:1].isupper() for w in window.split()[1:])


_TOKEN = re.compile(r"\S+")
# The tokens an e-mail address or a web address is made of; the label before it
# ("Email", "Portal:") is not part of it, though the tagger sometimes says so.
_TOKEN_OF = {PhiType.EMAIL: re.compile("@"), PhiType.URL: re.compile(r"[./]\w")}


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
    if span.type is not PhiType.NAME or span.end - span.start > 1 or span.source == "known":
        return False
    return not any(
        other is not span
        and other.type is PhiType.NAME
        and (0 <= other.start - span.end <= 3 or 0 <= span.start - other.end <= 3)
        for other in spans
    )


_PHONE_CUE_BEFORE = re.compile(
    r"(?i:\b(?:pgr|pager|beeper|bleep|ext|extn|x|tel|telephone|phone|ph|cell|mobile|mob|"
    r"call|called|contact|fax|on|at|number|no)\.?\s*[:#]?\s*)$"
)


def phone_like(text: str, span: Span) -> bool:
    """A number of fewer than seven digits is a phone only after a phone's cue ("pgr
    4417", "ext 3321"): alone it is a time, a dose or a count."""
    digits = sum(c.isdigit() for c in text[span.start : span.end])
    if digits >= 7:
        return True
    before = text[max(0, span.start - 16) : span.start].rsplit("\n", maxsplit=1)[-1]
    return bool(_PHONE_CUE_BEFORE.search(before))


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


_NUMBER_WORDS = re.compile(r"(?i)ninety|hundred")
_YEAR = re.compile(r"^(?:1[89]|20|21)\d\d$")
# What a date written in digits looks like: d/m[/y], y-m-d, d.m.y, yyyymmdd, m/yyyy.
_NUMERIC_DATE = re.compile(
    r"^(?:\d{1,2}[/.-]\d{1,2}(?:[/.-]\d{2,4})?|\d{4}[/.-]\d{1,2}(?:[/.-]\d{1,2})?"
    r"|(?:19|20)\d{6}|\d{1,2}/(?:19|20)\d\d)(?:[T ,].*)?$"
)
_MONTH_OR_ORDINAL = re.compile(
    r"(?i)jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|\d(?:st|nd|rd|th)\b"
)


def shaped(value: str, phi_type: PhiType) -> bool:
    """Whether ``value`` can be PHI of ``phi_type`` at all: a name has letters, an age
    over 89 is a number from 90, a phone has four digits or more, a lone year is no
    date (Safe Harbor keeps years). The learned tagger is sometimes sure of a type that
    its words cannot have; this drops those spans."""
    letters = sum(c.isalpha() for c in value)
    digits = sum(c.isdigit() for c in value)
    if phi_type in (PhiType.NAME, PhiType.LOCATION, PhiType.ORGANIZATION, PhiType.PROFESSION):
        return letters > 0
    if phi_type is PhiType.ADDRESS:
        return letters > 0
    if phi_type is PhiType.AGE:
        numbers = [int(n) for n in re.findall(r"\d+", value)]
        return any(90 <= n <= 125 for n in numbers) or bool(_NUMBER_WORDS.search(value))
    if phi_type is PhiType.DATE:
        bare = value.strip()
        if _YEAR.match(bare):
            return False
        return bool(_MONTH_OR_ORDINAL.search(bare) or _NUMERIC_DATE.match(bare))
    if phi_type in (PhiType.PHONE, PhiType.FAX):
        return digits >= 4
    if phi_type in (PhiType.ID, PhiType.MRN, PhiType.SSN):
        return digits >= 4 or (digits >= 3 and letters + digits >= 5)
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
