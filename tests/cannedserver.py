"""A web server on 127.0.0.1 whose every answer the test decides, for the servers that are not the Hub (an
endpoint answering HTML, an evaluation server that is busy first, GitHub's ID-token endpoint)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (method, path) -> (status, headers, body); with_headers=True: (method, path, request headers) -> the same
Answer = Callable[..., tuple[int, dict[str, str], bytes]]


@contextmanager
def serving(answer: Answer, *, with_headers: bool = False) -> Iterator[str]:
    """Serve `answer` until the block ends; yields the server's URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            asked = (self.command, self.path, dict(self.headers)) if with_headers else (self.command, self.path)
            status, headers, body = answer(*asked)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_HEAD = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
