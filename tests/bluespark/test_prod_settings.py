"""Production settings, loaded in a real subprocess as a deployment would load them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections

from security.keyring import generate_keyring_document

ROOT = Path(settings.BASE_DIR)


def _url(db: dict) -> str:
    return f"postgres://{db['USER']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def prod_env(**overrides: str | None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BLUESPARK_", "DJANGO_", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"))
    }
    env.update(
        {
            "BLUESPARK_ENV": "prod",
            "SECRET_KEY": secrets.token_urlsafe(64),
            "ALLOWED_HOSTS": "bluespark.example",
            "BLUESPARK_BASE_URL": "https://bluespark.example",
            "DATABASE_URL": _url(connection.settings_dict),
            "KEYSTORE_DATABASE_URL": _url(connections["keystore"].settings_dict),
            "BLUESPARK_KEYRING": json.dumps(generate_keyring_document("prod")),
            "REDIS_URL": settings.REDIS_URL,
            "EMAIL_HOST": "smtp.bluespark.example",
        }
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_with_prod_settings_is_clean():
    result = run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], prod_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DEBUG": "true"}, "DEBUG must be off"),
        ({"SECRET_KEY": "too-short"}, "SECRET_KEY must be at least"),
        ({"SECRET_KEY": "django-insecure-" + "x1y2z3" * 10}, "default or example"),
        ({"SECRET_KEY": None}, "SECRET_KEY is required"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS must name"),
        ({"ALLOWED_HOSTS": "*"}, "must not contain '*'"),
        ({"DEBUG": "perhaps"}, "is not a boolean"),
        ({"DATABASE_URL": "sqlite:///prod.sqlite3"}, "PostgreSQL"),
        ({"BLUESPARK_BASE_URL": "http://bluespark.example"}, "https://"),
        ({"BLUESPARK_KEYRING": None}, "Prod needs a keyring"),
        ({"BLUESPARK_KEYRING": None, "BLUESPARK_KEYRING_FILE": "/nonexistent/keyring.json"}, "not a readable file"),
        ({"BLUESPARK_KEYRING": json.dumps(generate_keyring_document("dev"))}, "belongs to the 'dev' environment"),
        ({"BLUESPARK_KEYRING": '{"format": 1, "environment": "prod"}'}, "no keks"),
        ({"KEYSTORE_DATABASE_URL": None}, "KEYSTORE_DATABASE_URL is required"),
    ],
)
def test_prod_refuses_to_start_on_an_unsafe_setting(overrides, message):
    result = run([sys.executable, "manage.py", "check"], prod_env(**overrides))
    assert result.returncode != 0
    assert message in result.stderr


def test_a_secret_can_come_from_a_file(tmp_path):
    secret_file = tmp_path / "secret_key"
    secret_file.write_text(secrets.token_urlsafe(64) + "\n")
    result = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        prod_env(SECRET_KEY=None, SECRET_KEY_FILE=str(secret_file)),
    )
    assert result.returncode == 0, result.stderr


COOKIE_PROBE = """
import json, re, django
django.setup()
from django.conf import settings
from django.test import Client
from django.test.utils import override_settings
# Static files are collected at image build time; this probe has no manifest.
override_settings(STORAGES={**settings.STORAGES, "staticfiles": {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}).enable()
from accounts.models import User
# Made by this prod process: only its own keyring opens what it encrypts.
User.objects.create_user("cookie@bluespark.example", PASSWORD)
client = Client(HTTP_HOST="bluespark.example")
page = client.get("/accounts/login/", secure=True)
login = client.post("/accounts/login/", {"username": "cookie@bluespark.example", "password": PASSWORD,
            "csrfmiddlewaretoken": re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"',
                                             page.content.decode()).group(1)}, secure=True)
cookies = {}
for name, morsel in client.cookies.items():
    cookies[name] = {"secure": bool(morsel["secure"]), "httponly": bool(morsel["httponly"]),
                     "samesite": morsel["samesite"], "path": morsel["path"], "domain": morsel["domain"]}
insecure = Client(HTTP_HOST="bluespark.example").get("/accounts/login/")
print(json.dumps({"cookies": cookies, "login_status": login.status_code,
                  "plain_http": [insecure.status_code, insecure.get("Location")],
                  "hsts": page.get("Strict-Transport-Security")}))
"""


@pytest.mark.django_db(transaction=True)
def test_prod_cookies_are_host_bound_secure_and_httponly():
    password = secrets.token_urlsafe(24)
    result = run(
        [sys.executable, "-c", f"PASSWORD = {password!r}\n" + COOKIE_PROBE],
        prod_env(DJANGO_SETTINGS_MODULE="bluespark.settings"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["login_status"] == 302, report
    session, csrf = report["cookies"]["__Host-sessionid"], report["cookies"]["__Host-csrftoken"]
    for cookie in (session, csrf):
        assert cookie["secure"] and cookie["samesite"] == "Lax"
        assert cookie["path"] == "/" and cookie["domain"] == ""
    assert session["httponly"]
    assert report["plain_http"] == [301, "https://bluespark.example/accounts/login/"]
    assert report["hsts"] == "max-age=31536000; includeSubDomains; preload"


def test_prod_refuses_a_key_store_in_the_application_database():
    env = prod_env()
    env["KEYSTORE_DATABASE_URL"] = env["DATABASE_URL"]
    result = run([sys.executable, "manage.py", "check"], env)
    assert result.returncode != 0
    assert "must name another database" in result.stderr
