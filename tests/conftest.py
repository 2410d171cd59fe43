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


def pytest_collection_modifyitems(items):
    """Every database test may touch encrypted data, whose keys live in the key store database."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is not None and "databases" not in marker.kwargs:
            item.add_marker(pytest.mark.django_db(*marker.args, **marker.kwargs, databases="__all__"), append=False)
        cls = getattr(item, "cls", None)
        if cls is not None and getattr(cls, "databases", None) == {"default"}:
            cls.databases = "__all__"


@pytest.fixture(autouse=True)
def _forget_unwrapped_keys():
    """Keys created inside a rolled-back test transaction must not outlive it in the cache."""
    from accounts.key_cache import forget_all
    from security.keys import clear_key_cache

    clear_key_cache()
    forget_all()
    yield
    clear_key_cache()
    forget_all()


@pytest.fixture(autouse=True)
def _no_account_scope_leaks():
    """No test (and no code it runs) may leave an account's scope active behind it."""
    from accounts.tenancy import get_active_account

    assert get_active_account() is None, "an earlier test left an account scope active"
    yield
    leaked = get_active_account()
    assert leaked is None, f"this test left the scope of {leaked} active"
