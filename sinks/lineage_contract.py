"""The lineage store interface: the operations serve and the embedded sink use, and their errors.

Two shapes of one contract (the Phase 4 API contract, docs/phase4-contract.md, and the behaviour
of the real service, down to the error texts):

* :class:`LineageBackend` blocks: the LMDB store (:class:`pattern_tracker.sinks.lineage_store.LineageStore`),
  which the embedded sink calls from the pipeline's threads;
* :class:`AsyncLineageBackend` awaits: what ``serve`` talks to. A blocking backend becomes one
  through :class:`pattern_tracker.sinks.lineage_threaded.ThreadedLineage` (one worker thread); a
  database backend implements it natively.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from pattern_tracker.model.events import TrackRequest

__all__ = [
    "OPERATIONS",
    "AsyncLineageBackend",
    "FilesPage",
    "LineageBackend",
    "LineageUnavailable",
    "LineageValidationError",
    "PatternNotFound",
    "TrackResult",
    "is_notebook",
    "operation_for",
]

# event_type -> operation (the service maps unknown-but-valid types, e.g. pattern_validated, to creation).
OPERATIONS: dict[str, str] = {
    "pattern_created": "track_creation",
    "pattern_modified": "track_modification",
    "pattern_merged": "track_merge",
    "pattern_applied": "track_application",
    "pattern_deprecated": "track_deprecation",
    "pattern_forked": "track_fork",
}


def operation_for(event_type: str) -> str:
    return OPERATIONS.get(event_type, "track_creation")


def is_notebook(file_path: str) -> bool:
    """A Jupyter notebook, whose cells are tracked as ``PATH#CELL_ID`` (see ``LineageStore.query``)."""
    return file_path.lower().endswith(".ipynb")


class LineageValidationError(ValueError):
    """A rule violation. ``detail`` is the service's exact text.

    ``kind="static"``: checkable without state (the service answers 400 ``{"detail": ...}``, and a
    batch holding one is refused as a whole). ``kind="execution"``: depends on stored state (the
    service answers 400 ``{"success": false, "error": ...}``; in a batch only that event fails).
    ``parent_missing`` marks "Parent pattern not found" (the parent may still be in flight).
    """

    def __init__(self, detail: str, *, kind: Literal["static", "execution"] = "static", parent_missing: bool = False):
        super().__init__(detail)
        self.detail = detail
        self.kind = kind
        self.parent_missing = parent_missing


class PatternNotFound(LookupError):
    def __init__(self, pattern_id: str):
        self.pattern_id = pattern_id
        self.detail = f"Validation error: Pattern not found: {pattern_id}"
        super().__init__(self.detail)


class LineageUnavailable(RuntimeError):
    """The store cannot answer now (a database down or restarting, no connection in time).

    ``serve`` answers 503 with ``Retry-After: retry_after`` (the tracker's breaker and spool keep
    the events), and its ``/health`` names ``component`` with ``reason``. Never holds a password.
    """

    def __init__(self, component: str, reason: str, retry_after: int = 2) -> None:
        super().__init__(f"{component} unavailable: {reason}")
        self.component = component
        self.reason = reason
        self.retry_after = retry_after


# One page of tracked files (stand-in extension, never part of the service's contract):
# {"files": [FileSummary...], "next": cursor or None}. A FileSummary is a dict with
#   file_path, language, versions (nodes of that path), first_seen, last_seen (created_at of the
#   oldest / newest node), last_edit (the newest node's edit time: pattern_data["occurred_at"] when
#   present, else its created_at), last_session (pattern_data["session_id"] or None), last_tool,
#   last_pattern_id, last_pattern_version, last_generation. Times are ISO 8601 UTC strings as
#   created_at writes them (``datetime.isoformat()``, ``+00:00``; occurred_at is epoch seconds).
# Files are ordered by file_path (code-point order); ``next`` is the last path of the page when more
# files follow (else None), passed back as ``after``. ``search`` keeps the paths holding it
# (case-insensitive substring, ``str.lower``). ``limit`` is clamped to 1..1000.
FilesPage = dict[str, Any]

# One event's result in a batch: the ``data`` of its success body, or the rule it broke.
TrackResult = dict[str, Any] | LineageValidationError


class LineageBackend(Protocol):
    """What serve (and the embedded sink) ask of a lineage store. Calls block: run them off the
    event loop. Results are the ``data`` of the service's success bodies."""

    def validate_batch(self, reqs: Sequence[TrackRequest]) -> str | None:
        """The all-or-nothing static validation of a batch: the first violation's text, or None."""
        ...

    def track(self, req: TrackRequest) -> dict[str, Any]:
        """Track one event; raises :class:`LineageValidationError`."""
        ...

    def track_many(self, reqs: Sequence[TrackRequest], processing_mode: str = "sequential", *,
                   before_commit: Callable[[], None] | None = None) -> list[TrackResult]:
        """Track events in one transaction, in list order, one result each."""
        ...

    def ancestry(self, pattern_id: str) -> dict[str, Any]:
        """The node and its ancestors; raises :class:`PatternNotFound`."""
        ...

    def descendants(self, pattern_id: str) -> dict[str, Any]:
        """The direct children of the newest node; raises :class:`PatternNotFound`."""
        ...

    def query(self, file_path: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Nodes of a file (with a notebook's cells), oldest first."""
        ...

    def count(self) -> int:
        """Number of nodes (also the health probe)."""
        ...

    def get(self, pattern_id: str, version: str | None = None) -> dict[str, Any] | None:
        """One node as a dict (the given version, or the newest), or None."""
        ...

    def list_files(self, search: str | None = None, after: str | None = None, limit: int = 50) -> FilesPage:
        """One page of tracked files (see :data:`FilesPage`), answered from indexes, not a full scan
        per page where it can be helped: the UI pages through 100k nodes' files."""
        ...


class AsyncLineageBackend(Protocol):
    """What ``serve`` asks of a lineage store: :class:`LineageBackend`'s operations, awaited.

    A failure to reach the store raises :class:`LineageUnavailable` (serve answers 503).
    ``start`` opens it (a database backend connects and migrates its schema), ``close`` releases it.
    """

    name: str  # "lmdb" or "postgresql": shown by /health and serve's start line

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def validate_batch(self, reqs: Sequence[TrackRequest]) -> str | None:
        """Static validation: pure, no I/O, so not awaited."""
        ...

    async def track(self, req: TrackRequest) -> dict[str, Any]: ...

    async def track_many(self, reqs: Sequence[TrackRequest], processing_mode: str = "sequential", *,
                         before_commit: Callable[[], None] | None = None) -> list[TrackResult]: ...

    async def ancestry(self, pattern_id: str) -> dict[str, Any]: ...

    async def descendants(self, pattern_id: str) -> dict[str, Any]: ...

    async def query(self, file_path: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    async def count(self) -> int: ...

    async def get(self, pattern_id: str, version: str | None = None) -> dict[str, Any] | None: ...

    async def list_files(self, search: str | None = None, after: str | None = None,
                         limit: int = 50) -> FilesPage: ...

    async def status(self) -> str:
        """``"operational"``, or why not (``"database_unavailable: <reason>"``): the health probe."""
        ...
