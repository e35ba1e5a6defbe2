"""Build the annotated de-identification corpus: notes from the templates, filled with
Faker values in many formats, with gold PHI spans.

    .venv/bin/python bench/deid/corpus.py          # writes bench/deid/corpus/*.jsonl

Seeded, so the committed corpus is reproducible. 30% of names come from non-US locales
(Spanish, Italian, German, French, Portuguese, Polish, Dutch, Indian), which no US
census dictionary holds, so recall on them measures context rules, not lookups.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

from faker import Faker

sys.path.insert(0, str(Path(__file__).parent))
from templates import HELD_OUT, MAIN

OUT = Path(__file__).parent / "corpus"
SEED = 20261128
LOCALES = ["es_ES", "it_IT", "de_DE", "fr_FR", "pt_BR", "pl_PL", "nl_NL", "en_IN"]
DATE_FORMATS = [
    "%m/%d/%Y",
    "%m/%d/%y",
    "%Y-%m-%d",
    "%B %d, %Y",
    "%b %d, %Y",
    "%d %b %Y",
    "%d %B %Y",
    "%m-%d-%Y",
    "{b} {d}",
    "{m}/{d}",
    "%B %Y",
    "%b. %d, %Y",
    "%Y%m%d",
    "{d}{ord} of %B",
]
TYPE_OF_SLOT = {
    "NAME_FULL": "NAME",
    "NAME_FIRST": "NAME",
    "NAME_LAST": "NAME",
    "DR_FULL": "NAME",
    "DR_LAST": "NAME",
    "RELATIVE": "NAME",
    "RELATIVE_FULL": "NAME",
    "DATE": "DATE",
    "AGE90": "AGE",
    "MRN": "MRN",
    "PHONE": "PHONE",
    "FAX": "FAX",
    "EMAIL": "EMAIL",
    "SSN": "SSN",
    "ACCOUNT": "ID",
    "PLAN": "ID",
    "LICENSE": "ID",
    "DEVICE": "ID",
    "SERIAL": "ID",
    "STREET": "ADDRESS",
    "CITY": "LOCATION",
    "ZIP": "ZIP",
    "URL": "URL",
    "IP": "IP",
    "HOSPITAL": "ORGANIZATION",
}
SLOT = re.compile(r"\{([A-Z0-9_]+)\}")


class Filler:
    """Slot values for one note: the patient's name stays the same throughout."""

    def __init__(self, rng: random.Random, fakers: dict[str, Faker]) -> None:
        self.rng = rng
        self.us = fakers["en_US"]
        locale = "en_US" if rng.random() < 0.7 else rng.choice(LOCALES)
        self.names = fakers[locale]
        self.first, self.last = self.names.first_name(), self.names.last_name()

    def person(self) -> tuple[str, str]:
        faker = self.us if self.rng.random() < 0.7 else self.names
        return faker.first_name(), faker.last_name()

    def date(self) -> str:
        day = self.us.date_between(start_date="-30y", end_date="+1y")
        fmt = self.rng.choice(DATE_FORMATS)
        ordinal = {1: "st", 2: "nd", 3: "rd"}.get(
            day.day % 10 if day.day not in (11, 12, 13) else 0, "th"
        )
        fmt = (
            fmt.replace("{b}", day.strftime("%b"))
            .replace("{d}", str(day.day))
            .replace("{m}", str(day.month))
            .replace("{ord}", ordinal)
        )
        return day.strftime(fmt)

    def value(self, slot: str) -> str:
        rng, us = self.rng, self.us
        digits = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
        letters = lambda n: "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(n))  # noqa: E731
        match slot:
            case "NAME_FULL":
                return f"{self.first} {self.last}"
            case "NAME_FIRST":
                return self.first
            case "NAME_LAST":
                return self.last
            case "DR_FULL" | "RELATIVE_FULL":
                return " ".join(self.person())
            case "DR_LAST":
                return self.person()[1]
            case "RELATIVE":
                return self.person()[0]
            case "DATE":
                return self.date()
            case "AGE90":
                return str(rng.randint(90, 104))
            case "AGE_X":
                return str(rng.randint(19, 88))
            case "MRN":
                return rng.choice(
                    [
                        digits(8),
                        "0" + digits(7),
                        letters(1) + digits(7),
                        f"{digits(2)}-{digits(3)}-{digits(3)}",
                    ]
                )
            case "PHONE" | "FAX":
                return us.phone_number()
            case "EMAIL":
                return us.email()
            case "SSN":
                return us.ssn()
            case "ACCOUNT":
                return rng.choice([digits(10), f"ACC-{digits(7)}", f"{letters(2)}{digits(8)}"])
            case "PLAN":
                return f"{letters(3)}{digits(9)}"
            case "LICENSE":
                return f"{letters(1)}{digits(7)}"
            case "DEVICE":
                return f"DEV-{us.hexify('^^^^^^').upper()}"
            case "SERIAL":
                return rng.choice(
                    [
                        f"SN{digits(8)}",
                        f"{letters(2)}-{digits(5)}-{letters(1)}",
                        f"{digits(4)}{letters(2)}{digits(4)}",
                    ]
                )
            case "STREET":
                return us.street_address()
            case "CITY":
                return us.city()
            case "STATE_X":
                return us.state_abbr()
            case "ZIP":
                return rng.choice([us.zipcode(), us.zipcode_plus4()])
            case "URL":
                return us.url() + rng.choice(["", "patient/" + digits(6), "portal"])
            case "IP":
                return us.ipv4()
            case "HOSPITAL":
                suffix = rng.choice(
                    [
                        "General Hospital",
                        "Medical Center",
                        "Memorial Hospital",
                        "Regional Medical Center",
                        "Clinic",
                        "Community Hospital",
                    ]
                )
                return rng.choice(
                    [
                        f"{us.last_name()} {suffix}",
                        f"St. {us.first_name()} {suffix}",
                        f"{us.city()} {suffix}",
                    ]
                )
        raise KeyError(slot)


def fill(template: str, filler: Filler) -> tuple[str, list[dict[str, object]]]:
    out, spans, cursor = [], [], 0
    for match in SLOT.finditer(template):
        out.append(template[cursor : match.start()])
        start = sum(len(p) for p in out)
        value = filler.value(match.group(1))
        out.append(value)
        phi_type = TYPE_OF_SLOT.get(match.group(1))
        if phi_type:
            spans.append({"start": start, "end": start + len(value), "type": phi_type})
        cursor = match.end()
    out.append(template[cursor:])
    return "".join(out), spans


def build(
    templates: dict[str, list[str]],
    count: int,
    rng: random.Random,
    fakers: dict[str, Faker],
    prefix: str,
) -> list[dict[str, object]]:
    flat = [(style, i, t) for style, items in templates.items() for i, t in enumerate(items)]
    notes = []
    for n in range(count):
        style, index, template = flat[n % len(flat)]
        text, spans = fill(template, Filler(rng, fakers))
        notes.append(
            {
                "id": f"{prefix}-{n:05d}",
                "style": style,
                "template": f"{style}-{index}",
                "text": text,
                "spans": spans,
            }
        )
    return notes


def main() -> None:
    rng = random.Random(SEED)
    fakers = {locale: Faker(locale) for locale in ["en_US", *LOCALES]}
    for i, faker in enumerate(fakers.values()):
        faker.seed_instance(SEED + i)
    OUT.mkdir(exist_ok=True)
    for name, templates, count in (("notes", MAIN, 1024), ("held_out", HELD_OUT, 240)):
        notes = build(templates, count, rng, fakers, name)
        with (OUT / f"{name}.jsonl").open("w") as handle:
            for note in notes:
                handle.write(json.dumps(note, ensure_ascii=False) + "\n")
        print(
            f"{name}: {len(notes)} notes from {sum(len(v) for v in templates.values())} templates, "
            f"{sum(len(n['spans']) for n in notes)} PHI spans"
        )


if __name__ == "__main__":
    main()
