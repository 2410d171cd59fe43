"""Segments: the JSON filter language, its refusals, and the counts the dashboard shows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.db.models import Q
from django.test import override_settings
from django.utils import timezone

from accounts.tenancy import TenantScopeError, account_scope
from contacts import segments, services
from contacts.models import Contact, ContactTag, CustomField, MailingList, Segment, SensitiveValue, Subscription, Tag
from contacts.segment_tasks import count_segment_definition, refresh_segment_count
from contacts.segments import (
    ENGAGEMENT_UNAVAILABLE,
    SegmentError,
    contacts_matching,
    count,
    count_definition_for_display,
    count_definition_now,
    count_for_display,
    refresh_count,
    validate,
)
from contacts.services import create_contact
from tests.cast import CastTestCase

NOW = timezone.now()
TODAY = NOW.astimezone(dt.UTC).date()
DROP = "'; DROP TABLE contacts_contact; --"
PLANS = ["free", "pro", "team"]


@dataclass
class Person:
    """What the test knows of a contact, for the Python filter the counts are checked against."""

    email: str
    status: str = Contact.Status.SUBSCRIBED
    source: str = Contact.Source.MANUAL
    created_at: dt.datetime = NOW
    updated_at: dt.datetime = NOW
    attributes: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    lists: dict[str, str] = field(default_factory=dict)  # "main" / "news" -> subscription status
    passport: str | None = None

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2].lower()


def at(year: int, month: int, day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


PEOPLE = {
    "ann": Person(
        "ann@example.com",
        source=Contact.Source.FORM,
        created_at=at(2024, 1, 10),
        updated_at=at(2024, 3, 1),
        attributes={"city": "Paris", "age": 34, "birthday": "1990-05-01", "vip": True, "plan": "pro"},
        tags=("vip",),
        lists={"main": "subscribed", "news": "pending"},
        passport="X1234567",
    ),
    "bo": Person(
        "bo@Example.org",
        status=Contact.Status.UNSUBSCRIBED,
        source=Contact.Source.IMPORT,
        created_at=at(2024, 6, 15),
        updated_at=at(2024, 6, 15),
        attributes={"city": "paris", "age": 17.5, "birthday": "2010-12-31", "vip": False, "plan": "free"},
        tags=("beta",),
        lists={"main": "unsubscribed"},
    ),
    "cy": Person(
        "cy@example.com",
        status=Contact.Status.BOUNCED,
        source=Contact.Source.API,
        created_at=NOW - dt.timedelta(days=2),
        updated_at=NOW - dt.timedelta(hours=20),
        # Values of the wrong shape (written before a field changed type): "no value", never an error.
        attributes={"city": "Berlin", "age": "abc", "birthday": "soon", "plan": "team"},
        tags=("vip", "beta"),
        lists={"news": "subscribed", "main": "pending"},
        passport="Y7654321",
    ),
    "dee": Person("dee@mail.test", created_at=NOW - dt.timedelta(days=40), updated_at=NOW - dt.timedelta(days=40)),
    "eve": Person(
        "eve@example.com",
        source=Contact.Source.IMPORT,
        created_at=at(2025, 2, 1, 0),
        updated_at=NOW - dt.timedelta(hours=1),
        attributes={
            "city": "100%_real",
            "age": 0,
            "birthday": (TODAY - dt.timedelta(days=3)).isoformat(),
            "vip": None,
            "nickname": "",
        },
        lists={"main": "subscribed"},
    ),
    "zoe": Person(
        "zoe@exämple.com",
        status=Contact.Status.COMPLAINED,
        created_at=at(2025, 2, 2, 0),
        updated_at=at(2025, 2, 2, 0),
        attributes={"city": DROP, "age": -3, "nickname": "Zo"},
    ),
}


def matching(predicate: Any) -> set[str]:
    return {name for name, person in PEOPLE.items() if predicate(person)}


def number(person: Person) -> float | None:
    value = person.attributes.get("age")
    return value if isinstance(value, int | float) else None


def day(person: Person) -> str | None:
    value = person.attributes.get("birthday")
    return value if isinstance(value, str) and value[:4].isdigit() else None


class SegmentTestCase(CastTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        super().setUpTestData()
        acme = cls.acme
        with account_scope(acme):
            cls.news = MailingList.objects.create(account=acme, name="News")
            lists = {"main": cls.acme_list, "news": cls.news}
            tags = {name: Tag.objects.create(account=acme, name=name) for name in ("vip", "beta", "unused")}
            make = CustomField.objects.create
            cls.fields = {
                "city": make(account=acme, key="city", label="City"),
                "nickname": make(account=acme, key="nickname", label="Nickname"),
                "age": make(account=acme, key="age", label="Age", type=CustomField.Type.NUMBER),
                "birthday": make(account=acme, key="birthday", label="Birthday", type=CustomField.Type.DATE),
                "vip": make(account=acme, key="vip", label="VIP", type=CustomField.Type.BOOLEAN),
                "plan": make(
                    account=acme,
                    key="plan",
                    label="Plan",
                    type=CustomField.Type.CHOICE,
                    choices=["free", "pro", "team"],
                ),
                "passport": make(account=acme, key="passport", label="Passport", sensitive=True),
            }
            cls.contacts = {}
            for name, person in PEOPLE.items():
                contact = create_contact(acme, email=person.email)
                Contact.objects.filter(pk=contact.pk).update(
                    status=person.status,
                    source=person.source,
                    created_at=person.created_at,
                    updated_at=person.updated_at,
                    attributes=person.attributes,
                )
                for tag in person.tags:
                    ContactTag.objects.create(account=acme, contact=contact, tag=tags[tag])
                for list_name, status in person.lists.items():
                    Subscription.objects.create(
                        account=acme,
                        contact=contact,
                        mailing_list=lists[list_name],
                        status=status,
                        consent_source=Contact.Source.MANUAL,
                    )
                if person.passport:
                    SensitiveValue.objects.create(
                        account=acme, contact=contact, field=cls.fields["passport"], value=person.passport
                    )
                cls.contacts[name] = contact
        with account_scope(cls.globex):
            globex = cls.globex
            other = create_contact(globex, email="ann@example.com")
            Contact.objects.filter(pk=other.pk).update(attributes={"city": "Paris", "region": "EU"})
            cls.globex_tag = Tag.objects.create(account=globex, name="globex-only")
            ContactTag.objects.create(account=globex, contact=other, tag=cls.globex_tag)
            ContactTag.objects.create(account=globex, contact=other, tag=Tag.objects.create(account=globex, name="vip"))
            CustomField.objects.create(account=globex, key="region", label="Region")
            Subscription.objects.create(
                account=globex, contact=other, mailing_list=cls.globex_list, consent_source=Contact.Source.MANUAL
            )

    def names(self, definition: dict) -> set[str]:
        with account_scope(self.acme):
            found = set(contacts_matching(self.acme, definition).values_list("pk", flat=True))
            total = count(self.acme, definition)
        assert total == len(found)
        return {name for name, contact in self.contacts.items() if contact.pk in found}

    def refused(self, definition: Any, path: str) -> SegmentError:
        with account_scope(self.acme), pytest.raises(SegmentError) as caught:
            validate(self.acme, definition)
        assert caught.value.path == path, str(caught.value)
        assert str(caught.value).startswith(f"{path or 'definition'}: ")
        return caught.value


def cond(field_name: str, op: str, value: Any = None) -> dict[str, Any]:
    condition = {"field": field_name, "op": op}
    if value is not None:
        condition["value"] = value
    return condition


# Every field and operator, beside the Python filter that says whom it should find.
CASES: list[tuple[dict[str, Any], Any]] = [
    (cond("status", "eq", "subscribed"), lambda p: p.status == "subscribed"),
    (cond("status", "neq", "subscribed"), lambda p: p.status != "subscribed"),
    (cond("status", "in", ["bounced", "complained"]), lambda p: p.status in ("bounced", "complained")),
    (cond("source", "eq", "import"), lambda p: p.source == "import"),
    (cond("source", "in", ["form", "api"]), lambda p: p.source in ("form", "api")),
    (cond("created_at", "before", "2024-06-15"), lambda p: p.created_at < at(2024, 6, 15, 0)),
    (cond("created_at", "after", "2025-02-01"), lambda p: p.created_at >= at(2025, 2, 2, 0)),
    (cond("created_at", "after", "2025-02-01T00:00:00Z"), lambda p: p.created_at > at(2025, 2, 1, 0)),
    (cond("created_at", "before", "2025-02-01T01:00:00+01:00"), lambda p: p.created_at < at(2025, 2, 1, 0)),
    (cond("created_at", "within_days", 30), lambda p: p.created_at >= NOW - dt.timedelta(days=30)),
    (cond("updated_at", "within_days", 1), lambda p: p.updated_at >= NOW - dt.timedelta(days=1)),
    (cond("updated_at", "before", "2024-06-16"), lambda p: p.updated_at < at(2024, 6, 16, 0)),
    (cond("email_domain", "eq", "EXAMPLE.com"), lambda p: p.domain == "example.com"),
    (cond("email_domain", "eq", "@example.org"), lambda p: p.domain == "example.org"),
    (cond("email_domain", "in", ["example.org", "mail.test"]), lambda p: p.domain in ("example.org", "mail.test")),
    (cond("tag", "has", "vip"), lambda p: "vip" in p.tags),
    (cond("tag", "has_not", "vip"), lambda p: "vip" not in p.tags),
    (cond("tag", "has", "unused"), lambda p: False),
    (cond("list", "subscribed", "MAIN"), lambda p: p.lists.get("main") == "subscribed"),
    (cond("list", "pending", "MAIN"), lambda p: p.lists.get("main") == "pending"),
    (cond("list", "unsubscribed", "MAIN"), lambda p: p.lists.get("main") == "unsubscribed"),
    (cond("list", "not_subscribed", "MAIN"), lambda p: p.lists.get("main") != "subscribed"),
    (cond("list", "subscribed", "NEWS"), lambda p: p.lists.get("news") == "subscribed"),
    (cond("attributes.city", "eq", "PARIS"), lambda p: str(p.attributes.get("city", "")).lower() == "paris"),
    (cond("attributes.city", "neq", "paris"), lambda p: str(p.attributes.get("city", "")).lower() != "paris"),
    (cond("attributes.city", "contains", "ER"), lambda p: "er" in str(p.attributes.get("city", "")).lower()),
    (cond("attributes.city", "starts_with", "pa"), lambda p: str(p.attributes.get("city", "")).lower()[:2] == "pa"),
    (cond("attributes.city", "is_set"), lambda p: bool(p.attributes.get("city"))),
    (cond("attributes.city", "is_not_set"), lambda p: not p.attributes.get("city")),
    (cond("attributes.nickname", "is_set"), lambda p: bool(p.attributes.get("nickname"))),
    (cond("attributes.nickname", "is_not_set"), lambda p: not p.attributes.get("nickname")),
    (cond("attributes.age", "eq", 34), lambda p: number(p) == 34),
    (cond("attributes.age", "neq", 34), lambda p: number(p) != 34),
    (cond("attributes.age", "gt", 17), lambda p: number(p) is not None and number(p) > 17),
    (cond("attributes.age", "gte", 17.5), lambda p: number(p) is not None and number(p) >= 17.5),
    (cond("attributes.age", "lt", 0), lambda p: number(p) is not None and number(p) < 0),
    (cond("attributes.age", "lte", 0), lambda p: number(p) is not None and number(p) <= 0),
    (cond("attributes.birthday", "before", "2000-01-01"), lambda p: day(p) is not None and day(p) < "2000-01-01"),
    (cond("attributes.birthday", "after", "1990-05-01"), lambda p: day(p) is not None and day(p) > "1990-05-01"),
    (
        cond("attributes.birthday", "within_days", 7),
        lambda p: day(p) is not None and (TODAY - dt.timedelta(days=7)).isoformat() <= day(p) <= TODAY.isoformat(),
    ),
    (cond("attributes.vip", "is_true"), lambda p: p.attributes.get("vip") is True),
    (cond("attributes.vip", "is_false"), lambda p: p.attributes.get("vip") is False),
    (cond("attributes.plan", "eq", "pro"), lambda p: p.attributes.get("plan") == "pro"),
    (cond("attributes.plan", "in", ["free", "team"]), lambda p: p.attributes.get("plan") in ("free", "team")),
    (cond("sensitive.passport", "eq", " X1234567 "), lambda p: p.passport == "X1234567"),
    (cond("email", "eq", "CY@example.com"), lambda p: p.email == "cy@example.com"),
]


class SegmentLanguageTests(SegmentTestCase):
    def resolve(self, definition: dict[str, Any]) -> dict[str, Any]:
        """The test's list names ("MAIN", "NEWS") made into the lists' public ids."""
        if definition.get("field") == "list":
            ids = {"MAIN": self.acme_list.public_id, "NEWS": self.news.public_id}
            return {**definition, "value": ids[definition["value"]]}
        return definition

    def test_every_field_and_operator_finds_what_a_python_filter_over_the_same_contacts_finds(self):
        for definition, predicate in CASES:
            definition = self.resolve(definition)
            with self.subTest(definition=definition):
                assert self.names({"all": [definition]}) == matching(predicate)
                # A bare condition is the same as a group of one.
                assert self.names(definition) == matching(predicate)

    def test_not_is_the_exact_complement_of_every_condition(self):
        everyone = set(PEOPLE)
        for definition, predicate in CASES:
            definition = self.resolve(definition)
            with self.subTest(definition=definition):
                assert self.names({"not": definition}) == everyone - matching(predicate)

    def test_groups_nest_with_and_or_not(self):
        definition = {
            "any": [
                {"all": [cond("status", "eq", "subscribed"), cond("tag", "has", "vip")]},
                {"all": [cond("attributes.city", "eq", "paris"), {"not": cond("status", "eq", "subscribed")}]},
                {"not": {"any": [cond("email_domain", "eq", "example.com"), cond("attributes.age", "lt", 1)]}},
            ]
        }
        expected = matching(
            lambda p: (
                (p.status == "subscribed" and "vip" in p.tags)
                or (str(p.attributes.get("city")).lower() == "paris" and p.status != "subscribed")
                or not (p.domain == "example.com" or (number(p) is not None and number(p) < 1))
            )
        )
        assert expected == {"ann", "bo", "dee"}
        assert self.names(definition) == expected

    def test_an_empty_definition_matches_every_contact_of_the_account_and_only_those(self):
        assert self.names({}) == set(PEOPLE)
        assert self.names({"all": []}) == set(PEOPLE)
        with account_scope(self.acme):
            assert count(self.acme, {}) == len(PEOPLE)
            assert validate(self.acme, {}) == {"all": []}

    def test_each_contact_is_counted_once_however_many_tags_and_lists_match(self):
        definition = {"any": [cond("tag", "has", "vip"), cond("tag", "has", "beta"), cond("attributes.city", "is_set")]}
        with account_scope(self.acme):
            assert count(self.acme, definition) == len(matching(lambda p: p.tags or p.attributes.get("city")))
            rows = list(contacts_matching(self.acme, definition).values_list("pk", flat=True))
        assert len(rows) == len(set(rows))

    def test_email_equality_ignores_case_and_unicode_form_through_the_blind_index(self):
        # Full-width letters and upper case are the same address after NFKC and lower-casing.
        assert self.names(cond("email", "eq", "ＺＯＥ@EXÄMPLE.COM")) == {"zoe"}
        assert self.names(cond("email", "eq", " Ann@Example.com ")) == {"ann"}
        assert self.names(cond("email", "eq", "nobody@example.com")) == set()

    def test_an_address_or_a_sensitive_value_is_kept_only_as_its_blind_index(self):
        definition = {"all": [cond("email", "eq", "Ann@Example.com"), cond("sensitive.passport", "eq", "X1234567")]}
        with account_scope(self.acme):
            normalised = validate(self.acme, definition)
        assert "ann@" not in str(normalised).lower()
        assert "X1234567" not in str(normalised)
        email_index, passport_index = (c["value_index"] for c in normalised["all"])
        assert bytes.fromhex(email_index) == bytes(self.contacts["ann"].email_index)
        # The normalised form is itself valid and finds the same contact.
        assert self.names(normalised) == {"ann"}
        with account_scope(self.acme):
            assert validate(self.acme, normalised) == normalised
        assert passport_index != email_index

    def test_the_same_address_does_not_give_the_same_index_in_another_account(self):
        with account_scope(self.acme):
            acme_form = validate(self.acme, cond("email", "eq", "ann@example.com"))
        with account_scope(self.globex):
            globex_form = validate(self.globex, cond("email", "eq", "ann@example.com"))
            assert count(self.globex, acme_form) == 0
            assert count(self.globex, globex_form) == 1

    def test_sensitive_fields_match_equality_only(self):
        assert self.names(cond("sensitive.passport", "eq", "Y7654321")) == {"cy"}
        assert self.names(cond("sensitive.passport", "eq", "y7654321")) == set()
        assert self.names({"not": cond("sensitive.passport", "eq", "Y7654321")}) == set(PEOPLE) - {"cy"}
        for op in ("neq", "contains", "starts_with", "is_set", "in"):
            error = self.refused(cond("sensitive.passport", op, "Y7"), "op")
            assert "sensitive.passport" in str(error)
        error = self.refused(cond("attributes.passport", "eq", "Y7654321"), "field")
        assert "sensitive" in str(error)
        error = self.refused(cond("sensitive.city", "eq", "Paris"), "field")
        assert "attributes.city" in str(error)

    def test_values_that_look_like_sql_or_like_patterns_are_only_values(self):
        assert self.names(cond("attributes.city", "eq", DROP)) == {"zoe"}
        assert self.names(cond("attributes.city", "contains", "DROP TABLE")) == {"zoe"}
        assert self.names(cond("attributes.city", "contains", "%")) == {"eve"}
        assert self.names(cond("attributes.city", "contains", "_")) == {"eve", "zoe"}  # "contacts_contact"
        assert self.names(cond("attributes.city", "starts_with", "P_ris")) == set()
        assert self.names(cond("attributes.city", "contains", "0%_r")) == {"eve"}
        assert self.names(cond("attributes.city", "starts_with", "%")) == set()
        assert self.names(cond("attributes.city", "eq", "%")) == set()
        assert self.names(cond("attributes.city", "contains", "\\")) == set()
        assert self.names(cond("sensitive.passport", "eq", DROP)) == set()
        self.refused(cond("tag", "has", DROP), "value")
        with account_scope(self.acme):
            assert Contact.objects.count() == len(PEOPLE)
        assert "contacts_contact" in connection.introspection.table_names()

    def test_a_value_of_the_wrong_shape_is_no_value_rather_than_an_error(self):
        # cy's age is "abc" and birthday "soon": no comparison finds them, every negation does.
        assert "cy" not in self.names(cond("attributes.age", "gte", -1000))
        assert "cy" not in self.names(cond("attributes.age", "lte", 1000))
        assert "cy" in self.names(cond("attributes.age", "neq", 0))
        assert "cy" not in self.names(cond("attributes.birthday", "before", "9999-12-31"))
        assert "cy" in self.names({"not": cond("attributes.birthday", "after", "0001-01-01")})

    def test_a_key_that_reads_like_a_lookup_is_still_one_key(self):
        with account_scope(self.acme):
            CustomField.objects.create(account=self.acme, key="contains", label="Odd")
            CustomField.objects.create(account=self.acme, key="a__b", label="Odder")
            Contact.objects.filter(pk=self.contacts["dee"].pk).update(attributes={"contains": "x", "a__b": "y"})
        assert self.names(cond("attributes.contains", "eq", "X")) == {"dee"}
        assert self.names(cond("attributes.a__b", "eq", "y")) == {"dee"}

    def test_a_count_reads_the_fields_tags_and_lists_once_each(self):
        definition = {
            "all": [
                cond("status", "eq", "subscribed"),
                cond("list", "subscribed", self.acme_list.public_id),
                cond("list", "pending", self.news.public_id),
                cond("tag", "has", "vip"),
                cond("tag", "has_not", "beta"),
                cond("attributes.city", "eq", "Paris"),
                cond("attributes.age", "gt", 3),
            ]
        }
        with account_scope(self.acme), self.assertNumQueries(4):
            assert count(self.acme, definition) == 1

    def test_it_runs_only_inside_the_accounts_own_scope(self):
        with pytest.raises(TenantScopeError):
            count(self.acme, {})
        with account_scope(self.globex), pytest.raises(TenantScopeError):
            count(self.acme, {})
        with account_scope(self.globex), pytest.raises(TenantScopeError):
            validate(self.acme, {})


class SegmentRefusalTests(SegmentTestCase):
    def test_another_accounts_list_tag_and_custom_field_are_unknown_here(self):
        error = self.refused({"all": [cond("list", "subscribed", self.globex_list.public_id)]}, "all[0].value")
        assert self.globex_list.public_id in str(error)
        self.refused({"all": [cond("tag", "has", "globex-only")]}, "all[0].value")
        self.refused({"any": [cond("status", "eq", "bounced"), cond("attributes.region", "eq", "EU")]}, "any[1].field")
        # Globex's own tag named like Acme's counts Globex's contact only, and the reverse.
        with account_scope(self.globex):
            assert count(self.globex, cond("tag", "has", "vip")) == 1
            assert count(self.globex, cond("list", "subscribed", self.globex_list.public_id)) == 1
            with pytest.raises(SegmentError):
                count(self.globex, cond("list", "subscribed", self.acme_list.public_id))

    def test_a_bad_definition_is_refused_with_the_path_of_the_bad_part(self):
        cases: list[tuple[Any, str, str]] = [
            ([], "", "JSON object"),
            ({"all": {}}, "all", "list"),
            ({"all": [], "any": []}, "", "exactly one key"),
            ({"every": []}, "", "exactly one key"),
            ({"any": []}, "any", "at least one"),
            ({"all": [{"all": []}]}, "all[0].all", "at least one"),
            ({"all": ["status"]}, "all[0]", "group"),
            ({"all": [cond("status", "eq", "subscribed"), cond("colour", "eq", "red")]}, "all[1].field", "unknown"),
            ({"all": [{"field": "status", "value": "subscribed"}]}, "all[0].op", "missing"),
            ({"all": [cond("status", "like", "sub%")]}, "all[0].op", "'like'"),
            ({"all": [cond("status", "eq", "gone")]}, "all[0].value", "not one of"),
            ({"all": [cond("status", "in", [])]}, "all[0].value", "non-empty"),
            ({"all": [cond("status", "in", ["bounced", 3])]}, "all[0].value[1]", "string"),
            ({"all": [cond("source", "neq", "api")]}, "all[0].op", "source"),
            ({"all": [{**cond("status", "eq", "bounced"), "sql": "1=1"}]}, "all[0].sql", "unknown key"),
            ({"not": {"all": [cond("created_at", "before", "yesterday")]}}, "not.all[0].value", "YYYY-MM-DD"),
            ({"all": [cond("created_at", "after", "2025-01-01T10:00:00")]}, "all[0].value", "offset"),
            ({"all": [cond("created_at", "within_days", 0)]}, "all[0].value", "days"),
            ({"all": [cond("created_at", "within_days", True)]}, "all[0].value", "days"),
            ({"all": [cond("email", "contains", "@example.com")]}, "all[0].op", "email"),
            ({"all": [cond("email", "eq", "not an address")]}, "all[0].value", "email address"),
            ({"all": [cond("email_domain", "eq", "a@b.com")]}, "all[0].value", "domain"),
            ({"all": [cond("list", "subscribed", "lst_nope")]}, "all[0].value", "no list"),
            ({"all": [cond("tag", "has", "")]}, "all[0].value", "tag name"),
            ({"all": [cond("attributes.city", "gt", 3)]}, "all[0].op", "attributes.city"),
            ({"all": [cond("attributes.city", "eq", 3)]}, "all[0].value", "string"),
            ({"all": [cond("attributes.city", "is_set", "yes")]}, "all[0].value", "no value"),
            ({"all": [cond("attributes.age", "gt", "3")]}, "all[0].value", "number"),
            ({"all": [cond("attributes.age", "contains", "3")]}, "all[0].op", "attributes.age"),
            ({"all": [cond("attributes.birthday", "before", "2020-02-30")]}, "all[0].value", "YYYY-MM-DD"),
            ({"all": [cond("attributes.vip", "eq", True)]}, "all[0].op", "is_true"),
            ({"all": [cond("attributes.plan", "eq", "gold")]}, "all[0].value", "free, pro, team"),
            ({"all": [cond("attributes.plan", "in", ["pro", "gold"])]}, "all[0].value[1]", "not one of"),
            ({"all": [cond("attributes.nope", "eq", "x")]}, "all[0].field", "no custom field"),
            ({"all": [cond("first_name", "eq", "Ann")]}, "all[0].field", "encrypted"),
            ({"all": [cond("last_name", "eq", "Lee")]}, "all[0].field", "encrypted"),
            ({"all": [{"field": "email", "op": "eq", "value_index": "zz"}]}, "all[0].value_index", "hexadecimal"),
            ({"all": [{"field": "status", "op": "eq", "value_index": "00" * 32}]}, "all[0].value_index", "only"),
            ({"all": [cond("engagement", "opened", 30)]}, "all[0].op", "opened_within_days"),
            ({"all": [cond("engagement", "clicked_within_days", -1)]}, "all[0].value", "days"),
        ]
        for definition, path, words in cases:
            with self.subTest(definition=definition):
                error = self.refused(definition, path)
                assert words in error.message, error.message

    def test_names_are_refused_because_they_have_no_index(self):
        error = self.refused(cond("first_name", "eq", "Ann"), "field")
        assert str(error) == "field: first_name is encrypted without a search index, so segments cannot filter on it."

    def test_groups_nest_five_deep_and_no_deeper(self):
        condition = cond("status", "eq", "subscribed")
        five = {"all": [{"any": [{"not": {"all": [{"any": [condition]}]}}]}]}
        with account_scope(self.acme):
            assert validate(self.acme, five) == five
        self.refused({"not": five}, "not.all[0].any[0].not.all[0]")

    def test_at_most_fifty_conditions(self):
        condition = cond("status", "eq", "subscribed")
        with account_scope(self.acme):
            assert count(self.acme, {"any": [condition] * 50}) == len(matching(lambda p: p.status == "subscribed"))
        self.refused({"any": [{"all": [condition] * 25}, {"all": [condition] * 26}]}, "any[1].all[25]")

    def test_strings_hold_two_hundred_characters_and_lists_a_hundred_items(self):
        with account_scope(self.acme):
            validate(self.acme, cond("attributes.city", "contains", "x" * 200))
            validate(self.acme, cond("email_domain", "in", [f"d{i}.test" for i in range(100)]))
        self.refused(cond("attributes.city", "contains", "x" * 201), "value")
        self.refused(cond("email_domain", "in", [f"d{i}.test" for i in range(101)]), "value")
        self.refused({"any": [{"not": cond("status", "eq", "bounced")}] * 101}, "any")

    def test_engagement_is_valid_language(self):
        # What it matches is in test_engagement.py, with opens and clicks recorded.
        definition = {"all": [cond("status", "eq", "subscribed"), cond("engagement", "opened_within_days", 30)]}
        with account_scope(self.acme):
            assert validate(self.acme, definition) == definition
            assert validate(self.acme, cond("engagement", "clicked_within_days", 7)) == {
                "all": [cond("engagement", "clicked_within_days", 7)]
            }

    def test_engagement_cannot_run_where_no_app_registered_an_engagement_filter(self):
        # An installation without delivery: the language still holds (saved segments keep their conditions),
        # but nothing can say who opened or clicked, so running it is refused at the condition's path.
        definition = {"all": [cond("status", "eq", "subscribed"), cond("engagement", "opened_within_days", 30)]}
        with segments.using_engagement_filter(None), account_scope(self.acme):
            assert validate(self.acme, definition) == definition
            for run in (contacts_matching, count, count_definition_for_display):
                with self.subTest(run=run.__name__), pytest.raises(SegmentError) as caught:
                    run(self.acme, definition)
                assert caught.value.path == "all[1].field"
                assert caught.value.message == ENGAGEMENT_UNAVAILABLE
            # A large account's draft is refused before a background count is queued for it.
            with (
                override_settings(SEGMENT_LIVE_COUNT_LIMIT=0),
                self.captureOnCommitCallbacks() as queued,
                pytest.raises(SegmentError),
            ):
                count_definition_for_display(self.acme, definition)
            assert queued == []
            assert count(self.acme, cond("status", "eq", "subscribed")) == len(
                matching(lambda p: p.status == Contact.Status.SUBSCRIBED)
            )
        with account_scope(self.acme):  # delivery's filter is back after the block; nobody here opened anything
            assert count(self.acme, definition) == 0

    def test_engagement_compiles_through_the_registered_filter_with_its_act_and_window(self):
        asked = []

        def bounced_as_clickers(act: str, since: dt.datetime) -> Q:
            asked.append((act, since))
            return Q(status=Contact.Status.BOUNCED)

        with time_machine.travel(NOW, tick=False), segments.using_engagement_filter(bounced_as_clickers):
            assert self.names(cond("engagement", "clicked_within_days", 7)) == {"cy"}
            assert self.names({"not": cond("engagement", "opened_within_days", 1)}) == set(PEOPLE) - {"cy"}
        # names() runs each definition twice (the rows, then the count).
        assert asked == [("clicked", NOW - dt.timedelta(days=7))] * 2 + [("opened", NOW - dt.timedelta(days=1))] * 2

    def test_a_saved_segment_whose_list_was_deleted_cannot_run(self):
        with account_scope(self.acme):
            definition = validate(self.acme, cond("list", "subscribed", self.news.public_id))
            Subscription.objects.filter(mailing_list=self.news).delete()
            MailingList.objects.filter(pk=self.news.pk).delete()
            for run in (contacts_matching, count):
                with pytest.raises(SegmentError) as caught:
                    run(self.acme, definition)
                assert caught.value.path == "all[0].value"
                assert caught.value.message == f"no list {self.news.public_id!r} in this account."

    def test_validation_normalises_what_it_accepts(self):
        definition = {
            "all": [
                cond("status", "in", ["bounced", "bounced", "complained"]),
                cond("email_domain", "in", ["@Example.COM", "example.com", " mail.test"]),
                cond("created_at", "after", "2025-02-01T02:00:00+02:00"),
                cond("tag", "has", " vip "),
            ]
        }
        with account_scope(self.acme):
            assert validate(self.acme, definition) == {
                "all": [
                    cond("status", "in", ["bounced", "complained"]),
                    cond("email_domain", "in", ["example.com", "mail.test"]),
                    cond("created_at", "after", "2025-02-01T00:00:00+00:00"),
                    cond("tag", "has", "vip"),
                ]
            }


class SegmentCountTests(SegmentTestCase):
    def make_segment(self, definition: dict) -> Segment:
        with account_scope(self.acme):
            return Segment.objects.create(
                account=self.acme, name="Subscribed VIPs", definition=validate(self.acme, definition)
            )

    def vips(self) -> Segment:
        return self.make_segment({"all": [cond("status", "eq", "subscribed"), cond("tag", "has", "vip")]})

    def test_refreshing_a_count_stores_it_on_the_segment(self):
        segment = self.vips()
        with account_scope(self.acme):
            assert refresh_count(self.acme, segment) == 1
        segment.refresh_from_db()
        assert segment.cached_count == 1
        assert segment.counted_at is not None and segment.counted_at >= segment.updated_at

    def test_a_count_of_a_segment_edited_meanwhile_is_not_stored(self):
        segment = self.vips()
        stale = Segment.objects_unscoped_dangerous.get(pk=segment.pk)
        with account_scope(self.acme):
            segment.definition = {"all": []}
            segment.save()
            assert refresh_count(self.acme, stale) == 1
        segment.refresh_from_db()
        assert segment.cached_count is None

    def test_the_background_task_counts_inside_the_accounts_scope_and_stores_the_count(self):
        segment = self.vips()
        result = refresh_segment_count.apply(args=[self.acme.public_id, segment.public_id], throw=True)
        assert result.get() == 1
        segment.refresh_from_db()
        assert segment.cached_count == 1
        # Another account's segment id is unknown to the task run for Globex.
        assert refresh_segment_count.apply(args=[self.globex.public_id, segment.public_id], throw=True).get() is None
        assert refresh_segment_count.apply(args=["acc_gone", segment.public_id], throw=True).get() is None

    def test_a_draft_definition_is_counted_in_the_background_for_a_large_account(self):
        definition = cond("tag", "has", "vip")
        with override_settings(SEGMENT_LIVE_COUNT_LIMIT=0):
            with account_scope(self.acme), self.captureOnCommitCallbacks() as queued:
                assert count_definition_for_display(self.acme, definition) == (None, True)
            assert len(queued) == 1
            with account_scope(self.acme):
                normalised = validate(self.acme, definition)
            assert count_segment_definition.apply(args=[self.acme.public_id, normalised], throw=True).get() == 2
            with account_scope(self.acme), self.captureOnCommitCallbacks() as queued:
                assert count_definition_for_display(self.acme, definition) == (2, False)
            assert queued == []
            # Globex's builder never sees Acme's figure for the same definition.
            with account_scope(self.globex), self.captureOnCommitCallbacks() as queued:
                assert count_definition_for_display(self.globex, definition) == (None, True)

    @override_settings(SEGMENT_LIVE_COUNT_LIMIT=0)
    def test_a_bulk_change_makes_every_cached_figure_stale(self):
        segment = self.vips()
        definition = cond("tag", "has", "vip")
        with account_scope(self.acme):
            refresh_count(self.acme, segment)
            count_definition_now(self.acme, validate(self.acme, definition))
            assert count_for_display(self.acme, segment) == (1, False)
            assert count_definition_for_display(self.acme, definition) == (2, False)

            results = services.bulk_upsert(self.acme, [{"email": "new-vip@acme.test", "tags": ["vip"]}], source="api")
            assert results[0].status == "created"

            segment.refresh_from_db()
            with self.captureOnCommitCallbacks() as queued:
                assert count_for_display(self.acme, segment) == (1, True)  # the old figure, being refreshed
                assert count_definition_for_display(self.acme, definition) == (None, True)
            assert len(queued) == 2
        # Another account's bulk change leaves Acme's fresh figures alone.
        with account_scope(self.acme):
            refresh_count(self.acme, segment)
        with account_scope(self.globex):
            services.bulk_upsert(self.globex, [{"email": "x@globex.test"}], source="api")
        segment.refresh_from_db()
        with account_scope(self.acme):
            assert count_for_display(self.acme, segment) == (2, False)

    def test_a_bulk_change_still_lands_when_the_cache_is_down(self):
        segment = self.vips()
        with account_scope(self.acme):
            refresh_count(self.acme, segment)
        unreachable = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:9/0"}
        }
        with (
            override_settings(CACHES=unreachable),
            account_scope(self.acme),
            self.assertLogs("contacts.segments") as logs,
        ):
            segments.audience_changed(self.acme)
        segment.refresh_from_db()
        assert segment.counted_at is None  # still made stale in the database
        assert [record.getMessage() for record in logs.records] == ["audience_version_not_bumped"]

    def test_a_small_account_counts_a_draft_now(self):
        with account_scope(self.acme), self.captureOnCommitCallbacks() as queued:
            assert count_definition_for_display(self.acme, cond("tag", "has", "vip")) == (2, False)
            with pytest.raises(SegmentError):
                count_definition_for_display(self.acme, cond("tag", "has", "no-such-tag"))
        assert queued == []

    def test_the_task_leaves_a_segment_that_no_longer_holds_uncounted(self):
        with account_scope(self.acme):
            segment = self.make_segment(cond("list", "subscribed", self.news.public_id))
            Subscription.objects.filter(mailing_list=self.news).delete()
            MailingList.objects.filter(pk=self.news.pk).delete()
        assert refresh_segment_count.apply(args=[self.acme.public_id, segment.public_id], throw=True).get() is None
        segment.refresh_from_db()
        assert segment.cached_count is None

    def test_a_small_account_sees_a_live_count(self):
        segment = self.vips()
        with account_scope(self.acme), self.captureOnCommitCallbacks() as queued:
            assert count_for_display(self.acme, segment) == (1, False)
        assert queued == []

    @override_settings(SEGMENT_LIVE_COUNT_LIMIT=len(PEOPLE) - 1)
    def test_a_large_account_sees_the_cached_count_and_one_refresh_is_queued(self):
        segment = self.vips()
        with account_scope(self.acme), self.captureOnCommitCallbacks() as queued:
            assert count_for_display(self.acme, segment) == (None, True)
            assert count_for_display(self.acme, segment) == (None, True)
        assert len(queued) == 1

        refresh_segment_count.apply(args=[self.acme.public_id, segment.public_id], throw=True)
        segment.refresh_from_db()
        with account_scope(self.acme), self.captureOnCommitCallbacks() as queued:
            assert count_for_display(self.acme, segment) == (1, False)
        assert queued == []

        # An edit makes the cached figure stale: it is still shown while a new one is counted.
        with account_scope(self.acme):
            segment.definition = validate(self.acme, cond("status", "eq", "subscribed"))
            segment.save()
        with account_scope(self.acme), self.captureOnCommitCallbacks() as queued:
            assert count_for_display(self.acme, segment) == (1, True)
        assert len(queued) == 1

    @override_settings(SEGMENT_LIVE_COUNT_LIMIT=len(PEOPLE))
    def test_the_limit_is_inclusive(self):
        with account_scope(self.acme):
            assert segments.account_is_small(self.acme)
        with override_settings(SEGMENT_LIVE_COUNT_LIMIT=len(PEOPLE) - 1), account_scope(self.acme):
            assert not segments.account_is_small(self.acme)

    @override_settings(SEGMENT_LIVE_COUNT_LIMIT=0)
    def test_a_cached_count_older_than_its_age_limit_is_refreshed(self):
        segment = self.vips()
        Segment.objects_unscoped_dangerous.filter(pk=segment.pk).update(
            cached_count=7, counted_at=timezone.now() - segments.CACHED_COUNT_MAX_AGE - dt.timedelta(seconds=1)
        )
        segment.refresh_from_db()
        with account_scope(self.acme), self.captureOnCommitCallbacks() as queued:
            assert count_for_display(self.acme, segment) == (7, True)
        assert len(queued) == 1

    @override_settings(SEGMENT_LIVE_COUNT_LIMIT=0)
    def test_a_definition_that_no_longer_holds_is_reported_on_display_too(self):
        segment = self.make_segment(cond("list", "subscribed", self.news.public_id))
        with account_scope(self.acme):
            Subscription.objects.filter(mailing_list=self.news).delete()
            MailingList.objects.filter(pk=self.news.pk).delete()
        with account_scope(self.acme), self.captureOnCommitCallbacks() as queued, pytest.raises(SegmentError):
            count_for_display(self.acme, segment)
        assert queued == []
