"""PostgreSQL store URLs told from data directories, and driver messages without secrets.

Pure string work (no driver import). A URL's password is masked by
``settings.store_url.mask_store_url``, the one masking every face uses.
"""

from __future__ import annotations

__all__ = ["MASK", "is_postgres_url", "redact_text"]

MASK = "***"


def is_postgres_url(value: str) -> bool:
    """A libpq URL (``postgresql://`` or ``postgres://``), as opposed to a data directory."""
    return value.startswith(("postgresql://", "postgres://"))


def redact_text(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` (a driver's error message) with each of ``secrets`` replaced by ``***``: the drivers
    do not print passwords, but a message must not carry one even if some day one did."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
