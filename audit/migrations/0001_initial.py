import django.utils.timezone
import security.identifiers
from django.db import migrations, models

# On PostgreSQL, only the table's owner (the role that runs migrations) may
# change or remove events; the application's role may only add them. The
# owner's edits are what audit_verify exists to catch.
APPEND_ONLY_SQL = """
CREATE OR REPLACE FUNCTION bluespark_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    owner_oid oid;
BEGIN
    SELECT relowner INTO owner_oid FROM pg_class WHERE oid = TG_RELID;
    IF pg_has_role(current_user, owner_oid, 'USAGE') THEN
        IF TG_LEVEL = 'ROW' THEN
            RETURN COALESCE(NEW, OLD);
        END IF;
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % refused for role %', TG_OP, current_user
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_event_append_only_rows BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION bluespark_audit_append_only();
CREATE TRIGGER audit_event_append_only_truncate BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION bluespark_audit_append_only();
"""

REMOVE_SQL = """
DROP TRIGGER IF EXISTS audit_event_append_only_truncate ON audit_auditevent;
DROP TRIGGER IF EXISTS audit_event_append_only_rows ON audit_auditevent;
DROP FUNCTION IF EXISTS bluespark_audit_append_only();
"""


def add_append_only_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # A plain cursor: the function's '%' placeholders are PL/pgSQL's, not the driver's.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(APPEND_ONLY_SQL)


def remove_append_only_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(REMOVE_SQL)


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="AuditChainHead",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("chain", models.CharField(max_length=40, unique=True)),
                ("sequence", models.BigIntegerField(default=0)),
                ("hash", models.BinaryField(max_length=32)),
            ],
        ),
        migrations.CreateModel(
            name="AuditEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("public_id", security.identifiers.PublicIdField(prefix="evt", unique=True)),
                ("chain", models.CharField(max_length=40)),
                ("sequence", models.BigIntegerField()),
                ("account_id", models.CharField(blank=True, default="", max_length=40)),
                ("occurred_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("action", models.CharField(max_length=64)),
                (
                    "actor_type",
                    models.CharField(
                        choices=[
                            ("user", "User"),
                            ("api_key", "API key"),
                            ("staff", "Bluespark support"),
                            ("system", "Bluespark"),
                        ],
                        max_length=16,
                    ),
                ),
                ("actor_id", models.CharField(blank=True, default="", max_length=40)),
                ("acting_as_id", models.CharField(blank=True, default="", max_length=40)),
                ("support_session_id", models.CharField(blank=True, default="", max_length=40)),
                ("api_key_id", models.CharField(blank=True, default="", max_length=40)),
                ("target_type", models.CharField(blank=True, default="", max_length=32)),
                ("target_id", models.CharField(blank=True, default="", max_length=40)),
                ("ip", models.GenericIPAddressField(blank=True, null=True)),
                ("request_id", models.CharField(blank=True, default="", max_length=64)),
                ("data", models.JSONField(blank=True, default=dict)),
                ("previous_hash", models.BinaryField(max_length=32)),
                ("hash", models.BinaryField(max_length=32)),
            ],
            options={
                "indexes": [
                    models.Index(fields=["account_id", "-occurred_at", "-id"], name="audit_account_time"),
                    models.Index(fields=["account_id", "action", "-occurred_at"], name="audit_account_action"),
                    models.Index(fields=["account_id", "actor_id", "-occurred_at"], name="audit_account_actor"),
                    models.Index(fields=["actor_id", "-occurred_at"], name="audit_actor_time"),
                    models.Index(fields=["support_session_id"], name="audit_support_session"),
                    models.Index(fields=["action", "-occurred_at"], name="audit_action_time"),
                ],
                "constraints": [
                    models.UniqueConstraint(fields=("chain", "sequence"), name="audit_event_chain_sequence")
                ],
            },
        ),
        migrations.RunPython(add_append_only_trigger, remove_append_only_trigger, elidable=False),
    ]
