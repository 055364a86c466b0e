"""Fake secrets in realistic contexts, for the redaction tests and the hook's.

The secrets are assembled at run time (prefix + deterministic random body) so that no file of the
tests holds a string a secret scanner would flag.
"""

from __future__ import annotations

import random
import string

_rng = random.Random(20240229)
ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"


def fake(prefix: str, n: int, alphabet: str = ALNUM) -> str:
    return prefix + "".join(_rng.choice(alphabet) for _ in range(n))


# Secrets in realistic contexts: SECRET_CASES is (id, text, {secret: kind}); the bare secrets are
# the module's other upper-case names.

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
