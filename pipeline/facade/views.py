"""The guide's views on a ``PatternTracker``'s shared state: ``tracker.circuit_breaker``,
``tracker.pattern_cache`` (and its ``cache`` mapping) and ``tracker.service_monitor``.

Each view reads the store afresh on every call (the state is shared by every process on the data
directory) and drives the same state-layer objects the CLI does (composition.breaker_for and
spool_for). Standard library only at import: the rest is loaded when first used.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol


class Host(Protocol):
    """What a view needs of its tracker: the configuration and the store (opened on first use)."""

    config: Any

    @property
    def store(self) -> Any: ...


def run_coro(coro: Any) -> Any:
    """``asyncio.run`` — in a helper thread when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name="pattern-tracker-facade")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


class CircuitBreakerView:
    """The shared circuit breaker (``pattern_tracker.state.circuit_store.SharedBreaker``); every read is fresh."""

    def __init__(self, tracker: Host) -> None:
        self._t = tracker

    @property
    def _breaker(self) -> Any:
        from pattern_tracker.composition import breaker_for

        return breaker_for(self._t.config, self._t.store)

    @property
    def state(self) -> str:
        """closed | open | half_open | forced_open | disabled"""
        return str(self._breaker.state().state)

    @property
    def failure_count(self) -> int:
        return int(self._breaker.state().failure_count)

    @property
    def last_failure_time(self) -> float | None:
        return self._breaker.state().last_failure_time

    @property
    def trip_count(self) -> int:
        return int(self._breaker.state().trip_count)

    @property
    def retry_at(self) -> float | None:
        """When the next trial call is admitted (None: calls flow, or forced open)."""
        return self._breaker.retry_at()

    def reset(self) -> str:
        """Close the circuit and clear its counts (like ``pattern-tracker circuit reset``)."""
        return str(self._breaker.reset().state)

    def force_open(self) -> str:
        return str(self._breaker.force_open().state)

    def disable(self) -> str:
        return str(self._breaker.disable().state)

    def __repr__(self) -> str:
        return f"<CircuitBreaker state={self.state} failures={self.failure_count}>"


_HEAD_DECODER: Any = None


def _head_decoder() -> Any:
    """A msgspec decoder of a spool entry's event id only (iteration decodes no code)."""
    global _HEAD_DECODER
    if _HEAD_DECODER is None:
        import msgspec

        event_id = msgspec.defstruct("_Id", [("event_id", str)])  # defstruct: no string annotations
        head = msgspec.defstruct("_Head", [("enqueued_at", float), ("event", event_id), ("spilled", bool, False)],
                                 array_like=True)
        _HEAD_DECODER = msgspec.json.Decoder(head)
    return _HEAD_DECODER


class SpoolEntries(Mapping[str, Any]):
    """``pattern_cache.cache``: a live, read-only view of the spool, event_id → queued
    ``PatternEvent``, oldest first. ``len()`` is the store's entry count (no scan); iteration reads
    the ids a page at a time and ``[event_id]`` / ``in`` look one entry up, so nothing loads the
    whole spool. Undecodable entries (left for the drainer to quarantine) are counted by ``len()``
    but neither iterated nor returned."""

    PAGE = 256

    def __init__(self, tracker: Host) -> None:
        self._t = tracker

    def __len__(self) -> int:
        return int(self._t.store.entries("spool"))

    def __iter__(self) -> Iterator[str]:
        import msgspec

        decoder = _head_decoder()

        def head(raw: memoryview) -> str | None:
            try:
                return str(decoder.decode(raw).event.event_id)
            except msgspec.DecodeError:
                return None

        after = 0
        while True:
            page = self._t.store.scan_seq("spool", after, self.PAGE, decode=head)
            for seq, event_id in page:
                after = seq
                if event_id is not None:
                    yield event_id
            if len(page) < self.PAGE:
                return

    def _lookup(self, event_id: str) -> Any:
        import msgspec

        from pattern_tracker.model.spool_codec import decoder

        store = self._t.store

        def read(txn: Any) -> Any:
            seq = txn.get(event_id.encode(), db=store.db("spool_ids"))
            raw = None if seq is None else txn.get(bytes(seq), db=store.db("spool"))
            if raw is None:
                return None
            try:
                return decoder.decode(raw).event
            except msgspec.DecodeError:
                return None

        return store.read(read, buffers=True)

    def __getitem__(self, event_id: str) -> Any:
        event = self._lookup(event_id) if isinstance(event_id, str) else None
        if event is None:
            raise KeyError(event_id)
        return event

    def __contains__(self, event_id: object) -> bool:
        if not isinstance(event_id, str):
            return False
        store = self._t.store
        return bool(store.read(lambda txn: txn.get(event_id.encode(), db=store.db("spool_ids")) is not None))

    def __repr__(self) -> str:
        return f"<spool entries: {len(self)}>"


class PatternCacheView:
    """The spool of undelivered events (``pattern_tracker.state.spool.Spool``), the guide's pattern cache."""

    def __init__(self, tracker: Host) -> None:
        self._t = tracker

    @property
    def _spool(self) -> Any:
        from pattern_tracker.composition import spool_for

        return spool_for(self._t.config, self._t.store)

    @property
    def size(self) -> int:
        return int(self._spool.size())

    @property
    def bound(self) -> int:
        return int(self._t.config.pattern_tracking.cache_size)

    @property
    def cache(self) -> SpoolEntries:
        """The queued events themselves, as a read-only mapping event_id → event (see SpoolEntries)."""
        return SpoolEntries(self._t)

    @property
    def hit_rate(self) -> float:
        """Spilled events later delivered by replay / spilled events; 0.0 before any spill (the
        guide formats it with ``:.2%``; ``stats()["hit_rate"]`` keeps None for "no spill yet")."""
        rate = self._spool.stats(time.time()).hit_rate
        return 0.0 if rate is None else float(rate)

    @property
    def oldest_age(self) -> float | None:
        return self._spool.stats(time.time()).oldest_age

    def stats(self) -> dict[str, Any]:
        import msgspec

        return msgspec.to_builtins(self._spool.stats(time.time()))  # type: ignore[no-any-return]

    def cleanup(self) -> int:
        """Expire the entries older than ``cache_ttl`` now; returns how many."""
        return len(self._spool.expire(time.time()))

    def clear(self) -> int:
        """Drop every queued event (they are not delivered); returns how many."""
        return int(self._spool.clear(time.time()))

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"<PatternCache size={self.size}/{self.bound}>"


class ServiceMonitor:
    """The configured sink's health: the Phase 4 service, or the embedded lineage store."""

    def __init__(self, tracker: Host, timeout: float | None = None) -> None:
        self._t = tracker
        self.timeout = timeout

    async def aget_service_status(self) -> dict[str, Any]:
        from pattern_tracker.composition import build_sink

        cfg = self._t.config
        target = "http" if cfg.api.url else "embedded"
        timeout = self.timeout or cfg.api.timeouts.total
        started = time.perf_counter()
        out: dict[str, Any] = {"available": False, "status": "unreachable", "detail": "", "components": {},
                               "sink": target}
        sink = None
        try:
            sink = build_sink(cfg, self._t.store)
            await sink.start()
            health = await asyncio.wait_for(sink.health(), timeout=timeout)
            out.update(available=bool(health.available), status=health.status, detail=health.detail,
                       components=dict(health.components))
        except TimeoutError:
            out["detail"] = f"no answer within {timeout:g}s"
        except Exception as exc:  # noqa: BLE001 - never raises: unreachable is an answer
            out["detail"] = f"{type(exc).__name__}: {exc}"
        finally:
            if sink is not None:
                try:
                    await sink.close()
                except Exception:  # noqa: BLE001
                    pass
        out["response_time_ms"] = round((time.perf_counter() - started) * 1000, 1)
        out["checked_at"] = time.time()
        return out

    def get_service_status(self) -> dict[str, Any]:
        """``{"available", "status", "detail", "components", "sink", "response_time_ms", "checked_at"}``.

        Never raises: an unreachable service is ``available: False, status: "unreachable"``.
        """
        try:
            return run_coro(self.aget_service_status())  # type: ignore[no-any-return]
        except Exception as exc:  # noqa: BLE001
            return {"available": False, "status": "unreachable", "detail": f"{type(exc).__name__}: {exc}",
                    "components": {}, "sink": "http" if self._t.config.api.url else "embedded",
                    "checked_at": time.time()}
