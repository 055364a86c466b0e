"""Making source output durable: version assignment and spool enqueue in one write transaction.

This is the only place where a change becomes a PatternEvent. Doing both in one transaction
means a version number is never handed out for an event that could then be lost (which would
leave a hole in the lineage chain), and that the event is on disk before the Rx graph sees it.
"""

from __future__ import annotations

from collections.abc import Sequence

import lmdb

from pipeline.events import PatternEvent, SourceName, build_event
from pipeline.hook_payload import Change
from pipeline.spool import Spool
from pipeline.store import Store


class Ingest:
    def __init__(self, store: Store, spool: Spool | None = None) -> None:
        self.store = store
        self.spool = spool or Spool(store)
        self.unchanged = 0

    def _events_for(self, txn: lmdb.Transaction, changes: Sequence[Change], source: SourceName) -> list[PatternEvent]:
        events: list[PatternEvent] = []
        for ch in changes:
            assigned = self.store.assign_version(txn, ch.path, ch.code)
            if assigned is None:
                continue
            version, parent, chash = assigned
            events.append(
                build_event(
                    file_path=ch.path,
                    code=ch.code,
                    version=version,
                    parent_pattern_id=parent,
                    chash=chash,
                    source=source,
                    occurred_at=ch.occurred_at,
                    tool_name=ch.tool_name,
                    tool_use_id=ch.tool_use_id,
                    session_id=ch.session_id,
                    reason=ch.reason,
                )
            )
        return events

    def accept_changes(self, changes: Sequence[Change], source: SourceName, now: float) -> list[PatternEvent]:
        """New events for the changed files, already durable in the spool (unchanged files give none)."""
        if not changes:
            return []

        def txn_fn(txn: lmdb.Transaction) -> list[PatternEvent]:
            return self.spool.put(txn, self._events_for(txn, changes, source), now)

        events = self.store.write(txn_fn)
        self.unchanged += len(changes) - len(events)
        return events

    def accept_events(self, events: Sequence[PatternEvent], now: float) -> list[PatternEvent]:
        """Events that arrive fully formed (stdin, replay): queue those not already queued."""
        if not events:
            return []
        return self.spool.enqueue(events, now)
