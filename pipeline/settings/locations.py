"""Where configuration comes from on disk: the shipped defaults, the user's own file, the shipped chaos schedules.

One place for these paths so the loader, ``config show`` and the hook's settings cache agree on
them. Standard library only: the hook computes its cache key from these on every edit.
"""

from __future__ import annotations

import os

from pattern_tracker import defaults as _shipped_defaults

TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DEFAULT_LABEL", "DEFAULT_YAML", "SHIPPED_CHAOS_DIR", "shipped_chaos_schedule", "shipped_chaos_names",
           "user_config_path"]

_SHIPPED_DIR = os.path.dirname(os.path.abspath(_shipped_defaults.__file__))
DEFAULT_YAML = os.path.join(_SHIPPED_DIR, "default.yaml")
# How ``config show`` names the shipped defaults: where they are in an install, not in the source tree.
DEFAULT_LABEL = "pattern_tracker/defaults/default.yaml"
SHIPPED_CHAOS_DIR = os.path.join(_SHIPPED_DIR, "chaos")


def user_config_path(env: Mapping[str, str]) -> str | None:
    """The user's file, found without flags: ``$XDG_CONFIG_HOME/pattern-tracker/config.yaml``, else
    ``$HOME/.config/pattern-tracker/config.yaml`` (the XDG rule: a relative XDG_CONFIG_HOME is ignored).

    Read from ``env`` alone, so an explicit environment without HOME (``validate_file``, tests) has none.
    The path is returned whether or not the file exists.
    """
    base = env.get("XDG_CONFIG_HOME") or ""
    if not os.path.isabs(base):
        home = env.get("HOME") or ""
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".config")
    return os.path.join(base, "pattern-tracker", "config.yaml")


def shipped_chaos_names() -> list[str]:
    """The chaos schedules shipped as package data (``pattern_tracker.defaults.chaos``), by name."""
    try:
        files = os.listdir(SHIPPED_CHAOS_DIR)
    except OSError:
        return []
    return sorted(name[: -len(".yaml")] for name in files if name.endswith(".yaml"))


def shipped_chaos_schedule(name: str) -> str | None:
    """The path of the shipped schedule called ``name`` (``mixed`` or ``mixed.yaml``), or None."""
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if stem not in shipped_chaos_names():
        return None
    return os.path.join(SHIPPED_CHAOS_DIR, f"{stem}.yaml")
