"""Headers every answer carries, whichever part of the app (route, error handler, static files,
CORS preflight) wrote it.

- ``X-Content-Type-Options: nosniff`` everywhere: a browser takes each body as the type it is
  declared (a problem body quoting a client's text, the metrics, a JSON result) and never sniffs
  it into HTML or script.
- ``Cache-Control: no-store`` on ``/v1`` and ``/v2`` unless the route set its own: the answers
  describe a client's audio and models, and a shared cache does not count ``X-API-Key`` as a
  credential, so an answer to a GET could otherwise be stored and served to someone without it.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taggram.service.api.paths import is_under


class SecurityHeadersMiddleware:
    """Adds ``nosniff`` to every HTTP response and ``Cache-Control: no-store`` to the API's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = is_under(scope, "/v1", "/v2")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if api and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
