"""Moving a team over: every node of an embedded (LMDB) lineage store copied into another store.

Nodes go oldest first (parents before children), in chunks; each chunk is one transaction of the
target, which keeps the nodes' ids and skips the ones it already holds. So the copy is idempotent
(a second run copies 0) and resumable: an interrupted run (Ctrl-C, a kill, the database gone)
leaves whole chunks behind, and running it again copies what is missing. Prints nothing: the CLI
shows the progress and the summary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec

from pattern_tracker.sinks.lineage_export import NodeExport
from pattern_tracker.sinks.lineage_layout import Node

__all__ = ["CopyResult", "NodeImporter", "copy_lineage"]


class NodeImporter(Protocol):
    """The target: stores the nodes given (their ids kept) in one transaction; returns how many
    were new (the others it held already)."""

    async def import_nodes(self, nodes: Sequence[Node]) -> int: ...


class CopyResult(msgspec.Struct, kw_only=True):
    source_nodes: int  # nodes in the embedded store
    copied: int  # new in the target
    already_there: int  # the target held them already (an earlier run, or the same events tracked)
    seconds: float
    interrupted: bool = False  # stopped before the end: run again to copy the rest

    @property
    def done(self) -> int:
        return self.copied + self.already_there


async def copy_lineage(export: NodeExport, target: NodeImporter, *, chunk_size: int = 1000,
                       on_progress: Callable[[int], None] | None = None,
                       stop: asyncio.Event | None = None) -> CopyResult:
    """Copy ``export``'s nodes into ``target``, ``chunk_size`` per transaction; ``on_progress(done)``
    after each chunk. ``stop`` ends the copy after the chunk in hand (``interrupted``).
    A target that cannot be reached raises (``LineageUnavailable``): what was copied stays."""
    started = time.monotonic()
    copied = already = 0
    interrupted = False
    for chunk in export.chunks(max(1, chunk_size)):
        if stop is not None and stop.is_set():
            interrupted = True
            break
        new = await target.import_nodes(chunk)
        copied += new
        already += len(chunk) - new
        if on_progress is not None:
            on_progress(copied + already)
    return CopyResult(source_nodes=len(export), copied=copied, already_there=already,
                      seconds=round(time.monotonic() - started, 3), interrupted=interrupted)
