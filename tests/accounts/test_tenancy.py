import re

import pytest
from django.http import Http404

from accounts.models import Account
from accounts.tenancy import TenantScopeError, account_scope, get_active_account
from campaigns.models import Campaign
from campaigns.selectors import access_campaign, campaign_list
from campaigns.services import create_campaign
from contacts.models import MailingList
from contacts.selectors import access_mailing_list
from security.identifiers import new_public_id
from tests.cast import CastTestCase


class TenantScopeTests(CastTestCase):
    def test_a_tenant_query_outside_any_scope_raises(self):
        with pytest.raises(TenantScopeError, match="outside an account scope"):
            list(Campaign.objects.all())
        with pytest.raises(TenantScopeError):
            MailingList.objects.count()

    def test_the_default_manager_only_sees_the_active_account(self):
        with account_scope(self.acme):
            assert list(Campaign.objects.values_list("public_id", flat=True)) == [self.acme_campaign.public_id]
        with account_scope(self.globex):
            assert list(Campaign.objects.values_list("public_id", flat=True)) == [self.globex_campaign.public_id]

    def test_even_an_explicit_filter_on_another_account_finds_nothing(self):
        with account_scope(self.acme):
            assert not Campaign.objects.filter(account=self.globex).exists()

    def test_the_scope_is_left_when_the_block_raises(self):
        with pytest.raises(ValueError):
            with account_scope(self.acme):
                raise ValueError("boom")
        assert get_active_account() is None

    def test_nested_scopes_restore_the_outer_one(self):
        with account_scope(self.acme):
            with account_scope(self.globex):
                assert get_active_account() == self.globex
            assert get_active_account() == self.acme
        assert get_active_account() is None

    def test_saving_another_accounts_row_inside_a_scope_is_refused(self):
        with account_scope(self.acme):
            with pytest.raises(TenantScopeError, match="another account"):
                create_campaign(self.globex, name="Smuggled")
        with account_scope(self.globex):
            assert [c.name for c in campaign_list(self.globex)] == ["Globex launch"]

    def test_an_unsaved_account_cannot_be_a_scope(self):
        with pytest.raises(TenantScopeError):
            with account_scope(Account(name="Ghost")):
                pass

    def test_access_gives_the_same_404_for_missing_and_foreign_objects(self):
        with account_scope(self.acme):
            assert access_campaign(self.acme, self.acme_campaign.public_id) == self.acme_campaign
            with pytest.raises(Http404) as foreign:
                access_campaign(self.acme, self.globex_campaign.public_id)
            with pytest.raises(Http404) as missing:
                access_campaign(self.acme, new_public_id("cmp"))
            assert str(foreign.value) == str(missing.value)
            with pytest.raises(Http404):
                access_mailing_list(self.acme, self.globex_list.public_id)

    def test_deleting_an_account_deletes_its_rows_and_no_other(self):
        self.globex.delete()
        assert not Campaign.objects_unscoped_dangerous.filter(name="Globex launch").exists()
        assert Campaign.objects_unscoped_dangerous.filter(name="Acme launch").exists()


class PublicIdTests(CastTestCase):
    def test_public_ids_are_random_and_name_their_type(self):
        assert re.fullmatch(r"acc_[a-z2-7]{26}", self.acme.public_id)
        assert re.fullmatch(r"cmp_[a-z2-7]{26}", self.acme_campaign.public_id)
        assert re.fullmatch(r"lst_[a-z2-7]{26}", self.acme_list.public_id)
        assert re.fullmatch(r"usr_[a-z2-7]{26}", self.alice.public_id)

    def test_an_id_exists_before_the_row_is_saved(self):
        campaign = Campaign(account=self.acme, name="Draft")
        assert campaign.public_id.startswith("cmp_")

    def test_ids_do_not_repeat(self):
        assert len({new_public_id("cmp") for _ in range(1000)}) == 1000
