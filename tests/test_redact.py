"""pattern_tracker.core.redact: secrets never survive, look-alikes do, and it is fast and total.

The fake secrets come from tests.fake_secrets, assembled at run time so that no file holds a string
a secret scanner would flag.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pattern_tracker.core.deny_globs import is_denied
from pattern_tracker.core.redact import Redactor
from tests.fake_secrets import ALNUM, AWS_SECRET, B64URL, GH, HEX, PEM_BODY, RSA_KEY, SECRET_CASES, UPPER_DIGITS


def M(kind: str) -> str:
    return f"[REDACTED:{kind}]"


R = Redactor()

# ---------------------------------------------------------------------------------------------
# Secrets in realistic contexts (tests.fake_secrets). The expected output is the text with each
# secret replaced by its marker — so the surrounding code must survive exactly.


@pytest.mark.parametrize(("text", "secrets"), [c[1:] for c in SECRET_CASES], ids=[c[0] for c in SECRET_CASES])
def test_secret_is_redacted_and_the_code_around_it_kept(text: str, secrets: dict[str, str]) -> None:
    out, counts = R.redact(text)
    expected = text
    for secret, kind in secrets.items():
        assert secret in text
        expected = expected.replace(secret, M(kind))
    assert out == expected
    assert counts == dict(Counter(secrets.values()))
    for secret in secrets:
        assert secret not in out


@pytest.mark.parametrize(
    "header",
    ["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY",
     "ENCRYPTED PRIVATE KEY", "PGP PRIVATE KEY BLOCK"],
)
def test_private_key_blocks_are_replaced_whole(header: str) -> None:
    block = f"-----BEGIN {header}-----\nProc-Type: 4,ENCRYPTED\n\n{PEM_BODY}\n-----END {header}-----"
    text = f"before\n{block}\nafter\n"
    out, counts = R.redact(text)
    assert out == f"before\n{M('private_key')}\nafter\n"
    assert counts == {"private_key": 1}


def test_unterminated_private_key_is_redacted_to_the_end() -> None:
    out, counts = R.redact(f"x = 1\n-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}\ny = 2\n")
    assert out == f"x = 1\n{M('private_key')}"
    assert counts == {"private_key": 1}


def test_spec_examples() -> None:
    assert R.redact('password = "hunter2"') == ('password = "[REDACTED:assignment]"', {"assignment": 1})
    assert R.redact("postgres://user:s3cret@db:5432/x") == (
        "postgres://user:[REDACTED:url_credentials]@db:5432/x", {"url_credentials": 1})
    assert R.redact("Authorization: Bearer abcdef0123456789") == (
        "Authorization: Bearer [REDACTED:bearer_token]", {"bearer_token": 1})


def test_token_inside_an_assignment_counts_once_as_the_specific_kind() -> None:
    assert R.redact(f'GITHUB_TOKEN = "{GH}"') == (f'GITHUB_TOKEN = "{M("github_token")}"', {"github_token": 1})


# ---------------------------------------------------------------------------------------------
# Look-alikes that are not secrets: unchanged, nothing counted.

NOT_SECRETS = [
    "token = get_token()",
    "password: str",
    "def f(api_key=None, timeout=10):",
    'secret = os.environ["X"]',
    "def password(self):\n    return self._password",
    'password = getpass.getpass("Password: ")',
    'password = os.getenv("DB_PASSWORD", "")',
    "self.password = new_password",
    'print("token:", token)',
    'if password == "hunter22":\n    pass',
    'tokenizer = AutoTokenizer.from_pretrained("bert-base-uncased")',
    'token_type = "bearer"',
    "max_tokens = 4096\nMAX_TOKENS=100000",
    "PASSWORD_MIN_LENGTH = 12",
    'password_hash = "pbkdf2_sha256$600000$salt$hash"',
    'headers = {"Authorization": f"Bearer {token}"}',
    "curl -H \"Authorization: Bearer $API_TOKEN\" https://x",
    'url = f"postgres://{user}:{password}@{host}:5432/{db}"',
    'dsn = "postgres://%s:%s@%s/db" % (user, pw, host)',
    "DATABASE_URL=${DATABASE_URL}\npassword: ${DB_PASSWORD}\nTOKEN=$TOKEN",
    'API_KEY=changeme\npassword = "changeme"\ntoken: "<your-token>"\nsecret = "xxxxxx"',
    'api_key = "%s"\npassword = "{}"\nsecret = "none"\npassword: "null"\ntoken = "true"',
    'sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"',
    '{file = "pkg-1.0-py3-none-any.whl", hash = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}',
    '"integrity": "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUR55QO+bxHnpNjp5A=="',
    'request_id = "123e4567-e89b-12d3-a456-426614174000"',
    'DATA = "SGVsbG8sIFdvcmxkISBUaGlzIGlzIGEgdGVzdC4="',
    'commit = "9fceb02d0ae598e95dc970b74767f19372d61af8"',
    "secretKeyRef:\n  name: db-credentials\n  key: password",
    '<input type="password" name="password" placeholder="Enter your password">',
    "git clone git@github.com:org/repo.git\nopen http://localhost:8080/path\nhttps://npmjs.com/package/@scope/pkg",
    "interface Creds {\n  password: string;\n  apiKey?: string;\n}",
    "class Settings(BaseSettings):\n    api_token: SecretStr\n    password: Optional[str] = None",
    '"input_token": "next_token",\n{token: "keyword.operator", regex: "x"}',
    'Token: "#cccccc",',
    "# Bearer authentication is described in RFC 6750.",
    "xoxo-gossip-girl-fan-club-forever",
    'import "sk-learn-compatible-estimator-wrapper"',
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
    'PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk user@host"',
    "hf_hub_download(repo_id='gpt2', filename='config.json')",
    "ENV NODE_ENV production",
    "credentials = '{0}:{1}'.format(user, passwd).encode()",
    "Index.prototype.hasToken=function(e){if(!e)return!1;for(;;);}",
    'password = "[REDACTED:assignment]"\nAKIA = "[REDACTED:aws_access_key]"',
]


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_look_alike_is_left_alone(text: str) -> None:
    assert R.redact(text) == (text, {})


# ---------------------------------------------------------------------------------------------
# Options


def test_extra_pattern_without_group_redacts_the_whole_match() -> None:
    r = Redactor(extra_patterns=[r"ACME-[A-Z0-9]{10}"])
    assert r.redact("id = ACME-1234567890; x") == (f"id = {M('custom')}; x", {"custom": 1})


def test_extra_pattern_with_group_redacts_only_group_one() -> None:
    r = Redactor(extra_patterns=[r"internal-id-(\d{6})", r"(?i)pin\s*=\s*(\d+)"])
    out, counts = r.redact("ref internal-id-123456 and PIN = 4321")
    assert out == f"ref internal-id-{M('custom')} and PIN = {M('custom')}"
    assert counts == {"custom": 2}


def test_extra_pattern_and_builtin_detectors_together() -> None:
    r = Redactor(extra_patterns=[r"corp_[a-z]{8}"])
    out, counts = r.redact(f"a = corp_abcdefgh\nb = '{GH}'\n")
    assert out == f"a = {M('custom')}\nb = '{M('github_token')}'\n"
    assert counts == {"custom": 1, "github_token": 1}
    assert r.redact(out) == (out, {})  # even a custom pattern never eats a marker


def test_invalid_extra_pattern_is_rejected_up_front() -> None:
    with pytest.raises(ValueError, match=r"extra_patterns\[1\]"):
        Redactor(extra_patterns=["ok", "(unclosed"])


def test_disabled_returns_the_text_unchanged() -> None:
    text = f'password = "hunter2"\n{RSA_KEY}\n{GH}'
    assert Redactor(enabled=False).redact(text) == (text, {})


def test_non_str_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        R.redact(b"password = 'hunter2'")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Properties: embedded secrets never survive; redact is idempotent and total.

_VALUE_ALPHABET = "".join(c for c in ALNUM if c not in "xX") + "!@^&+=_-"


def _token(prefix: str, n: int, alphabet: str = ALNUM) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=n, max_size=n).map(lambda body: prefix + body)


_random_value = st.text(alphabet=_VALUE_ALPHABET, min_size=4, max_size=30).map(lambda v: "Zq7" + v + "9Kw")
_provider_tokens = st.one_of(
    _token("ghp_", 36), _token("AKIA", 16, UPPER_DIGITS), _token("sk-proj-", 40, B64URL),
    _token("xoxb-1234567890-", 24), _token("AIza", 35, B64URL), _token("npm_", 36), _token("hf_", 34),
    _token("dop_v1_", 64, HEX), _token("sk-ant-api03-", 60, B64URL), _token("sk_live_", 24),
    _token("glpat-", 20, B64URL), _token("SK", 32, HEX),
    st.tuples(_token("eyJ", 20, B64URL), _token("eyJ", 30, B64URL), _token("", 20, B64URL)).map(".".join),
)
_contexts = st.sampled_from([
    '{name} = "{secret}"', "{name}='{secret}'", '"{name}": "{secret}",', "  {name}: {secret}",
    "export {NAME}={secret}", "{NAME}={secret}", "ENV {NAME} {secret}", "Authorization: Bearer {secret}",
    "url = 'https://user:{secret}@example.com/x'", "{name} := `{secret}`",
])
_names = st.sampled_from(["password", "db_password", "api_key", "apiToken", "client_secret", "SECRET_KEY",
                          "auth_token", "x-api-key", "credentials", "passwd"])
_filler = st.text(max_size=200)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=_filler, after=_filler, context=_contexts, name=_names,
       secret=st.one_of(_random_value, _provider_tokens))
def test_property_embedded_secret_never_survives(before: str, after: str, context: str, name: str,
                                                  secret: str) -> None:
    line = context.format(name=name, NAME=name.upper().replace("-", "_"), secret=secret)
    text = f"{before}\n{line}\n{after}"
    out, counts = R.redact(text)
    assert secret not in out
    assert counts
    assert R.redact(out) == (out, {})


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=80), _provider_tokens, _random_value,
                          st.sampled_from(["password=", "token: ", '"', "'", "\n", "://u:", "@h", " = ",
                                           "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----",
                                           "Authorization: Bearer ", "[REDACTED:", "]", "AccountKey="])),
                max_size=30).map("".join))
def test_property_idempotent_and_total(text: str) -> None:
    out, counts = R.redact(text)
    assert isinstance(out, str) and isinstance(counts, dict)
    assert "[REDACTED:redaction_error]" not in out
    assert R.redact(out) == (out, {})


def test_idempotent_with_custom_patterns() -> None:
    r = Redactor(extra_patterns=[r"RED\w+", r"foo"])
    once, _ = r.redact(f"fooghp_{'a1' * 18} REDACTED x")
    assert r.redact(once) == (once, {})


# ---------------------------------------------------------------------------------------------
# is_denied

DEFAULT_DENY_GLOBS = [
    ".env", ".env.*", "*.env", "*.pem", "*.key", "*.p12", "*.pfx", "*.keystore", "*.jks",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc", ".pgpass", ".npmrc", ".pypirc",
    "credentials", "credentials.json", "*.kdbx",
]


@pytest.mark.parametrize("path", [
    "/x/.env", "/x/.env.local", "/x/.env.production", "/srv/app/prod.env", "certs/server.pem", "/k/tls.key",
    "/home/u/.ssh/id_rsa", "/home/u/.ssh/id_rsa.pub", "/home/u/.ssh/id_ed25519", "id_ecdsa",
    "/home/u/.netrc", "/home/u/.pgpass", "/repo/.npmrc", "/home/u/.pypirc", "/home/u/.aws/credentials",
    "/x/credentials.json", "/x/vault.kdbx", "/x/store.jks", "/x/cert.p12", "/x/a/../.env",
])
def test_denied(path: str) -> None:
    assert is_denied(path, DEFAULT_DENY_GLOBS)


@pytest.mark.parametrize("path", [
    "/x/environment.py", "/x/keys.py", "/x/monkey.py", "/x/env/settings.py", "/x/.envrc.py",
    "/x/credentials.py", "/x/pem.txt", "/x/README.md", "/x/.ENV", "", "/x/dir.env/file.py",
])
def test_allowed(path: str) -> None:
    assert not is_denied(path, DEFAULT_DENY_GLOBS)


def test_globs_with_a_slash_match_the_end_of_the_path() -> None:
    globs = ["config/secrets/*", "/etc/app/*.conf"]
    assert is_denied("/repo/config/secrets/db.yaml", globs)
    assert is_denied("config/secrets/db.yaml", globs)
    assert is_denied("/etc/app/main.conf", globs)
    assert not is_denied("/repo/etc/app/main.conf", globs)
    assert not is_denied("/repo/myconfig/secrets/db.yaml", globs)
    assert not is_denied("/repo/config/other.yaml", globs)
    assert not is_denied("/x/.env", [])


# ---------------------------------------------------------------------------------------------
# Performance: linear patterns, cheap import


def _timed(text: str) -> float:
    t0 = time.perf_counter()
    R.redact(text)
    return time.perf_counter() - t0


@pytest.mark.parametrize(("label", "text"), [
    ("a*100000 + '='", "a" * 100_000 + "="),
    ("unterminated 1 MB key", "-----BEGIN PRIVATE KEY-----" + "A" * 1_000_000),
    ("repeated separators", "password=" * 50_000),
    ("repeated quotes", 'password="' * 20_000),
    ("repeated url starts", "://a:" * 100_000),
    ("one long url password", "://a:" + "b" * 500_000),
    ("repeated jwt heads", "eyJ" * 200_000),
    ("repeated token prefixes", ("ghp_" + "AKIA" + "sk-" + "xoxb-") * 40_000),
    ("repeated headers", "Authorization: Bearer " * 20_000),
    ("repeated BEGIN", "-----BEGIN RSA PRIVATE KEY-----\n" * 10_000),
    ("repeated END", "-----END PRIVATE KEY-----" * 40_000),
    ("long name line", "A" * 100 + "_PASSWORD=" + "x" * 500_000),
    ("newlines", "\n" * 500_000),
    ("markers", "[REDACTED:assignment]" * 50_000),
])
def test_pathological_input_is_fast(label: str, text: str) -> None:
    assert _timed(text) < 1.0, label


def test_five_megabytes_of_code_with_secrets() -> None:
    chunk = "\n".join(text for _, text, _ in SECRET_CASES) + "\n" + "\n".join(NOT_SECRETS) + "\n"
    plain = "def f(x):\n    return x * 2  # ordinary code, nothing to see\n" * 200
    text = ((chunk + plain) * (5_000_000 // len(chunk + plain) + 1))[:5_000_000]
    t0 = time.perf_counter()
    out, counts = R.redact(text)
    assert time.perf_counter() - t0 < 3.0  # typically ~0.5 s
    assert GH not in out and AWS_SECRET not in out and PEM_BODY[:64] not in out
    assert counts["github_token"] > 100


def test_import_is_cheap_and_compiles_nothing() -> None:
    code = (
        "import sys, time; before = set(sys.modules); t = time.perf_counter(); import pattern_tracker.core.redact as r; "
        "dt = time.perf_counter() - t; "
        "bad = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
        "('typing', 'dataclasses', 'pathlib', 'logging', 'msgspec')); "
        "print(dt, len(r._cache), bad)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    dt, compiled, bad = res.stdout.split(" ", 2)
    assert compiled == "0"
    assert bad.strip() == "[]"
    assert float(dt) < 0.5
