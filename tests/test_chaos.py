"""`serve --chaos`: the schedule, the pure decision policy, each fault as HttpSink sees it, the CLI."""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import re
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from pattern_tracker.service.chaos import Chaos, ChaosScheduleError, Schedule, decide, load_schedule, locate, parse_schedule
from pattern_tracker.settings.config import ConfigError
from pattern_tracker.model.events import build_event
from pattern_tracker.model.api import PREFIX
from pattern_tracker.service.serve import run_server
from pattern_tracker.sinks.http import HttpSink
from tests.clitools import BIN, async_wait_for, cli_env, run_cli, stop

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "config" / "chaos").glob("*.yaml"))


def sched(text: str) -> Schedule:
    return parse_schedule(text, "test.yaml")


def one_phase(faults: str, duration: float = 60, **top: object) -> Schedule:
    head = "".join(f"{k}: {v}\n" for k, v in top.items())
    return sched(f"{head}phases:\n  - name: p\n    duration: {duration}\n    faults: {faults}\n")


_n = iter(range(1_000_000))


def event():
    i = next(_n)
    return build_event(file_path=f"/chaos/f{i}.py", code=f"v{i}", version=1, parent_pattern_id=None,
                       source="watch", occurred_at=0)


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def chaos_log():
    lg = logging.getLogger("pattern_tracker.service.chaos")
    handler, old_level = Captured(), lg.level
    lg.addHandler(handler)
    lg.setLevel(logging.INFO)
    yield handler.lines
    lg.removeHandler(handler)
    lg.setLevel(old_level)


# -- the policy (pure) ----------------------------------------------------------------------------

MIX = one_phase("{errors: {500: 0.2, 503: 0.1}, rate_limit: {probability: 0.1, retry_after: 2}, reset: 0.05, "
                "garbage: 0.05, latency: {probability: 0.3, seconds: 0.5}, "
                "slow_body: {probability: 0.2, bytes_per_second: 100}}")


def test_rates_are_the_configured_probabilities() -> None:
    rng = random.Random(1234)
    n = 20_000
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(n):
        d = decide(MIX, 1.0, rng)
        seen[f"http_{d.status}" if d.status else d.action] += 1
        seen["latency"] += d.latency == 0.5
        seen["slow"] += d.slow_bps == 100
        if d.action == "garbage":
            seen[f"garbage_{d.garbage}"] += 1
        if d.action == "rate_limit":
            assert d.retry_after == 2 and not d.retry_after_date
    expected = {"http_500": 0.2, "http_503": 0.1, "http_429": 0.1, "reset": 0.05, "garbage": 0.05,
                "pass": 0.5, "latency": 0.3, "slow": 0.2 * 0.5}  # slow_body only for untouched answers
    for key, p in expected.items():
        assert abs(seen[key] / n - p) < 0.015, (key, seen[key] / n, p)
    assert seen["garbage_truncated"] > 0 and seen["garbage_not_json"] > 0


def test_phase_boundaries_are_exact_and_the_schedule_ends() -> None:
    s = sched("phases:\n"
              "  - {name: a, duration: 2}\n"
              "  - {name: b, duration: 3, faults: {outage: hang}}\n"
              "  - {name: c, duration: 0.5, faults: {errors: {503: 1}}}\n")
    assert s.total == 5.5 and s.starts() == [0.0, 2.0, 5.0]
    at = {t: (p.phase.name if (p := locate(s, t)) else None) for t in (-0.1, 0, 1.999999, 2.0, 4.999999, 5.0, 5.4999, 5.5, 99)}
    assert at == {-0.1: None, 0: "a", 1.999999: "a", 2.0: "b", 4.999999: "b", 5.0: "c", 5.4999: "c", 5.5: None, 99: None}
    pos = locate(s, 3.0)
    assert pos is not None and (pos.index, pos.cycle, pos.start, pos.end) == (1, 0, 2.0, 5.0)
    rng = random.Random(0)
    assert decide(s, 1.0, rng).action == "pass"
    hang = decide(s, 2.0, rng)
    assert (hang.action, hang.phase, hang.phase_end) == ("hang", "b", 5.0)
    assert decide(s, 5.0, rng).status == 503
    after = decide(s, 5.5, rng)
    assert after.action == "pass" and after.phase is None


def test_repeat_cycles_the_phases() -> None:
    s = sched("repeat: true\nphases:\n  - {name: a, duration: 2}\n  - {name: b, duration: 3}\n")
    expect = {0: ("a", 0), 2: ("b", 0), 4.9: ("b", 0), 5: ("a", 1), 7: ("b", 1), 10: ("a", 2), 5002.5: ("b", 1000)}
    for t, (name, cycle) in expect.items():
        pos = locate(s, t)
        assert pos is not None and (pos.phase.name, pos.cycle) == (name, cycle), t
    pos = locate(s, 7.5)
    assert pos is not None and (pos.start, pos.end) == (7.0, 10.0)


def test_same_seed_same_decisions_whatever_happened_before() -> None:
    s = sched("phases:\n  - {name: calm, duration: 1}\n"
              "  - {name: busy, duration: 10, faults: {errors: {500: 0.3}, reset: 0.2, latency: {probability: 0.5, seconds: 1}}}\n")
    times = [0.1 * i for i in range(120)]

    def run(seed: int) -> list:
        rng = random.Random(seed)
        return [decide(s, t, rng) for t in times]

    assert run(42) == run(42)
    assert run(43) != run(42)
    # Exactly three draws per decision, in or out of a phase: the sequence stays aligned.
    r = random.Random(7)
    decide(s, 0.5, r)  # calm phase
    decide(s, 99, r)   # after the schedule
    r2 = random.Random(7)
    for _ in range(6):
        r2.random()
    assert r.random() == r2.random()


def test_seed_precedence() -> None:
    s = one_phase("{reset: 0.5}", seed=5)
    assert Chaos(s).seed == 5 and Chaos(s, seed=9).seed == 9
    unseeded = Chaos(one_phase("{reset: 0.5}"))
    assert not unseeded.seed_given and isinstance(unseeded.seed, int)


# -- schedule errors ------------------------------------------------------------------------------

BAD = [
    ("phases:\n  - name: a\n    duration: 1\n    faults:\n      erors: {500: 0.1}\n",
     "unknown key phases[0].faults.erors (from {f}:5); allowed: errors, rate_limit"),
    ("phases:\n  - name: a\n    duration: 1\n    faults:\n      errors: {500: 1.5}\n",
     "phases[0].faults.errors.500 = 1.5 (from {f}:5): expected a probability 0..1"),
    ("phases:\n  - name: a\n    duration: 1\n    faults: {reset: -0.1}\n",
     "phases[0].faults.reset = -0.1 (from {f}:4): expected a probability 0..1"),
    ("phases:\n  - name: a\n    duration: -3\n",
     "phases[0].duration = -3 (from {f}:3): expected a number of seconds > 0"),
    ("phases:\n  - name: a\n    duration: 0\n",
     "phases[0].duration = 0 (from {f}:3): expected a number of seconds > 0"),
    ("phases:\n  - name: a\n   duration: [1\n", "{f}:3:4: malformed YAML:"),
    ("phases:\n  - name: a\n    duration: 1\n    faults:\n      errors: {501: 0.5}\n",
     "unknown key phases[0].faults.errors.501 (from {f}:5); allowed: 500, 502, 503, 504"),
    ("phases:\n  - name: a\n    duration: 1\n    faults: {outage: hang, reset: 0.1}\n",
     "phases[0].faults.outage = 'hang' (from {f}:4): expected no other fault in an outage phase (found reset)"),
    ("phases:\n  - name: a\n    duration: 1\n    faults: {errors: {500: 0.6}, garbage: 0.6}\n",
     "phases[0].faults: errors + rate_limit + reset + garbage = 1.2 (from {f}:4): expected at most 1"),
    ("phases:\n  - name: a\n    duration: 1\n    faults: {outage: closed}\n",
     "phases[0].faults.outage = 'closed' (from {f}:4): expected one of refused, hang"),
    ("phases:\n  - duration: 1\n", "phases[0]: missing key name (from {f}:2)"),
    ("phases: []\n", "phases = [] (from {f}:1): expected a list of at least one phase"),
    ("- a\n", "{f}: expected a mapping with phases"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[
    "unknown-key", "probability-above-1", "negative-probability", "negative-duration", "zero-duration",
    "malformed-yaml", "unknown-status", "outage-with-faults", "probabilities-over-1", "bad-outage", "missing-name",
    "no-phases", "not-a-mapping"])
def test_schedule_errors_are_one_line_naming_file_and_key(tmp_path, text: str, expected: str) -> None:
    path = tmp_path / "sched.yaml"
    path.write_text(text)
    with pytest.raises(ChaosScheduleError) as info:
        load_schedule(path)
    message = str(info.value)
    assert isinstance(info.value, ConfigError)  # the CLI's exit code 2
    assert "\n" not in message and message.startswith("chaos error: ")
    assert expected.format(f=path) in message, message


def test_unreadable_schedule_is_one_line(tmp_path) -> None:
    with pytest.raises(ChaosScheduleError) as info:
        load_schedule(tmp_path / "nope.yaml")
    assert str(info.value).startswith(f"chaos error: cannot read chaos schedule {tmp_path / 'nope.yaml'}: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_schedule_loads(path: Path) -> None:
    s = load_schedule(path)
    assert s.phases and s.total > 0


def test_the_examples_cover_every_fault() -> None:
    assert {p.name for p in EXAMPLES} >= {"mixed.yaml", "flaky.yaml", "outage.yaml", "rate-limited.yaml"}
    mixed = load_schedule(ROOT / "config" / "chaos" / "mixed.yaml")
    seen: set[str] = set()
    for phase in mixed.phases:
        f = phase.faults
        seen.update(f"errors_{s}" for s in (f.errors.rates() if f.errors else {}))
        seen.update(name for name in ("rate_limit", "latency", "slow_body") if getattr(f, name) is not None)
        seen.update(name for name in ("reset", "garbage") if getattr(f, name) > 0)
        if f.outage:
            seen.add(f.outage)
        if f.rate_limit is not None and f.rate_limit.retry_after_date:
            seen.add("retry_after_date")
    assert seen == {"errors_500", "errors_502", "errors_503", "errors_504", "rate_limit", "retry_after_date",
                    "latency", "slow_body", "reset", "garbage", "hang", "refused"}
    outage = load_schedule(ROOT / "config" / "chaos" / "outage.yaml")
    middle = [p for p in outage.phases if p.faults.outage == "refused"]
    assert len(middle) == 1 and middle[0].duration == 10 and outage.phases[0] is not middle[0] \
        and outage.phases[-1] is not middle[0]


# -- over HTTP, as our HttpSink sees it ----------------------------------------------------------


def sink(url: str, timeout: float = 5.0) -> HttpSink:
    return HttpSink(url, connect_timeout=timeout, read_timeout=timeout, total_timeout=timeout)


class PhaseClock:
    """A clock for :class:`Chaos` (its ``clock`` parameter) that moves only when the test says so.

    Phases timed from server start would make each test a race against the machine's load; with
    this clock a phase lasts until the test moves on, and the test then waits for what the
    server itself shows (its phase log, its listening socket), never for a guessed delay."""

    def __init__(self) -> None:
        self.now = 0.0  # from 0.0, phase starts are exact (no float drift at a boundary)

    def __call__(self) -> float:
        return self.now

    def enter(self, chaos: Chaos, name: str) -> None:
        """Move to the first instant of phase ``name`` (requests are decided by it at once)."""
        starts = dict(zip((ph.name for ph in chaos.schedule.phases), chaos.schedule.starts()))
        t0 = self.now - chaos.elapsed()  # when the schedule started by this clock
        self.now = t0 + starts[name]
        position = chaos.position()
        assert position is not None and position.phase.name == name


async def health(url: str) -> tuple[dict, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/health") as r1, session.get(url + PREFIX + "/health") as r2:
            assert r1.status == r2.status == 200
            return await r1.json(), await r2.json()


async def test_errors_are_the_services_answers_and_health_is_degraded(serve_factory, lineage) -> None:
    url = await serve_factory(chaos=Chaos(one_phase("{errors: {503: 1}}"), seed=1))
    async with sink(url) as s:
        [outcome] = await s.deliver([event()])
        assert (outcome.status, outcome.error_class, outcome.http_status) == ("retryable", "http_503", 503)
        assert outcome.reason == "Database connection not available"
        service = await s.health()
    assert not service.available and service.components["lineage_tracker"] == "database_unavailable"
    root, api = await health(url)
    assert root["status"] == api["status"] == "degraded"
    assert root["components"]["lineage_tracker"] == api["components"]["lineage_tracker"] == "database_unavailable"
    assert lineage.count() == 0  # refused before processing


async def test_other_statuses(serve_factory) -> None:
    url = await serve_factory(chaos=Chaos(one_phase("{errors: {500: 0.5, 502: 0.25, 504: 0.25}}"), seed=3))
    async with sink(url) as s:
        classes = {(await s.deliver([event()]))[0].error_class for _ in range(30)}
    assert classes == {"http_500", "http_502", "http_504"}


async def test_rate_limit_with_retry_after_seconds_and_http_date(serve_factory) -> None:
    clock = PhaseClock()
    chaos = Chaos(sched(
        "phases:\n"
        "  - {name: secs, duration: 0.4, faults: {rate_limit: {probability: 1, retry_after: 3}}}\n"
        "  - {name: date, duration: 30, faults: {rate_limit: {probability: 1, retry_after: 3, retry_after_date: true}}}\n"
    ), seed=1, clock=clock)
    url = await serve_factory(chaos=chaos)
    async with sink(url) as s:
        [first] = await s.deliver([event()])
        assert (first.error_class, first.http_status, first.retry_after) == ("http_429", 429, 3.0)
        assert first.reason == "Rate limit exceeded"
        clock.enter(chaos, "date")
        [dated] = await s.deliver([event()])
        assert dated.error_class == "http_429" and dated.retry_after is not None
        assert 3.0 <= dated.retry_after <= 4.0  # an HTTP date has whole seconds: never less than asked


async def test_hang_is_a_client_timeout_and_health_still_answers(serve_factory, lineage) -> None:
    url = await serve_factory(chaos=Chaos(one_phase("{outage: hang}", duration=30), seed=1))
    async with sink(url, timeout=0.3) as s:
        started = time.monotonic()
        [outcome] = await s.deliver([event()])
        assert outcome.error_class == "timeout" and time.monotonic() - started < 2
    _, api = await health(url)
    assert api["status"] == "degraded"
    assert lineage.count() == 0


async def test_hang_ends_with_its_phase_and_the_request_is_processed(serve_factory, lineage) -> None:
    url = await serve_factory(chaos=Chaos(sched("phases:\n  - {name: stuck, duration: 0.6, faults: {outage: hang}}\n"
                                                "  - {name: ok, duration: 30}\n"), seed=1))
    async with sink(url) as s:
        started = time.monotonic()
        [outcome] = await s.deliver([event()])
    assert outcome.status == "delivered" and 0.4 < time.monotonic() - started < 3
    assert lineage.count() == 1


async def test_reset_is_a_connection_error_after_processing(serve_factory, lineage) -> None:
    url = await serve_factory(chaos=Chaos(one_phase("{reset: 1}"), seed=1))
    async with sink(url) as s:
        [outcome] = await s.deliver([event()])
    assert outcome.error_class == "connection" and "content length" in outcome.reason.lower()
    assert lineage.count() == 1  # processed: the client's retry meets already_exists


async def test_garbage_is_a_bad_response(serve_factory, lineage) -> None:
    url = await serve_factory(chaos=Chaos(one_phase("{garbage: 1}"), seed=1))
    async with sink(url) as s:
        outcomes = [(await s.deliver([event()]))[0] for _ in range(6)]
    assert {(o.error_class, o.http_status) for o in outcomes} == {("bad_response", 200)}
    assert lineage.count() == 6
    # Both kinds: a truncated JSON answer and a non-JSON page.
    async with aiohttp.ClientSession() as session:
        bodies = set()
        for _ in range(12):
            async with session.get(url + PREFIX + "/lineage/query", params={"limit": "5"}) as resp:
                assert resp.status == 200
                body = await resp.read()
                bodies.add("html" if body.startswith(b"<!DOCTYPE") else "truncated" if body.startswith(b"{") else "?")
    assert bodies == {"html", "truncated"}


async def test_latency_and_slow_body_deliver_slowly(serve_factory) -> None:
    clock = PhaseClock()
    chaos = Chaos(sched(
        "phases:\n"
        "  - {name: late, duration: 1, faults: {latency: {probability: 1, seconds: 0.4}}}\n"
        "  - {name: dribble, duration: 30, faults: {slow_body: {probability: 1, bytes_per_second: 1000}}}\n"
    ), seed=1, clock=clock)
    url = await serve_factory(chaos=chaos)
    async with sink(url) as s:
        started = time.monotonic()
        [late] = await s.deliver([event()])
        late_s = time.monotonic() - started
        clock.enter(chaos, "dribble")
        started = time.monotonic()
        [slow] = await s.deliver([event()])
        slow_s = time.monotonic() - started
    assert late.status == "delivered" and 0.4 <= late_s < 2
    assert slow.status == "delivered" and 0.5 < slow_s < 4  # a batch answer is ~800 bytes at 1000 B/s
    async with sink(url, timeout=0.3) as s:  # a client with a short read timeout gives up
        [gave_up] = await s.deliver([event()])
    assert gave_up.error_class == "timeout"


async def test_refused_outage_closes_the_port_and_reopens_it(lineage, chaos_log) -> None:
    clock = PhaseClock()
    chaos = Chaos(sched("phases:\n  - {name: up, duration: 0.6}\n"
                        "  - {name: down, duration: 1, faults: {outage: refused}}\n"
                        "  - {name: again, duration: 30}\n"), seed=1, clock=clock)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(run_server("127.0.0.1", 0, lineage, chaos=chaos, ready=ready.set_result))

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return False
        return True

    def entered(name: str) -> bool:
        return any(line.startswith(f"chaos: phase {name!r}") for line in chaos_log)

    try:
        url = await asyncio.wait_for(ready, 10)
        port = int(url.rsplit(":", 1)[1])
        async with sink(url, timeout=1) as s:
            assert [o.status for o in await s.deliver([event()])] == ["delivered"]  # keeps a pooled connection
            # The controller notices the new phase (its log line), then closes the port.
            clock.enter(chaos, "down")
            await async_wait_for(lambda: entered("down") and not listening(), what="the refused phase closing the port")
            [refused] = await s.deliver([event()])
            assert refused.error_class == "connection"
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            assert (await s.health()).status == "unreachable"
            clock.enter(chaos, "again")
            await async_wait_for(lambda: entered("again") and listening(), what="the port open again after the outage")
            assert [o.status for o in await s.deliver([event()])] == ["delivered"]  # same port, back
            assert (await s.health()).available
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
    assert lineage.count() == 2
    phases = [line for line in chaos_log if line.startswith("chaos: phase")]
    assert phases == ["chaos: phase 'up' (0.6s): no faults", "chaos: phase 'down' (1s): refused",
                      "chaos: phase 'again' (30s): no faults"]


async def test_refused_without_run_server_drops_connections(serve_factory, lineage) -> None:
    url = await serve_factory(chaos=Chaos(one_phase("{outage: refused}"), seed=1))
    async with sink(url) as s:
        [outcome] = await s.deliver([event()])
    assert outcome.error_class == "connection" and lineage.count() == 0


async def test_same_seed_same_answers_over_http(serve_factory) -> None:
    schedule = one_phase("{errors: {500: 0.2, 503: 0.2}, rate_limit: {probability: 0.2, retry_after: 1}, garbage: 0.1}")

    async def classes(seed: int) -> list[str | None]:
        url = await serve_factory(chaos=Chaos(schedule, seed=seed))
        async with sink(url) as s:
            return [(await s.deliver([event()]))[0].error_class for _ in range(25)]

    first = await classes(99)
    assert await classes(99) == first and len(set(first)) >= 4
    assert await classes(100) != first


async def test_faults_leave_health_and_other_paths_alone(serve_factory) -> None:
    url = await serve_factory(chaos=Chaos(one_phase("{reset: 1}"), seed=1))
    root, api = await health(url)
    assert root["status"] == api["status"] == "healthy"


# -- the CLI ----------------------------------------------------------------------------------------


def test_cli_serve_with_the_flaky_schedule(tmp_path) -> None:
    env = cli_env(tmp_path / "data")
    proc = subprocess.Popen([str(BIN), "serve", "--port", "0", "--chaos", str(ROOT / "config/chaos/flaky.yaml"),
                             "--seed", "11"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        url = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (url and any("chaos: phase 'flaky'" in x for x in lines)):
            line = proc.stderr.readline().decode()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            if m := re.search(r"serving Phase 4 API on (http://\S+)", line):
                url = m.group(1)
        assert url, lines
        text = "".join(lines)
        assert "seed 11 (given)" in text
        assert "chaos: phase 'flaky' (60s): errors 500 2%, 502 1%, 503 3%, 504 1%;" in text

        async def deliver() -> list[str]:
            async with sink(url) as s:
                statuses = []
                for _ in range(20):
                    [o] = await s.deliver([event()])
                    statuses.append(o.status)
                _, api = await health(url)
                assert api["status"] == "healthy"  # the schedule says health: healthy
                return statuses

        statuses = asyncio.run(deliver())
        assert statuses.count("delivered") >= 10
    finally:
        stop(proc)
        if proc.stderr is not None:
            proc.stderr.close()


def test_cli_bad_schedule_exits_2_with_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("phases:\n  - name: x\n    duration: 5\n    faults: {errors: {503: 2}}\n")
    env = cli_env(tmp_path / "data")
    result = run_cli("serve", "--port", "0", "--chaos", str(bad), env=env, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == f"chaos error: phases[0].faults.errors.503 = 2 (from {bad}:4): expected a probability 0..1"
    result = run_cli("serve", "--port", "0", "--seed", "3", env=env, timeout=30)
    assert result.returncode == 2 and result.stderr.strip() == "pattern-tracker: --seed needs --chaos FILE"
