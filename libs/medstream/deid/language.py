"""Which language a stretch of free text is written in, and which of its words are that
language's common words.

The PHI tagger learned English: in a German discharge letter or a French referral it
reads capitalised nouns, section headers and ordinary words ("Aufnahme", "Verlauf",
"humeur triste") as names and organisations. Where a line (or, for a line too short to
tell, the whole text) is written in another language, a tagged span made only of that
language's common words is a word, not an identifier (``detect.PhiDetector``).

Both facts come from ``wordfreq`` (its code Apache-2.0; its word lists CC BY-SA 4.0,
used as the package ships them, not copied here): a language's most frequent words say
which language a line is in, and a word's Zipf frequency says whether it is common in
that language. No name list is consulted here; the caller excludes known names.
"""

from __future__ import annotations

import re
from functools import lru_cache

from wordfreq import get_frequency_list, top_n_list, zipf_frequency

# Latin-script languages that clinical text reaches MedStream in, besides English.
LANGUAGES = (
    "de", "fr", "es", "it", "nl", "pt", "pl", "sv", "da", "nb",
    "cs", "sk", "sl", "hu", "fi", "ro", "ca", "tr", "id", "ms",
)  # fmt: skip
# How many of a language's most frequent words identify it.
_MARKERS = 1000
# A line is in a language when this many of its lower-case words are that language's
# markers and more are than English's; a whole text needs more.
LINE_HITS = 3
TEXT_HITS = 4
# A word is common in a language from this Zipf frequency (once per million words).
COMMON = 3.0
# A capitalised word is a common noun, not a name, when it is 10^OWN times more
# frequent in its language than in English.
OWN = 3.0
# Below this Zipf frequency in English (once per ten million words), a word is not one
# English text uses.
RARE = 2.0

_TOKEN = re.compile(r"[^\W\d_]{3,}")
# Web and e-mail addresses, whose words say nothing of the text's language.
_ADDRESSES = re.compile(r"\S*(?:://|www\.|@)\S*|\S+\.[a-z]{2,4}/\S*")


class Languages:
    """The markers of each language: its most frequent words of three letters or more,
    less those English uses often ("die", "was", "also") and the ``clinical`` words
    ("tid", "pod", "med": abbreviations in English notes)."""

    def __init__(self, clinical: frozenset[str] = frozenset()) -> None:
        english = frozenset(top_n_list("en", 5000, wordlist="small"))
        self.markers = {
            "en": frozenset(w for w in top_n_list("en", _MARKERS, wordlist="small") if len(w) >= 3)
        }
        for lang in LANGUAGES:
            self.markers[lang] = frozenset(
                w
                for w in top_n_list(lang, _MARKERS, wordlist="small")
                if len(w) >= 3 and w not in english and w not in clinical
            )
        get_frequency_list.cache_clear()  # the markers are kept; the lists need not be

    def _votes(self, text: str) -> dict[str, int]:
        words = {w for w in _TOKEN.findall(_ADDRESSES.sub(" ", text)) if w.islower()}
        return {lang: len(words & marks) for lang, marks in self.markers.items()}

    def lines(self, text: str) -> list[tuple[int, int, str]]:
        """``(start, end, language)`` per line of ``text``: the line's own language where
        its words say, else the text's; English where neither can tell."""
        whole = _decide(self._votes(text), TEXT_HITS) or "en"
        return [
            (line.start(), line.end(), _decide(self._votes(line.group()), LINE_HITS) or whole)
            for line in re.finditer(r"[^\n]+", text)
        ]


def _decide(votes: dict[str, int], needed: int) -> str | None:
    english = votes.pop("en", 0)
    lang, hits = max(votes.items(), key=lambda kv: kv[1], default=("en", 0))
    if hits >= needed and hits > english:
        return lang
    if english >= needed:
        return "en"
    return None


def language_at(lines: list[tuple[int, int, str]], offset: int) -> str:
    """The language of the line holding ``offset`` (see ``Languages.lines``)."""
    for start, end, lang in lines:
        if start <= offset < end:
            return lang
    return "en"


@lru_cache(maxsize=1 << 16)  # bounded: a service sees new words for ever
def common(word: str, lang: str) -> bool:
    """Whether ``word`` is a common word of ``lang`` (its Zipf frequency ≥ COMMON)."""
    return zipf_frequency(word.lower(), lang, wordlist="small") >= COMMON


@lru_cache(maxsize=1 << 16)
def own(word: str, lang: str) -> bool:
    """Whether ``word`` is a word of ``lang`` that English text does not use: at least
    10**OWN times more frequent there than in English. Names of people and places
    travel between languages ("München", "Fernández", "Lausanne" are written in English
    text too); a language's common nouns do not ("Aufnahme", "Verlauf", "Paciente")."""
    word = word.lower()
    return zipf_frequency(word, lang, wordlist="small") - zipf_frequency(word, "en") >= OWN


@lru_cache(maxsize=1 << 16)
def rare_in_english(word: str) -> bool:
    """Whether English text all but never uses ``word`` (Zipf frequency below RARE):
    a name or a place that travels between languages is written in English too."""
    return zipf_frequency(word.lower(), "en") < RARE
