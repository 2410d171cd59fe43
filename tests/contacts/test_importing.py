"""CSV import: the encrypted upload, sniffing, the engine on PostgreSQL, controls and tenancy."""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.utils import timezone

from accounts.tenancy import account_scope
from audit.models import AuditEvent
from contacts import importing
from contacts.import_tasks import run_import
from contacts.importing import (
    ImportError_,
    ImportFileError,
    cancel_import,
    configure,
    pause_import,
    resume_import,
    run_contact_import,
    sniff,
    start_import,
    store_upload,
)
from contacts.models import (
    Contact,
    ContactImport,
    ContactTag,
    CustomField,
    Segment,
    SensitiveValue,
    Subscription,
    Suppression,
)
from contacts.services import create_contact
from security.fields import blind_index_for
from tests.cast import CastTestCase

CANARY = "canary.importer@leak-check.example"


class ImportTestCase(CastTestCase):
    """Each test gets its own private import directory."""

    def setUp(self) -> None:
        super().setUp()
        self.folder = Path(tempfile.mkdtemp(prefix="bluespark-imports-"))
        self.settings_override = override_settings(IMPORT_DIR=self.folder)
        self.settings_override.enable()
        self.scope = account_scope(self.acme)
        self.scope.__enter__()

    def tearDown(self) -> None:
        self.scope.__exit__(None, None, None)
        self.settings_override.disable()
        shutil.rmtree(self.folder, ignore_errors=True)
        super().tearDown()

    def upload(self, content: str | bytes, *, account=None) -> ContactImport:
        data = content.encode("utf-8") if isinstance(content, str) else content
        return store_upload(
            account or self.acme, SimpleUploadedFile("people.csv", data, "text/csv"), created_by=self.alice
        )

    def run_engine(self, contact_import: ContactImport, *, account=None, **options) -> ContactImport:
        account = account or self.acme
        with self.captureOnCommitCallbacks(execute=False):
            start_import(account, contact_import, actor=self.alice)
        return run_contact_import(account, contact_import, **options)

    def import_csv(self, content: str | bytes, mapping: dict, **options) -> ContactImport:
        contact_import = self.upload(content)
        configure(
            contact_import,
            mapping=mapping,
            update_existing=options.pop("update_existing", True),
            mailing_list=options.pop("mailing_list", None),
        )
        return self.run_engine(contact_import, **options)

    def contacts_by_email(self) -> dict[str, Contact]:
        return {contact.email: contact for contact in Contact.objects.all()}

    def report_rows(self, contact_import: ContactImport) -> list[list[str]]:
        path = importing.error_report_path(contact_import)
        self.assertIsNotNone(path)
        with open(path, encoding="utf-8", newline="") as handle:
            return list(csv.reader(handle))


class TheUploadTests(ImportTestCase):
    def test_the_stored_upload_is_encrypted_and_named_at_random(self) -> None:
        contact_import = self.upload(f"email\n{CANARY}\n" + "x" * 3_000_000)
        stored = (self.folder / contact_import.file_path).read_bytes()
        self.assertNotIn(CANARY.encode(), stored)
        self.assertNotIn(b"xxxxxxxx", stored)
        self.assertNotIn("people", contact_import.file_path)
        self.assertEqual(contact_import.file_size, len(f"email\n{CANARY}\n") + 3_000_000)
        self.assertEqual((self.folder / contact_import.file_path).stat().st_mode & 0o777, 0o600)

    def test_a_truncated_or_moved_upload_does_not_open(self) -> None:
        contact_import = self.upload(f"email\n{CANARY}\n" + "y" * 2_500_000)
        path = self.folder / contact_import.file_path
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
        with self.assertRaisesRegex(ImportFileError, "cut short|damaged"):
            list(importing._iter_frames(contact_import))
        other = self.upload(f"email\n{CANARY}\n")
        (self.folder / other.file_path).write_bytes(whole)
        with self.assertRaisesRegex(ImportFileError, "damaged or not this import's"):
            sniff(other)

    def test_a_file_over_the_size_limit_is_refused_and_not_kept(self) -> None:
        with override_settings(IMPORT_MAX_UPLOAD_BYTES=1000):
            with self.assertRaisesRegex(ImportError_, "larger than"):
                self.upload("email\n" + "a@example.com\n" * 200)
        self.assertEqual(list(self.folder.iterdir()), [])
        self.assertFalse(ContactImport.objects.exists())


class SniffTests(ImportTestCase):
    def test_it_detects_the_header_and_suggests_a_mapping(self) -> None:
        CustomField.objects.create(account=self.acme, key="shoe_size", label="Shoe size", type="number")
        contact_import = self.upload(
            "E-mail,Given name,Surname,Shoe size,Notes\nada@example.com,Ada,Lovelace,38,x\n"
            + "".join(f"p{n}@example.com,P,Q,40,y\n" for n in range(20))
        )
        preview = sniff(contact_import)
        self.assertTrue(preview.has_header)
        self.assertEqual(preview.delimiter, ",")
        self.assertEqual(preview.encoding, "utf-8")
        self.assertEqual(
            preview.suggested_mapping, {"0": "email", "1": "first_name", "2": "last_name", "3": "shoe_size", "4": ""}
        )
        self.assertEqual(len(preview.rows), 10)
        self.assertEqual(preview.rows[0], ["ada@example.com", "Ada", "Lovelace", "38", "x"])

    def test_it_reads_bom_utf16_and_other_delimiters(self) -> None:
        text = "email;first name\nada@example.com;Ada\nbob@example.com;Bob\n"
        cases = {
            "utf-8 bom": (b"\xef\xbb\xbf" + text.encode("utf-8"), ";"),
            "utf-16 le": (b"\xff\xfe" + text.encode("utf-16-le"), ";"),
            "utf-16 be": (b"\xfe\xff" + text.encode("utf-16-be"), ";"),
            "tab": (text.replace(";", "\t").encode(), "\t"),
        }
        for label, (data, delimiter) in cases.items():
            with self.subTest(label):
                preview = sniff(self.upload(data))
                self.assertEqual(preview.delimiter, delimiter)
                self.assertTrue(preview.has_header)
                self.assertEqual(preview.columns, ["email", "first name"])
                self.assertEqual(preview.rows[0], ["ada@example.com", "Ada"])

    def test_without_a_header_it_finds_the_email_column(self) -> None:
        preview = sniff(self.upload("Ada,ada@example.com\nBob,bob@example.com\n"))
        self.assertFalse(preview.has_header)
        self.assertEqual(preview.suggested_mapping, {"0": "", "1": "email"})
        self.assertEqual(preview.columns, ["Column 1", "Column 2"])
        self.assertEqual(len(preview.rows), 2)

    def test_hostile_files_get_a_clear_error(self) -> None:
        cases = {
            "NUL byte": (b"email\nada@exa\x00mple.com\n", "NUL"),
            "UTF-16 without BOM": ("email\nada@example.com\n".encode("utf-16-le"), "UTF-16 without a byte-order mark"),
            "Latin-1": ("email,name\nada@example.com,Zoë\n".encode("latin-1"), "not UTF-8"),
            "UTF-32": (b"\xff\xfe\x00\x00" + "email\n".encode("utf-32-le"), "UTF-32"),
            "enormous line": (b"email\n" + b"a" * 200_000 + b"\n", "Line 2 is longer than 64 KiB"),
            "too many columns": (b"email\n" + b",".join([b"x"] * 500) + b"\n", "Line 2 has 500 columns"),
            "empty": (b"", "empty"),
        }
        for label, (data, message) in cases.items():
            with self.subTest(label):
                with self.assertRaisesRegex(ImportFileError, message):
                    sniff(self.upload(data))


class ConfigureTests(ImportTestCase):
    def test_the_mapping_needs_exactly_one_email_column_and_known_fields(self) -> None:
        contact_import = self.upload("email,other,name\nada@example.com,x,Ada\n")
        refused = [
            {"1": "first_name"},
            {"0": "email", "1": "email"},
            {"0": "email", "1": "favourite_colour"},
            {"0": "email", "1": "first_name", "2": "first_name"},
            {"0": "email", "7": "last_name"},
        ]
        for mapping in refused:
            with self.subTest(mapping):
                with self.assertRaises(ImportError_):
                    configure(contact_import, mapping=mapping, update_existing=True, mailing_list=None)
        with self.assertRaisesRegex(ImportError_, "Unknown list"):
            configure(contact_import, mapping={"0": "email"}, update_existing=True, mailing_list=self.globex_list)
        configure(
            contact_import,
            mapping={0: "email", 1: "ignore", 2: "first_name"},
            update_existing=False,
            mailing_list=self.acme_list,
            consent_source="form",
        )
        contact_import.refresh_from_db()
        self.assertEqual(contact_import.mapping["columns"], {"0": "email", "1": "", "2": "first_name"})
        self.assertTrue(contact_import.mapping["has_header"])
        self.assertFalse(contact_import.update_existing)
        self.assertEqual(contact_import.consent_source, "form")


class EngineTests(ImportTestCase):
    def test_it_imports_names_tags_custom_fields_and_list_consent(self) -> None:
        self.acme_list.consent_text = "Yes, send me the Acme newsletter."
        self.acme_list.save()
        shoe = CustomField.objects.create(account=self.acme, key="shoe_size", label="Shoe size", type="number")
        CustomField.objects.create(account=self.acme, key="member", label="Member", type="boolean")
        secret = CustomField.objects.create(account=self.acme, key="passport", label="Passport", sensitive=True)
        content = (
            "Email,First name,Last name,Tags,Shoe size,Member,Passport\n"
            ' Ada@Example.COM ,Ada,Love\x07lace,"vip, early",38,yes,P123\n'
            "bob@example.com,Bob,,,41.5,no,\n"
            "=cmd|' /C calc'!A0@example.com,x,y,,,,\n"
            'carol@example.com,=HYPERLINK("http://evil"),+1-2,vip,,,\n'
        )
        contact_import = self.upload(content)
        configure(
            contact_import,
            mapping={
                "0": "email",
                "1": "first_name",
                "2": "last_name",
                "3": "tags",
                "4": shoe.key,
                "5": "member",
                "6": secret.key,
            },
            update_existing=True,
            mailing_list=self.acme_list,
        )
        result = self.run_engine(contact_import)
        self.assertEqual(result.status, ContactImport.Status.DONE, result.error)
        self.assertEqual((result.rows_total, result.rows_done, result.created, result.invalid), (4, 4, 3, 1))
        people = self.contacts_by_email()
        self.assertEqual(set(people), {"ada@example.com", "bob@example.com", "carol@example.com"})
        ada = people["ada@example.com"]
        self.assertEqual((ada.first_name, ada.last_name), ("Ada", "Lovelace"))
        self.assertEqual(ada.attributes, {"shoe_size": 38, "member": True})
        self.assertEqual(ada.source, Contact.Source.IMPORT)
        self.assertEqual(sorted(ada.tags.values_list("name", flat=True)), ["early", "vip"])
        self.assertEqual(people["bob@example.com"].attributes, {"shoe_size": 41.5, "member": False})
        # Formulas are imported as text: neutralising them is the export's job.
        self.assertEqual(people["carol@example.com"].first_name, '=HYPERLINK("http://evil")')
        self.assertEqual(people["carol@example.com"].last_name, "+1-2")
        passport = SensitiveValue.objects.get(contact=ada)
        self.assertEqual(passport.value, "P123")
        self.assertFalse(SensitiveValue.objects.filter(contact=people["bob@example.com"]).exists())
        subscriptions = Subscription.objects.filter(mailing_list=self.acme_list)
        self.assertEqual(subscriptions.count(), 3)
        for subscription in subscriptions:
            self.assertEqual(subscription.status, Subscription.Status.SUBSCRIBED)
            self.assertEqual(subscription.consent_source, Contact.Source.IMPORT)
            self.assertEqual(subscription.consent_text, "Yes, send me the Acme newsletter.")
            self.assertIsNotNone(subscription.consent_at)
        self.assertEqual(ContactTag.objects.filter(contact=people["carol@example.com"]).count(), 1)

    def test_existing_contacts_are_updated_or_skipped_as_chosen(self) -> None:
        kept = create_contact(self.acme, email="ada@example.com", first_name="Ada", last_name="Byron")
        content = "email,first,last\nADA@example.com,Augusta,\nnew@example.com,New,Person\n"
        skipped = self.import_csv(content, {"0": "email", "1": "first_name", "2": "last_name"}, update_existing=False)
        self.assertEqual((skipped.created, skipped.updated, skipped.skipped), (1, 0, 1))
        kept.refresh_from_db()
        self.assertEqual((kept.first_name, kept.last_name), ("Ada", "Byron"))

        updated = self.import_csv(content, {"0": "email", "1": "first_name", "2": "last_name"})
        self.assertEqual((updated.created, updated.updated, updated.skipped), (0, 2, 0))
        ada = Contact.objects.get(pk=kept.pk)
        # An empty cell leaves the stored value; the row keeps its id, so its values still open.
        self.assertEqual((ada.public_id, ada.first_name, ada.last_name), (kept.public_id, "Augusta", "Byron"))
        self.assertEqual(ada.email, "ada@example.com")
        self.assertEqual(Contact.objects.count(), 2)

    def test_the_worker_process_gets_its_gil_switch_interval_back(self) -> None:
        before = sys.getswitchinterval()
        assert before != importing.GIL_SWITCH_SECONDS
        result = self.import_csv("email\na@example.com\nb@example.com\n", {"0": "email"}, chunk_rows=1)
        self.assertEqual((result.status, result.created), (ContactImport.Status.DONE, 2))
        self.assertEqual(sys.getswitchinterval(), before)

    def test_a_skipped_existing_contact_gets_no_list_tag_or_value_from_the_file(self) -> None:
        kept = create_contact(self.acme, email="ada@example.com", first_name="Ada")
        content = "email,first,tags\nada@example.com,Augusta,vip\nnew@example.com,New,vip\n"
        mapping = {"0": "email", "1": "first_name", "2": "tags"}
        result = self.import_csv(content, mapping, update_existing=False, mailing_list=self.acme_list)

        self.assertEqual((result.created, result.updated, result.skipped), (1, 0, 1))
        people = self.contacts_by_email()
        self.assertEqual(people["ada@example.com"].first_name, "Ada")
        members = Subscription.objects.filter(mailing_list=self.acme_list).values_list("contact_id", flat=True)
        self.assertEqual(list(members), [people["new@example.com"].pk])
        self.assertFalse(ContactTag.objects.filter(contact=kept).exists())
        self.assertTrue(ContactTag.objects.filter(contact=people["new@example.com"]).exists())

    def test_a_finished_import_makes_the_segments_cached_counts_stale(self) -> None:
        segment = Segment.objects.create(
            account=self.acme, name="All", definition={}, cached_count=0, counted_at=timezone.now()
        )
        self.import_csv("email\nann@example.com\n", {"0": "email"})
        segment.refresh_from_db()
        self.assertEqual((segment.cached_count, segment.counted_at), (0, None))  # shown while recounted

    def test_an_import_with_no_refused_row_keeps_no_report(self) -> None:
        result = self.import_csv("email\nann@example.com\nbob@example.com\n", {"0": "email"})

        self.assertEqual((result.status, result.created, result.invalid, result.duplicates), ("done", 2, 0, 0))
        self.assertEqual(result.error_report_path, "")
        self.assertIsNone(importing.error_report_path(result))
        self.assertEqual(list(self.folder.iterdir()), [])  # neither the upload nor an empty report stays

    def test_duplicates_invalid_rows_and_suppressed_addresses_are_counted_and_reported(self) -> None:
        Suppression.objects.create(
            account=self.acme,
            email_index=blind_index_for(self.acme.public_id, "email", "gone@example.com"),
            reason=Suppression.Reason.UNSUBSCRIBED,
        )
        content = (
            "email,first name\n"
            "ada@example.com,Ada\n"
            "not-an-address,Secret Name\n"
            "ADA@EXAMPLE.COM,Ada again\n"
            ",Nobody\n"
            "gone@example.com,Gone\n"
            "bob@example.com,Bob\n"
            "bob@@example.com,Bob\n"
        )
        result = self.import_csv(content, {"0": "email", "1": "first_name"}, chunk_rows=3)
        self.assertEqual(result.status, ContactImport.Status.DONE)
        self.assertEqual(
            (result.rows_total, result.rows_done, result.created, result.invalid, result.duplicates, result.suppressed),
            (7, 7, 2, 3, 1, 1),
        )
        self.assertEqual(set(self.contacts_by_email()), {"ada@example.com", "bob@example.com"})
        rows = self.report_rows(result)
        self.assertEqual(rows[0], ["line", "column", "field", "reason"])
        self.assertEqual(
            rows[1:],
            [
                ["3", "1", "email", "not a valid email address"],
                ["4", "1", "email", "duplicate of an earlier row in the file"],
                ["5", "1", "email", "no email address"],
                ["8", "1", "email", "not a valid email address"],
            ],
        )
        report = importing.error_report_path(result).read_text()
        for value in ("not-an-address", "Secret Name", "bob@@", "Ada"):
            self.assertNotIn(value, report)

    def test_files_in_other_encodings_and_delimiters_without_a_header_import(self) -> None:
        body = "ada@example.com;Ada\nbob@example.com;Bob\n"
        for label, data in {
            "utf-16 le": b"\xff\xfe" + body.encode("utf-16-le"),
            "utf-16 be": b"\xfe\xff" + body.encode("utf-16-be"),
            "utf-8 bom, tab": b"\xef\xbb\xbf" + body.replace(";", "\t").encode(),
        }.items():
            with self.subTest(label):
                Contact.objects.all().delete()
                result = self.import_csv(data, {"0": "email", "1": "first_name"})
                self.assertEqual(result.status, ContactImport.Status.DONE, result.error)
                self.assertFalse(result.mapping["has_header"])
                self.assertEqual(result.created, 2)
                self.assertEqual(self.contacts_by_email()["ada@example.com"].first_name, "Ada")

    def test_a_hostile_file_fails_with_a_clear_error_and_nothing_written(self) -> None:
        # Past the first frame (1 MiB), which the preview checked: only the engine's first pass sees the rest.
        good = "".join(f"p{n}@example.com\n" for n in range(70_000))
        self.assertGreater(len(good), importing.FRAME_BYTES)
        cases = {
            "NUL byte": (f"email\n{good}bad\x00@example.com\n", "Line 70002 contains a NUL byte"),
            "enormous line": (f"email\n{good}" + "a" * 100_000 + "\n", "Line 70002 is longer than 64 KiB"),
            "too many columns": (f"email\n{good}" + ",".join(["x"] * 300) + "\n", "Line 70002 has 300 columns"),
            "bad UTF-8 further on": (
                f"email\n{good}".encode() + b"caf\xe9@example.com\n",
                "not valid text in its encoding after line",
            ),
        }
        for label, (data, message) in cases.items():
            with self.subTest(label):
                contact_import = self.upload(data)
                configure(contact_import, mapping={"0": "email"}, update_existing=True, mailing_list=None)
                result = self.run_engine(contact_import)
                self.assertEqual(result.status, ContactImport.Status.FAILED)
                self.assertRegex(result.error, message)
                self.assertEqual(result.rows_done, 0)
                self.assertFalse(Contact.objects.exists())
                self.assertEqual(result.file_path, "")
                self.assertFalse((self.folder / contact_import.file_path).exists())

    def test_the_upload_is_deleted_when_the_import_ends_and_events_are_recorded(self) -> None:
        contact_import = self.upload(f"email\n{CANARY}\n")
        upload_path = self.folder / contact_import.file_path
        configure(contact_import, mapping={"0": "email"}, update_existing=True, mailing_list=None)
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            start_import(self.acme, contact_import, actor=self.alice)
        self.assertEqual(len(callbacks), 1)
        run_import.apply(args=[self.acme.public_id, contact_import.public_id])
        contact_import.refresh_from_db()
        self.assertEqual(contact_import.status, ContactImport.Status.DONE)
        self.assertFalse(upload_path.exists())
        self.assertEqual(contact_import.file_path, "")
        events = AuditEvent.objects.filter(account_id=self.acme.public_id, target_id=contact_import.public_id)
        self.assertEqual(
            list(events.order_by("sequence").values_list("action", flat=True)),
            ["contact.import_started", "contact.import_finished"],
        )
        finished = events.get(action="contact.import_finished")
        self.assertEqual(finished.data["created"], 1)
        self.assertEqual(finished.data["status"], "done")
        self.assertEqual(events.get(action="contact.import_started").actor_id, self.alice.public_id)

    def test_the_portable_path_gives_the_same_result(self) -> None:
        """The SQLite fallback (model instances in batches), run here on PostgreSQL."""
        create_contact(self.acme, email="ada@example.com", first_name="Ada", last_name="Byron")
        create_contact(self.acme, email="una@example.com", first_name="Una", status="unsubscribed")
        content = (
            "email,first,tags\nada@example.com,Augusta,vip\nnew@example.com,New,vip\nnew@example.com,Dup,\n"
            "una@example.com,Una B,\n"
        )
        contact_import = self.upload(content)
        configure(
            contact_import,
            mapping={"0": "email", "1": "first_name", "2": "tags"},
            update_existing=True,
            mailing_list=self.acme_list,
        )
        with self.captureOnCommitCallbacks(execute=False):
            start_import(self.acme, contact_import, actor=self.alice)
        plan = importing._Plan.of(contact_import)
        ContactImport.objects.filter(pk=contact_import.pk).update(status=ContactImport.Status.RUNNING)
        writer = importing._PortableWriter(self.acme, contact_import, plan)
        records = importing._records(importing._open_text(contact_import, plan.encoding), plan.delimiter)
        next(records)
        chunk = importing._parse_chunk(records, plan, 100, self.acme.public_id, set())
        writer.write(chunk, rows_done_before=0)
        contact_import.refresh_from_db()
        self.assertEqual((contact_import.created, contact_import.updated, contact_import.duplicates), (1, 2, 1))
        people = self.contacts_by_email()
        self.assertEqual(people["ada@example.com"].first_name, "Augusta")
        self.assertEqual(people["ada@example.com"].last_name, "Byron")
        # Una is updated but stays unsubscribed, and off the list: an import does not give consent back.
        self.assertEqual(
            (people["una@example.com"].first_name, people["una@example.com"].status), ("Una B", "unsubscribed")
        )
        members = Subscription.objects.filter(mailing_list=self.acme_list).values_list("contact__public_id", flat=True)
        self.assertEqual(
            sorted(members), sorted([people["ada@example.com"].public_id, people["new@example.com"].public_id])
        )
        self.assertEqual(ContactTag.objects.count(), 2)


class ControlTests(ImportTestCase):
    def many(self, count: int) -> str:
        rows = [f"person{n % (count - 3)}@example.com,P{n}" for n in range(count)]
        return "email,first\n" + "\n".join(rows) + "\n"

    def test_a_paused_import_resumes_where_it_stopped_without_counting_twice(self) -> None:
        content = self.many(25)  # the last three rows repeat the first three
        contact_import = self.upload(content)
        configure(contact_import, mapping={"0": "email", "1": "first_name"}, update_existing=True, mailing_list=None)
        first = self.run_engine(contact_import, chunk_rows=10, max_chunks=1)
        self.assertEqual((first.status, first.rows_done, first.created), (ContactImport.Status.RUNNING, 10, 10))
        pause_import(self.acme, contact_import)
        # A run while paused does nothing.
        self.assertEqual(run_contact_import(self.acme, contact_import, chunk_rows=10).rows_done, 10)
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            resume_import(self.acme, contact_import)
        self.assertEqual(len(callbacks), 1)
        result = run_contact_import(self.acme, contact_import, chunk_rows=10)
        self.assertEqual(result.status, ContactImport.Status.DONE)
        self.assertEqual(
            (result.rows_total, result.rows_done, result.created, result.updated, result.duplicates),
            (25, 25, 22, 0, 3),
        )
        self.assertEqual(Contact.objects.count(), 22)
        duplicate_lines = [row[0] for row in self.report_rows(result)[1:]]
        self.assertEqual(duplicate_lines, ["24", "25", "26"])

    def test_a_stale_second_run_does_not_write_a_chunk_twice(self) -> None:
        contact_import = self.upload(self.many(25))
        configure(contact_import, mapping={"0": "email", "1": "first_name"}, update_existing=True, mailing_list=None)
        self.run_engine(contact_import, chunk_rows=10, max_chunks=1)
        stale = ContactImport.objects.get(pk=contact_import.pk)
        run_contact_import(self.acme, contact_import, chunk_rows=10, max_chunks=1)
        plan = importing._Plan.of(stale)
        writer = importing._PostgresWriter(self.acme, stale, plan)
        with self.assertRaises(importing._Stop):
            writer.write(importing._Chunk(rows=10), rows_done_before=10)
        contact_import.refresh_from_db()
        self.assertEqual(contact_import.rows_done, 20)

    def test_cancel_stops_the_import_and_deletes_the_file(self) -> None:
        contact_import = self.upload(self.many(25))
        path = self.folder / contact_import.file_path
        configure(contact_import, mapping={"0": "email", "1": "first_name"}, update_existing=True, mailing_list=None)
        self.run_engine(contact_import, chunk_rows=10, max_chunks=1)
        cancel_import(self.acme, contact_import, actor=self.alice)
        self.assertFalse(path.exists())
        result = run_contact_import(self.acme, contact_import, chunk_rows=10)
        self.assertEqual((result.status, result.rows_done), (ContactImport.Status.CANCELLED, 10))
        self.assertEqual(Contact.objects.count(), 10)
        cancelled = AuditEvent.objects.get(action="contact.import_cancelled", target_id=contact_import.public_id)
        self.assertEqual(cancelled.data["rows_done"], 10)
        self.assertEqual(cancelled.actor_id, self.alice.public_id)
        with self.assertRaises(ImportError_):
            cancel_import(self.acme, contact_import)
        with self.assertRaises(ImportError_):
            resume_import(self.acme, contact_import)

    def test_a_running_import_sees_a_cancel_at_its_next_chunk(self) -> None:
        contact_import = self.upload(self.many(25))
        configure(contact_import, mapping={"0": "email", "1": "first_name"}, update_existing=True, mailing_list=None)
        self.run_engine(contact_import, chunk_rows=10, max_chunks=1)
        running = ContactImport.objects.get(pk=contact_import.pk)
        plan = importing._Plan.of(running)
        ContactImport.objects.filter(pk=contact_import.pk).update(status=ContactImport.Status.CANCELLED)
        with self.assertRaises(importing._Stop):
            importing._PostgresWriter(self.acme, running, plan).write(importing._Chunk(rows=10), rows_done_before=10)


class TenancyTests(ImportTestCase):
    def test_another_accounts_import_cannot_touch_this_account(self) -> None:
        ada = create_contact(self.acme, email="ada@example.com", first_name="Ada")
        with account_scope(self.globex):
            theirs = self.upload("email,first\nada@example.com,Mallory\n", account=self.globex)
            configure(theirs, mapping={"0": "email", "1": "first_name"}, update_existing=True, mailing_list=None)
            with self.assertRaises(ImportError_):
                start_import(self.acme, theirs)
            with self.captureOnCommitCallbacks(execute=False):
                start_import(self.globex, theirs, actor=self.charlie)
        # Named under Acme, Globex's import is not found and nothing happens.
        run_import.apply(args=[self.acme.public_id, theirs.public_id])
        with self.assertRaises(ImportError_):
            pause_import(self.acme, theirs)
        with self.assertRaises(ImportError_):
            cancel_import(self.acme, theirs)
        self.assertIsNone(importing.access_contact_import(self.acme, theirs.public_id))
        run_import.apply(args=[self.globex.public_id, theirs.public_id])
        ada.refresh_from_db()
        self.assertEqual(ada.first_name, "Ada")
        self.assertEqual(Contact.objects.count(), 1)
        with account_scope(self.globex):
            self.assertEqual([c.first_name for c in Contact.objects.all()], ["Mallory"])
            theirs.refresh_from_db()
            self.assertEqual((theirs.status, theirs.created), (ContactImport.Status.DONE, 1))

    def test_a_file_sealed_for_one_account_does_not_open_for_another(self) -> None:
        ours = self.upload(f"email\n{CANARY}\n")
        with account_scope(self.globex):
            theirs = self.upload("email\nx@example.com\n", account=self.globex)
        (self.folder / theirs.file_path).write_bytes((self.folder / ours.file_path).read_bytes())
        with account_scope(self.globex), self.assertRaisesRegex(ImportFileError, "not this import's"):
            sniff(theirs)
