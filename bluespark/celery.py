"""The Celery application: JSON only, late acknowledgement, two queues.

``default`` carries short interactive work; ``bulk`` carries sends and
imports, so a million-recipient campaign never delays a password reset.
"""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bluespark.settings")

app = Celery("bluespark")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("bulk"))
app.autodiscover_tasks()
