"""The profile page: the name, and moving the sign-in address through a link sent to the new one."""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import time_machine
from django.core import mail
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import EmailChange, User, UserSession, user_email_index
from accounts.reauth import VERIFIED_AT_KEY
from accounts.services import EMAIL_CHANGE_REQUESTS_PER_USER, EMAIL_TAKEN_SINCE, INVALID_EMAIL_CHANGE_LINK
from accounts.sessions import SESSION_ID_KEY
from accounts.tokens import EMAIL_CHANGE_TIMEOUT
from tests.accounts.test_sign_in import strip_csrf
from tests.cast import PASSWORD, CastTestCase, make_user

LOGIN = reverse("accounts:login")
HOME = reverse("accounts:home")
PROFILE = reverse("accounts:profile")
EMAIL = reverse("accounts:email_change")
REAUTH = reverse("reauthenticate")
NEW_ADDRESS = "alice.new@example.test"
LINK = re.compile(r"(https?://[^/\s]+)(/accounts/profile/email/(usr_\w+)/([^\s/]+)/)")


def link_in(message: mail.EmailMessage) -> str:
    """The path of the confirmation link in ``message``."""
    match = LINK.search(message.body)
    assert match, message.body
    return match.group(2)


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Every record our loggers write, with all its attributes (``extra`` fields included), as text."""

    class EveryAttribute(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"{super().format(record)} {vars(record)!r}"

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EveryAttribute())
    watched = [logging.getLogger(name) for name in ("", "bluespark.access", "bluespark.security", "django.request")]
    for logger in watched:
        logger.addHandler(handler)
    try:
        yield stream
    finally:
        for logger in watched:
            logger.removeHandler(handler)


class ProfileTestCase(CastTestCase):
    def login(self, user: User, *, verified_seconds_ago: float = 0, client: Client | None = None) -> Client:
        client = client or self.client
        client.force_login(user)
        session = client.session
        session[VERIFIED_AT_KEY] = time.time() - verified_seconds_ago
        session.save()
        return client

    def request_change(self, address: str = NEW_ADDRESS, *, client: Client | None = None, **extra):
        # The mails leave once the request's transaction commits.
        with self.captureOnCommitCallbacks(execute=True):
            return (client or self.client).post(EMAIL, {"new_email": address}, **extra)

    def mailed_link(self, address: str = NEW_ADDRESS) -> str:
        assert self.request_change(address)["Location"] == PROFILE
        [message] = [m for m in mail.outbox if m.to == [address]][-1:]
        return link_in(message)

    def confirm(self, path: str, *, client: Client | None = None):
        with self.captureOnCommitCallbacks(execute=True):
            return (client or self.client).post(path)

    def can_log_in(self, email: str) -> bool:
        return Client().post(LOGIN, {"username": email, "password": PASSWORD}).status_code == 302

    def is_signed_in(self, client: Client) -> bool:
        return client.get(HOME)["Location"] == reverse("dashboard", kwargs={"account_id": self.acme.public_id})


class ProfilePageTests(ProfileTestCase):
    def test_it_needs_a_signed_in_user(self):
        for path in (PROFILE, EMAIL):
            assert Client().get(path)["Location"] == f"{LOGIN}?next={path}"

    def test_it_shows_the_name_and_email_and_links_to_the_security_pages(self):
        self.login(self.alice)
        page = self.client.get(PROFILE).content.decode()
        assert "Alice Owner" in page and "alice@acme.test" in page
        for name in ("accounts:password_change", "two_factor:index", "sessions:index", "accounts:email_change"):
            assert f'href="{reverse(name)}"' in page or f'action="{reverse(name)}"' in page

    def test_the_top_bar_links_to_the_profile(self):
        self.login(self.bob)
        assert f'href="{PROFILE}"' in self.client.get(reverse("sessions:index")).content.decode()

    def test_the_name_changes_without_a_new_password_check(self):
        self.login(self.alice, verified_seconds_ago=3600)
        response = self.client.post(PROFILE, {"full_name": "  Alice Cooper "})
        assert response["Location"] == PROFILE
        self.alice.refresh_from_db()
        assert self.alice.full_name == "Alice Cooper"
        page = self.client.get(PROFILE).content.decode()
        assert "Your name was saved." in page and "Alice Cooper" in page
        assert mail.outbox == []

    def test_a_name_too_long_is_refused_and_kept(self):
        self.login(self.alice)
        response = self.client.post(PROFILE, {"full_name": "x" * 201})
        assert response.status_code == 200
        assert response.context["name_form"].errors["full_name"]
        self.alice.refresh_from_db()
        assert self.alice.full_name == "Alice Owner"

    def test_a_name_change_needs_the_csrf_token(self):
        client = self.login(self.alice, client=Client(enforce_csrf_checks=True))
        assert client.post(PROFILE, {"full_name": "Mallory"}).status_code == 403
        self.alice.refresh_from_db()
        assert self.alice.full_name == "Alice Owner"


class EmailChangeRequestTests(ProfileTestCase):
    def test_it_needs_a_recent_password_check_and_comes_back_to_the_form(self):
        self.login(self.alice, verified_seconds_ago=3600)
        response = self.request_change()
        assert response["Location"] == f"{REAUTH}?next={EMAIL.replace('/', '%2F')}"
        assert self.client.get(EMAIL)["Location"].startswith(REAUTH)
        assert mail.outbox == [] and not EmailChange.objects.exists()
        confirmed = self.client.post(REAUTH, {"password": PASSWORD, "next": EMAIL})
        assert confirmed["Location"] == EMAIL
        assert "New email address" in self.client.get(EMAIL).content.decode()
        assert self.request_change()["Location"] == PROFILE
        assert len(mail.outbox) == 2

    def test_it_mails_a_link_to_the_new_address_and_a_notice_to_the_current_one_and_changes_nothing_yet(self):
        self.login(self.alice)
        response = self.request_change(" Alice.New@Example.test ")
        assert response["Location"] == PROFILE
        assert "We emailed your new address" in self.client.get(PROFILE).content.decode()
        link, notice = sorted(mail.outbox, key=lambda m: m.to != [NEW_ADDRESS])
        assert link.to == [NEW_ADDRESS] and notice.to == ["alice@acme.test"]
        path = link_in(link)
        assert "expires after 24 hours" in link.body
        assert "asked to move the sign-in address" in notice.body
        assert LINK.search(notice.body) is None
        self.alice.refresh_from_db()
        assert self.alice.email == "alice@acme.test"
        assert self.can_log_in("alice@acme.test") and not self.can_log_in(NEW_ADDRESS)
        # The link names the user by public id: no address, in clear or otherwise, travels in it.
        assert path.startswith(f"/accounts/profile/email/{self.alice.public_id}/")
        assert "@" not in path and "alice" not in path.lower()

    def test_the_pending_address_is_stored_encrypted(self):
        self.login(self.alice)
        self.request_change()
        change = EmailChange.objects.get(user=self.alice)
        assert change.email == NEW_ADDRESS
        assert bytes(change.email_index) == user_email_index(NEW_ADDRESS)
        raw = EmailChange.objects.filter(pk=change.pk).values_list("email", flat=True).get()
        assert NEW_ADDRESS.encode() not in bytes(raw)

    @override_settings(ALLOWED_HOSTS=["*"], BASE_URL="https://app.bluespark.test")
    def test_the_link_comes_from_the_configured_base_url_never_the_host_header(self):
        self.login(self.alice)
        self.request_change(HTTP_HOST="evil.example")
        assert len(mail.outbox) == 2
        for message in mail.outbox:
            assert "evil.example" not in message.body
        [link] = [m for m in mail.outbox if m.to == [NEW_ADDRESS]]
        assert LINK.search(link.body).group(1) == "https://app.bluespark.test"

    def test_a_taken_address_gets_the_same_answer_as_a_free_one(self):
        self.login(self.alice)
        free = self.request_change("alice.new@example.test")
        free_page = self.client.get(free["Location"]).content.decode()
        taken = self.request_change("Bob@Acme.test")
        taken_page = self.client.get(taken["Location"]).content.decode()
        assert free.status_code == taken.status_code == 302
        assert free["Location"] == taken["Location"]
        assert strip_csrf(free_page) == strip_csrf(taken_page)
        free_notice, taken_notice = [m for m in mail.outbox if m.to == ["alice@acme.test"]]
        assert (free_notice.subject, free_notice.body) == (taken_notice.subject, taken_notice.body)
        # The owner of the taken address learns that it has an account, and gets no link.
        [note] = [m for m in mail.outbox if m.to == ["bob@acme.test"]]
        assert "another Bluespark account already uses it" in note.body
        assert LINK.search(note.body) is None
        self.bob.refresh_from_db()
        self.alice.refresh_from_db()
        assert (self.alice.email, self.bob.email) == ("alice@acme.test", "bob@acme.test")
        assert not EmailChange.objects.filter(email_index=user_email_index("bob@acme.test")).exists()

    def test_the_current_address_is_refused_with_a_message(self):
        self.login(self.alice)
        response = self.request_change("ALICE@acme.test")
        assert response.status_code == 200
        assert response.context["form"].errors["new_email"] == ["This is already your email address."]
        assert mail.outbox == []

    def test_an_invalid_address_is_refused(self):
        self.login(self.alice)
        response = self.request_change("not an address")
        assert response.status_code == 200
        assert response.context["form"].errors["new_email"]
        assert mail.outbox == []

    def test_requests_are_throttled_per_user(self):
        self.login(self.alice)
        for attempt in range(EMAIL_CHANGE_REQUESTS_PER_USER):
            assert self.request_change(f"alice{attempt}@example.test").status_code == 302
        refused = self.request_change("alice.last@example.test")
        assert refused.status_code == 429
        assert "Too many email change requests" in refused.content.decode()
        assert len(mail.outbox) == 2 * EMAIL_CHANGE_REQUESTS_PER_USER
        # The count is alice's own: bob is not held back by it.
        self.login(self.bob)
        assert self.request_change("bob.new@example.test").status_code == 302


class EmailChangeLinkTests(ProfileTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.login(self.alice)

    def test_opening_the_link_shows_the_change_and_changes_nothing(self):
        path = self.mailed_link()
        page = self.client.get(path)
        assert page.status_code == 200
        assert page["Referrer-Policy"] == "no-referrer"
        assert NEW_ADDRESS in page.content.decode()
        self.alice.refresh_from_db()
        assert self.alice.email == "alice@acme.test"
        assert EmailChange.objects.get(user=self.alice).used_at is None
        assert len(mail.outbox) == 2
        # Still good after being looked at.
        assert self.confirm(path)["Location"] == PROFILE

    def test_confirming_moves_the_sign_in_address_and_tells_the_old_one(self):
        path = self.mailed_link()
        response = self.confirm(path)
        assert response["Location"] == PROFILE
        page = self.client.get(PROFILE).content.decode()
        assert "Your email address was changed" in page and NEW_ADDRESS in page
        self.alice.refresh_from_db()
        assert self.alice.email == NEW_ADDRESS
        assert bytes(self.alice.email_index) == user_email_index(NEW_ADDRESS)
        assert self.can_log_in(NEW_ADDRESS)
        assert not self.can_log_in("alice@acme.test")
        changed = mail.outbox[-1]
        assert changed.to == ["alice@acme.test"]
        assert "sign-in address of your Bluespark account was just changed" in changed.body
        assert NEW_ADDRESS not in changed.body

    def test_confirming_rotates_this_session_key_and_ends_the_others(self):
        other = self.login(self.alice, client=Client())
        assert self.is_signed_in(other) and self.is_signed_in(self.client)
        before = self.client.session.session_key
        self.confirm(self.mailed_link())
        assert self.client.session.session_key != before
        assert self.is_signed_in(self.client)
        # The other session's row is gone: its next request ends it.
        assert other.get(HOME)["Location"] == LOGIN
        assert "_auth_user_id" not in other.session
        listed = UserSession.objects.filter(user=self.alice).values_list("public_id", flat=True)
        assert list(listed) == [self.client.session[SESSION_ID_KEY]]

    def test_the_link_works_once(self):
        path = self.mailed_link()
        assert self.confirm(path).status_code == 302
        assert self.client.get(path).status_code == 400
        again = self.confirm(path)
        assert again.status_code == 400
        assert INVALID_EMAIL_CHANGE_LINK in again.content.decode()
        assert len(mail.outbox) == 3

    def test_the_link_expires_after_24_hours(self):
        path = self.mailed_link()
        assert EMAIL_CHANGE_TIMEOUT == 24 * 3600
        # Sessions end after two idle hours: each visit a day later signs in afresh.
        with time_machine.travel(timezone.now() + timedelta(seconds=EMAIL_CHANGE_TIMEOUT - 60)):
            self.login(self.alice)
            assert self.client.get(path).status_code == 200
        with time_machine.travel(timezone.now() + timedelta(seconds=EMAIL_CHANGE_TIMEOUT + 60)):
            self.login(self.alice)
            assert self.client.get(path).status_code == 400
            assert self.confirm(path).status_code == 400
        self.alice.refresh_from_db()
        assert self.alice.email == "alice@acme.test"

    def test_a_newer_request_ends_the_older_link(self):
        first = self.mailed_link("alice.first@example.test")
        second = self.mailed_link("alice.second@example.test")
        # Only the newest request is kept: the withdrawn address is not stored any longer.
        assert EmailChange.objects.filter(user=self.alice).count() == 1
        assert self.client.get(first).status_code == 400
        assert self.confirm(first).status_code == 400
        assert self.confirm(second)["Location"] == PROFILE
        self.alice.refresh_from_db()
        assert self.alice.email == "alice.second@example.test"

    def test_a_newer_request_for_the_same_address_ends_the_older_link(self):
        first = self.mailed_link()
        second = self.mailed_link()
        assert first != second
        assert self.confirm(first).status_code == 400
        assert self.confirm(second).status_code == 302

    def test_a_newer_request_for_a_taken_address_ends_the_older_link(self):
        first = self.mailed_link()
        self.request_change("charlie@globex.test")
        assert self.confirm(first).status_code == 400
        self.alice.refresh_from_db()
        assert self.alice.email == "alice@acme.test"

    def test_a_tampered_token_gives_a_clear_400(self):
        path = self.mailed_link()
        tampered = path[:-3] + ("zz/" if not path.endswith("zz/") else "yy/")
        for response in (self.client.get(tampered), self.confirm(tampered)):
            assert response.status_code == 400
            assert INVALID_EMAIL_CHANGE_LINK in response.content.decode()
            assert "Ask for a new link" in response.content.decode()
        self.alice.refresh_from_db()
        assert self.alice.email == "alice@acme.test"

    def test_a_link_naming_another_or_no_user_gives_a_clear_400(self):
        path = self.mailed_link()
        for user_id in (self.bob.public_id, "usr_nobody", "not-an-id"):
            other = path.replace(self.alice.public_id, user_id)
            for response in (self.client.get(other), self.confirm(other)):
                assert response.status_code == 400
                assert INVALID_EMAIL_CHANGE_LINK in response.content.decode()
        assert self.confirm(path).status_code == 302

    def test_someone_else_signed_in_cannot_use_the_link(self):
        path = self.mailed_link()
        charlie = self.login(self.charlie, client=Client())
        for response in (charlie.get(path), self.confirm(path, client=charlie)):
            assert response.status_code == 400
            assert INVALID_EMAIL_CHANGE_LINK in response.content.decode()
        self.charlie.refresh_from_db()
        self.alice.refresh_from_db()
        assert (self.alice.email, self.charlie.email) == ("alice@acme.test", "charlie@globex.test")

    def test_a_signed_out_visitor_logs_in_first_and_comes_back_to_the_link(self):
        path = self.mailed_link()
        visitor = Client()
        response = visitor.get(path)
        assert response.status_code == 302 and response["Location"].startswith(f"{LOGIN}?next=")
        logged_in = visitor.post(response["Location"], {"username": "alice@acme.test", "password": PASSWORD})
        assert logged_in["Location"] == path
        assert visitor.get(path).status_code == 200
        assert self.confirm(path, client=visitor)["Location"] == PROFILE

    def test_an_address_taken_after_the_link_was_sent_is_refused_when_confirming(self):
        path = self.mailed_link()
        make_user(NEW_ADDRESS)
        response = self.confirm(path)
        assert response.status_code == 400
        assert EMAIL_TAKEN_SINCE in response.content.decode()
        self.alice.refresh_from_db()
        assert self.alice.email == "alice@acme.test"
        assert self.can_log_in("alice@acme.test")
        assert len(mail.outbox) == 2


class EmailChangeLoggingTests(ProfileTestCase):
    def test_security_events_name_the_user_by_public_id_only(self):
        self.login(self.alice)
        with self.assertLogs("bluespark.security", level="INFO") as logs:
            path = self.mailed_link()
            self.confirm(path)
        events = [(record.getMessage(), record.user) for record in logs.records]
        assert events == [("email_change_requested", self.alice.public_id), ("email_changed", self.alice.public_id)]

    def test_no_address_and_no_token_ever_reach_a_log(self):
        self.login(self.alice)
        with captured_logs() as stream:
            self.request_change("bob@acme.test")
            path = self.mailed_link()
            token = path.rstrip("/").rsplit("/", 1)[1]
            self.client.get(path)
            self.client.get(path[:-3] + "zz/")
            self.confirm(path)
            self.confirm(path)
            self.client.get(PROFILE)
        logged = stream.getvalue()
        assert "email_change_requested" in logged and "email_changed" in logged, "the scan would prove nothing"
        assert "[redacted]" in logged
        for secret in ("alice@acme.test", NEW_ADDRESS, "bob@acme.test", token):
            assert secret not in logged
