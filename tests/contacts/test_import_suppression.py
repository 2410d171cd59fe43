"""The CSV engine and the suppression list: an erased person, an unsubscribe, a bounce, a complaint or a hand-made
suppression keeps an address out of an import, in the account that holds it and only there.
"""

from __future__ import annotations

from typing import Any

from accounts.models import Account
from accounts.tenancy import account_scope
from contacts.consent import subscribe_contact, suppress, unsubscribe_contact, unsubscribe_everywhere
from contacts.gdpr import ERASED_DOMAIN, erase_person
from contacts.importing import configure
from contacts.models import Contact, ContactImport, MailingList, Subscription, Suppression
from contacts.selectors import contact_email_index, contact_with_email
from contacts.services import create_contact
from tests.contacts import test_mass_assignment as mass

#: Each kept-out person of Acme, by address, with the suppression Acme holds for them.
SUPPRESSED = {
    "una@example.com": Suppression.Reason.UNSUBSCRIBED,
    "bea@example.com": Suppression.Reason.BOUNCED,
    "cal@example.com": Suppression.Reason.COMPLAINED,
    "max@example.com": Suppression.Reason.MANUAL,
    "ghost@example.com": Suppression.Reason.COMPLAINED,  # suppressed, never a contact
}
ERASED = "erin@example.com"


def csv_of(addresses: list[str]) -> str:
    """A file that asks for everything: new names, and a status column saying subscribed."""
    rows = [f"{address.upper()},Imported,subscribed" for address in addresses]
    return "\n".join(["email,first_name,status", *rows, "newcomer@example.com,New,subscribed"]) + "\n"


class ImportSuppressionTests(mass.ImportFilesTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        with account_scope(cls.acme):
            cls.newsletter = MailingList(account=cls.acme, name="Newsletter", consent_text="Yes to the newsletter.")
            cls.newsletter.save()
            cls.people = {}
            for address in [*SUPPRESSED, ERASED]:
                if address == "ghost@example.com":
                    continue  # suppressed below without ever having been a contact
                person = create_contact(cls.acme, email=address, first_name="Original", last_name="Person")
                subscribe_contact(cls.acme, person, cls.acme_list, source=Contact.Source.MANUAL)
                cls.people[address] = person
            unsubscribe_everywhere(cls.acme, cls.people["una@example.com"])
            unsubscribe_contact(cls.acme, cls.people["bea@example.com"], cls.acme_list, reason="bounced")
            unsubscribe_contact(cls.acme, cls.people["cal@example.com"], cls.acme_list, reason="complained")
            suppress(cls.acme, "max@example.com", reason=Suppression.Reason.MANUAL, actor=cls.alice)
            suppress(cls.acme, "ghost@example.com", reason=Suppression.Reason.COMPLAINED, actor=cls.alice)
            erase_person(cls.acme, cls.people[ERASED], actor=cls.alice)

    def import_into(self, account: Account, content: str, mailing_list: MailingList, **options: Any) -> ContactImport:
        with account_scope(account):
            contact_import = self.upload(account, content)
            configure(
                contact_import,
                mapping={"0": "email", "1": "first_name", "2": ""},
                update_existing=True,
                mailing_list=mailing_list,
            )
            return self.run_engine(account, contact_import, **options)

    def acme_reasons(self) -> dict[str, str]:
        with account_scope(self.acme):
            found = {
                address: Suppression.objects.filter(email_index=contact_email_index(self.acme, address))
                .values_list("reason", flat=True)
                .first()
                for address in [*SUPPRESSED, ERASED]
            }
        return found

    def newsletter_members(self) -> list[str]:
        with account_scope(self.acme):
            subscriptions = Subscription.objects.filter(mailing_list=self.newsletter).select_related("contact")
            return sorted(subscription.contact.email for subscription in subscriptions)

    def test_the_cast_is_what_the_tests_below_rely_on(self):
        assert self.acme_reasons() == {**SUPPRESSED, ERASED: Suppression.Reason.ERASED}
        statuses = {address: mass.snapshot(self.acme, person)["status"] for address, person in self.people.items()}
        assert statuses == {
            "una@example.com": "unsubscribed",
            "bea@example.com": "bounced",
            "cal@example.com": "complained",
            "max@example.com": "subscribed",
            ERASED: "erased",
        }

    def test_an_erased_persons_address_is_counted_as_suppressed_and_never_stored_again(self):
        erased_before = mass.snapshot(self.acme, self.people[ERASED])
        with account_scope(self.acme):
            count = Contact.objects.count()

        result = self.import_into(self.acme, csv_of([ERASED]), self.newsletter)

        assert (result.status, result.rows_done, result.created, result.updated) == ("done", 2, 1, 0)
        assert (result.suppressed, result.skipped, result.invalid) == (1, 0, 0)
        with account_scope(self.acme):
            assert contact_with_email(self.acme, ERASED) is None
            assert Contact.objects.count() == count + 1
        erased_after = mass.snapshot(self.acme, self.people[ERASED])
        assert erased_after == erased_before
        assert (erased_after["status"], erased_after["email"]) == (
            "erased",
            f"{erased_after['public_id']}@{ERASED_DOMAIN}",
        )
        assert self.newsletter_members() == ["newcomer@example.com"]
        assert self.acme_reasons()[ERASED] == Suppression.Reason.ERASED

    def test_suppressed_people_keep_their_status_names_and_lists_through_an_import_that_updates(self):
        before = {address: mass.snapshot(self.acme, person) for address, person in self.people.items()}
        reasons = self.acme_reasons()
        for mailing_list in (self.newsletter, self.acme_list):
            with self.subTest(mailing_list.name):
                # Two rows per chunk: the suppression list is read for every chunk, not once.
                result = self.import_into(self.acme, csv_of([*SUPPRESSED, ERASED]), mailing_list, chunk_rows=2)

                assert (result.status, result.rows_done, result.suppressed) == ("done", 7, 6)
                # Only the newcomer is written: created by the first import, updated by the second.
                assert (result.created + result.updated, result.skipped, result.invalid) == (1, 0, 0)
                after = {address: mass.snapshot(self.acme, person) for address, person in self.people.items()}
                assert after == before
                assert self.acme_reasons() == reasons
                with account_scope(self.acme):
                    assert contact_with_email(self.acme, "ghost@example.com") is None
        assert self.newsletter_members() == ["newcomer@example.com"]

    def test_the_same_addresses_in_another_account_are_imported_and_subscribed(self):
        acme_before = mass.account_snapshot(self.acme)
        addresses = [*SUPPRESSED, ERASED]

        result = self.import_into(self.globex, csv_of(addresses), self.globex_list)

        assert (result.status, result.created, result.suppressed) == ("done", len(addresses) + 1, 0)
        with account_scope(self.globex):
            for address in addresses:
                person = contact_with_email(self.globex, address)
                assert person is not None, address
                stored = mass.snapshot(self.globex, person)
                assert (stored["account_id"], stored["status"], stored["first_name"]) == (
                    self.globex.pk,
                    "subscribed",
                    "Imported",
                )
                assert [row[:4] for row in stored["subscriptions"]] == [
                    (self.globex_list.public_id, "subscribed", "import", mass.T0)
                ]
            assert not Suppression.objects.exists()
        assert mass.account_snapshot(self.acme) == acme_before

    def test_a_contact_a_member_set_unsubscribed_is_updated_but_not_put_on_the_list(self):
        with account_scope(self.acme):
            rae = create_contact(self.acme, email="rae@example.com", first_name="Rae", status="unsubscribed")
        assert not Suppression.objects_unscoped_dangerous.filter(
            account=self.acme, email_index=rae.email_index
        ).exists()

        result = self.import_into(self.acme, csv_of(["rae@example.com"]), self.newsletter)

        assert (result.status, result.created, result.updated, result.suppressed) == ("done", 1, 1, 0)
        stored = mass.snapshot(self.acme, rae)
        assert (stored["first_name"], stored["status"], stored["subscriptions"]) == ("Imported", "unsubscribed", [])
        assert self.newsletter_members() == ["newcomer@example.com"]
