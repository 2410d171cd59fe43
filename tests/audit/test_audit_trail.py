"""The audit trail's core: the registry, what an event records, the hash chain, and append-only storage."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.utils import DatabaseError

from audit.actions import UnknownAction
from audit.context import AuditContext, bound_context
from audit.models import PLATFORM_CHAIN, PLATFORM_SHARDS, AuditChainHead, AuditEvent, platform_chain
from audit.services import UnsafeAuditData, record
from tests.cast import CastTestCase

CONTEXT = AuditContext(request_id="req_0123456789abcdef01234567", ip="203.0.113.9", user_id="usr_x", account_id="acc_y")


def audit_verify(*args: str) -> tuple[int, dict]:
    out = StringIO()
    try:
        call_command("audit_verify", "--json", *args, stdout=out)
        status = 0
    except SystemExit as exit_:
        status = int(exit_.code)
    return status, json.loads(out.getvalue())


def raw(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


class RecordTests(CastTestCase):
    def test_an_event_names_the_actor_the_address_and_the_request_from_the_context(self):
        with bound_context(
            AuditContext(
                request_id="req_abcdefabcdefabcdefabcdef",
                ip="198.51.100.4",
                user_id=self.alice.public_id,
                account_id=self.acme.public_id,
            )
        ):
            event = record("account.renamed", account=self.acme, target=self.acme, data={"old": "A", "new": "B"})
        event.refresh_from_db()
        assert (event.chain, event.sequence, event.account_id) == (self.acme.public_id, 1, self.acme.public_id)
        assert (event.actor_type, event.actor_id) == ("user", self.alice.public_id)
        assert (event.ip, event.request_id) == ("198.51.100.4", "req_abcdefabcdefabcdefabcdef")
        assert (event.target_type, event.target_id) == ("account", self.acme.public_id)
        assert event.data == {"old": "A", "new": "B"}

    def test_staff_in_a_support_session_are_named_with_the_member_they_act_as(self):
        context = AuditContext(
            user_id=self.sam.public_id,
            acting_as_id=self.bob.public_id,
            support_session_id="sup_aaaaaaaaaaaaaaaaaaaaaaaaaa",
            account_id=self.acme.public_id,
        )
        with bound_context(context):
            event = record("member.role_changed", account=self.acme, target=("user", self.vic.public_id))
        assert (event.actor_type, event.actor_id, event.acting_as_id) == (
            "staff",
            self.sam.public_id,
            self.bob.public_id,
        )
        assert event.support_session_id == "sup_aaaaaaaaaaaaaaaaaaaaaaaaaa"

    def test_an_api_key_and_the_system_are_actors_too(self):
        with bound_context(AuditContext(api_key_id="key_bbbbbbbbbbbbbbbbbbbbbbbbbb")):
            by_key = record("contact.exported", account=self.acme)
        by_system = record("account.deleted", account=self.globex)
        assert (by_key.actor_type, by_key.api_key_id) == ("api_key", "key_bbbbbbbbbbbbbbbbbbbbbbbbbb")
        assert (by_system.actor_type, by_system.actor_id) == ("system", "")

    def test_events_without_an_account_go_to_their_users_chain_or_a_platform_shard(self):
        event = record("auth.login", actor=self.alice)
        assert (event.chain, event.account_id, event.actor_id) == (
            f"user:{self.alice.public_id}",
            "",
            self.alice.public_id,
        )
        with bound_context(AuditContext(request_id="req_1", ip="198.51.100.7")):
            anonymous = record("auth.login_failed")
        assert anonymous.chain == platform_chain("198.51.100.7")
        assert {platform_chain(f"203.0.113.{n}") for n in range(60)} <= {
            f"{PLATFORM_CHAIN}:{shard:02d}" for shard in range(PLATFORM_SHARDS)
        }
        assert len({platform_chain(f"203.0.113.{n}") for n in range(60)}) > 4  # spread, not one hot row
        assert record("auth.login_failed").chain == PLATFORM_CHAIN  # no address at all

    def test_an_unknown_action_and_personal_data_are_refused(self):
        with pytest.raises(UnknownAction):
            record("account.renamd", account=self.acme)
        with pytest.raises(UnsafeAuditData):
            record("member.invited", account=self.acme, data={"email": "dora@example.test"})
        with pytest.raises(UnsafeAuditData):
            record("member.invited", account=self.acme, data={"who": self.alice})
        assert not AuditEvent.objects.exists()

    def test_an_event_is_rolled_back_with_the_change_it_records(self):
        with pytest.raises(RuntimeError), transaction.atomic():
            record("account.renamed", account=self.acme)
            raise RuntimeError("the change failed")
        assert not AuditEvent.objects.exists()
        assert record("account.renamed", account=self.acme).sequence == 1

    def test_each_account_has_its_own_chain(self):
        for _ in range(3):
            record("account.renamed", account=self.acme)
        globex_event = record("account.renamed", account=self.globex)
        assert list(AuditEvent.objects.filter(chain=self.acme.public_id).values_list("sequence", flat=True)) == [
            1,
            2,
            3,
        ]
        assert globex_event.sequence == 1
        assert bytes(AuditChainHead.objects.get(chain=self.acme.public_id).hash) == bytes(
            AuditEvent.objects.get(chain=self.acme.public_id, sequence=3).hash
        )


class ChainTests(CastTestCase):
    def setUp(self) -> None:
        with bound_context(CONTEXT):
            self.events = [record("account.renamed", account=self.acme, data={"n": n}) for n in range(5)]
            record("account.renamed", account=self.globex)
            record("auth.login", actor=self.alice)

    def owner_sql(self, sql: str, params: list | None = None) -> None:
        """An edit by the table's owner (the migration role): the trigger lets it through."""
        raw(sql, params)

    def test_an_untouched_trail_verifies(self):
        status, report = audit_verify()
        assert status == 0 and report["ok"]
        assert (report["chains"], report["events"]) == (3, 7)

    def test_an_edited_event_is_reported(self):
        self.owner_sql(
            "UPDATE audit_auditevent SET data = %s WHERE public_id = %s", ['{"n": 99}', self.events[2].public_id]
        )
        status, report = audit_verify()
        assert status == 1
        assert [(p["event"], p["kind"]) for p in report["problems"]] == [(self.events[2].public_id, "edited")]

    def test_a_removed_event_is_reported(self):
        self.owner_sql("DELETE FROM audit_auditevent WHERE public_id = %s", [self.events[1].public_id])
        status, report = audit_verify("--account", self.acme.public_id)
        assert status == 1
        kinds = {(p["sequence"], p["kind"]) for p in report["problems"]}
        assert kinds == {(3, "missing"), (3, "out_of_order")}

    def test_reordered_events_are_reported(self):
        first, second = self.events[1], self.events[3]
        self.owner_sql(
            "UPDATE audit_auditevent SET sequence = -sequence WHERE public_id IN (%s, %s)",
            [first.public_id, second.public_id],
        )
        self.owner_sql("UPDATE audit_auditevent SET sequence = %s WHERE public_id = %s", [4, first.public_id])
        self.owner_sql("UPDATE audit_auditevent SET sequence = %s WHERE public_id = %s", [2, second.public_id])
        status, report = audit_verify()
        assert status == 1
        assert {p["kind"] for p in report["problems"]} == {"edited", "out_of_order"}

    def test_removing_the_newest_events_is_reported(self):
        self.owner_sql(
            "DELETE FROM audit_auditevent WHERE public_id IN (%s, %s)",
            [self.events[3].public_id, self.events[4].public_id],
        )
        status, report = audit_verify()
        assert status == 1
        assert [p["kind"] for p in report["problems"]] == ["truncated"]

    def test_a_forged_hash_without_the_key_store_does_not_pass(self):
        # Recomputing a plain SHA-256 chain is not enough: the chain is keyed.
        self.owner_sql(
            "UPDATE audit_auditevent SET data = %s, hash = sha256(previous_hash || %s::bytea) WHERE public_id = %s",
            ['{"n": 42}', b"forged", self.events[4].public_id],
        )
        status, report = audit_verify()
        assert status == 1 and report["problems"][0]["kind"] == "edited"

    def test_the_text_report_names_each_problem(self):
        self.owner_sql(
            "UPDATE audit_auditevent SET action = 'account.deleted' WHERE public_id = %s", [self.events[0].public_id]
        )
        out = StringIO()
        with pytest.raises(SystemExit):
            call_command("audit_verify", stdout=out)
        text = out.getvalue()
        assert f"{self.acme.public_id}: event 1 ({self.events[0].public_id}): edited" in text
        assert "1 problem(s) found" in text


class AppendOnlyTests(CastTestCase):
    """As the application's database role (not the tables' owner), events can be added and never changed."""

    APP_ROLE = "bluespark_app_probe"

    def setUp(self) -> None:
        self.event = record("account.renamed", account=self.acme)
        raw(f"CREATE ROLE {self.APP_ROLE} NOLOGIN")
        raw(f"GRANT USAGE ON SCHEMA public TO {self.APP_ROLE}")
        raw(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON audit_auditevent TO {self.APP_ROLE}")

    def as_app_role(self, sql: str, params: list | None = None) -> tuple | None:
        """Run one statement as the application's role (SET ROLE lasts the session: reset it after)."""
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET ROLE {self.APP_ROLE}")
                cursor.execute(sql, params or [])
                return cursor.fetchone() if cursor.description else None
        finally:
            raw("RESET ROLE")

    def test_update_delete_and_truncate_fail_and_reading_works(self):
        for statement in (
            "UPDATE audit_auditevent SET action = 'auth.login' WHERE id = %s",
            "DELETE FROM audit_auditevent WHERE id = %s",
            "TRUNCATE audit_auditevent",
        ):
            params = [self.event.pk] if "%s" in statement else None
            with pytest.raises(DatabaseError, match="append-only"):
                self.as_app_role(statement, params)
        assert self.as_app_role("SELECT action FROM audit_auditevent WHERE id = %s", [self.event.pk]) == (
            "account.renamed",
        )
        assert AuditEvent.objects.get(pk=self.event.pk).action == "account.renamed"
        assert audit_verify()[0] == 0


class DeletionKeepsEventsTests(CastTestCase):
    def test_deleting_a_member_a_staff_user_or_an_account_keeps_their_events(self):
        with bound_context(
            AuditContext(
                user_id=self.sam.public_id,
                acting_as_id=self.bob.public_id,
                support_session_id="sup_cccccccccccccccccccccccccc",
            )
        ):
            record("member.role_changed", account=self.acme, target=("user", self.vic.public_id))
        record("auth.login", actor=self.bob)
        sam, bob, acme = self.sam.public_id, self.bob.public_id, self.acme.public_id
        self.sam.delete()
        self.bob.delete()
        from accounts.services import delete_account

        delete_account(self.acme)
        kept = AuditEvent.objects.get(action="member.role_changed")
        assert (kept.actor_id, kept.acting_as_id, kept.account_id) == (sam, bob, acme)
        assert AuditEvent.objects.get(action="auth.login").actor_id == bob
        assert audit_verify()[0] == 0
