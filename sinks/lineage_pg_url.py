"""PostgreSQL store URLs without their secrets: what every message, log line and error shows.

Pure string work (no driver import), so the CLI and ``serve``'s start line can show a store URL
without loading psycopg. Handles libpq URLs (``postgresql://user:PASS@host/db?password=PASS``,
several hosts too) and key/value connection strings (``host=... password=PASS``).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["MASK", "is_postgres_url", "redact_text", "redact_url"]

MASK = "***"

_KEYVALUE_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def is_postgres_url(value: str) -> bool:
    """A libpq URL (``postgresql://`` or ``postgres://``), as opposed to a data directory."""
    return value.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) replaced by ``***``.

    Never raises: text it cannot parse comes back with anything after ``password=`` masked and
    the authority's ``:secret@`` part masked.
    """
    if not is_postgres_url(url):
        return _KEYVALUE_PASSWORD.sub(lambda m: m.group(1) + MASK, url)
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            user, sep, _password = userinfo.partition(":")
            netloc = f"{user}:{MASK}@{hosts}" if sep else f"{user}@{hosts}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k.lower() == "password" for k, _ in pairs):
                query = urlencode([(k, MASK if k.lower() == "password" else v) for k, v in pairs], safe="*")
        return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "") + \
            (f"#{parts.fragment}" if parts.fragment else "")
    except ValueError:
        masked = re.sub(r"(//[^/@:]*:)[^@]*@", lambda m: m.group(1) + MASK + "@", url)
        return re.sub(r"(password=)[^&]*", lambda m: m.group(1) + MASK, masked, flags=re.IGNORECASE)


def redact_text(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` (a driver's error message) with each of ``secrets`` replaced by ``***``: the drivers
    do not print passwords, but a message must not carry one even if some day one did."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
