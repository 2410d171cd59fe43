"""Sessions: listed per user, revocable, ended when idle or too old, rotated at login."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import UserSession
from accounts.sessions import SESSION_ID_KEY
from tests.cast import PASSWORD, CastTestCase

LOGIN = reverse("accounts:login")
HOME = reverse("accounts:home")


class SessionTests(CastTestCase):
    def browser(self, user, agent: str = "Firefox on Linux", ip: str = "198.51.100.7") -> Client:
        client = Client(HTTP_USER_AGENT=agent, REMOTE_ADDR=ip)
        response = client.post(LOGIN, {"username": user.email, "password": PASSWORD})
        assert response.status_code == 302
        return client

    def test_each_login_is_listed_with_its_device_and_address(self):
        laptop = self.browser(self.alice)
        self.browser(self.alice, agent="Safari on iPhone", ip="203.0.113.44")
        page = laptop.get(reverse("sessions:index")).content.decode()
        assert "Firefox on Linux" in page and "Safari on iPhone" in page and "203.0.113.44" in page
        assert page.count("(this session)") == 1

    def test_the_address_is_stored_encrypted(self):
        self.browser(self.alice, ip="203.0.113.99")
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT ip_address FROM accounts_usersession")
            stored = bytes(cursor.fetchone()[0])
        assert b"203.0.113.99" not in stored

    def test_a_revoked_session_is_logged_out_at_its_next_request(self):
        laptop, phone = self.browser(self.alice), self.browser(self.alice, agent="Phone")
        phone_id = phone.session[SESSION_ID_KEY]
        assert laptop.post(reverse("sessions:revoke", kwargs={"session_id": phone_id})).status_code == 302
        response = phone.get(HOME)
        assert response.status_code == 302 and response["Location"].startswith(LOGIN)
        assert "_auth_user_id" not in phone.session
        assert laptop.get(HOME).status_code == 302 and "_auth_user_id" in laptop.session

    def test_ending_all_other_sessions_keeps_this_one(self):
        laptop = self.browser(self.alice)
        others = [self.browser(self.alice, agent=f"Device {n}") for n in range(2)]
        laptop.post(reverse("sessions:revoke_others"))
        assert UserSession.objects.filter(user=self.alice).count() == 1
        for other in others:
            other.get(HOME)
            assert "_auth_user_id" not in other.session
        laptop.get(HOME)
        assert "_auth_user_id" in laptop.session

    def test_nobody_can_end_someone_elses_session(self):
        alice = self.browser(self.alice)
        charlie = self.browser(self.charlie)
        charlie.post(reverse("sessions:revoke", kwargs={"session_id": alice.session[SESSION_ID_KEY]}))
        alice.get(HOME)
        assert "_auth_user_id" in alice.session

    @override_settings(SESSION_IDLE_SECONDS=600)
    def test_an_idle_session_ends(self):
        start = timezone.now()
        with time_machine.travel(start, tick=False):
            client = self.browser(self.alice)
        with time_machine.travel(start + timedelta(seconds=300), tick=False):
            client.get(HOME)
            assert "_auth_user_id" in client.session
        with time_machine.travel(start + timedelta(seconds=300 + 601), tick=False):
            response = client.get(HOME)
        assert response["Location"].startswith(LOGIN)
        assert "_auth_user_id" not in client.session

    @override_settings(SESSION_IDLE_SECONDS=3600, SESSION_ABSOLUTE_SECONDS=7200)
    def test_an_active_session_still_ends_at_its_absolute_limit(self):
        start = timezone.now()
        with time_machine.travel(start, tick=False):
            client = self.browser(self.alice)
        for minutes in range(30, 120, 30):
            with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
                client.get(HOME)
                assert "_auth_user_id" in client.session
        with time_machine.travel(start + timedelta(minutes=121), tick=False):
            client.get(HOME)
        assert "_auth_user_id" not in client.session

    def test_logging_out_forgets_the_session(self):
        client = self.browser(self.alice)
        client.post(reverse("accounts:logout"))
        assert not UserSession.objects.filter(user=self.alice).exists()

    def test_the_page_needs_a_login(self):
        response = self.client.get(reverse("sessions:index"))
        assert response.status_code == 302 and response["Location"].startswith(LOGIN)
