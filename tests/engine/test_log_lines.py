"""The daemon's log lines: structured fields, redaction, and plain text from any handler."""

from __future__ import annotations

import json
import logging

from engine.log_lines import JsonFormatter, LogLine, json_line


def _record(message: object) -> logging.LogRecord:
    return logging.LogRecord("nurture.test", logging.INFO, __file__, 1, message, (), None)


def test_a_log_line_is_merged_into_the_json_object_with_time_level_and_logger() -> None:
    line = json.loads(JsonFormatter().format(_record(json_line(decision="accepted", event=7))))
    assert line["decision"] == "accepted" and line["event"] == 7
    assert line["level"] == "INFO" and line["logger"] == "nurture.test"
    assert isinstance(line["time"], float)


def test_addresses_are_redacted_in_structured_and_in_text_lines() -> None:
    formatter = JsonFormatter()
    structured = formatter.format(_record(LogLine(to="maya.lopez@mail.example", n=1)))
    text = formatter.format(_record("sent to maya.lopez@mail.example"))
    encoded = formatter.format(_record('{"to": "maya.lopez@mail.example"}'))
    for line in (structured, text, encoded):
        assert "maya.lopez" not in line and "<email>" in line


def test_with_debug_addresses_stay() -> None:
    line = JsonFormatter(redact=False).format(_record(LogLine(to="maya.lopez@mail.example")))
    assert json.loads(line)["to"] == "maya.lopez@mail.example"


def test_any_other_handler_shows_a_log_line_as_its_json_text() -> None:
    record = _record(json_line(decision="polled", new=2))
    assert json.loads(record.getMessage()) == {"decision": "polled", "new": 2}
