"""The lineage store interface: the operations serve and the embedded sink use, and their errors.

One implementation today (:class:`pattern_tracker.sinks.lineage_store.LineageStore`, on LMDB);
a second one (PostgreSQL) follows the same contract: the Phase 4 API contract
(docs/phase4-contract.md) and the behaviour of the real service, down to the error texts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from pattern_tracker.model.events import TrackRequest

__all__ = [
    "OPERATIONS",
    "LineageBackend",
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
