"""Reading the schema itself: the fields of a section, every leaf key, and what a field accepts in English.

Error messages and ``config show`` are written from these, so they name keys and allowed values
exactly as the Structs in :mod:`pattern_tracker.settings.schema` define them.
"""

import functools
import types
import typing
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from pattern_tracker.settings.errors import ConfigError
from pattern_tracker.settings.schema import Config


@functools.cache
def fields_of(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation (``Annotated`` kept), in declaration order."""
    return {f.name: f.type for f in msgspec.structs.fields(cls)}


def is_section(tp: Any) -> bool:
    """A nested section (a Struct), as opposed to a value."""
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def unwrap_annotated(tp: Any) -> tuple[Any, list[Meta]]:
    """``Annotated[T, Meta(...)]`` -> ``(T, [Meta, ...])``; any other type -> ``(tp, [])``."""
    if typing.get_origin(tp) is Annotated:
        return tp.__origin__, [m for m in tp.__metadata__ if isinstance(m, Meta)]
    return tp, []


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return None


def value_kind(tp: Any) -> str:
    """How an env string for this field is read: "str", "optstr", "list" or "yaml"."""
    base, _ = unwrap_annotated(tp)
    args = _union_args(base)
    if args is not None:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and value_kind(rest[0]) == "str":
            return "optstr"
        return "yaml"
    if base is str or (typing.get_origin(base) is Literal and all(isinstance(a, str) for a in typing.get_args(base))):
        return "str"
    if typing.get_origin(base) is list:
        return "list"
    return "yaml"


def _num(x: float) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def describe_allowed(tp: Any) -> str:
    """English for what a field accepts: "an integer >= 1", "one of: a, b", ..."""
    base, metas = unwrap_annotated(tp)
    lo = hi = None
    cons: list[str] = []
    for m in metas:
        if m.ge is not None:
            lo = m.ge
            cons.append(f">= {_num(m.ge)}")
        if m.gt is not None:
            cons.append(f"> {_num(m.gt)}")
        if m.le is not None:
            hi = m.le
            cons.append(f"<= {_num(m.le)}")
        if m.lt is not None:
            cons.append(f"< {_num(m.lt)}")
    bounds = f"from {_num(lo)} to {_num(hi)}" if lo is not None and hi is not None and len(cons) == 2 else " and ".join(cons)
    min_len = next((m.min_length for m in metas if m.min_length is not None), None)
    args = _union_args(base)
    if args is not None:
        parts = [describe_allowed(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if base is bool:
        return "true or false"
    if base is int:
        return f"an integer {bounds}".rstrip()
    if base is float:
        # inf passes a lower bound alone: loader._check_finite refuses it, and the words say so
        return f"a {'number' if hi is not None else 'finite number'} {bounds}".rstrip()
    if base is str:
        described = next((m.description for m in metas if m.description), None)  # a pattern's words
        return described or ("a non-empty string" if min_len else "a string")
    if typing.get_origin(base) is Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(base))
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        item_base, item_metas = unwrap_annotated(item)
        if typing.get_origin(item_base) is Literal:
            what = "a list of: " + ", ".join(str(a) for a in typing.get_args(item_base))
        elif item_base is str:
            what = "a list of non-empty strings" if any(m.min_length for m in item_metas) else "a list of strings"
        else:
            what = "a list of " + describe_allowed(item)
        return what + (" (at least one)" if min_len else "")
    if is_section(base):
        return "a mapping with keys: " + ", ".join(fields_of(base))
    return getattr(base, "__name__", str(base))


def short_repr(value: Any, limit: int = 60) -> str:
    """A value as an error message quotes it: its repr, truncated so the message stays one short line."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def field_at(dotted: str) -> Any:
    """The annotation of a dotted key, or None when there is no such key."""
    cls: Any = Config
    tp: Any = None
    for part in dotted.split("."):
        if not is_section(cls) or part not in fields_of(cls):
            return None
        tp = fields_of(cls)[part]
        cls = tp
    return tp


def unknown_key_error(dotted: str, origin: str, cls: type) -> ConfigError:
    """The error for a key section ``cls`` does not have: the keys it has, and the closest one."""
    allowed = list(fields_of(cls))
    name = dotted.rpartition(".")[2]
    hint = ""
    if name:
        import difflib  # only on this error path

        close = difflib.get_close_matches(name.lower(), allowed, n=1)
        if close:
            hint = f" (did you mean {close[0]}?)"
    return ConfigError(
        f"unknown key {dotted} (from {origin}); allowed: {', '.join(allowed)}{hint}",
        key=dotted,
        origin=origin,
        allowed=", ".join(allowed),
    )


def leaf_keys(cls: type, prefix: str = "") -> Iterator[str]:
    """Every dotted value key under ``cls``, in declaration order (the order ``config show`` prints)."""
    for name, tp in fields_of(cls).items():
        if is_section(tp):
            yield from leaf_keys(tp, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"
