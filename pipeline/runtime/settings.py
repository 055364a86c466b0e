"""How the running graph is sized and paced (built from the config by composition)."""

from __future__ import annotations

import msgspec


class RuntimeSettings(msgspec.Struct, kw_only=True, frozen=True):
    batch_size: int = 100
    batch_linger: float = 0.05
    max_in_flight_batches: int = 4
    max_concurrency: int = 4
    shutdown_timeout: float = 10.0
    # Seconds between checks of an idle backlog (and TTL expiry).
    replay_poll: float = 5.0
