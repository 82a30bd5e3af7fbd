"""A web server on 127.0.0.1 that is no taggram service: it answers every GET and POST with an
HTML page, as a login or maintenance page, or another web server at a mistyped URL, would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PAGE = b"<html><body>not a taggram service</body></html>"


class _Page(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:  # quiet in the test's output
        pass


@contextmanager
def html_page_server() -> Iterator[str]:
    """Yields the server's root URL (``http://127.0.0.1:PORT``); stops it on exit."""
    with ThreadingHTTPServer(("127.0.0.1", 0), _Page) as web:
        thread = threading.Thread(target=web.serve_forever)
        thread.start()
        try:
            yield f"http://127.0.0.1:{web.server_port}"
        finally:
            web.shutdown()
            thread.join()
