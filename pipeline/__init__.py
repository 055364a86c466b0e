"""pattern-tracker: track code patterns written by an AI coding assistant, deliver them without loss.

Keep this module import-free: the hook path imports ``pattern_tracker.*`` modules one by one and
must not pay for aiohttp, reactivex or OpenTelemetry. The Python API is loaded on first use
(PEP 562): ``from pattern_tracker import PatternTracker`` imports ``pattern_tracker.facade`` then,
and only then. The layers below this package: docs/architecture.md.
"""

__version__ = "0.1.0"

_LAZY = {
    "PatternTracker": ("pattern_tracker.facade", "PatternTracker"),
    "ConfigError": ("pattern_tracker.settings.config", "ConfigError"),
}


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    target = _LAZY.get(name)
    if target is None:
        # AttributeError (not ImportError): `from pattern_tracker import submodule` relies on it.
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
