import json
import logging
import sys
import threading

import pytest

from medstream.logging import WITHHELD, ConsoleFormatter, JsonFormatter, configure_logging


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


def test_a_library_keeps_its_template_and_drops_its_arguments() -> None:
    """aiokafka and friends put the record, the header bytes or the error in the
    arguments; only the template they wrote is kept."""
    rec = logging.makeLogRecord(
        {
            "name": "aiokafka.consumer",
            "levelname": "ERROR",
            "msg": "Failed to decode header %r of %s",
            "args": (b"Jane Doe", "offset 7"),
        }
    )
    line = JsonFormatter().format(rec)
    assert json.loads(line)["message"] == "Failed to decode header %r of %s"
    assert "Jane" not in line


def test_a_library_message_built_without_a_template_is_withheld() -> None:
    rec = logging.makeLogRecord(
        {"name": "faststream.access", "levelname": "ERROR", "msg": "bad header b'Jane Doe'"}
    )
    line = JsonFormatter().format(rec)
    assert json.loads(line)["message"] == WITHHELD
    assert "Jane" not in line


def test_medstream_messages_are_kept_whole() -> None:
    rec = logging.makeLogRecord(
        {"name": "medstream.consumer", "levelname": "INFO", "msg": "batch of %d", "args": (3,)}
    )
    assert json.loads(JsonFormatter().format(rec))["message"] == "batch of 3"


def test_uncaught_exceptions_are_logged_as_their_class(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    level = root.level
    configure_logging("t")
    error = KeyError("Jane Doe MRN 1234567")
    try:
        sys.excepthook(type(error), error, None)
    finally:
        root.setLevel(level)
        logging.captureWarnings(False)
    err = capsys.readouterr().err
    assert "KeyError" in err
    assert "Jane" not in err
    assert "1234567" not in err
