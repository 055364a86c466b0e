"""Making source output durable: version assignment and spool enqueue in one write transaction.

This is the only place where a change becomes an event. Doing both in one transaction means
a version number is never handed out for an event that could then be lost (which would leave a
hole in the lineage chain), and that the event is on disk before the Rx graph sees it.

Standard library only (the hook uses it): events are built as field dicts
(``pipeline.identity.event_record``) and handed to ``make_event`` — ``PatternEvent(**fields)``
by default, the dict itself in the hook.
"""

from __future__ import annotations

import lmdb

from pipeline.hook_payload import Change
from pipeline.identity import event_record
from pipeline.spool import Spool
from pipeline.store import Store

TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any


def _pattern_event(fields: dict[str, Any]) -> Any:
    from pipeline.events import PatternEvent

    return PatternEvent(**fields)


class Ingest:
    def __init__(self, store: Store, spool: Spool | None = None, make_event: Callable[[dict[str, Any]], Any] = _pattern_event) -> None:
        self.store = store
        self.spool = spool or Spool(store)
        self.make_event = make_event
        self.unchanged = 0

    def _accept(
        self, txn: lmdb.Transaction, changes: Sequence[Change], source: str, now: float, timings: dict[str, list[float]] | None
    ) -> tuple[list[Any], int]:
        """Per change: next version → admitted by the spool's policy → head recorded and event queued.

        A newcomer refused by the overflow policy does not move the file's head, so the chain
        stays whole (the next change becomes that version instead).
        """
        events: list[Any] = []
        unchanged = 0
        for ch in changes:
            head = self.store.next_version(txn, ch.path, ch.code)
            if head is None:
                unchanged += 1
                continue
            if not self.spool.admit(txn, now):
                continue
            fields = event_record(
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
                timings=timings,
            )
            self.store.set_head(txn, head)
            self.spool.append(txn, fields, now)
            events.append(fields)
        if events:
            self.spool.counters.add(txn, {"spool.entered": len(events)}, now)
        return events, unchanged

    def accept_changes(
        self, changes: Sequence[Change], source: str, now: float, timings: dict[str, list[float]] | None = None
    ) -> list[Any]:
        """New events for the changed files, already durable in the spool (unchanged files give none).

        Raises SpoolFull when the spool is full under the ``block`` policy (nothing is written).
        """
        if not changes:
            return []
        fields, unchanged = self.store.write(lambda txn: self._accept(txn, changes, source, now, timings))
        self.unchanged += unchanged
        return [self.make_event(f) for f in fields]

    def accept_events(self, events: Sequence[Any], now: float) -> list[Any]:
        """Events that arrive fully formed (stdin, replay): queue those not already queued."""
        if not events:
            return []
        return self.spool.enqueue(events, now)
