"""Run the test Hub in the foreground: `python -m tests.hubserver --port N --root DIR --token TOKEN`."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from .server import HubServer


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted; the first line printed is the endpoint URL."""
    parser = argparse.ArgumentParser(prog="python -m tests.hubserver", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--root", type=Path, required=True, help="folder for the bare git repos and LFS objects")
    parser.add_argument("--token", default=os.environ.get("HUBSERVER_TOKEN"),
                        help="require this bearer token (default: $HUBSERVER_TOKEN; none: no auth)")
    parser.add_argument("--user", default="tester", help="the name whoami reports and commits are authored by")
    args = parser.parse_args(argv)
    hub = HubServer(args.root, args.token, user=args.user, port=args.port).start()
    print(hub.url, flush=True)  # only the URL: scripts read this line; the token is never printed
    stop = threading.Event()
    # Handle both explicitly: a background job (`cmd &`) inherits SIGINT ignored, and SIGTERM would skip cleanup.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
