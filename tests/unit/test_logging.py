import json
import logging

import pytest

from medstream.logging import ConsoleFormatter, JsonFormatter


def record(**extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": "handled"})
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_ids_are_kept_and_payloads_dropped() -> None:
    line = JsonFormatter().format(
        record(event_id="e-1", topic="t", payload="John Smith 555-1234", body=b"PID|..")
    )
    entry = json.loads(line)
    assert entry["event_id"] == "e-1"
    assert entry["topic"] == "t"
    assert "payload" not in entry
    assert "body" not in entry
    assert "John" not in line


def test_exception_text_is_not_logged() -> None:
    rec = record()
    error = ValueError("patient Jane Doe, MRN 1234567")
    rec.exc_info = (ValueError, error, None)
    line = JsonFormatter().format(rec)
    assert json.loads(line)["exception_class"] == "ValueError"
    assert "Jane" not in line
    assert "1234567" not in line


@pytest.mark.parametrize("formatter", [JsonFormatter(), ConsoleFormatter()])
def test_both_formats_redact(formatter: logging.Formatter) -> None:
    line = formatter.format(record(message_id="m-9", text="Jane Doe"))
    assert "m-9" in line
    assert "Jane" not in line
