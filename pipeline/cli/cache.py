"""``pattern-tracker cache``: the spool of undelivered events, the guide's "pattern cache".

    cache stats | clear | cleanup                                     the spool
    cache quarantine list | export DIR [SEQ…] | purge [SEQ…] --yes    spool entries that cannot be decoded

The spool is state in the data directory's LMDB environment (state.spool.Spool, the same object
``PatternTracker.pattern_cache`` drives), so every command works while a ``run`` is going in
another process. Exit codes: 0 ok, 1 failure, 2 usage (an unconfirmed loss, an unknown SEQ).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from pattern_tracker.cli.support import (
    EXIT_OK,
    EXIT_USAGE,
    REASON_WIDTH,
    CliError,
    action_group,
    add_action,
    clean,
    missing_seqs,
    open_store_for,
    parse_seqs,
    print_json,
    print_table,
    truncate,
)
from pattern_tracker.core.timefmt import duration, iso

QUARANTINE_LIST = "cache quarantine list"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``cache`` (and ``cache quarantine``) to the ``pattern-tracker`` subparsers.

    The code and docs call it the spool; ``cache`` is the resilience guide's word, so it stays the
    command's name, and ``spool`` is accepted as its alias."""
    g = action_group(sub, common, "cache", "the pattern cache (the spool of undelivered events)", "cache_command",
                     aliases=["spool"], related="to deliver the spooled events now: pattern-tracker drain")
    add_action(g, common, "stats", "size, bound, oldest age and what entered, spilled, replayed, expired, dropped",
               cmd_cache_stats)
    p = add_action(g, common, "clear", "drop every spooled event (they are lost)", cmd_cache_clear)
    p.add_argument("--yes", action="store_true", help="confirm: the events are not delivered")
    add_action(g, common, "cleanup", "expire the entries older than pattern_tracking.cache_ttl now", cmd_cache_cleanup)
    q = action_group(g, common, "quarantine", "spool entries that cannot be decoded, kept byte for byte",
                     "quarantine_command")
    add_action(q, common, "list", "one line per quarantined entry: seq, size, when and why (never the bytes)",
               cmd_quarantine_list)
    p = add_action(q, common, "export", "write entries' raw bytes to DIR/quarantine-SEQ.bin (they stay in quarantine)",
                   cmd_quarantine_export)
    p.add_argument("dir", metavar="DIR", help="where to write (created mode 0700; existing files are never overwritten)")
    p.add_argument("seqs", nargs="*", metavar="SEQ", help="sequence numbers from `cache quarantine list` (default: all)")
    p = add_action(q, common, "purge", "delete quarantined entries for good", cmd_quarantine_purge)
    p.add_argument("seqs", nargs="*", metavar="SEQ", help="sequence numbers from `cache quarantine list` (default: all)")
    p.add_argument("--yes", action="store_true", help="confirm: the entries' bytes are deleted for good")


def _entries(n: int) -> str:
    return f"{n} undecodable spool entr{'y' if n == 1 else 'ies'}"


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
        ("lettered", f"{stats.lettered} (moved to the dead letter)"),
        ("expired", stats.expired),
        ("unreadable", f"{stats.unreadable} (moved to the quarantine)"),
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


def _quarantined(args: argparse.Namespace, selected: Sequence[str] = ()) -> tuple[Any, list[Any]]:
    """(spool, the quarantined entries of the SEQ arguments ``selected``, default all); an unknown
    seq is a usage error and nothing is done."""
    from pattern_tracker.composition import spool_for

    seqs = parse_seqs(selected, QUARANTINE_LIST) or None
    cfg, store = open_store_for(args)
    spool = spool_for(cfg, store)
    rows = spool.quarantined(seqs)
    if seqs is not None and len(rows) < len(seqs):
        found = {row.seq for row in rows}
        raise missing_seqs([seq for seq in seqs if seq not in found], "quarantined entry", QUARANTINE_LIST, EXIT_USAGE)
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
    print_table(["SEQ", "QUARANTINED_AT", "SIZE", "REASON"], [
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
