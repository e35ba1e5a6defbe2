"""Where a report names a CheXpert observation: the curated vocabulary
(``data/vocabulary.tsv``, versioned, sealed into the notes package) and the finder.

The finder is deliberately generous: it returns every place a phrase of the vocabulary
occurs, including in an indication ("evaluate for pneumonia") or in a phrase that is
not a finding at all ("projects over the heart"). Deciding what each mention says
(present, absent, uncertain, or nothing about this study) is the status classifier's
job, which reads the words around it.

Dictation errors are expected: a ``word`` entry also matches with one typing error (two
for words of ten letters or more), and two words that join into it ("pneumo thorax").
Hand-written because no maintained library does this for radiology vocabulary: NegEx
and medspaCy's target rules match exact phrases and need spaCy models we cannot install
offline (see docs/models.md).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).with_name("data") / "vocabulary.tsv"
BLOCK = "-"  # a phrase that names no observation but hides a shorter match
_WORD = re.compile(r"[A-Za-z]+")
FUZZY_MIN = 7  # shorter words change meaning with one letter (edema/enema, mass/mast)
# Words already compared with the vocabulary: reports repeat their words.
_NEAR: dict[tuple[str, str], tuple[str, ...] | None] = {}


@dataclass(frozen=True)
class Mention:
    """One place a report names one or more observations: ``text[start:end]``."""

    start: int
    end: int
    observations: tuple[str, ...]
    fuzzy: bool = False


@dataclass(frozen=True)
class Vocabulary:
    """The parsed vocabulary: its version, its digest, and compiled patterns."""

    version: str
    sha256: str
    phrases: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...]
    words: dict[str, tuple[str, ...]]

    @classmethod
    def load(cls, path: Path = DATA) -> Vocabulary:
        raw = path.read_bytes()
        version = "unversioned"
        phrases: list[tuple[tuple[str, ...], re.Pattern[str]]] = []
        words: dict[str, tuple[str, ...]] = {}
        for number, line in enumerate(raw.decode().splitlines(), start=1):
            if line.startswith("# version\t"):
                version = line.split("\t", 1)[1].strip()
            if not line.strip() or line.startswith("#"):
                continue
            try:
                observation, kind, pattern = line.split("\t")
            except ValueError:
                raise ValueError(f"{path}:{number}: expected three tab-separated columns") from None
            names = () if observation == BLOCK else tuple(observation.split("|"))
            if kind == "word":
                words[pattern.lower()] = names
            elif kind == "phrase":
                phrases.append((names, re.compile(rf"(?<![\w-])(?:{pattern})(?![\w-])", re.I)))
            else:
                raise ValueError(f"{path}:{number}: kind must be phrase or word, not {kind!r}")
        return cls(version, hashlib.sha256(raw).hexdigest(), tuple(phrases), words)

    def find(self, text: str) -> list[Mention]:
        """Every mention in ``text``, longest first where they overlap, in text order.
        Blocking phrases take their place and are then dropped."""
        candidates: list[tuple[int, int, tuple[str, ...], bool]] = []
        for names, pattern in self.phrases:
            candidates.extend((m.start(), m.end(), names, False) for m in pattern.finditer(text))
        candidates.extend(self._fuzzy(text))
        candidates.sort(key=lambda c: (-(c[1] - c[0]), c[0], c[3]))
        taken = bytearray(len(text))
        chosen: list[Mention] = []
        for start, end, names, fuzzy in candidates:
            if start == end or any(taken[start:end]):
                continue
            taken[start:end] = b"\x01" * (end - start)
            if names:
                chosen.append(Mention(start, end, names, fuzzy))
        return sorted(chosen, key=lambda m: m.start)

    def _fuzzy(self, text: str) -> list[tuple[int, int, tuple[str, ...], bool]]:
        found = []
        tokens = list(_WORD.finditer(text))
        for i, token in enumerate(tokens):
            word = token.group().lower()
            if word in self.words:
                found.append((token.start(), token.end(), self.words[word], False))
            elif len(word) >= FUZZY_MIN:
                names = self._near(word)
                if names is not None:
                    found.append((token.start(), token.end(), names, True))
            if i + 1 < len(tokens):  # "pneumo thorax", "cardio megaly"
                following = tokens[i + 1]
                gap = text[token.end() : following.start()]
                joined = word + following.group().lower()
                if gap in (" ", "-") and joined in self.words:
                    found.append((token.start(), following.end(), self.words[joined], True))
        return found

    def _near(self, word: str) -> tuple[str, ...] | None:
        cached = _NEAR.get((self.sha256, word), False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        found = self._nearest(word)
        if len(_NEAR) > 50_000:
            _NEAR.clear()
        _NEAR[(self.sha256, word)] = found
        return found

    def _nearest(self, word: str) -> tuple[str, ...] | None:
        for known, names in self.words.items():
            allowed = 2 if len(known) >= 10 else 1
            if abs(len(known) - len(word)) <= allowed and edits(word, known, allowed) <= allowed:
                return names
        return None


def edits(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (Levenshtein with adjacent transpositions),
    giving up once it exceeds ``limit``."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


@cache
def vocabulary() -> Vocabulary:
    """The vocabulary this installation ships."""
    return Vocabulary.load()
