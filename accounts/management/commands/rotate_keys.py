"""Rotate master keys (KEKs) and data keys (DEKs); see docs/security.md."""

from __future__ import annotations

import time
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Model

from accounts import services
from accounts.models import Account, DataKeyRotation
from accounts.tenancy import TenantModel, account_scope
from security.keyring import get_keyring
from security.keys import PLATFORM_SCOPE, add_data_key_version, kek_usage, retire_data_keys, rewrap_all_keys
from security.rotation import models_with_encrypted_fields, reseal_batch


class Command(BaseCommand):
    help = (
        "--kek re-wraps every stored key under the keyring's primary KEK; --data-keys gives accounts a new "
        "data key and re-seals their rows in the background; --platform does the same for users' data, "
        "here and now; --status shows rotations in progress."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kek", action="store_true", help="re-wrap every key under the primary KEK")
        parser.add_argument("--data-keys", action="store_true", help="start a data-key rotation per account")
        parser.add_argument("--account", action="append", default=[], help="only this account (public id)")
        parser.add_argument("--platform", action="store_true", help="rotate the platform key (users' data)")
        parser.add_argument("--status", action="store_true", help="show data-key rotations")

    def handle(self, *args: Any, **options: Any) -> None:
        if not any(options[name] for name in ("kek", "data_keys", "platform", "status")):
            raise CommandError("Say what to rotate: --kek, --data-keys, --platform, or --status.")
        if options["kek"]:
            self.rotate_kek()
        if options["platform"]:
            self.rotate_platform()
        if options["data_keys"]:
            self.start_data_key_rotations(options["account"])
        if options["status"]:
            self.show_status(options["account"])

    def rotate_kek(self) -> None:
        moved = rewrap_all_keys()
        primary = get_keyring().primary_kek_id
        self.stdout.write(f"Re-wrapped {moved} key(s) under {primary}.")
        for kek_id, count in sorted(kek_usage().items()):
            self.stdout.write(f"  {kek_id}: wraps {count} key(s)")
        unused = sorted(set(get_keyring().keks) - set(kek_usage()) - {primary})
        if unused:
            self.stdout.write(f"No stored key uses {', '.join(unused)} any more: it can leave the keyring.")

    def rotate_platform(self) -> None:
        version = add_data_key_version(PLATFORM_SCOPE)
        started = time.monotonic()
        self.stdout.write(f"Platform data key v{version} created; re-sealing users' data.")
        resealed = self._reseal_platform_rows()
        self.stdout.write(f"First pass re-sealed {resealed} row(s) of {', '.join(self._platform_model_names())}.")
        wait = settings.DATA_KEY_CACHE_SECONDS - (time.monotonic() - started)
        if wait > 0:
            self.stdout.write(f"Waiting {wait:.0f} s for every process to learn the new key.")
            time.sleep(wait)
        while self._reseal_platform_rows():
            pass
        retired = retire_data_keys(PLATFORM_SCOPE, older_than=version)
        self.stdout.write(f"Every platform row is on v{version}; {retired} older platform key(s) destroyed.")

    @staticmethod
    def _platform_models() -> list[type[Model]]:
        """Every model whose encrypted fields use the platform key: those not owned by an account."""
        return [
            model for model in models_with_encrypted_fields(apps.get_models()) if not issubclass(model, TenantModel)
        ]

    def _platform_model_names(self) -> list[str]:
        return [model._meta.label for model in self._platform_models()]

    def _reseal_platform_rows(self) -> int:
        total = 0
        for model in self._platform_models():
            after = None
            while True:
                batch = model._default_manager.all()
                result = reseal_batch(batch, after_pk=after, batch_size=services.ROTATION_BATCH_SIZE)
                if not result.examined:
                    break
                after, total = result.last_pk, total + result.resealed
        return total

    def _accounts(self, public_ids: list[str]) -> list[Account]:
        accounts = Account.objects.order_by("pk")
        if public_ids:
            accounts = accounts.filter(public_id__in=public_ids)
            missing = set(public_ids) - set(accounts.values_list("public_id", flat=True))
            if missing:
                raise CommandError(f"No account {', '.join(sorted(missing))}.")
        return list(accounts)

    def start_data_key_rotations(self, public_ids: list[str]) -> None:
        for account in self._accounts(public_ids):
            with account_scope(account):
                try:
                    rotation = services.start_data_key_rotation(account)
                except services.AccountsError as error:
                    self.stdout.write(f"{account.public_id}: {error}")
                    continue
            self.stdout.write(
                f"{account.public_id}: rotation {rotation.public_id} to data key v{rotation.target_version} "
                f"started ({rotation.rows_total} row(s) to re-seal)."
            )

    def show_status(self, public_ids: list[str]) -> None:
        for account in self._accounts(public_ids):
            with account_scope(account):
                rotations = list(DataKeyRotation.objects.filter(account=account).order_by("-started_at")[:3])
            for rotation in rotations:
                self.stdout.write(
                    f"{account.public_id} {rotation.public_id} v{rotation.target_version} {rotation.status} "
                    f"{rotation.progress_percent}% ({rotation.rows_done}/{rotation.rows_total}, pass {rotation.passes})"
                )
