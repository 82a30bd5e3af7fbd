"""``HEAD`` wherever ``GET`` is served, as RFC 9110 asks of every general-purpose server.

Uptime monitors, load balancers and ``curl -I`` probe ``/healthz``, ``/readyz`` and the web page
with ``HEAD``; the routes declare ``GET`` only, so without this they answered 405. The request
is served as ``GET`` and its response sent with the same status and headers but no body. A path
without ``GET`` (``POST /v1/tag``) still answers 405 with its ``Allow`` header.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadMiddleware:
    """Answers ``HEAD`` as the ``GET`` of the same path would, headers only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the server ends a HEAD response after its headers
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        # The request metrics, outside this middleware, label it by matching its own scope.
        await self.app({**scope, "method": "GET"}, receive, headers_only)
