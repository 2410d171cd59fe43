"""The WSGI application can be imported by gunicorn's master and forked (``preload_app`` in gunicorn.conf.py)."""

import os
import subprocess
import sys
import textwrap

from django.conf import settings
from gunicorn.config import Config

PROBE = textwrap.dedent(
    """
    import os
    import bluespark.wsgi
    from django.db import connections

    def is_socket(fd):
        try:
            return os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:  # the descriptor listdir itself used
            return False

    opened = [alias for alias in connections if connections[alias].connection is not None]
    print(opened, sum(map(is_socket, os.listdir("/proc/self/fd"))))
    """
)


def test_importing_the_application_opens_no_connection():
    """A database, Redis or any other socket opened at import would be shared by every forked worker."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", PROBE],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "bluespark.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] 0"


def test_gunicorn_preloads_the_application_and_freezes_it_before_forking():
    namespace: dict[str, object] = {}
    config_file = settings.BASE_DIR / "gunicorn.conf.py"
    exec(compile(config_file.read_text(), str(config_file), "exec"), namespace)  # noqa: S102 - our own file
    config = Config()
    for name, value in namespace.items():
        if name in config.settings:
            config.set(name, value)
    assert config.preload_app is True
    assert config.pre_fork is namespace["pre_fork"]
