"""A minimal reverse proxy on 127.0.0.1 that serves an upstream under a path prefix.

It does what nginx's ``location /prefix/ { proxy_pass http://upstream/; }`` does: requests under
``/prefix`` go upstream with the prefix stripped; anything else is 404. Tests use it to check that
the service works behind such a proxy with ``TAGGRAM_ROOT_PATH=/prefix``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

# Hop-by-hop headers (RFC 9110 §7.6.1) and those the proxy recomputes for the bytes it relays.
_DROPPED = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",
}


def _handler(upstream: str, prefix: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            if not (self.path == prefix or self.path.startswith((prefix + "/", prefix + "?"))):
                self.send_error(404, "outside the proxied prefix")
                return
            path = self.path[len(prefix) :]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _DROPPED}
            headers["X-Forwarded-Prefix"] = prefix
            answer = httpx.request(
                self.command, upstream + (path or "/"), headers=headers, content=body, timeout=300
            )
            self.send_response(answer.status_code)
            for key, value in answer.headers.multi_items():
                if key.lower() not in _DROPPED:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.content)

        # http.server dispatches on these names.
        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _forward  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

    return Handler


@contextmanager
def prefix_proxy(upstream: str, prefix: str) -> Iterator[str]:
    """Serve ``upstream`` under ``prefix`` until the block exits; yields the proxy's base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream.rstrip("/"), prefix))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
