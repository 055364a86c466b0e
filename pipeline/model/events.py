"""PatternEvent — the one event type every source emits — and the Phase 4 wire structs.

The identity scheme and the fields of an event are decided in ``pattern_tracker.core.identity`` (standard
library only, for the hook); this module is their msgspec face and the wire mapping.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from pattern_tracker.core.identity import TRIGGERED_BY, content_hash, event_id_for, event_record

EventType = Literal[
    "pattern_created",
    "pattern_modified",
    "pattern_merged",
    "pattern_applied",
    "pattern_deprecated",
    "pattern_forked",
    "pattern_validated",
]
EdgeType = Literal["derived_from", "modified_from", "merged_from", "replaced_by", "inspired_by", "deprecated_by"]
TransformationType = Literal["refactor", "enhancement", "bugfix", "merge", "optimization", "simplification"]
SourceName = Literal["hook", "watch", "replay", "stdin", "spool", "api"]

EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
EDGE_TYPES: tuple[str, ...] = EdgeType.__args__  # type: ignore[attr-defined]
TRANSFORMATION_TYPES: tuple[str, ...] = TransformationType.__args__  # type: ignore[attr-defined]

Str255 = Annotated[str, msgspec.Meta(max_length=255)]
Str100 = Annotated[str, msgspec.Meta(max_length=100)]
Str50 = Annotated[str, msgspec.Meta(max_length=50)]


class PatternEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One version of one pattern (today: one file's content after a change)."""

    event_id: str
    event_type: EventType
    pattern_id: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    pattern_version: Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
    pattern_name: Str255 = ""
    pattern_type: Str100 = "code"
    language: Str50 | None = None
    file_path: str | None = None
    code: str = ""
    content_hash: str = ""
    parent_pattern_ids: list[str] = msgspec.field(default_factory=list)
    edge_type: EdgeType | None = None
    transformation_type: TransformationType | None = None
    tool_name: str | None = None
    tool_use_id: str | None = None
    session_id: str | None = None
    source: SourceName = "api"
    triggered_by: Str100 = "api"
    occurred_at: float = 0.0
    reason: str | None = None
    # Stage timings recorded where spans are too expensive (the hook): {stage: [start, end]}.
    timings: dict[str, list[float]] = msgspec.field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Phase 4 wire structs (docs/phase4-contract.md). Encoding omits nothing the service reads.


class TrackRequest(msgspec.Struct, kw_only=True, omit_defaults=False):
    """Body of POST /lineage/track and one element of a batch."""

    event_type: str
    pattern_id: str
    pattern_name: str = ""
    pattern_type: str = "code"
    pattern_version: str = "1.0.0"
    tool_name: str | None = None
    file_path: str | None = None
    language: str | None = "python"
    pattern_data: dict[str, Any] = msgspec.field(default_factory=dict)
    parent_pattern_ids: list[str] = msgspec.field(default_factory=list)
    edge_type: str | None = None
    transformation_type: str | None = None
    reason: str | None = None
    triggered_by: str = "api"


class BatchTrackRequest(msgspec.Struct, kw_only=True):
    events: list[TrackRequest]
    batch_id: str | None = None
    processing_mode: Literal["parallel", "sequential"] = "parallel"


class BatchSummary(msgspec.Struct, kw_only=True):
    total_events: int
    successful_events: int
    failed_events: int
    handled_duplicates: int = 0
    processing_mode: str = "parallel"
    requested_processing_mode: str = "parallel"


class BatchSuccess(msgspec.Struct, kw_only=True):
    event_index: int
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    pattern_id: str | None = None


class BatchFailure(msgspec.Struct, kw_only=True):
    event_index: int
    error: str = ""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    pattern_id: str | None = None


class BatchTrackResponse(msgspec.Struct, kw_only=True):
    success: bool
    batch_summary: BatchSummary
    successful_results: list[BatchSuccess] = msgspec.field(default_factory=list)
    failed_results: list[BatchFailure] | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class Decoded(list["PatternEvent"]):
    """Events a msgspec decoder made from bytes (an archive's chunk): the decoder held every field
    to ``PatternEvent``'s types and constraints (the Literals, the lengths), so validation has left
    only the rules no single field states (a modification's parent, a merge's parents). An event
    built in Python is never checked so: the constructor checks nothing."""

    __slots__ = ()


def build_event(**kwargs: Any) -> PatternEvent:
    """The event for one version of one file (arguments of ``pattern_tracker.core.identity.event_record``)."""
    return PatternEvent(**event_record(**kwargs))


# ---------------------------------------------------------------------------------------
# Mapping to and from the wire

_PATTERN_DATA_KEYS = ("event_id", "content_hash", "session_id", "tool_use_id", "source", "occurred_at")


def to_track_request(ev: PatternEvent) -> TrackRequest:
    data: dict[str, Any] = {"code": ev.code, "language": ev.language, "file_path": ev.file_path}
    for key in _PATTERN_DATA_KEYS:
        value = getattr(ev, key)
        if value not in (None, ""):
            data[key] = value
    return TrackRequest(
        event_type=ev.event_type,
        pattern_id=ev.pattern_id,
        pattern_name=ev.pattern_name,
        pattern_type=ev.pattern_type,
        pattern_version=ev.pattern_version,
        tool_name=ev.tool_name,
        file_path=ev.file_path,
        language=ev.language,
        pattern_data=data,
        parent_pattern_ids=list(ev.parent_pattern_ids),
        edge_type=ev.edge_type,
        transformation_type=ev.transformation_type,
        reason=ev.reason,
        triggered_by=ev.triggered_by,
    )


def from_track_request(req: TrackRequest) -> PatternEvent:
    """Inverse of ``to_track_request`` (what the embedded store and ``serve`` receive)."""
    data = req.pattern_data or {}
    source = data.get("source") if data.get("source") in TRIGGERED_BY else "api"
    chash = str(data.get("content_hash") or "")
    code = data.get("code")
    code = code if isinstance(code, str) else ""
    occurred = data.get("occurred_at")
    return PatternEvent(
        event_id=str(data.get("event_id") or event_id_for(req.pattern_id, req.pattern_version)),
        event_type=req.event_type,  # type: ignore[arg-type]
        pattern_id=req.pattern_id,
        pattern_version=req.pattern_version,
        pattern_name=req.pattern_name,
        pattern_type=req.pattern_type,
        language=req.language,
        file_path=req.file_path,
        code=code,
        content_hash=chash or (content_hash(code) if code else ""),
        parent_pattern_ids=list(req.parent_pattern_ids),
        edge_type=req.edge_type,  # type: ignore[arg-type]
        transformation_type=req.transformation_type,  # type: ignore[arg-type]
        tool_name=req.tool_name,
        tool_use_id=data.get("tool_use_id") if isinstance(data.get("tool_use_id"), str) else None,
        session_id=data.get("session_id") if isinstance(data.get("session_id"), str) else None,
        source=source,  # type: ignore[arg-type]
        triggered_by=req.triggered_by,
        occurred_at=float(occurred) if isinstance(occurred, (int, float)) else 0.0,
        reason=req.reason,
    )


def to_batch_request(events: list[PatternEvent], batch_id: str | None = None) -> BatchTrackRequest:
    """Sequential mode when a batch holds a parent and its child (parallel mode has no order)."""
    ids = {ev.pattern_id for ev in events}
    has_internal_parent = any(p in ids for ev in events for p in ev.parent_pattern_ids)
    return BatchTrackRequest(
        events=[to_track_request(ev) for ev in events],
        batch_id=batch_id,
        processing_mode="sequential" if has_internal_parent else "parallel",
    )


# Codecs shared by every module (msgspec encoders/decoders are reusable and thread-safe).
event_encoder = msgspec.msgpack.Encoder()
event_decoder = msgspec.msgpack.Decoder(PatternEvent)
json_encoder = msgspec.json.Encoder()
event_json_decoder = msgspec.json.Decoder(PatternEvent)
track_request_decoder = msgspec.json.Decoder(TrackRequest)
batch_request_decoder = msgspec.json.Decoder(BatchTrackRequest)
batch_response_decoder = msgspec.json.Decoder(BatchTrackResponse)
