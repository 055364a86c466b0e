"""The chaos schedule: its schema (msgspec Structs, strict) and its loader (YAML → Structs).

Unknown keys, probabilities outside 0..1 and durations ≤ 0 are refused; every error is one
:class:`ChaosScheduleError` line naming the file, the line and the key path, in the style of
:mod:`pattern_tracker.settings.config` (the CLI exits 2).
"""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from msgspec import Meta

from pattern_tracker.settings.config import ConfigError

__all__ = [
    "ChaosScheduleError",
    "ErrorRates",
    "Faults",
    "Latency",
    "Phase",
    "RateLimit",
    "Schedule",
    "SlowBody",
    "load_schedule",
    "parse_schedule",
]

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
