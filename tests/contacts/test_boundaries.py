"""Contacts knows nothing of what is sent to its contacts (DESIGN.md §2: delivery -> campaigns -> contacts).

Delivery reaches in through contacts' registries (segments, timeline, GDPR
export) instead; these tests fail on an import, a foreign key or a migration
dependency that would point the other way.
"""

from __future__ import annotations

import ast
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.db.migrations.loader import MigrationLoader

CONTACTS = Path(settings.BASE_DIR) / "contacts"
DOWNSTREAM = ("campaigns", "delivery")


def imports_of(source: str) -> list[tuple[int, str]]:
    """Every module imported anywhere in ``source`` (functions and ``TYPE_CHECKING`` blocks included)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def model_references(source: str) -> list[tuple[int, str]]:
    """String constants that name another app's model ("campaigns.Campaign", "delivery.engagementevent")."""
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.partition(".")[0] in DOWNSTREAM
        and node.value.partition(".")[2].isidentifier()
    ]


def is_downstream(module: str) -> bool:
    return module.partition(".")[0] in DOWNSTREAM


def test_no_contacts_module_imports_campaigns_or_delivery():
    modules = sorted(CONTACTS.rglob("*.py"))
    assert CONTACTS / "segments.py" in modules and CONTACTS / "migrations" / "0001_initial.py" in modules
    found = [
        f"{path.relative_to(CONTACTS.parent)}:{line}: imports {module}"
        for path in modules
        for line, module in imports_of(path.read_text(encoding="utf-8"))
        if is_downstream(module)
    ]
    assert found == []


def test_no_contacts_model_or_migration_names_a_campaigns_or_delivery_model():
    paths = [CONTACTS / "models.py", *sorted((CONTACTS / "migrations").glob("*.py"))]
    found = [
        f"{path.relative_to(CONTACTS.parent)}:{line}: {value!r}"
        for path in paths
        for line, value in model_references(path.read_text(encoding="utf-8"))
    ]
    assert found == []
    related = {
        f"{model.__name__}.{field.name} -> {field.related_model._meta.label}"
        for model in apps.get_app_config("contacts").get_models()
        for field in model._meta.get_fields()
        if field.concrete and field.is_relation and field.related_model._meta.app_label in DOWNSTREAM
    }
    assert related == set()


def test_contacts_migrations_depend_on_no_campaigns_or_delivery_migration():
    loader = MigrationLoader(None, ignore_no_migrations=True)
    contacts = {key: migration for key, migration in loader.disk_migrations.items() if key[0] == "contacts"}
    assert ("contacts", "0001_initial") in contacts
    found = [
        f"{name} depends on {app}.{dependency}"
        for (_, name), migration in contacts.items()
        for app, dependency in migration.dependencies
        if app in DOWNSTREAM
    ]
    assert found == []


def test_the_checks_see_what_they_look_for():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from campaigns.models import Campaign\n"
        "def later():\n"
        "    import delivery.services\n"
        "campaign = models.ForeignKey('campaigns.Campaign', on_delete=models.SET_NULL)\n"
        "note = 'campaigns. are not imported here'\n"
    )
    assert [entry for entry in imports_of(source) if is_downstream(entry[1])] == [
        (3, "campaigns.models"),
        (5, "delivery.services"),
    ]
    assert model_references(source) == [(6, "campaigns.Campaign")]
