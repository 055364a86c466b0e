"""``pattern-tracker hook``: the Claude Code PostToolUse hook.

Claude Code starts it after every Write, Edit, MultiEdit and NotebookEdit with the payload on
stdin, so its speed and its silence are the product: it reads the payload, builds the change
(the file after the edit), drops deny-listed files, redacts secrets, assigns the version and
queues the event in the spool — one LMDB write transaction — and exits 0. Always 0: a problem
is one line in its log file, never output, never a traceback, never a network call. Delivery
is a drainer's job: the running pipeline, or a detached ``pattern-tracker drain`` this hook
starts when nobody holds the drain lease and the circuit is not open.

Standard library and lmdb only (no msgspec, yaml, asyncio, reactivex, aiohttp or OpenTelemetry):
see the import budget in docs/architecture.md. Stage timings are recorded in the event
(``timings["hook"]``) and turned into a span by the drainer.
"""

from __future__ import annotations

import json
import os
import sys
import time

TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from typing import Any

LOG_MAX_BYTES = 1024 * 1024
# Control characters (and the other line breaks) of a message, escaped: one problem, one line.
_ONE_LINE = {i: f"\\x{i:02x}" for i in (*range(32), 0x7F, 0x85)} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


class HookLog:
    """One line per problem, appended to the hook's log file (rotated at 1 MiB, mode 0600)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, level: str, message: str) -> None:
        message = message.translate(_ONE_LINE)  # paths and tool names come from the payload
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {level} hook[{os.getpid()}]: {message}\n"
        try:
            os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
            try:
                if os.path.getsize(self.path) > LOG_MAX_BYTES:
                    os.replace(self.path, self.path + ".1")
            except OSError:
                pass
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError:
            pass  # nowhere to log: stay silent rather than disturb the session

    def warn(self, message: str) -> None:
        self.write("WARNING", message)

    def error(self, message: str) -> None:
        self.write("ERROR", message)


def _parse_args(argv: list[str]) -> tuple[str | None, bool, list[str]]:
    """(--config, --verbose, the arguments it does not know): no argparse, whose errors exit 2
    and whose import the hook would pay on every edit; unknown arguments are logged, not fatal."""
    config: str | None = None
    verbose = False
    unknown: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--verbose":
            verbose = True
        elif arg == "--debug":
            pass  # every command takes it; the hook logs its errors whatever it says
        elif arg == "--config" and i + 1 < len(argv):
            config = argv[i + 1]
            i += 1
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        else:
            unknown.append(arg)
        i += 1
    return config, verbose, unknown


def _read_stdin(limit: int) -> bytes | None:
    """The payload, or None when it is larger than ``limit`` (the rest is drained, unread)."""
    chunks: list[bytes] = []
    size = 0
    fd = sys.stdin.fileno()
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            while os.read(fd, 1 << 16):
                pass
            return None
        chunks.append(chunk)


def _describe_json_error(exc: ValueError) -> str:
    lineno, colno = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    where = f" at line {lineno} column {colno}" if lineno else ""
    return f"malformed JSON payload{where}: {getattr(exc, 'msg', 'cannot decode')}"


def run_hook(payload_bytes: bytes, settings: dict[str, Any], log: HookLog, started: float,
             config_error: str | None = None) -> dict[str, Any]:
    """Everything after reading stdin; returns what happened (for --verbose and tests).

    ``config_error``: the configuration could not be read (``settings`` are the fallback ones);
    it is recorded with the edit, in the same transaction, for ``health`` to show. Without one,
    a recorded error is cleared: this hook read the configuration.
    """
    from pattern_tracker.core.capture import PayloadError, changes_from_payload

    result: dict[str, Any] = {"events": 0, "ignored": False}
    try:
        payload = json.loads(payload_bytes)
    except UnicodeDecodeError:
        log.error("payload is not UTF-8 JSON")
        return result
    except RecursionError:
        log.error("malformed JSON payload: nested too deeply")
        return result
    except ValueError as exc:
        log.error(_describe_json_error(exc))
        return result
    now = time.time()
    from pattern_tracker.core.readfile import read_text_file

    def read_text(path: str) -> str | None:
        read = read_text_file(path, int(settings["max_file_size"]))
        return read.text if read.ok else None  # type: ignore[union-attr]

    try:
        changes = changes_from_payload(payload, now, read_text)
    except PayloadError as exc:
        tool = payload.get("tool_name") if isinstance(payload, dict) else None
        log.error(f"{tool or 'payload'}: {exc}")
        return result
    if not changes:
        result["ignored"] = True
        return result

    from pattern_tracker.state.ingest import Ingest
    from pattern_tracker.core.redact import Redactor
    from pattern_tracker.state.spool import Spool, SpoolFull, SpoolLimits, never_blocking
    from pattern_tracker.core.store import Store
    from pattern_tracker.usecases.drainer import claim_drainer_start, spawn_drainer

    store = Store.open(settings["data_dir"], map_size=settings["map_size"], max_map_size=settings["max_map_size"])
    try:
        # `block` would stall the session: the hook never waits, it drops the newest and says so.
        limits = never_blocking(SpoolLimits(settings["cache_size"], settings["overflow_policy"], settings["cache_ttl"]))
        ingest = Ingest(
            store,
            Spool(store, limits, warn=log.warn),
            make_event=lambda fields: fields,
            redactor=Redactor(settings["extra_patterns"], enabled=settings["redaction_enabled"]),
            deny_globs=settings["deny_globs"],
        )
        kept, counts = ingest.screen(changes)
        counts["hook.invocations"] = 1
        if config_error is not None:
            counts["hook.config_errors"] = 1
        from pattern_tracker.settings.hook_settings import note_config_error
        timings = {"hook": [started, time.time()]}

        from pattern_tracker.core.lease import DrainLease

        lease = DrainLease(store)

        def txn_fn(txn: Any) -> tuple[list[Any], int, bool]:
            events, unchanged = ingest.accept_in(txn, kept, "hook", now, timings, counts)
            note_config_error(txn, store, config_error, "hook", now)
            return events, unchanged, bool(events) and settings["spawn_drainer"] and claim_drainer_start(
                txn, store, lease, settings["recovery_timeout"], now)

        try:
            events, unchanged, spawn = store.write(txn_fn)
        except SpoolFull:
            log.error("spool is full: event dropped")
            return result
        result.update(events=len(events), unchanged=unchanged, denied=ingest.denied,
                      redactions={k: v for k, v in counts.items() if k.startswith("redaction.")},
                      event_ids=[e["event_id"] for e in events])
        if ingest.denied:
            log.warn(f"{ingest.denied} file(s) matched redaction.deny_globs and were not captured")
        if events and settings["spawn_drainer"]:
            result["drainer"] = spawn
        if config_error is not None:
            result["config_error"] = config_error
    finally:
        store.close()  # before spawning: the drainer opens the store itself
    if result.get("drainer"):
        spawn_drainer(settings["config_path"], settings["data_dir"])
    return result


def main(argv: list[str]) -> int:
    """Always 0: a tracking hook must never disturb the coding session."""
    started = time.time()
    config_path, verbose, unknown = _parse_args(argv)
    fallback_dir = os.environ.get("PATTERN_TRACKER_DATA_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share"), "pattern-tracker")
    log = HookLog(os.path.join(fallback_dir, "hook.log"))  # until the configuration says where
    try:
        from pattern_tracker.settings.hook_settings import hook_settings

        config_error: str | None = None
        try:
            settings = hook_settings(config_path)
        except Exception as exc:
            from pattern_tracker.settings.config import ConfigError  # loaded already when it raised one

            if not isinstance(exc, ConfigError):
                raise
            # Capture does not need the settings that failed: keep the edit with what can be read.
            from pattern_tracker.settings.hook_settings import fallback_settings

            config_error = str(exc)
            settings = fallback_settings(config_path)
        log = HookLog(settings["log_file"] or os.path.join(settings["data_dir"], "hook.log"))
        if config_error is not None:
            log.error(f"{config_error} (edits are kept in the spool, and delivered once it is fixed)")
        if unknown:
            log.warn(f"ignored unknown argument(s) of `pattern-tracker hook`: {' '.join(unknown)[:200]} "
                     "(it takes --config FILE, --verbose and --debug)")
        if not settings["enabled"]:
            return 0
        payload = _read_stdin(int(settings["max_payload_bytes"]))
        if payload is None:
            log.error(f"payload larger than {settings['max_payload_bytes']} bytes (hook.max_payload_bytes): ignored")
            return 0
        if not payload.strip():
            log.error("empty payload on stdin")
            return 0
        result = run_hook(payload, settings, log, started, config_error)
        if verbose:
            print(json.dumps(result))
    except BaseException as exc:  # noqa: BLE001 - exit 0 whatever happens; one line in the log
        if isinstance(exc, KeyboardInterrupt):
            return 0
        message = str(exc).splitlines()[0] if str(exc) else ""
        log.error(f"{type(exc).__name__}: {message}"[:500])
    return 0
