"""The application's database role, made by deploy/postgres/app-role.sql, on the real schema.

In docker-compose the postgres container runs that file (through
deploy/postgres/01-app-role.sh) as ``bluespark``, the tables' owner; the web,
worker and beat processes then log in as ``bluespark_app``. Here the same file
runs as the test database's owner, with a test password, and ``SET ROLE``
shows what the application's role may and may not do.

Roles are cluster-wide, but CREATE ROLE is transactional: the role exists only
inside each test class's transaction, and nothing outlives the run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from accounts.models import Account
from audit.models import AuditEvent
from audit.services import record
from tests.cast import CastTestCase

APP_ROLE = "bluespark_app"
SQL_FILE = Path(settings.BASE_DIR) / "deploy" / "postgres" / "app-role.sql"
PASSWORD_VARIABLE = ":'app_password'"
TEST_PASSWORD = "test-only-app-role-password"
INSUFFICIENT_PRIVILEGE = "42501"


def app_role_sql(password: str = TEST_PASSWORD) -> str:
    """The file's SQL with the password psql would put in for ``:'app_password'``, quoted as a literal."""
    text = SQL_FILE.read_text()
    assert text.count(PASSWORD_VARIABLE) == 1, "app-role.sql takes the password from one psql variable"
    assert not [line for line in text.splitlines() if line.lstrip().startswith("\\")], "no psql meta-commands"
    return text.replace(PASSWORD_VARIABLE, "'" + password.replace("'", "''") + "'")


def execute(sql: str, params: list | None = None) -> list[tuple]:
    """One statement (or, without params, a script: no %-formatting) on the default connection."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


@contextmanager
def as_role(role: str = APP_ROLE) -> Iterator[None]:
    """Queries in the block run as ``role``. SET ROLE lasts the session, past savepoints: reset it after."""
    execute(f"SET ROLE {role}")
    try:
        yield
    finally:
        execute("RESET ROLE")


def refused(sql: str, params: list | None = None) -> DatabaseError:
    """The error the statement fails with; its savepoint is rolled back, so the test's transaction goes on."""
    with pytest.raises(DatabaseError) as caught, transaction.atomic():
        execute(sql, params)
    return caught.value


def sqlstate(error: DatabaseError) -> str | None:
    return getattr(error.__cause__, "pgcode", None)


def chains_intact() -> bool:
    out = StringIO()
    try:
        call_command("audit_verify", "--json", stdout=out)
    except SystemExit:
        return False
    return json.loads(out.getvalue())["ok"] is True


class AppRoleTestCase(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        execute(app_role_sql())
        cls.event = record("account.renamed", account=cls.acme, data={"old": "Acme", "new": "Acme Inc."})


class AppRoleAttributesTests(AppRoleTestCase):
    def test_it_logs_in_owns_nothing_and_is_neither_a_superuser_nor_a_member_of_the_owner(self):
        [attributes] = execute(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = %s",
            [APP_ROLE],
        )
        assert attributes == (True, False, False, False, False, False)
        [(member_of_owner, can_connect)] = execute(
            "SELECT pg_has_role(%s, current_user, 'MEMBER'), has_database_privilege(%s, current_database(), 'CONNECT')",
            [APP_ROLE, APP_ROLE],
        )
        assert (member_of_owner, can_connect) == (False, True)
        assert execute("SELECT count(*) FROM pg_class WHERE relowner = %s::regrole", [APP_ROLE]) == [(0,)]
        assert execute("SELECT count(*) FROM pg_namespace WHERE nspowner = %s::regrole", [APP_ROLE]) == [(0,)]

    def test_the_audit_table_belongs_to_the_owner_who_ran_the_sql(self):
        [(owner, current)] = execute(
            "SELECT pg_get_userbyid(relowner), current_user FROM pg_class WHERE oid = 'audit_auditevent'::regclass"
        )
        assert owner == current != APP_ROLE

    def test_running_it_again_changes_nothing_it_promises(self):
        execute(app_role_sql("another-test-only-password"))

        assert execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", [APP_ROLE]) == [(1,)]
        with as_role():
            assert Account.objects.filter(pk=self.acme.pk).exists()
            assert "append-only" in str(refused("DELETE FROM audit_auditevent WHERE id = %s", [self.event.pk]))

    def test_it_refuses_to_run_as_a_role_that_does_not_own_the_tables(self):
        with as_role():
            error = refused(app_role_sql())
        assert "run app-role.sql as the role that owns the tables" in str(error)


class AppRoleDataTests(AppRoleTestCase):
    def test_it_inserts_reads_updates_and_deletes_ordinary_rows(self):
        with as_role():
            account = Account.objects.create(name="Initech")
            assert Account.objects.get(pk=account.pk).name == "Initech"
            Account.objects.filter(pk=account.pk).update(name="Initech Ltd")
            assert execute("SELECT name FROM accounts_account WHERE id = %s", [account.pk]) == [("Initech Ltd",)]
            execute("UPDATE accounts_account SET name = %s WHERE id = %s", ["Initrode", account.pk])
            execute("DELETE FROM accounts_account WHERE id = %s", [account.pk])
            assert not Account.objects.filter(pk=account.pk).exists()
            assert execute("SELECT current_user") == [(APP_ROLE,)]

    def test_it_records_and_reads_audit_events(self):
        with as_role():
            event = record("account.renamed", account=self.acme, data={"old": "Acme Inc.", "new": "Acme"})
            read = list(AuditEvent.objects.filter(account_id=self.acme.public_id).values_list("pk", flat=True))
        assert {self.event.pk, event.pk} <= set(read)
        assert (event.chain, event.sequence) == (self.event.chain, self.event.sequence + 1)
        assert chains_intact()

    def test_it_can_neither_change_nor_remove_audit_events(self):
        with as_role():
            errors = [
                refused("UPDATE audit_auditevent SET action = 'auth.login' WHERE id = %s", [self.event.pk]),
                refused("DELETE FROM audit_auditevent WHERE id = %s", [self.event.pk]),
                refused("DELETE FROM audit_auditevent"),
            ]
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
                AuditEvent.objects.filter(pk=self.event.pk).delete()
            # Not granted at all; and were it granted, the trigger refuses it too (below).
            truncate = refused("TRUNCATE audit_auditevent")
        for error in errors:
            assert "audit events are append-only" in str(error), error
            assert f"refused for role {APP_ROLE}" in str(error), error
            assert sqlstate(error) == INSUFFICIENT_PRIVILEGE, error
        assert "permission denied for table audit_auditevent" in str(truncate)
        assert sqlstate(truncate) == INSUFFICIENT_PRIVILEGE
        assert AuditEvent.objects.get(pk=self.event.pk).action == "account.renamed"
        assert chains_intact()

    def test_the_trigger_refuses_truncate_even_when_it_is_granted(self):
        execute(f"GRANT TRUNCATE ON audit_auditevent TO {APP_ROLE}")
        with as_role():
            error = refused("TRUNCATE audit_auditevent")
        assert "audit events are append-only: TRUNCATE refused" in str(error)
        assert AuditEvent.objects.filter(pk=self.event.pk).exists()

    def test_it_can_neither_run_ddl_nor_switch_the_trigger_off(self):
        with as_role():
            errors = [
                refused("CREATE TABLE bluespark_app_probe (id integer)"),
                refused("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only_rows"),
                refused("DROP TRIGGER audit_event_append_only_rows ON audit_auditevent"),
                refused("ALTER TABLE accounts_account ADD COLUMN probe integer"),
            ]
        for error in errors:
            assert sqlstate(error) == INSUFFICIENT_PRIVILEGE, error
        assert execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'audit_auditevent'::regclass") == [(2,)]

    def test_tables_and_sequences_that_migrations_create_later_are_granted_by_default(self):
        # As the owner, like a later migration: no GRANT of its own.
        execute("CREATE TABLE bluespark_role_probe (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text)")
        execute("CREATE SEQUENCE bluespark_role_probe_counter")
        with as_role():
            [(probe_id,)] = execute("INSERT INTO bluespark_role_probe (note) VALUES ('a') RETURNING id")
            execute("UPDATE bluespark_role_probe SET note = 'b' WHERE id = %s", [probe_id])
            assert execute("SELECT note FROM bluespark_role_probe") == [("b",)]
            execute("DELETE FROM bluespark_role_probe")
            assert execute("SELECT nextval('bluespark_role_probe_counter')") == [(1,)]
