"""Operator commands of ``pattern-tracker``: the guide's operating procedures.

    dlq list | show SEQ | replay [SEQ…|--all] | purge [SEQ…|--all]   the dead letter
    circuit status | reset | open | disable                           the shared circuit breaker
    cache stats | clear | cleanup                                     the spool ("pattern cache")
    cache quarantine list | export DIR [SEQ…] | purge [SEQ…] --yes    spool entries that cannot be decoded
    drain [--until-empty]                                             deliver the spool's backlog now

Everything is state in the data directory's LMDB environment, so every command works while a
``run`` is going in another process. Errors are one line on stderr and an exit code: 0 ok,
1 failure, 2 usage, 4 events remain in the spool after a drain (service unavailable, circuit
open or drain interrupted: the next drain or run delivers them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from pattern_tracker.usecases.status import circuit_view
from pattern_tracker.core.timefmt import duration, iso, when
from pattern_tracker.cli.support import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_PENDING,
    EXIT_USAGE,
    CliError,
    clean,
    install_stop,
    one_line_errors,
    open_store_for,
    print_json,
    truncate,
)

REASON_WIDTH = 80

# ---------------------------------------------------------------------------------------
# Parser


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``dlq``, ``circuit``, ``cache`` and ``drain`` to the ``pattern-tracker`` subparsers."""

    def leaf(group: Any, name: str, help: str, func: Any, json_flag: bool = True) -> argparse.ArgumentParser:
        p = one_line_errors(group.add_parser(name, parents=[common], help=help, description=help))
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=func)
        return p

    def group(name: str, help: str, dest: str, parent: Any = sub) -> Any:
        p = one_line_errors(parent.add_parser(name, parents=[common], help=help, description=help))
        g = p.add_subparsers(dest=dest, metavar="ACTION")
        g.required = True
        return g

    g = group("dlq", "list, show, replay or purge dead letters (events refused for good)", "dlq_command")
    p = leaf(g, "list", "one line per dead letter, oldest first (never the code)", cmd_dlq_list)
    p.add_argument("--limit", type=int, default=100, help="at most N letters (default 100)")
    p = leaf(g, "show", "one dead letter in full, with its event (code only with --code)", cmd_dlq_show)
    p.add_argument("seq", metavar="SEQ", help="sequence number from `dlq list`")
    p.add_argument("--code", action="store_true", help="also print the code (it may hold secrets)")
    p = leaf(g, "replay", "move letters back into the spool, then drain (after a fix)", cmd_dlq_replay)
    p.add_argument("seqs", nargs="*", metavar="SEQ", help="sequence numbers from `dlq list`")
    p.add_argument("--all", action="store_true", help="every dead letter")
    p.add_argument("--no-drain", action="store_true", help="only move them; the next drain or run delivers them")
    p = leaf(g, "purge", "delete dead letters for good", cmd_dlq_purge)
    p.add_argument("seqs", nargs="*", metavar="SEQ", help="sequence numbers from `dlq list`")
    p.add_argument("--all", action="store_true", help="every dead letter (needs --yes)")
    p.add_argument("--yes", action="store_true", help="confirm purging every dead letter")

    g = group("circuit", "show or set the circuit breaker shared by every process", "circuit_command")
    leaf(g, "status", "state, counts and when the next trial call is admitted", cmd_circuit_status)
    leaf(g, "reset", "close the circuit and clear its failure counts", cmd_circuit_reset)
    leaf(g, "open", "force the circuit open: nothing is sent until `circuit reset`", cmd_circuit_open)
    leaf(g, "disable", "turn the breaker off: everything is sent, nothing is counted", cmd_circuit_disable)

    g = group("cache", "the pattern cache (the spool of undelivered events)", "cache_command")
    leaf(g, "stats", "size, bound, oldest age and what entered, spilled, replayed, expired, dropped", cmd_cache_stats)
    p = leaf(g, "clear", "drop every spooled event (they are lost)", cmd_cache_clear)
    p.add_argument("--yes", action="store_true", help="confirm: the events are not delivered")
    leaf(g, "cleanup", "expire the entries older than pattern_tracking.cache_ttl now", cmd_cache_cleanup)
    q = group("quarantine", "spool entries that cannot be decoded, kept byte for byte", "quarantine_command", g)
    leaf(q, "list", "one line per quarantined entry: seq, size, when and why (never the bytes)", cmd_quarantine_list)
    p = leaf(q, "export", "write entries' raw bytes to DIR/quarantine-SEQ.bin (they stay in quarantine)",
             cmd_quarantine_export)
    p.add_argument("dir", metavar="DIR", help="where to write (created mode 0700; existing files are never overwritten)")
    p.add_argument("seqs", nargs="*", metavar="SEQ", help="sequence numbers from `cache quarantine list` (default: all)")
    p = leaf(q, "purge", "delete quarantined entries for good", cmd_quarantine_purge)
    p.add_argument("seqs", nargs="*", metavar="SEQ", help="sequence numbers from `cache quarantine list` (default: all)")
    p.add_argument("--yes", action="store_true", help="confirm: the entries' bytes are deleted for good")

    p = one_line_errors(sub.add_parser(
        "drain", parents=[common], help="deliver the spool's backlog now, then exit",
        description="Deliver the spool's backlog now, then exit. Exit 0: the spool is empty; "
                    "4: events remain (service unavailable, circuit open, or interrupted).",
    ))
    p.add_argument("--until-empty", action="store_true",
                   help="keep going through open-circuit periods until the spool is empty (Ctrl-C stops)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_drain)


# ---------------------------------------------------------------------------------------
# Helpers

def _seq(value: str, listing: str = "dlq list") -> int:
    try:
        seq = int(value, 10)
    except ValueError:
        seq = 0
    if seq < 1:
        raise CliError(f"SEQ must be a positive integer (see `pattern-tracker {listing}`), got {value!r}", EXIT_USAGE)
    return seq


def _seqs(values: Sequence[str], listing: str = "dlq list") -> list[int]:
    """The SEQ arguments as numbers, in order, each once."""
    return list(dict.fromkeys(_seq(v, listing) for v in values))


def _selection(args: argparse.Namespace, verb: str) -> list[int] | None:
    """The SEQ list, or None for --all; a usage error for neither or both."""
    if args.all and args.seqs:
        raise CliError(f"dlq {verb}: give SEQ… or --all, not both", EXIT_USAGE)
    if not args.all and not args.seqs:
        raise CliError(f"dlq {verb}: give the SEQ numbers to {verb} (see `pattern-tracker dlq list`) or --all", EXIT_USAGE)
    return None if args.all else _seqs(args.seqs)


def _missing(seqs: Sequence[int], what: str = "dead letter", listing: str = "dlq list",
             code: int = EXIT_FAILURE) -> CliError:
    listed = ", ".join(str(s) for s in seqs)
    return CliError(f"no {what} with seq {listed} (nothing changed; see `pattern-tracker {listing}`)", code)


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    """Columns padded to their widest cell; the last one (a reason) is not padded."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


# ---------------------------------------------------------------------------------------
# dlq


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

    if args.limit < 1:
        raise CliError(f"--limit must be at least 1, got {args.limit}", EXIT_USAGE)
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
    _print_table(["SEQ", "FAILED_AT", "STAGE", "HTTP", "ERROR_CLASS", "EVENT_ID", "FILE_PATH", "REASON"], [
        [str(r["seq"]), clean(r["failed_at"]), clean(r["stage"]), clean(r["http_status"]), clean(r["error_class"]),
         clean(r["event_id"]), clean(r["file_path"]), truncate(clean(r["reason"]), REASON_WIDTH)]
        for r in rows
    ])
    if total > len(rows):
        print(f"({len(rows)} of {total} dead letters shown; --limit N for more)")
    return EXIT_OK


def cmd_dlq_show(args: argparse.Namespace) -> int:
    from pattern_tracker.state.dead_letter import DeadLetters

    seq = _seq(args.seq)
    _, store = open_store_for(args)
    letter = DeadLetters(store).get(seq)
    if letter is None:
        raise _missing([seq])
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


class _Missing(Exception):
    def __init__(self, seqs: list[int]) -> None:
        super().__init__(seqs)
        self.seqs = seqs


def _replay_letters(store: Any, cfg: Any, seqs: list[int] | None) -> tuple[int, list[int]]:
    """Move letters into the spool, each removed from the dead letter in the same write txn.

    Returns (moved, kept): letters the spool's bound refuses (policy drop_newest or block
    while full) stay in the dead letter. SEQ lists are all-or-nothing on unknown numbers.
    """
    from pattern_tracker.composition import spool_for
    from pattern_tracker.state.dead_letter import DeadLetters
    from pattern_tracker.state.spool import SpoolFull

    dead = DeadLetters(store)
    spool = spool_for(cfg, store)
    spool_db = store.db("spool")
    limits = spool.limits
    chunk = 100

    def move(txn: Any, wanted: list[int], strict: bool) -> tuple[int, list[int]]:
        now = time.time()
        letters = [(seq, dead.get(seq, txn)) for seq in wanted]
        if strict:
            missing = [seq for seq, letter in letters if letter is None]
            if missing:
                raise _Missing(missing)
        moved: list[int] = []
        kept: list[int] = []
        for seq, letter in letters:
            if letter is None:
                continue  # gone meanwhile (another operator); nothing to move
            ev = letter.event
            if not spool.queued(txn, ev.event_id):
                full = txn.stat(spool_db)["entries"] >= limits.bound
                if full and limits.policy != "drop_oldest":
                    kept.append(seq)  # refused by the bound: keep the letter rather than lose it
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
        try:
            return store.write(lambda txn: move(txn, seqs, True))
        except _Missing as exc:
            raise _missing(exc.seqs) from None
    total_moved = 0
    total_kept: list[int] = []
    upto = dead.last_seq()  # the letters present now (a drain elsewhere may add new ones)
    after = 0
    while True:
        page = [seq for seq, _ in dead.list(limit=chunk, after=after, upto=upto)]
        if not page:
            break
        after = page[-1]
        moved, kept = store.write(lambda txn, page=page: move(txn, page, False))
        total_moved += moved
        total_kept += kept
    return total_moved, total_kept


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    seqs = _selection(args, "replay")
    cfg, store = open_store_for(args)
    moved, kept = _replay_letters(store, cfg, seqs)
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
        drain_code, result = _drain(cfg, store, until_empty=False, quiet=args.json)
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
            raise _missing(missing)
        n = dead.purge(seqs)
    if args.json:
        print_json({"purged": n, "left": dead.size()})
    else:
        print(f"purged {n} dead letter(s); {dead.size()} left")
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# circuit


def _print_circuit(view: dict[str, Any], now: float, as_json: bool, action: str | None = None) -> None:
    if as_json:
        out = dict(view)
        for key in ("last_failure_time", "opened_at", "retry_at", "changed_at"):
            out[key + "_iso"] = iso(view[key])
        if action:
            out["action"] = action
        print_json(out)
        return
    cfg = view["settings"]
    if cfg["mode"] == "consecutive":
        threshold = f"opens after {cfg['failure_threshold']} consecutive failures"
    else:
        threshold = f"opens at {cfg['failure_rate_threshold']:.0%} failures of the last {cfg['window_size']} calls"
    lines = [
        ("state", view["state"] + (f" ({action})" if action else "")),
        ("failure_count", f"{view['failure_count']} ({threshold})"),
        ("last_failure_time", when(view["last_failure_time"], now)),
        ("opened_at", when(view["opened_at"], now)),
        ("trip_count", view["trip_count"]),
        ("calls_not_permitted", view["calls_not_permitted"]),
        ("next trial (retry_at)", view["next_trial"]),
        ("recovery_timeout", duration(cfg["recovery_timeout"])),
        ("changed_at", when(view["changed_at"], now)),
    ]
    print("circuit breaker")
    for key, value in lines:
        print(f"  {key + ':':<23} {value}")


def _circuit(args: argparse.Namespace, action: str | None) -> int:
    from pattern_tracker.composition import breaker_for

    cfg, store = open_store_for(args)
    breaker = breaker_for(cfg, store)
    if action == "reset":
        breaker.reset()
    elif action == "forced open":
        breaker.force_open()
    elif action == "disabled":
        breaker.disable()
    now = time.time()
    _print_circuit(circuit_view(breaker, now), now, args.json, action)
    return EXIT_OK


def cmd_circuit_status(args: argparse.Namespace) -> int:
    return _circuit(args, None)


def cmd_circuit_reset(args: argparse.Namespace) -> int:
    return _circuit(args, "reset")


def cmd_circuit_open(args: argparse.Namespace) -> int:
    return _circuit(args, "forced open")


def cmd_circuit_disable(args: argparse.Namespace) -> int:
    return _circuit(args, "disabled")


# ---------------------------------------------------------------------------------------
# cache (the spool)


def cmd_cache_stats(args: argparse.Namespace) -> int:
    from pattern_tracker.composition import spool_for
    from pattern_tracker.state.dead_letter import DeadLetters

    cfg, store = open_store_for(args)
    now = time.time()
    spool = spool_for(cfg, store)
    stats = spool.stats(now)
    dead = DeadLetters(store).size()
    quarantined = spool.quarantine_size()
    pt = cfg.pattern_tracking
    if args.json:
        out = msgspec.to_builtins(stats)
        out.update(ttl=pt.cache_ttl, overflow_policy=pt.overflow_policy, dead_letter=dead, quarantined=quarantined)
        print_json(out)
        return EXIT_OK
    oldest = "-" if stats.oldest_age is None else f"{duration(stats.oldest_age)} old"
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(stats.dropped_by_reason.items())) or "none"
    hit = "-" if stats.hit_rate is None else f"{stats.hit_rate:.1%} of spilled events delivered by replay"
    rows = [
        ("size", f"{stats.size} / {stats.bound} events ({stats.size / stats.bound:.0%} full)" if stats.bound else str(stats.size)),
        ("oldest", oldest),
        ("entered", stats.entered),
        ("spilled", stats.spilled),
        ("replayed", stats.replayed),
        ("replayed_ok", stats.replayed_ok),
        ("acked", stats.acked),
        ("expired", stats.expired),
        ("dropped", f"{stats.dropped} ({dropped})"),
        ("hit_rate", hit),
        ("ttl", f"{duration(pt.cache_ttl)}, overflow_policy {pt.overflow_policy}"),
        ("dead_letter", f"{dead} letter(s)"),
        ("quarantined", _entries(quarantined) + (" (`cache quarantine list`)" if quarantined else "")),
    ]
    print("pattern cache (spool)")
    for key, value in rows:
        print(f"  {key + ':':<13} {value}")
    return EXIT_OK


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from pattern_tracker.composition import spool_for

    cfg, store = open_store_for(args)
    spool = spool_for(cfg, store)
    size = spool.size()
    if size and not args.yes:
        raise CliError(f"refusing to clear the pattern cache: {size} undelivered event(s) would be lost; "
                       "add --yes (or `pattern-tracker drain` to deliver them)", EXIT_USAGE)
    n = spool.clear(time.time()) if size else 0
    if args.json:
        print_json({"cleared": n})
    else:
        print(f"cleared {n} event(s) from the pattern cache")
    return EXIT_OK


def cmd_cache_cleanup(args: argparse.Namespace) -> int:
    from pattern_tracker.composition import spool_for

    cfg, store = open_store_for(args)
    spool = spool_for(cfg, store)
    expired = spool.expire(time.time())
    ttl = cfg.pattern_tracking.cache_ttl
    if args.json:
        print_json({"expired": len(expired), "ttl": ttl, "left": spool.size()})
    else:
        print(f"expired {len(expired)} event(s) older than cache_ttl ({duration(ttl)}); {spool.size()} left")
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# cache quarantine (spool entries that cannot be decoded)

QUARANTINE_LIST = "cache quarantine list"


def _entries(n: int) -> str:
    return f"{n} undecodable spool entr{'y' if n == 1 else 'ies'}"


def _quarantined(args: argparse.Namespace, selected: Sequence[str] = ()) -> tuple[Any, list[Any]]:
    """(spool, the quarantined entries of the SEQ arguments ``selected``, default all); an unknown
    seq is a usage error and nothing is done."""
    from pattern_tracker.composition import spool_for

    seqs = _seqs(selected, QUARANTINE_LIST) or None
    cfg, store = open_store_for(args)
    spool = spool_for(cfg, store)
    rows = spool.quarantined(seqs)
    if seqs is not None and len(rows) < len(seqs):
        found = {row.seq for row in rows}
        raise _missing([seq for seq in seqs if seq not in found], "quarantined entry", QUARANTINE_LIST, EXIT_USAGE)
    return spool, rows


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    _, rows = _quarantined(args)
    entries = [{"seq": r.seq, "size": r.size, "quarantined_at": iso(r.at), "reason": r.why} for r in rows]
    if args.json:
        print_json({"total": len(entries), "entries": entries})
        return EXIT_OK
    if not entries:
        print("the quarantine is empty")
        return EXIT_OK
    _print_table(["SEQ", "QUARANTINED_AT", "SIZE", "REASON"], [
        [str(e["seq"]), e["quarantined_at"] or "unknown", f"{e['size']} B",
         truncate(clean(e["reason"]), REASON_WIDTH) if e["reason"] else "unknown"]
        for e in entries
    ])
    return EXIT_OK


def cmd_quarantine_export(args: argparse.Namespace) -> int:
    spool, rows = _quarantined(args, args.seqs)
    folder = os.path.abspath(args.dir)
    paths = [(row.seq, os.path.join(folder, f"quarantine-{row.seq}.bin")) for row in rows]
    existing = [path for _, path in paths if os.path.lexists(path)]
    if existing:
        raise CliError(f"refusing to overwrite {existing[0]}"
                       f"{f' and {len(existing) - 1} other file(s)' if len(existing) > 1 else ''} "
                       "(nothing written); move the file(s) away or export to another DIR", EXIT_USAGE)
    try:
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700)
            os.chmod(folder, 0o700)  # exactly 0700, whatever the umask
    except OSError as exc:
        raise CliError(f"cannot create directory {folder}: {exc.strerror}") from None
    written: list[str] = []
    chunk = 100  # bytes of at most this many entries in memory at once
    for i in range(0, len(paths), chunk):
        where = dict(paths[i:i + chunk])
        for seq, raw in spool.quarantined_bytes(where):
            before = f"{len(written)} file(s) written before it"
            try:
                fd = os.open(where[seq], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite
                os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
                with os.fdopen(fd, "wb") as f:
                    f.write(raw)
            except FileExistsError:
                raise CliError(f"refusing to overwrite {where[seq]} (created meanwhile; {before})", EXIT_USAGE) from None
            except OSError as exc:
                raise CliError(f"cannot write {where[seq]}: {exc.strerror} ({before})") from None
            written.append(where[seq])
    if args.json:
        print_json({"exported": len(written), "dir": folder, "files": [os.path.basename(p) for p in written]})
    else:
        print(f"exported {_entries(len(written))} to {folder} (quarantine-SEQ.bin); they stay in quarantine")
    return EXIT_OK


def cmd_quarantine_purge(args: argparse.Namespace) -> int:
    spool, rows = _quarantined(args, args.seqs)
    if rows and not args.yes:
        raise CliError(f"refusing to purge the quarantine: {_entries(len(rows))} would be deleted for good; "
                       "add --yes (`pattern-tracker cache quarantine export DIR` keeps a copy first)", EXIT_USAGE)
    # The entries listed (and confirmed), not any quarantined meanwhile.
    n = spool.purge_quarantined([row.seq for row in rows], time.time()) if rows else 0
    left = spool.quarantine_size()
    if args.json:
        print_json({"purged": n, "left": left})
    else:
        print(f"purged {_entries(n)}; {left} left")
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# drain


def _busy(lease: Any) -> str:
    where = "" if lease.host == socket.gethostname() else f" on {lease.host}"
    return f"another process (pid {lease.pid}{where}) is draining this data directory"


def _drain(cfg: Any, store: Any, until_empty: bool, quiet: bool = False) -> tuple[int, dict[str, Any]]:
    """Deliver the spool now; print the outcome (unless ``quiet``); return (exit code, result)."""
    from pattern_tracker.composition import breaker_for
    from pattern_tracker.core.lease import DrainLease

    lease = DrainLease(store)
    holder = lease.holder(time.time())
    if holder is not None and (holder.pid, holder.host) != (os.getpid(), socket.gethostname()):
        if not quiet:
            print(_busy(holder))
        return EXIT_OK, {"status": "busy", "holder_pid": holder.pid, "holder_host": holder.host}

    summary, interrupted = asyncio.run(_drain_async(cfg, store, until_empty, progress=not quiet))
    breaker = breaker_for(cfg, store)
    now = time.time()
    circuit = circuit_view(breaker, now)
    result: dict[str, Any] = {
        "status": "empty" if summary.left_in_spool == 0 else "pending",
        "delivered": summary.delivered,
        "already_existed": summary.already_existed,
        "dead_lettered": summary.dead_lettered,
        "left_in_spool": summary.left_in_spool,
        "replayed": summary.replayed,
        "retried": summary.retried,
        "expired": summary.expired,
        "seconds": round(summary.seconds, 3),
        "circuit": circuit["state"],
        "retry_at": circuit["retry_at"],
    }
    lines: list[str] = []
    code = EXIT_OK
    if summary.left_in_spool:
        code = EXIT_PENDING
        other = lease.holder(now)
        if summary.replayed == 0 and other is not None and (other.pid, other.host) != (os.getpid(), socket.gethostname()):
            # It took the lease between our check and our start: it delivers them.
            result.update(status="busy", holder_pid=other.pid, holder_host=other.host)
            lines.append(_busy(other))
            code = EXIT_OK
        elif interrupted:
            result["reason"] = "interrupted"
            lines.append(f"interrupted: {summary.left_in_spool} event(s) left in the spool")
        elif circuit["state"] in ("open", "forced_open", "half_open"):
            result["reason"] = "circuit_open"
            lines.append(f"the service is unavailable: circuit {circuit['state']}, next trial {circuit['next_trial']}; "
                         f"{summary.left_in_spool} event(s) left in the spool")
        else:
            result["reason"] = "not_delivered"
            lines.append(f"{summary.left_in_spool} event(s) could not be delivered now and stay in the spool")
    lines.append(
        f"drain: delivered {summary.delivered}, already there {summary.already_existed}, "
        f"dead-lettered {summary.dead_lettered}, left in spool {summary.left_in_spool} ({summary.seconds:.1f}s)"
    )
    if not quiet:
        for line in lines:
            print(line)
    return code, result


async def _drain_async(cfg: Any, store: Any, until_empty: bool, progress: bool = False) -> tuple[Any, bool]:
    """Run the drain; with ``progress`` and a terminal on stderr, a bar (pipeline/cli/progress.py):
    total = the spool's size at start, done = delivered + already there + dead-lettered."""
    from pattern_tracker.composition import build_pipeline
    from pattern_tracker.cli.progress import Progress

    pipeline = build_pipeline(cfg, store)
    stop = asyncio.Event()
    install_stop(stop)
    bar = Progress(pipeline.spool.size(), "drain") if progress and sys.stderr.isatty() else None
    ended = asyncio.Event()

    def done() -> int:
        s = pipeline.summary
        return s.delivered + s.already_existed + s.dead_lettered

    follow = asyncio.create_task(bar.follow(done, ended, interval=0.2)) if bar is not None else None
    try:
        summary = await pipeline.run([], stop, drain=True, until_empty=until_empty)
    finally:
        if follow is not None and bar is not None:
            ended.set()
            await asyncio.gather(follow, return_exceptions=True)
            bar.update(done())
            bar.finish()
    return summary, stop.is_set()


def cmd_drain(args: argparse.Namespace) -> int:
    cfg, store = open_store_for(args)
    code, result = _drain(cfg, store, args.until_empty, quiet=args.json)
    if args.json:
        print_json(result)
    return code
