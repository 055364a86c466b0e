"""Starting a detached drainer: the one rule the hook and the Python API share.

Standard library only (plus the core lease key): the hook runs this on every edit.
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from typing import Any


# A drainer takes the lease only once it has started (~0.3 s of imports); hooks in between would
# each start another one. The hook that starts one notes it (pattern_tracker.core.lease.SPAWNED_KEY) in its
# write transaction; the drainer clears it when it takes the lease. After SPAWN_GRACE seconds
# without a lease (the drainer failed to start) the next hook starts another.
SPAWN_GRACE = 5.0


def _circuit_blocks(store: Any, recovery_timeout: float, now: float, txn: Any = None) -> bool:
    """Is the shared circuit open (a drain now would only find it open)?"""
    raw = (txn.get(b"circuit", db=store.db("state")) if txn is not None
           else store.read(lambda t: t.get(b"circuit", db=store.db("state"))))
    if not raw:
        return False
    try:
        state = json.loads(raw)
    except ValueError:
        return False
    if state.get("state") == "forced_open":
        return True
    opened = state.get("opened_at")
    return state.get("state") == "open" and opened is not None and now < float(opened) + recovery_timeout


def claim_drainer_start(txn: Any, store: Any, lease: Any, recovery_timeout: float, now: float) -> bool:
    """Should this process start a drainer? Not when one holds the lease, was just started by
    another process, or would only find the circuit open. Claims the start inside ``txn``."""
    state = store.db("state")
    if lease.holder(now, txn) is not None or _circuit_blocks(store, recovery_timeout, now, txn):
        return False
    from pattern_tracker.core.lease import SPAWNED_KEY

    raw = txn.get(SPAWNED_KEY, db=state)
    try:
        if raw is not None and now - float(raw) < SPAWN_GRACE:
            return False
    except ValueError:
        pass
    txn.put(SPAWNED_KEY, repr(now).encode(), db=state)
    return True


def spawn_drainer(config_path: str | None, data_dir: str) -> None:
    """``pattern-tracker drain`` in its own session, detached from Claude Code's pipes.

    ``-I`` (isolated mode): the child never resolves code through the current directory, which is
    the user's project (it may hold its own ``pipeline/`` or ``pattern_tracker/``), nor through
    PYTHONPATH or the user site; ``pattern_tracker`` comes from this interpreter's installation.
    """
    args = [sys.executable, "-I", "-m", "pattern_tracker.main", "drain"]
    if config_path:
        args += ["--config", config_path]
    log = os.path.join(data_dir, "drain.log")
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    os.posix_spawn(sys.executable, args, os.environ, file_actions=actions, setsid=True)
