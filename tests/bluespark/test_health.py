"""/healthz, /readyz and ``manage.py healthcheck`` against the real PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from io import StringIO
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import TestCase, override_settings

from bluespark.health import CHECKS

REPO_ROOT = Path(settings.BASE_DIR)
# Nothing listens on port 1: connecting is refused at once, a real failure.
SECRET = "hunter2-sup3r-secret"
DEAD_REDIS_URL = f"redis://:{SECRET}@127.0.0.1:1/0"
DEAD_CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": DEAD_REDIS_URL,
        "KEY_PREFIX": "bluespark:test",
    }
}

NUMBER = r"\d+(?:\.\d{1,2})?"
PLUGIN_OK_LINE = re.compile(
    rf"^BLUESPARK OK - database {NUMBER} ms, broker {NUMBER} ms, cache {NUMBER} ms"
    rf" \| database={NUMBER}ms;500;2000;0 broker={NUMBER}ms;500;2000;0 cache={NUMBER}ms;500;2000;0$"
)


class HealthzTests(TestCase):
    def test_it_answers_ok_as_json_without_touching_dependencies(self) -> None:
        with self.assertNumQueries(0):
            response = self.client.get("/healthz")

        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Type"], "application/json")
        self.assertEqual(response.json(), {"status": "ok"})


class ReadyzTests(TestCase):
    def assert_secret_free(self, content: bytes) -> None:
        text = content.decode()
        self.assertNotIn(SECRET, text)
        self.assertNotIn("127.0.0.1:1", text)
        self.assertNotIn("redis://", text)

    def test_it_is_ready_when_database_broker_and_cache_answer(self) -> None:
        response = self.client.get("/readyz")

        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(body["status"], "ok")
        self.assertEqual(set(body["checks"]), {"database", "broker", "cache"})
        for name, check in body["checks"].items():
            with self.subTest(check=name):
                self.assertIs(check["ok"], True)
                self.assertGreater(check["ms"], 0)
                self.assertNotIn("error", check)

    @override_settings(CELERY_BROKER_URL=DEAD_REDIS_URL)
    def test_it_is_unavailable_naming_the_broker_when_the_broker_refuses(self) -> None:
        response = self.client.get("/readyz")

        self.assertEqual(response.status_code, 503)
        body = response.json()
        self.assertEqual(body["status"], "unavailable")
        self.assertIs(body["checks"]["broker"]["ok"], False)
        self.assertEqual(body["checks"]["broker"]["error"], "OperationalError")
        self.assertIs(body["checks"]["database"]["ok"], True)
        self.assertIs(body["checks"]["cache"]["ok"], True)
        self.assert_secret_free(response.content)

    def test_a_refused_broker_fails_at_once_instead_of_retrying(self) -> None:
        with override_settings(CELERY_BROKER_URL=DEAD_REDIS_URL):
            response = self.client.get("/readyz")

        # A probe that sleeps through kombu's retry interval outlives the probe's own timeout.
        self.assertLess(response.json()["checks"]["broker"]["ms"], 1000)

    @override_settings(CACHES=DEAD_CACHES)
    def test_it_is_unavailable_naming_the_cache_when_the_cache_redis_is_down(self) -> None:
        response = self.client.get("/readyz")

        self.assertEqual(response.status_code, 503)
        body = response.json()
        self.assertIs(body["checks"]["cache"]["ok"], False)
        self.assertEqual(body["checks"]["cache"]["error"], "ConnectionError")
        self.assertIs(body["checks"]["broker"]["ok"], True)
        self.assert_secret_free(response.content)

    def test_it_is_ready_again_once_the_cache_setting_is_restored(self) -> None:
        with override_settings(CACHES=DEAD_CACHES):
            self.assertEqual(self.client.get("/readyz").status_code, 503)

        self.assertEqual(self.client.get("/readyz").status_code, 200)

    def test_probes_running_at_the_same_time_do_not_fail_each_other(self) -> None:
        check_cache = CHECKS["cache"]
        failures: list[str] = []
        start = threading.Barrier(6)

        def probe() -> None:
            start.wait()
            for _ in range(50):
                try:
                    check_cache()
                except Exception as error:  # noqa: BLE001 - collected for the assertion
                    failures.append(type(error).__name__)

        threads = [threading.Thread(target=probe) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        self.assertEqual(failures, [])


def command_env(**overrides: str) -> dict[str, str]:
    """The test process's environment, aimed at the test database (the only one that exists now)."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    env = {**os.environ, "DATABASE_URL": f"postgres://{credentials}@{host}/{quote(db['NAME'], safe='')}"}
    env.update(overrides)
    return env


def run_healthcheck(*options: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "healthcheck", *options],
        cwd=REPO_ROOT,
        env=command_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
class HealthcheckCommandTests(TestCase):
    """The command as a monitor runs it: a separate process whose exit code reaches the shell."""

    def test_it_prints_an_ok_plugin_line_with_perfdata_and_exits_0(self) -> None:
        result = run_healthcheck()

        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertRegex(result.stdout.strip(), PLUGIN_OK_LINE)
        self.assertEqual(result.stdout.count("\n"), 1)

    def test_it_exits_1_with_warning_when_a_check_is_slower_than_the_warning_threshold(self) -> None:
        result = run_healthcheck("--warning", "0")

        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertRegex(result.stdout, r"^BLUESPARK WARNING - database [\d.]+ ms \(over 0 ms\),")
        self.assertRegex(result.stdout, rf" \| database={NUMBER}ms;0;2000;0 ")

    def test_it_exits_2_with_critical_when_a_check_is_slower_than_the_critical_threshold(self) -> None:
        result = run_healthcheck("--warning", "0", "--critical", "0")

        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertTrue(result.stdout.startswith("BLUESPARK CRITICAL - "), result.stdout)

    def test_it_exits_2_naming_only_the_error_class_when_the_broker_refuses(self) -> None:
        result = run_healthcheck(CELERY_BROKER_URL=DEAD_REDIS_URL)

        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertRegex(
            result.stdout.strip(),
            rf"^BLUESPARK CRITICAL - database {NUMBER} ms, broker failed \(OperationalError\), cache {NUMBER} ms"
            rf" \| database={NUMBER}ms;500;2000;0 broker=U;500;2000;0 cache={NUMBER}ms;500;2000;0$",
        )
        self.assertNotIn(SECRET, result.stdout + result.stderr)
        self.assertNotIn("127.0.0.1:1", result.stdout + result.stderr)

    def test_it_exits_2_without_the_database_url_when_the_database_is_missing(self) -> None:
        result = run_healthcheck(DATABASE_URL=f"postgres://postgres:{SECRET}@127.0.0.1:5432/no_such_database_x9")

        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertIn("database failed (OperationalError)", result.stdout)
        self.assertNotIn(SECRET, result.stdout + result.stderr)
        self.assertNotIn("no_such_database_x9", result.stdout + result.stderr)

    def test_it_prints_the_same_data_as_json(self) -> None:
        result = run_healthcheck("--json")

        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        report = json.loads(result.stdout)
        self.assertEqual(report["status"], "OK")
        self.assertEqual(report["exit_code"], 0)
        self.assertEqual((report["warning_ms"], report["critical_ms"]), (500, 2000))
        self.assertEqual(set(report["checks"]), {"database", "broker", "cache"})
        for name, check in report["checks"].items():
            with self.subTest(check=name):
                self.assertEqual(check["status"], "OK")
                self.assertIs(check["ok"], True)
                self.assertGreater(check["ms"], 0)

    def test_its_json_reports_a_failed_check_and_exits_2(self) -> None:
        result = run_healthcheck("--json", CELERY_BROKER_URL=DEAD_REDIS_URL)

        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        report = json.loads(result.stdout)
        self.assertEqual(report["status"], "CRITICAL")
        self.assertEqual(
            report["checks"]["broker"], {"status": "CRITICAL", "ok": False, "ms": None, "error": "OperationalError"}
        )
        self.assertNotIn(SECRET, result.stdout)

    def test_it_exits_3_unknown_on_a_bad_threshold(self) -> None:
        for bad in ("-1", "soon", "nan"):
            with self.subTest(warning=bad):
                result = run_healthcheck("--warning", bad)

                self.assertEqual(result.returncode, 3, result.stdout + result.stderr)
                self.assertIn("--warning", result.stderr)


class HealthcheckCommandInProcessTests(TestCase):
    def test_it_reports_unknown_and_exits_3_when_the_command_itself_crashes(self) -> None:
        stdout = StringIO()

        # call_command skips argparse's type conversion, so a string threshold makes the
        # comparison itself raise inside the command.
        with self.assertRaises(SystemExit) as exit_:
            call_command("healthcheck", warning="soon", stdout=stdout)

        self.assertEqual(exit_.exception.code, 3)
        self.assertEqual(stdout.getvalue(), "BLUESPARK UNKNOWN - the health check crashed (TypeError)\n")

    def test_it_returns_normally_when_everything_is_ok(self) -> None:
        stdout = StringIO()

        call_command("healthcheck", stdout=stdout)

        self.assertRegex(stdout.getvalue().strip(), PLUGIN_OK_LINE)
