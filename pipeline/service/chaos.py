"""``serve --chaos SCHEDULE.yaml``: faults injected on a schedule (README "Chaos schedules").

Three layers, each usable alone:

* **The schedule** — :class:`Schedule` (msgspec Structs, strict: unknown keys, probabilities
  outside 0..1 and durations ≤ 0 are refused) loaded by :func:`load_schedule`, whose errors are
  one :class:`ChaosScheduleError` line naming the file, the line and the key path, in the style
  of :mod:`pattern_tracker.settings.config` (the CLI exits 2).
* **The policy** — :func:`locate` and :func:`decide`: plain code taking ``(schedule, elapsed
  seconds, rng)``; no clock, no I/O. Every call draws exactly three numbers from ``rng``, so with
  a seed the same sequence of requests gets the same decisions whatever they were.
* **The server side** — :class:`Chaos`: an aiohttp middleware applying the decisions to the
  ``/api/pattern-traceability/lineage*`` routes, the health override (``degraded`` /
  ``database_unavailable`` during error and outage phases) and the phase controller, which logs
  each phase change and, for ``outage: refused``, closes the listening socket through a
  :class:`SiteListener` and opens it again on the same port when the phase ends.

Per request, at most one of ``errors`` / ``rate_limit`` / ``reset`` / ``garbage`` happens (their
probabilities are slots of one draw and must add up to ≤ 1); ``latency`` (before answering) and
``slow_body`` (only for an answer that is otherwise untouched) are drawn independently.
``errors`` and ``rate_limit`` answer before the request is processed (nothing is stored);
``reset`` and ``garbage`` happen *after* it was processed (the event is stored, the client does
not learn it: its retry must meet ``already_exists``); a ``hang`` holds the request until its
phase ends and then processes it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
import time
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from aiohttp import web
from msgspec import Meta

from pattern_tracker.settings.config import ConfigError
from pattern_tracker.model.api import PREFIX
from pattern_tracker.service.serve import SiteListener

__all__ = [
    "Chaos",
    "ChaosScheduleError",
    "Decision",
    "Faults",
    "Phase",
    "Position",
    "Schedule",
    "SiteListener",
    "decide",
    "describe_faults",
    "load_schedule",
    "locate",
    "parse_schedule",
]

log = logging.getLogger("pattern_tracker.service.chaos")

LINEAGE_PREFIX = PREFIX + "/lineage"
_MAX_SECONDS = 31_536_000.0  # a year: a longer phase is a typo

# -- schema -----------------------------------------------------------------------------------

Probability = Annotated[float, Meta(ge=0, le=1, description="a probability 0..1")]
Seconds = Annotated[float, Meta(gt=0, le=_MAX_SECONDS, description="a number of seconds > 0")]
RetryAfter = Annotated[int, Meta(ge=0, le=86_400, description="whole seconds 0..86400")]
BytesPerSecond = Annotated[int, Meta(ge=1, le=1_000_000_000, description="an integer >= 1 (bytes per second)")]
PhaseName = Annotated[str, Meta(min_length=1, max_length=100, description="a non-empty name")]


class _Node(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Base of every schedule node."""


class ErrorRates(_Node, rename={"e500": "500", "e502": "502", "e503": "503", "e504": "504"}):
    """``errors: {500: 0.2, 503: 0.1}`` — per-request probability of each status."""

    e500: Probability = 0.0
    e502: Probability = 0.0
    e503: Probability = 0.0
    e504: Probability = 0.0

    def rates(self) -> dict[int, float]:
        """Status → probability, ascending status, zero rates left out."""
        pairs = ((500, self.e500), (502, self.e502), (503, self.e503), (504, self.e504))
        return {status: p for status, p in pairs if p > 0}


class RateLimit(_Node):
    probability: Probability
    retry_after: RetryAfter = 1
    # Send Retry-After as an HTTP date (now + retry_after) instead of seconds.
    retry_after_date: bool = False


class Latency(_Node):
    probability: Probability
    seconds: Seconds


class SlowBody(_Node):
    probability: Probability
    bytes_per_second: BytesPerSecond


class Faults(_Node):
    errors: ErrorRates | None = None
    rate_limit: RateLimit | None = None
    outage: Literal["refused", "hang"] | None = None
    latency: Latency | None = None
    reset: Probability = 0.0
    slow_body: SlowBody | None = None
    garbage: Probability = 0.0

    def exclusive(self) -> list[tuple[str, int | None, float]]:
        """The faults that replace the answer, as (kind, status, probability) slots of one draw."""
        slots: list[tuple[str, int | None, float]] = []
        if self.errors is not None:
            slots.extend(("error", status, p) for status, p in self.errors.rates().items())
        if self.rate_limit is not None and self.rate_limit.probability > 0:
            slots.append(("rate_limit", 429, self.rate_limit.probability))
        if self.reset > 0:
            slots.append(("reset", None, self.reset))
        if self.garbage > 0:
            slots.append(("garbage", None, self.garbage))
        return slots

    def others(self) -> list[str]:
        """The keys set besides ``outage`` (an outage admits none)."""
        names = []
        for name in ("errors", "rate_limit", "latency", "slow_body"):
            if getattr(self, name) is not None:
                names.append(name)
        names.extend(name for name in ("reset", "garbage") if getattr(self, name) > 0)
        return names


class Phase(_Node):
    name: PhaseName
    duration: Seconds
    faults: Faults = msgspec.field(default_factory=Faults)
    # What the health endpoints say: auto = degraded during an outage or when errors are injected.
    health: Literal["auto", "healthy", "degraded"] = "auto"

    @property
    def degraded(self) -> bool:
        if self.health != "auto":
            return self.health == "degraded"
        f = self.faults
        return f.outage is not None or (f.errors is not None and bool(f.errors.rates()))


class Schedule(_Node):
    phases: Annotated[list[Phase], Meta(min_length=1, description="a list of at least one phase")]
    seed: int | None = None
    repeat: bool = False

    @property
    def total(self) -> float:
        return math.fsum(p.duration for p in self.phases)

    def starts(self) -> list[float]:
        """Start of each phase within one cycle (seconds from the start of the cycle)."""
        out, acc = [], 0.0
        for p in self.phases:
            out.append(acc)
            acc += p.duration
        return out


# -- loading ------------------------------------------------------------------------------------


class ChaosScheduleError(ConfigError):
    """A schedule problem, one line: ``chaos error: KEY = VALUE (from FILE:LINE): expected ...``."""

    def __str__(self) -> str:
        return f"chaos error: {self.detail}"


def load_schedule(path: str | Path) -> Schedule:
    """Read and validate ``path``. Raises :class:`ChaosScheduleError` (one line)."""
    label = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ChaosScheduleError(f"cannot read chaos schedule {label}: {exc.strerror or exc}", origin=label) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ChaosScheduleError(f"{label}:{line}: cannot read chaos schedule: not UTF-8 text",
                                 origin=f"{label}:{line}") from None
    return parse_schedule(text, label)


def parse_schedule(text: str, label: str = "<schedule>") -> Schedule:
    """Validate the YAML ``text`` (``label`` names it in errors). Raises :class:`ChaosScheduleError`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        if context and getattr(exc, "problem", None):
            reason = f"{context}: {reason}"
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark is not None else label
        raise ChaosScheduleError(f"{where}: malformed YAML: {' '.join(str(reason).split())}", origin=where) from None
    except Exception as exc:  # noqa: BLE001 - absurd nesting and the like: still one line
        raise ChaosScheduleError(f"{label}: malformed YAML: {type(exc).__name__}: {exc}", origin=label) from None
    lines: dict[tuple[str | int, ...], int] = {}
    if node is not None:
        _record_lines(node, (), lines)
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ChaosScheduleError(f"{label}: expected a mapping with phases (and optionally seed, repeat), got {got}",
                                 origin=label)
    data = _str_keys(data)
    try:
        schedule = msgspec.convert(data, Schedule)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc, data, lines, label) from None
    _check(schedule, data, lines, label)
    return schedule


def _record_lines(node: yaml.Node, path: tuple[str | int, ...], out: dict[tuple[str | int, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for knode, vnode in node.value:
            key = path + (str(knode.value),)
            out[key] = knode.start_mark.line + 1
            _record_lines(vnode, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, path + (i,), out)


def _str_keys(value: Any) -> Any:
    """Mapping keys as strings (``500:`` is an int in YAML; the schema names it "500")."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else str(k).lower() if isinstance(k, bool) else str(k)): _str_keys(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_str_keys(v) for v in value]
    return value


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else "null" if value is None else \
        str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _value_at(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _line(lines: dict[tuple[str | int, ...], int], path: tuple[str | int, ...]) -> int:
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 1)


def _type_at(path: tuple[str | int, ...]) -> Any:
    """The annotation of the schema field at ``path`` (None when not in the schema)."""
    tp: Any = Schedule
    for part in path:
        tp = _unwrap(tp)
        if isinstance(part, int):
            if typing.get_origin(tp) is not list:
                return None
            tp = typing.get_args(tp)[0]
            continue
        if not (isinstance(tp, type) and issubclass(tp, msgspec.Struct)):
            return None
        by_name = {f.encode_name: f.name for f in msgspec.structs.fields(tp)}
        if part not in by_name:
            return None
        tp = typing.get_type_hints(tp, include_extras=True)[by_name[part]]
    return tp


def _unwrap(tp: Any) -> Any:
    """``X | None`` → X; ``Annotated[X, ...]`` stays (it carries the description)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            tp = args[0]
    if typing.get_origin(tp) is Annotated:
        return _unwrap(typing.get_args(tp)[0])
    return tp


def _describe(tp: Any) -> str | None:
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) == 1:
            tp = args[0]
    text: str | None = None
    if typing.get_origin(tp) is Annotated:
        for meta in typing.get_args(tp)[1:]:
            if isinstance(meta, Meta) and meta.description:
                text = meta.description
    elif typing.get_origin(tp) is Literal:
        text = "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    elif tp is bool:
        text = "true or false"
    elif tp is int:
        text = "an integer"
    elif isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        names = [f.encode_name for f in msgspec.structs.fields(tp)]
        text = "a mapping with keys " + ", ".join(names)
    if text is not None and optional:
        text += " (or omit it)"
    return text


def _allowed_keys(path: tuple[str | int, ...]) -> list[str]:
    tp = _unwrap(_type_at(path))
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return [f.encode_name for f in msgspec.structs.fields(tp)]
    return []


def _parse_path(text: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    i, text = 0, text.removeprefix("$")
    while i < len(text):
        if text[i] == ".":
            j = i + 1
            while j < len(text) and text[j] not in ".[":
                j += 1
            parts.append(text[i + 1:j])
            i = j
        elif text[i] == "[":
            j = text.index("]", i)
            inner = text[i + 1:j]
            parts.append(int(inner) if inner.isdigit() else inner)
            i = j + 1
        else:
            i += 1
    return tuple(parts)


def _validation_error(exc: msgspec.ValidationError, data: Any, lines: dict[tuple[str | int, ...], int],
                      label: str) -> ChaosScheduleError:
    message = str(exc)
    head, sep, tail = message.rpartition(" - at `")
    if not sep:
        return ChaosScheduleError(f"{label}: {message}", origin=label)
    tail = tail.rstrip("`")
    key_error = tail.startswith("key` in `")
    path = _parse_path(tail.removeprefix("key` in `"))
    if head.startswith("Object contains unknown field `"):
        name = head.split("`")[1]
        full = path + (name,)
        origin = f"{label}:{_line(lines, full)}"
        allowed = _allowed_keys(path)
        hint = ""
        import difflib  # only on this error path

        close = difflib.get_close_matches(name.lower(), allowed, n=1)
        if close:
            hint = f" (did you mean {close[0]}?)"
        return ChaosScheduleError(f"unknown key {_dotted(full)} (from {origin}); allowed: {', '.join(allowed)}{hint}",
                                  key=_dotted(full), origin=origin, allowed=", ".join(allowed))
    if head.startswith("Object missing required field `"):
        name = head.split("`")[1]
        origin = f"{label}:{_line(lines, path)}"
        allowed = _describe(_type_at(path + (name,))) or "a value"
        return ChaosScheduleError(f"{_dotted(path)}: missing key {name} (from {origin}): expected {allowed}",
                                  key=_dotted(path + (name,)), origin=origin, allowed=allowed)
    origin = f"{label}:{_line(lines, path)}"
    if key_error:
        allowed = ", ".join(_allowed_keys(path))
        return ChaosScheduleError(f"{_dotted(path)}: bad key (from {origin}): {head}; allowed: {allowed}",
                                  key=_dotted(path), origin=origin, allowed=allowed)
    allowed = _describe(_type_at(path)) or head[0].lower() + head[1:]
    value = _value_at(data, path)
    return ChaosScheduleError(f"{_dotted(path)} = {_short(value)} (from {origin}): expected {allowed}",
                              key=_dotted(path), origin=origin, allowed=allowed)


def _check(schedule: Schedule, data: Any, lines: dict[tuple[str | int, ...], int], label: str) -> None:
    """Rules across fields: an outage stands alone; the exclusive faults add up to at most 1."""
    for i, phase in enumerate(schedule.phases):
        base: tuple[str | int, ...] = ("phases", i, "faults")
        f = phase.faults
        if f.outage is not None and f.others():
            path = base + ("outage",)
            origin = f"{label}:{_line(lines, path)}"
            raise ChaosScheduleError(
                f"{_dotted(path)} = {f.outage!r} (from {origin}): expected no other fault in an outage phase "
                f"(found {', '.join(f.others())})", key=_dotted(path), origin=origin)
        total = math.fsum(p for _, _, p in f.exclusive())
        if total > 1 + 1e-9:
            origin = f"{label}:{_line(lines, base)}"
            raise ChaosScheduleError(
                f"{_dotted(base)}: errors + rate_limit + reset + garbage = {total:g} (from {origin}): "
                f"expected at most 1 in total (at most one of them happens per request)",
                key=_dotted(base), origin=origin)


# -- the policy (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    """Where ``elapsed`` falls: phase ``index`` of cycle ``cycle``, active in [start, end) (seconds
    since the schedule started)."""

    index: int
    phase: Phase
    cycle: int
    start: float
    end: float


def locate(schedule: Schedule, elapsed: float) -> Position | None:
    """The phase active at ``elapsed`` seconds; None before 0 and after the last phase (no repeat).
    A phase covers [start, start + duration): a boundary instant belongs to the next phase."""
    if elapsed < 0 or not math.isfinite(elapsed):
        return None
    total = schedule.total
    cycle = 0
    t = elapsed
    if schedule.repeat:
        cycle = int(elapsed // total)
        t = elapsed - cycle * total
        if t >= total:  # float rounding at an exact multiple
            cycle, t = cycle + 1, 0.0
    elif elapsed >= total:
        return None
    offset = cycle * total
    for i, (start, phase) in enumerate(zip(schedule.starts(), schedule.phases)):
        end = start + phase.duration
        if t < end or i == len(schedule.phases) - 1:
            return Position(i, phase, cycle, offset + start, offset + end)
    return None  # pragma: no cover - the loop always returns


Action = Literal["pass", "error", "rate_limit", "reset", "garbage", "hang", "refused"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one lineage request. ``latency`` seconds are waited first (0 = none);
    ``slow_bps`` dribbles an untouched answer; ``phase_end`` is when a hang ends."""

    action: Action = "pass"
    phase: str | None = None
    status: int | None = None
    retry_after: int | None = None
    retry_after_date: bool = False
    latency: float = 0.0
    slow_bps: int | None = None
    garbage: Literal["truncated", "not_json"] | None = None
    phase_end: float | None = None


PASS = Decision()


def decide(schedule: Schedule, elapsed: float, rng: random.Random) -> Decision:
    """The fate of one request arriving ``elapsed`` seconds into the schedule. Draws exactly three
    numbers from ``rng`` (answer, latency, slow body) whatever the outcome."""
    u, u_latency, u_slow = rng.random(), rng.random(), rng.random()
    pos = locate(schedule, elapsed)
    if pos is None:
        return PASS
    f = pos.phase.faults
    name = pos.phase.name
    if f.outage is not None:
        return Decision(action=f.outage, phase=name, phase_end=pos.end)
    latency = f.latency.seconds if f.latency is not None and u_latency < f.latency.probability else 0.0
    acc = 0.0
    for kind, status, p in f.exclusive():
        if u < acc + p:
            if kind == "error":
                return Decision(action="error", phase=name, status=status, latency=latency)
            if kind == "rate_limit":
                assert f.rate_limit is not None
                return Decision(action="rate_limit", phase=name, status=429, latency=latency,
                                retry_after=f.rate_limit.retry_after, retry_after_date=f.rate_limit.retry_after_date)
            if kind == "garbage":
                within = (u - acc) / p
                return Decision(action="garbage", phase=name, latency=latency,
                                garbage="truncated" if within < 0.5 else "not_json")
            return Decision(action="reset", phase=name, latency=latency)
        acc += p
    slow = f.slow_body.bytes_per_second if f.slow_body is not None and u_slow < f.slow_body.probability else None
    if latency == 0.0 and slow is None:
        return Decision(phase=name)
    return Decision(phase=name, latency=latency, slow_bps=slow)


def describe_faults(phase: Phase) -> str:
    """``"errors 500 20%, 503 10%; latency 10% +1.5s"`` — the faults of a phase, for the log."""
    f = phase.faults
    if f.outage is not None:
        return f.outage

    def pct(p: float) -> str:
        return f"{p * 100:g}%"

    parts = []
    if f.errors is not None and f.errors.rates():
        parts.append("errors " + ", ".join(f"{s} {pct(p)}" for s, p in f.errors.rates().items()))
    if f.rate_limit is not None and f.rate_limit.probability > 0:
        form = "HTTP date" if f.rate_limit.retry_after_date else "seconds"
        parts.append(f"rate_limit {pct(f.rate_limit.probability)} (Retry-After {f.rate_limit.retry_after}s as {form})")
    if f.latency is not None and f.latency.probability > 0:
        parts.append(f"latency {pct(f.latency.probability)} +{f.latency.seconds:g}s")
    if f.reset > 0:
        parts.append(f"reset {pct(f.reset)}")
    if f.slow_body is not None and f.slow_body.probability > 0:
        parts.append(f"slow_body {pct(f.slow_body.probability)} at {f.slow_body.bytes_per_second} B/s")
    if f.garbage > 0:
        parts.append(f"garbage {pct(f.garbage)}")
    return "; ".join(parts) or "no faults"


# -- the server side ------------------------------------------------------------------------------

_PROXY_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
              b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
_NOT_JSON = b"<!DOCTYPE html><html><body><h1>Service starting</h1><p>Please try again.</p></body></html>\n"
_encode = msgspec.json.Encoder().encode


def error_response(status: int, request: web.Request) -> web.Response:
    """The service's own body for ``status`` on this route (502 is a reverse proxy's page)."""
    if status == 502:
        return web.Response(body=_PROXY_502, status=502, content_type="text/html")
    path = request.path
    batch = path.endswith("/track/batch")
    track = path.endswith("/track")
    if status == 503:
        detail = "Database connection not available"
    elif status == 504:
        detail = ("Batch tracking operation timed out" if batch else "Tracking operation timed out" if track
                  else "Query operation timed out")
    else:
        what = "Batch lineage tracking failed" if batch else "Lineage tracking failed" if track \
            else "Lineage query failed"
        detail = f"{what}: injected fault (chaos schedule)"
    return web.Response(body=_encode({"detail": detail}), status=status, content_type="application/json")


def _copy_head(resp: web.StreamResponse, length: int) -> web.StreamResponse:
    out = web.StreamResponse(status=resp.status, reason=resp.reason)
    for key, value in resp.headers.items():
        if key.lower() not in ("content-length", "transfer-encoding"):
            out.headers[key] = value
    out.content_length = length
    return out


class Chaos:
    """The schedule applied to a running app: build_app(chaos=...) installs :attr:`middleware`,
    starts the controller with the app and stops it on shutdown; run_server attaches a
    :class:`SiteListener` for refused outages. ``clock`` is monotonic seconds (tests may replace it)."""

    def __init__(self, schedule: Schedule, *, seed: int | None = None, source: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.schedule = schedule
        self.seed_given = seed is not None or schedule.seed is not None
        self.seed: int = seed if seed is not None else schedule.seed if schedule.seed is not None \
            else random.SystemRandom().randrange(2**32)
        self.source = source
        self.rng = random.Random(self.seed)
        self.clock = clock
        self.counts: collections.Counter[str] = collections.Counter()
        self._t0: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._listener: SiteListener | None = None
        self._down = False  # a refused phase is in force
        self._warned_no_listener = False
        self.middleware = self._make_middleware()

    # -- time and policy

    def elapsed(self) -> float:
        return 0.0 if self._t0 is None else self.clock() - self._t0

    def position(self) -> Position | None:
        return locate(self.schedule, self.elapsed())

    def decide(self) -> Decision:
        return decide(self.schedule, self.elapsed(), self.rng)

    def degraded(self) -> bool:
        """True while the health endpoints should report ``database_unavailable``."""
        pos = self.position() if self._t0 is not None else None
        return pos is not None and pos.phase.degraded

    # -- lifecycle

    async def start(self) -> None:
        if self._t0 is not None:
            return
        self._closing = asyncio.Event()
        self._t0 = self.clock()
        sched = self.schedule
        how = "given" if self.seed_given else f"random; --seed {self.seed} replays it"
        log.info("chaos: schedule %s: %d phase(s), %gs%s; seed %d (%s)", self.source or "(in memory)",
                 len(sched.phases), sched.total, ", repeating" if sched.repeat else "", self.seed, how)
        self._task = asyncio.create_task(self._run(), name="chaos-controller")

    async def attach_listener(self, listener: SiteListener) -> None:
        """Give the controller control of the listening socket (applies a refused phase in force)."""
        self._listener = listener
        if self._down:
            await listener.pause()

    async def close(self) -> None:
        if self._closing is not None:
            self._closing.set()  # held (hung) requests are dropped
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self.counts:
            log.info("chaos: lineage requests answered: %s",
                     ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())))

    async def _run(self) -> None:
        current: tuple[int, int] | None | bool = False  # False = nothing entered yet
        while True:
            pos = self.position()
            key = None if pos is None else (pos.index, pos.cycle)
            if key != current:
                current = key
                await self._enter(pos)
            if pos is None:
                return
            await asyncio.sleep(max(0.001, pos.end - self.elapsed()))

    async def _enter(self, pos: Position | None) -> None:
        if pos is None:
            log.info("chaos: schedule finished after %gs: no more faults", self.schedule.total)
        else:
            log.info("chaos: phase %r (%gs): %s", pos.phase.name, pos.phase.duration, describe_faults(pos.phase))
        want_down = pos is not None and pos.phase.faults.outage == "refused"
        if want_down == self._down:
            return
        self._down = want_down
        listener = self._listener
        if listener is None:  # not (yet) attached: attach_listener applies the state
            return
        try:
            await (listener.pause() if want_down else listener.resume())
        except Exception as exc:  # noqa: BLE001 - the controller must keep going
            log.error("chaos: %s the listener failed: %s: %s", "closing" if want_down else "reopening",
                      type(exc).__name__, exc)

    # -- the middleware

    def _make_middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def chaos_middleware(request: web.Request,
                                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
            if not request.path.startswith(LINEAGE_PREFIX):
                return await handler(request)
            return await self._apply(request, handler)

        return chaos_middleware

    async def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; False when the server is closing meanwhile."""
        if seconds <= 0:
            return True
        closing = self._closing
        if closing is None:
            await asyncio.sleep(seconds)
            return True
        try:
            await asyncio.wait_for(closing.wait(), seconds)
        except (TimeoutError, asyncio.TimeoutError):
            return True
        return False

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=503)  # never reaches the client

    async def _apply(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        d = self.decide()
        self.counts[f"http_{d.status}" if d.status else d.action] += 1
        if d.action == "refused":  # a connection the listener could not close (or no listener)
            if self._listener is None and not self._warned_no_listener:
                self._warned_no_listener = True
                log.warning("chaos: no control of the listening socket (app not started by run_server): "
                            "a refused outage drops each request's connection instead")
            return self._drop(request)
        if d.action == "hang":
            if not await self._wait((d.phase_end or 0.0) - self.elapsed()):
                return self._drop(request)
            return await handler(request)
        if d.latency and not await self._wait(d.latency):
            return self._drop(request)
        if d.action == "error":
            assert d.status is not None
            return error_response(d.status, request)
        if d.action == "rate_limit":
            seconds = d.retry_after or 0
            value = formatdate(math.ceil(time.time()) + seconds, usegmt=True) if d.retry_after_date else str(seconds)
            return web.Response(body=_encode({"detail": "Rate limit exceeded"}), status=429,
                                content_type="application/json", headers={"Retry-After": value})
        resp = await handler(request)
        body = resp.body if isinstance(resp, web.Response) else None
        if not isinstance(body, bytes):
            return resp  # nothing we can cut or dribble
        if d.action == "reset":
            return await self._reset(request, resp, body)
        if d.action == "garbage":
            mangled = body[: max(1, len(body) // 2)] if d.garbage == "truncated" else _NOT_JSON
            return web.Response(body=mangled, status=200, content_type="application/json")
        if d.slow_bps:
            return await self._dribble(request, resp, body, d.slow_bps)
        return resp

    async def _reset(self, request: web.Request, resp: web.Response, body: bytes) -> web.StreamResponse:
        """Status line, headers (with the full Content-Length) and half the body; then the
        connection is aborted."""
        out = _copy_head(resp, len(body))
        try:
            await out.prepare(request)
            await out.write(body[: len(body) // 2])
        except (ConnectionError, RuntimeError):
            pass
        transport = request.transport
        if transport is not None:
            transport.abort()
        return out

    async def _dribble(self, request: web.Request, resp: web.Response, body: bytes, bps: int) -> web.StreamResponse:
        out = _copy_head(resp, len(body))
        step = max(1, int(bps * 0.05))  # about 20 writes a second
        try:
            await out.prepare(request)
            for i in range(0, len(body), step):
                part = body[i:i + step]
                await out.write(part)
                if i + step < len(body) and not await self._wait(len(part) / bps):
                    self._drop(request)
                    return out
            await out.write_eof()
        except (ConnectionError, RuntimeError):  # the client gave up
            transport = request.transport
            if transport is not None:
                transport.abort()
        return out
