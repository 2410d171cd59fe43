import os

import pytest

if os.environ.get("BLUESPARK_ENV") != "test":
    raise pytest.UsageError(
        "Run the suite with `make test` (it sets BLUESPARK_ENV=test and finds PostgreSQL and Redis)."
    )

# Playwright's sync API runs an event loop in the test thread; the tests that
# use it touch the database only outside its calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _clear_cache_and_axes():
    """Each test starts with an empty cache (throttles, lockouts)."""
    from django.core.cache import cache

    cache.clear()
    yield
