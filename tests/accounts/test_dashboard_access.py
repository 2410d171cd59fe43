"""Every dashboard URL: members only, the same 404 for foreign accounts, roles enforced."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import ApiScope, Role
from accounts.services import create_api_key, invite_member
from accounts.support import grant_support_access
from accounts.tenancy import account_scope
from contacts import importing
from contacts.models import Segment
from contacts.services import create_contact
from security.identifiers import new_public_id
from tests.cast import CastTestCase


def dashboard_routes() -> list[tuple[str, object, list[str]]]:
    """(name, view, URL kwargs) of every view under /a/<account_id>/."""
    found = []

    def walk(patterns, prefix: str, namespace: str, under_account: bool) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                ns = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                walk(pattern.url_patterns, route, ns, under_account or "<str:account_id>" in route)
            elif isinstance(pattern, URLPattern) and (under_account or "<str:account_id>" in route):
                kwargs = re.findall(r"<(?:\w+:)?(\w+)>", route)
                found.append((f"{namespace}{pattern.name}", pattern.callback, kwargs))

    walk(get_resolver().url_patterns, "", "", False)
    return found


def finished_import(test_class, account, owner):
    """An import that ran to the end with one invalid row, so its pages and its error report all answer."""
    upload = SimpleUploadedFile("walkers.csv", b"email\nwalker.import@example.com\nnot-an-address\n", "text/csv")
    contact_import = importing.store_upload(account, upload, created_by=owner)
    importing.configure(contact_import, mapping={"0": "email"}, update_existing=True, mailing_list=None)
    with test_class.captureOnCommitCallbacks(execute=False):
        importing.start_import(account, contact_import, actor=owner)
    return importing.run_contact_import(account, contact_import)


class DashboardAccessTests(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        for account, prefix in ((cls.acme, "acme"), (cls.globex, "globex")):
            with account_scope(account):
                issued = create_api_key(account, name="walker", scopes=[ApiScope.CAMPAIGNS_READ], created_by=cls.alice)
            setattr(cls, f"{prefix}_api_key", issued.key)
        owners = {
            "acme": cls.acme.memberships.get(user=cls.alice),
            "globex": cls.globex.memberships.get(user=cls.charlie),
        }
        folder = tempfile.mkdtemp(prefix="bluespark-walker-imports-")
        cls.addClassCleanup(shutil.rmtree, folder, ignore_errors=True)
        imports_here = override_settings(IMPORT_DIR=Path(folder))
        imports_here.enable()
        cls.addClassCleanup(imports_here.disable)
        for account, prefix in ((cls.acme, "acme"), (cls.globex, "globex")):
            with account_scope(account), cls.captureOnCommitCallbacks():
                sent = invite_member(account, email=f"new@{prefix}.test", role=Role.EDITOR, invited_by=owners[prefix])
            setattr(cls, f"{prefix}_invitation", sent.invitation)
            owner = owners[prefix].user
            grant = grant_support_access(account, access="read_only", days=1, ticket="", granted_by=owner)
            setattr(cls, f"{prefix}_grant", grant)
            with account_scope(account):
                setattr(cls, f"{prefix}_contact", create_contact(account, email=f"walker@{prefix}.test"))
                setattr(cls, f"{prefix}_segment", Segment.objects.create(account=account, name="Walkers"))
                setattr(cls, f"{prefix}_import", finished_import(cls, account, owners[prefix].user))

    def url(self, name: str, kwargs: list[str], account, *, foreign_objects: bool = False) -> str:
        source = "globex" if foreign_objects else "acme"
        values = {
            "account_id": account.public_id,
            "list_id": getattr(self, f"{source}_list").public_id,
            "campaign_id": getattr(self, f"{source}_campaign").public_id,
            "key_id": getattr(self, f"{source}_api_key").public_id,
            "invitation_id": getattr(self, f"{source}_invitation").public_id,
            "grant_id": getattr(self, f"{source}_grant").public_id,
            "user_id": (self.vic if source == "acme" else self.charlie).public_id,
            "contact_id": getattr(self, f"{source}_contact").public_id,
            "segment_id": getattr(self, f"{source}_segment").public_id,
            "import_id": getattr(self, f"{source}_import").public_id,
        }
        missing = set(kwargs) - set(values)
        assert not missing, f"teach this test the URL argument(s) {missing} of {name}"
        return reverse(name, kwargs={key: values[key] for key in kwargs})

    def test_there_are_dashboard_routes_to_check(self):
        names = {name for name, _, _ in dashboard_routes()}
        assert {"dashboard", "campaigns:index", "campaigns:edit", "contacts:list_detail"} <= names

    def test_every_dashboard_view_declares_the_role_it_needs(self):
        undeclared = [name for name, view, _ in dashboard_routes() if not hasattr(view, "required_role")]
        assert not undeclared

    def test_a_member_can_open_every_page(self):
        self.client.force_login(self.alice)
        for name, _, kwargs in dashboard_routes():
            response = self.client.get(self.url(name, kwargs, self.acme))
            # 405: an action that only takes a POST (create, revoke).
            assert response.status_code in (200, 405), name

    def test_anonymous_visitors_are_sent_to_login(self):
        for name, _, kwargs in dashboard_routes():
            response = self.client.get(self.url(name, kwargs, self.acme))
            assert response.status_code == 302, name
            assert response["Location"].startswith(reverse("accounts:login")), name

    def test_charlie_gets_404_for_every_acme_url_whatever_the_method(self):
        self.client.force_login(self.charlie)
        for name, _, kwargs in dashboard_routes():
            url = self.url(name, kwargs, self.acme)
            assert self.client.get(url).status_code == 404, name
            assert self.client.post(url, {"name": "hijack"}).status_code == 404, name

    def test_a_foreign_account_looks_exactly_like_a_missing_one(self):
        self.client.force_login(self.charlie)
        foreign = self.client.get(reverse("dashboard", kwargs={"account_id": self.acme.public_id}))
        missing = self.client.get(reverse("dashboard", kwargs={"account_id": new_public_id("acc")}))
        assert foreign.status_code == missing.status_code == 404
        assert foreign.content == missing.content

    def test_acme_objects_are_404_through_charlies_own_account(self):
        self.client.force_login(self.charlie)
        for name, _, kwargs in dashboard_routes():
            if {
                "list_id",
                "campaign_id",
                "key_id",
                "invitation_id",
                "user_id",
                "grant_id",
                "contact_id",
                "segment_id",
                "import_id",
            } & set(kwargs):
                url = self.url(name, kwargs, self.globex, foreign_objects=False)
                response = self.client.get(url)
                if response.status_code == 405:  # a POST-only action: ask it the way it answers
                    response = self.client.post(url)
                assert response.status_code == 404, name

    def test_staff_without_support_access_get_404(self):
        self.client.force_login(self.sam)
        for name, _, kwargs in dashboard_routes():
            assert self.client.get(self.url(name, kwargs, self.acme)).status_code == 404, name

    def test_a_viewer_reads_but_cannot_write(self):
        self.client.force_login(self.vic)
        for name, view, kwargs in dashboard_routes():
            url = self.url(name, kwargs, self.acme)
            if view.required_role == Role.VIEWER:
                assert self.client.get(url).status_code in (200, 405), name
            else:
                assert self.client.get(url).status_code == 403, name
                assert self.client.post(url, {"name": "vandal"}).status_code == 403, name

    def test_an_editor_creates_and_edits_campaigns(self):
        self.client.force_login(self.bob)
        create = reverse("campaigns:create", kwargs={"account_id": self.acme.public_id})
        response = self.client.post(create, {"name": "Spring sale", "subject": "Hello"})
        assert response.status_code == 302
        edit = response["Location"] + "edit/"
        assert self.client.post(edit, {"name": "Spring sale 2", "subject": "Hi"}).status_code == 302
        detail = self.client.get(response["Location"])
        assert b"Spring sale 2" in detail.content
