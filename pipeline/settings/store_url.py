"""``serve.store`` / ``serve --store``: is it a PostgreSQL URL, and the same URL with its password hidden.

Checked when the configuration loads (a bad scheme or an unparsable URL is one line naming the key
or option, exit 2) and before ``serve`` connects. Only the shape is checked here; libpq's own
parser (the driver, at start) judges the options (``?sslmode=…``). Standard library only.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

__all__ = ["SCHEMES", "STORE_URL_FORM", "mask_store_url", "store_password", "store_url_problem"]

SCHEMES = ("postgresql", "postgres")
STORE_URL_FORM = "a postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE URL"
_MASK = "***"
_KEYVALUE_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def store_url_problem(url: str) -> str | None:
    """Why ``url`` is not a PostgreSQL URL (one short clause, no password in it), or None."""
    try:
        parts = urlsplit(url.strip())
        if "," not in parts.netloc.rpartition("@")[2]:  # several hosts (h1:5432,h2:5433): libpq's to judge
            parts.port  # noqa: B018 - raises ValueError for a port that is not 0..65535
    except ValueError as exc:
        return f"expected {STORE_URL_FORM} ({exc})"
    if parts.scheme.lower() not in SCHEMES:
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        return f"expected {STORE_URL_FORM} ({got}; use postgresql:// or postgres://)"
    if not parts.netloc and not parts.query:
        return f"expected {STORE_URL_FORM} (no host)"
    return None


def store_password(url: str | None) -> str | None:
    """The password ``url`` carries (in its user part or as ``?password=``), decoded, or None."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return None
    if password:
        return unquote(password)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password" and value:
            return value
    return None


def mask_store_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` wherever it is: a URL's user part or
    ``password=`` parameter (the user, hosts, port, database and other options shown), or a libpq
    key/value string's ``password=…``. What every message, log line and printout shows of a store.

    Never raises: a URL it cannot parse keeps nothing between ``user:`` and ``@`` and nothing
    after ``password=``.
    """
    if "://" not in url:
        return _KEYVALUE_PASSWORD.sub(lambda m: m.group(1) + _MASK, url)
    try:
        parts = urlsplit(url)
    except ValueError:
        masked = re.sub(r"(//[^/@:]*:)[^@]*@", lambda m: m.group(1) + _MASK + "@", url)
        return re.sub(r"(password=)[^&]*", lambda m: m.group(1) + _MASK, masked, flags=re.IGNORECASE)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{_MASK}@{hosts}" if sep else f"{user}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            query = urlencode([(k, _MASK if k.lower() == "password" else v) for k, v in pairs], safe="*/")
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "") + \
        (f"#{parts.fragment}" if parts.fragment else "")
