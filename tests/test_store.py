"""The Store under threads of one process: the map grows while another thread writes."""

from __future__ import annotations

import threading
from pathlib import Path

from pattern_tracker.core.store import MIB, Store


def test_map_grows_while_another_thread_writes(tmp_path: Path) -> None:
    """A grow (set_mapsize) while another thread's write transaction is open fails that write with
    EINVAL ('mdb_put: Invalid argument'): the run's event loop and its store thread both write."""
    store = Store.open(tmp_path / "store", map_size=1 * MIB, max_map_size=256 * MIB)
    state = store.db("state")
    errors: list[str] = []
    done = threading.Event()
    small_writes = 0

    def grow_by_writing() -> None:
        try:
            for i in range(800):
                store.write(lambda t, i=i: t.put(b"big%08d" % i, b"x" * 60_000, db=state))
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            errors.append(f"big: {exc!r}")
        finally:
            done.set()

    def write_small() -> None:
        nonlocal small_writes
        while not done.is_set():
            try:
                store.write(lambda t, i=small_writes: t.put(b"small%08d" % i, b"y", db=state))
            except Exception as exc:  # noqa: BLE001
                errors.append(f"small: {exc!r}")
                return
            small_writes += 1

    threads = [threading.Thread(target=grow_by_writing), threading.Thread(target=write_small)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert store.map_size() > 32 * MIB  # it did grow, several times
    assert small_writes > 0
    assert store.read(lambda t: t.get(b"big%08d" % 799, db=state)) is not None
    assert store.verify() == []
    store.close()
