"""The daemon's structured log: one JSON object per line, email addresses redacted.

A decision is logged as a ``LogLine`` (``json_line(...)``), a dict that prints as its JSON
text, so any handler shows it; the daemon's ``JsonFormatter`` merges its fields directly.
Logged as JSON text, a line cost a dumps at the call, then a loads and a second dumps in the
formatter, and the redaction pattern ran over every line: about 35 us a line in all, 10 now;
the shipped rules log some eight lines per new person.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


class LogLine(dict[str, Any]):
    def __str__(self) -> str:
        return json.dumps(self, default=str, sort_keys=True)


def json_line(**fields: Any) -> LogLine:
    """One structured log line (the daemon's formatter adds time, level and logger)."""
    return LogLine(fields)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; email addresses redacted unless debug logging is on."""

    def __init__(self, redact: bool = True) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        refused = _refused_http(record)
        if refused is not None:
            return refused
        line: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
        }
        if type(record.msg) is LogLine and not record.args:
            line.update(record.msg)
        else:
            message = record.getMessage()
            try:
                fields = json.loads(message)
                line.update(fields if isinstance(fields, dict) else {"msg": message})
            except ValueError:
                line["msg"] = message
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        text = json.dumps(line, default=str, sort_keys=True)
        # the pattern costs ~14 us a line even when it finds nothing; an address has an "@"
        return EMAIL.sub("<email>", text) if self.redact and "@" in text else text


def _refused_http(record: logging.LogRecord) -> str | None:
    """aiohttp logs a request its HTTP parser refused (already answered 400) as an ERROR with
    the offending bytes, which may be a header carrying a token: one INFO line without them."""
    if not record.exc_info:
        return None
    from aiohttp.http_exceptions import HttpProcessingError
    from aiohttp.web_protocol import RequestPayloadError

    error = record.exc_info[1]
    if not isinstance(error, HttpProcessingError | RequestPayloadError):
        return None
    line = {
        "time": round(record.created, 3),
        "level": "INFO",
        "logger": record.name,
        "decision": "refused_http",
        "error": type(error).__name__,
    }
    return json.dumps(line, sort_keys=True)


def configure_logging(debug: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(redact=not debug))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # the JSON line uses none of the caller's file and line, thread or process: skip
    # gathering them for every record (the logging HOWTO's "Optimization")
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for noisy in ("aiohttp.access", "apscheduler", "sqlalchemy", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
