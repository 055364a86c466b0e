"""pattern_tracker.core.redact: secrets never survive, look-alikes do, and it is fast and total.

The fake secrets are assembled at run time (prefix + deterministic random body) so that this
file holds no string a secret scanner would flag.
"""

from __future__ import annotations

import random
import string
import subprocess
import sys
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pattern_tracker.core.deny_globs import is_denied
from pattern_tracker.core.redact import Redactor

_rng = random.Random(20240229)
ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"


def fake(prefix: str, n: int, alphabet: str = ALNUM) -> str:
    return prefix + "".join(_rng.choice(alphabet) for _ in range(n))


def M(kind: str) -> str:
    return f"[REDACTED:{kind}]"


R = Redactor()

# ---------------------------------------------------------------------------------------------
# Secrets in realistic contexts: (id, text, {secret: kind}). The expected output is the text
# with each secret replaced by its marker — so the surrounding code must survive exactly.

AWS_ID = fake("AKIA", 16, UPPER_DIGITS)
AWS_ID2 = fake("ASIA", 16, UPPER_DIGITS)
AWS_SECRET = fake("", 40, B64)
GH = fake("ghp_", 36)
GH_PAT = fake("github_pat_", 22) + "_" + fake("", 59)
GL = fake("glpat-", 20, B64URL)
SLACK = "xoxb-" + fake("", 12, string.digits) + "-" + fake("", 13, string.digits) + "-" + fake("", 24)
SLACK_HOOK = "T" + fake("", 8, UPPER_DIGITS) + "/B" + fake("", 8, UPPER_DIGITS) + "/" + fake("", 24)
STRIPE = fake("sk_live_", 24)
OPENAI = fake("sk-proj-", 48, B64URL)
OPENAI_LEGACY = fake("sk-", 48)
ANTHROPIC = fake("sk-ant-api03-", 93, B64URL) + "AA"
GOOGLE = fake("AIza", 35, B64URL)
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + fake("eyJ", 40, B64URL) + "." + fake("", 43, B64URL)
NPM = fake("npm_", 36)
PYPI = fake("pypi-AgEIcHlwaS5vcmc", 120, B64URL)
HF = fake("hf_", 34)
SENDGRID = fake("SG.", 22, B64URL) + "." + fake("", 43, B64URL)
TWILIO = fake("SK", 32, HEX)
DO = fake("dop_v1_", 64, HEX)
AZURE = fake("", 86, B64) + "=="
SHOPIFY = fake("shpat_", 32, HEX)
GCP_KEY_ID = fake("", 40, HEX)
PEM_BODY = "\n".join(fake("", 64, B64) for _ in range(6))
RSA_KEY = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"
PKCS8_JSON = "-----BEGIN PRIVATE KEY-----\\n" + PEM_BODY.replace("\n", "\\n") + "\\n-----END PRIVATE KEY-----\\n"

SECRET_CASES = [
    ("py-boto3-aws-id", f'client = boto3.client("s3", aws_access_key_id="{AWS_ID}")\n',
     {AWS_ID: "aws_access_key"}),
    ("env-aws-secret", f"AWS_REGION=eu-west-1\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\n",
     {AWS_SECRET: "aws_secret_key"}),
    ("ini-aws-credentials", f"[default]\naws_access_key_id = {AWS_ID2}\naws_secret_access_key = {AWS_SECRET}\n",
     {AWS_ID2: "aws_access_key", AWS_SECRET: "aws_secret_key"}),
    ("shell-github", f"export GITHUB_TOKEN={GH}\ngh auth status\n", {GH: "github_token"}),
    ("yaml-github-pat", f"github:\n  token: {GH_PAT}\n  org: acme\n", {GH_PAT: "github_token"}),
    ("js-gitlab", f"const api = new Gitlab({{ host: 'https://gitlab.com', token: '{GL}' }});\n",
     {GL: "gitlab_token"}),
    ("py-slack", f'client = WebClient(token="{SLACK}")\nclient.chat_postMessage(channel="#x", text="hi")\n',
     {SLACK: "slack_token"}),
    ("json-slack-webhook", f'{{"webhook": "https://hooks.slack.com/services/{SLACK_HOOK}", "channel": "#ops"}}',
     {SLACK_HOOK: "slack_webhook"}),
    ("js-stripe", f"const stripe = require('stripe')('{STRIPE}');\n", {STRIPE: "stripe_key"}),
    ("env-openai", f"OPENAI_API_KEY={OPENAI}\nMODEL=gpt-4o\n", {OPENAI: "openai_key"}),
    ("py-openai-legacy", f'openai.api_key = "{OPENAI_LEGACY}"\n', {OPENAI_LEGACY: "openai_key"}),
    ("py-anthropic", f'client = anthropic.Anthropic(api_key="{ANTHROPIC}")\n', {ANTHROPIC: "anthropic_key"}),
    ("js-google-maps", f"fetch(`https://maps.googleapis.com/maps/api/geocode/json?address=x&key={GOOGLE}`)\n",
     {GOOGLE: "google_api_key"}),
    ("json-gcp-service-account",
     '{\n  "type": "service_account",\n  "project_id": "demo",\n'
     f'  "private_key_id": "{GCP_KEY_ID}",\n  "private_key": "{PKCS8_JSON}",\n'
     '  "client_email": "svc@demo.iam.gserviceaccount.com"\n}\n',
     {GCP_KEY_ID: "gcp_service_account", PKCS8_JSON: "gcp_service_account"}),
    ("curl-jwt", f'curl -H "X-Session: {JWT}" https://api.example.com/me\n', {JWT: "jwt"}),
    ("npmrc-token", f"//registry.npmjs.org/:_authToken={NPM}\n", {NPM: "npm_token"}),
    ("pypirc-token", f"[pypi]\nusername = __token__\npassword = {PYPI}\n", {PYPI: "pypi_token"}),
    ("py-huggingface", f'from huggingface_hub import login\nlogin(token="{HF}")\n', {HF: "huggingface_token"}),
    ("py-sendgrid", f'sg = SendGridAPIClient("{SENDGRID}")\n', {SENDGRID: "sendgrid_key"}),
    ("env-twilio", f"TWILIO_API_KEY={TWILIO}\n", {TWILIO: "twilio_key"}),
    ("tf-digitalocean", f'provider "digitalocean" {{\n  token = "{DO}"\n}}\n', {DO: "digitalocean_token"}),
    ("cs-azure-connection-string",
     f'var conn = "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={AZURE};EndpointSuffix=core.windows.net";\n',
     {AZURE: "azure_storage_key"}),
    ("rb-shopify", f"session = ShopifyAPI::Session.new(domain: 'x.myshopify.com', token: '{SHOPIFY}')\n",
     {SHOPIFY: "shopify_token"}),
    ("py-rsa-pem", f'KEY = """{RSA_KEY}"""\nsign(KEY)\n', {RSA_KEY: "private_key"}),
    ("yaml-url-credentials", "database:\n  url: postgresql://app:S3cr3tP4ss@db.internal:5432/app\n",
     {"S3cr3tP4ss": "url_credentials"}),
    ("dockerfile-url-credentials", "FROM python:3.12\nENV DATABASE_URL=mysql://root:pw12345678@mysql:3306/db\n",
     {"pw12345678": "url_credentials"}),
    ("redis-empty-user", 'REDIS = "redis://:p4ssw0rd9@cache:6379/0"\n', {"p4ssw0rd9": "url_credentials"}),
    ("curl-bearer", 'curl -H "Authorization: Bearer abc123def456ghi789jkl" https://api.example.com\n',
     {"abc123def456ghi789jkl": "bearer_token"}),
    ("py-basic-auth", 'headers = {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}\n',
     {"dXNlcjpwYXNzd29yZA==": "bearer_token"}),
    ("py-assignment", 'password = "hunter2"\n', {"hunter2": "assignment"}),
    ("py-annotated", 'SECRET_KEY: str = "django-insecure-8f#kq2$z!lm"\n',
     {"django-insecure-8f#kq2$z!lm": "assignment"}),
    ("yaml-assignment", "db:\n  user: app\n  password: Tr0ub4dor&3\n", {"Tr0ub4dor&3": "assignment"}),
    ("env-assignment", "DB_USER=app\nDB_PASSWORD=correct-horse-battery-9\n",
     {"correct-horse-battery-9": "assignment"}),
    ("json-client-secret", '{"client_id": "web-app", "client_secret": "8f3kLm2Qp9Zx7Vb"}',
     {"8f3kLm2Qp9Zx7Vb": "assignment"}),
    ("dockerfile-env", "FROM node:20\nENV API_SECRET=abc123xyz987\nRUN npm ci\n", {"abc123xyz987": "assignment"}),
    ("cs-sql-connection-string", 'var cs = "Server=db;Database=app;User Id=sa;Password=Str0ng!Pass;";\n',
     {"Str0ng!Pass": "assignment"}),
    ("java-jdbc-password",
     'String url = "jdbc:sqlserver://db:1433;databaseName=app;user=sa;password=Xy12ab34cd";\n',
     {"Xy12ab34cd": "assignment"}),
    ("go-assignment", 'password := "s3cr3t!!"\n', {"s3cr3t!!": "assignment"}),
    ("js-api-key", "const apiKey = 'a1b2c3d4e5f6g7';\n", {"a1b2c3d4e5f6g7": "assignment"}),
    ("properties", "spring.datasource.password=Hx7-kk2-pq9\n", {"Hx7-kk2-pq9": "assignment"}),
]


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
