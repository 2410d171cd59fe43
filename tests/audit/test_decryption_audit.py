"""A value that fails to decrypt leaves ``security.decryption_failed`` in the trail, even when its request rolls back.

The event is queued at once on the real broker (not at commit) and written by
the task a worker runs; these tests read the message the broker holds and run
that task, as the worker would.
"""

from __future__ import annotations

import base64
import json

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction

from accounts.tenancy import account_scope
from audit.models import AuditEvent
from audit.tasks import record_decryption_failure
from contacts.models import Contact
from contacts.services import create_contact
from security.envelope import DecryptionError
from tests.cast import CastTestCase
from tests.support.worker import declare_task_queues

TASK = "audit.tasks.record_decryption_failure"


class DecryptionFailureAuditTests(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            cls.zed = create_contact(cls.acme, email="zed.zimmer@example.com", first_name="Zedekiah", last_name="Z")

    def setUp(self) -> None:
        declare_task_queues()  # the suite's cache clear empties the broker's routing too
        self.broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        self.break_column("first_name")

    def break_column(self, column: str) -> None:
        """Flip a bit of the stored ciphertext, as a corrupted disk or an edited row would."""
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE contacts_contact SET {column} = set_byte({column}, 20, get_byte({column}, 20) # 1) "  # noqa: S608
                "WHERE id = %s",
                [self.zed.pk],
            )

    def read(self, field: str) -> None:
        with account_scope(self.acme):
            getattr(Contact.objects.get(pk=self.zed.pk), field)

    def queued(self) -> list[tuple[list, dict, bytes]]:
        """The messages waiting on the default queue for this task: (args, kwargs, the raw message)."""
        found = []
        for raw in self.broker.lrange("default", 0, -1):
            message = json.loads(raw)
            if message["headers"]["task"] == TASK:
                args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
                found.append((args, kwargs, raw))
        return found

    def test_a_failed_read_queues_its_event_though_the_transaction_rolls_back(self):
        with pytest.raises(DecryptionError), transaction.atomic():
            self.read("first_name")

        [(args, kwargs, raw)] = self.queued()
        assert args == [self.acme.public_id, "contact", self.zed.public_id]
        assert kwargs == {"model": "contacts.Contact", "field": "first_name", "reason": "DecryptionError"}
        for personal in (b"Zedekiah", b"zed.zimmer", b"example.com"):
            assert personal not in raw and base64.b64encode(personal)[:8] not in raw
        assert not AuditEvent.objects.filter(action="security.decryption_failed").exists()

        record_decryption_failure(*args, **kwargs)  # what the worker runs

        event = AuditEvent.objects.get(action="security.decryption_failed")
        assert (event.account_id, event.target_type, event.target_id) == (
            self.acme.public_id,
            "contact",
            self.zed.public_id,
        )
        assert event.data == {"model": "contacts.Contact", "field": "first_name", "reason": "DecryptionError"}

    def test_a_broken_field_is_reported_once_while_each_broken_field_is_reported(self):
        for _ in range(3):
            with pytest.raises(DecryptionError):
                self.read("first_name")
        self.break_column("last_name")
        with pytest.raises(DecryptionError):
            self.read("last_name")

        assert sorted(kwargs["field"] for _args, kwargs, _raw in self.queued()) == ["first_name", "last_name"]

    def test_a_platform_value_goes_to_the_platform_trail_with_its_scope(self):
        record_decryption_failure(
            "platform", "totp_device", "otp_" + "a" * 26, model="accounts.TOTPDevice", field="secret", reason="X"
        )

        event = AuditEvent.objects.get(action="security.decryption_failed")
        assert event.account_id == ""
        assert event.data == {"model": "accounts.TOTPDevice", "field": "secret", "reason": "X", "scope": "platform"}
