"""How the embedded store keeps lineage nodes and edges in LMDB: records, keys, named dbs.

Layout in the shared LMDB environment (named dbs of ``pattern_tracker.core.store``):

* ``lineage_nodes``    K(pattern_id) \\0 K(version)        -> Node (msgpack, array_like)
* ``lineage_latest``   K(pattern_id)                       -> node key of the newest version
* ``lineage_children`` parent node key \\0 u64(child seq)   -> child node key
* ``lineage_files``    K(file_path) \\0 u64(node seq)       -> node key (insertion order)

``K(s)`` (:func:`key_of`) is the UTF-8 of ``s`` when it is short and holds no NUL byte, else
``\\x01`` + a hex digest, so keys stay below LMDB's 511-byte limit and hold exactly one NUL
(prefix scans of ``key + b"\\0"`` are unambiguous). Node ids are deterministic (derived from the
node key), so rebuilding the store from a replay yields the same ids.
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
    "SEQ_KEY",
    "LineageDbs",
    "Node",
    "NodeHead",
    "head_decoder",
    "key_of",
    "node_decoder",
    "node_encoder",
    "node_key",
    "random_uuids",
    "resolve",
    "uuid_for",
    "values",
]

SEQ_KEY = b"seq:lineage_node"  # same key shape as Store.next_seq(txn, "lineage_node")


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

    nodes: Any
    latest: Any
    children: Any
    files: Any
    state: Any

    @classmethod
    def of(cls, store: Store) -> LineageDbs:
        return cls(store.db("lineage_nodes"), store.db("lineage_latest"), store.db("lineage_children"),
                   store.db("lineage_files"), store.db("state"))


def resolve(txn: lmdb.Transaction, dbs: LineageDbs, pattern_id: str,
            decoder: Any = node_decoder) -> tuple[bytes, Any] | None:
    """(node key, node decoded by ``decoder``) of the latest version of ``pattern_id``."""
    key = txn.get(key_of(pattern_id, 300), db=dbs.latest)
    if key is None:
        return None
    raw = txn.get(key, db=dbs.nodes)
    return (key, decoder.decode(raw)) if raw is not None else None


def values(txn: lmdb.Transaction, db: Any) -> Iterable[bytes]:
    """Every value of ``db``, in key order."""
    with txn.cursor(db=db) as cur:
        for _key, value in cur:
            yield value
