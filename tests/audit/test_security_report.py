"""``manage.py security_report`` and ``audit.reports.security_report``: the trail's security signals for a monitor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import redirect_stderr
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from audit.context import AuditContext, bound_context
from audit.reports import AccountVolume, FailedLogins, Lockouts, SecurityReport, Thresholds, security_report
from audit.services import record
from security.identifiers import new_public_id
from tests.cast import CastTestCase, make_user

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
IN_PERIOD = NOW - timedelta(hours=3)
BEFORE_PERIOD = NOW - timedelta(hours=25)
REPO_ROOT = Path(settings.BASE_DIR)


def at(moment: datetime) -> time_machine.travel:
    return time_machine.travel(moment, tick=False)


def run_report(*args: str) -> tuple[int, str, str]:
    """The command as a monitor sees it: exit status, stdout, stderr (argparse's messages included)."""
    out, err = StringIO(), StringIO()
    with at(NOW), redirect_stderr(err):
        try:
            call_command("security_report", *args, stdout=out, stderr=err)
        except SystemExit as exit_:
            return int(exit_.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def report(**kwargs: Any) -> SecurityReport:
    """The last 24 hours before NOW."""
    return security_report(since=NOW - timedelta(hours=24), until=NOW, **kwargs)


class SecurityReportTestCase(CastTestCase):
    def failed_login(self, user: User | None, *, ip: str, when: datetime = IN_PERIOD) -> None:
        with at(when), bound_context(AuditContext(ip=ip)):
            record("auth.login_failed", actor=user)

    def account_event(
        self, action: str, account: Any, *, by: User, when: datetime = IN_PERIOD, target: Any = None
    ) -> None:
        account_id = account if isinstance(account, str) else account.public_id
        with at(when), bound_context(AuditContext(ip="192.0.2.10", user_id=by.public_id, account_id=account_id)):
            record(action, account=account, target=target)

    def new_api_key(self, account: Any, *, by: User, when: datetime = IN_PERIOD) -> str:
        key_id = new_public_id("key")
        self.account_event("api_key.created", account, by=by, when=when, target=("api_key", key_id))
        return key_id

    def support_event(
        self, action: str, account: Any, *, acting_as: User, session_id: str, when: datetime = IN_PERIOD
    ) -> None:
        context = AuditContext(
            ip="198.51.100.77",
            user_id=self.sam.public_id,
            acting_as_id=acting_as.public_id,
            support_session_id=session_id,
            account_id=account.public_id,
        )
        with at(when), bound_context(context):
            record(action, account=account)


class StatusTests(SecurityReportTestCase):
    def test_a_quiet_period_is_ok_and_exits_0(self):
        self.account_event("account.renamed", self.acme, by=self.alice)
        with at(IN_PERIOD):
            record("auth.login", actor=self.alice)
        self.failed_login(self.bob, ip="203.0.113.7")
        # A break-glass session before the period is not in it.
        self.support_event(
            "support.break_glass", self.acme, acting_as=self.bob, session_id=new_public_id("sup"), when=BEFORE_PERIOD
        )

        code, out, err = run_report()

        assert (code, err) == (0, "")
        summary = out.splitlines()[0]
        assert summary.startswith("SECURITY OK - no finding in 24 h | ")
        assert "failed_logins=1;100;1000;0 lockouts=0;10;50;0 break_glass=0;;1;0 " in summary
        assert "Support sessions: 0 started, 0 break-glass, 0 refused, 0 writes refused" in out

    def test_failed_logins_at_the_warning_threshold_exit_1_with_the_finding(self):
        for _ in range(4):
            self.failed_login(self.alice, ip="203.0.113.7")
        for _ in range(2):
            self.failed_login(self.bob, ip="198.51.100.2")
        self.failed_login(None, ip="203.0.113.7")
        self.failed_login(self.vic, ip="203.0.113.99", when=BEFORE_PERIOD)

        code, out, _ = run_report("--warn-failed-logins", "7", "--crit-failed-logins", "20")

        assert code == 1
        assert out.startswith("SECURITY WARNING - 7 failed logins (warning at 7) | failed_logins=7;7;20;0 ")
        assert "  WARNING failed_logins: 7 failed logins (warning at 7)" in out
        assert "Failed logins: 7 (2 users targeted, 1 for no known user)" in out
        assert "    203.0.113.7: 5\n    198.51.100.2: 2\n" in out
        assert self.vic.public_id not in out and "203.0.113.99" not in out
        with at(NOW):
            assert report().failed_logins == FailedLogins(
                count=7,
                users_targeted=2,
                unknown_users=1,
                top_ips=(("203.0.113.7", 5), ("198.51.100.2", 2)),
                top_users=((self.alice.public_id, 4), (self.bob.public_id, 2)),
            )
        assert run_report("--warn-failed-logins", "3", "--crit-failed-logins", "7")[0] == 2
        assert run_report("--warn-failed-logins", "8")[0] == 0

    def test_lockouts_are_counted_by_what_was_locked(self):
        with at(IN_PERIOD), bound_context(AuditContext(ip="203.0.113.7")):
            record("auth.lockout_started", actor=self.alice, data={"locked_by": "username"})
            record("auth.lockout_started", data={"locked_by": "ip"})
            record("auth.two_factor_lockout_started", actor=self.bob)

        code, out, _ = run_report("--warn-lockouts", "3")

        assert code == 1
        assert out.startswith("SECURITY WARNING - 3 lockouts started (warning at 3) | ")
        assert "Lockouts started: 3 (by ip 1, two_factor 1, username 1)" in out
        with at(NOW):
            assert report().lockouts == Lockouts(count=3, by_locked_by={"ip": 1, "two_factor": 1, "username": 1})

    def test_a_break_glass_session_is_critical_and_names_who_where_and_as_whom(self):
        glass, ordinary = new_public_id("sup"), new_public_id("sup")
        self.support_event("support.break_glass", self.acme, acting_as=self.bob, session_id=glass)
        self.support_event("support.session_started", self.globex, acting_as=self.charlie, session_id=ordinary)
        for _ in range(2):
            self.support_event("support.write_refused", self.globex, acting_as=self.charlie, session_id=ordinary)
        with at(IN_PERIOD), bound_context(AuditContext(user_id=self.sam.public_id)):
            record("support.session_refused", account=self.acme)

        code, out, _ = run_report()

        assert code == 2
        assert out.startswith(
            f"SECURITY CRITICAL - 1 break-glass support session (critical at 1): {self.acme.public_id} | "
        )
        assert "Support sessions: 1 started, 1 break-glass, 1 refused, 2 writes refused" in out
        sam, bob, charlie = self.sam.public_id, self.bob.public_id, self.charlie.public_id
        assert f"support.break_glass in {self.acme.public_id} by {sam} as {bob} (session {glass}) at " in out
        assert f"support.write_refused in {self.globex.public_id} by {sam} as {charlie} (session {ordinary}) x2" in out
        assert run_report("--crit-break-glass", "0")[0] == 0

    def test_new_api_keys_and_exports_are_counted_per_account(self):
        acme_keys = [self.new_api_key(self.acme, by=self.alice) for _ in range(3)]
        globex_key = self.new_api_key(self.globex, by=self.charlie)
        self.account_event("audit.exported", self.acme, by=self.alice)
        for _ in range(2):
            self.account_event("contact.exported", self.acme, by=self.bob)
        self.account_event("contact.exported", self.globex, by=self.charlie)

        code, out, _ = run_report("--warn-exports", "3")

        assert code == 1
        acme, globex = self.acme.public_id, self.globex.public_id
        assert f"  WARNING new_api_keys: {acme}: 3 new API keys (warning at 3)" in out
        assert f"  WARNING exports: {acme}: 3 exports (warning at 3)" in out
        assert f"WARNING new_api_keys: {globex}" not in out and f"WARNING exports: {globex}" not in out
        assert f"  {acme}: 3 (audit trail 1, contacts 2)\n  {globex}: 1 (audit trail 0, contacts 1)" in out
        assert f"    {globex_key} by {self.charlie.public_id} at " in out
        with at(NOW):
            keys = {entry.account_id: entry for entry in report().new_api_keys}
        assert {key.key_id for key in keys[acme].keys} == set(acme_keys)
        assert {key.created_by for key in keys[acme].keys} == {self.alice.public_id}
        assert (keys[acme].count, keys[globex].count) == (3, 1)


class AccountReportTests(SecurityReportTestCase):
    def test_an_account_report_holds_only_that_account_and_nothing_of_the_others(self):
        acme_key = self.new_api_key(self.acme, by=self.alice)
        globex_key = self.new_api_key(self.globex, by=self.charlie)
        self.account_event("contact.exported", self.globex, by=self.charlie)
        globex_session = new_public_id("sup")
        self.support_event("support.break_glass", self.globex, acting_as=self.charlie, session_id=globex_session)
        for _ in range(60):
            self.account_event("campaign.sent", self.globex, by=self.charlie)
        self.failed_login(self.charlie, ip="203.0.113.44")

        code, out, _ = run_report("--account", self.acme.public_id, "--json")

        assert code == 0
        document = json.loads(out)
        assert document["status"] == "OK" and document["findings"] == []
        assert document["accounts"] == [self.acme.public_id]
        assert (document["failed_logins"], document["lockouts"]) == (None, None)
        assert [entry["account"] for entry in document["new_api_keys"]] == [self.acme.public_id]
        assert acme_key in out
        for other in (self.globex.public_id, globex_key, globex_session, self.charlie.public_id, "203.0.113.44"):
            assert other not in out
        text_code, text, _ = run_report("--account", self.acme.public_id)
        assert text_code == 0 and self.globex.public_id not in text
        assert "Failed logins: platform-wide, not in an account report" in text

        both, out, _ = run_report("--account", self.acme.public_id, "--account", self.globex.public_id, "--json")
        document = json.loads(out)
        assert both == 2 and document["status"] == "CRITICAL"
        assert {finding["check"] for finding in document["findings"]} == {"break_glass", "volume"}
        assert document["support"]["activity"][0]["session"] == globex_session


class VolumeTests(SecurityReportTestCase):
    def test_the_volume_baseline_flags_a_spike_and_not_a_steady_busy_account(self):
        new_account, quiet_account = new_public_id("acc"), new_public_id("acc")
        for day in range(30):
            before = BEFORE_PERIOD - timedelta(days=day)
            self.account_event("campaign.sent", self.acme, by=self.alice, when=before)
            for _ in range(5):
                self.account_event("campaign.sent", self.globex, by=self.charlie, when=before)
        # Older than the 30 baseline days: counted, acme's spike would look ordinary.
        for _ in range(50):
            self.account_event("campaign.sent", self.acme, by=self.alice, when=NOW - timedelta(days=40))
        for _ in range(12):
            self.account_event("campaign.sent", self.acme, by=self.alice)
        for _ in range(8):
            self.account_event("campaign.sent", self.globex, by=self.charlie)
        for _ in range(6):
            self.account_event("campaign.sent", new_account, by=self.alice)
        for _ in range(5):
            self.account_event("campaign.sent", quiet_account, by=self.alice)

        with at(NOW):
            volumes = report(thresholds=Thresholds(volume_min_events=6)).unusual_volume
        assert volumes == (
            AccountVolume(
                account_id=self.acme.public_id, count=12, baseline=pytest.approx(1.0), factor=pytest.approx(12)
            ),
            AccountVolume(account_id=new_account, count=6, baseline=0.0, factor=None),
        )

        code, out, _ = run_report("--volume-min-events", "6", "--json")
        assert code == 1
        findings = json.loads(out)["findings"]
        assert [(finding["check"], finding["account"]) for finding in findings] == [
            ("volume", self.acme.public_id),
            ("volume", new_account),
        ]
        assert findings[0]["message"] == f"{self.acme.public_id}: 12 events, 12.0x its usual 1.0 (warning above 5x)"
        assert findings[1]["message"] == f"{new_account}: 6 events, none in the previous 30 days"
        assert run_report("--volume-min-events", "6", "--warn-volume-factor", "13")[0] == 1
        assert run_report("--volume-min-events", "7", "--warn-volume-factor", "13")[0] == 0
        assert run_report("--volume-min-events", "6", "--warn-volume-factor", "0")[0] == 0


class OutputTests(SecurityReportTestCase):
    def test_json_output_parses_and_matches_the_text_status(self):
        for _ in range(3):
            self.failed_login(self.alice, ip="203.0.113.7")
        self.account_event("audit.exported", self.acme, by=self.alice)
        options = ("--warn-failed-logins", "3", "--warn-exports", "1")

        text_code, text, _ = run_report(*options)
        json_code, out, _ = run_report(*options, "--json")

        document = json.loads(out)
        assert text_code == json_code == document["exit_code"] == 1
        assert text.startswith(f"SECURITY {document['status']} - ")
        assert document["findings"] == [
            {
                "level": "WARNING",
                "check": "failed_logins",
                "message": "3 failed logins (warning at 3)",
                "account": None,
            },
            {
                "level": "WARNING",
                "check": "exports",
                "message": f"{self.acme.public_id}: 1 export (warning at 1)",
                "account": self.acme.public_id,
            },
        ]
        for finding in document["findings"]:
            assert f"  {finding['level']} {finding['check']}: {finding['message']}" in text
        assert document["failed_logins"]["top_ips"] == [{"ip": "203.0.113.7", "count": 3}]
        assert document["period"]["hours"] == 24
        assert document["thresholds"]["warn_exports"] == 1

    def test_no_email_address_or_name_is_ever_printed(self):
        canary = make_user("canary-4e1d@example.test", full_name="Zebulon Canary")
        self.failed_login(canary, ip="203.0.113.7")
        with at(IN_PERIOD):
            record("auth.lockout_started", actor=canary, data={"locked_by": "username"})
        self.new_api_key(self.acme, by=canary)
        self.account_event("contact.exported", self.acme, by=canary)
        self.support_event("support.break_glass", self.acme, acting_as=canary, session_id=new_public_id("sup"))
        options = (
            "--warn-failed-logins",
            "1",
            "--warn-lockouts",
            "1",
            "--warn-exports",
            "1",
            "--warn-new-api-keys",
            "1",
        )

        for args in (options, (*options, "--json"), ("--account", self.acme.public_id)):
            with self.subTest(args=args):
                code, out, err = run_report(*args)
                assert code == 2
                # The canary is there, by public id only.
                assert canary.public_id in out
                assert "@" not in out + err
                for personal in ("canary-4e1d", "Zebulon", "Canary", "Alice Owner", "Sam Support"):
                    assert personal not in out + err


class ArgumentTests(SecurityReportTestCase):
    def test_bad_arguments_exit_3_unknown_with_a_message_on_stderr(self):
        for args, named in (
            (("--since", "yesterday"), "--since"),
            (("--since", "2025-06-03T00:00:00Z"), "not in the past"),
            (("--since", "2020-01-01T00:00:00Z"), "days ago"),
            (("--since", "2025-06-01T08:00:00Z", "--hours", "6"), "not both"),
            (("--hours", "0"), "--hours"),
            (("--hours", "-2"), "--hours"),
            (("--warn-failed-logins", "10", "--crit-failed-logins", "5"), "--warn-failed-logins (10)"),
            (("--warn-volume-factor", "nan"), "--warn-volume-factor"),
            (("--account", "Acme"), "--account"),
            (("--no-such-option",), "unrecognized arguments"),
        ):
            with self.subTest(args=args):
                code, out, err = run_report(*args)
                assert (code, out) == (3, "")
                assert named in err

    def test_a_since_starts_the_period_there(self):
        self.failed_login(self.alice, ip="203.0.113.7", when=NOW - timedelta(hours=30))

        code, out, _ = run_report("--since", "2025-06-01T04:00:00Z", "--json")

        document = json.loads(out)
        assert code == 0
        assert document["period"]["since"] == "2025-06-01T04:00:00+00:00"
        assert (document["period"]["hours"], document["failed_logins"]["count"]) == (32, 1)

    def test_a_report_that_fails_is_unknown_not_a_traceback(self):
        out = StringIO()
        # call_command skips argparse's type conversion, so a string makes the period itself fail.
        with at(NOW), pytest.raises(SystemExit) as exit_:
            call_command("security_report", hours="soon", stdout=out)
        assert exit_.value.code == 3
        assert out.getvalue() == "SECURITY UNKNOWN - the report failed (TypeError)\n"


class QueryCountTests(SecurityReportTestCase):
    def fill(self, accounts: list[Any], users: list[User]) -> None:
        for account in accounts:
            for user in users:
                self.failed_login(user, ip="203.0.113.7")
                self.new_api_key(account, by=user)
                self.account_event("contact.exported", account, by=user)
                self.support_event(
                    "support.session_started", self.acme, acting_as=user, session_id=new_public_id("sup")
                )

    def test_the_report_takes_the_same_queries_whatever_the_number_of_events(self):
        self.fill([self.acme], [self.alice])
        with at(NOW), CaptureQueriesContext(connection) as small:
            small_report = report()
        self.fill(
            [self.acme, self.globex, new_public_id("acc"), new_public_id("acc")], [self.alice, self.bob, self.vic]
        )
        with at(NOW), CaptureQueriesContext(connection) as large:
            large_report = report()

        assert (len(small_report.exports), len(large_report.exports)) == (1, 4)
        assert large_report.failed_logins is not None and large_report.failed_logins.count == 13
        assert len(large.captured_queries) == len(small.captured_queries) == 10


def command_env() -> dict[str, str]:
    """The test process's environment, aimed at the test database."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return {**os.environ, "DATABASE_URL": f"postgres://{credentials}@{host}/{quote(db['NAME'], safe='')}"}


def run_command_process(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "security_report", *options],
        cwd=REPO_ROOT,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
class CommandProcessTests(SecurityReportTestCase):
    """As a monitor runs it: a separate process whose exit status reaches the shell."""

    def test_the_plugin_status_reaches_the_shell(self):
        # The test's own events are in its transaction: the process sees an empty trail.
        ok = run_command_process("--hours", "1")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.startswith("SECURITY OK - no finding in 1 h | ")

        for bad in (("--since", "yesterday"), ("--hours",), ("--crit-break-glass", "-1")):
            with self.subTest(args=bad):
                result = run_command_process(*bad)
                assert result.returncode == 3, result.stdout + result.stderr
                assert result.stdout == "" and "security_report: error: " in result.stderr
