"""The CSV import wizard in a real Chromium, the import run by a real Celery worker, watched through htmx."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings
from django.urls import reverse
from playwright.sync_api import Locator, Page, expect

from accounts.tenancy import account_scope
from contacts.models import Contact, ContactImport, CustomField
from contacts.selectors import contact_import_list, contact_with_email, subscriptions_of_contact, tags_of_contact
from contacts.services import create_contact
from tests.cast import PASSWORD, Cast, build_cast
from tests.support.browser import chromium_page
from tests.support.live import committed_data, live_server
from tests.support.worker import celery_worker, declare_task_queues, worker_output

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.slow]

# A worker boots, takes the task, and htmx asks every two seconds: a generous bound to wait within, not a measure.
IMPORT_DONE_TIMEOUT_MS = 90_000

# A header the wizard recognises (the custom field by its label); ada is already in Acme; ben is new with a tag;
# an invalid address; ben again in capitals (a duplicate within the file); cleo with two tags.
PEOPLE_WITH_A_HEADER = (
    "Email,First name,Shoe size,Tags\n"
    "ada@example.com,Augusta,37,\n"
    "ben@example.com,Ben,44,vip\n"
    "not-an-address,Cy,40,\n"
    "BEN@example.com,Ben again,45,\n"
    'cleo@example.com,Cleo,39,"vip, early"\n'
)
# No header, semicolons: dora is already in Acme, eve and fay are not.
PEOPLE_WITHOUT_A_HEADER = "dora@example.com;Dora\neve@example.com;Eve\nfay@example.com;Fay\n"


def log_in(page: Page, base_url: str, email: str) -> None:
    page.goto(base_url + reverse("accounts:login"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Acme", exact=True)).to_be_visible()


def upload(page: Page, name: str, content: str) -> None:
    page.get_by_role("navigation", name="Acme").get_by_role("link", name="Contacts").click()
    page.get_by_role("link", name="Import", exact=True).click()
    expect(page.get_by_role("heading", name="Import contacts")).to_be_visible()
    page.get_by_label("CSV file").set_input_files({"name": name, "mimeType": "text/csv", "buffer": content.encode()})
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("heading", name="Map the columns")).to_be_visible()


def progress_section(page: Page) -> Locator:
    return page.locator("#import-progress")


def summary(page: Page) -> dict[str, str]:
    """The summary's figures by their label, as the page shows them."""
    facts = progress_section(page).locator(".import-summary")
    return dict(zip(facts.locator("dt").all_inner_texts(), facts.locator("dd").all_inner_texts(), strict=True))


def wait_until_done(page: Page, worker: subprocess.Popen[str]) -> None:
    """Wait for htmx to bring the finished state; on a timeout, say what the page and the worker said."""
    try:
        expect(progress_section(page).locator(".status")).to_have_text("Done", timeout=IMPORT_DONE_TIMEOUT_MS)
    except AssertionError:
        shown = progress_section(page).inner_text()
        pytest.fail(f"the import did not finish; the page shows:\n{shown}\nthe worker said:\n{worker_output(worker)}")


@pytest.fixture(scope="class")
def acme_live(request: pytest.FixtureRequest, django_db_setup: None, django_db_blocker) -> Iterator[None]:
    """The cast, a custom field and three contacts, committed once for the class; a live server; an import folder."""
    cls = request.cls
    cls.folder = Path(tempfile.mkdtemp(prefix="bluespark-browser-imports-"))
    try:
        with committed_data(django_db_blocker), override_settings(IMPORT_DIR=cls.folder):
            build_cast(cls)
            with account_scope(cls.acme):
                CustomField.objects.create(account=cls.acme, key="shoe_size", label="Shoe size", type="number")
                cls.ada = create_contact(cls.acme, email="ada@example.com", first_name="Ada", last_name="Byron")
                cls.dora = create_contact(cls.acme, email="dora@example.com", first_name="Dorothy")
            with account_scope(cls.globex):
                # The same address in another account: an import in Acme never reaches it.
                cls.globex_ada = create_contact(cls.globex, email="ada@example.com", first_name="Ada of Globex")
            with live_server() as cls.base_url:
                yield
    finally:
        shutil.rmtree(cls.folder, ignore_errors=True)


# Each test reads the database only outside Playwright's calls (tests/conftest.py), inside the transaction
# pytest-django gives it; the cast and what the server and the worker write are committed.
@pytest.mark.django_db
@pytest.mark.usefixtures("acme_live")
class TestImportWizard(Cast):
    base_url: str
    folder: Path

    def start_worker(self):
        """A worker that reads the uploads where this class's server stores them."""
        return celery_worker(env={"BLUESPARK_IMPORT_DIR": str(self.folder)})

    def test_an_editor_imports_a_file_with_a_header_into_a_list_and_watches_it_finish(self) -> None:
        with chromium_page() as (page, problems):
            log_in(page, self.base_url, self.bob.email)
            upload(page, "people.csv", PEOPLE_WITH_A_HEADER)

            # The header row is recognised, each column gets its field (the custom one by its label),
            # and the preview shows the rows under the header.
            expect(page.get_by_text("Detected: utf-8, comma separated, 4 columns, with a header row.")).to_be_visible()
            expect(page.get_by_label("The first row names the columns")).to_be_checked()
            expect(page.get_by_label("Email", exact=True)).to_have_value("email")
            expect(page.get_by_label("First name", exact=True)).to_have_value("first_name")
            expect(page.get_by_label("Shoe size", exact=True)).to_have_value("shoe_size")
            expect(page.get_by_label("Tags", exact=True)).to_have_value("tags")
            preview = page.locator("#import-mapping tbody tr")
            expect(preview).to_have_count(5)
            expect(preview.first.locator("td")).to_have_text(["ada@example.com", "Augusta", "37", ""])
            expect(preview.nth(2).locator("td").first).to_have_text("not-an-address")

            expect(page.get_by_label("Update them with the file's values")).to_be_checked()
            page.get_by_label("Add the contacts to the list").select_option(label="Acme customers")
            page.get_by_label("How these people gave their consent").select_option(label="Subscribe form")
            # No worker yet: the task waits in the broker, so the page is seen queued and polling.
            declare_task_queues()
            page.get_by_role("button", name="Start the import").click()

            expect(page.get_by_role("heading", name="Import", exact=True)).to_be_visible()
            expect(page.get_by_text("Import queued.")).to_be_visible()
            section = progress_section(page)
            expect(section.locator(".status")).to_have_text("Queued")
            expect(section).to_have_attribute("hx-trigger", "every 2s")

            with self.start_worker() as worker:
                wait_until_done(page, worker)
            # The section htmx swapped in has no hx-* attributes: the polling has stopped.
            expect(section).not_to_have_attribute("hx-trigger", re.compile(".*"))
            expect(section.locator("progress")).to_have_attribute("max", "5")
            expect(section.locator("progress")).to_have_attribute("value", "5")
            expect(section).to_contain_text("5 of 5 rows read.")
            assert summary(page) == {
                "Created": "2",
                "Updated": "1",
                "Skipped (already in the account)": "0",
                "Invalid": "1",
                "Duplicates within the file": "1",
                "Suppressed": "0",
            }
            expect(section.get_by_role("button")).to_have_count(0)  # neither pause nor cancel

            with page.expect_download() as download_info:
                page.get_by_role("link", name="Download the error report (CSV)").click()
            download = download_info.value
            assert re.fullmatch(r"import-imp_\w+-errors\.csv", download.suggested_filename), download
            with open(download.path(), encoding="utf-8", newline="") as handle:
                report = list(csv.reader(handle))

            page.get_by_role("link", name="All imports").click()
            expect(page.get_by_role("row").nth(1).get_by_role("cell")).to_have_text(
                [re.compile(r"\d{4} \d\d:\d\d"), "Done", "Acme customers", "5 / 5", "2", "1", "0", "1", "1"]
            )

        assert problems == []
        # The file's line numbers (the header is line 1), the column, the field, the reason; never a cell's value.
        assert report == [
            ["line", "column", "field", "reason"],
            ["4", "1", "email", "not a valid email address"],
            ["5", "1", "email", "duplicate of an earlier row in the file"],
        ]
        with account_scope(self.acme):
            [contact_import] = contact_import_list(self.acme, limit=1)
            assert contact_import.status == ContactImport.Status.DONE
            assert contact_import.consent_source == Contact.Source.FORM
            ada = contact_with_email(self.acme, "ada@example.com")
            ben = contact_with_email(self.acme, "ben@example.com")
            cleo = contact_with_email(self.acme, "cleo@example.com")
            # Ada is updated in place: the same contact, the file's first name; the last name the file lacks stays.
            assert (ada.public_id, ada.first_name, ada.last_name) == (self.ada.public_id, "Augusta", "Byron")
            assert ada.attributes == {"shoe_size": 37}
            # The first row of ben's two is the one imported.
            assert (ben.first_name, ben.attributes) == ("Ben", {"shoe_size": 44})
            assert tags_of_contact(self.acme, ben) == ["vip"]
            assert (cleo.first_name, sorted(tags_of_contact(self.acme, cleo))) == ("Cleo", ["early", "vip"])
            assert ben.source == cleo.source == Contact.Source.IMPORT
            for contact in (ada, ben, cleo):
                [subscription] = subscriptions_of_contact(self.acme, contact)
                assert subscription.mailing_list_id == self.acme_list.pk
                assert subscription.consent_source == Contact.Source.FORM
        with account_scope(self.globex):
            globex_ada = contact_with_email(self.globex, "ada@example.com")
            assert (globex_ada.public_id, globex_ada.first_name) == (self.globex_ada.public_id, "Ada of Globex")
            assert contact_with_email(self.globex, "ben@example.com") is None

    def test_a_file_without_a_header_imports_new_contacts_and_skips_those_already_there(self) -> None:
        with chromium_page() as (page, problems):
            log_in(page, self.base_url, self.bob.email)
            upload(page, "no-header.csv", PEOPLE_WITHOUT_A_HEADER)

            # No header: the columns are numbered, the first row is data, and the address column is found anyway.
            expect(page.get_by_text("Detected: utf-8, semicolon separated, 2 columns.")).to_be_visible()
            expect(page.get_by_label("The first row names the columns")).not_to_be_checked()
            expect(page.get_by_label("Column 1", exact=True)).to_have_value("email")
            expect(page.get_by_label("Column 2", exact=True)).to_have_value("")
            first_row = page.locator("#import-mapping tbody tr").first.locator("td")
            expect(first_row).to_have_text(["dora@example.com", "Dora"])
            page.get_by_label("Column 2", exact=True).select_option(label="First name")
            page.get_by_label("Skip them").check()
            expect(page.get_by_label("Add the contacts to the list")).to_have_value("")
            expect(page.get_by_label("How these people gave their consent")).to_have_value(Contact.Source.IMPORT)
            declare_task_queues()
            page.get_by_role("button", name="Start the import").click()
            expect(progress_section(page).locator(".status")).to_have_text("Queued")

            with self.start_worker() as worker:
                wait_until_done(page, worker)
            expect(progress_section(page)).to_contain_text("3 of 3 rows read.")
            assert summary(page) == {
                "Created": "2",
                "Updated": "0",
                "Skipped (already in the account)": "1",
                "Invalid": "0",
                "Duplicates within the file": "0",
                "Suppressed": "0",
            }
            # No row was refused: no error report is offered.
            expect(page.get_by_role("link", name="Download the error report (CSV)")).to_have_count(0)

        assert problems == []
        with account_scope(self.acme):
            dora = contact_with_email(self.acme, "dora@example.com")
            eve = contact_with_email(self.acme, "eve@example.com")
            fay = contact_with_email(self.acme, "fay@example.com")
            assert (dora.public_id, dora.first_name) == (self.dora.public_id, "Dorothy")
            assert (eve.first_name, eve.status, eve.source) == ("Eve", Contact.Status.SUBSCRIBED, Contact.Source.IMPORT)
            assert fay.first_name == "Fay"
            assert list(subscriptions_of_contact(self.acme, eve)) == []
