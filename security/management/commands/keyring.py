"""Make and change keyring files (docs/security.md, "Rotation")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from security.keyring import (
    KeyringError,
    add_primary_key,
    generate_keyring_document,
    parse_keyring,
    write_keyring_file,
)


class Command(BaseCommand):
    help = "generate PATH --environment ENV | add-kek PATH | add-pepper PATH. Never prints key material."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["generate", "add-kek", "add-pepper"])
        parser.add_argument("path", type=Path)
        parser.add_argument("--environment", choices=["dev", "test", "prod"])

    def handle(self, *args: Any, action: str, path: Path, environment: str | None, **options: Any) -> None:
        if action == "generate":
            if not environment:
                raise CommandError("generate needs --environment.")
            if path.exists():
                raise CommandError(f"{path} exists; a keyring is never overwritten.")
            document = generate_keyring_document(environment)
            write_keyring_file(path, document, replace=False)
            self.stdout.write(f"Wrote a new {environment} keyring to {path} (KEK {document['primary_kek']}).")
            return
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            parse_keyring(json.dumps(document), expected_environment=document.get("environment"))
        except (OSError, ValueError, KeyringError) as error:
            raise CommandError(f"{path} is not a usable keyring: {error}") from None
        key_id = add_primary_key(document, "kek" if action == "add-kek" else "pep")
        write_keyring_file(path, document)
        follow_up = (
            "Deploy it, then run `manage.py rotate_keys --kek`."
            if action == "add-kek"
            else "Deploy it: each password is re-hashed under it at its user's next login."
        )
        self.stdout.write(f"Added {key_id} as the primary {'KEK' if action == 'add-kek' else 'pepper'}. {follow_up}")
