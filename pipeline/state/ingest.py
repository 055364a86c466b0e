"""Making source output durable: version assignment and spool enqueue in one write transaction.

This is the only place where a change becomes an event. Doing both in one transaction means
a version number is never handed out for an event that could then be lost (which would leave a
hole in the lineage chain), and that the event is on disk before the Rx graph sees it.

Standard library only (the hook uses it): events are built as field dicts
(``pattern_tracker.core.identity.event_record``) and handed to ``make_event`` — ``PatternEvent(**fields)``
by default, the dict itself in the hook.
"""

from __future__ import annotations

import lmdb

from pattern_tracker.core.capture import Change
from pattern_tracker.core.identity import event_record
from pattern_tracker.state.spool import Spool
from pattern_tracker.core.store import Store

TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from pattern_tracker.core.redact import Redactor


def _pattern_event(fields: dict[str, Any]) -> Any:
    from pattern_tracker.model.events import PatternEvent

    return PatternEvent(**fields)


class Ingest:
    def __init__(
        self,
        store: Store,
        spool: Spool | None = None,
        make_event: Callable[[dict[str, Any]], Any] = _pattern_event,
        redactor: Redactor | None = None,
        deny_globs: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.spool = spool or Spool(store)
        self.make_event = make_event
        self.redactor = redactor
        self.deny_globs = list(deny_globs)
        self.unchanged = 0
        self.denied = 0

    def screen(self, changes: Sequence[Change]) -> tuple[list[Change], dict[str, int]]:
        """Before anything is stored: deny-listed files are dropped, secrets are redacted.

        Runs outside the write transaction (the writer lock is shared by every process).
        Returns the changes to keep and the counts (``redaction.<kind>``, ``redaction.denied_files``).
        """
        if not self.deny_globs and self.redactor is None:
            return list(changes), {}
        from pattern_tracker.core.deny_globs import is_denied

        kept: list[Change] = []
        counts: dict[str, int] = {}
        for ch in changes:
            if self.deny_globs and is_denied(ch.path.split("#", 1)[0], self.deny_globs):
                counts["redaction.denied_files"] = counts.get("redaction.denied_files", 0) + 1
                self.denied += 1
                continue
            if self.redactor is not None:
                ch.code, found = self.redactor.redact(ch.code)
                for kind, n in found.items():
                    counts[f"redaction.{kind}"] = counts.get(f"redaction.{kind}", 0) + n
            kept.append(ch)
        return kept, counts

    def accept_in(
        self,
        txn: lmdb.Transaction,
        changes: Sequence[Change],
        source: str,
        now: float,
        timings: dict[str, list[float]] | None = None,
        counts: dict[str, int] | None = None,
    ) -> tuple[list[Any], int]:
        """Per (screened) change, inside the caller's write txn: next version → admitted by the
        spool's policy → head recorded and event queued. Returns (event field dicts, unchanged).

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
        self.spool.counters.add(txn, {**(counts or {}), "spool.entered": len(events)}, now)
        return events, unchanged

    def accept_changes(
        self, changes: Sequence[Change], source: str, now: float, timings: dict[str, list[float]] | None = None
    ) -> list[Any]:
        """New events for the changed files, already durable in the spool (unchanged files give none).

        Raises SpoolFull when the spool is full under the ``block`` policy (nothing is written).
        """
        if not changes:
            return []
        kept, counts = self.screen(changes)
        fields, unchanged = self.store.write(lambda txn: self.accept_in(txn, kept, source, now, timings, counts))
        self.unchanged += unchanged
        return [self.make_event(f) for f in fields]

    def accept_events(self, events: Sequence[Any], now: float) -> list[Any]:
        """Events that arrive fully formed (stdin): screened like changes, then queued unless queued."""
        if not events:
            return []
        kept: list[Any] = []
        counts: dict[str, int] = {}
        for ev in events:
            path = (ev.get("file_path") if isinstance(ev, dict) else ev.file_path) or ""
            code = ev.get("code", "") if isinstance(ev, dict) else ev.code
            screened, found = self.screen([Change(path=path, code=code, occurred_at=now)])
            for k, n in found.items():
                counts[k] = counts.get(k, 0) + n
            if not screened:
                continue
            if isinstance(ev, dict):
                ev["code"] = screened[0].code
            else:
                ev.code = screened[0].code
            kept.append(ev)

        def txn_fn(txn: lmdb.Transaction) -> list[Any]:
            self.spool.counters.add(txn, counts, now)
            return self.spool.put(txn, kept, now)

        return self.store.write(txn_fn)
