"""Background work on audiences. Celery finds tasks in this module; feature modules keep their own."""

from __future__ import annotations

from contacts.import_tasks import discard_abandoned_uploads, run_import  # noqa: F401
from contacts.segment_tasks import count_segment_definition, refresh_segment_count  # noqa: F401
