"""Consent: single and double opt-in with evidence, confirmation links, unsubscribing and the suppression list."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.test import override_settings

from accounts.tenancy import account_scope
from audit.models import AuditEvent
from contacts import consent, services
from contacts.models import Contact, MailingList, Subscription, Suppression
from contacts.selectors import contact_email_index
from tests.cast import CastTestCase

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)
BASE_URL = "https://mail.bluespark.example"
CONFIRM_LINK = re.compile(r"https?://\S+/f/confirm/(?P<token>[^/\s]+)/")


def make_contact(account, email: str, **fields) -> Contact:
    contact = Contact(account=account, email=email, **fields)
    contact.save()
    return contact


def make_list(account, name: str, **fields) -> MailingList:
    mailing_list = MailingList(account=account, name=name, **fields)
    mailing_list.save()
    return mailing_list


class ConsentTestCase(CastTestCase):
    def setUp(self) -> None:
        traveller = time_machine.travel(T0, tick=False)
        self.clock = traveller.start()
        self.addCleanup(traveller.stop)
        scope = account_scope(self.acme)
        scope.__enter__()
        self.addCleanup(scope.__exit__, None, None, None)
        self.single = make_list(self.acme, "News", consent_text="I agree to receive the Acme newsletter.")
        self.double = make_list(self.acme, "Deals", opt_in=MailingList.OptIn.DOUBLE, consent_text="Deals, weekly.")
        self.ann = make_contact(self.acme, "ann@example.test", first_name="Ann")

    def subscribe_double(self, contact=None, mailing_list=None, **options) -> tuple[Subscription, str]:
        with self.captureOnCommitCallbacks(execute=True):
            subscription = consent.subscribe_contact(
                self.acme, contact or self.ann, mailing_list or self.double, source="form", **options
            )
        match = CONFIRM_LINK.search(mail.outbox[-1].body)
        assert match, mail.outbox[-1].body
        return subscription, match["token"]

    def events(self, action: str) -> list[AuditEvent]:
        return list(AuditEvent.objects.filter(account_id=self.acme.public_id, action=action).order_by("sequence"))


class OptInTests(ConsentTestCase):
    def test_single_opt_in_subscribes_at_once_and_keeps_the_evidence(self):
        with self.captureOnCommitCallbacks(execute=True):
            subscription = consent.subscribe_contact(self.acme, self.ann, self.single, source="api", ip="203.0.113.9")
        subscription.refresh_from_db()
        assert subscription.status == Subscription.Status.SUBSCRIBED
        assert (subscription.consent_source, subscription.consent_at, subscription.consent_ip) == (
            "api",
            T0,
            "203.0.113.9",
        )
        assert subscription.consent_text == "I agree to receive the Acme newsletter."
        assert subscription.confirmed_at is None
        assert mail.outbox == []

    def test_the_text_consented_to_can_be_given_instead_of_the_lists(self):
        subscription = consent.subscribe_contact(
            self.acme, self.ann, self.single, source="manual", consent_text="Said yes on the phone, call 42."
        )
        subscription.refresh_from_db()
        assert subscription.consent_text == "Said yes on the phone, call 42."
        assert subscription.consent_source == "manual"

    def test_subscribing_again_changes_nothing(self):
        first = consent.subscribe_contact(self.acme, self.ann, self.single, source="import", ip="203.0.113.1")
        self.clock.shift(3600)
        again = consent.subscribe_contact(self.acme, self.ann, self.single, source="api", ip="198.51.100.7")
        assert again.pk == first.pk
        again.refresh_from_db()
        assert (again.consent_source, again.consent_at, again.consent_ip) == ("import", T0, "203.0.113.1")
        assert Subscription.objects.filter(contact=self.ann).count() == 1

    def test_double_opt_in_waits_for_the_link_which_confirms(self):
        subscription, token = self.subscribe_double(ip="203.0.113.9")
        subscription.refresh_from_db()
        assert subscription.status == Subscription.Status.PENDING
        (message,) = mail.outbox
        assert message.to == ["ann@example.test"]
        assert "Deals" in message.subject and "Deals, weekly." in message.body
        self.clock.shift(600)
        confirmed = consent.confirm_subscription(token)
        confirmed.refresh_from_db()
        assert (confirmed.pk, confirmed.status) == (subscription.pk, Subscription.Status.SUBSCRIBED)
        assert (confirmed.consent_at, confirmed.confirmed_at) == (T0, T0 + timedelta(seconds=600))
        assert confirmed.consent_ip == "203.0.113.9" and confirmed.consent_source == "form"

    @override_settings(BASE_URL=BASE_URL)
    def test_the_link_is_built_from_base_url(self):
        self.subscribe_double()
        assert CONFIRM_LINK.search(mail.outbox[0].body)[0].startswith(BASE_URL + "/f/confirm/")

    def test_a_link_older_than_seven_days_has_expired(self):
        _, token = self.subscribe_double()
        self.clock.move_to(T0 + timedelta(days=7, seconds=1))
        with pytest.raises(consent.InvalidLink) as raised:
            consent.confirm_subscription(token)
        assert raised.value.reason == "expired"
        assert Subscription.objects.get(contact=self.ann).status == Subscription.Status.PENDING

    def test_a_link_works_until_its_seventh_day_ends(self):
        _, token = self.subscribe_double()
        self.clock.move_to(T0 + timedelta(days=7) - timedelta(seconds=5))
        assert consent.confirm_subscription(token).status == Subscription.Status.SUBSCRIBED

    def test_a_link_works_once(self):
        _, token = self.subscribe_double()
        consent.confirm_subscription(token)
        with pytest.raises(consent.InvalidLink) as raised:
            consent.confirm_subscription(token)
        assert raised.value.reason == "used"

    def test_a_tampered_link_or_another_kind_of_token_is_invalid(self):
        subscription, token = self.subscribe_double()
        other = make_contact(self.acme, "bo@example.test")
        other_subscription, _ = self.subscribe_double(contact=other)
        forged = token.replace(subscription.public_id, other_subscription.public_id)
        unsubscribe = consent.unsubscribe_token(self.acme, self.ann, self.double)
        for bad in (forged, token[:-2], unsubscribe, "nonsense"):
            with pytest.raises(consent.InvalidLink) as raised:
                consent.confirm_subscription(bad)
            assert raised.value.reason == "invalid", bad
        assert set(Subscription.objects.values_list("status", flat=True)) == {Subscription.Status.PENDING}

    def test_a_link_from_before_an_unsubscribe_does_not_confirm_a_later_request(self):
        _, old_token = self.subscribe_double()
        consent.confirm_subscription(old_token)
        consent.unsubscribe_contact(self.acme, self.ann, self.double)
        self.clock.shift(60)
        _, new_token = self.subscribe_double()
        with pytest.raises(consent.InvalidLink):
            consent.confirm_subscription(old_token)
        assert consent.confirm_subscription(new_token).status == Subscription.Status.SUBSCRIBED

    def test_confirmation_emails_to_one_address_are_limited_to_three_a_day(self):
        for number in range(4):
            mailing_list = make_list(self.acme, f"Double {number}", opt_in=MailingList.OptIn.DOUBLE)
            with self.captureOnCommitCallbacks(execute=True):
                consent.subscribe_contact(self.acme, self.ann, mailing_list, source="form")
        assert len(mail.outbox) == 3
        assert Subscription.objects.filter(contact=self.ann, status="pending").count() == 4


class RefusedSubscriptionTests(ConsentTestCase):
    def test_only_the_person_subscribes_a_suppressed_address_again(self):
        consent.suppress(self.acme, "ANN@example.test", reason="unsubscribed")
        for source in ("api", "import", "manual"):
            with pytest.raises(consent.ConsentError, match="only they can subscribe again"):
                consent.subscribe_contact(self.acme, self.ann, self.single, source=source)
        assert not Subscription.objects.filter(contact=self.ann).exists()

    def test_a_person_who_left_a_list_is_not_put_back_by_an_import(self):
        consent.subscribe_contact(self.acme, self.ann, self.single, source="api")
        consent.unsubscribe_contact(self.acme, self.ann, self.single)
        with pytest.raises(consent.ConsentError):
            consent.subscribe_contact(self.acme, self.ann, self.single, source="import")
        assert Subscription.objects.get(contact=self.ann).status == Subscription.Status.UNSUBSCRIBED

    def test_a_contact_that_is_not_subscribed_is_not_put_on_another_list_by_a_member_or_the_api(self):
        consent.subscribe_contact(self.acme, self.ann, self.single, source="api")
        services.update_contact(self.acme, self.ann, status="unsubscribed")  # a member's choice, not suppressed
        for source in ("api", "import", "manual"):
            with pytest.raises(consent.ConsentError, match="This contact is unsubscribed: only the person"):
                consent.subscribe_contact(self.acme, self.ann, self.double, source=source)
        self.ann.refresh_from_db()
        assert self.ann.status == Contact.Status.UNSUBSCRIBED
        assert not Subscription.objects.filter(contact=self.ann, mailing_list=self.double).exists()

    def test_such_a_contact_subscribes_again_through_a_form_once_they_confirm(self):
        services.update_contact(self.acme, self.ann, status="unsubscribed")
        subscription, token = self.subscribe_double(mailing_list=self.single)
        assert subscription.status == Subscription.Status.PENDING  # even on a single opt-in list
        self.ann.refresh_from_db()
        assert self.ann.status == Contact.Status.UNSUBSCRIBED
        consent.confirm_subscription(token)
        self.ann.refresh_from_db()
        assert self.ann.status == Contact.Status.SUBSCRIBED

    def test_a_bounced_address_is_not_subscribed_even_through_a_form(self):
        consent.suppress(self.acme, "ann@example.test", reason="bounced")
        with pytest.raises(consent.ConsentError, match="suppression list"):
            consent.subscribe_contact(self.acme, self.ann, self.single, source="form")

    def test_the_person_re_subscribing_through_a_form_must_confirm_even_on_a_single_opt_in_list(self):
        consent.suppress(self.acme, "ann@example.test", reason="unsubscribed")
        subscription, token = self.subscribe_double(mailing_list=self.single)
        assert subscription.status == Subscription.Status.PENDING
        assert consent.is_suppressed(self.acme, "ann@example.test")
        consent.confirm_subscription(token)
        assert not consent.is_suppressed(self.acme, "ann@example.test")
        (lifted,) = self.events("suppression.removed")
        assert lifted.data == {"reason": "unsubscribed", "lifted_by": "person"}


class UnsubscribeTests(ConsentTestCase):
    def test_unsubscribing_ends_the_subscription_and_the_contact_leaves_with_its_last_list(self):
        consent.subscribe_contact(self.acme, self.ann, self.single, source="api")
        consent.subscribe_contact(self.acme, self.ann, self.double, source="api")
        self.clock.shift(60)
        subscription = consent.unsubscribe_contact(self.acme, self.ann, self.single)
        assert (subscription.status, subscription.unsubscribed_at) == ("unsubscribed", T0 + timedelta(seconds=60))
        self.ann.refresh_from_db()
        assert self.ann.status == Contact.Status.SUBSCRIBED  # still pending on Deals
        consent.unsubscribe_contact(self.acme, self.ann, self.double)
        self.ann.refresh_from_db()
        assert self.ann.status == Contact.Status.UNSUBSCRIBED
        assert not consent.is_suppressed(self.acme, "ann@example.test")

    def test_a_bounce_or_complaint_suppresses_the_address_for_the_account(self):
        consent.subscribe_contact(self.acme, self.ann, self.single, source="api")
        consent.unsubscribe_contact(self.acme, self.ann, self.single, reason="complained")
        assert Suppression.objects.get().reason == "complained"
        self.ann.refresh_from_db()
        assert self.ann.status == Contact.Status.COMPLAINED
        (added,) = self.events("suppression.added")
        assert (added.target_type, added.target_id, added.data) == (
            "contact",
            self.ann.public_id,
            {"reason": "complained", "previous_reason": None},
        )

    @override_settings(BASE_URL=BASE_URL)
    def test_the_one_click_link_unsubscribes_and_only_from_its_list(self):
        consent.subscribe_contact(self.acme, self.ann, self.single, source="api")
        link = consent.unsubscribe_link(self.acme, self.ann, self.single)
        assert link.startswith(BASE_URL + "/f/unsubscribe/")
        token = link.rstrip("/").rsplit("/", 1)[1]
        assert consent.unsubscribe_by_token(token).status == "unsubscribed"
        assert consent.unsubscribe_by_token(token).status == "unsubscribed"  # idempotent
        assert not consent.is_suppressed(self.acme, "ann@example.test")
        with pytest.raises(consent.InvalidLink):
            consent.unsubscribe_by_token(token.replace(self.single.public_id, self.double.public_id))

    def test_unsubscribing_from_everything_suppresses_the_address(self):
        consent.subscribe_contact(self.acme, self.ann, self.single, source="api")
        consent.subscribe_contact(self.acme, self.ann, self.double, source="api")
        consent.unsubscribe_by_token(consent.unsubscribe_token(self.acme, self.ann, self.single), everywhere=True)
        assert set(Subscription.objects.filter(contact=self.ann).values_list("status", flat=True)) == {"unsubscribed"}
        assert Suppression.objects.get().reason == "unsubscribed"


class SuppressionTests(ConsentTestCase):
    def test_an_address_is_suppressed_by_its_index_in_any_spelling(self):
        consent.suppress(self.acme, "  Zed@Example.TEST ", reason="manual", actor=self.bob)
        assert consent.is_suppressed(self.acme, "zed@example.test")
        assert not consent.is_suppressed(self.acme, "zed2@example.test")
        with account_scope(self.globex):
            assert not consent.is_suppressed(self.globex, "zed@example.test")
        (added,) = self.events("suppression.added")
        assert added.actor_id == self.bob.public_id and added.target_id == ""
        assert "zed" not in str(added.data).lower()

    def test_suppressing_twice_keeps_the_first_reason_but_an_erasure_replaces_it(self):
        consent.suppress(self.acme, "zed@example.test", reason="bounced")
        consent.suppress(self.acme, "zed@example.test", reason="manual")
        assert Suppression.objects.get().reason == "bounced"
        consent.suppress(self.acme, "zed@example.test", reason="erased")
        assert Suppression.objects.get().reason == "erased"
        assert [event.data for event in self.events("suppression.added")] == [
            {"reason": "bounced", "previous_reason": None},
            {"reason": "erased", "previous_reason": "bounced"},
        ]

    def test_a_member_lifts_a_manual_suppression_but_never_an_erasure_or_a_complaint(self):
        consent.suppress(self.acme, "zed@example.test", reason="manual")
        assert consent.unsuppress(self.acme, "zed@example.test", actor=self.bob) is True
        assert consent.unsuppress(self.acme, "zed@example.test") is False
        assert [event.data for event in self.events("suppression.removed")] == [
            {"reason": "manual", "lifted_by": "member"}
        ]
        for reason in ("erased", "complained"):
            consent.suppress(self.acme, f"{reason}@example.test", reason=reason)
            with pytest.raises(consent.ConsentError, match="only the person"):
                consent.unsuppress(self.acme, f"{reason}@example.test")
            assert consent.is_suppressed(self.acme, f"{reason}@example.test")

    def test_suppressed_indexes_answers_for_a_batch_within_the_account(self):
        consent.suppress(self.acme, "one@example.test", reason="bounced")
        consent.suppress(self.acme, "three@example.test", reason="erased")
        with account_scope(self.globex):
            consent.suppress(self.globex, "two@example.test", reason="manual")
        addresses = ["one@example.test", "two@example.test", "three@example.test", "four@example.test"]
        indexes = [contact_email_index(self.acme, address) for address in addresses]
        with self.assertNumQueries(1):
            found = consent.suppressed_indexes(self.acme, indexes)
        assert found == {indexes[0], indexes[2]}
        assert consent.suppressed_indexes(self.acme, []) == set()
