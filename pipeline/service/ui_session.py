"""The web UI's session: a browser proves once that it knows serve's bearer token, then reads with a cookie.

A browser cannot add an ``Authorization`` header to a page load, so the lineage explorer's login
(``pattern_tracker.web.explorer``) checks the token once (``hmac.compare_digest``) and sets a
cookie holding ``ISSUED.NONCE.MAC``: ``MAC`` is an HMAC-SHA256, under a key derived from the token,
of ``ISSUED.NONCE``. The cookie never holds the token nor anything it can be recovered from; it is
valid for :data:`SESSION_SECONDS` after ``ISSUED`` and only while the token is unchanged (a new
token ends every session). It is sent ``HttpOnly; SameSite=Strict; Path=/`` and accepted for GET and
HEAD only (:func:`session_reads`): every write still needs the bearer header, so a page of another
site cannot make a logged-in browser write (and SameSite=Strict keeps the cookie off its requests).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

__all__ = ["COOKIE", "SESSION_SECONDS", "issue", "session_reads", "token_matches", "valid"]

COOKIE = "pt_session"
SESSION_SECONDS = 12 * 3600
_KEY_LABEL = b"pattern-tracker ui session v1"


def _key(token: bytes) -> bytes:
    return hmac.new(token, _KEY_LABEL, hashlib.sha256).digest()


def _mac(token: bytes, payload: str) -> str:
    return hmac.new(_key(token), payload.encode(), hashlib.sha256).hexdigest()


def token_matches(token: bytes, presented: str) -> bool:
    """Is ``presented`` the token? Constant time."""
    return hmac.compare_digest(presented.strip().encode(), token)


def issue(token: bytes, now: float | None = None) -> str:
    """A new session cookie's value for a browser that presented ``token``."""
    payload = f"{int(time.time() if now is None else now)}.{secrets.token_hex(16)}"
    return f"{payload}.{_mac(token, payload)}"


def valid(token: bytes, value: str | None, now: float | None = None) -> bool:
    """Was ``value`` issued under ``token``, less than :data:`SESSION_SECONDS` ago?"""
    if not value or value.count(".") != 2:
        return False
    issued, nonce, mac = value.split(".")
    expected = _mac(token, f"{issued}.{nonce}").encode()
    if not (issued.isascii() and issued.isdigit()) or not hmac.compare_digest(mac.encode("utf-8", "replace"), expected):
        return False
    age = (time.time() if now is None else now) - int(issued)
    return -60 <= age < SESSION_SECONDS


def session_reads(method: str) -> bool:
    """The methods a session cookie may authorise: reads only."""
    return method in ("GET", "HEAD")
