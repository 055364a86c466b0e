"""One YAML file merged into the document being built, each key keeping the ``FILE:LINE`` it came from.

YAML is composed to nodes (not loaded to values) so every key and list item has its line; unknown
keys and duplicates are refused here, while the line is still known.
"""

from pathlib import Path
from typing import Any

import yaml

from pattern_tracker.settings.errors import ConfigError
from pattern_tracker.settings.introspect import describe_allowed, fields_of, is_section, short_repr, unknown_key_error
from pattern_tracker.settings.schema import Config


YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class MergeState:
    """The document being merged: values, and where each leaf (and list item) came from."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origins: dict[str, str] = {}
        self.item_origins: dict[str, list[str]] = {}  # dotted list key -> origin of each item
        self.env_raw: dict[str, str] = {}  # dotted key -> the raw env string that set it

    def set(self, path: list[str], value: Any, origin: str, item_origins: list[str] | None = None) -> None:
        d = self.data
        for part in path[:-1]:
            d = d.setdefault(part, {})
        d[path[-1]] = value
        key = ".".join(path)
        self.origins[key] = origin
        self.env_raw.pop(key, None)
        if item_origins is None:
            self.item_origins.pop(key, None)
        else:
            self.item_origins[key] = item_origins

    def copy(self) -> "MergeState":
        new = MergeState()
        new.data = _copy_tree(self.data)
        new.origins = dict(self.origins)
        new.item_origins = {k: list(v) for k, v in self.item_origins.items()}
        new.env_raw = dict(self.env_raw)
        return new


def _copy_tree(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy_tree(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v for k, v in d.items()}


def read_config_text(path: Path | str) -> str:
    """The text of a config file; unreadable or not UTF-8 is a ConfigError naming the file (and line)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot read config file {path}: {reason}", origin=str(path)) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: cannot read config file: not UTF-8 text", origin=f"{path}:{line}") from None


def _yaml_error(exc: Exception, label: str, text: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = exc.character
        code = ord(char) if isinstance(char, str) else char
        what = f"#x{code:04x}" if isinstance(code, int) else repr(char)
        return ConfigError(f"{label}:{line}:{col}: malformed YAML: unacceptable character {what}: {exc.reason}", origin=f"{label}:{line}")
    if mark is not None:
        where = f"{label}:{mark.line + 1}:{mark.column + 1}"
        reason = problem or str(exc)
        context = getattr(exc, "context", None)
        if problem and context:  # "while scanning a quoted scalar: found unexpected end of stream"
            reason = f"{context}{',' if problem.startswith('but') else ':'} {problem}"
        return ConfigError(f"{where}: malformed YAML: {reason}", origin=f"{label}:{mark.line + 1}")
    return ConfigError(f"{label}: malformed YAML: {exc}", origin=label)


def _compose(text: str, label: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=YAML_LOADER)
    except Exception as exc:  # YAMLError, RecursionError on absurd nesting, ...
        err: Exception = exc
        if YAML_LOADER is not yaml.SafeLoader:
            try:  # the pure-Python parser's messages are the familiar ones
                yaml.compose(text, Loader=yaml.SafeLoader)
            except Exception as exc2:
                err = exc2
        raise _yaml_error(err, label, text) from None


def _construct(node: yaml.Node, origin: str) -> Any:
    try:
        return yaml.constructor.SafeConstructor().construct_document(node)
    except Exception as exc:  # bad !!tags, impossible timestamps, ...
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{origin}: malformed YAML: {reason}", origin=origin) from None


def _describe_node(node: yaml.Node, origin: str) -> str:
    """The (truncated) repr of a node that is in the wrong place."""
    return short_repr(_construct(node, origin))


def _merge_mapping(
    state: MergeState, node: yaml.MappingNode, cls: type, prefix: list[str], where: Any
) -> None:
    """Merge one YAML mapping into ``state`` against Struct ``cls``; ``where(line)`` -> origin."""
    fields = fields_of(cls)
    seen: dict[str, int] = {}
    for knode, vnode in node.value:
        line = knode.start_mark.line + 1
        origin = where(line)
        if not isinstance(knode, yaml.ScalarNode):
            raise ConfigError(f"{origin}: keys must be plain names, got {_describe_node(knode, origin)}", origin=origin)
        name = knode.value
        path = [*prefix, name]
        dotted = ".".join(path)
        if name not in fields:
            raise unknown_key_error(dotted, origin, cls)
        if name in seen:
            raise ConfigError(
                f"duplicate key {dotted} (from {origin}); first given at line {seen[name]}", key=dotted, origin=origin
            )
        seen[name] = line
        tp = fields[name]
        if is_section(tp):
            if isinstance(vnode, yaml.MappingNode):
                _merge_mapping(state, vnode, tp, path, where)
            elif isinstance(vnode, yaml.ScalarNode) and vnode.tag == "tag:yaml.org,2002:null":
                continue  # "section:" with every key commented out: no overrides
            else:
                allowed = describe_allowed(tp)
                value = _describe_node(vnode, origin)
                raise ConfigError(
                    f"{dotted} = {value} (from {origin}): {dotted} is a section; expected {allowed}",
                    key=dotted,
                    origin=origin,
                    allowed=allowed,
                )
        else:
            value = _construct(vnode, origin)
            items = None
            if isinstance(vnode, yaml.SequenceNode):
                items = [where(n.start_mark.line + 1) for n in vnode.value]
            state.set(path, value, origin, items)


def merge_yaml_file(state: MergeState, text: str, label: str, where: Any) -> None:
    """Merge the YAML ``text`` over ``state``; ``label`` names it in YAML errors, ``where(line)`` -> origin."""
    root = _compose(text, label)
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == "tag:yaml.org,2002:null"):
        return  # empty file: no overrides
    if not isinstance(root, yaml.MappingNode):
        origin = where(root.start_mark.line + 1)
        allowed = "a mapping of sections: " + ", ".join(fields_of(Config))
        value = _describe_node(root, origin)
        raise ConfigError(f"top level = {value} (from {origin}): expected {allowed}", key="", origin=origin, allowed=allowed)
    _merge_mapping(state, root, Config, [], where)
