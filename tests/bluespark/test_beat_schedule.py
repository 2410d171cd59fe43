"""Celery beat's schedule names real tasks, each registered with the worker's app under that name."""

from __future__ import annotations

import importlib
from datetime import timedelta

from django.conf import settings

from bluespark.celery import app


def test_every_scheduled_task_can_be_imported_by_its_path_and_is_registered():
    app.loader.import_default_modules()  # what a worker loads at start: each app's tasks module
    registered = set(app.tasks)
    assert settings.CELERY_BEAT_SCHEDULE
    for entry, job in settings.CELERY_BEAT_SCHEDULE.items():
        assert job["task"] in registered, f"{entry}: a worker does not know {job['task']}"
        module_path, _, function_name = job["task"].rpartition(".")
        task = getattr(importlib.import_module(module_path), function_name, None)
        assert task is not None, f"{entry}: {job['task']} does not exist"
        assert task.name == job["task"], entry


def test_the_expected_clean_ups_are_scheduled_at_least_hourly():
    scheduled = {job["task"]: job["schedule"] for job in settings.CELERY_BEAT_SCHEDULE.values()}
    for task in ("accounts.tasks.purge_expired_idempotency_records", "accounts.tasks.clear_expired_sessions"):
        assert scheduled.get(task) is not None, task
        assert timedelta(0) < scheduled[task] <= timedelta(hours=1), task
