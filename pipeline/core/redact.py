"""Secrets out of captured code: ``Redactor.redact`` and ``is_denied``.

Imported by the hook process on every edit, so: standard library ``re``, ``fnmatch`` and ``os``
only, and each pattern is compiled lazily, once per process, when a ``redact`` call first needs
it (``import pattern_tracker.core.redact`` itself compiles nothing; a detector whose literal prefix is not in
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
looked at from its separator, not from a name of unbounded length.
"""

from __future__ import annotations

import fnmatch
import os
import re

TYPE_CHECKING = False  # no `typing` at run time: the hook pays for every import
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["KINDS", "Redactor", "is_denied"]

MARKER_FORMAT = "[REDACTED:{}]"

# Every kind a built-in detector can report ("custom" is for extra_patterns).
KINDS = (
    "aws_access_key", "aws_secret_key", "github_token", "gitlab_token", "slack_token",
    "slack_webhook", "stripe_key", "openai_key", "anthropic_key", "google_api_key",
    "gcp_service_account", "jwt", "npm_token", "pypi_token", "huggingface_token",
    "sendgrid_key", "twilio_key", "digitalocean_token", "azure_storage_key", "shopify_token",
    "private_key", "url_credentials", "bearer_token", "assignment", "custom",
)

# Priority when spans overlap: the lower number names the merged span.
_P_GCP, _P_PEM, _P_TOKEN, _P_AWS_SECRET, _P_URL, _P_BEARER, _P_ASSIGN, _P_CUSTOM = range(8)

# --------------------------------------------------------------------------------------------
# Provider tokens: (kind, literal prefix, rest, left boundary). Each prefix gets its own regex,
# run only when the prefix occurs in the text (a plain substring test) and compiled on first
# need. The left word boundary is a look-behind placed *after* the prefix, so that `re` still
# finds candidates by a fast literal search. A "(?P<s>...)" in rest marks the secret part
# (the rest of the match is kept).
_B = "A-Za-z0-9_-"  # characters a token never directly follows (its left boundary)
_TOKENS: tuple[tuple[str, str, str, bool], ...] = (
    ("aws_access_key", "AKIA", r"[A-Z0-9]{16}(?![A-Za-z0-9])", True),
    ("aws_access_key", "ASIA", r"[A-Z0-9]{16}(?![A-Za-z0-9])", True),
    ("aws_access_key", "ABIA", r"[A-Z0-9]{16}(?![A-Za-z0-9])", True),
    ("aws_access_key", "ACCA", r"[A-Z0-9]{16}(?![A-Za-z0-9])", True),
    ("aws_access_key", "A3T", r"[A-Z0-9]{17}(?![A-Za-z0-9])", True),
    ("google_api_key", "AIza", r"[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])", True),
    ("azure_storage_key", "AccountKey=", r"(?P<s>[A-Za-z0-9+/]{20,}+={0,2})", False),
    ("azure_storage_key", "SharedAccessKey=", r"(?P<s>[A-Za-z0-9+/]{20,}+={0,2})", False),
    ("github_token", "gh", r"[pousr]_[A-Za-z0-9]{36,251}+(?![A-Za-z0-9_])", True),
    ("github_token", "github_pat_", r"[A-Za-z0-9_]{50,245}+(?![A-Za-z0-9_])", True),
    ("gitlab_token", "gl",
     r"(?:pat|dt|rt|ptt|cbt|oas|soat|ft|imt|agent)-[A-Za-z0-9_-]{20,250}+(?![A-Za-z0-9_-])",
     True),
    ("slack_token", "xox", r"[abprse]-[A-Za-z0-9-]{10,250}+(?![A-Za-z0-9_-])", True),
    ("slack_token", "xapp-", r"[0-9]+-[A-Za-z0-9-]{10,250}+(?![A-Za-z0-9_-])", True),
    ("slack_webhook", "hooks.slack.com/",
     r"(?:services|workflows|triggers)/(?P<s>[A-Za-z0-9_/+-]{16,300}+)", False),
    ("huggingface_token", "hf_", r"[A-Za-z0-9]{34}(?![A-Za-z0-9])", True),
    ("huggingface_token", "api_org_", r"[A-Za-z0-9]{34}(?![A-Za-z0-9])", True),
    ("anthropic_key", "sk-ant-", r"[A-Za-z0-9_-]{20,250}+(?![A-Za-z0-9_-])", True),
    ("openai_key", "sk-",
     r"(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,250}+|[A-Za-z0-9]{32,250}+)(?![A-Za-z0-9_-])",
     True),
    ("stripe_key", "sk_", r"(?:live|test)_[A-Za-z0-9]{10,247}+(?![A-Za-z0-9_])", True),
    ("stripe_key", "rk_", r"(?:live|test)_[A-Za-z0-9]{10,247}+(?![A-Za-z0-9_])", True),
    ("stripe_key", "pk_live_", r"[A-Za-z0-9]{10,247}+(?![A-Za-z0-9_])", True),
    ("stripe_key", "whsec_", r"[A-Za-z0-9]{24,247}+(?![A-Za-z0-9_])", True),
    ("shopify_token", "shp", r"(?:at|ca|pa|ss)_[a-fA-F0-9]{32}(?![A-Za-z0-9])", True),
    ("jwt", "eyJ", r"[A-Za-z0-9_-]{8,}+\.eyJ[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]*+", True),
    ("npm_token", "npm_", r"[A-Za-z0-9]{36}(?![A-Za-z0-9])", True),
    ("pypi_token", "pypi-AgE", r"(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{40,}+", True),
    ("sendgrid_key", "SG.", r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])", True),
    ("twilio_key", "SK", r"[0-9a-fA-F]{32}(?![A-Za-z0-9])", True),
    ("digitalocean_token", "do", r"[opr]_v1_[a-f0-9]{64}(?![A-Za-z0-9])", True),
)


def _token_src(prefix: str, rest: str, boundary: bool) -> str:
    lit = re.escape(prefix)
    return lit + (f"(?<![{_B}]{lit})" if boundary else "") + rest


# Names an assignment's value is a secret under: the name must END with one of these
# (plus an optional suffix like _key / _value / 2), so token_type, tokenizer, password_hash,
# secret_name and access_key_id do not count.
# ("~" stands for an optional "_" or "-": api_key, api-key, apiKey, APIKEY.)
_KW_WORDS = (
    "password", "passwd", "pass", "passphrase", "pwd", "secret", "token", "api~key",
    "access~key", "auth~key", "private~key", "credential", "credentials", "signing~key",
    "encryption~key", "master~key", "session~key", "license~key",
)
_KW_SUFFIXES = (
    "key", "value", "val", "str", "string", "b64", "base64", "hex", "bytes", "raw", "plain",
    "plaintext", "encoded", "key~base",
)
_KW = "|".join(w.replace("~", "[_-]?") for w in _KW_WORDS)


def _reversed_alternation(words: Iterable[str]) -> str:
    # longest first, so that the match is the whole word
    rev = sorted((w[::-1] for w in words), key=len, reverse=True)
    return "|".join(w.replace("~", "[_-]?") for w in rev)


# Matched against the REVERSED, lower-cased name: one anchored attempt instead of a search.
_KW_END_REV_SRC = (
    r"(?:(?:" + _reversed_alternation(_KW_SUFFIXES) + r"|[0-9]+)[_-]?)??"
    r"(?P<kw>" + _reversed_alternation(_KW_WORDS) + r")"
)

_PLACEHOLDER_WORDS = frozenset("""
    none null nil true false undefined changeme changeit changethis replaceme placeholder
    example redacted required optional string default empty notset unset unknown hidden masked
    password passwd passphrase secret token apikey api_key api-key bearer basic secretkey
    secret_key accesstoken access_token authtoken auth_token credentials credential
""".split())

_PLACEHOLDER_SRC = r"""(?ix)
    ^(.)\1*$                                   # xxxxxx, ******, 000000
  | ^<.*>$ | ^\{[^{}]*\}$ | ^\[[^\[\]]*\]$       # <your-key>, {}, {password}, [secret]
  | \{[\w.:!]{0,30}\}                          # "{0}:{1}", "{user}:{pw}" (format fields)
  | \$\{ | \$\( | \{\{ | \}\} | \#\{ | ^\$[A-Za-z_] | ^%[A-Za-z_(] | %(?:\([^)]*\))?[sdr]$
  | ^\#[0-9a-f]{3,8}$                         # a colour
  | x{3,} | \*{3,} | \.{3} | \u2022
  | ^your[-_ ] | ^(?:enter|insert|put|replace|add)[-_ ] | [-_ ]here$
  | ^(?:change|replace)[-_ ]?(?:me|it|this)
  | ^my[-_]?(?:secret|password|pass|token|api[-_]?key|key)$
  | ^(?:dummy|fake|sample|example|test|demo|placeholder|redacted|secret|password|token|default)
     [-_ ]?(?:value|key|token|secret|password|pass|api[-_]?key)?$
"""
_ENV_NAME_SRC = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"  # GITHUB_TOKEN: names an env var, is not one

# A separator followed by a quoted value; the value is in a look-ahead so that a rejected
# match (e.g. dsn = "host=db;password=...") does not hide the separators inside it.
_SEP_QUOTED_SRC = (
    r"(?:=>|:=|=(?![=~>])|:(?![:/=]))[ \t]*+(?="
    r"\"(?P<v1>(?:[^\"\s\\]|\\.){6,}+)\""
    r"|'(?P<v2>(?:[^'\s\\]|\\.){6,}+)'"
    r"|`(?P<v3>[^`\s\\]{6,}+)`"
    r"|(?<==)(?P<v4>[^;\"'\s=()\[\]{}<>]{6,}+)(?=[;\"'])"  # ;Password=...; in a connection string
    r")"
)
# The name before a separator, read backwards from it (on the reversed text of the line, so
# that the match is anchored and linear): [name]["'`][]] [: annotation] <separator>.
_NAME_REV_SRC = (
    r"[ \t]*+(?P<ann>[\w.\[\]| ]{0,60}?[A-Za-z_][ \t]*+:[ \t]*+)?"
    r"(?:\][\"'`]?|[\"'`])?(?P<name>[\w.$@-]{1,101}+)"
)
# KEY=value / key: value / ENV KEY value lines with a bare (unquoted) value.
_BARE_LINE_SRC = (
    r"[ \t]*+(?:(?P<pfx>export|ENV|ARG|set|setx|declare(?:[ \t]+-[a-zA-Z]+)?)[ \t]++|-[ \t]++)?"
    r"[\"']?(?P<name>[A-Za-z_$][\w.$-]{0,100}+)[\"']?"
    r"(?P<sep>[ \t]*+=|[ \t]*+:(?=[ \t])|[ \t]++)[ \t]*+"
    r"(?P<v>[^\s\"'`][^\s]{5,}+)[ \t]*+(?:\#[^\n]*+)?\r?(?=\n|\Z)"
)

_PEM_HEAD = r"----(?:-BEGIN |[ ]BEGIN )(?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)? ?-{4,5}"
_PEM_SRC = (
    _PEM_HEAD + r"(?s:.*?)(?:-{4,5} ?END (?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)? ?-{4,5}|\Z)"
)
_GCP_SRC = (
    r"\"private_key(?:_id\"[ \t]*:[ \t]*\"(?P<id>[0-9a-f]{40})\""
    r"|\"[ \t]*:[ \t]*\"(?P<pk>-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----(?:[^\"\\]|\\.)*+)\")"
)
_URL_SRC = (
    r"://(?P<user>\[REDACTED:[A-Za-z0-9_]{1,64}\]|[^\s:/@?#'\"<>\[\]\\]{0,256}+)"
    r":(?P<v>[^\s/?#'\"<>\\]{1,1024})@(?=[\w\[.%-])"
)
# Any run of non-space, non-quote characters (token68 and then some: fail closed), but not the
# brackets of a template ({token}, <token>) or code around it.
_TOKEN_CHARS = r"[^\s\"'`\\,;()<>\[\]{}]"
# Authorization headers: the value after the scheme. Bare "Bearer <value>" (no header name) only
# for a long value with letters and digits. One regex per spelling: each starts with a literal.
_AUTH_REST = (
    r"[\"'`]?[ \t]*+[:=,][ \t]*+[\"'`]?[ \t]*+(?:Bearer|bearer|BEARER|Basic|basic|BASIC|Token|token)"
    r"[ \t]++(?=(?P<v>" + _TOKEN_CHARS + r"{8,}+))"
)
_BEARER_REST = r"[ \t]++(?=(?P<v>" + _TOKEN_CHARS + r"{20,}+))"
_AWS_SECRET_REST = (
    r"[_.-]?(?:access|Access|ACCESS)?[_.-]?(?:key|Key|KEY)"
    r"(?![A-Za-z0-9])[\"'`]?\]?[ \t]*+(?:[:=]{1,2}>?|[ \t,])[ \t]*+[\"'`]?"
    r"(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)
_MARKER_SRC = r"\[REDACTED:[A-Za-z0-9_]{1,64}\]"
_KW_ANY_SRC = r"(?i)" + _KW

_CODE_VALUE_SRC = (
    r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+"  # settings.SECRET, os.environ, self.pw
    r"|[\w.$]+[(\[].*"  # a call or a subscript
)
_TYPE_LIKE_SRC = r"[A-Z][A-Za-z]*|[a-z]+(?:[A-Z][a-z]+)+"  # str / SecretStr / apiKeyType
_TYPE_WORDS = frozenset(
    "string integer boolean number object unknown buffer secretstr optional bytes bytearray"
    " uint8array".split()
)
_MAX_ROUNDS = 4

_SOURCES: dict[str, str] = {
    "pem": _PEM_SRC,
    "gcp": _GCP_SRC,
    "url": _URL_SRC,
    "sep": _SEP_QUOTED_SRC,
    "name_rev": _NAME_REV_SRC,
    "bare_first": _BARE_LINE_SRC,
    "bare_line": "\n" + _BARE_LINE_SRC,
    "kw_end_rev": _KW_END_REV_SRC,
    "kw_any": _KW_ANY_SRC,
    "placeholder": _PLACEHOLDER_SRC,
    "env_name": _ENV_NAME_SRC,
    "marker": _MARKER_SRC,
    "code_value": _CODE_VALUE_SRC,
    "type_like": _TYPE_LIKE_SRC,
}
for _i, (_kind, _prefix, _rest, _boundary) in enumerate(_TOKENS):
    _SOURCES[f"token{_i}"] = _token_src(_prefix, _rest, _boundary)
_AUTH_WORDS = ("Authorization", "authorization", "AUTHORIZATION")
_BEARER_WORDS = ("Bearer", "bearer", "BEARER")
_SECRET_WORDS = ("secret", "Secret", "SECRET")
for _w in _AUTH_WORDS:
    _SOURCES[_w] = _w + _AUTH_REST
for _w in _BEARER_WORDS:
    _SOURCES[_w] = _w + _BEARER_REST
for _w in _SECRET_WORDS:
    _SOURCES[_w] = _w + _AWS_SECRET_REST
del _i, _kind, _prefix, _rest, _boundary, _w

_cache: dict[str, re.Pattern[str]] = {}


def _re(name: str) -> re.Pattern[str]:
    """The compiled pattern ``name``: compiled on first use, once per process."""
    pattern = _cache.get(name)
    if pattern is None:
        pattern = _cache[name] = re.compile(_SOURCES[name])
    return pattern


# --------------------------------------------------------------------------------------------
# Value heuristics


def _is_placeholder(value: str) -> bool:
    v = value.strip()
    if v.lower() in _PLACEHOLDER_WORDS:
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
        if value.lower() in _TYPE_WORDS or _re("type_like").fullmatch(value):
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
            out.append((m.start(g), m.end(g), _P_GCP, "gcp_service_account"))


def _find_pem(text: str, out: list) -> None:
    if "BEGIN" in text:
        for m in _re("pem").finditer(text):
            out.append((m.start(), m.end(), _P_PEM, "private_key"))


def _find_tokens(text: str, out: list) -> None:
    for i, (kind, prefix, rest, _boundary) in enumerate(_TOKENS):
        if prefix not in text:
            continue
        partial = "(?P<s>" in rest
        for m in _re(f"token{i}").finditer(text):
            span = m.span("s") if partial else m.span()
            out.append((span[0], span[1], _P_TOKEN, kind))


def _find_aws_secret(text: str, out: list) -> None:
    for word in _SECRET_WORDS:
        if word not in text:
            continue
        for m in _re(word).finditer(text):
            name = m.group(0)[:30].lower().replace("_", "").replace("-", "").replace(".", "")
            head = text[max(0, m.start() - 4):m.start()].lower()
            if name.startswith("secretaccesskey") or "aws" in head:
                out.append((m.start("v"), m.end("v"), _P_AWS_SECRET, "aws_secret_key"))


def _find_url(text: str, out: list) -> None:
    if "://" in text:
        for m in _re("url").finditer(text):
            if not _is_placeholder(m.group("v")):
                out.append((m.start("v"), m.end("v"), _P_URL, "url_credentials"))


def _find_bearer(text: str, out: list) -> None:
    for words, bare in ((_AUTH_WORDS, False), (_BEARER_WORDS, True)):
        for word in words:
            if word not in text:
                continue
            for m in _re(word).finditer(text):
                value = m.group("v")
                if _is_placeholder(value):
                    continue
                if bare and not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
                    continue  # "Bearer" in prose, without an Authorization header
                out.append((m.start("v"), m.end("v"), _P_BEARER, "bearer_token"))


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
            out.append((m.start(g), m.end(g), _P_ASSIGN, "assignment"))

    def bare(m: re.Match[str]) -> None:
        name = m.group("name")
        what = _secret_name(name)
        if what is not None:
            raw_sep = m.group("sep")
            sep = raw_sep.strip(" \t") or " "
            spaced = raw_sep[:1] in " \t" or text[m.end("sep"):m.start("v")] != ""
            if _bare_ok(name, sep, spaced, m.group("pfx"), m.group("v"), what):
                out.append((m.start("v"), m.end("v"), _P_ASSIGN, "assignment"))

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
                out.append((s, e, _P_CUSTOM, "custom"))


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


# --------------------------------------------------------------------------------------------


def is_denied(path: str, deny_globs: Iterable[str]) -> bool:
    """True when the file at ``path`` must never be captured.

    A glob without "/" is matched against the file's base name; a glob with "/" against the
    end of the normalised path (``config/secrets/*`` matches ``/repo/config/secrets/x.yaml``),
    or against the whole path when it starts with "/". Matching is ``fnmatch.fnmatch``
    (case-sensitive on POSIX, case-insensitive on Windows).
    """
    if not path:
        return False
    p = path
    if os.sep != "/":
        p = p.replace(os.sep, "/")
    if os.altsep and os.altsep != "/":
        p = p.replace(os.altsep, "/")
    p = os.path.normpath(p)
    if os.sep != "/":
        p = p.replace(os.sep, "/")
    base = p.rstrip("/").rsplit("/", 1)[-1]
    for glob in deny_globs:
        if not glob:
            continue
        if "/" in glob:
            if fnmatch.fnmatch(p, glob):
                return True
            if not glob.startswith("/") and fnmatch.fnmatch(p, "*/" + glob):
                return True
        elif fnmatch.fnmatch(base, glob):
            return True
    return False
