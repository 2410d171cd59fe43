"""The background run of a CSV import (contacts/importing.py), on the bulk queue."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from accounts.models import Account
from accounts.tenancy import tenant_task
from contacts.importing import access_contact_import, discard_stale_uploads, run_contact_import
from contacts.models import ContactImport

# A run stops after this long and queues the rest, so that no task outlives the
# broker's visibility timeout (an hour) however large the file.
IMPORT_TASK_SECONDS = 600.0


@tenant_task(bind=True)
def run_import(self: Any, account: Account, import_id: str) -> None:
    """Run or go on with an import; a paused, cancelled, ended or unknown import is left as it is (safe twice)."""
    contact_import = access_contact_import(account, import_id)
    if contact_import is None:
        return
    contact_import = run_contact_import(account, contact_import, max_seconds=IMPORT_TASK_SECONDS)
    if contact_import.status == ContactImport.Status.RUNNING:
        self.apply_async(args=[account.public_id, import_id])


# Beat's clean-up (CELERY_BEAT_SCHEDULE) belongs to no account: a plain task, on the default queue.


@shared_task(name="contacts.import_tasks.discard_abandoned_uploads")
def discard_abandoned_uploads() -> int:
    """Cancel the imports left in the wizard for a day and delete their encrypted uploads; how many (safe twice)."""
    return discard_stale_uploads()
