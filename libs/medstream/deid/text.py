"""Free-text PHI detection: patterns with checks, dictionaries and context rules.

Recall comes first: where a rule is unsure, it redacts. The detector is pure Python
with precompiled patterns, so the CLI, the deid service and ``bench/deid`` call the same
code and it runs at many times the speed of an NER pipeline.

Layers, in order:
1. patterns with validity checks: e-mail, URL, IP, SSN, phone and fax, every common date
   form, ages over 89, street addresses, ZIP codes, record and other id numbers;
2. context rules: words such as "MRN", "account", "licence", "fax", "Dr.", "MD",
   "Dear", "lives in" that make the next or previous token PHI;
3. dictionaries: US Census first names and surnames and US city names, minus those that
   are also common English words unless context supports them;
4. known values: identifiers that the record's structured fields already hold (the
   patient's name, MRN, phone…) are found wherever they recur in its text.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


class PhiType(StrEnum):
    """Safe Harbor categories as they occur in clinical text."""

    NAME = "NAME"
    DATE = "DATE"
    AGE = "AGE"
    PHONE = "PHONE"
    FAX = "FAX"
    EMAIL = "EMAIL"
    SSN = "SSN"
    MRN = "MRN"
    ID = "ID"  # account, plan, licence, device, serial and other numbers
    ADDRESS = "ADDRESS"
    LOCATION = "LOCATION"
    ZIP = "ZIP"
    URL = "URL"
    IP = "IP"
    ORGANIZATION = "ORGANIZATION"
    PROFESSION = "PROFESSION"  # i2b2's category: a rare job re-identifies in a small place
    OTHER = "OTHER"  # anything else identifying: a photo's file name


@dataclass(frozen=True)
class Span:
    """A PHI occurrence: ``text[start:end]`` is of ``type``; ``source`` names the
    detectors that found it (pattern, model, known, joined by +)."""

    start: int
    end: int
    type: PhiType
    source: str = "pattern"
    confidence: float = 1.0


# Higher wins when spans overlap, then the longer span.
PRIORITY = {
    PhiType.EMAIL: 9,
    PhiType.URL: 9,
    PhiType.IP: 9,
    PhiType.SSN: 8,
    PhiType.FAX: 8,
    PhiType.PHONE: 7,
    PhiType.DATE: 7,
    PhiType.MRN: 7,
    PhiType.ID: 6,
    PhiType.ADDRESS: 6,
    PhiType.ZIP: 6,
    PhiType.AGE: 6,
    PhiType.ORGANIZATION: 5,
    PhiType.OTHER: 5,
    PhiType.LOCATION: 4,
    PhiType.PROFESSION: 4,
    PhiType.NAME: 3,
}
# What patterns find reliably because it has a grammar; the ensemble leaves names,
# places and organisations to the learned tagger.
GRAMMAR_TYPES = frozenset(
    {
        PhiType.EMAIL,
        PhiType.URL,
        PhiType.IP,
        PhiType.SSN,
        PhiType.FAX,
        PhiType.PHONE,
        PhiType.DATE,
        PhiType.AGE,
        PhiType.MRN,
        PhiType.ID,
        PhiType.ZIP,
        PhiType.ADDRESS,
    }
)

_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
# Month names in the languages notes arrive in (German, French, Spanish, Italian, Dutch,
# Portuguese, Catalan, the Scandinavian languages, Polish, Czech, Romanian, Hungarian,
# Finnish and Turkish; Polish and Czech in their nominative and genitive forms), in any
# case; a date only with a day before or a year after ("mars", "mai" and "maja" alone
# are words).
FOREIGN_MONTH_NAMES = (  # noqa: SIM905  (a list literal would be 170 lines)
    "januar jänner februar märz mai juni juli august oktober dezember "
    "janvier février fevrier mars avril juin juillet août aout septembre octobre novembre "
    "décembre decembre enero febrero marzo abril mayo junio julio agosto septiembre "
    "setiembre octubre noviembre diciembre gennaio febbraio aprile maggio giugno luglio "
    "settembre ottobre dicembre januari februari maart mei augustus janeiro fevereiro março "
    "maio junho julho setembro outubro novembro dezembro gener febrer març maig juny juliol "
    "agost setembre desembre marts augusti desember "
    "stycznia lutego marca kwietnia maja czerwca lipca sierpnia września października "
    "listopada grudnia styczeń luty marzec kwiecień maj czerwiec lipiec sierpień wrzesień "
    "październik listopad grudzień ledna února března dubna května června července srpna "
    "září října listopadu prosince leden únor březen duben květen červen červenec srpen "
    "říjen prosinec ianuarie februarie martie aprilie iunie iulie septembrie octombrie "
    "noiembrie decembrie január február március április május június július augusztus "
    "szeptember október tammikuuta helmikuuta maaliskuuta huhtikuuta toukokuuta kesäkuuta "
    "heinäkuuta elokuuta syyskuuta lokakuuta marraskuuta joulukuuta ocak şubat mart nisan "
    "mayıs haziran temmuz ağustos eylül ekim kasım aralık"  # noqa: RUF001  (Turkish dotless i)
).split()
_FOREIGN_MONTHS = (
    "(?i:"
    + "|".join(sorted({re.escape(m) for m in FOREIGN_MONTH_NAMES}, key=len, reverse=True))
    + ")"
)
_YEAR = r"(?:1[89]\d\d|20\d\d)"
# The United Kingdom's two-letter postcode areas.
_UK_AREAS = (
    "AB|AL|BA|BB|BD|BH|BL|BN|BR|BS|BT|CA|CB|CF|CH|CM|CO|CR|CT|CV|CW|DA|DD|DE|DG|DH|DL|DN|"
    "DT|DY|EC|EH|EN|EX|FK|FY|GL|GU|HA|HD|HG|HP|HR|HS|HU|HX|IG|IP|IV|KA|KT|KW|KY|LA|LD|LE|"
    "LL|LN|LS|LU|ME|MK|ML|NE|NG|NN|NP|NR|NW|OL|OX|PA|PE|PH|PL|PO|PR|RG|RH|RM|SA|SE|SG|SK|"
    "SL|SM|SN|SO|SP|SR|SS|ST|SW|SY|TA|TD|TF|TN|TQ|TR|TS|TW|UB|WA|WC|WD|WF|WN|WR|WS|WV|YO|ZE"
)
# What names four digits as an SSN's last: "SSN ending in", "last 4 of my social:".
_SSN_NAME = r"(?:ssn|ss#|soc(?:ial)?\.?(?: sec(?:urity)?\.?)?(?: (?:number|no\.?|#))?)"
_SSN_LAST_FOUR = (
    rf"(?i:\b{_SSN_NAME}\s*(?:ending|ends|that ends)\s+(?:in|with)\s*[:#]?\s*"
    rf"|\blast\s+(?:4|four)(?:\s+digits)?\s+of\s+(?:the\s+|my\s+|her\s+|his\s+|their\s+)?"
    rf"{_SSN_NAME}\s*(?:is|are|was|[:#=-])?\s*)"
)
_SSN_LAST_FOUR_BEFORE = re.compile(rf"{_SSN_LAST_FOUR}$")
_STREET_SUFFIXES = (
    "street|st|avenue|ave|av|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|"
    "terrace|ter|circle|cir|parkway|pkwy|highway|hwy|square|sq|trail|trl|crossing|xing|"
    "ridge|rdg|heights|hts|hill|hills|park|plaza|plz|point|pt|pike|row|run|path|walk|loop|"
    "alley|aly|bend|bypass|byp|cove|cv|creek|crk|crest|estates|est|expressway|expy|"
    "extension|ext|falls|fls|ferry|field|fields|flat|flats|ford|forest|forge|fork|forks|"
    "fort|freeway|fwy|garden|gardens|gateway|glen|green|grove|harbor|haven|island|isle|"
    "junction|key|knoll|lake|lakes|landing|light|lock|lodge|manor|meadow|meadows|mill|"
    "mills|mission|mount|mountain|neck|orchard|oval|pass|pine|pines|port|prairie|ranch|"
    "rapids|rest|river|shoal|shoals|shore|shores|spring|springs|spur|station|stravenue|"
    "stream|summit|throughway|trace|track|tunnel|turnpike|union|valley|via|view|views|"
    "village|ville|vista|wall|well|wells|wharf|branch|bridge|brook|burg|camp|canyon|cape|"
    "causeway|center|club|common|corner|course|crescent|crossroad|curve|dale|dam|divide|"
    "inlet|land|loaf|mall|mews|motorway|overpass|passage|plain|radial|ramp|route|rue|"
    "skyway|trafficway|underpass|viaduct|glens|greens|groves|harbors|keys|knolls|locks|"
    "manors|mountains|parks|parkways|plains|points|ports|ridges|roads|spurs|squares|streets|"
    "unions|valleys|villages|walks|ways|cliff|cliffs|coves|drives|forges|lights|centers|"
    "circles|corners|crossings|courts|estates|extensions|fords|gardens|heights|islands|fall|rapid|burgs|"
    "junctions|lakes|meadows|mills|pines|rapids|shoals|shores|springs|views|close|gate|rise|"
    "chase|wynd|vale|parade|esplanade|quay|embankment|grange|croft|brae|circus|mead|fold|"
    "garth|yard"
)
_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|"
    "NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR|GU|VI|AS|MP|AA|AE|AP"
)
# US states, Canadian provinces and Australian states, as an address writes them.
# Each with the postcode that follows it in an address: a US ZIP, a Canadian postcode, an
# Australian four digits ("Miami, FL 33127", "Ottawa ON K2A 1E1", "Toowoomba QLD 4350").
_PROVINCES = "AB|BC|MB|NB|NL|NS|NU|ON|PE|QC|SK|YT"
# Australia's states; SA, WA and NT are also other words, so a place alone before them
# says too little (they count only before a postcode).
_AU_STATES_LONG = "NSW|VIC|QLD|TAS|ACT"
_AU_STATES = f"{_AU_STATES_LONG}|SA|WA|NT"
_REGION_POSTCODE = (
    rf"(?:{_STATES})(?=,?[ \t]+\d{{5}}(?:-\d{{4}})?\b)"
    rf"|(?:{_PROVINCES})(?=,?[ \t]+[A-Z]\d[A-Z][ -]?\d[A-Z]\d\b)"
    rf"|(?:{_AU_STATES})(?=,?[ \t]+\d{{4}}\b)"
)
_REGION = re.compile(_REGION_POSTCODE)
# Swiss cantons, as addresses write them after a town: "Küsnacht ZH", "Orbe (VD)".
_CANTONS = "ZH|BE|LU|UR|SZ|OW|NW|GL|ZG|FR|SO|BS|BL|SH|AR|AI|SG|GR|AG|TG|TI|VD|VS|NE|GE|JU"
REGION_CODES = frozenset(f"{_STATES}|{_PROVINCES}|{_AU_STATES}|{_CANTONS}".split("|"))
_STATE_NAMES = (
    "Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|"
    "Georgia|Hawaii|Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|"
    "Massachusetts|Michigan|Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|"
    "New Hampshire|New Jersey|New Mexico|New York|North Carolina|North Dakota|Ohio|Oklahoma|"
    "Oregon|Pennsylvania|Rhode Island|South Carolina|South Dakota|Tennessee|Texas|Utah|"
    "Vermont|Virginia|Washington|West Virginia|Wisconsin|Wyoming"
)
_UPPER = "A-ZÀ-ÖØ-Þ"
_LOWER = "a-zß-öø-ÿ"
_REGION_IN_ADDRESS = re.compile(rf"\b[{_UPPER}][\w.'-]*[ \t]*,?[ \t]+({_REGION_POSTCODE})")
_CAP = rf"[{_UPPER}][{_LOWER}{_UPPER}'\-]+"
_TITLES = (
    r"(?:Dr|Drs|Mr|Mrs|Ms|Miss|Mx|Prof|Sr|Sister|Nurse|Rev|Fr|Capt|Sgt|Hon|Judge|Attorney|"
    r"Doctor|Professor|Mister|Madam|Dame|Sir)\.?"
)
_CREDENTIALS = (
    r"(?:MD|M\.D\.|DO|D\.O\.|RN|R\.N\.|NP|PA|PA-C|PhD|MBBS|FRCR|FACP|FACC|APRN|CNP|CRNA|LPN|"
    r"DNP|PharmD|DDS|DMD|MSW|LCSW|PT|DPT|OT|RT|RRT|CNA|MPH|FACS|FRCS)\b"
)
_ORG_WORDS = (
    r"(?:Hospital|Hospitals|Medical Center|Medical Centre|Health Center|Health System|"
    r"Healthcare|Health Care|Clinic|Clinics|Infirmary|Institute|University|College|"
    r"Sanatorium|Hospice|Nursing Home|Rehabilitation Center|Rehab Center|Care Center|"
    r"Surgery Center|Cancer Center|Children's|Memorial|Medical Group|Associates|Pharmacy|"
    r"Laboratories|Laboratory|Labs|Foundation|Inc|LLC|Ltd|Corporation|Corp|Company|Group|"
    # health plans, trusts and care homes as British, Irish, Canadian and Australian
    # writers name them, and the employers, schools and banks a general text names
    r"Health Plan|Health Team|Health Services?|Health Authority|Health Board|Health Centre|"
    r"Foundation Trust|Trust|Care Home|Residential Home|Retirement Village|Assisted Living|"
    r"Dental Practice|Dental Clinic|Medical Practice|Chemists?|Insurance|Assurance|"
    r"Credit Union|Bank|Building Society|School|Academy|Church|Parish|Mosque|Synagogue|"
    r"Council|Housing Association|Charity|Society|PLC|Pty Ltd|GmbH|"
    # services named by their trade: labs and imaging practices, home care, couriers,
    # carriers and shops ("Vasan Diagnostics", "Ikageng Home Care", "Ekart Logistics")
    r"Diagnostics|Imaging|Pathology Services|Pathology|Radiology|Home Care|Homecare|"
    r"Logistics|Couriers?|Freight|Airways|Airlines|Fibre|Broadband|Telecom|Stores|"
    r"Supermarkets?|Ambulance Service|Medical Aid)"
)


def _words(name: str) -> frozenset[str]:
    return frozenset((DATA / name).read_text().split("\n")) - {""}


@lru_cache(maxsize=1)
def dictionaries() -> tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str]]:
    """(first names, surnames, US cities, names that are also common English words)."""
    return (
        _words("first_names.txt"),
        _words("last_names.txt"),
        _words("us_cities.txt"),
        _words("common_words_in_names.txt") | _words("not_names.txt"),
    )


@lru_cache(maxsize=1)
def world_places() -> frozenset[str]:
    """GeoNames' places of 1,000 people or more, lower-cased, English words left out
    (``data/world_places.txt.gz``; its notice beside it)."""
    with gzip.open(DATA / "world_places.txt.gz", "rt", encoding="utf-8") as handle:
        return frozenset(handle.read().split("\n")) - {""}


def _rx(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


_PATTERNS: list[tuple[PhiType, re.Pattern[str], int]] = [
    (PhiType.EMAIL, _rx(r"\b[\w.+%-]+@[\w-]+(?:\.[\w-]+)+\b"), 0),
    (PhiType.URL, _rx(r"\b(?:https?://|ftp://|www\.)[^\s<>\"')\]]+[^\s<>\"')\].,;:]", re.I), 0),
    (
        PhiType.URL,
        _rx(
            r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|edu|gov|io|info|biz|us|health)\b(?:/[^\s]*)?",
            re.I,
        ),
        0,
    ),
    (PhiType.IP, _rx(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"), 0),
    (PhiType.IP, _rx(r"\b(?:[0-9a-f]{1,4}:){4,7}[0-9a-f]{1,4}\b", re.I), 0),
    (PhiType.SSN, _rx(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b"), 0),
    (
        PhiType.SSN,
        _rx(
            r"(?i:\b(?:SSN|social security(?: number| no\.?| #)?)\s*[:#]?\s*)(\d{9}|\d{3}\W?\d{2}\W?\d{4})\b"
        ),
        1,
    ),
    (
        PhiType.FAX,
        _rx(
            r"(?i:\bfax(?: number| no\.?| #)?\s*[:#]?\s*)((?:\+?1[\s.-]?|001[\s.-])?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?!\d)(?:\s*(?:x|ext\.?)\s*\d{1,6})?)"
        ),
        1,
    ),
    (
        PhiType.PHONE,
        _rx(
            r"(?:\+?1[\s.-]?|\b001[\s.-])?(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}(?!\d)(?:\s*(?:x|ext\.?|extension)\s*\d{1,6})?",
            re.I,
        ),
        0,
    ),
    (PhiType.PHONE, _rx(r"\b\d{10}(?!\d)(?:\s*(?:x|ext\.?)\s*\d{1,6})?"), 0),
    # International numbers: "+33 (0)1 45 67 89 10", "+44 20 7946 0958", "+91 98765 43210".
    (
        PhiType.PHONE,
        _rx(
            r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\(0\))?(?:[\s.-]?\(?\d{1,5}\)?){2,6}(?!\d)"
            r"(?:\s*(?:x|ext\.?|extn|extension)\s*\d{1,6})?",
            re.I,
        ),
        0,
    ),
    # A national number after a phone's cue, in any grouping: "Tel: 020 7946 0958",
    # "mob 07700 900123", "pgr 3302", "ext 2231".
    (
        PhiType.PHONE,
        _rx(
            r"(?i:\b(?:phone|tel|telephone|cell|mobile|mob|office|pager|pgr|beeper|bleep|"
            r"contact|call(?:ed)?|ext|extn|extension|whatsapp|landline)\.?\s*(?:number|no\.?|#)?"
            r"\s*[:#]?\s*)(\(?\d[\d().-]*(?:\s\(?\d[\d().-]*){0,4})"
        ),
        1,
    ),
    # A pager by what was done with it: "paged 3862" (never a count: "paged 3 times").
    (
        PhiType.PHONE,
        _rx(r"(?i:\bpaged\s+(?:(?:on|at)\s+)?)(\d{3,5})\b(?!\s*(?:times|x\b|min|h\b|hours?))"),
        1,
    ),
    # A date on a scanned form, its digits read as letters ("DOB: O7/l4/1983", "Date:
    # 3/l8/24"): only after a date's label, and never shifted (it cannot be parsed).
    (
        PhiType.DATE,
        _rx(
            r"(?i:\b(?:DOB|D\.O\.B\.?|date of birth|date|dated|born)\s*[:#]?\s*)"
            r"((?=[\dOolI/.-]*[OolI])(?=[\dOolI/.-]*\d)[\dOolI]{1,2}([/.-])[\dOolI]{1,2}\2"
            r"(?:[\dOolI]{4}|[\dOolI]{2}))(?![\w/])"
        ),
        1,
    ),
    # An extension after a name or a credential: "LCSW x4471", "PharmD x 5-2210".
    (PhiType.PHONE, _rx(r"(?<![\w.])(?:x|ext\.?)\s?(\d{4,5}|\d-\d{4})\b", re.I), 1),
    # National numbers in groups of digits: Brazil's CPF "123.456.789-09", and others.
    (PhiType.ID, _rx(r"\b(?=(?:[.-]?\d){9,})\d{2,4}(?:[.-]\d{2,4}){2,5}\b"), 0),
    # British number plates: "WX19 KTR".
    (PhiType.ID, _rx(r"\b[A-Z]{2}\d{2}\s?[A-Z]{3}\b"), 0),
    # A day and month written the German way, with a cue: "on 05.03.", "ab 1.5.". After
    # an English cue only zero-padded ("from 1.3." is a lab value's last reading).
    (
        PhiType.DATE,
        _rx(
            r"(?i:\b(?:am|ab|bis|seit|vom|zum|le|du|au)[ \t]+)"
            r"((?:0?[1-9]|[12]\d|3[01])\.(?:0?[1-9]|1[0-2])\.)(?!\d)"
        ),
        1,
    ),
    (
        PhiType.DATE,
        _rx(
            r"(?i:\b(?:on|from|since|until|till|by)[ \t]+)"
            r"((?:0[1-9]|[12]\d|3[01])\.(?:0[1-9]|1[0-2])\.)(?!\d)"
        ),
        1,
    ),
    # Dates with spaces around their separators, as forms are filled: "23 / 04 / 1975".
    (PhiType.DATE, _rx(r"\b\d{1,2}\s?[/.-]\s?\d{1,2}\s?[/.-]\s?(?:19|20)\d\d\b"), 0),
    # A state or province between a place and its postcode, as addresses are written:
    # "Miami, FL 33127", "Ottawa ON  K2A 1E1", "Toowoomba QLD 4350". (Safe Harbor lets a
    # state stand; in an address line it is tagged with the rest.)
    (PhiType.LOCATION, _REGION_IN_ADDRESS, 1),
    # Australian postcodes after a state: "Bondi NSW 2026".
    (PhiType.ZIP, _rx(rf"\b(?:{_AU_STATES})\s+(\d{{4}})\b"), 1),
    # Masked numbers: "xxx-xx-9921", "XXXX XXXX 4821", "**** **** **** 1234".
    (PhiType.SSN, _rx(r"(?<![\w*])[Xx*#]{3}-[Xx*#]{2}-\d{4}\b"), 0),
    # An SSN's last four, named as such: "SSN ending in 4417", "last 4 of SSN: 4417".
    (PhiType.SSN, _rx(rf"{_SSN_LAST_FOUR}(\d{{4}})\b"), 1),
    # A UK National Insurance number, grouped or not, any prefix (HMRC's own example,
    # "QQ 12 34 56 C", is no issued one): a number to redact all the same.
    (
        PhiType.ID,
        _rx(r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
        0,
    ),
    # An Australian Medicare card with its position on the card: "2123 45670 1".
    (
        PhiType.ID,
        _rx(
            r"(?i:\bmedicare(?: card| no\.?| number| #)?\s*[:#]?\s*)(\d{4} ?\d{5} ?\d(?: ?/ ?\d)?)\b"
        ),
        1,
    ),
    # Post boxes and private bags, in several languages: "Private Bag X2291", "PO Box
    # 4471", "Postfach 1120", "Apartado 215".
    (
        PhiType.ADDRESS,
        _rx(
            r"\b(?:Private Bag|Locked Bag|P\.?[ \t]?O\.?[ \t]?Box|Postfach|Postbus|"
            r"Apartado(?: de Correos)?|Caixa Postal|Casilla(?: de Correo)?|Bo[iî]te postale)"
            r"[ \t]+[A-Z]?\d{1,6}\b"
        ),
        0,
    ),
    # A Japanese postcode after its mark ("〒153-0063").
    (PhiType.ZIP, _rx(r"\u3012[ \t]?(\d{3}-?\d{4})\b"), 1),
    # A national telephone number written with its trunk zero and grouped ("029 2018
    # 0566", "0709 555 112", "011 555 0143"): nine to eleven digits.
    (
        PhiType.PHONE,
        _rx(r"(?<![\w.,/+-])(0\d{1,4}(?:[ -]\d{2,4}){1,3})(?![\w,/-]|\.\d|[ -]\d)"),
        1,
    ),
    # A Hong Kong identity card with its check digit: "A123456(7)".
    (PhiType.ID, _rx(r"\b[A-Z]{1,2}\d{6}\([0-9A]\)"), 0),
    (PhiType.ID, _rx(r"(?<![\w*])(?:[Xx*#]{4}[ -]){1,3}\d{4}\b"), 0),
    # International bank account numbers, in any case and grouping.
    (
        PhiType.ID,
        _rx(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,3})?\b", re.I),
        0,
    ),
    # Postcodes with a grammar of their own: British, Canadian, Dutch.
    (PhiType.ZIP, _rx(r"\b(?:[A-Z]{1,2}\d[A-Z\d]?|GIR) \d[A-Z]{2}\b"), 0),
    (PhiType.ZIP, _rx(r"\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z][ -]\d[ABCEGHJ-NPRSTV-Z]\d\b"), 0),
    # Irish Eircodes ("D02 X285", "D6W XK21"): a routing key, a space, and four of the
    # Eircode alphabet with a letter and a digit among them.
    (
        PhiType.ZIP,
        _rx(
            r"\b(?:[AC-FHKNPRTV-Y]\d{2}|D6W) (?=[0-9AC-FHKNPRTV-Y]{0,3}[AC-FHKNPRTV-Y])"
            r"(?=[0-9AC-FHKNPRTV-Y]{0,3}\d)[0-9AC-FHKNPRTV-Y]{4}\b"
        ),
        0,
    ),
    # Any postcode after its cue: "Postcode 8001", "PLZ 10115", "PIN 400 001".
    (
        PhiType.ZIP,
        _rx(
            r"(?i:\b(?:post ?code|postal code|zip(?: code)?|plz|pin ?code|c\.?p\.?)\s*[:#]?\s*)"
            r"([A-Z0-9]{2,5}(?:[ -][A-Z0-9]{2,4})?)\b"
        ),
        1,
    ),
    (
        PhiType.PHONE,
        _rx(
            r"(?i:\b(?:phone|tel|telephone|cell|mobile|pager|beeper|contact|call(?:ed)?|ext\.?|extension)\s*(?:number|no\.?|#)?\s*[:#]?\s*)(\d{3}[\s.-]\d{4}|\d{4,5})\b"
        ),
        1,
    ),
    (
        PhiType.DATE,
        _rx(
            rf"\b{_DAY}(?:\s+|-)(?:of\s+)?{_MONTHS}(?:,?\s+|-){_YEAR}\b|\b{_DAY}(?:\s+|-)(?:of\s+)?{_MONTHS}(?:,?\s+|-)\d\d\b"
        ),
        0,
    ),
    (PhiType.DATE, _rx(rf"\b{_MONTHS}\s+{_DAY}(?:,?\s+|,){_YEAR}\b"), 0),
    (PhiType.DATE, _rx(rf"\b{_MONTHS}\s+{_DAY}(?:,\s*'?\d\d)?\b(?!\s*(?:mg|ml|%|units))"), 0),
    (PhiType.DATE, _rx(rf"\b(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTHS}\b"), 0),
    (PhiType.DATE, _rx(rf"\b{_MONTHS},?\s+{_YEAR}\b"), 0),
    (PhiType.DATE, _rx(rf"\b{_MONTHS}\s+'\d\d\b"), 0),
    # Dates written with another language's month: "14 oktober", "1 de mayo", "28 février
    # 2025", "3. März 2024", "outubro de 2024".
    (
        PhiType.DATE,
        _rx(
            rf"\b(?:{_DAY}\.?\s+(?:de\s+)?{_FOREIGN_MONTHS}(?:\s+(?:de\s+)?{_YEAR})?"
            rf"|{_FOREIGN_MONTHS}\s+(?:de\s+)?{_YEAR})\b"
        ),
        0,
    ),
    # Case and file numbers of letters and slashes with a year or a long number in them:
    # "KCRH/IP/2025/1184", "AIMS/25/047712", "P/181318/01/2025".
    (
        PhiType.ID,
        _rx(
            r"\b[A-Z][A-Z0-9]{0,7}(?:/[A-Z0-9]{1,10}){2,}\b(?<=\d{4})|\b[A-Z]{2,8}/[A-Z]{1,6}/\d{4,}\b"
        ),
        0,
    ),
    (
        PhiType.DATE,
        _rx(
            r"\b(?:1[89]\d\d|20\d\d)[-/.](?:1[0-2]|0?[1-9])[-/.](?:3[01]|[12]\d|0?[1-9])(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)?\b"
        ),
        0,
    ),
    (
        PhiType.DATE,
        _rx(r"\b(?:1[0-2]|0?[1-9])[/.-](?:3[01]|[12]\d|0?[1-9])[/.-](?:\d{4}|\d{2})\b"),
        0,
    ),
    (
        PhiType.DATE,
        _rx(r"\b(?:3[01]|[12]\d|0?[1-9])[/.-](?:1[0-2]|0?[1-9])[/.-](?:\d{4}|\d{2})\b"),
        0,
    ),
    (
        PhiType.DATE,
        _rx(
            r"\b(?:1[0-2]|0?[1-9])/(?:3[01]|[12]\d|0?[1-9])\b(?!\s*(?:mm|mmhg|bpm|ml|mg|l|%)\b)(?![/\d])",
            re.I,
        ),
        0,
    ),
    (PhiType.DATE, _rx(r"\b(?:0?[1-9]|1[0-2])/(?:19|20)\d\d\b"), 0),
    (PhiType.DATE, _rx(r"\b(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b"), 0),
    (
        PhiType.AGE,
        _rx(
            r"\b(?:9\d|1[0-2]\d)(?=\s*(?:-|\s)?(?:years?|yrs?|y/?o|yo|year-old|-year-old|y\.o\.)\b)",
            re.I,
        ),
        0,
    ),
    (PhiType.AGE, _rx(r"(?i:\b(?:aged?|age of|age:)\s*)(9\d|1[0-2]\d)\b"), 1),
    (PhiType.AGE, _rx(r"\b(?:9\d|1[0-2]\d)(?=\s*(?:M|F|y|yo)\b)"), 0),
    (
        PhiType.MRN,
        _rx(
            r"(?i:\b(?:MRN|MR#|MR|medical record(?: number| no\.?| #)?|record(?: number| no\.?| #)|hospital number|chart(?: number| no\.?| #)?|patient id|pt id|unit number)\s*[:#]?\s*(?:is\s*)?)([A-Z]{0,4}[-]?\d[\w-]{3,})\b"
        ),
        1,
    ),
    (
        PhiType.ID,
        _rx(
            r"(?i:\b(?:account|acct|a/c|plan|member|policy|group|subscriber|insurance|beneficiary|claim|licen[cs]e|license plate|plate|DEA|NPI|UPIN|certificate|cert|serial|S/N|SN|device|implant|pacemaker|lot|VIN|vehicle|badge|employee|passport|ID|identifier|accession|specimen|order|encounter|visit|case|ref(?:erence)?)\s*(?:number|no\.?|num|#|id|code)?\s*[:#]?\s*(?:is\s*)?)((?=[\w-]*\d)[A-Z0-9][\w-]{3,})\b"
        ),
        1,
    ),
    # A health card or insurance number written in groups, with its version code:
    # Ontario's "HCN 5584 220 917 KT", "Medicare 2123 45670 1", "OHIP: 1234-567-890-AB".
    (
        PhiType.ID,
        _rx(
            r"(?i:\b(?:HCN|OHIP|PHN|health card|health card number|health number|medicare"
            r"(?: no\.?| number| #)?|ihi)\s*[:#]?\s*)(\d{3,5}(?:[ -]\d{3,5}){1,3}(?:[ -]?[A-Z]{1,2}\b)?)"
        ),
        1,
    ),
    (
        PhiType.ID,
        _rx(r"\b(?=[A-Z\d-]*\d)(?=[A-Z\d-]*[A-Z])[A-Z\d]{2,}-?[A-Z\d]{2,}-?[A-Z\d]*\d[A-Z\d]*\b"),
        0,
    ),
    (PhiType.ID, _rx(r"\b\d{6,}\b"), 0),
    (PhiType.ID, _rx(r"\b\d{2,3}-\d{3}-\d{3,4}\b"), 0),
    (
        PhiType.ZIP,
        _rx(
            r"(?<![\d.,$/-])\b\d{5}(?:-\d{4})?\b(?![.,]\d)(?!\s*(?:mg|mcg|ml|units?|iu|cells|copies|/))",
            re.I,
        ),
        0,
    ),
    (
        PhiType.ADDRESS,
        _rx(
            rf"\b\d{{1,6}}[A-Z]?(?:[ \t]+[NSEW]\.?)?(?:[ \t]+{_CAP}){{1,4}}[ \t]+(?i:{_STREET_SUFFIXES})\b\.?(?:,?[ \t]+(?i:apt\.?|apartment|suite|ste\.?|unit|#|fl\.?|floor|room|rm\.?)\s*#?\s*[\w-]+)?"
        ),
        0,
    ),
    (PhiType.ADDRESS, _rx(r"\b(?:P\.?\s?O\.?\s+Box|Box)\s+\d+\b", re.I), 0),
    (
        PhiType.ADDRESS,
        _rx(r"(?i:\b(?:apt\.?|apartment|suite|ste\.?|unit)\s*#?\s*)(\d+[A-Z]?)\b"),
        1,
    ),
    (PhiType.ADDRESS, _rx(rf"\b(?i:USNS|USNV|USS|USCGC)\s+{_CAP}(?:\s+{_CAP})?"), 0),
    (PhiType.ADDRESS, _rx(r"\b(?:PSC|Unit)\s+\d{4},\s+Box\s+\d{4}\b"), 0),
    (
        PhiType.LOCATION,
        _rx(rf"\b{_CAP}(?:\s+{_CAP}){{0,2}}(?=,\s*(?:{_STATES})\b(?:\s+\d{{5}})?)"),
        0,
    ),
    (PhiType.LOCATION, _rx(rf"\b{_CAP}(?:\s+{_CAP}){{0,2}}(?=,\s*(?:{_STATE_NAMES})\b)"), 0),
    (
        PhiType.LOCATION,
        _rx(
            rf"(?:\b(?:lives|living|resides|residing|resident|moved|relocated|born|grew up|visiting|travel(?:l?ed)?|returned|transferred|home)\s+(?:in|to|from|at)\s+)({_CAP}(?:\s+{_CAP}){{0,2}})"
        ),
        1,
    ),
    (PhiType.LOCATION, _rx(rf"\b{_CAP}(?:\s+{_CAP}){{0,2}}(?=,?\s+\d{{5}}(?:-\d{{4}})?\b)"), 0),
    (
        PhiType.LOCATION,
        _rx(
            rf"\b(?:New|East|West|North|South|Lake|Port|Fort|Mount|Saint|Glen|Grand|Little|Upper|Lower)\s+{_CAP}\b"
        ),
        0,
    ),
    (
        PhiType.LOCATION,
        _rx(
            rf"\b[{_UPPER}][{_LOWER}]+(?:burgh|burg|bury|borough|ville|land|fort|furt|mouth|shire|port|haven|chester|stad|berg|heim|side|view|town|ton|field|ford|dale|wood|ham|mont|stead|bridge)\b"
        ),
        0,
    ),
    (PhiType.ZIP, _rx(rf"(?<=\b(?:{_STATES}))\s*(\d{{5}}(?:-\d{{4}})?)\b"), 1),
    (
        PhiType.ZIP,
        _rx(r"(?i:\b(?:zip|zip code|postal code|zipcode)\s*[:#]?\s*)(\d{5}(?:-\d{4})?)\b"),
        1,
    ),
    (PhiType.ZIP, _rx(r"\b\d{5}-\d{4}\b"), 0),
    (
        PhiType.ORGANIZATION,
        _rx(
            rf"\b(?:(?:St\.?|Saint|Mount|Mt\.?)[ \t]+)?{_CAP}(?:[ \t]+(?:of|and|&|the|for)?[ \t]*{_CAP}){{0,5}}[ \t]+{_ORG_WORDS}\b(?:[ \t]+(?:of|at|in)[ \t]+{_CAP}(?:[ \t]+{_CAP}){{0,2}})?"
        ),
        0,
    ),
    (
        PhiType.ORGANIZATION,
        _rx(rf"\b{_ORG_WORDS}[ \t]+(?:of|at|in)[ \t]+{_CAP}(?:[ \t]+{_CAP}){{0,3}}"),
        0,
    ),
    # A form's insurer: "Insurance: Star Health, policy …", "Medical aid: Discovery
    # Health no. …", "Health fund: HCF". National programmes (Medicare, the NHS) and
    # "none" or "self-pay" are no one's identifier and stay.
    (
        PhiType.ORGANIZATION,
        _rx(
            r"(?i:\b(?:insurance|insurer|insurance company|medical aid|health fund|health insurer"
            r"|payer|payor)[ \t]*:[ \t]*)"
            r"(?!(?i:Medicare|Medicaid|Medi-Cal|NHS|HSE|OHIP|MSP|RAMQ|VA|Tricare|None|Nil|N/?A"
            rf"|Self|Uninsured|Private|Public|Pending|Unknown)\b)"
            # the plan's kind and the form's next label are not the insurer's name
            rf"({_CAP}(?: (?!(?:PPO|HMO|EPO|POS|HDHP|Plan|Policy|Member|Group|ID)\b){_CAP}){{0,3}})"
        ),
        1,
    ),
]

# Places and organisations whose name says what they are: capitalised words before
# "Hospital", "Clinic", "Pharmacy"…, and a place after "lives in", "moved to"…
# Roads by their number or their name ("Hwy 42", "SH5", "I-95", "Route 9", "the Hume
# Hwy", "Pacific Motorway"): where a crash, a farm or a shop is.
ROAD = _rx(
    r"\b(?:(?:(?:Hwy|Highway|Route|Rte|Interstate|State Highway)[ \t-]?|SH|US[ -]|I-)"
    r"\d{1,3}[A-Z]?(?![ \t]*(?:%|mg|ml|h\b|hrs?|min|mmHg|x\b))"
    rf"|{_CAP}(?:[ \t]{_CAP})?[ \t]+(?:Hwy|Highway|Motorway|Freeway|Expressway|Turnpike|Tpke))\b"
)
_NAMED_PLACES: list[tuple[PhiType, re.Pattern[str], int]] = [
    entry
    for entry in _PATTERNS
    if entry[0] is PhiType.ORGANIZATION
    or (entry[0] is PhiType.LOCATION and "lives|living" in entry[1].pattern)
] + [
    (PhiType.LOCATION, ROAD, 0),
    # An Irish county as addresses write it: "Co. Mayo", "Co Cork".
    (
        PhiType.LOCATION,
        _rx(
            r"\bCo\.?[ \t]+(?:Antrim|Armagh|Carlow|Cavan|Clare|Cork|Derry|Donegal|Down|"
            r"Dublin|Fermanagh|Galway|Kerry|Kildare|Kilkenny|Laois|Leitrim|Limerick|Longford|"
            r"Louth|Mayo|Meath|Monaghan|Offaly|Roscommon|Sligo|Tipperary|Tyrone|Waterford|"
            r"Westmeath|Wexford|Wicklow)\b"
        ),
        0,
    ),
]
# Capitalised words after a word that puts a place after it ("transferred from the
# clinic in Eldoret", "works outside Dubbo", "ambulance from Coorparoo"): a place when
# the gazetteer knows them (``TextDetector.gazetteer_places``).
_PLACE_CUE = _rx(
    rf"\b(?:in|from|to|at|near|nr|outside|around|towards?|via)[ \t]+"
    rf"({_CAP}(?:[ \t-]{_CAP}){{0,2}})"
)
# Four digits after a place, as many countries write a postcode ("Sandton 2146",
# "Zürich 8001", "Pretoria 0122"), or Japan's three and four ("Kyoto 605-0862"),
# unless a unit or a decimal follows.
_FOUR_AFTER_PLACE = _rx(
    rf"\b({_CAP}(?:[ \t-]{_CAP}){{0,2}}),?[ \t]+(\d{{4}}|\d{{3}}-\d{{4}})\b"
    r"(?![.,:/-]?\d)(?![ \t]*(?:%|mg|mcg|ml|g\b|kg|units?|iu|mmol|h\b|hrs?|min))"
)
# A place after a postcode, European style: "Hauptstraße 12, 10115 Berlin", "F-75011 Paris".
_PLACE_AFTER_POSTCODE = _rx(
    rf"(?:^|,[ \t]*|\n[ \t]*)(?:[A-Z]{{1,2}}-)?\d{{4,5}}[ \t]+({_CAP}(?:[ -]{_CAP}){{0,2}})", re.M
)
STATE_CODES = frozenset(_STATES.split("|"))
# A state or province code right after a city: "Hattiesburg MS;", "Garden Grove, CA."
_REGION_AFTER_PLACE = _rx(
    rf"\b({_CAP}(?:[ \t]{_CAP})?)[ \t]*,?[ \t]+({_STATES}|{_PROVINCES}|{_AU_STATES_LONG})"
    r"(?=[ \t]*(?:[.,;:)\n]|$))",
    re.M,
)
# A state, province or Swiss canton in brackets after a place: "Québec (QC)", "Orbe (VD)".
_REGION_IN_BRACKETS = _rx(
    rf"\b({_CAP}(?:[ \t-]{_CAP})?)[ \t]*\(({_STATES}|{_PROVINCES}|{_AU_STATES_LONG}|{_CANTONS})\)"
    r"(?![ \t]*\d)"  # "Wells (PE) 6.0": a score's name, not a province
)
# A British postcode's first half alone, ending an address line after a comma: "31
# Harehills Lane, LS8"; two-letter areas only (a spine level is one letter). The line
# must hold a number (``TextDetector.outward_codes``).
_OUTWARD_CODE_AT_END = _rx(rf",[ \t]*((?:{_UK_AREAS})\d{{1,2}}[A-Z]?)[ \t]*[.;]?[ \t]*$", re.M)
# A postcode that starts an address line, or follows its comma, before its town, as
# most of Europe writes it ("8700 Küsnacht ZH", "10115 Berlin", "…, 5000 Namur"; Poland's
# "90-369 Łódź", Czechia's "162 00 Praha 6"): a postcode when the gazetteer knows the town.
_POSTCODE_BEFORE_PLACE = _rx(
    rf"(?:^|,)[ \t]*(?:[A-Z]{{1,2}}-)?((?!19\d\d|20[0-3]\d)\d{{4,5}}|\d\d-\d{{3}}|\d{{3}} \d\d)"
    rf"[ \t]+({_CAP}(?:[ \t-]{_CAP}){{0,2}})",
    re.M,
)
# Speakers a transcript names by role or kinship, not by name.
_ROLE_SPEAKERS = frozenset(
    [
        "mum",
        "mummy",
        "mom",
        "mommy",
        "mama",
        "mam",
        "ma",
        "dad",
        "daddy",
        "papa",
        "pa",
        "nan",
        "nana",
        "gran",
        "granny",
        "grandma",
        "grandpa",
        "agent",
        "support",
        "bot",
        "system",
        "admin",
        "customer",
        "client",
        "caller",
        "operator",
        "nurse",
        "doctor",
        "dr",
        "me",
        "you",
        "host",
        "moderator",
        "guest",
        "user",
        "patient",
        "pt",
        "parent",
        "carer",
    ]
)
# A transcript's speaker: after the line's timestamp ("[09/03/25, 19:44] Tobi:"; the
# brackets must hold a time or a date), or before it (Slack: "raj.p [10:03 AM]:").
_SPEAKER_AFTER_TIME = _rx(
    r"^[ \t]*\[[^\]\n]{0,16}\d{1,2}[:/.]\d{2}[^\]\n]{0,16}\][ \t]*"
    r"([^\s:\[\]]{1,30}(?:[ \t][^\s:\[\]]{1,30})?):",
    re.M,
)
_SPEAKER_BEFORE_TIME = _rx(
    r"^[ \t]*([^\s:\[\]]{1,30}(?:[ \t][^\s:\[\]]{1,30})?)[ \t]+\[\d{1,2}:\d{2}(?:[ \t]?[AaPp][Mm])?\]:",
    re.M,
)
# The line after a closing, when it is one to three capitalised words: "Thanks,\nTina".
_AFTER_CLOSING = _rx(
    r"(?im:^[ \t]*(?:(?:kind|best|warm|warmest)\s+(?:regards|wishes)|regards|thanks|"
    r"thank\s+you(?:\s+po)?|many\s+thanks|cheers|sincerely|yours(?:\s+sincerely|"
    r"\s+faithfully|\s+truly)?|best|love|warmly|thx|ta)[ \t]*[,.!]?[ \t]*\n)"
    rf"[ \t]*(?:(?:Dr|Mr|Mrs|Ms|Miss|Prof)\.?[ \t]+)?({_CAP}(?:[ \t]+{_CAP}){{0,2}})[ \t]*$",
    re.M,
)
# Initials after a dash at a line's end: "routed to PCP. -jw", "- K.L."
# (consonants only, so that "- ok", "- no" and "- NAD"'s kind of word is none).
_DASHED_INITIALS = _rx(
    r"(?:^|[ \t])[-\u2013~][ \t]?((?i:[b-df-hj-np-tv-z]{2,3})|(?:[A-Z]\.){2,3})[ \t]*$", re.M
)
# A chat's speaker with no timestamp: a line that starts "Joanna: …".
_SPEAKER_ALONE = _rx(r"^[ \t]*([A-Z][\w'\u2019-]{1,24}):[ \t]+\S", re.M)
# Name particles: "van Dijk", "de la Cruz", "bin Said".
_PARTICLES = r"van|von|de|der|den|del|della|di|da|du|dos|das|la|le|ter|ten|bin|al|el|mac"
_PARTICLE = re.compile(_PARTICLES, re.I)
_WORD_BEFORE = _rx(rf"\b([{_UPPER}][{_LOWER}'\-]+|(?i:{_PARTICLES})) $")
_WORD_AFTER = _rx(
    rf" ([{_UPPER}][{_LOWER}'\-]+|(?i:{_PARTICLES})(?= (?:(?i:{_PARTICLES}) )*[{_UPPER}]))\b"
)
_TITLE_WORD = _rx(rf"^{_TITLES}$")
_CREDENTIAL_STATE = _rx(r",\s*(?:MD|PA|DO)\b(?!\s+\d{5})")

_NAME_CONTEXT_BEFORE = _rx(
    rf"\b{_TITLES}\s+((?:[A-Z]\.\s*)?{_CAP}(?:[ \t]+(?:[A-Z]\.|{_CAP})){{0,2}})"
)
_NAME_CONTEXT_AFTER = _rx(
    rf"\b((?:{_CAP}|[A-Z]\.)(?:[ \t]+(?:[A-Z]\.|{_CAP})){{0,3}}),?[ \t]+{_CREDENTIALS}"
)
_NAME_FIELD = _rx(
    r"(?i:\b(?:patient|pt|name|patient name|dear|signed|electronically signed|dictated|"
    r"transcribed|attending|resident|physician|surgeon|radiologist|provider|pcp|referring|"
    r"author|nurse|seen|examined|discussed|cc|reviewed|interpreted|verified|wife|husband|"
    r"spouse|partner|son|daughter|mother|father|brother|sister|sibling|friend|caregiver|"
    r"clinician|doctor|consultant|therapist|pharmacist|surgeon|assistant|"
    r"guardian|neighbor|neighbour|contact|emergency contact|proxy|aunt|uncle|grandson|"
    r"granddaughter|niece|nephew|by|to|with|from|per|for|and|or|&)\s*(?:is|was|named|name|by|:|,|-)?\s*)"
    rf"((?:[{_UPPER}]\.\s*)?{_CAP}(?:[ \t]+(?:[{_UPPER}]\.|{_CAP}|(?i:{_PARTICLES}))){{0,3}})"
)
_NAME_LABEL = _rx(
    rf"(?i:\b(?:patient|pt|name|patient name|full name|nok|next of kin|dear)\s*[:\-]?[ \t]*)"
    rf"((?:(?i:{_PARTICLES})[ \t]+)*(?:[{_UPPER}]\.\s*)?{_CAP}(?:,?[ \t]+(?:[{_UPPER}]\.|{_CAP}|(?i:{_PARTICLES}))){{0,4}})"
)
_NAME_BEFORE_VERB = _rx(
    rf"\b({_CAP}(?:[ \t]+(?:{_CAP}|(?i:{_PARTICLES}))){{0,3}})[ \t]+(?:reports|reported|states|stated|"
    r"denies|denied|complains|presents|presented|was seen|seen and examined|is resting|"
    r"resting|tolerated|tolerating|ambulated|agrees|agreed|declined|consented|called|visited)\b"
)
_NAME_BEFORE_AGE = _rx(
    rf"\b({_CAP}(?:[ \t]+{_CAP})?)[ \t]+(?:is|was)[ \t]+an?[ \t]+\d{{1,3}}[- ]?(?:year|yo\b|y/o|y\.o\.)"
)
_LAST_FIRST = _rx(rf"\b({_CAP}),[ \t]+({_CAP})(?:[ \t]+([{_UPPER}])\.?)?\b")
_CAP_TOKEN = _rx(
    rf"\b[{_UPPER}][{_LOWER}{_UPPER}'\-]*[{_LOWER}][{_LOWER}{_UPPER}'\-]*\b|\b[A-Z]{{2,}}\b"
)
_SENTENCE_START = _rx(r"(?:^|[.!?:;\n]\s*|\n\s*[-*•]\s*)$")


class TextDetector:
    """Finds PHI spans in clinical text. Stateless and thread-safe after construction."""

    def __init__(self) -> None:
        self.first_names, self.last_names, self.cities, self.common = dictionaries()
        self.places = world_places()

    def detect(self, text: str, known: Iterable[tuple[str, PhiType]] = ()) -> list[Span]:
        """Every PHI span in ``text`` by the rules alone (patterns, context rules and
        dictionaries), merged so that spans never overlap: the baseline the ensemble
        (``medstream.deid.detect``) is measured against."""
        spans = self._patterns(text, frozenset(PhiType))
        spans += [s for s in self.grammar(text) if s.type is PhiType.LOCATION]
        spans += self._names(text)
        spans += self.known(text, known)
        return merge(spans)

    def grammar(self, text: str) -> list[Span]:
        """The spans of the types that have a grammar (GRAMMAR_TYPES), by pattern; a
        place where an address's grammar puts it, after its postcode, and a state or
        province before one (``region_in_address``); and places and
        organisations whose name says what they are."""
        places = [
            Span(m.start(1), m.end(1), PhiType.LOCATION)
            for pattern in (_PLACE_AFTER_POSTCODE, _REGION_IN_ADDRESS)
            for m in pattern.finditer(text)
        ]
        places += [
            Span(m.start(2), m.end(2), PhiType.LOCATION)
            for m in _REGION_AFTER_PLACE.finditer(text)
            # "Hattiesburg MS", "Garden Grove, CA."; not "John Gordon, MD": a credential
            if m.group(1).lower() in self.cities
            and not (
                _CREDENTIAL_STATE.match(text, m.end(1)) and self._is_name(m.group(1), strict=False)
            )
        ]
        places += [
            Span(m.start(2), m.end(2), PhiType.LOCATION)
            for m in _REGION_IN_BRACKETS.finditer(text)
            # "Québec (QC)", "Orbe (VD)": a state, province or canton after its place
            if m.group(1).lower() in self.places or m.group(1).lower() in self.cities
        ]
        named = [
            Span(*m.span(group), kind)
            for kind, pattern, group in _NAMED_PLACES
            for m in pattern.finditer(text)
            if m.end(group) > m.start(group)
        ]
        return (
            self._patterns(text, GRAMMAR_TYPES)
            + places
            + named
            + self.gazetteer_places(text)
            + self.postcodes_after_places(text)
            + self.postcodes_before_places(text)
            + self.outward_codes(text)
            + self.speakers(text)
            + self.signatures(text)
        )

    def postcodes_after_places(self, text: str) -> list[Span]:
        """Four digits (or Japan's three and four) after a place the gazetteer knows; a
        year-like number (1900 to 2039: "Perth 2015") only where an address line ends
        with it, a full stop allowed."""
        spans = []
        for match in _FOUR_AFTER_PLACE.finditer(text):
            place, number = match.group(1), int(match.group(2).replace("-", ""))
            words = place.split()
            if not any(" ".join(words[i:]).lower() in self.places for i in range(len(words))):
                continue
            # a year-like number is a postcode only where an address line ends
            ends = re.match(r"[ \t]*[.;]?[ \t]*(?:\n|$)", text[match.end() :])
            if 1900 <= number <= 2039 and not ends:
                continue
            spans.append(Span(match.start(2), match.end(2), PhiType.ZIP))
        return spans

    def outward_codes(self, text: str) -> list[Span]:
        """A British postcode's first half ending an address line ("31 Harehills Lane,
        LS8"): its line must hold a number too."""
        spans = []
        for match in _OUTWARD_CODE_AT_END.finditer(text):
            line_start = text.rfind("\n", 0, match.start()) + 1
            if any(c.isdigit() for c in text[line_start : match.start()]):
                spans.append(Span(match.start(1), match.end(1), PhiType.ZIP))
        return spans

    def postcodes_before_places(self, text: str) -> list[Span]:
        """A postcode that starts a line, or follows its comma, before a town the
        gazetteer knows ("8700 Küsnacht", "…, 5000 Namur"); a time before an
        abbreviation ("1342 SVD") is none."""
        spans = []
        for match in _POSTCODE_BEFORE_PLACE.finditer(text):
            words = match.group(2).split()
            if any(" ".join(words[:i]).lower() in self.places for i in range(len(words), 0, -1)):
                spans.append(Span(match.start(1), match.end(1), PhiType.ZIP))
        return spans

    def gazetteer_places(self, text: str) -> list[Span]:
        """Places GeoNames knows, after a word that puts a place after it ("in",
        "from", "near"…): the longest run of the capitalised words that names one."""
        spans = []
        for match in _PLACE_CUE.finditer(text):
            words = list(re.finditer(r"[^ \t-]+", match.group(1)))
            for size in range(len(words), 0, -1):
                end = words[size - 1].end()
                if match.group(1)[:end].lower() in self.places:
                    spans.append(Span(match.start(1), match.start(1) + end, PhiType.LOCATION))
                    break
        return spans

    def speakers(self, text: str) -> list[Span]:
        """Who speaks in a transcript: the name or handle a chat log writes beside each
        line's timestamp ("[09/03/25, 19:44] Tobi: …", "raj.p [10:03 AM]: …"). A role
        or kinship word that is no first name ("Agent", "Mummy") is left."""
        spans = []
        for pattern in (_SPEAKER_AFTER_TIME, _SPEAKER_BEFORE_TIME):
            for m in pattern.finditer(text):
                speaker = m.group(1)
                handle = bool(re.search(r"[\d_.@]", speaker))
                words = speaker.lower().split()
                if not handle and all(
                    w in _ROLE_SPEAKERS or (w in self.common and w not in self.first_names)
                    for w in words
                ):
                    continue
                kind = PhiType.OTHER if handle else PhiType.NAME
                spans.append(Span(m.start(1), m.end(1), kind))
        # Without timestamps, a line that starts with a word and a colon is a speaker
        # when the word is a first name, or starts two lines or more (a conversation:
        # "Chidinma: …" twice); a form's labels and a note's headers are each written
        # once, and the guard leaves English words and clinical terms.
        alone = list(_SPEAKER_ALONE.finditer(text))
        counts = Counter(m.group(1) for m in alone)
        for m in alone:
            word = m.group(1)
            lower = word.lower()
            if lower in _ROLE_SPEAKERS or (lower in self.common and lower not in self.first_names):
                continue
            if lower in self.first_names or counts[word] >= 2:
                spans.append(Span(m.start(1), m.end(1), PhiType.NAME))
        return spans

    def signatures(self, text: str) -> list[Span]:
        """Who signs: the words of the line after a closing ("Thanks,", "Kind regards",
        "Thank you po,") when they look like a name, and initials after a dash at a
        line's end ("routed to PCP. -jw"). A word among them (a role, "Team") is left
        to the guard."""
        spans = [
            Span(m.start(1), m.end(1), PhiType.NAME)
            for m in _AFTER_CLOSING.finditer(text)
            if not all(w.lower() in _ROLE_SPEAKERS for w in m.group(1).split())
        ]
        spans += [Span(m.start(1), m.end(1), PhiType.NAME) for m in _DASHED_INITIALS.finditer(text)]
        return spans

    def _patterns(self, text: str, types: frozenset[PhiType]) -> list[Span]:
        spans: list[Span] = []
        for phi_type, pattern, group in _PATTERNS:
            if phi_type not in types:
                continue
            for match in pattern.finditer(text):
                start, end = match.span(group)
                if end > start and self._accept(phi_type, text, start, end):
                    spans.append(Span(start, end, phi_type))
        return spans

    def _accept(self, phi_type: PhiType, text: str, start: int, end: int) -> bool:
        value = text[start:end]
        if phi_type is PhiType.SSN:
            digits = re.sub(r"\D", "", value)
            # 000, 666 and 9xx areas are never issued, but redact them all the same
            # unless the shape is clearly a phone fragment or a range. A masked one
            # ("xxx-xx-9921") keeps its last four.
            return len(digits) == 9 or (
                len(digits) == 4
                and (
                    bool(re.match(r"[Xx*#]", value))
                    or bool(_SSN_LAST_FOUR_BEFORE.search(text[max(0, start - 60) : start]))
                )
            )
        if phi_type is PhiType.PHONE and value.startswith("0") and not value.isdigit():
            return 9 <= sum(c.isdigit() for c in value) <= 11  # "029 2018 0566"
        if phi_type is PhiType.ID and value.isdigit():
            # Long bare numbers are ids unless they are clearly quantities.
            after = text[end : end + 6].lower()
            return not after.lstrip().startswith(("mg", "ml", "units", "mcg", "cells", "/"))
        if phi_type is PhiType.ID:
            return not _looks_clinical_code(value)
        if phi_type is PhiType.LOCATION:
            if region_in_address(text, start, end):
                return True  # "Ottawa ON K2A 1E1": a region in an address line
            words = value.split()
            if _CREDENTIAL_STATE.match(text, end) and all(
                self._is_name(w, strict=False) for w in words
            ):
                return False  # "Robert Chen, MD" is a physician, not Maryland
            return not all(w.lower() in self.common and w.lower() not in self.cities for w in words)
        return True

    def _names(self, text: str) -> list[Span]:
        spans: list[Span] = []
        for pattern in (_NAME_CONTEXT_BEFORE, _NAME_CONTEXT_AFTER):
            for match in pattern.finditer(text):
                start, end = match.span(1)
                spans.append(Span(start, end, PhiType.NAME))
        for pattern in (_NAME_LABEL, _NAME_BEFORE_AGE, _NAME_BEFORE_VERB):
            for match in pattern.finditer(text):
                start, end = match.span(1)
                words = match.group(1).replace(",", " ").split()
                if not all(
                    w.lower() in self.common and w.lower() not in self.last_names for w in words
                ):
                    spans.append(Span(start, end, PhiType.NAME))
        for match in _NAME_FIELD.finditer(text):
            start, end = match.span(1)
            tokens = match.group(1).split()
            if any(self._is_name(t.strip("."), strict=False) for t in tokens):
                spans.append(Span(start, end, PhiType.NAME))
        for match in _LAST_FIRST.finditer(text):
            last, first = match.group(1), match.group(2)
            if self._is_name(last, strict=False) and self._is_name(first, strict=False):
                spans.append(Span(match.start(), match.end(), PhiType.NAME))
        spans += self._dictionary_names(text)
        spans += self._city_names(text)
        return self._extend_names(text, spans)

    def _extend_names(self, text: str, spans: list[Span]) -> list[Span]:
        """A capitalised word right beside a name is part of it ("Ngozi [Okafor]"), unless
        it is a common English word: recall first, for names no dictionary holds."""
        extended = []
        for span in spans:
            if span.type is not PhiType.NAME:
                extended.append(span)
                continue
            start, end = span.start, span.end
            for _ in range(4):  # "João Pedro da Rocha": several steps either way
                before = _WORD_BEFORE.search(text, max(0, start - 40), start)
                if before and self._joins(before.group(1)):
                    start = before.start(1)
                after = _WORD_AFTER.match(text, end)
                if after and self._joins(after.group(1)):
                    end = after.end()
            extended.append(Span(start, end, PhiType.NAME))
        return extended

    def _joins(self, word: str) -> bool:
        lower = word.lower()
        if _PARTICLE.fullmatch(word):
            return True
        return (
            word[:1].isupper()
            and not word.isupper()
            and lower not in self.common
            and not _TITLE_WORD.match(word)
        )

    def _dictionary_names(self, text: str) -> list[Span]:
        spans: list[Span] = []
        tokens = list(_CAP_TOKEN.finditer(text))
        for index, match in enumerate(tokens):
            word = match.group(0)
            lower = word.lower()
            if lower not in self.first_names and lower not in self.last_names:
                continue
            if word.isupper() and (len(word) < 3 or word in STATE_CODES):
                continue
            ambiguous = lower in self.common or word.isupper()
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if (
                following is not None
                and lower in self.first_names
                and following.group(0).lower() in self.last_names
                and not following.group(0).isupper()
                and _adjacent(text, match, following)
            ):
                # "Grace Hopper": a first name then a surname is a name even when both
                # are also English words.
                spans.append(Span(match.start(), following.end(), PhiType.NAME))
                continue
            if ambiguous:
                # A common word counts as a name only beside an unambiguous name.
                neighbours = [
                    tokens[j].group(0)
                    for j in (index - 1, index + 1)
                    if 0 <= j < len(tokens)
                    and _adjacent(text, tokens[min(j, index)], tokens[max(j, index)])
                ]
                if not any(
                    self._is_name(n, strict=True) or self._unknown_name(n) for n in neighbours
                ):
                    continue
            elif _SENTENCE_START.search(text[max(0, match.start() - 4) : match.start()]) and (
                lower in self.common
            ):
                continue
            spans.append(Span(match.start(), match.end(), PhiType.NAME))
        return spans

    def _city_names(self, text: str) -> list[Span]:
        spans = []
        for match in _CAP_TOKEN.finditer(text):
            lower = match.group(0).lower()
            if lower in self.cities and lower not in self.common and lower not in self.first_names:
                spans.append(Span(match.start(), match.end(), PhiType.LOCATION))
        return spans

    def _unknown_name(self, word: str) -> bool:
        """A capitalised word no dictionary knows and no English word is: "Bastiaan"."""
        lower = word.lower()
        return (
            not word.isupper()
            and lower not in self.common
            and lower not in self.first_names
            and lower not in self.last_names
            and lower not in self.cities
            and len(word) > 2
        )

    def _is_name(self, word: str, *, strict: bool) -> bool:
        lower = word.lower()
        if len(word) == 1 and word.isupper():
            return not strict
        in_dict = lower in self.first_names or lower in self.last_names
        if strict:
            # Acronyms (PHI, CXR, ICU) never anchor a name, even when a surname matches.
            return in_dict and lower not in self.common and not word.isupper()
        return in_dict or (word[:1].isupper() and lower not in self.common)

    @staticmethod
    def known(text: str, known: Iterable[tuple[str, PhiType]]) -> list[Span]:
        """Every occurrence of the record's own identifiers in ``text``."""
        spans = []
        lowered = text.lower()
        for value, phi_type in known:
            needle = value.strip().lower()
            if len(needle) < 2:
                continue
            start = lowered.find(needle)
            while start != -1:
                end = start + len(needle)
                before = lowered[start - 1] if start else " "
                after = lowered[end] if end < len(lowered) else " "
                if not (before.isalnum() or after.isalnum()):
                    spans.append(Span(start, end, phi_type, "known"))
                start = lowered.find(needle, end)
        return spans


def _adjacent(text: str, left: re.Match[str], right: re.Match[str]) -> bool:
    # A full stop ends a sentence, so only a space or a comma joins two name parts;
    # an initial ("Q.") is its own token and joins through a space.
    gap = text[left.end() : right.start()]
    return gap in {" ", ", ", "  "} or (len(left.group(0)) == 1 and gap == ". ")


_CLINICAL_CODE = _rx(
    r"^(?:[A-Z]\d{2}(?:\.\d+)?|\d+[A-Z]{1,3}|[A-Z]{1,3}\d{1,2}|T\d{1,2}|L\d|S\d|C\d|"
    r"HbA1c|COVID-19|SARS-CoV-2|CD\d+|HER2|BRCA\d|PD-L1|IL-\d+|ICD-\d+|DSM-\d|G\d+P\d+)$"
)


def _looks_clinical_code(value: str) -> bool:
    """Short alphanumerics that are clinical vocabulary (T2, L4, 5mg, CD4), not ids."""
    return (len(value) <= 5 and bool(_CLINICAL_CODE.match(value))) or bool(
        re.fullmatch(r"\d+(?:mg|mcg|ml|mm|cm|kg|g|l|mmhg|bpm|h|hr|hrs|d|wk|mo|yo|x)", value, re.I)
    )


def region_in_address(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is a state or province code with its postcode after
    it ("FL" in "Miami, FL 33127")."""
    region = _REGION.match(text, start)
    return region is not None and region.end() == end


def merge(spans: list[Span]) -> list[Span]:
    """Resolve overlaps: the higher-priority type wins, then the longer span. Overlapping
    spans are joined, so no character that any rule flagged is left out, and the joined
    span names every detector that found part of it."""
    if not spans:
        return []
    ordered = sorted(spans, key=lambda s: (s.start, -(s.end - s.start)))
    merged: list[Span] = [ordered[0]]
    for span in ordered[1:]:
        last = merged[-1]
        if span.start < last.end:
            winner = max((last, span), key=lambda s: (PRIORITY[s.type], s.end - s.start))
            sources = sorted(set(last.source.split("+")) | set(span.source.split("+")))
            merged[-1] = Span(
                last.start,
                max(last.end, span.end),
                winner.type,
                "+".join(sources),
                max(last.confidence, span.confidence),
            )
        else:
            merged.append(span)
    return merged
