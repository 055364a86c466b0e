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

    def _accept(
        self, txn: lmdb.Transaction, changes: Sequence[Change], source: SourceName, now: float
    ) -> tuple[list[PatternEvent], int]:
        """Per change: next version → admitted by the spool's policy → head recorded and event queued.

        A newcomer refused by the overflow policy does not move the file's head, so the chain
        stays whole (the next change becomes that version instead).
        """
        events: list[PatternEvent] = []
        unchanged = 0
        for ch in changes:
            head = self.store.next_version(txn, ch.path, ch.code)
            if head is None:
                unchanged += 1
                continue
            if not self.spool.admit(txn, now):
                continue
            ev = build_event(
                file_path=ch.path,
                code=ch.code,
                version=head.version,
                parent_pattern_id=head.parent,
                chash=head.content_hash,
                source=source,
                occurred_at=ch.occurred_at,
                tool_name=ch.tool_name,
                tool_use_id=ch.tool_use_id,
                session_id=ch.session_id,
                reason=ch.reason,
            )
            self.store.set_head(txn, head)
            self.spool.append(txn, ev, now)
            events.append(ev)
        if events:
            self.spool.counters.add(txn, {"spool.entered": len(events)}, now)
        return events, unchanged

    def accept_changes(self, changes: Sequence[Change], source: SourceName, now: float) -> list[PatternEvent]:
        """New events for the changed files, already durable in the spool (unchanged files give none).

        Raises SpoolFull when the spool is full under the ``block`` policy (nothing is written).
        """
        if not changes:
            return []
        events, unchanged = self.store.write(lambda txn: self._accept(txn, changes, source, now))
        self.unchanged += unchanged
        return events

    def accept_events(self, events: Sequence[PatternEvent], now: float) -> list[PatternEvent]:
        """Events that arrive fully formed (stdin, replay): queue those not already queued."""
        if not events:
            return []
        return self.spool.enqueue(events, now)
