"""The import wizard's pages: upload, mapping and preview, start, progress, controls, the error report, tenancy."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from accounts.tenancy import account_scope
from audit.models import AuditEvent
from contacts import importing
from contacts.models import Contact, ContactImport
from tests.cast import CastTestCase

PEOPLE = "Email Address,Given Name,Shoe size\nann@example.com,Ann,38\nnot-an-address,Bo,41\nann@example.com,Ann,38\n"


class ImportPagesTests(CastTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.folder = Path(tempfile.mkdtemp(prefix="bluespark-import-pages-"))
        self.settings_override = override_settings(IMPORT_DIR=self.folder)
        self.settings_override.enable()
        self.client.force_login(self.alice)

    def tearDown(self) -> None:
        self.settings_override.disable()
        shutil.rmtree(self.folder, ignore_errors=True)
        super().tearDown()

    def url(self, name: str, account=None, **kwargs) -> str:
        return reverse(f"contacts:{name}", kwargs={"account_id": (account or self.acme).public_id, **kwargs})

    def upload(self, content: bytes | str = PEOPLE):
        data = content.encode() if isinstance(content, str) else content
        return self.client.post(self.url("import_upload"), {"file": SimpleUploadedFile("people.csv", data, "text/csv")})

    def uploaded(self, content: bytes | str = PEOPLE) -> ContactImport:
        response = self.upload(content)
        assert response.status_code == 302, response.content
        with account_scope(self.acme):
            return ContactImport.objects.order_by("-created_at", "-id").first()

    def start(self, contact_import: ContactImport, **fields) -> object:
        data = {"has_header": "on", "column-0": "email", "column-1": "first_name", "column-2": "", **fields}
        with self.captureOnCommitCallbacks(execute=False):
            return self.client.post(self.url("import_mapping", import_id=contact_import.public_id), data)

    def run_engine(self, contact_import: ContactImport) -> ContactImport:
        with account_scope(self.acme):
            return importing.run_contact_import(self.acme, contact_import)

    def test_the_contacts_page_links_to_the_import(self) -> None:
        page = self.client.get(self.url("contact_index")).content.decode()
        assert f'href="{self.url("import_index")}"' in page

    def test_an_upload_leads_to_the_mapping_with_the_detected_header_and_suggestions(self) -> None:
        contact_import = self.uploaded()
        response = self.client.get(self.url("import_mapping", import_id=contact_import.public_id))
        page = response.content.decode()
        assert response.status_code == 200
        assert 'name="has_header" checked' in page
        assert "with a header row" in page and "comma separated" in page
        assert '<option value="email" selected>' in page
        assert '<option value="first_name" selected>' in page
        assert page.count(" selected>") == 4  # email, first name, the ignored shoe size, the consent source
        assert "<td>not-an-address</td>" in page and "<td>Email Address</td>" not in page

    def test_a_hostile_file_is_refused_with_a_clear_error_and_not_kept(self) -> None:
        response = self.upload(b"email\x00,name\nann@example.com\x00,Ann\n")
        assert response.status_code == 400
        assert "NUL" in response.content.decode() or "binary" in response.content.decode()
        assert list(self.folder.glob("*.upload")) == []
        response = self.client.post(self.url("import_upload"), {})
        assert response.status_code == 400 and "Choose a CSV file" in response.content.decode()

    def test_starting_queues_the_import_and_records_it(self) -> None:
        contact_import = self.uploaded()
        with account_scope(self.acme):
            vip = self.acme_list
        response = self.start(contact_import, existing="skip", list=vip.public_id, consent_source="manual")
        assert response.status_code == 302
        assert response["Location"] == self.url("import_progress", import_id=contact_import.public_id)
        contact_import.refresh_from_db()
        assert contact_import.status == ContactImport.Status.QUEUED
        assert contact_import.update_existing is False and contact_import.mailing_list_id == vip.pk
        assert contact_import.consent_source == Contact.Source.MANUAL
        assert contact_import.mapping["columns"] == {"0": "email", "1": "first_name", "2": ""}
        event = AuditEvent.objects.get(account_id=self.acme.public_id, action="contact.import_started")
        assert event.actor_id == self.alice.public_id
        page = self.client.get(self.url("import_progress", import_id=contact_import.public_id)).content.decode()
        fragment = self.url("import_progress_fragment", import_id=contact_import.public_id)
        assert f'hx-get="{fragment}" hx-trigger="every 2s"' in page
        assert "<script" not in page.split("<body", 1)[1]

    def test_a_mapping_without_an_email_column_is_refused_and_nothing_starts(self) -> None:
        contact_import = self.uploaded()
        response = self.start(contact_import, **{"column-0": ""})
        assert response.status_code == 400
        assert "Map exactly one column to the email address." in response.content.decode()
        contact_import.refresh_from_db()
        assert contact_import.status == ContactImport.Status.UPLOADED
        response = self.start(contact_import, list="lst_" + "a" * 26)
        assert response.status_code == 400 and "Choose one of your lists." in response.content.decode()

    def test_after_the_run_the_progress_page_shows_the_summary_and_stops_polling(self) -> None:
        contact_import = self.uploaded()
        self.start(contact_import)
        self.run_engine(contact_import)
        response = self.client.get(self.url("import_progress_fragment", import_id=contact_import.public_id))
        page = response.content.decode()
        assert "hx-get" not in page
        assert '<progress max="3" value="3">' in page
        assert "<dt>Created</dt><dd>1</dd>" in page
        assert "<dt>Invalid</dt><dd>1</dd>" in page
        assert "<dt>Duplicates within the file</dt><dd>1</dd>" in page
        assert "Pause" not in page and "Cancel the import" not in page
        assert self.url("import_error_report", import_id=contact_import.public_id) in page
        index = self.client.get(self.url("import_index")).content.decode()
        assert "Done" in index

    def test_pause_resume_and_cancel(self) -> None:
        contact_import = self.uploaded()
        self.start(contact_import)
        page = self.client.get(self.url("import_progress", import_id=contact_import.public_id)).content.decode()
        assert self.url("import_pause", import_id=contact_import.public_id) in page
        self.client.post(self.url("import_pause", import_id=contact_import.public_id))
        contact_import.refresh_from_db()
        assert contact_import.status == ContactImport.Status.PAUSED
        page = self.client.get(self.url("import_progress", import_id=contact_import.public_id)).content.decode()
        assert self.url("import_resume", import_id=contact_import.public_id) in page and "hx-get" not in page
        with self.captureOnCommitCallbacks(execute=False):
            self.client.post(self.url("import_resume", import_id=contact_import.public_id))
        contact_import.refresh_from_db()
        assert contact_import.status == ContactImport.Status.QUEUED
        response = self.client.post(self.url("import_cancel", import_id=contact_import.public_id))
        assert response.status_code == 302
        contact_import.refresh_from_db()
        assert contact_import.status == ContactImport.Status.CANCELLED
        assert list(self.folder.glob("*.upload")) == []
        assert AuditEvent.objects.filter(account_id=self.acme.public_id, action="contact.import_cancelled").exists()
        again = self.client.post(self.url("import_pause", import_id=contact_import.public_id), follow=True)
        assert "Only a queued or running import can be paused." in again.content.decode()
        assert self.client.get(self.url("import_pause", import_id=contact_import.public_id)).status_code == 405

    def test_the_error_report_downloads_for_acme_and_is_404_for_globex(self) -> None:
        contact_import = self.uploaded()
        self.start(contact_import)
        self.run_engine(contact_import)
        url = self.url("import_error_report", import_id=contact_import.public_id)
        response = self.client.get(url)
        assert response.status_code == 200
        assert response["Content-Disposition"].startswith("attachment;")
        assert response["Content-Type"].startswith("text/csv")
        body = b"".join(response.streaming_content).decode()
        assert "not-an-address" not in body and "3," in body
        self.client.force_login(self.charlie)
        assert self.client.get(url).status_code == 404
        through_globex = self.url("import_error_report", account=self.globex, import_id=contact_import.public_id)
        assert self.client.get(through_globex).status_code == 404
        for name in ("import_mapping", "import_progress", "import_progress_fragment"):
            assert (
                self.client.get(self.url(name, account=self.globex, import_id=contact_import.public_id)).status_code
                == 404
            )
        assert (
            self.client.post(
                self.url("import_cancel", account=self.globex, import_id=contact_import.public_id)
            ).status_code
            == 404
        )

    def test_an_import_that_refused_no_row_offers_no_error_report(self) -> None:
        contact_import = self.uploaded("Email Address,Given Name,Shoe size\nann@example.com,Ann,38\n")
        self.start(contact_import)
        self.run_engine(contact_import)
        url = self.url("import_error_report", import_id=contact_import.public_id)
        page = self.client.get(self.url("import_progress", import_id=contact_import.public_id)).content.decode()
        assert "<dt>Created</dt><dd>1</dd>" in page
        assert url not in page
        assert self.client.get(url).status_code == 404

    def test_an_import_that_never_ran_has_no_report_to_download(self) -> None:
        contact_import = self.uploaded()
        assert self.client.get(self.url("import_error_report", import_id=contact_import.public_id)).status_code == 404

    def test_a_viewer_gets_403_on_every_page(self) -> None:
        contact_import = self.uploaded()
        self.client.force_login(self.vic)
        identified = ("mapping", "progress", "progress_fragment", "pause", "resume", "cancel", "error_report")
        urls = [self.url("import_index"), self.url("import_upload")]
        urls += [self.url(f"import_{name}", import_id=contact_import.public_id) for name in identified]
        for url in urls:
            assert self.client.get(url).status_code == 403, url
            assert self.client.post(url).status_code == 403, url
        contact_import.refresh_from_db()
        assert contact_import.status == ContactImport.Status.UPLOADED
        page = self.client.get(self.url("contact_index")).content.decode()
        assert self.url("import_index") not in page
