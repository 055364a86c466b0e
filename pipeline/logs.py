"""Logging setup: one line per record, text or JSON, to stderr or a file.

Never code contents, never tokens: modules log ids, paths, counts and reasons only.
"""

from __future__ import annotations

import logging
import sys
import time

import msgspec

_json = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return _json.encode(doc).decode()


def setup_logging(level: str = "INFO", fmt: str = "text", file: str | None = None, debug: bool = False) -> None:
    root = logging.getLogger("pattern_tracker")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler: logging.Handler = logging.FileHandler(file, encoding="utf-8") if file else logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
