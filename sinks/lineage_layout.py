"""How the embedded store keeps lineage nodes and edges in LMDB: records, keys, named dbs.

Layout 2 (named dbs of ``pattern_tracker.core.store``), built so that an event touches few B-tree
pages, and no more of them as the store grows than it must:

* ``lineage_log``    u64(seq) -> Node (msgpack, array_like), appended in seq order
* ``lineage_keys``   K(pattern_id)                         -> u64(seq) of its newest version
                     K(pattern_id) \\0 K(version)           -> u64(seq) [+ IMPLIED]: the node key
                     node key \\0 u64(child seq)            -> b"": a parent link (edge)
                     F(file_path) \\0 \\x01 \\0 u64(seq)       -> b"": a node of that file
* ``lineage_paths``  K(file_path) -> F(file_path), one per file: the files in path order

Why: a commit writes every page it dirtied, each to wherever LMDB's free list puts it (scattered
over the file), and a durable commit waits for all of them; at a million nodes every page an
event dirties costs it a leaf and most of a branch page. So the node itself (~9 KB of code on
average) is appended under its seq: it dirties only the log's last leaf and its own overflow pages
(written as one run). Everything else an event writes goes into ONE tree, and for the tracker's
own events into one spot of it: their pattern_ids are ``F(file_path)-v<n>-...`` (F: the 16 hex
digits of ``core.identity.file_key``), a parent is the file's previous version, so the node key,
the newest entry and the edge sit side by side. A node whose pattern_id starts with
``F(its file_path)-`` needs no file entry: its node key's value says so (:data:`IMPLIED`), and a
file's nodes are its file entries plus the IMPLIED node keys under ``F-`` (:func:`file_seqs`).
``lineage_paths`` is written for a file's first node only. Layout 1 (``lineage_nodes`` keyed by
node key, ``lineage_latest``, ``lineage_children``, ``lineage_files``) dirtied a leaf of each of
four trees per event, plus their branch pages (tests/test_lineage_upgrade.py measures both). A
store written in layout 1 is upgraded when opened (:mod:`~pattern_tracker.sinks.lineage_upgrade`).

``K(s)`` (:func:`key_of`) is the UTF-8 of ``s`` when it is short and holds no NUL byte, else
``\\x01`` + a hex digest, so keys stay below LMDB's 511-byte limit and hold no NUL. The kinds of
``lineage_keys`` key are told apart by their NULs: none (a newest version), one (a node key), more
(an edge, or a file entry: ``F \\0 \\x01 \\0`` + 8 bytes; no node key is ``F \\0 \\x01``, as K(version)
is never a lone ``\\x01``), so the prefix scans ``node key + \\0`` (a node's children, oldest
first) and :func:`file_prefix` (a file's nodes, oldest first) find nothing else. F is 64
bits of a hash: two paths sharing one would share entries, so readers check a node's own
``file_path`` where it matters. Node ids are deterministic (derived from the node key,
:func:`node_key`), so rebuilding the store from a replay yields the same ids, in either layout.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Any, NamedTuple

import lmdb
import msgspec

from pattern_tracker.core.store import Store

__all__ = [
    "LAYOUT",
    "FILE_MARK",
    "IMPLIED",
    "SEQ_KEY",
    "LineageDbs",
    "Node",
    "NodeHead",
    "file_hash",
    "file_prefix",
    "file_seqs",
    "head_decoder",
    "implied",
    "key_of",
    "load",
    "load_key",
    "newest_at",
    "node_decoder",
    "node_encoder",
    "node_key",
    "random_uuids",
    "resolve",
    "uuid_for",
    "values",
]

SEQ_KEY = b"seq:lineage_node"  # same key shape as Store.next_seq(txn, "lineage_node")
LAYOUT = 2  # the layout above (layout 1: see lineage_upgrade)
FILE_MARK = b"\0\x01\0"  # between F(file_path) and the seq in a file entry
IMPLIED = b"\x01"  # after the seq in a node key's value: the node is one of the file its pattern_id starts with


class NodeHead(msgspec.Struct, array_like=True, gc=False):
    """The leading fields of a stored node: all that resolving a parent or answering a duplicate
    reads. Decoding one stops there, before pattern_data (the code, ~9 KB on average).

    ``gc=False`` (here and on Node): nothing a node holds (its lists, the request's pattern_data)
    can refer back to it, so the cycle collector need not walk the thousands a batch creates.
    """

    seq: int
    node_id: str
    lineage_id: str
    event_id: str
    pattern_id: str
    pattern_version: str
    pattern_name: str
    pattern_type: str
    event_type: str
    generation: int


class Node(NodeHead, array_like=True, gc=False):
    """One version of one pattern as stored (values of ``lineage_nodes``): the head's fields, then these."""

    created_at: str
    file_path: str | None
    language: str | None
    tool_name: str | None
    triggered_by: str
    reason: str | None
    parent_pattern_ids: list[str]
    parent_node_ids: list[str]
    parent_keys: list[bytes]
    edge_type: str | None
    transformation_type: str | None
    pattern_data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "pattern_node_id": self.node_id,
            "lineage_id": self.lineage_id,
            "event_id": self.event_id,
            "pattern_id": self.pattern_id,
            "pattern_version": self.pattern_version,
            "pattern_name": self.pattern_name,
            "pattern_type": self.pattern_type,
            "event_type": self.event_type,
            "generation": self.generation,
            "created_at": self.created_at,
            "file_path": self.file_path,
            "language": self.language,
            "tool_name": self.tool_name,
            "triggered_by": self.triggered_by,
            "reason": self.reason,
            "parent_pattern_ids": list(self.parent_pattern_ids),
            "parent_node_ids": list(self.parent_node_ids),
            "edge_type": self.edge_type,
            "transformation_type": self.transformation_type,
            "pattern_data": self.pattern_data,
        }


node_encoder = msgspec.msgpack.Encoder()
node_decoder = msgspec.msgpack.Decoder(Node)
head_decoder = msgspec.msgpack.Decoder(NodeHead)


def key_of(s: str, limit: int) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    if len(b) <= limit and b"\0" not in b and not b.startswith(b"\x01"):
        return b
    return b"\x01" + hashlib.blake2b(b, digest_size=20).hexdigest().encode()


def node_key(pattern_id: str, version: str) -> bytes:
    return key_of(pattern_id, 300) + b"\0" + key_of(version, 150)


def file_hash(path: str) -> bytes:
    """F(path): 16 hex digits of its SHA-256, as ``core.identity.file_key`` gives for a normalised path,
    so the tracker's pattern_ids of a file start with it."""
    return hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:16].encode()


def file_prefix(fhash: bytes) -> bytes:
    """Where a file's entries start in ``lineage_keys`` (each then ends with a node's u64 seq)."""
    return fhash + FILE_MARK


def implied(pid_key: bytes, fhash: bytes) -> bool:
    """Does a node of pattern K ``pid_key`` and file F ``fhash`` go without a file entry?"""
    return pid_key[16:17] == b"-" and pid_key.startswith(fhash)


def uuid_for(tag: bytes, key: bytes) -> str:
    """A deterministic uuid-shaped id (version-4 layout) derived from ``key``."""
    return _uuid4_text(hashlib.blake2b(tag + key, digest_size=16).hexdigest())


def random_uuids(n: int) -> list[str]:
    """``n`` random version-4 uuids (as ``str(uuid.uuid4())``) from one ``os.urandom`` call:
    a batch answer carries one per event, and ``uuid4()`` costs a syscall and an object each."""
    h = os.urandom(16 * n).hex()
    return [_uuid4_text(h[i:i + 32]) for i in range(0, 32 * n, 32)]


def _uuid4_text(h: str) -> str:
    """32 hex digits in the version-4 uuid layout (version nibble 4, variant 10xx)."""
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


class LineageDbs(NamedTuple):
    """The named dbs of the layout above (``state`` holds the node sequence, :data:`SEQ_KEY`)."""

    log: Any
    keys: Any
    paths: Any
    state: Any

    @classmethod
    def of(cls, store: Store) -> LineageDbs:
        return cls(store.db("lineage_log"), store.db("lineage_keys"), store.db("lineage_paths"), store.db("state"))


def load(txn: lmdb.Transaction, dbs: LineageDbs, seq: bytes, decoder: Any = node_decoder) -> Any:
    """The node stored under ``seq`` (u64 bytes), decoded by ``decoder``; None when there is none."""
    raw = txn.get(seq, db=dbs.log)
    return decoder.decode(raw) if raw is not None else None


def load_key(txn: lmdb.Transaction, dbs: LineageDbs, key: bytes, decoder: Any = node_decoder) -> Any:
    """The node of node key ``key``, decoded by ``decoder``; None when there is none."""
    seq = txn.get(key, db=dbs.keys)
    return load(txn, dbs, seq[:8], decoder) if seq is not None else None


def resolve(txn: lmdb.Transaction, dbs: LineageDbs, pattern_id: str,
            decoder: Any = node_decoder) -> tuple[bytes, Any] | None:
    """(node key, node decoded by ``decoder``) of the latest version of ``pattern_id``."""
    pid_key = key_of(pattern_id, 300)
    seq = txn.get(pid_key, db=dbs.keys)
    return newest_at(txn, dbs, pid_key, seq, decoder) if seq is not None else None


def newest_at(txn: lmdb.Transaction, dbs: LineageDbs, pid_key: bytes, seq: bytes,
              decoder: Any = node_decoder) -> tuple[bytes, Any] | None:
    """(node key, node decoded by ``decoder``) of the node under ``seq``, which ``lineage_keys``
    names as the newest of the pattern whose K is ``pid_key``."""
    node = load(txn, dbs, seq, decoder)
    return (pid_key + b"\0" + key_of(node.pattern_version, 150), node) if node is not None else None


def file_seqs(txn: lmdb.Transaction, dbs: LineageDbs, fhash: bytes) -> list[bytes]:
    """The seqs (u64 bytes) of the nodes of file F ``fhash``, oldest first: its file entries and the
    IMPLIED node keys of the patterns named after it. (Two paths with one F share them: a reader
    that must tell them apart checks the node's file_path.)"""
    out: list[bytes] = []
    with txn.cursor(db=dbs.keys) as cur:
        prefix = fhash + FILE_MARK
        n = len(prefix)
        if cur.set_range(prefix):
            for key in cur.iternext(keys=True, values=False):
                if key[:n] != prefix:
                    break
                out.append(bytes(key[n:]))
        prefix = fhash + b"-"
        n = len(prefix)
        if cur.set_range(prefix):
            for key, value in cur.iternext():
                if key[:n] != prefix:
                    break
                if len(value) == 9:
                    out.append(bytes(value[:8]))
    out.sort()
    return out


def values(txn: lmdb.Transaction, db: Any) -> Iterable[bytes]:
    """Every value of ``db``, in key order."""
    with txn.cursor(db=db) as cur:
        for _key, value in cur:
            yield value
