"""Secrets out of captured code: ``Redactor.redact``, the engine over the detector table.

Imported by the hook process on every edit, so: standard library ``re`` only, and each pattern
is compiled lazily, once per process, when a ``redact`` call first needs it (``import
pattern_tracker.core.redact`` itself compiles nothing; a detector whose literal prefix is not in
the text is neither compiled nor run).

How ``redact`` works
--------------------
Every detector runs over the same text and yields *spans* (start, end, kind) of secret text
only: for an assignment, a URL or an ``Authorization`` header only the value is a span, so the
structure around it survives (``password = "[REDACTED:assignment]"``). Overlapping spans are
merged into one, named after the most specific detector (a GitHub token inside an assignment
counts as ``github_token``). Text that already is a ``[REDACTED:kind]`` marker is never part of a
span. The passes are repeated on their own output until nothing new is found (at most a few
rounds; a marker can change the context around it), which makes ``redact`` idempotent.

Every pattern is linear in the input: possessive or bounded repetitions, runs that start only at
a word boundary (so two attempts never rescan the same run), and the value of an assignment
looked at from its separator, not from a name of unbounded length (the patterns themselves,
by name, are in ``pattern_tracker.core.redact_patterns``; this module compiles, scans and
replaces).
"""

from __future__ import annotations

import re

from pattern_tracker.core.redact_patterns import (
    AUTH_WORDS,
    BEARER_WORDS,
    KINDS,
    P_ASSIGN,
    P_AWS_SECRET,
    P_BEARER,
    P_CUSTOM,
    P_GCP,
    P_PEM,
    P_TOKEN,
    P_URL,
    PLACEHOLDER_WORDS,
    SECRET_WORDS,
    SOURCES,
    TOKENS,
    TYPE_WORDS,
)

TYPE_CHECKING = False  # no `typing` at run time: the hook pays for every import
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["KINDS", "Redactor"]

MARKER_FORMAT = "[REDACTED:{}]"
# Detection passes at most (a new marker can change the context around it).
_MAX_ROUNDS = 4

_cache: dict[str, re.Pattern[str]] = {}


def _re(name: str) -> re.Pattern[str]:
    """The compiled pattern ``name``: compiled on first use, once per process."""
    pattern = _cache.get(name)
    if pattern is None:
        pattern = _cache[name] = re.compile(SOURCES[name])
    return pattern


# --------------------------------------------------------------------------------------------
# Value heuristics


def _is_placeholder(value: str) -> bool:
    v = value.strip()
    if v.lower() in PLACEHOLDER_WORDS:
        return True
    if _re("env_name").fullmatch(v):
        return True
    return _re("placeholder").search(v) is not None


def _secret_name(name: str) -> str | None:
    """When an identifier names a secret (it ends with a secret word, plus maybe a short suffix
    like _key or 2): "random" if its values are random strings (tokens, keys), else "any"."""
    m = _re("kw_end_rev").match(name[::-1].lower())
    if m is None:
        return None
    kw = m.group("kw")
    if kw == "ssap":
        # bare "pass" only as its own word: db_pass, DB_PASS, dbPass; not bypass, compass
        at = len(name) - m.end()
        before = name[at - 1] if at else ""
        if before.isalpha() and not (before.islower() and name[at] == "P"):
            return None
    return "random" if kw == "nekot" or kw.startswith("yek") else "any"


def _looks_random(value: str) -> bool:
    """Has a digit or a symbol: not a word or a dotted name (token: "keyword.operator")."""
    return any(c.isdigit() or not (c.isalpha() or c in "._- ") for c in value)


def _quoted_ok(value: str, what: str) -> bool:
    if what == "random" and not _looks_random(value):
        return False
    if _is_placeholder(value):
        return False
    if value[:1].isupper() and value[1:].isalpha() and value[1:].islower():
        return False  # "Password": a label, not a password
    return True


def _bare_ok(name: str, sep: str, spaced: bool, pfx: str | None, value: str, what: str) -> bool:
    if what == "random" and not _looks_random(value):
        return False
    if sep == "=":
        # env files (UPPER_CASE names) and .properties (dotted.names); not Python variables
        if spaced and value.isidentifier():
            return False  # API_TOKEN = DEFAULT_TOKEN
        bare_name = name.lstrip("$")
        if any(c.islower() for c in bare_name) and (spaced or "." not in bare_name):
            return False
    elif sep == ":":
        if value[0] in "&*!|>@`?-":
            return False  # YAML anchors, aliases, tags, block scalars
        if value.lower() in TYPE_WORDS or _re("type_like").fullmatch(value):
            return False  # password: str / apiKey: ApiKey (type annotations)
    elif pfx != "ENV":
        return False  # a whitespace separator: only Dockerfile "ENV NAME value"
    if value[-1] in ",;" or value[0] in "$%{<[(":
        return False
    if _re("code_value").fullmatch(value):
        return False
    if (value.isidentifier() and not value[0].isupper() and not any(c.isdigit() for c in value)
            and _re("kw_any").search(value)):
        return False  # password = new_password: a variable, not a value
    return not _is_placeholder(value)


# --------------------------------------------------------------------------------------------
# Detectors: each appends (start, end, priority, kind) spans of secret text to `out`.


def _find_gcp(text: str, out: list) -> None:
    if '"private_key' in text:
        for m in _re("gcp").finditer(text):
            g = "id" if m.group("id") is not None else "pk"
            out.append((m.start(g), m.end(g), P_GCP, "gcp_service_account"))


def _find_pem(text: str, out: list) -> None:
    if "BEGIN" in text:
        for m in _re("pem").finditer(text):
            out.append((m.start(), m.end(), P_PEM, "private_key"))


def _find_tokens(text: str, out: list) -> None:
    for i, (kind, prefix, rest, _boundary) in enumerate(TOKENS):
        if prefix not in text:
            continue
        partial = "(?P<s>" in rest
        for m in _re(f"token{i}").finditer(text):
            span = m.span("s") if partial else m.span()
            out.append((span[0], span[1], P_TOKEN, kind))


def _find_aws_secret(text: str, out: list) -> None:
    for word in SECRET_WORDS:
        if word not in text:
            continue
        for m in _re(word).finditer(text):
            name = m.group(0)[:30].lower().replace("_", "").replace("-", "").replace(".", "")
            head = text[max(0, m.start() - 4):m.start()].lower()
            if name.startswith("secretaccesskey") or "aws" in head:
                out.append((m.start("v"), m.end("v"), P_AWS_SECRET, "aws_secret_key"))


def _find_url(text: str, out: list) -> None:
    if "://" in text:
        for m in _re("url").finditer(text):
            if not _is_placeholder(m.group("v")):
                out.append((m.start("v"), m.end("v"), P_URL, "url_credentials"))


def _find_bearer(text: str, out: list) -> None:
    for words, bare in ((AUTH_WORDS, False), (BEARER_WORDS, True)):
        for word in words:
            if word not in text:
                continue
            for m in _re(word).finditer(text):
                value = m.group("v")
                if _is_placeholder(value):
                    continue
                if bare and not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
                    continue  # "Bearer" in prose, without an Authorization header
                out.append((m.start("v"), m.end("v"), P_BEARER, "bearer_token"))


def _find_assignments(text: str, out: list) -> None:
    name_rev = _re("name_rev")
    for m in _re("sep").finditer(text):
        g = m.lastgroup or ""
        if text.startswith("[REDACTED:", m.start(g)):
            continue
        start = m.start()
        lo = max(0, start - 200)
        line_start = text.rfind("\n", lo, start) + 1 or lo
        before = text[line_start:start][::-1]
        nm = name_rev.match(before)
        if nm is None:
            continue
        sep = m.group(0).rstrip(" \t")
        if nm.group("ann") is not None and sep != "=":
            continue
        name_start = start - nm.end("name")
        if text[max(0, name_start - 10):name_start] == "[REDACTED:":
            continue  # the "name" is a marker's kind
        what = _secret_name(nm.group("name")[::-1])
        if what is None:
            continue
        if g == "v4":  # Password=...; only in a connection string, never code
            if sep != "=" or (name_start > line_start and text[name_start - 1] not in ";\"' \t"):
                continue
            if any(c in "(){}" for c in m.group(g)):
                continue
        if _quoted_ok(m.group(g), what):
            out.append((m.start(g), m.end(g), P_ASSIGN, "assignment"))

    def bare(m: re.Match[str]) -> None:
        name = m.group("name")
        what = _secret_name(name)
        if what is not None:
            raw_sep = m.group("sep")
            sep = raw_sep.strip(" \t") or " "
            spaced = raw_sep[:1] in " \t" or text[m.end("sep"):m.start("v")] != ""
            if _bare_ok(name, sep, spaced, m.group("pfx"), m.group("v"), what):
                out.append((m.start("v"), m.end("v"), P_ASSIGN, "assignment"))

    first = _re("bare_first").match(text)
    if first is not None:
        bare(first)
    for m in _re("bare_line").finditer(text):
        bare(m)


def _find_custom(text: str, patterns: tuple[re.Pattern[str], ...], out: list) -> None:
    for pattern in patterns:
        for m in pattern.finditer(text):
            if pattern.groups and m.start(1) >= 0:
                s, e = m.span(1)  # the pattern says which part is secret
            else:
                s, e = m.span()
            if e > s:
                out.append((s, e, P_CUSTOM, "custom"))


def _outside_markers(spans: list, text: str) -> list:
    """The spans minus any ``[REDACTED:...]`` marker already in the text (never re-redacted)."""
    if "[REDACTED:" not in text:
        return spans
    markers = [m.span() for m in _re("marker").finditer(text)]
    if not markers:
        return spans
    spans.sort()
    result = []
    j = 0
    for s, e, p, k in spans:
        while j < len(markers) and markers[j][1] <= s:
            j += 1
        cur = s
        i = j
        while i < len(markers) and markers[i][0] < e:
            ms, me = markers[i]
            if ms > cur and any(c.isalnum() for c in text[cur:ms]):
                result.append((cur, ms, p, k))
            cur = max(cur, me)
            i += 1
        if cur < e and any(c.isalnum() for c in text[cur:e]):
            result.append((cur, e, p, k))
    return result


# --------------------------------------------------------------------------------------------


class Redactor:
    """Replaces secrets in text with ``[REDACTED:<kind>]``; see the module docstring.

    ``extra_patterns``: regular expressions (Python syntax) redacted as kind "custom"; with a
    capturing group only group 1 is replaced. An invalid one raises ``ValueError`` here (the
    configuration loader reports it earlier, with its origin).
    """

    __slots__ = ("enabled", "_extra")

    def __init__(self, extra_patterns: Iterable[str] = (), enabled: bool = True) -> None:
        self.enabled = bool(enabled)
        extra = []
        for i, pattern in enumerate(extra_patterns or ()):
            try:
                extra.append(re.compile(pattern))
            except (re.error, TypeError, OverflowError, RecursionError) as exc:
                raise ValueError(
                    f"redaction.extra_patterns[{i}] = {pattern!r}: not a regular expression ({exc})"
                ) from None
        self._extra: tuple[re.Pattern[str], ...] = tuple(extra)

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """``(text with every secret replaced, {kind: how many})``.

        Never raises on a ``str``: should a detector fail unexpectedly, the whole text is
        withheld (``[REDACTED:redaction_error]``) rather than passed on unredacted.
        """
        if not self.enabled:
            return text, {}
        if not isinstance(text, str):
            raise TypeError(f"redact() takes a str, not {type(text).__name__}")
        try:
            counts: dict[str, int] = {}
            text, markers = _apply(text, self._detect(text), counts)
            # A marker changes the context around it (e.g. gives the token after it a word
            # boundary): look again, on the lines that got one, until nothing new turns up.
            for _ in range(_MAX_ROUNDS - 1):
                if not markers:
                    break
                spans = []
                for a, b in _lines_around(text, markers):
                    spans.extend((s + a, e + a, p, k) for s, e, p, k in self._detect(text[a:b]))
                text, markers = _apply(text, spans, counts)
            return text, counts
        except Exception:  # noqa: BLE001 - a bug here must not leak the text
            return MARKER_FORMAT.format("redaction_error"), {"redaction_error": 1}

    def _detect(self, text: str) -> list[tuple[int, int, int, str]]:
        """Every span of secret text: (start, end, priority, kind); never inside a marker."""
        spans: list[tuple[int, int, int, str]] = []
        _find_gcp(text, spans)
        _find_pem(text, spans)
        _find_tokens(text, spans)
        _find_aws_secret(text, spans)
        _find_url(text, spans)
        _find_bearer(text, spans)
        _find_assignments(text, spans)
        _find_custom(text, self._extra, spans)
        return _outside_markers(spans, text) if spans else spans


def _apply(text: str, spans: list, counts: dict[str, int]) -> tuple[str, list[tuple[int, int]]]:
    """Replace the spans (overlapping ones merged, named by the higher priority) by markers;
    count them. Returns the new text and where the new markers are in it."""
    if not spans:
        return text, []
    spans.sort()
    spans.append((len(text) + 1, 0, 0, ""))  # sentinel
    parts = []
    markers = []
    pos = 0
    out_len = 0
    cur_s, cur_e, cur_p, cur_k = spans[0]
    for s, e, p, k in spans[1:]:
        if s < cur_e:
            if e > cur_e:
                cur_e = e
            if p < cur_p:
                cur_p, cur_k = p, k
            continue
        keep = text[pos:cur_s]
        marker = MARKER_FORMAT.format(cur_k)
        parts.append(keep)
        parts.append(marker)
        out_len += len(keep)
        markers.append((out_len, out_len + len(marker)))
        out_len += len(marker)
        counts[cur_k] = counts.get(cur_k, 0) + 1
        pos = cur_e
        cur_s, cur_e, cur_p, cur_k = s, e, p, k
    parts.append(text[pos:])
    return "".join(parts), markers


def _lines_around(text: str, markers: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The whole lines holding the markers, as merged (start, end) ranges."""
    ranges: list[tuple[int, int]] = []
    for a, b in markers:
        if ranges and a < ranges[-1][1]:
            continue  # on a line already taken
        start = text.rfind("\n", 0, a) + 1
        end = text.find("\n", b)
        if end < 0:
            end = len(text)
        if ranges and start <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))
    return ranges
