"""Synthetic clinical notes with their PHI spans, for training and judging the PHI tagger.

The point is generalisation, not templates. Each note is assembled from many small,
randomised pieces: a kind of note (nursing, ED, ICU, discharge, radiology, referral
letter, telephone, pharmacy, physiotherapy, social work, portal message, OCR'd intake
form), a mix of sentence families that each phrase their content several ways, clinical
filler dense with the words that look like PHI and are not (eponyms, drug names, lab and
ventilator abbreviations, scores and fractions, section headers), and identifier values
from Faker in dozens of locales, written the way people write them: lowercase, initials,
possessives, nicknames, hyphens, O'-names, titles or none, international phone and
postcode layouts. Styles vary too: lowercase notes, capitals, typos, run-on lines.

Three things are **held out by construction**: whole note kinds (``HELDOUT_KINDS``),
whole name and address sources (``HELDOUT_LOCALES``) and whole sentence families
(``HELDOUT_FAMILIES``). Training never sees them; ``medstream models train deid``
reports figures on each separately from the in-distribution ones.
"""

from __future__ import annotations

import bisect
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

# The tagger's PHI types: the CONTRACT's Safe Harbor groups, plus PROFESSION (an i2b2
# category that re-identifies in small places). MRN-style numbers are ID.
TYPES = (
    "NAME",
    "DATE",
    "AGE",
    "PHONE",
    "FAX",
    "EMAIL",
    "URL",
    "IP",
    "SSN",
    "ID",
    "ADDRESS",
    "LOCATION",
    "ZIP",
    "ORGANIZATION",
    "PROFESSION",
    "OTHER",
)

TRAIN_LOCALES = (
    "en_US",
    "en_GB",
    "en_IE",
    "en_AU",
    "en_CA",
    "en_IN",
    "en_NG",
    "en_PH",
    "de_DE",
    "de_AT",
    "fr_FR",
    "fr_CA",
    "es_ES",
    "es_MX",
    "es_AR",
    "it_IT",
    "pt_BR",
    "pt_PT",
    "nl_NL",
    "pl_PL",
    "ro_RO",
    "ru_RU",
    "uk_UA",
    "sv_SE",
    "no_NO",
    "da_DK",
    "tr_TR",
    "ar_AA",
    "fa_IR",
    "hi_IN",
    "bn_BD",
    "zh_CN",
    "ja_JP",
    "ko_KR",
    "id_ID",
    "th_TH",
    "ig_NG",
    "ha_NG",
    "tw_GH",
    "sw",
    "el_GR",
    "hr_HR",
    "sk_SK",
    "lt_LT",
    "ga_IE",
    "en_PK",
    "en_BD",
    "en_KE",
    "en_TH",
    "tr_TR",
)
# Scripts other than Latin are drawn less often: notes written in English mostly carry
# names transliterated, which the English-named locales above supply.
NON_LATIN = frozenset(
    {
        "ru_RU",
        "uk_UA",
        "ar_AA",
        "fa_IR",
        "hi_IN",
        "bn_BD",
        "zh_CN",
        "ja_JP",
        "ko_KR",
        "th_TH",
        "el_GR",
        "he_IL",
    }
)
# Never in training: West African, Central European, Vietnamese, Finnish, Hebrew,
# Filipino and South African sources, whose names and addresses the held-out figures use.
HELDOUT_LOCALES = ("yo_NG", "hu_HU", "cs_CZ", "vi_VN", "fi_FI", "he_IL", "fil_PH", "zu_ZA")

KINDS = (
    "nursing",
    "ed",
    "icu",
    "discharge",
    "radiology",
    "referral",
    "phone",
    "pharmacy",
    "physio",
    "social_work",
    "portal",
    "ocr_intake",
    "email",
    "chat",
    "form",
)
HELDOUT_KINDS = ("social_work", "portal")
# Kinds that are not clinical notes: e-mails, support chats and forms, whose filler is
# orders, prices and products rather than medicine.
GENERAL_KINDS = frozenset({"email", "chat", "form"})


@dataclass
class Note:
    """One synthetic note: its text, its PHI spans (start, end, type) and where it came
    from (kind, families, locales), so held-out splits can be checked."""

    text: str
    spans: list[tuple[int, int, str]]
    kind: str
    families: list[str] = field(default_factory=list)
    locales: list[str] = field(default_factory=list)


class Doc:
    """Builds a note's text piece by piece, recording where each PHI value lands."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[tuple[int, int, str]] = []
        self.length = 0

    def add(self, text: str) -> Doc:
        self.parts.append(text)
        self.length += len(text)
        return self

    def phi(self, value: str, phi_type: str) -> Doc:
        if value:
            self.spans.append((self.length, self.length + len(value), phi_type))
        return self.add(value)

    def put(self, pieces: list[tuple[str, str | None]]) -> Doc:
        """Add (text, type or None) pieces in order."""
        for text, phi_type in pieces:
            if phi_type is None:
                self.add(text)
            else:
                self.phi(text, phi_type)
        return self

    @property
    def text(self) -> str:
        return "".join(self.parts)


Pieces = list[tuple[str, str | None]]


@cache
def _faker(locale: str) -> Any:
    from faker import Faker  # noqa: PLC0415  (a training-time dependency)

    # Faker warns on every en_PH bank number that it is made up; we know.
    logging.getLogger("faker.providers.bank").setLevel(logging.ERROR)
    return Faker(locale)


class Values:
    """Identifier values drawn from one set of locales, written in varied forms."""

    def __init__(self, rng: random.Random, locales: tuple[str, ...]) -> None:
        self.rng = rng
        self.locales = locales
        weights = [0.3 if locale in NON_LATIN else 1.0 for locale in locales]
        # Most of a note's people and places come from one place, some from anywhere.
        self.primary = rng.choices(locales, weights)[0]
        self.used: list[str] = []

    def fake(self) -> Any:
        locale = self.primary if self.rng.random() < 0.75 else self.rng.choice(self.locales)
        self.used.append(locale)
        faker = _faker(locale)
        faker.seed_instance(self.rng.randrange(1 << 30))
        return faker

    def draw(self, method: str) -> str:
        """One value from a locale's provider; where a locale lacks it (Filipino phone
        numbers), its mobile form, else the English provider's."""
        faker = self.fake()
        for name in (method, "mobile_number"):
            try:
                return str(getattr(faker, name)()).strip().replace("\n", " ")
            except AttributeError:
                continue
        fallback = _faker("en_US")
        fallback.seed_instance(self.rng.randrange(1 << 30))
        return str(getattr(fallback, method)()).strip().replace("\n", " ")

    # ------------------------------------------------------------------ names

    def _latin(self, text: str) -> str:
        return text.strip().replace("\n", " ")

    def first(self, faker: Any = None) -> str:
        return self._latin((faker or self.fake()).first_name())

    def last(self, faker: Any = None) -> str:
        rng = self.rng
        faker = faker or self.fake()
        name = self._latin(faker.last_name())
        roll = rng.random()
        if roll < 0.06:
            name = f"{name}-{self._latin(faker.last_name())}"
        elif roll < 0.09:
            name = "O'" + name.capitalize() if "'" not in name else name
        elif roll < 0.11:
            name = rng.choice(["Mc", "Mac"]) + name.capitalize()
        elif roll < 0.14:
            name = (
                f"{rng.choice(['van', 'van der', 'de', 'da', 'di', 'bin', 'al', 'de la'])} {name}"
            )
        return name

    def person(self) -> Pieces:
        """A person's name in one of the ways notes write them."""
        rng = self.rng
        faker = self.fake()
        first, last = self.first(faker), self.last(faker)
        roll = rng.random()
        if roll < 0.28:
            pieces: Pieces = [(first, "NAME"), (" ", None), (last, "NAME")]
        elif roll < 0.42:
            pieces = [(last, "NAME")]
        elif roll < 0.56:
            pieces = [(first, "NAME")]
        elif roll < 0.62:
            pieces = [(last, "NAME"), (", ", None), (first, "NAME")]
        elif roll < 0.69:
            pieces = [(f"{first[0]}.", "NAME"), (" ", None), (last, "NAME")]
        elif roll < 0.75:
            middle = self.first()[0]
            pieces = [
                (first, "NAME"),
                (" ", None),
                (f"{middle}.", "NAME"),
                (" ", None),
                (last, "NAME"),
            ]
        elif roll < 0.80:
            initials = f"{first[0]}.{self.first()[0]}."
            pieces = [(initials, "NAME"), (" ", None), (last, "NAME")]
        elif roll < 0.86:
            nick = rng.choice([first[:3], first[:4], f"{first[0]}{last[0]}", self.first()])
            quote = rng.choice(['"', "'", "“"])
            close = "”" if quote == "“" else quote
            pieces = [
                (first, "NAME"),
                (f" {quote}", None),
                (nick, "NAME"),
                (f"{close} ", None),
                (last, "NAME"),
            ]
        elif roll < 0.92:
            pieces = [(last, "NAME"), ("'s", None)]
        else:
            pieces = [(first, "NAME"), (" ", None), (last.upper(), "NAME")]
        if rng.random() < 0.12:
            pieces = [(t.lower(), k) for t, k in pieces]
        return pieces

    def staff(self) -> Pieces:
        """A clinician, with a title before or a credential after, or neither."""
        rng = self.rng
        last = self.last()
        roll = rng.random()
        if roll < 0.35:
            return [(rng.choice(["Dr. ", "Dr ", "dr ", "Doctor ", "Prof. "]), None), (last, "NAME")]
        if roll < 0.6:
            first = self.first()
            return [
                (first, "NAME"),
                (" ", None),
                (last, "NAME"),
                (
                    rng.choice(
                        [", MD", " MD", ", RN", " RN", ", NP", ", PA-C", ", DO", " (pharm)"]
                    ),
                    None,
                ),
            ]
        if roll < 0.8:
            return [
                (f"{self.first()[0].lower()}.", "NAME"),
                (" ", None),
                (last.lower(), "NAME"),
                (rng.choice([", rn", " RN", ", lpn", ""]), None),
            ]
        return [(self.first(), "NAME"), (" ", None), (last, "NAME")]

    # ------------------------------------------------------------------ numbers

    def date(self) -> str:
        rng = self.rng
        day = date(2018, 1, 1) + timedelta(days=rng.randrange(0, 3000))
        months = [
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
        month = months[day.month - 1]
        forms = [
            f"{day.month}/{day.day}/{day.year}",
            f"{day.month:02d}/{day.day:02d}/{day.year % 100:02d}",
            f"{day.day:02d}/{day.month:02d}/{day.year}",
            f"{day.day}.{day.month}.{day.year}",
            day.isoformat(),
            f"{month} {day.day}, {day.year}",
            f"{day.day} {month} {day.year}",
            f"{month[:3]} {day.day}",
            f"{month[:3].lower()} {day.day}",
            f"{day.day}-{month[:3]}-{day.year}",
            f"{month} {day.day}{_ordinal(day.day)}",
            f"the {day.day}{_ordinal(day.day)}",
            f"{day.month}/{day.day}",
            f"{month.lower()}",
            f"{month[:3].lower()}",
            f"{month} {day.year}",
            f"{day.year}{day.month:02d}{day.day:02d}",
            f"{day.day}/{day.month}",
            f"{day.day}{_ordinal(day.day)} of {month}",
            f"{['Mon', 'Tues', 'Wed', 'Thurs', 'Fri', 'Sat', 'Sun'][day.weekday()]} {day.month}/{day.day}",
            f"{day.month:02d}-{day.day:02d}-{day.year % 100:02d}",
            f"{month[:3]}. {day.day}",
        ]
        return rng.choice(forms)

    def age(self) -> Pieces:
        rng = self.rng
        years = rng.randrange(90, 106)
        words = {
            90: "ninety",
            91: "ninety-one",
            92: "ninety-two",
            93: "ninety-three",
            94: "ninety-four",
            95: "ninety-five",
            96: "ninety-six",
            97: "ninety-seven",
            98: "ninety-eight",
            99: "ninety-nine",
        }
        roll = rng.random()
        if roll < 0.35:
            return [
                (str(years), "AGE"),
                (rng.choice([" yo ", " y/o ", "yo ", " year old ", "-year-old "]), None),
            ]
        if roll < 0.55 and years in words:
            return [
                (words[years], "AGE"),
                (rng.choice([" year old ", "-year-old ", " yr old "]), None),
            ]
        if roll < 0.75:
            return [
                (rng.choice(["aged ", "age ", "Age: "]), None),
                (str(years), "AGE"),
                (" ", None),
            ]
        return [(str(years), "AGE"), (rng.choice(["F ", "M ", "f ", "m "]), None)]

    def phone(self) -> Pieces:
        rng = self.rng
        number = self.draw("phone_number")
        roll = rng.random()
        if roll < 0.15:
            return [
                (number, "PHONE"),
                (rng.choice([" ext ", " x", " ext. "]), None),
                (str(rng.randrange(100, 99999)), "PHONE"),
            ]
        if roll < 0.25:
            return [
                (rng.choice(["pgr ", "pager ", "beeper ", "bleep "]), None),
                (str(rng.randrange(1000, 99999)), "PHONE"),
            ]
        if roll < 0.32:
            return [(f"{rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}", "PHONE")]
        return [(number, "PHONE")]

    def fax(self) -> str:
        return self.draw("phone_number")

    def email(self) -> str:
        faker = self.fake()
        return str(faker.email() if self.rng.random() < 0.7 else faker.free_email())

    def url(self) -> str:
        faker = self.fake()
        return str(
            self.rng.choice([faker.url(), f"{faker.domain_name()}/{faker.uri_path()}", faker.uri()])
        )

    def ip(self) -> str:
        faker = self.fake()
        return str(faker.ipv4() if self.rng.random() < 0.85 else faker.ipv6())

    def ssn(self) -> str:
        rng = self.rng
        real = f"{rng.randrange(100, 899)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}"
        return rng.choice(
            [
                real,
                real.replace("-", ""),
                f"xxx-xx-{real[-4:]}",
                f"XXX-XX-{real[-4:]}",
                f"***-**-{real[-4:]}",
            ]
        )

    def identifier(self) -> Pieces:
        """Record, account, plan, device and other numbers, after the cue a note uses."""
        rng = self.rng
        digits = str(rng.randrange(10**5, 10**9))
        roll = rng.random()
        if roll < 0.2:
            cue = rng.choice(
                [
                    "MRN ",
                    "MRN: ",
                    "mrn ",
                    "MR# ",
                    "Med Rec #",
                    "med rec no. ",
                    "Hosp # ",
                    "NHS no. ",
                    "UR ",
                ]
            )
            value = rng.choice(
                [digits, f"{digits[:4]}-{digits[4:8]}", f"{rng.choice('ABEKMPQ')}{digits}"]
            )
            return [(cue, None), (value, "ID")]
        if roll < 0.35:
            cue = rng.choice(["acct ", "Account # ", "visit # ", "FIN ", "enc ", "CSN "])
            return [(cue, None), (digits + str(rng.randrange(10, 99)), "ID")]
        if roll < 0.5:
            cue = rng.choice(
                ["member ID ", "policy # ", "Medicare # ", "ins id ", "group no. ", "Medicaid "]
            )
            value = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(3)) + digits
            return [(cue, None), (value if rng.random() < 0.7 else value.lower(), "ID")]
        if roll < 0.6:
            iban = self.fake().iban()
            return [
                (rng.choice(["IBAN ", "iban: ", "acct "]), None),
                (iban.lower() if rng.random() < 0.4 else iban, "ID"),
            ]
        if roll < 0.7:
            cue = rng.choice(["pacemaker serial ", "S/N ", "device sn ", "lot ", "implant # "])
            return [
                (cue, None),
                (f"{rng.choice('ABCDPQX')}{rng.choice('KLMNRTZ')}{digits[:6]}", "ID"),
            ]
        if roll < 0.78:
            plate = self.fake().license_plate()
            return [(rng.choice(["plate ", "license plate ", "reg "]), None), (plate, "ID")]
        if roll < 0.86:
            return [
                (rng.choice(["DEA ", "NPI ", "licence no. ", "lic # "]), None),
                (f"{rng.choice('ABFM')}{rng.choice('ABCDEFG')}{digits[:7]}", "ID"),
            ]
        if roll < 0.93:
            return [
                (rng.choice(["passport ", "DL # ", "driver's license "]), None),
                (f"{rng.choice('CDEFGHX')}{digits[:8]}", "ID"),
            ]
        return [(digits[:7], "ID")]

    # ------------------------------------------------------------------ places

    def street(self) -> str:
        return self._latin(self.fake().street_address())

    def city(self) -> str:
        return self._latin(self.fake().city())

    def postcode(self) -> str:
        return self._latin(self.fake().postcode())

    def address(self) -> Pieces:
        rng = self.rng
        pieces: Pieces = [(self.street(), "ADDRESS")]
        if rng.random() < 0.8:
            pieces += [(rng.choice([", ", " ", ",\n"]), None)]
            if rng.random() < 0.5:
                pieces += [(self.postcode(), "ZIP"), (" ", None), (self.city(), "LOCATION")]
            else:
                pieces += [
                    (self.city(), "LOCATION"),
                    (rng.choice([" ", ", "]), None),
                    (self.postcode(), "ZIP"),
                ]
        return pieces

    def room(self) -> Pieces:
        """A room of three digits is a place (i2b2's ROOM); a bed or bay of one or two
        is a ward's furniture, which every ward has, and no PHI."""
        rng = self.rng
        cue = rng.choice(["rm ", "Room ", "bed ", "Bed ", "bay ", "Rm. "])
        if rng.random() < 0.5:
            return [(cue, None), (f"{rng.randrange(1, 40)}{rng.choice(['', 'A', 'B', 'C'])}", None)]
        return [(cue, None), (f"{rng.randrange(100, 999)}{rng.choice(['', 'B'])}", "LOCATION")]

    def organization(self) -> str:
        rng = self.rng
        city, last = self.city(), self.last()
        forms = [
            f"{city} General Hospital",
            f"St. {self.first()}'s Hospital",
            f"{last} Medical Center",
            f"{city} Memorial",
            f"Klinikum {city}",
            f"Hôpital {last}",
            f"{city} Community Health Centre",
            f"{last} Family Practice",
            f"{city} Rehab",
            f"{self.fake().company()}",
            f"{city} Nursing Home",
            f"Ospedale {last}",
            f"{last} Clinic",
            f"{city} University Hospital",
            f"{city} Dialysis Unit",
            f"{last} GP practice",
            f"St {self.first()}'s Primary School",
            f"{city} Fire Department",
            f"{last} & Sons",
            f"{city} County Jail",
            f"{city} Surgical Centre",
        ]
        return rng.choice(forms)

    def profession(self) -> str:
        job = self._latin(self.fake().job())
        return job.lower() if self.rng.random() < 0.6 else job

    def filename(self) -> str:
        rng = self.rng
        last = self.last().split()[-1].lower().replace("'", "")
        return rng.choice(
            [
                f"IMG_{rng.randrange(1000, 9999)}.jpg",
                f"face-{last}-{rng.randrange(2015, 2026)}.jpg",
                f"{last}_wound_{rng.randrange(1, 9)}.png",
                f"scan{rng.randrange(100, 999)}_{last}.pdf",
                f"DSC0{rng.randrange(1000, 9999)}.JPG",
            ]
        )


def _ordinal(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


# --------------------------------------------------------------------------- clinical filler

EPONYMS_IN_USE = (
    "Murphy's sign negative",
    "+Murphy's",
    "Homans sign neg",
    "neg Homans",
    "Kernig and Brudzinski negative",
    "McMurray test equivocal on L",
    "placed in Trendelenburg",
    "reverse Trendelenburg for intubation",
    "Babinski downgoing bilat",
    "Romberg +",
    "Lachman 1+",
    "Phalen and Tinel positive R wrist",
    "Rovsing's sign present",
    "Chvostek neg",
    "Kussmaul respirations",
    "Cheyne-Stokes breathing overnight",
    "Foley in place, draining clear yellow",
    "Foley removed 0600",
    "Hickman line flushed",
    "JP drain 30 mL serosang",
    "Swan-Ganz wedge 18",
    "Dobhoff confirmed on KUB",
    "Glasgow 14",
    "Apgar 8 and 9",
    "Mallampati III",
    "Gleason 3+4",
    "Salter-Harris II",
    "Colles fracture L wrist",
    "Bell's palsy resolving",
    "hx Parkinson's on Sinemet",
    "Crohn's flare",
    "Hashimoto's on levothyroxine",
    "Graves disease s/p RAI",
    "Barrett's esophagus on surveillance",
    "Wells score 4",
    "Child-Pugh B",
    "CHA2DS2-VASc 4",
    "Valsalva terminated SVT",
    "Epley maneuver done",
    "Dix-Hallpike positive to the right",
    "Thompson test negative",
    "Allen test normal before ABG",
    "Jones criteria not met",
    "Wilson's disease ruled out",
    "Cushing's triad absent",
    "Kehr's sign",
    "Grey Turner sign absent",
)
DRUGS = (
    "Lasix 40 IV BID",
    "Eliquis 5 mg BID",
    "Keppra 500 bid",
    "Zosyn 4.5 g q6h",
    "vanc trough 15.2",
    "Coumadin held, INR 3.4",
    "Lovenox 40 daily",
    "Plavix and ASA",
    "Norco 5/325 1 tab q6h prn",
    "Percocet 5/325",
    "Tylenol 650 q6h",
    "Zofran 4 mg IV prn",
    "Protonix 40 daily",
    "Seroquel 25 qhs",
    "Haldol 2 mg IM x1",
    "Ativan 1 mg",
    "Precedex at 0.4",
    "Levophed at 8 mcg/min",
    "insulin glargine 22 units",
    "Humalog sliding scale",
    "Jardiance started",
    "Entresto titrated",
    "Ozempic weekly",
    "metoprolol 25 BID",
    "Dilaudid PCA",
    "Narcan x2",
    "Ceftriaxone 1 g",
    "Augmentin 875",
    "Bactrim DS",
    "Xarelto 20",
    "Solu-Medrol 125",
    "DuoNeb q4h",
    "Albuterol MDI",
    "Synthroid 88 mcg",
    "Flomax 0.4",
    "Miralax daily",
)
ABBREVIATIONS = (
    "Na 131",
    "K 5.9",
    "Cr 2.1 from 1.4",
    "BUN 48",
    "HCO3 18",
    "Hgb 7.2",
    "Plt 88",
    "WBC 14.3",
    "lactate 4.1",
    "trop neg x2",
    "BNP 1240",
    "INR 1.1",
    "A1c 9.2",
    "TSH 0.02",
    "on RA",
    "2L NC",
    "FiO2 40%, PEEP 8",
    "PaCO2 58",
    "SpO2 93% RA",
    "HFrEF EF 25%",
    "GNR in 2/2 bottles",
    "MRSA swab neg",
    "UA + nitrites",
    "CXR RLL infiltrate",
    "CT A/P neg",
    "TTE EF 55%",
    "EKG NSR",
    "afib RVR",
    "NSTEMI",
    "SGLT2i held",
    "ACEi held for AKI",
    "COPD exac",
    "OSA on CPAP",
    "CKD 3b",
    "DKA resolved",
    "ESRD on HD MWF",
    "GCS 15",
    "A&Ox3",
    "PERRLA",
    "CTAB",
    "RRR no m/r/g",
    "NT/ND",
    "MAE",
    "BLE edema 2+",
    "DNR/DNI",
)
FRACTIONS = (
    "strength 4/5 LUE",
    "5/5 throughout",
    "pain 7/10",
    "pain 3/10 after meds",
    "BP 142/88",
    "BP 98/54",
    "ABG 7.28/45/62",
    "VBG 7.31/52",
    "Apgars 8/9",
    "GCS 3/15 on arrival",
    "VA 20/40 OD",
    "I/E 1:2",
    "epi 1:1000",
    "ratio 2:1",
    "tolerating 1/2 of meals",
    "2/2 dehydration",
    "AKI 2/2 poor PO",
    "hypoxia likely 2/2 atelectasis",
    "sats 88-92%",
    "RR 22-24",
    "HR 110s",
    "T 38.6",
    "MAP > 65",
    "wt 82.4 kg",
    "I/O +1.2 L",
    "UOP 30 mL/hr",
    "gtt 5 mcg/kg/min",
    "q2h turns",
    "x1 dose",
)
HEADERS = (
    "Hospital Course:",
    "Brief Hospital Course",
    "Assessment/Plan:",
    "A/P:",
    "Health Plan:",
    "Subjective:",
    "Objective:",
    "HPI:",
    "PMH:",
    "Meds:",
    "Allergies: NKDA",
    "Social Hx:",
    "Dispo:",
    "Plan:",
    "Impression:",
    "Findings:",
    "ROS:",
    "Exam:",
    "Labs:",
    "Imaging:",
    "Code status: full",
    "Diet: NPO",
    "Lines/drains:",
)
PLAIN = (
    "Patient resting comfortably.",
    "Pt ambulated in hallway with walker.",
    "Family at bedside.",
    "Tolerating diet.",
    "Denies CP/SOB.",
    "Will continue to monitor.",
    "Discussed with team.",
    "Mother at bedside, updated.",
    "Patient states she feels better today.",
    "He is agreeable to the plan.",
    "Wound dressing changed, no signs of infection.",
    "NPO after midnight for procedure.",
    "Reinforced fall precautions.",
    "Pt refused AM labs, will retry.",
    "Son called for update.",
    "Daughter and husband visited.",
    "Pain controlled.",
    "No acute events overnight.",
    "Christmas plans discussed with social work.",
    "Patient's wife reports poor appetite.",
)


GENERAL = (
    "Thanks for getting back to me.",
    "Your order has shipped.",
    "Total due: EUR 45.90",
    "Please find the invoice attached.",
    "SKU TX-4410, qty 2",
    "Kind regards,",
    "Best,",
    "Can you confirm the delivery window?",
    "The refund of $129.99 was processed.",
    "Ticket status: resolved",
    "We apologise for the delay.",
    "Room type: double, 2 nights",
    "Meeting moved to the afternoon.",
    "See you at the conference.",
    "Model X200, firmware 4.1.2",
    "Your password was changed.",
    "Subscription renews annually.",
    "Parcel weight 2.3 kg",
    "Please reply to this e-mail if anything is wrong.",
    "Reference your booking when calling.",
)


ANATOMY = (
    "abdomen", "chest", "RUQ", "LLQ", "epigastrium", "left calf", "right knee", "sacrum", "L hip",
    "R shoulder", "lumbar spine", "C-spine", "scalp", "left eye", "oropharynx", "neck", "axilla",
    "groin", "perineum", "heel", "great toe", "wrist", "forearm", "flank", "pelvis", "bowel",
    "bladder", "liver", "spleen", "kidney", "lungs", "heart", "aorta", "carotid", "femoral line",
    "PICC site", "surgical wound", "midline incision", "stoma", "trach site", "G-tube site",
)  # fmt: skip
FINDINGS = (
    "tender", "non-tender", "erythema", "swelling", "crepitus", "warm to touch", "mild edema",
    "no drainage", "serous drainage", "intact", "clean, dry, intact", "decreased breath sounds",
    "crackles", "wheeze", "rhonchi", "murmur", "rub", "guarding", "rebound", "distended", "soft",
    "bruising", "petechiae", "rash", "ulcer stage 2", "induration", "full ROM", "limited ROM",
    "weak", "numb", "pins and needles", "normal tone", "clonus", "ataxic gait", "pupils equal",
)  # fmt: skip
ACTIONS = (
    "Continue current plan", "Recheck in AM", "Reposition q2h", "Encourage fluids", "Advance diet as tolerated",
    "Wean O2 as able", "Hold parameters reviewed", "Repeat lactate", "Trend troponin", "Monitor UOP",
    "Physio to review", "Dietitian referral", "Wound care to follow", "Pain team aware", "Escalate if worse",
    "Keep NPO", "Check orthostatics", "Fall risk: high", "Bed alarm on", "Chaperone present",
)  # fmt: skip


def _prose(rng: random.Random) -> str:
    """A clinical sentence from anatomy, findings and plans: ordinary medical words, O."""
    roll = rng.random()
    if roll < 0.4:
        return f"{rng.choice(ANATOMY).capitalize()} {rng.choice(FINDINGS)}" + (
            f", {rng.choice(FINDINGS)}" if rng.random() < 0.5 else ""
        )
    if roll < 0.7:
        return rng.choice(ACTIONS)
    return f"{rng.choice(['No', 'Mild', 'Moderate', 'New', 'Worsening', 'Improving'])} {rng.choice(FINDINGS)} {rng.choice(['at', 'over', 'of', 'in'])} {rng.choice(ANATOMY)}"


def _clinical(rng: random.Random, kind: str = "") -> str:
    if kind in GENERAL_KINDS:
        return " ".join(rng.sample(GENERAL, k=rng.randrange(1, 3)))
    roll = rng.random()
    if roll < 0.2:
        return _numbers(rng)
    if roll < 0.38:
        return _lexicon_phrase(rng)
    if roll < 0.58:
        return ". ".join(_prose(rng) for _ in range(rng.randrange(1, 4)))
    bank = rng.choice([EPONYMS_IN_USE, DRUGS, ABBREVIATIONS, FRACTIONS, PLAIN, PLAIN])
    items = rng.sample(bank, k=min(len(bank), rng.randrange(1, 4)))
    joiner = rng.choice([", ", "; ", ". ", " / ", "  "])
    return joiner.join(items)


def _value(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.4:
        return str(rng.randrange(0, 400))
    if roll < 0.75:
        return f"{rng.randrange(0, 40)}.{rng.randrange(0, 100)}"
    if roll < 0.85:
        return f"{rng.randrange(1, 300)}/{rng.randrange(1, 200)}"
    return rng.choice([">", "<", "~", ""]) + str(rng.randrange(1, 99))


def _numbers(rng: random.Random) -> str:
    """A line of measurements, as notes list labs, vitals, vent settings and trends:
    numbers everywhere, none of them PHI."""
    labels = [term for term, category in lexicon_terms() if category in ("abbreviation", "scale")]
    roll = rng.random()
    if roll < 0.5:
        items = [
            f"{rng.choice(labels)}{rng.choice([' ', ' ', ': ', '='])}{_value(rng)}"
            for _ in range(rng.randrange(2, 8))
        ]
        return rng.choice([", ", " ", "; ", "  "]).join(items)
    if roll < 0.65:
        chain = " -> ".join(_value(rng) for _ in range(rng.randrange(2, 5)))
        return f"{rng.choice(labels)} {chain}"
    if roll < 0.8:
        return f"{rng.randrange(1, 20)}.{rng.randrange(10)} > {rng.randrange(5, 16)}.{rng.randrange(10)}/{rng.randrange(20, 50)}.{rng.randrange(10)} < {rng.randrange(50, 500)}"
    if roll < 0.9:
        return f"{rng.choice(['ABG', 'VBG', 'abg'])} {rng.choice(['7.1', '7.2', '7.3', '7.4'])}{rng.randrange(10)}/{rng.randrange(25, 90)}/{rng.randrange(40, 300)}"
    return rng.choice(
        [
            f"{rng.randrange(1, 6)}.{rng.randrange(10)} x {rng.randrange(1, 6)}.{rng.randrange(10)} cm",
            f"x{rng.randrange(1, 5)}",
            f"q{rng.choice([2, 4, 6, 8, 12])}h",
            f"{rng.randrange(1, 5)}+ edema",
            f"stage {rng.choice(['2', '3a', '3b', '4'])}",
            f"{rng.randrange(1, 10)}/{rng.choice([52, 12, 7])}",
        ]
    )


def _lexicon_phrase(rng: random.Random) -> str:
    """Clinical terms from the lexicon in the phrases notes use them in."""
    term, category = rng.choice(lexicon_terms())
    if category == "drug":
        return rng.choice(
            [
                f"started {term}",
                f"{term} {rng.randrange(1, 1000)} mg",
                f"cont {term}",
                f"held {term}",
                f"{term} d/c'd",
                f"on {term}",
            ]
        )
    if category in ("eponym", "eponym_in_context"):
        return rng.choice(
            [
                f"{term} sign negative",
                f"+{term}",
                f"{term} test positive",
                f"{term} criteria met",
                f"neg {term}",
            ]
        )
    if category == "header":
        return f"{term}:"
    return rng.choice(
        [f"{term} {_value(rng)}", f"{term} neg", f"hx {term}", f"{term} stable", f"{term}"]
    )


@cache
def lexicon_terms() -> list[tuple[str, str]]:
    """The clinical lexicon's (term, category) rows, as written: negatives for training.
    The ``service`` rows (departments, roles, salutations; added after the tagger 1.0.0
    was trained) are left out, so the generator writes what it wrote for that model's
    training and for the generated evaluation sets, which stay comparable."""
    path = Path(__file__).resolve().parent / "data" / "clinical_lexicon.tsv"
    rows = [
        line.split("\t")
        for line in path.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    return [(term, category) for term, category in rows if category not in _LATER_CATEGORIES]


# Lexicon categories the generator never draws from (see ``lexicon_terms``).
_LATER_CATEGORIES = frozenset({"service"})


# --------------------------------------------------------------------------- sentence families

Family = Callable[[Doc, Values, random.Random], None]
FAMILIES: dict[str, Family] = {}


def family(name: str) -> Callable[[Family], Family]:
    def register(fn: Family) -> Family:
        FAMILIES[name] = fn
        return fn

    return register


def _say(rng: random.Random, *options: str) -> str:
    return rng.choice(options)


@family("patient_intro")
def _patient_intro(doc: Doc, v: Values, rng: random.Random) -> None:
    roll = rng.random()
    if roll < 0.3:
        doc.add(_say(rng, "Pt ", "Patient ", "pt ", "", "PATIENT: ")).put(v.person())
        doc.add(_say(rng, " is a ", " is an ", ", ", " - ")).add(f"{rng.randrange(18, 89)}")
        doc.add(_say(rng, " yo ", " y/o ", "-year-old ", "M ", "F ")).add(
            _say(rng, "with ", "w/ ", "hx of ", "")
        )
        doc.add(
            rng.choice(
                ["CHF", "COPD", "DM2", "ESRD", "cirrhosis", "sepsis", "a fall", "CAP", "SBO"]
            )
        )
        doc.add(". ")
        if rng.random() < 0.3:
            doc.add(_say(rng, "Retired ", "Works as a ", "Former ", "Occupation - ", "job: ")).phi(
                v.profession(), "PROFESSION"
            ).add(". ")
    elif roll < 0.55:
        doc.put(v.age()).add(_say(rng, "woman ", "man ", "female ", "male ", "pt ", "")).add(
            _say(rng, "admitted from ", "BIBA from ", "transferred from ", "presents from ")
        )
        if rng.random() < 0.6:
            doc.phi(v.organization(), "ORGANIZATION")
        else:
            doc.add("home")
        doc.add(_say(rng, " with ", " for ", " c/o ")).add(
            rng.choice(["SOB", "AMS", "fall", "chest pain", "weakness"])
        ).add(". ")
    else:
        doc.add(_say(rng, "Name: ", "Patient name: ", "NAME ", "Pt name - ")).put(v.person()).add(
            _say(rng, "   DOB: ", "  dob ", ", born ", " | DOB ")
        ).phi(v.date(), "DATE").add("\n")


@family("companion")
def _companion(doc: Doc, v: Values, rng: random.Random) -> None:
    kin = rng.choice(
        [
            "wife",
            "husband",
            "son",
            "daughter",
            "partner",
            "mother",
            "father",
            "sister",
            "brother",
            "niece",
            "friend",
            "neighbour",
            "neighbor",
            "grandson",
            "carer",
            "HCP",
        ]
    )
    roll = rng.random()
    if roll < 0.25:
        doc.add(_say(rng, f"{kin} ", f"{kin.capitalize()} ")).put(v.person()).add(
            _say(
                rng,
                " at bedside",
                " visiting",
                " updated by phone",
                " present for the discussion",
                " here today",
            )
        ).add(". ")
    elif roll < 0.5:
        doc.add(
            _say(rng, "Spoke with ", "spoke w/ ", "Discussed with ", "d/w ", "Called ", "Updated ")
        ).phi(v.first(), "NAME").add(f" ({kin})").add(
            _say(rng, " re: meds", " about discharge", " re plan", "")
        ).add(". ")
    elif roll < 0.75:
        doc.phi(v.first(), "NAME").add(
            _say(
                rng,
                " came in with his mother",
                " came in with her son",
                " brought him in",
                " is the main carer",
                " will pick her up",
                " visited this afternoon",
            )
        ).add(". ")
    else:
        name = v.last()
        doc.phi(name, "NAME").add("'s ").add(kin).add(
            _say(rng, " called asking for an update", " is the HCP", " wants a family meeting")
        ).add(". ")


@family("staff")
def _staff(doc: Doc, v: Values, rng: random.Random) -> None:
    roll = rng.random()
    if roll < 0.3:
        doc.add(
            _say(rng, "Discussed with ", "d/w ", "Seen with ", "Case reviewed with ", "Paged ")
        ).put(v.staff()).add(
            _say(rng, ", agrees with plan. ", ". ", " who will see pt. ", " - ok to proceed. ")
        )
    elif roll < 0.55:
        doc.add(_say(rng, "-", "- ", "Signed: ", "Electronically signed by ", "e-signed ", "")).put(
            v.staff()
        ).add(_say(rng, "\n", " ", "  ")).phi(v.date(), "DATE").add("\n")
    elif roll < 0.8:
        doc.add(_say(rng, "Consult ", "Called ", "Paged ", "f/u with ")).add(
            rng.choice(["cards", "neuro", "GI", "renal", "ortho", "psych", "ID", "pulm"])
        ).add(_say(rng, " - ", ", ", " (")).put(v.staff()).add(_say(rng, ") ", " ", ", ")).put(
            v.phone()
        ).add(". ")
    else:
        doc.add(_say(rng, "PCP: ", "pcp ", "Primary care: ", "GP: ")).put(v.staff()).add(
            _say(rng, " at ", ", ")
        ).phi(v.organization(), "ORGANIZATION").add(". ")


@family("contact")
def _contact(doc: Doc, v: Values, rng: random.Random) -> None:
    roll = rng.random()
    if roll < 0.35:
        doc.add(
            _say(
                rng,
                "Contact: ",
                "Best number ",
                "cell ",
                "Tel ",
                "Office: ",
                "mobile: ",
                "Ph ",
                "home ph ",
            )
        ).put(v.phone()).add(_say(rng, ". ", "\n", "; "))
    elif roll < 0.5:
        doc.add(_say(rng, "Fax ", "fax: ", "Fax to ", "faxed to ")).phi(v.fax(), "FAX").add(
            _say(rng, ". ", "\n")
        )
    elif roll < 0.7:
        doc.add(_say(rng, "email ", "E-mail: ", "emailed ", "reply to ")).phi(
            v.email(), "EMAIL"
        ).add(_say(rng, ". ", "\n", " "))
    elif roll < 0.82:
        doc.add(_say(rng, "Portal: ", "see ", "uploaded to ", "link ")).phi(v.url(), "URL").add(
            _say(rng, " ", ". ", "\n")
        )
    else:
        doc.add(_say(rng, "logged in from ", "IP ", "device IP ", "remote session ")).phi(
            v.ip(), "IP"
        ).add(". ")


@family("identifiers")
def _identifiers(doc: Doc, v: Values, rng: random.Random) -> None:
    doc.put(v.identifier()).add(_say(rng, "  ", "; ", "\n", ". ", " "))
    if rng.random() < 0.15:
        doc.add(_say(rng, "Image ", "file ", "scan saved as ", "Media: ")).phi(
            v.filename(), "OTHER"
        ).add(_say(rng, "\n", ". "))
    if rng.random() < 0.35:
        doc.add(_say(rng, "SSN ", "ssn: ", "SS# ", "social ")).phi(v.ssn(), "SSN").add(
            _say(rng, "\n", ". ", " ")
        )


@family("home")
def _home(doc: Doc, v: Values, rng: random.Random) -> None:
    roll = rng.random()
    if roll < 0.4:
        doc.add(_say(rng, "Lives at ", "Address: ", "home: ", "Resides ", "lives alone at ")).put(
            v.address()
        ).add(_say(rng, ". ", "\n"))
    elif roll < 0.7:
        doc.add(
            _say(
                rng,
                "Lives in ",
                "lives w/ daughter in ",
                "moving to ",
                "from ",
                "visiting family in ",
                "recently back from ",
            )
        ).phi(v.city(), "LOCATION").add(_say(rng, ". ", ", ", " "))
    else:
        doc.add(_say(rng, "Postcode ", "post code ", "ZIP ", "PLZ ", "zip: ")).phi(
            v.postcode(), "ZIP"
        ).add(_say(rng, ". ", "\n"))


@family("dates")
def _dates(doc: Doc, v: Values, rng: random.Random) -> None:
    roll = rng.random()
    if roll < 0.3:
        doc.add(
            _say(
                rng,
                "Admitted ",
                "adm ",
                "Seen ",
                "Last seen ",
                "d/c ",
                "Discharged ",
                "Surgery on ",
                "CT done ",
            )
        ).phi(v.date(), "DATE").add(_say(rng, ". ", ", ", " "))
    elif roll < 0.55:
        doc.add(_say(rng, "A1c ", "Hgb ", "Cr ", "wt ")).add(
            f"{rng.randrange(5, 12)}.{rng.randrange(10)}"
        ).add(_say(rng, " down from ", ", was ", " (prev ")).add(
            f"{rng.randrange(5, 12)}.{rng.randrange(10)}"
        ).add(" in ").phi(v.date(), "DATE").add(_say(rng, ". ", ") "))
    elif roll < 0.8:
        doc.add(_say(rng, "f/u ", "Follow up ", "RTC ", "next appt ", "clinic visit ")).phi(
            v.date(), "DATE"
        ).add(_say(rng, " at ", " @ ", " ")).add(
            f"{rng.randrange(7, 17)}:{rng.choice(['00', '15', '30', '45'])}"
        ).add(". ")
    else:
        doc.add(_say(rng, "on the ", "since the ")).phi(
            f"{rng.randrange(1, 29)}{_ordinal(rng.randrange(1, 29))}", "DATE"
        ).add(
            _say(rng, " she stopped eating", " pain worse", " he has been more confused", "")
        ).add(". ")


@family("workplace")
def _workplace(doc: Doc, v: Values, rng: random.Random) -> None:
    roll = rng.random()
    if roll < 0.5:
        doc.add(
            _say(rng, "Works as a ", "works as ", "Occupation: ", "retired ", "former ", "Job: ")
        ).phi(v.profession(), "PROFESSION")
        if rng.random() < 0.5:
            doc.add(_say(rng, " at ", " for ", ", ")).phi(v.organization(), "ORGANIZATION")
        doc.add(". ")
    else:
        doc.add(
            _say(
                rng,
                "Transferred to ",
                "Records requested from ",
                "Seen at ",
                "Referred by ",
                "Dialysis at ",
            )
        ).phi(v.organization(), "ORGANIZATION").add(_say(rng, ". ", " for further care. ", "\n"))


@family("room")
def _room(doc: Doc, v: Values, rng: random.Random) -> None:
    doc.add(_say(rng, "Moved to ", "Pt in ", "transfer to ", "now in ", "")).put(v.room()).add(
        _say(rng, " on ", ", ", " ")
    ).add(rng.choice(["4 West", "MICU", "the step-down unit", "ward 7", "SICU", "tele"])).add(". ")


@family("photo")
def _photo(doc: Doc, v: Values, rng: random.Random) -> None:
    doc.add(_say(rng, "Wound photo ", "Photo uploaded: ", "see image ", "attached ")).phi(
        v.filename(), "OTHER"
    ).add(". ")


@family("age_old")
def _age_old(doc: Doc, v: Values, rng: random.Random) -> None:
    doc.add(_say(rng, "", "Pt is a ", "This ", "Very frail ")).put(v.age()).add(
        _say(rng, "with dementia. ", "from NH. ", "admitted after fall. ", "DNR. ")
    )


@family("eponym_as_name")
def _eponym_as_name(doc: Doc, v: Values, rng: random.Random) -> None:
    """Surnames that are also eponyms, as people: context decides."""
    surname = rng.choice(
        [
            "Murphy",
            "Parkinson",
            "Thompson",
            "Allen",
            "Wilson",
            "Bell",
            "Graves",
            "Barrett",
            "Foley",
            "Turner",
            "Jones",
            "Bishop",
            "Hunt",
            "Paget",
            "Addison",
            "Cushing",
        ]
    )
    doc.add(_say(rng, "Mr. ", "Mrs. ", "Ms. ", "Dr. ", "pt ", "Patient ")).phi(surname, "NAME").add(
        _say(
            rng,
            " seen today. ",
            " states pain improved. ",
            " (attending) aware. ",
            " called back. ",
        )
    )


@family("letter")
def _letter(doc: Doc, v: Values, rng: random.Random) -> None:
    doc.add(_say(rng, "Dear Dr ", "Dear Dr. ", "Dear ", "Dear colleague,\nRe: ")).put(
        v.person() if rng.random() < 0.5 else [(v.last(), "NAME")]
    )
    doc.add(_say(rng, ",\n", "\n", ", ")).add(
        _say(rng, "Thank you for referring ", "I saw your patient ", "Re: ")
    ).put(v.person())
    doc.add(_say(rng, ", DOB ", " (dob ", ", born ")).phi(v.date(), "DATE").add(
        _say(rng, ", ", ") ", ". ")
    ).add(_say(rng, "in clinic today.\n", "for review.\n", "\n"))


FAMILY_ORDER = tuple(FAMILIES)
# Sentence families never seen in training: a letter's salutation, a photo file name, a
# companion named with no cue word, and an old patient's age, each in all their forms.
HELDOUT_FAMILIES = ("letter", "photo", "age_old", "workplace")
TRAIN_KINDS = tuple(k for k in KINDS if k not in HELDOUT_KINDS)
TRAIN_FAMILIES = tuple(f for f in FAMILY_ORDER if f not in HELDOUT_FAMILIES)

KIND_HEADERS: dict[str, tuple[str, ...]] = {
    "email": ("Subject: your booking", "From: customer support", "Re: delivery address", "Hi,"),
    "chat": ("[chat transcript]", "Agent: Hello, how can I help?", "Live chat", "Support chat"),
    "form": ("SHIPPING FORM", "Account application", "Registration", "Change of address form"),
    "nursing": ("NURSING NOTE", "Nursing shift note", "RN note - nights", "0700-1900 shift"),
    "ed": ("ED Provider Note", "ED triage", "EMERGENCY DEPT NOTE", "ED course"),
    "icu": ("MICU Progress Note", "ICU PN", "CCU daily note", "SICU progress"),
    "discharge": ("DISCHARGE SUMMARY", "Discharge Summary", "D/C summary"),
    "radiology": ("EXAM: CXR PA/LAT", "CT HEAD W/O CONTRAST", "XR CHEST 1 VIEW", "US RUQ"),
    "referral": ("Referral letter", "Outpatient clinic letter", "Cardiology clinic"),
    "phone": ("Telephone encounter", "Phone call", "TC note", "Phone f/u"),
    "pharmacy": ("Pharmacy note", "PharmD consult", "Med rec"),
    "physio": ("PT evaluation", "Physiotherapy note", "OT/PT treatment note"),
    "social_work": ("Social Work Assessment", "SW note", "Case management"),
    "portal": ("MyChart message", "Patient portal message", "Message from patient"),
    "ocr_intake": (
        "PATIENT INTAKE FORM (scanned)",
        "REGISTRATION FORM",
        "New patient questionnaire",
    ),
}
KIND_FAMILIES: dict[str, tuple[str, ...]] = {
    "email": ("letter", "contact", "home", "identifiers", "dates", "workplace", "companion"),
    "chat": ("contact", "identifiers", "home", "dates", "companion", "patient_intro"),
    "form": ("patient_intro", "home", "contact", "identifiers", "workplace", "dates"),
    "nursing": ("patient_intro", "companion", "staff", "dates", "room", "contact", "age_old"),
    "ed": ("patient_intro", "companion", "staff", "identifiers", "home", "dates", "age_old"),
    "icu": (
        "patient_intro",
        "staff",
        "companion",
        "dates",
        "room",
        "identifiers",
        "eponym_as_name",
    ),
    "discharge": ("patient_intro", "staff", "dates", "home", "identifiers", "workplace", "contact"),
    "radiology": ("identifiers", "dates", "staff", "patient_intro"),
    "referral": ("letter", "patient_intro", "staff", "contact", "home", "dates", "identifiers"),
    "phone": ("companion", "contact", "staff", "dates", "patient_intro"),
    "pharmacy": ("patient_intro", "staff", "identifiers", "contact", "dates"),
    "physio": ("patient_intro", "companion", "home", "workplace", "dates", "staff"),
    "social_work": (
        "companion",
        "home",
        "workplace",
        "contact",
        "identifiers",
        "patient_intro",
        "age_old",
    ),
    "portal": ("letter", "contact", "companion", "dates", "staff"),
    "ocr_intake": (
        "patient_intro",
        "identifiers",
        "home",
        "contact",
        "workplace",
        "photo",
        "staff",
    ),
}


def note(
    rng: random.Random,
    *,
    kinds: tuple[str, ...],
    locales: tuple[str, ...],
    families: tuple[str, ...],
) -> Note:
    """One synthetic note of one of ``kinds``, with PHI from ``locales`` written by
    sentence families among ``families``."""
    kind = rng.choice(kinds)
    values = Values(rng, locales)
    doc = Doc()
    doc.add(rng.choice(KIND_HEADERS[kind])).add(_say(rng, "\n", "  ", " - ", "\n\n"))
    allowed = [f for f in KIND_FAMILIES[kind] if f in families] or list(families)
    used = []
    for _ in range(rng.randrange(3, 10)):
        if rng.random() < 0.45:
            doc.add(_clinical(rng, kind)).add(_say(rng, ". ", "\n", ". ", "; ", " "))
            if rng.random() < 0.25:
                doc.add(rng.choice(HEADERS)).add(_say(rng, " ", "\n"))
            continue
        name = rng.choice(allowed)
        FAMILIES[name](doc, values, rng)
        used.append(name)
    if not doc.spans and allowed:  # every note holds at least one identifier
        name = rng.choice(allowed)
        FAMILIES[name](doc, values, rng)
        used.append(name)
    text, spans = _style(doc.text, doc.spans, rng, kind)
    return Note(text, spans, kind, sorted(set(used)), sorted(set(values.used)))


def _style(
    text: str, spans: list[tuple[int, int, str]], rng: random.Random, kind: str
) -> tuple[str, list[tuple[int, int, str]]]:
    """Restyle without moving offsets: lowercase, capitals, typos outside PHI."""
    roll = rng.random()
    if roll < 0.15:
        text = _same_length(text, str.lower)
    elif roll < 0.2 or (kind in ("radiology", "ocr_intake") and roll < 0.4):
        text = _same_length(text, str.upper)
    if rng.random() < 0.3:
        inside = bytearray(len(text))
        for start, end, _ in spans:
            inside[start:end] = b"\x01" * (end - start)
        chars = list(text)
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(0, max(1, len(chars) - 1))
            if (
                not inside[i]
                and not inside[i + 1]
                and chars[i].isalpha()
                and chars[i + 1].isalpha()
            ):
                chars[i], chars[i + 1] = chars[i + 1], chars[i]
        text = "".join(chars)
    if kind == "ocr_intake" and rng.random() < 0.5:
        text, spans = _widen_gaps(text, spans)
    return text, spans


def _same_length(text: str, case: Callable[[str], str]) -> str:
    """Change case letter by letter, leaving a letter whose other case is longer
    ("İ".lower(), "ß".upper()) as it is, so the spans' offsets still hold."""
    return "".join(c if len(case(c)) != 1 else case(c) for c in text)


def _widen_gaps(
    text: str, spans: list[tuple[int, int, str]]
) -> tuple[str, list[tuple[int, int, str]]]:
    """OCR spacing: one space after ``:`` or ``.`` becomes three, spans moved with it.
    A gap inside a span ("S. Tungkasethakul") widens too, and the span grows."""
    gaps = [m.start() for m in re.finditer(r"(?<=[:.]) ", text)]

    def moved(offset: int) -> int:
        return offset + 2 * bisect.bisect_left(gaps, offset)

    widened = re.sub(r"(?<=[:.]) ", "   ", text)
    return widened, [(moved(start), moved(end - 1) + 1, kind) for start, end, kind in spans]


def notes(
    count: int,
    seed: int,
    *,
    kinds: tuple[str, ...] | None = None,
    locales: tuple[str, ...] = TRAIN_LOCALES,
    families: tuple[str, ...] | None = None,
) -> list[Note]:
    """``count`` notes, reproducibly from ``seed``. The defaults are the training
    distribution: no held-out kind, locale or family."""
    rng = random.Random(seed)
    kinds = kinds or TRAIN_KINDS
    families = families or TRAIN_FAMILIES
    return [note(rng, kinds=kinds, locales=locales, families=families) for _ in range(count)]


def heldout_sets(count: int, seed: int) -> dict[str, list[Note]]:
    """The three held-out-by-construction sets, each differing from training in one way."""
    train_kinds, train_families = TRAIN_KINDS, TRAIN_FAMILIES
    return {
        "heldout_kinds": notes(count, seed, kinds=HELDOUT_KINDS, families=train_families),
        "heldout_locales": notes(
            count, seed + 1, kinds=train_kinds, locales=HELDOUT_LOCALES, families=train_families
        ),
        "heldout_families": notes(count, seed + 2, kinds=tuple(KINDS), families=HELDOUT_FAMILIES),
    }
