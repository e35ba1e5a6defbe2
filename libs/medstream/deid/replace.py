"""Replacing detected PHI: type tags or surrogates, and date shifting inside text.

Dates are shifted by the patient's offset in both modes, so intervals in the text stay
true. Ages over 89 become 90, Safe Harbor's "90 or older". Surrogates are chosen with
the keyed pseudonymiser, so the same value in the same patient's text always gets the
same surrogate, and different patients get different ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Protocol

from medstream.deid.keys import Pseudonymiser
from medstream.deid.text import PhiType, Span, dictionaries

MONTH_NAMES = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_MONTH_INDEX = {name[:3].lower(): i + 1 for i, name in enumerate(MONTH_NAMES)}


# Common jobs: a surrogate that says nothing about the person it replaces.
PROFESSIONS = (
    "teacher", "driver", "cashier", "nurse aide", "clerk", "electrician", "cook", "accountant",
    "farmer", "mechanic", "cleaner", "engineer", "sales assistant", "carpenter", "librarian",
)  # fmt: skip


class ReplacementMode(StrEnum):
    """How detected PHI is written back."""

    TAG = "tag"
    SURROGATE = "surrogate"


@dataclass(frozen=True)
class Replacement:
    """One replaced span, with offsets into the input text, and the detectors that found
    it (pattern, model, known)."""

    start: int
    end: int
    type: PhiType
    replacement: str
    source: str = "pattern"


class Detector(Protocol):
    """What finds PHI in free text: the ensemble in production, the rules as a baseline."""

    def detect(self, text: str, known: Iterable[tuple[str, PhiType]] = ()) -> list[Span]: ...


@dataclass(frozen=True)
class PatientScope:
    """Whose text this is: surrogates and the date offset are per patient."""

    patient_key: str
    offset_days: int


@lru_cache(maxsize=1)
def _surrogate_pools() -> tuple[list[str], list[str], list[str]]:
    """The sorted first names, surnames and one-word cities surrogates are drawn from.
    Sorted once per process: the profiler found deid spending most of its time sorting
    them again for every record (a scrubber is made for each record's dry run)."""
    first, last, cities, common = dictionaries()
    return (
        sorted(first - common),
        sorted(last - common),
        sorted(c for c in cities - common if " " not in c),
    )


class TextScrubber:
    """Detects and replaces PHI in free text."""

    def __init__(
        self,
        pseudonymiser: Pseudonymiser,
        mode: ReplacementMode = ReplacementMode.TAG,
        detector: Detector | None = None,
    ) -> None:
        self.keys = pseudonymiser
        self.mode = mode
        if detector is None:
            from medstream.deid.detect import default_detector  # noqa: PLC0415  (loads torch)

            detector = default_detector()
        self.detector = detector
        self._first, self._last, self._cities = _surrogate_pools()

    def scrub(
        self, text: str, scope: PatientScope, known: Iterable[tuple[str, PhiType]] = ()
    ) -> tuple[str, list[Replacement]]:
        """De-identified ``text`` and the replacements made, in order."""
        replacements = [
            Replacement(s.start, s.end, s.type, self._replace(text, s, scope), s.source)
            for s in self.detector.detect(text, known)
        ]
        out, cursor = [], 0
        for r in replacements:
            out.append(text[cursor : r.start])
            out.append(r.replacement)
            cursor = r.end
        out.append(text[cursor:])
        return "".join(out), replacements

    def _replace(self, text: str, span: Span, scope: PatientScope) -> str:
        value = text[span.start : span.end]
        if span.type is PhiType.DATE:
            return shift_date_text(value, scope.offset_days) or "[DATE]"
        if span.type is PhiType.AGE:
            return "90"
        if self.mode is ReplacementMode.TAG:
            return f"[{span.type.value}]"
        return self._surrogate(span.type, value, scope)

    def _surrogate(self, phi_type: PhiType, value: str, scope: PatientScope) -> str:
        def pick(options: list[str], part: str) -> str:
            index = self.keys.choose(
                f"surrogate:{phi_type}:{scope.patient_key}", part, len(options)
            )
            return options[index].title()

        if phi_type is PhiType.NAME:
            tokens = value.split()
            return " ".join(
                t
                if len(t.rstrip(".")) == 1
                else pick(
                    self._first
                    if t.lower() in self._first and i == 0 and len(tokens) > 1
                    else self._last,
                    t.lower(),
                )
                for i, t in enumerate(tokens)
            )
        if phi_type is PhiType.LOCATION:
            return pick(self._cities, value.lower())
        if phi_type is PhiType.ORGANIZATION:
            return f"{pick(self._last, value.lower())} Medical Center"
        if phi_type is PhiType.ADDRESS:
            number = 1 + self.keys.choose("surrogate:street-no", scope.patient_key + value, 999)
            return f"{number} {pick(self._last, value.lower())} Street"
        if phi_type is PhiType.EMAIL:
            return f"{pick(self._last, value.lower()).lower()}@example.org"
        if phi_type is PhiType.URL:
            return "https://example.org/"
        if phi_type is PhiType.IP:
            last = self.keys.choose("surrogate:ip", scope.patient_key + value, 254) + 1
            return f"192.0.2.{last}"  # TEST-NET-1: never a real host
        if phi_type is PhiType.PROFESSION:
            return pick(list(PROFESSIONS), value.lower()).lower()
        return self._digits(value, scope)

    def _digits(self, value: str, scope: PatientScope) -> str:
        """Same shape, keyed digits and letters: phone, SSN, MRN, ids, ZIP."""
        digest = self.keys.digest("surrogate:digits", scope.patient_key + "\x1f" + value)
        out, i = [], 0
        for char in value:
            if char.isdigit():
                out.append(str(digest[i % len(digest)] % 10))
                i += 1
            elif char.isalpha():
                letter = chr(ord("A") + digest[i % len(digest)] % 26)
                out.append(letter if char.isupper() else letter.lower())
                i += 1
            else:
                out.append(char)
        return "".join(out)


_NUMERIC = re.compile(
    r"^(?P<a>\d{1,4})(?P<s1>[-/.])(?P<b>\d{1,2})(?:(?P<s2>[-/.])(?P<c>\d{2,4}))?(?P<rest>[T ].*)?$"
)
_COMPACT = re.compile(r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})$")
_WORDY = re.compile(
    r"^(?:(?P<the>the\s+)?(?P<d1>\d{1,2})(?P<o1>st|nd|rd|th)?(?P<sep1>\s+of\s+|\s+|-))?"
    r"(?P<month>[A-Za-z]+)(?P<dot>\.?)"
    r"(?:(?P<sep2>\s+)(?P<d2>\d{1,2})(?P<o2>st|nd|rd|th)?)?"
    r"(?:(?P<sep3>,?\s+|-|,\s*)(?P<y>'?\d{2,4}))?$",
    re.I,
)


def shift_date_text(value: str, days: int) -> str | None:
    """``value`` moved by ``days``, written in the same style; None if it is not a date."""
    return _shift_numeric(value, days) or _shift_compact(value, days) or _shift_wordy(value, days)


def _year(text: str, pivot_from: str) -> int:
    number = int(text.lstrip("'"))
    if len(text.lstrip("'")) == 2:
        return 1900 + number if number > int(pivot_from) else 2000 + number
    return number


def _pad(number: int, like: str) -> str:
    """``number`` as wide as the field it replaces ("03" stays two digits)."""
    return str(number).zfill(len(like))


def _shift_numeric(value: str, days: int) -> str | None:
    match = _NUMERIC.match(value.strip())
    if not match:
        return None
    a, b, c = match["a"], match["b"], match["c"]
    try:
        if len(a) == 4:  # ISO: year first
            shifted = date(int(a), int(b), int(c or 1)) + timedelta(days=days)
            body = f"{shifted.year}{match['s1']}{_pad(shifted.month, b)}"
            if c:
                body += f"{match['s2']}{_pad(shifted.day, c)}"
            return body + (match["rest"] or "")
        month_first = int(a) <= 12
        month, day = (int(a), int(b)) if month_first else (int(b), int(a))
        year = _year(c, "30") if c else 2000
        if c is None and int(b) > 31 and len(b) > 2:
            return None
        shifted = date(year, month, day) + timedelta(days=days)
    except (ValueError, OverflowError):  # not a date, or one the shift pushes off the calendar
        return None
    first, second = (shifted.month, shifted.day) if month_first else (shifted.day, shifted.month)
    body = f"{_pad(first, a)}{match['s1']}{_pad(second, b)}"
    if c:
        year_text = str(shifted.year) if len(c) == 4 else str(shifted.year)[2:]
        body += f"{match['s2']}{year_text}"
    return body + (match["rest"] or "")


def _shift_compact(value: str, days: int) -> str | None:
    match = _COMPACT.match(value.strip())
    if not match:
        return None
    try:
        shifted = date(int(match["y"]), int(match["m"]), int(match["d"])) + timedelta(days=days)
    except (ValueError, OverflowError):  # not a date, or one the shift pushes off the calendar
        return None
    return shifted.strftime("%Y%m%d")


def _shift_wordy(value: str, days: int) -> str | None:
    match = _WORDY.match(value.strip())
    if not match:
        return None
    month = _MONTH_INDEX.get(match["month"][:3].lower())
    if month is None:
        return None
    day_text = match["d1"] or match["d2"]
    year_text = match["y"]
    try:
        year = _year(year_text, "30") if year_text else 2000
        shifted = date(year, month, int(day_text) if day_text else 15) + timedelta(days=days)
    except (ValueError, OverflowError):  # not a date, or one the shift pushes off the calendar
        return None
    original_month = match["month"]
    name = MONTH_NAMES[shifted.month - 1]
    if len(original_month) <= 4 and original_month.lower() != name.lower():
        name = (
            name[:3]
            if len(original_month) == 3
            else name[:4]
            if name[:4].lower() == original_month.lower()
            else name[:3]
        )
    if original_month.isupper():
        name = name.upper()
    name += match["dot"]
    ordinal = (match["o1"] or match["o2"]) and _ordinal(shifted.day)
    day_out = f"{_pad(shifted.day, day_text)}{ordinal or ''}" if day_text else ""
    if match["d1"]:
        text = f"{match['the'] or ''}{day_out}{match['sep1']}{name}"
    else:
        text = name + (f"{match['sep2']}{day_out}" if day_text else "")
    if year_text:
        year_out = (
            str(shifted.year)
            if len(year_text.lstrip("'")) == 4
            else (("'" if year_text.startswith("'") else "") + str(shifted.year)[2:])
        )
        text += f"{match['sep3']}{year_out}"
    return text


def _ordinal(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
