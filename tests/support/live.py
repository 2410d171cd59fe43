"""A live server over data built once per test class: the cast, committed, so the server (and a worker) see it.

pytest-django's ``live_server`` fixture brings ``transactional_db``, which empties
the databases after every test: a cast built once per class would be gone after
the first one. These helpers keep the data for the whole class and empty every
database at its end instead, as ``TransactionTestCase`` would have.

Mark the class ``django_db`` (so the run creates the test databases) and keep
each test's own queries outside a running Playwright (start Chromium in the
test, read after it closes): a connection opened while Playwright's loop runs
lives in another context, is never closed, and the test database then cannot
be dropped at the end of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.management import call_command
from django.core.servers.basehttp import ThreadedWSGIServer
from django.db import connections
from django.test.testcases import LiveServerThread
from django.test.utils import modify_settings


@contextmanager
def committed_data(django_db_blocker: Any) -> Iterator[None]:
    """Database access for a whole test class; writes commit at once, and every database is emptied at the end."""
    with django_db_blocker.unblock():
        try:
            yield
        finally:
            for alias in connections:
                call_command("flush", verbosity=0, interactive=False, database=alias, reset_sequences=False)


class _JoiningWSGIServer(ThreadedWSGIServer):
    # Django's server leaves its request threads running when it stops; each closes its database connections
    # only when its browser connection ends. Joined, they are all closed before the databases are emptied
    # and dropped (PostgreSQL refuses to drop a database someone is connected to).
    daemon_threads = False
    block_on_close = True


class _LiveServerThread(LiveServerThread):
    server_class = _JoiningWSGIServer


@contextmanager
def live_server(host: str = "localhost") -> Iterator[str]:
    """A Django server in a thread of this process (it sees this process's settings), and its base URL.

    Close the browsers that used it first: the server waits for their connections to end when it stops.
    """
    thread = _LiveServerThread(host, static_handler=StaticFilesHandler)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    try:
        with modify_settings(ALLOWED_HOSTS={"append": host}):
            yield f"http://{thread.host}:{thread.port}"
    finally:
        thread.terminate()
