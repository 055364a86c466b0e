"""What a secret looks like: the detector table ``pattern_tracker.core.redact`` scans with.

Pure data: every detector's kind, literal prefix and regular-expression *source* (``SOURCES``,
by name), plus the word lists its value heuristics use. Nothing is compiled here: the engine
compiles each source on first need, once per process, so importing this (on the hook's path,
every edit) costs a few string operations. Standard library ``re`` only (for ``re.escape``).

Every pattern is linear in the input: possessive or bounded repetitions, runs that start only at
a word boundary (so two attempts never rescan the same run), and the value of an assignment
looked at from its separator, not from a name of unbounded length.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # no `typing` at run time: the hook pays for every import
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "AUTH_WORDS", "BEARER_WORDS", "KINDS", "PLACEHOLDER_WORDS", "SECRET_WORDS", "SOURCES", "TOKENS",
    "TYPE_WORDS", "P_ASSIGN", "P_AWS_SECRET", "P_BEARER", "P_CUSTOM", "P_GCP", "P_PEM", "P_TOKEN", "P_URL",
]

# Every kind a built-in detector can report ("custom" is for extra_patterns).
KINDS = (
    "aws_access_key", "aws_secret_key", "github_token", "gitlab_token", "slack_token",
    "slack_webhook", "stripe_key", "openai_key", "anthropic_key", "google_api_key",
    "gcp_service_account", "jwt", "npm_token", "pypi_token", "huggingface_token",
    "sendgrid_key", "twilio_key", "digitalocean_token", "azure_storage_key", "shopify_token",
    "private_key", "url_credentials", "bearer_token", "assignment", "custom",
)

# Priority when spans overlap: the lower number names the merged span.
P_GCP, P_PEM, P_TOKEN, P_AWS_SECRET, P_URL, P_BEARER, P_ASSIGN, P_CUSTOM = range(8)

# --------------------------------------------------------------------------------------------
# Provider tokens: (kind, literal prefix, rest, left boundary). Each prefix gets its own regex,
# run only when the prefix occurs in the text (a plain substring test) and compiled on first
# need. The left word boundary is a look-behind placed *after* the prefix, so that `re` still
# finds candidates by a fast literal search. A "(?P<s>...)" in rest marks the secret part
# (the rest of the match is kept).
_B = "A-Za-z0-9_-"  # characters a token never directly follows (its left boundary)
TOKENS: tuple[tuple[str, str, str, bool], ...] = (
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

PLACEHOLDER_WORDS = frozenset("""
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
TYPE_WORDS = frozenset(
    "string integer boolean number object unknown buffer secretstr optional bytes bytearray"
    " uint8array".split()
)

SOURCES: dict[str, str] = {
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
for _i, (_kind, _prefix, _rest, _boundary) in enumerate(TOKENS):
    SOURCES[f"token{_i}"] = _token_src(_prefix, _rest, _boundary)
AUTH_WORDS = ("Authorization", "authorization", "AUTHORIZATION")
BEARER_WORDS = ("Bearer", "bearer", "BEARER")
SECRET_WORDS = ("secret", "Secret", "SECRET")
for _w in AUTH_WORDS:
    SOURCES[_w] = _w + _AUTH_REST
for _w in BEARER_WORDS:
    SOURCES[_w] = _w + _BEARER_REST
for _w in SECRET_WORDS:
    SOURCES[_w] = _w + _AWS_SECRET_REST
del _i, _kind, _prefix, _rest, _boundary, _w
