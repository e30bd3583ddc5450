"""A local webhook for the alert tests: an HTTP server on 127.0.0.1 (ephemeral port) that keeps what it receives."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Webhook:
    """``with Webhook() as hook``: ``hook.url`` to post to, ``hook.documents`` received, ``hook.hits`` tries.

    ``status`` is what it answers (e.g. 503 to refuse every try).
    """

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.documents: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.hits = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.hits += 1
                if hook.status < 300:
                    hook.documents.append(json.loads(body))
                    hook.headers.append(dict(self.headers))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/T0/SECRET-TOKEN"

    def events(self, name: str) -> list[dict[str, Any]]:
        return [doc for doc in self.documents if doc["event"] == name]

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/T0/SECRET-TOKEN"
