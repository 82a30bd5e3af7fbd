"""Pure ASGI middleware: a request id on every request and response, and the HTTP metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so the route can still watch ``receive`` for a client
disconnect and so responses are not buffered.
"""

from __future__ import annotations

import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taggram.service import metrics

REQUEST_ID_HEADER = "X-Request-ID"
# A caller-supplied id is echoed only when it is short and harmless in logs and headers.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"").decode()
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        metrics.REQUESTS_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.REQUESTS_IN_FLIGHT.dec()
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            metrics.REQUESTS.labels(route=label, method=scope["method"], status=str(status)).inc()
            metrics.REQUEST_DURATION.labels(route=label).observe(time.perf_counter() - started)
