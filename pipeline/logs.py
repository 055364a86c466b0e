"""Logging setup: one line per record, text or JSON, to stderr or a file (stdlib ``logging``).

Never code contents, never tokens: modules log ids, paths, counts and reasons only. As a safety
net every record is scrubbed before it is written: ``Bearer …`` values, credentials in URLs
(``scheme://user:***@host``) and the tokens of the environment (``PATTERN_TRACKING_API_TOKEN``,
``PATTERN_TRACKER__API__TOKEN``, ``PATTERN_TRACKER__SERVE__TOKEN``, or any registered with
:func:`add_secret`) are masked, in the message and in a traceback alike.

``logging.format: json`` gives one JSON object per line: ``ts`` (UTC), ``level``, ``logger``,
``msg``, ``pid``, the ``extra={...}`` fields of the call (scalars only) and ``exc`` for a
traceback. The ``asyncio`` and ``aiohttp`` loggers (warnings and up) go to the same handler,
so nothing escapes as unformatted text.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time

import msgspec

_json = msgspec.json.Encoder()

_TOKEN_ENV = ("PATTERN_TRACKING_API_TOKEN", "PATTERN_TRACKER__API__TOKEN", "PATTERN_TRACKER__SERVE__TOKEN")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}")
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]+):[^\s@/]+@")
_secrets: set[str] = set()
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_OURS = "_pattern_tracker_handler"
# Libraries whose own log lines go through our handler (file, format, scrubbing) at WARNING and
# above, instead of Python's last-resort stderr line: the OTLP exporter logs its retries there.
_THIRD_PARTY = ("asyncio", "aiohttp", "opentelemetry")


def add_secret(value: str | None) -> None:
    """Mask ``value`` wherever it would appear in a log line (values under 6 chars are ignored)."""
    if value and len(value) >= 6:
        _secrets.add(value)


def scrub(text: str) -> str:
    text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
    text = _URL_CREDENTIALS.sub(r"\1:***@", text)
    for value in _secrets | {v for k in _TOKEN_ENV if len(v := os.environ.get(k, "")) >= 6}:
        if value in text:
            text = text.replace(value, "***")
    return text


def _extras(record: logging.LogRecord) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in vars(record).items():
        if key in _STANDARD or key.startswith("_"):
            continue
        if isinstance(value, str):
            out[key] = scrub(value)
        elif value is None or isinstance(value, (bool, int, float)):
            out[key] = value
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
            "pid": record.process,
        }
        for key, value in _extras(record).items():
            doc.setdefault(key, value)
        if record.exc_info:
            doc["exc"] = scrub(self.formatException(record.exc_info))
        if record.stack_info:
            doc["stack"] = scrub(self.formatStack(record.stack_info))
        return _json.encode(doc).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def setup_logging(level: str = "INFO", fmt: str = "text", file: str | None = None, debug: bool = False) -> None:
    root = logging.getLogger("pattern_tracker")
    for name in ("pattern_tracker", *_THIRD_PARTY):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if name == "pattern_tracker" or getattr(h, _OURS, False):
                lg.removeHandler(h)
    handler: logging.Handler = logging.FileHandler(file, encoding="utf-8") if file else logging.StreamHandler(sys.stderr)
    setattr(handler, _OURS, True)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
    for name in _THIRD_PARTY:
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        if lg.level == logging.NOTSET or lg.level > logging.WARNING:
            lg.setLevel(logging.WARNING)
        lg.propagate = False
