"""The project's settings, plus the peer's app and URLs (``bench/bench_api.py`` only)."""

from bluespark.settings import *  # noqa: F403
from bluespark.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.naive_api"]
ROOT_URLCONF = "bench.naive_api.urls"
