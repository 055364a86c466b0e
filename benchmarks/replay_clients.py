"""The hand-written clients `benchmarks.replay_throughput` compares the pipeline with, each run in a
process of its own (so its CPU time is its own):

    python -m benchmarks.replay_clients ceiling ARCHIVE --url URL [--batch-size B] [--concurrency C]
    python -m benchmarks.replay_clients per-event ARCHIVE --url URL [--limit K]
    python -m benchmarks.replay_clients decode ARCHIVE [--batch-size B]

* ceiling: a minimal asyncio loop reading the archive, posting the same batch bodies as the
  pipeline (`to_batch_request` + msgspec) over ONE aiohttp ClientSession, C requests in flight,
  no retries, reading of each answer only its summary;
* per-event: the status quo, one POST per event, stdlib `json.dumps`, 3 attempts with backoff;
* decode: reading and decoding every event of the archive (`Archive.chunks`), nothing else.

Each prints one JSON line of its counts and rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

PREFIX = "/api/pattern-traceability"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


async def ceiling_client(archive_path: str, base: str, batch_size: int, concurrency: int) -> dict[str, Any]:
    import aiohttp
    import msgspec

    from benchmarks._common import tally_batch_answer
    from pattern_tracker.model.archive import Archive
    from pattern_tracker.model.events import BatchSummary, json_encoder, to_batch_request

    # All this client reads of an answer: its summary (the decoder skips the rest).
    answer_decoder = msgspec.json.Decoder(msgspec.defstruct("Answer", [("batch_summary", BatchSummary)]))
    archive = Archive(archive_path)
    url = f"{base}{PREFIX}/lineage/track/batch"
    headers = {"Content-Type": "application/json"}
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    counts = {"events": 0, "ok": 0, "failed": 0, "requests": 0, "http_errors": 0}
    tasks: set[asyncio.Task[None]] = set()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def post(body: bytes, n: int) -> None:
            try:
                t = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    raw = await resp.read()
                    status = resp.status
                latencies.append(time.perf_counter() - t)
                counts["requests"] += 1
                tally_batch_answer(counts, status, raw, n, answer_decoder.decode)
            finally:
                sem.release()

        t0 = time.perf_counter()
        for events in archive.chunks(batch_size):
            body = json_encoder.encode(to_batch_request(events))
            counts["events"] += len(events)
            await sem.acquire()
            task = asyncio.create_task(post(body, len(events)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - t0
    archive.close()
    return {**counts, "seconds": seconds, "events_per_second": counts["ok"] / seconds,
            "latency_p50_ms": 1000 * (percentile(latencies, 0.5) or 0), "latency_p99_ms": 1000 * (percentile(latencies, 0.99) or 0)}


async def per_event_client(archive_path: str, base: str, limit: int) -> dict[str, Any]:
    """The status quo: one request per event, stdlib json, 3 attempts with exponential backoff."""
    import aiohttp
    import msgspec

    from pattern_tracker.model.archive import Archive
    from pattern_tracker.model.events import to_track_request

    archive = Archive(archive_path)
    url = f"{base}{PREFIX}/lineage/track"
    latencies: list[float] = []
    counts = {"events": 0, "ok": 0, "failed": 0, "retries": 0}
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        for events in archive.chunks(100):
            for ev in events[: limit - counts["events"]]:
                counts["events"] += 1
                body = json.dumps(msgspec.structs.asdict(to_track_request(ev)))
                t = time.perf_counter()
                for attempt in range(3):
                    try:
                        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                            await resp.read()
                            if resp.status == 200:
                                counts["ok"] += 1
                                break
                            if resp.status not in (429, 500, 502, 503, 504):
                                counts["failed"] += 1
                                break
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                    if attempt == 2:
                        counts["failed"] += 1
                        break
                    counts["retries"] += 1
                    await asyncio.sleep(0.1 * 2 ** attempt)
                latencies.append(time.perf_counter() - t)
            if counts["events"] >= limit:
                break
    seconds = time.perf_counter() - t0
    archive.close()
    return {**counts, "seconds": seconds, "events_per_second": counts["ok"] / seconds,
            "latency_p50_ms": 1000 * (percentile(latencies, 0.5) or 0), "latency_p99_ms": 1000 * (percentile(latencies, 0.99) or 0)}


def decode_only(archive_path: str, chunk: int) -> dict[str, Any]:
    """Read and decode every event of the archive, as `replay` does, and nothing else."""
    from pattern_tracker.model.archive import Archive

    archive = Archive(archive_path)
    t0 = time.perf_counter()
    n = sum(len(events) for events in archive.chunks(chunk))
    seconds = time.perf_counter() - t0
    archive.close()
    return {"events": n, "seconds": seconds, "events_per_second": n / seconds}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("client", choices=["ceiling", "per-event", "decode"])
    ap.add_argument("archive")
    ap.add_argument("--url")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--limit", type=int, default=5_000)
    a = ap.parse_args()
    if a.client == "ceiling":
        print(json.dumps(asyncio.run(ceiling_client(a.archive, a.url, a.batch_size, a.concurrency))))
    elif a.client == "per-event":
        print(json.dumps(asyncio.run(per_event_client(a.archive, a.url, a.limit))))
    else:
        print(json.dumps(decode_only(a.archive, a.batch_size)))
    sys.exit(0)
