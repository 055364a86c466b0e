"""The drain lease: at most one process per data directory delivers the spool's backlog.

The running pipeline holds it; when nobody does, a hook starts a detached ``drain``. A lease
names its holder (pid, host) and expires unless renewed, so a killed holder does not block
delivery for longer than the lease time; a dead holder on this host is detected at once.
"""

from __future__ import annotations

import os
import socket

import msgspec

from pipeline.store import Store

KEY = b"drain_lease"


class Lease(msgspec.Struct, kw_only=True):
    pid: int
    host: str
    expires_at: float


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Lease)


def _alive(lease: Lease) -> bool:
    if lease.host != socket.gethostname():
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
        self.me = Lease(pid=os.getpid(), host=socket.gethostname(), expires_at=0.0)

    def holder(self, now: float) -> Lease | None:
        raw = self.store.read(lambda txn: txn.get(KEY, db=self._db))
        lease = _decoder.decode(raw) if raw else None
        if lease is None or lease.expires_at < now or not _alive(lease):
            return None
        return lease

    def acquire(self, now: float) -> bool:
        """Take (or renew) the lease; False when another live process holds it."""

        def txn_fn(txn) -> bool:  # type: ignore[no-untyped-def]
            raw = txn.get(KEY, db=self._db)
            lease = _decoder.decode(raw) if raw else None
            mine = lease is not None and lease.pid == self.me.pid and lease.host == self.me.host
            if lease is not None and not mine and lease.expires_at >= now and _alive(lease):
                return False
            txn.put(KEY, _encoder.encode(Lease(pid=self.me.pid, host=self.me.host, expires_at=now + self.ttl)), db=self._db)
            return True

        return self.store.write(txn_fn)

    def release(self) -> None:
        def txn_fn(txn) -> None:  # type: ignore[no-untyped-def]
            raw = txn.get(KEY, db=self._db)
            lease = _decoder.decode(raw) if raw else None
            if lease is not None and lease.pid == self.me.pid and lease.host == self.me.host:
                txn.delete(KEY, db=self._db)

        self.store.write(txn_fn)
