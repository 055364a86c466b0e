"""Our PostToolUse entry in a Claude Code ``settings.json``: merge it in, take it out.

The pure part works on parsed settings (plain dicts/lists) and never mutates its input:

    >>> s, action = install_hook({}, "pattern-tracker hook", 10)
    >>> s["hooks"]["PostToolUse"][0]["matcher"], action
    ('Write|Edit|MultiEdit|NotebookEdit', 'installed')
    >>> uninstall_hook(s) == ({}, 1)
    True

Our entries are recognised by their command (:func:`is_our_command`): the first word ends with
``pattern-tracker`` (or ``pattern_tracker``) and the second is ``hook``. Nothing else is ever
touched: other hooks, other matcher groups, other events, other top-level keys, key order.

Installing appends (the ``hooks`` key at the end of the settings, ``PostToolUse`` at the end of
``hooks``, our group at the end of ``PostToolUse``, our hook at the end of an existing group with
our matcher and someone else's hooks) and uninstalling removes a container only when removing our
entry emptied it, so install followed by uninstall gives back the original document — except for
empty containers that were already there (``"hooks": {}``, ``"PostToolUse": []``): they come back
absent, because the installed documents are identical and uninstall cannot tell them apart.

The I/O part (:func:`read_settings`, :func:`write_settings`) reads strictly and writes
atomically (temp file in the same directory + ``os.replace``), keeping the file mode and a
``settings.json.bak`` of the previous content.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

__all__ = [
    "EVENT",
    "MATCHER",
    "SettingsError",
    "find_our_hooks",
    "install_hook",
    "is_our_command",
    "is_our_hook",
    "read_settings",
    "render_settings",
    "uninstall_hook",
    "write_settings",
]

EVENT = "PostToolUse"
MATCHER = "Write|Edit|MultiEdit|NotebookEdit"
_NAMES = ("pattern-tracker", "pattern_tracker")


class SettingsError(Exception):
    """A settings file we must not change (malformed, wrong types, unreadable, unwritable): one line."""


# ---------------------------------------------------------------------------------------
# Recognising our entries


_PYTHON = re.compile(r"python[0-9.]*(\.exe)?")


def is_our_command(command: object) -> bool:
    """``…/pattern-tracker hook [args…]``: first word ends with pattern-tracker, second is ``hook``.

    Also ``…/python -I …/pattern-tracker hook [args…]`` (a Python interpreter and its flags
    first): the form that keeps a ``PYTHONPATH`` exported by the user's shell from choosing
    which ``pattern_tracker`` the console script imports.
    """
    if not isinstance(command, str):
        return False
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: not ours
        return False
    if words and _PYTHON.fullmatch(os.path.basename(words[0]).lower()):
        words = words[1:]
        while words and words[0].startswith("-"):
            if words[0].startswith(("-m", "-c")):  # a module or a program, not our script
                return False
            words = words[2:] if words[0] in ("-X", "-W") else words[1:]  # their value may follow
    if len(words) < 2 or words[1] != "hook":
        return False
    first = words[0]
    if first.lower().endswith(".exe"):
        first = first[:-4]
    return first.endswith(_NAMES)


def is_our_hook(hook: object) -> bool:
    return (
        isinstance(hook, dict)
        and hook.get("type", "command") == "command"
        and is_our_command(hook.get("command"))
    )


def _post_tool_use(settings: object) -> list[Any] | None:
    """The PostToolUse list, or None when absent; SettingsError when a level has the wrong type."""
    if not isinstance(settings, dict):
        raise SettingsError(f"the settings are a JSON {_json_type(settings)}, expected an object")
    if "hooks" not in settings:
        return None
    hooks = settings["hooks"]
    if not isinstance(hooks, dict):
        raise SettingsError(f'"hooks" is a JSON {_json_type(hooks)}, expected an object')
    if EVENT not in hooks:
        return None
    groups = hooks[EVENT]
    if not isinstance(groups, list):
        raise SettingsError(f'"hooks.{EVENT}" is a JSON {_json_type(groups)}, expected an array')
    return groups


def _group_hooks(group: object) -> list[Any] | None:
    """A matcher group's hooks list, or None for a group we do not understand (left alone)."""
    if isinstance(group, dict) and isinstance(group.get("hooks"), list):
        return group["hooks"]
    return None


def find_our_hooks(settings: object) -> list[dict[str, Any]]:
    """Our hook entries in ``hooks.PostToolUse``, in document order (SettingsError on wrong types)."""
    found = []
    for group in _post_tool_use(settings) or []:
        found.extend(h for h in _group_hooks(group) or [] if is_our_hook(h))
    return found


# ---------------------------------------------------------------------------------------
# Pure merge / remove


def _remove_ours(groups: list[Any], keep: object = None) -> int:
    """Remove our hooks (except the object ``keep``) in place; drop groups that we emptied."""
    removed = 0
    for gi in range(len(groups) - 1, -1, -1):
        hooks = _group_hooks(groups[gi])
        if hooks is None:
            continue
        before = len(hooks)
        hooks[:] = [h for h in hooks if h is keep or not is_our_hook(h)]
        if len(hooks) < before:
            removed += before - len(hooks)
            if not hooks:
                del groups[gi]
    return removed


def install_hook(settings: dict[str, Any], command: str, timeout: int) -> tuple[dict[str, Any], str]:
    """Settings with exactly one entry of ours (``command``, ``timeout``) and the action taken.

    The action is ``"installed"`` (there was none), ``"updated"`` (ours was there with another
    command, timeout or place; replaced in place) or ``"unchanged"``. The input is not mutated.
    """
    if not is_our_command(command):
        raise ValueError(f"not a pattern-tracker hook command: {command!r}")
    groups = _post_tool_use(settings)  # validates before anything is copied
    new = copy.deepcopy(settings)
    wanted = {"type": "command", "command": command, "timeout": timeout}
    if groups is None:
        hooks = new.setdefault("hooks", {})
        hooks[EVENT] = [{"matcher": MATCHER, "hooks": [wanted]}]
        return new, "installed"

    groups = new["hooks"][EVENT]
    # The keeper: our first entry in a group with our exact matcher (updated in place).
    keeper = None
    for group in groups:
        hooks = _group_hooks(group)
        if hooks is not None and group.get("matcher") == MATCHER:
            keeper = next((h for h in hooks if is_our_hook(h)), None)
            if keeper is not None:
                break
    had_any = bool(find_our_hooks(new))
    moved = _remove_ours(groups, keep=keeper)  # duplicates, and ours under another matcher
    if keeper is not None:
        changed = any(keeper.get(k) != v for k, v in wanted.items()) or moved > 0
        keeper.update(wanted)
        return new, "updated" if changed else "unchanged"
    # Join an existing group with our matcher that holds someone else's hooks, else add a group.
    target = next((g for g in groups if _group_hooks(g) and g.get("matcher") == MATCHER), None)
    if target is not None:
        target["hooks"].append(wanted)
    else:
        groups.append({"matcher": MATCHER, "hooks": [wanted]})
    return new, "updated" if had_any else "installed"


def uninstall_hook(settings: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Settings without our entries, and how many were removed. The input is not mutated.

    A matcher group, ``PostToolUse`` and ``hooks`` are removed only when removing our entries
    emptied them; containers that were empty before stay.
    """
    groups = _post_tool_use(settings)
    if groups is None or not find_our_hooks(settings):
        return copy.deepcopy(settings), 0
    new = copy.deepcopy(settings)
    groups = new["hooks"][EVENT]
    before = len(groups)
    removed = _remove_ours(groups)
    if not groups and before:
        del new["hooks"][EVENT]
        if not new["hooks"]:
            del new["hooks"]
    return new, removed


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


# ---------------------------------------------------------------------------------------
# I/O


def render_settings(settings: dict[str, Any]) -> str:
    return json.dumps(settings, indent=2, ensure_ascii=False) + "\n"


def read_settings(path: Path) -> tuple[dict[str, Any], bytes | None]:
    """The parsed settings and the file's bytes; ``({}, None)`` when the file does not exist.

    An empty (or whitespace-only) file counts as ``{}``. Anything else that is not a JSON object
    with the expected types raises :class:`SettingsError` naming the file (and the position).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}, None
    except IsADirectoryError:
        raise SettingsError(f"{path} is a directory, not a settings file") from None
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path} is not UTF-8 (byte {exc.start}); not changed") from None
    if not text.strip():
        return {}, raw
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; not changed"
        ) from None
    try:
        _post_tool_use(settings)
    except SettingsError as exc:
        raise SettingsError(f"{path}: {exc}; not changed") from None
    return settings, raw


def _atomic_write(path: Path, data: bytes, mode: int | None) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies to new files
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_settings(path: Path, settings: dict[str, Any], previous: bytes | None) -> Path | None:
    """Write ``settings`` atomically; back up ``previous`` (the old bytes) to ``<name>.bak`` first.

    Creates the directory when missing. A symlinked settings file is written through (its target
    is replaced, the link stays). Keeps the old file's mode. Returns the backup path (or None
    when there was no previous file). Raises :class:`SettingsError` on any OS error.
    """
    target = Path(os.path.realpath(path))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode: int | None = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            mode = None
        backup = None
        if previous is not None:
            backup = target.with_name(target.name + ".bak")
            _atomic_write(backup, previous, mode)
        _atomic_write(target, render_settings(settings).encode("utf-8"), mode)
    except OSError as exc:
        where = exc.filename or target
        raise SettingsError(f"cannot write {path}: {exc.strerror or exc} ({where}); not changed") from None
    return backup
