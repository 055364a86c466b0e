"""The one exception every configuration problem becomes: a line a user can act on, never a traceback."""

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """A configuration problem, as one line a user can act on.

    ``str(err)`` is ``"config error: ..."``; ``key``, ``origin`` and ``allowed`` hold the parts
    when known (``None`` otherwise).
    """

    def __init__(self, detail: str, *, key: str | None = None, origin: str | None = None, allowed: str | None = None):
        detail = " ".join(str(detail).splitlines())  # one line, whatever went into it
        super().__init__(detail)
        self.detail = detail
        self.key = key
        self.origin = origin
        self.allowed = allowed

    def __str__(self) -> str:
        return f"config error: {self.detail}"
