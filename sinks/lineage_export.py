"""The embedded store's nodes in the order they were made: what ``lineage copy`` reads.

Seq order (the order the store assigned) puts every parent before its children, so a target that
checks its edges can take the nodes chunk by chunk. ``lineage_log`` is keyed by that seq
(:mod:`~pattern_tracker.sinks.lineage_layout`), so the order is its key order: the keys are
listed once (no node decoded), then the nodes are read a chunk at a time, each chunk in one
short read transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import lmdb

from pattern_tracker.core.store import Store
from pattern_tracker.sinks.lineage_layout import LineageDbs, Node, load
from pattern_tracker.sinks.lineage_upgrade import upgrade

__all__ = ["NodeExport"]


class NodeExport:
    """Every node of ``store``'s embedded lineage, oldest first, in chunks."""

    def __init__(self, store: Store) -> None:
        upgrade(store)  # a store written in layout 1 is copied to layout 2 first (once)
        self.store = store
        self.dbs = LineageDbs.of(store)
        self.keys = self._keys_in_seq_order()

    def __len__(self) -> int:
        return len(self.keys)

    def _keys_in_seq_order(self) -> list[bytes]:
        def run(txn: lmdb.Transaction) -> list[bytes]:
            with txn.cursor(db=self.dbs.log) as cur:
                return list(cur.iternext(keys=True, values=False))

        return self.store.read(run)

    def read(self, keys: Sequence[bytes]) -> list[Node]:
        """The nodes of ``keys`` (a slice of :attr:`keys`), in that order."""

        def run(txn: lmdb.Transaction) -> list[Node]:
            return [node for key in keys if (node := load(txn, self.dbs, key)) is not None]

        return self.store.read(run)

    def chunks(self, size: int, start: int = 0) -> Iterator[list[Node]]:
        """Nodes ``start…`` in chunks of ``size``."""
        for i in range(start, len(self.keys), size):
            yield self.read(self.keys[i:i + size])
