"""Send the key store's tables to their own database, and nothing else there."""

from __future__ import annotations

from typing import Any

KEYSTORE_ALIAS = "keystore"
KEYSTORE_APP = "security"


class KeyStoreRouter:
    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return KEYSTORE_ALIAS if model._meta.app_label == KEYSTORE_APP else None

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return KEYSTORE_ALIAS if model._meta.app_label == KEYSTORE_APP else None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        if KEYSTORE_APP in (obj1._meta.app_label, obj2._meta.app_label):
            return obj1._meta.app_label == obj2._meta.app_label
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        if app_label == KEYSTORE_APP:
            return db == KEYSTORE_ALIAS
        return db != KEYSTORE_ALIAS
