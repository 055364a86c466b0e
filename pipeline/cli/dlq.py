"""``pattern-tracker dlq``: the dead letter (events refused for good), the guide's operating procedures.

    dlq list | show SEQ | replay [SEQ…|--all] | purge [SEQ…|--all]

State in the data directory's LMDB environment, so it works while a ``run`` is going in another
process. Exit codes: 0 ok, 1 failure (unknown SEQ, letters kept by a full spool), 2 usage, 4
events remain in the spool after the replay's drain.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import msgspec

from pattern_tracker.cli.support import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    REASON_WIDTH,
    CliError,
    action_group,
    add_action,
    bounded,
    clean,
    drain_now,
    missing_seqs,
    open_store_for,
    parse_seq,
    parse_seqs,
    print_json,
    print_table,
    truncate,
)
from pattern_tracker.core.timefmt import iso, when


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``dlq`` to the ``pattern-tracker`` subparsers."""
    g = action_group(sub, common, "dlq", "list, show, replay or purge dead letters (events refused for good)",
                     "dlq_command")
    p = add_action(g, common, "list", "one line per dead letter, oldest first (never the code)", cmd_dlq_list)
    p.add_argument("--limit", type=bounded(int, 1), default=100, help="at most N letters (default 100)")
    p = add_action(g, common, "show", "one dead letter in full, with its event (code only with --code)", cmd_dlq_show)
    p.add_argument("seq", metavar="SEQ", help="sequence number from `dlq list`")
    p.add_argument("--code", action="store_true", help="also print the code (it may hold secrets)")
    p = add_action(g, common, "replay", "move letters back into the spool, then drain (after a fix)", cmd_dlq_replay)
    p.add_argument("seqs", nargs="*", metavar="SEQ", help="sequence numbers from `dlq list`")
    p.add_argument("--all", action="store_true", help="every dead letter")
    p.add_argument("--no-drain", action="store_true", help="only move them; the next drain or run delivers them")
    p = add_action(g, common, "purge", "delete dead letters for good", cmd_dlq_purge)
    p.add_argument("seqs", nargs="*", metavar="SEQ", help="sequence numbers from `dlq list`")
    p.add_argument("--all", action="store_true", help="every dead letter (needs --yes)")
    p.add_argument("--yes", action="store_true", help="confirm purging every dead letter")


def _selection(args: argparse.Namespace, verb: str) -> list[int] | None:
    """The SEQ list, or None for --all; a usage error for neither or both."""
    if args.all and args.seqs:
        raise CliError(f"dlq {verb}: give SEQ… or --all, not both", EXIT_USAGE)
    if not args.all and not args.seqs:
        raise CliError(f"dlq {verb}: give the SEQ numbers to {verb} (see `pattern-tracker dlq list`) or --all", EXIT_USAGE)
    return None if args.all else parse_seqs(args.seqs)


def _letter_row(seq: int, letter: Any) -> dict[str, Any]:
    ev = letter.event
    return {
        "seq": seq,
        "failed_at": iso(letter.failed_at),
        "stage": letter.stage,
        "http_status": letter.http_status,
        "error_class": letter.error_class,
        "event_id": ev.event_id,
        "file_path": ev.file_path,
        "reason": letter.reason,
    }


def cmd_dlq_list(args: argparse.Namespace) -> int:
    from pattern_tracker.state.dead_letter import DeadLetters

    _, store = open_store_for(args)
    dead = DeadLetters(store)
    letters = dead.list(limit=args.limit)
    total = dead.size()
    rows = [_letter_row(seq, letter) for seq, letter in letters]
    if args.json:
        print_json({"total": total, "shown": len(rows), "letters": rows})
        return EXIT_OK
    if not rows:
        print("the dead letter is empty")
        return EXIT_OK
    print_table(["SEQ", "FAILED_AT", "STAGE", "HTTP", "ERROR_CLASS", "EVENT_ID", "FILE_PATH", "REASON"], [
        [str(r["seq"]), clean(r["failed_at"]), clean(r["stage"]), clean(r["http_status"]), clean(r["error_class"]),
         clean(r["event_id"]), clean(r["file_path"]), truncate(clean(r["reason"]), REASON_WIDTH)]
        for r in rows
    ])
    if total > len(rows):
        print(f"({len(rows)} of {total} dead letters shown; --limit N for more)")
    return EXIT_OK


def cmd_dlq_show(args: argparse.Namespace) -> int:
    from pattern_tracker.state.dead_letter import DeadLetters

    seq = parse_seq(args.seq)
    _, store = open_store_for(args)
    letter = DeadLetters(store).get(seq)
    if letter is None:
        raise missing_seqs([seq])
    ev = letter.event
    event = msgspec.to_builtins(ev)
    code = event.pop("code", "")
    if args.json:
        out = _letter_row(seq, letter)
        out["failed_at_epoch"] = letter.failed_at
        out["code_chars"] = len(code)
        if args.code:
            event["code"] = code
        out["event"] = event
        print_json(out)
        return EXIT_OK
    now = time.time()
    print(f"dead letter {seq}")
    for key, value in (("failed_at", when(letter.failed_at, now)), ("stage", letter.stage),
                       ("http_status", letter.http_status), ("error_class", letter.error_class),
                       ("reason", letter.reason)):
        print(f"  {key + ':':<21} {clean(value)}")
    print("event")
    for key, value in event.items():
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "-"
        elif isinstance(value, dict):
            value = json.dumps(value) if value else "-"
        elif key == "occurred_at":
            value = when(value, now)
        print(f"  {key + ':':<21} {clean(value)}")
    if args.code:
        print(f"  {'code:':<21} {len(code)} characters, below")
        sys.stdout.write(code if code.endswith("\n") or not code else code + "\n")
    else:
        print(f"  {'code:':<21} hidden ({len(code)} characters; --code shows it, it may hold secrets)")
    return EXIT_OK


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from pattern_tracker.usecases.dead_letters import UnknownLetters, replay_dead_letters

    seqs = _selection(args, "replay")
    cfg, store = open_store_for(args)
    try:
        moved, kept = replay_dead_letters(store, cfg, seqs)
    except UnknownLetters as exc:
        raise missing_seqs(exc.seqs) from None
    out: dict[str, Any] = {"replayed": moved, "kept": kept}
    code = EXIT_OK
    lines = [f"replayed {moved} dead letter(s) into the spool"]
    if kept:
        limits = cfg.pattern_tracking
        lines.append(f"{len(kept)} dead letter(s) kept (seq {', '.join(map(str, kept[:20]))}"
                     f"{'…' if len(kept) > 20 else ''}): the spool is full (cache_size {limits.cache_size}, "
                     f"overflow_policy {limits.overflow_policy}); drain it, then replay again")
        code = EXIT_FAILURE
    if not args.json:
        for line in lines[:1]:
            print(line)
        for line in lines[1:]:
            print(f"pattern-tracker: {line}", file=sys.stderr)
    if moved and not args.no_drain:
        drain_code, result = drain_now(cfg, store, until_empty=False, quiet=args.json)
        out["drain"] = result
        code = code or drain_code
    elif moved and not args.json:
        print("run `pattern-tracker drain` to deliver them now (a running pipeline delivers them too)")
    if args.json:
        print_json(out)
    return code


def cmd_dlq_purge(args: argparse.Namespace) -> int:
    from pattern_tracker.state.dead_letter import DeadLetters

    seqs = _selection(args, "purge")
    _, store = open_store_for(args)
    dead = DeadLetters(store)
    if seqs is None:
        total = dead.size()
        if total and not args.yes:
            raise CliError(f"refusing to purge every dead letter: {total} letter(s) would be deleted for good; "
                           "add --yes", EXIT_USAGE)
        n = dead.purge(None)
    else:
        missing = [seq for seq in seqs if dead.get(seq) is None]
        if missing:
            raise missing_seqs(missing)
        n = dead.purge(seqs)
    if args.json:
        print_json({"purged": n, "left": dead.size()})
    else:
        print(f"purged {n} dead letter(s); {dead.size()} left")
    return EXIT_OK
