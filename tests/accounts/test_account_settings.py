"""The account's settings page: renaming (admins) and deleting the account (owners, re-authenticated)."""

from __future__ import annotations

import time

from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Account, ApiKey, ApiScope, Membership, Role
from accounts.reauth import VERIFIED_AT_KEY
from accounts.services import create_api_key, delete_account
from accounts.tasks import purge_account
from accounts.tenancy import TenantModel, account_scope
from contacts.consent import subscribe_contact
from contacts.models import Contact, ContactTag
from contacts.services import create_contact
from security.models import WrappedKey
from tests.cast import CastTestCase, make_user


class AccountSettingsTestCase(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        cls.ada = make_user("ada@acme.test", full_name="Ada Admin")
        Membership.objects.create(account=cls.acme, user=cls.ada, role=Role.ADMIN)

    def login(self, user, *, verified: bool = True) -> None:
        self.client.force_login(user)
        session = self.client.session
        session[VERIFIED_AT_KEY] = time.time() - (0 if verified else 3600)
        session.save()

    def url(self, name: str, account: Account | None = None) -> str:
        return reverse(f"account_settings:{name}", kwargs={"account_id": (account or self.acme).public_id})


class RenameTests(AccountSettingsTestCase):
    def test_an_admin_renames_the_account(self):
        self.login(self.ada)
        response = self.client.post(self.url("general"), {"name": "  Acme Corporation "})
        assert response.status_code == 302
        self.acme.refresh_from_db()
        assert self.acme.name == "Acme Corporation"

    def test_a_blank_name_is_refused_with_a_message(self):
        self.login(self.alice)
        response = self.client.post(self.url("general"), {"name": "   "})
        assert response.status_code == 400
        assert "This field is required" in response.content.decode()
        self.acme.refresh_from_db()
        assert self.acme.name == "Acme"

    def test_editors_and_viewers_are_refused(self):
        for user in (self.bob, self.vic):
            self.login(user)
            assert self.client.get(self.url("general")).status_code == 403
            assert self.client.post(self.url("general"), {"name": "Mine now"}).status_code == 403
        self.acme.refresh_from_db()
        assert self.acme.name == "Acme"

    def test_only_owners_see_the_deletion_form(self):
        self.login(self.ada)
        assert "Delete this account" not in self.client.get(self.url("general")).content.decode()
        self.login(self.alice)
        assert "Delete this account" in self.client.get(self.url("general")).content.decode()


class DeletionTests(AccountSettingsTestCase):
    def delete(self, confirm_name: str = "Acme"):
        return self.client.post(self.url("delete"), {"confirm_name": confirm_name})

    def test_an_owner_deletes_the_account_its_data_is_unreadable_at_once_and_its_rows_go_in_the_background(self):
        with account_scope(self.acme):
            create_contact(self.acme, email="gone@acme.test", first_name="Gone")
            issued = create_api_key(self.acme, name="sync", scopes=[ApiScope.CONTACTS_READ], created_by=self.alice)
        scope = self.acme.public_id
        self.login(self.alice)
        with self.captureOnCommitCallbacks() as queued, self.assertLogs("bluespark.security") as logs:
            response = self.delete()
        assert response.status_code == 302 and response["Location"] == reverse("accounts:home")
        # At once: keys destroyed, no member, no API key, no invitation left.
        assert not WrappedKey.objects.filter(scope=scope).exists()
        assert not Membership.objects.filter(account=self.acme).exists()
        assert not ApiKey.objects_unscoped_dangerous.filter(pk=issued.key.pk).exists()
        assert self.client.get(reverse("dashboard", kwargs={"account_id": scope})).status_code == 404
        assert [record.getMessage() for record in logs.records] == ["account_deleted"]
        assert logs.records[0].account == scope and logs.records[0].user == self.alice.public_id
        # At commit, kept API keys are voided again (accounts.key_cache); the rows go by the queued task.
        assert len(queued) == 2
        purge_account(scope)
        assert not Account.objects.filter(public_id=scope).exists()
        assert not Contact.objects_unscoped_dangerous.filter(account_id=self.acme.pk).exists()
        # Globex is untouched.
        assert Membership.objects.filter(account=self.globex, user=self.charlie).exists()

    def test_the_purge_deletes_every_account_owned_row_in_bounded_batches(self):
        with account_scope(self.acme):
            tagged = [create_contact(self.acme, email=f"p{n}@acme.test", tags=["vip"]) for n in range(7)]
            for contact in tagged:
                subscribe_contact(self.acme, contact, self.acme_list, source="manual")
        with account_scope(self.globex):
            kept = create_contact(self.globex, email="p0@acme.test", tags=["vip"])
        owned = [model for model in apps.get_models() if issubclass(model, TenantModel)]

        with CaptureQueriesContext(connection) as queries:
            delete_account(self.acme, batch_rows=3)

        assert not Account.objects.filter(pk=self.acme.pk).exists()
        for model in owned:
            assert not model.objects_unscoped_dangerous.filter(account_id=self.acme.pk).exists(), model.__name__
        # 7 contacts, 3 a batch: three DELETEs of contacts, each of at most 3 rows.
        contact_deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "contacts_contact"')]
        assert len(contact_deletes) == 3
        with account_scope(self.globex):
            assert Contact.objects.get(pk=kept.pk).email == "p0@acme.test"
            assert ContactTag.objects.filter(contact=kept).count() == 1

    def test_it_needs_a_recent_password_check(self):
        self.login(self.alice, verified=False)
        response = self.delete()
        assert response.status_code == 302 and response["Location"].startswith(reverse("reauthenticate"))
        assert Membership.objects.filter(account=self.acme).count() == 4

    def test_a_wrong_confirmation_name_deletes_nothing(self):
        self.login(self.alice)
        response = self.delete("acme")
        assert response.status_code == 400
        assert "not the account" in response.content.decode()
        assert Membership.objects.filter(account=self.acme).count() == 4

    def test_admins_and_below_cannot_delete_and_a_get_does_nothing(self):
        for user in (self.ada, self.bob, self.vic):
            self.login(user)
            assert self.delete().status_code == 403
        self.login(self.alice)
        assert self.client.get(self.url("delete")).status_code == 405
        assert Membership.objects.filter(account=self.acme).count() == 4

    def test_an_owner_of_globex_cannot_delete_acme(self):
        self.login(self.charlie)
        assert self.client.post(self.url("delete"), {"confirm_name": "Acme"}).status_code == 404
        assert Membership.objects.filter(account=self.acme).count() == 4


class NavigationTests(AccountSettingsTestCase):
    def test_admins_find_the_settings_page_in_the_accounts_menu_and_editors_do_not(self):
        link = f'href="{self.url("general")}"'
        dashboard = reverse("dashboard", kwargs={"account_id": self.acme.public_id})
        self.login(self.ada)
        assert link in self.client.get(dashboard).content.decode()
        self.login(self.bob)
        assert link not in self.client.get(dashboard).content.decode()
