"""The drain lease: at most one process per data directory delivers the spool's backlog.

The running pipeline holds it; when nobody does, a hook starts a detached ``drain``. A lease
names its holder (pid, host) and expires unless renewed, so a killed holder does not block
delivery for longer than the lease time; a dead holder on this host is detected at once.
Standard library only (the hook reads it).
"""

from __future__ import annotations

import json
import os
from collections import namedtuple

from pattern_tracker.core.store import Store

TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from typing import NamedTuple

    import lmdb

    class Lease(NamedTuple):
        pid: int
        host: str
        expires_at: float

else:
    Lease = namedtuple("Lease", "pid host expires_at")

KEY = b"drain_lease"
# Set by the hook that starts a detached drainer, so that hooks do not start more before it runs.
SPAWNED_KEY = b"drainer_spawned_at"


def _encode(lease: Lease) -> bytes:
    return json.dumps(lease._asdict()).encode()


def _decode(raw: bytes) -> Lease:
    return Lease(**json.loads(raw))


def _alive(lease: Lease) -> bool:
    if lease.host != os.uname().nodename:
        return True  # cannot tell: trust the expiry
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DrainLease:
    def __init__(self, store: Store, ttl: float = 15.0) -> None:
        self.store = store
        self.ttl = ttl
        self._db = store.db("state")
        self.me = Lease(pid=os.getpid(), host=os.uname().nodename, expires_at=0.0)

    def holder(self, now: float, txn: lmdb.Transaction | None = None) -> Lease | None:
        """The live holder, or None (read inside ``txn`` when given)."""
        raw = txn.get(KEY, db=self._db) if txn is not None else self.store.read(lambda t: t.get(KEY, db=self._db))
        lease = _decode(raw) if raw else None
        if lease is None or lease.expires_at < now or not _alive(lease):
            return None
        return lease

    def acquire(self, now: float) -> bool:
        """Take (or renew) the lease; False when another live process holds it."""

        def txn_fn(txn) -> bool:  # type: ignore[no-untyped-def]
            raw = txn.get(KEY, db=self._db)
            lease = _decode(raw) if raw else None
            mine = lease is not None and lease.pid == self.me.pid and lease.host == self.me.host
            if lease is not None and not mine and lease.expires_at >= now and _alive(lease):
                return False
            txn.put(KEY, _encode(Lease(pid=self.me.pid, host=self.me.host, expires_at=now + self.ttl)), db=self._db)
            txn.delete(SPAWNED_KEY, db=self._db)  # a started drainer now holds the lease (see pipeline/hook.py)
            return True

        return self.store.write(txn_fn)

    def release(self, only_if_empty: str | None = None) -> bool:
        """Give the lease up. With ``only_if_empty`` (a database name, the spool), only when that
        database is empty, checked in the same transaction: an event queued a moment before stays
        this drainer's to deliver (returns False), one queued after finds no holder and its hook
        starts a drainer. Nothing is left waiting for the next edit."""

        def txn_fn(txn) -> bool:  # type: ignore[no-untyped-def]
            if only_if_empty is not None and txn.stat(self.store.db(only_if_empty))["entries"]:
                return False
            raw = txn.get(KEY, db=self._db)
            lease = _decode(raw) if raw else None
            if lease is not None and lease.pid == self.me.pid and lease.host == self.me.host:
                txn.delete(KEY, db=self._db)
            return True

        return bool(self.store.write(txn_fn))
