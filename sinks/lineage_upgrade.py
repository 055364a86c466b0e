"""A store written in layout 1 brought to layout 2 (:mod:`~pattern_tracker.sinks.lineage_layout`) when opened.

Layout 1 kept ``lineage_nodes`` K(pattern_id) \\0 K(version) -> Node, ``lineage_latest``
K(pattern_id) -> node key, ``lineage_children`` parent node key \\0 u64(child seq) -> child node
key and ``lineage_files`` K(file_path) \\0 u64(seq) -> node key.

The upgrade moves records in steps, each one write transaction that copies the first ``chunk``
records of a layout-1 db into layout 2 and deletes them there: a crash part way leaves every
record in exactly one of the two (the transaction is atomic), the next open goes on with what is
left, and two processes opening the store at once take turns. The pages a step frees are reused
by the next ones, so the data file grows by little more than a step's worth. In order (each step
reads what the ones before wrote):

1. every node: its bytes, unchanged, to ``lineage_log`` under its seq; its node key to ``lineage_keys``;
2. every newest-version entry: ``lineage_keys`` K(pattern_id) -> that node's seq;
3. every parent link: ``lineage_keys`` under the same key (parent node key \\0 u64(child seq));
4. every file entry: ``lineage_keys`` F(file_path) \\0 \\x01 \\0 u64(seq), or IMPLIED on the node key
   (the hook's pattern_ids), and the path to ``lineage_paths``.

A store is in layout 2 exactly when the layout-1 dbs are empty, so opening one costs a read of
four entry counts. Node ids, seqs and every answer stay the same (tests/test_lineage_upgrade.py).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import lmdb
import msgspec

from pattern_tracker.core.store import Store
from pattern_tracker.sinks.lineage_layout import (
    IMPLIED,
    LineageDbs,
    NodeHead,
    file_hash,
    file_prefix,
    head_decoder,
    implied,
    load,
)

__all__ = ["CHUNK", "OldDbs", "pending", "upgrade"]

CHUNK = 2000  # records per transaction (~20 MB of node copies at ~9 KB each)

log = logging.getLogger("pattern_tracker.sinks.lineage_upgrade")


class OldDbs(NamedTuple):
    """Layout 1's named dbs, which layout 2 replaced."""

    nodes: Any
    latest: Any
    children: Any
    files: Any

    @classmethod
    def of(cls, store: Store) -> OldDbs:
        return cls(store.db("lineage_nodes"), store.db("lineage_latest"), store.db("lineage_children"),
                   store.db("lineage_files"))


def pending(store: Store) -> bool:
    """Does ``store`` hold layout-1 records (an upgrade not run, or not finished)?"""
    old = OldDbs.of(store)
    return bool(store.read(lambda txn: any(txn.stat(db)["entries"] for db in old)))


def upgrade(store: Store, chunk: int = CHUNK) -> int:
    """Bring ``store`` to layout 2 (nothing to do on one already there); returns the transactions it took."""
    if not pending(store):
        return 0
    dbs, old = LineageDbs.of(store), OldDbs.of(store)
    nodes = store.read(lambda txn: int(txn.stat(old.nodes)["entries"]))
    log.warning("upgrading the embedded lineage store in %s to layout 2 (%d nodes to copy)", store.path, nodes)
    steps = 0
    while store.write(lambda txn: _step(txn, dbs, old, chunk)):
        steps += 1
    log.warning("lineage store in %s upgraded to layout 2 (%d transactions)", store.path, steps)
    return steps


def _step(txn: lmdb.Transaction, dbs: LineageDbs, old: OldDbs, chunk: int) -> bool:
    """One transaction of the upgrade: the next ``chunk`` records moved; False when none were left."""
    for source, copy in zip(old, _COPY):
        if txn.stat(source)["entries"]:
            break
    else:
        return False
    taken: list[bytes] = []
    with txn.cursor(db=source) as cur:
        for key, value in cur:
            copy(txn, dbs, key, value)
            taken.append(key)
            if len(taken) == chunk:
                break
    for key in taken:
        txn.delete(key, db=source)
    return True


def _copy_node(txn: lmdb.Transaction, dbs: LineageDbs, key: bytes, raw: bytes) -> None:
    seq = head_decoder.decode(raw).seq.to_bytes(8, "big")
    txn.put(seq, raw, db=dbs.log)
    txn.put(key, seq, db=dbs.keys)


def _copy_newest(txn: lmdb.Transaction, dbs: LineageDbs, pid_key: bytes, node_key: bytes) -> None:
    seq = txn.get(node_key, db=dbs.keys)
    if seq is not None:
        txn.put(pid_key, seq[:8], db=dbs.keys)


def _copy_link(txn: lmdb.Transaction, dbs: LineageDbs, key: bytes, _child_key: bytes) -> None:
    txn.put(key, b"", db=dbs.keys)  # parent node key \0 u64(child seq): layout 2's edge key too


def _copy_file_entry(txn: lmdb.Transaction, dbs: LineageDbs, key: bytes, node_key: bytes) -> None:
    fkey, seq = key[:-9], key[-8:]  # K(file_path) \0 u64(seq)
    if fkey.startswith(b"\x01"):  # a digest: the path is in the node
        node = load(txn, dbs, seq, _path_decoder)
        if node is None or not node.file_path:
            return
        path = node.file_path
    else:
        path = fkey.decode("utf-8", "surrogatepass")
    fhash = file_hash(path)
    if implied(node_key[:node_key.index(b"\0")], fhash):
        txn.put(node_key, seq + IMPLIED, db=dbs.keys)
    else:
        txn.put(file_prefix(fhash) + seq, b"", db=dbs.keys)
    txn.put(fkey, fhash, db=dbs.paths)


class _Path(NodeHead, array_like=True, gc=False):
    """A stored node decoded as far as its ``file_path``."""

    created_at: str
    file_path: str | None


_path_decoder = msgspec.msgpack.Decoder(_Path)
_COPY = (_copy_node, _copy_newest, _copy_link, _copy_file_entry)  # step -> how a record of old[step] is copied
