"""Replay dead letters into the spool (after a fix), the one replay behind ``pattern-tracker dlq
replay``. Prints nothing; the caller drains afterwards if it wants them delivered now."""

from __future__ import annotations

import time
from typing import Any

CHUNK = 100  # letters moved per write transaction when replaying every letter


class UnknownLetters(LookupError):
    """Some of the SEQ numbers asked for are not dead letters; nothing was moved."""

    def __init__(self, seqs: list[int]) -> None:
        super().__init__(seqs)
        self.seqs = seqs


def replay_dead_letters(store: Any, cfg: Any, seqs: list[int] | None) -> tuple[int, list[int]]:
    """Move letters into the spool, each removed from the dead letter in the same write txn.

    ``seqs`` None: every letter present now (a drain elsewhere may add new ones meanwhile).
    Returns (moved, kept): letters the full spool has no free room for stay in the dead letter,
    whatever the overflow policy (a letter never pushes a spooled event out). SEQ lists are all-or-nothing on unknown numbers
    (``UnknownLetters``).
    """
    from pattern_tracker.composition import spool_for
    from pattern_tracker.state.dead_letter import DeadLetters
    from pattern_tracker.state.spool import SpoolFull

    dead = DeadLetters(store)
    spool = spool_for(cfg, store)
    spool_db = store.db("spool")
    limits = spool.limits

    def move(txn: Any, wanted: list[int], strict: bool) -> tuple[int, list[int]]:
        now = time.time()
        letters = [(seq, dead.get(seq, txn)) for seq in wanted]
        if strict:
            missing = [seq for seq, letter in letters if letter is None]
            if missing:
                raise UnknownLetters(missing)
        moved: list[int] = []
        kept: list[int] = []
        for seq, letter in letters:
            if letter is None:
                continue  # gone meanwhile (another operator); nothing to move
            ev = letter.event
            if not spool.queued(txn, ev.event_id):
                if txn.stat(spool_db)["entries"] >= limits.bound:
                    # Free room only, whatever the policy: under drop_oldest the letter would push
                    # out a spooled event (a live edit, or a letter replayed a moment ago) that
                    # has no other record, while the letter has one: it stays a dead letter.
                    kept.append(seq)
                    continue
                try:
                    if not spool.put(txn, [ev], now):
                        kept.append(seq)
                        continue
                except SpoolFull:
                    kept.append(seq)
                    continue
            moved.append(seq)
        dead.remove(txn, moved)
        dead.counters.add(txn, {"dead_letter.replayed": len(moved)}, now)
        return len(moved), kept

    if seqs is not None:
        return store.write(lambda txn: move(txn, seqs, True))  # type: ignore[no-any-return]
    total_moved = 0
    total_kept: list[int] = []
    upto = dead.last_seq()  # the letters present now (a drain elsewhere may add new ones)
    after = 0
    while True:
        page = [seq for seq, _ in dead.list(limit=CHUNK, after=after, upto=upto)]
        if not page:
            break
        after = page[-1]
        moved, kept = store.write(lambda txn, page=page: move(txn, page, False))
        total_moved += moved
        total_kept += kept
    return total_moved, total_kept
