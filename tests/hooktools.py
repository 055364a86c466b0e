"""The hook tests' shared helpers: Claude Code's payloads from our fixture file, moved into a test's
own directory, and what a hook run left behind in a data directory (its spool and its log)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from pattern_tracker.core.store import Store
from pattern_tracker.state.spool import Spool

# Our own fixture of Claude Code's PostToolUse payload shapes (what the hook is sent).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hook_payloads.jsonl"


def payloads() -> list[dict]:
    return [json.loads(line) for line in FIXTURES.read_text().splitlines() if line.strip()]


def retarget(payload: dict, root: Path) -> dict:
    """The fixture payload with its file path moved under ``root``."""
    doc = json.loads(json.dumps(payload))
    for key in ("file_path", "notebook_path"):
        if key in doc["tool_input"]:
            doc["tool_input"][key] = str(root / Path(doc["tool_input"][key]).name)
    return doc


def spooled(data: Path) -> list[dict]:
    """The events in the spool of data directory ``data``, oldest first, as JSON documents."""
    store = Store.open(data)
    try:
        return [json.loads(msgspec.json.encode(e.event)) for _, e in Spool(store).read_batch(0, 10_000)]
    finally:
        store.close()


def hook_log(data: Path) -> list[str]:
    path = data / "hook.log"
    return path.read_text().splitlines() if path.exists() else []
