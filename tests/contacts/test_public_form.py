"""The public subscribe form, the confirmation page and the one-click unsubscribe page (no login, no CSRF cookie)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import time_machine
from django.core import mail
from django.test import Client, override_settings
from django.urls import reverse

from accounts.tenancy import account_scope
from contacts import consent
from contacts.models import Contact, MailingList, Subscription, Suppression
from contacts.public_views import FORM_POSTS_PER_CLIENT, FORM_POSTS_PER_LIST
from contacts.selectors import contact_with_email
from security.ratelimit import hit, reset_rate_limit_client
from tests.cast import CastTestCase

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)
STAMP = re.compile(r'name="stamp" value="([^"]+)"')
CONFIRM_LINK = re.compile(r"(?P<url>https?://\S+?(?P<path>/f/confirm/[^/\s]+/))")


class PublicFormTestCase(CastTestCase):
    def setUp(self) -> None:
        traveller = time_machine.travel(T0, tick=False)
        self.clock = traveller.start()
        self.addCleanup(traveller.stop)
        # Embedded on other sites: every POST here must work without a CSRF token.
        self.client = Client(enforce_csrf_checks=True)
        with account_scope(self.acme):
            self.double = MailingList(
                account=self.acme, name="Deals", opt_in="double", form_enabled=True, consent_text="Deals, weekly."
            )
            self.double.save()
            self.single = MailingList(account=self.acme, name="News", opt_in="single", form_enabled=True)
            self.single.save()

    def form_url(self, mailing_list) -> str:
        return reverse("subscribe:form", kwargs={"list_id": mailing_list.public_id})

    def stamp(self, mailing_list) -> str:
        """Open the form as a person would, and take a few seconds to fill it in."""
        response = self.client.get(self.form_url(mailing_list))
        assert response.status_code == 200
        self.clock.shift(5)
        return STAMP.search(response.content.decode())[1]

    def submit(self, mailing_list, email: str, *, stamp: str | None = None, ip: str = "203.0.113.5", **extra):
        data = {"email": email, "first_name": "Ann", "stamp": stamp if stamp is not None else self.stamp(mailing_list)}
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(self.form_url(mailing_list), data | extra, REMOTE_ADDR=ip)

    def contact(self, email: str) -> Contact | None:
        with account_scope(self.acme):
            return contact_with_email(self.acme, email)

    def subscriptions(self, email: str) -> list[tuple[str, str]]:
        with account_scope(self.acme):
            contact = contact_with_email(self.acme, email)
            if contact is None:
                return []
            return list(Subscription.objects.filter(contact=contact).values_list("mailing_list__name", "status"))


class SubscribeTests(PublicFormTestCase):
    def test_the_form_shows_the_list_and_sets_no_cookie(self):
        response = self.client.get(self.form_url(self.double))
        body = response.content.decode()
        assert response.status_code == 200
        assert "Subscribe to Deals" in body and "Deals, weekly." in body
        assert 'name="website"' in body and STAMP.search(body)
        assert "csrfmiddlewaretoken" not in body
        assert not response.cookies

    @override_settings(BASE_URL="https://mail.bluespark.example", ALLOWED_HOSTS=["*"])
    def test_double_opt_in_mails_a_link_built_from_base_url_under_a_poisoned_host(self):
        stamp = self.stamp(self.double)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                self.form_url(self.double),
                {"email": "Ann@Example.test", "first_name": "Ann", "stamp": stamp},
                HTTP_HOST="attacker.example",
                REMOTE_ADDR="203.0.113.5",
            )
        assert response.status_code == 200
        (message,) = mail.outbox
        link = CONFIRM_LINK.search(message.body)
        assert link["url"].startswith("https://mail.bluespark.example/f/confirm/")
        assert "attacker" not in message.body
        assert self.subscriptions("ann@example.test") == [("Deals", "pending")]
        with account_scope(self.acme):
            contact = self.contact("ann@example.test")
            subscription = Subscription.objects.get(contact=contact)
            assert (contact.source, contact.first_name, contact.status) == ("form", "Ann", "unsubscribed")
            assert (subscription.consent_source, subscription.consent_ip) == ("form", "203.0.113.5")
            assert subscription.consent_text == "Deals, weekly."
        # The page the link opens changes nothing; its button (a POST, without CSRF) confirms.
        assert self.client.get(link["path"]).status_code == 200
        assert self.subscriptions("ann@example.test") == [("Deals", "pending")]
        confirmed = self.client.post(link["path"])
        assert confirmed.status_code == 200 and "you are subscribed to Deals" in confirmed.content.decode()
        assert self.subscriptions("ann@example.test") == [("Deals", "subscribed")]
        assert self.contact("ann@example.test").status == "subscribed"
        again = self.client.post(link["path"])
        assert again.status_code == 400 and "used already" in again.content.decode()

    @override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=9,
        EMAIL_TIMEOUT=5,
    )
    def test_a_mail_server_that_is_down_does_not_fail_the_form(self):
        # Port 9 (discard) has no listener here: the SMTP connection is refused, for real.
        with self.assertLogs("bluespark.security", level="ERROR") as logs:
            response = self.submit(self.double, "ann@example.test")

        assert response.status_code == 200 and "Thank you" in response.content.decode()  # the answer everyone gets
        assert self.subscriptions("ann@example.test") == [("Deals", "pending")]
        [logged] = logs.records
        assert (logged.getMessage(), logged.error) == ("subscription_confirmation_not_sent", "ConnectionRefusedError")
        assert "ann@example.test" not in repr(logged.__dict__)

    def test_a_bad_confirmation_link_says_so(self):
        response = self.client.post(reverse("subscribe:confirm", kwargs={"token": "acc_x.sub_y.1:forged:sig"}))
        assert response.status_code == 400 and "not valid" in response.content.decode()

    def test_single_opt_in_subscribes_at_once(self):
        assert self.submit(self.single, "bo@example.test").status_code == 200
        assert self.subscriptions("bo@example.test") == [("News", "subscribed")]
        assert mail.outbox == []

    def test_a_form_that_is_off_or_missing_is_not_found(self):
        with account_scope(self.acme):
            self.single.form_enabled = False
            self.single.save()
        for url in (self.form_url(self.single), reverse("subscribe:form", kwargs={"list_id": "lst_" + "a" * 26})):
            assert self.client.get(url).status_code == 404
            assert self.client.post(url, {"email": "bo@example.test"}).status_code == 404
        assert self.contact("bo@example.test") is None

    def test_invalid_input_is_shown_again(self):
        response = self.submit(self.single, "not an address")
        assert response.status_code == 400 and "valid email" in response.content.decode()
        assert self.contact("not an address") is None


class NoEnumerationTests(PublicFormTestCase):
    def test_the_answer_is_the_same_for_a_new_a_subscribed_and_a_suppressed_address(self):
        with account_scope(self.acme):
            old = Contact(account=self.acme, email="old@example.test")
            old.save()
            consent.subscribe_contact(self.acme, old, self.double, source="api")
            consent.confirm_subscription(consent.confirmation_token(self.acme, Subscription.objects.get(contact=old)))
            consent.suppress(self.acme, "bounced@example.test", reason="bounced")
            consent.suppress(self.acme, "left@example.test", reason="unsubscribed")
        mail.outbox.clear()
        answers = {
            email: self.submit(self.double, email)
            for email in ("new@example.test", "old@example.test", "bounced@example.test", "left@example.test")
        }
        assert {response.status_code for response in answers.values()} == {200}
        assert len({response.content for response in answers.values()}) == 1
        # What happened differs, out of sight: a link for the new and the departed, nothing else.
        assert sorted(message.to[0] for message in mail.outbox) == ["left@example.test", "new@example.test"]
        assert self.contact("bounced@example.test") is None
        assert self.subscriptions("old@example.test") == [("Deals", "subscribed")]

    def test_an_existing_contacts_name_is_not_overwritten_by_the_form(self):
        with account_scope(self.acme):
            Contact(account=self.acme, email="cy@example.test", first_name="Cy").save()
        self.submit(self.single, "cy@example.test", first_name="Mallory")
        assert self.contact("cy@example.test").first_name == "Cy"


class BotTests(PublicFormTestCase):
    def assert_dropped(self, response, email: str) -> None:
        assert response.status_code == 200
        assert "Thank you" in response.content.decode()
        assert self.contact(email) is None
        assert mail.outbox == []

    def test_a_filled_honeypot_is_accepted_and_dropped(self):
        self.assert_dropped(
            self.submit(self.double, "bot@example.test", website="http://spam.example"), "bot@example.test"
        )

    def test_a_submission_faster_than_a_person_is_accepted_and_dropped(self):
        response = self.client.get(self.form_url(self.double))
        stamp = STAMP.search(response.content.decode())[1]
        self.clock.shift(1)
        self.assert_dropped(self.submit(self.double, "fast@example.test", stamp=stamp), "fast@example.test")

    def test_a_missing_forged_or_other_lists_stamp_is_accepted_and_dropped(self):
        other_list_stamp = self.stamp(self.single)
        for stamp in ("", "forged:stamp", other_list_stamp):
            self.assert_dropped(self.submit(self.double, "bot@example.test", stamp=stamp), "bot@example.test")

    def test_a_form_left_open_for_days_is_shown_again(self):
        stamp = self.stamp(self.double)
        self.clock.shift(2 * 24 * 3600)
        response = self.submit(self.double, "slow@example.test", stamp=stamp)
        assert response.status_code == 200 and "send it again" in response.content.decode()
        assert self.contact("slow@example.test") is None


class RateLimitTests(PublicFormTestCase):
    def test_one_client_gets_429_with_retry_after_past_its_limit(self):
        stamp = self.stamp(self.single)
        for number in range(FORM_POSTS_PER_CLIENT.capacity):
            assert self.submit(self.single, f"p{number}@example.test", stamp=stamp).status_code == 200
        refused = self.submit(self.single, "late@example.test", stamp=stamp)
        assert refused.status_code == 429
        assert int(refused["Retry-After"]) > 0
        assert self.contact("late@example.test") is None
        # Another client is still served.
        assert self.submit(self.single, "other@example.test", stamp=stamp, ip="198.51.100.1").status_code == 200

    def test_a_list_flooded_from_many_addresses_gets_429(self):
        hit(FORM_POSTS_PER_LIST, self.single.public_id, now=time.time(), cost=FORM_POSTS_PER_LIST.capacity)
        refused = self.submit(self.single, "late@example.test", ip="198.51.100.77")
        assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
        assert self.contact("late@example.test") is None
        assert self.submit(self.double, "fine@example.test", ip="198.51.100.78").status_code == 200


class RedisDownTests(PublicFormTestCase):
    def test_a_form_that_cannot_be_counted_answers_503_and_saves_nothing(self):
        stamp = self.stamp(self.single)
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
            reset_rate_limit_client()
            try:
                refused = self.submit(self.single, "down@example.test", stamp=stamp)
            finally:
                reset_rate_limit_client()

        assert refused.status_code == 503 and refused["Retry-After"] == "5"
        assert "Try again in a moment" in refused.content.decode()
        assert self.contact("down@example.test") is None

    def test_a_confirmation_mail_that_cannot_be_counted_is_not_sent(self):
        # Sent after the subscription commits: unthrottled it could mail one address without end.
        context = {"account_name": "Acme", "list_name": "Deals", "consent_text": "", "link": "https://x/", "days": 7}
        with (
            override_settings(REDIS_URL="redis://127.0.0.1:1/0"),
            self.assertLogs("bluespark.security", "ERROR") as logs,
        ):
            reset_rate_limit_client()
            try:
                consent._send_confirmation("later@example.test", "acc:bucket", context)
            finally:
                reset_rate_limit_client()

        assert mail.outbox == []
        assert [record.getMessage() for record in logs.records] == ["subscription_confirmation_not_sent"]


class FramingTests(PublicFormTestCase):
    def test_only_the_form_may_be_framed(self):
        form = self.client.get(self.form_url(self.single))
        assert "X-Frame-Options" not in form
        assert "frame-ancestors *" in form["Content-Security-Policy"]
        posted = self.submit(self.single, "bo@example.test")
        assert "X-Frame-Options" not in posted and "frame-ancestors *" in posted["Content-Security-Policy"]
        token = consent.unsubscribe_token(self.acme, self.contact("bo@example.test"), self.single)
        others = [
            reverse("subscribe:unsubscribe", kwargs={"token": token}),
            reverse("subscribe:confirm", kwargs={"token": "x"}),
            reverse("accounts:login"),
        ]
        for path in others:
            response = self.client.get(path)
            assert response["X-Frame-Options"] == "DENY", path
            assert "frame-ancestors 'none'" in response["Content-Security-Policy"], path
        missing = self.client.get(reverse("subscribe:form", kwargs={"list_id": "lst_" + "a" * 26}))
        assert missing.status_code == 404 and missing["X-Frame-Options"] == "DENY"


class UnsubscribePageTests(PublicFormTestCase):
    def setUp(self) -> None:
        super().setUp()
        with account_scope(self.acme):
            self.ann = Contact(account=self.acme, email="ann@example.test")
            self.ann.save()
            consent.subscribe_contact(self.acme, self.ann, self.single, source="api")
            consent.subscribe_contact(self.acme, self.ann, self.double, source="api")
            consent.confirm_subscription(
                consent.confirmation_token(
                    self.acme, Subscription.objects.get(contact=self.ann, mailing_list=self.double)
                )
            )
        self.url = reverse(
            "subscribe:unsubscribe", kwargs={"token": consent.unsubscribe_token(self.acme, self.ann, self.single)}
        )

    def test_the_page_asks_and_changes_nothing(self):
        response = self.client.get(self.url)
        assert response.status_code == 200
        assert "News" in response.content.decode() and "Acme" in response.content.decode()
        assert sorted(self.subscriptions("ann@example.test")) == [("Deals", "subscribed"), ("News", "subscribed")]

    def test_the_rfc_8058_one_click_post_unsubscribes_without_csrf(self):
        response = self.client.post(
            self.url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code == 200
        assert sorted(self.subscriptions("ann@example.test")) == [("Deals", "subscribed"), ("News", "unsubscribed")]
        with account_scope(self.acme):
            assert not Suppression.objects.exists()

    def test_the_second_button_unsubscribes_from_everything(self):
        response = self.client.post(self.url, {"scope": "everything"})
        assert response.status_code == 200 and "no more email" in response.content.decode()
        assert sorted(self.subscriptions("ann@example.test")) == [("Deals", "unsubscribed"), ("News", "unsubscribed")]
        with account_scope(self.acme):
            assert consent.is_suppressed(self.acme, "ann@example.test")

    def test_a_tampered_link_is_refused(self):
        for method in (self.client.get, self.client.post):
            response = method(self.url.replace(self.single.public_id, self.double.public_id))
            assert response.status_code == 400
        assert sorted(self.subscriptions("ann@example.test")) == [("Deals", "subscribed"), ("News", "subscribed")]

    def test_the_person_who_left_everything_comes_back_through_the_form_by_confirming(self):
        self.client.post(self.url, {"scope": "everything"})
        self.submit(self.single, "ann@example.test")
        assert ("News", "pending") in self.subscriptions("ann@example.test")
        (message,) = mail.outbox
        self.client.post(CONFIRM_LINK.search(message.body)["path"])
        assert ("News", "subscribed") in self.subscriptions("ann@example.test")
        with account_scope(self.acme):
            assert not consent.is_suppressed(self.acme, "ann@example.test")
            assert self.contact("ann@example.test").status == "subscribed"
