"""Beat's clean-up of imports left in the wizard: their encrypted upload goes, the import ends cancelled."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from accounts.tenancy import account_scope
from audit.models import AuditEvent
from contacts.import_tasks import discard_abandoned_uploads
from contacts.importing import STALE_UPLOAD_AGE, configure, start_import, store_upload
from contacts.models import ContactImport
from tests.cast import CastTestCase

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CSV = b"email\nada@example.test\n"


class DiscardAbandonedUploadsTests(CastTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.folder = Path(tempfile.mkdtemp(prefix="bluespark-imports-"))
        self.settings_override = override_settings(IMPORT_DIR=self.folder)
        self.settings_override.enable()

    def tearDown(self) -> None:
        self.settings_override.disable()
        shutil.rmtree(self.folder, ignore_errors=True)
        super().tearDown()

    def upload(self, account, user) -> ContactImport:
        with account_scope(account):
            return store_upload(account, SimpleUploadedFile("people.csv", CSV, "text/csv"), created_by=user)

    def start(self, account, contact_import: ContactImport) -> None:
        with account_scope(account), self.captureOnCommitCallbacks(execute=False):
            configure(contact_import, mapping={"0": "email"}, update_existing=True, mailing_list=None)
            start_import(account, contact_import, actor=self.alice)

    def state(self, account, contact_import: ContactImport) -> tuple[str, bool]:
        """The import's status and whether its upload is still on disk."""
        with account_scope(account):
            contact_import = ContactImport.objects.get(pk=contact_import.pk)
        kept = bool(contact_import.file_path) and (self.folder / contact_import.file_path).exists()
        return contact_import.status, kept

    def test_it_discards_every_accounts_stale_uploads_and_keeps_fresh_and_started_ones(self):
        with time_machine.travel(T0, tick=False) as clock:
            left = self.upload(self.acme, self.alice)
            left_file = self.folder / left.file_path
            left_at_globex = self.upload(self.globex, self.charlie)
            started = self.upload(self.acme, self.alice)
            self.start(self.acme, started)
            clock.shift(STALE_UPLOAD_AGE - timedelta(hours=1))
            fresh = self.upload(self.acme, self.bob)
            fresh_at_globex = self.upload(self.globex, self.charlie)
            clock.shift(timedelta(hours=1, seconds=1))

            assert discard_abandoned_uploads.apply().get() == 2
            assert discard_abandoned_uploads.apply().get() == 0  # a second run finds nothing

        Status = ContactImport.Status  # noqa: N806
        uploaded, queued, cancelled = Status.UPLOADED, Status.QUEUED, Status.CANCELLED
        assert self.state(self.acme, left) == (cancelled, False)
        assert not left_file.exists()
        assert self.state(self.globex, left_at_globex) == (cancelled, False)
        assert self.state(self.acme, started) == (queued, True)
        assert self.state(self.acme, fresh) == (uploaded, True)
        assert self.state(self.globex, fresh_at_globex) == (uploaded, True)
        events = AuditEvent.objects.filter(action="contact.import_cancelled").order_by("account_id")
        assert [(e.account_id, e.target_id, e.actor_type, e.data["reason"]) for e in events] == sorted(
            [
                (self.acme.public_id, left.public_id, AuditEvent.ActorType.SYSTEM, "abandoned"),
                (self.globex.public_id, left_at_globex.public_id, AuditEvent.ActorType.SYSTEM, "abandoned"),
            ]
        )

    def test_the_wizard_shows_a_discarded_import_as_over(self):
        with time_machine.travel(T0, tick=False) as clock:
            left = self.upload(self.acme, self.alice)
            clock.shift(STALE_UPLOAD_AGE + timedelta(seconds=1))
            discard_abandoned_uploads.apply()

            self.client.force_login(self.alice)
            kwargs = {"account_id": self.acme.public_id, "import_id": left.public_id}
            mapping = self.client.get(reverse("contacts:import_mapping", kwargs=kwargs))
            progress = self.client.get(reverse("contacts:import_progress", kwargs=kwargs))

        assert mapping.status_code == 200 and mapping.context["started"]
        assert 'id="import-mapping"' not in mapping.content.decode()
        assert "cancelled before it started" in mapping.content.decode()
        assert progress.status_code == 200 and "Cancelled" in progress.content.decode()
