"""Pure ASGI middleware: a request id on every request, response and log line, and the metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so the route can still watch ``receive`` for a client
disconnect and so responses are not buffered. It also closes the connection after a response
sent before the request body was read to its end when the rest is not worth receiving: always
after 408 and 413, and after any answer when more than :data:`DRAIN_LIMIT_BYTES` (or an unknown
amount, chunked) is left. Otherwise the server would go on receiving, and discarding, a body
nobody wants. A small remainder is left for uvicorn to discard, keeping the connection: closing
with unread bytes makes the kernel reset it, and the client may then never see the answer.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence

from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taggram.service import metrics
from taggram.service.api.uploads import STARTED_STATE
from taggram.service.logs import REQUEST_ID

REQUEST_ID_HEADER = "X-Request-ID"
# A caller-supplied id is echoed only when it is short and harmless in logs and headers.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Refusals whose cost (time spent, body bytes received) is recorded.
_REFUSALS = frozenset({408, 413, 429})
# Unread body bytes worth receiving and discarding to keep the connection (and the answer) safe.
DRAIN_LIMIT_BYTES = 8 * 1024 * 1024
_ALWAYS_CLOSE = frozenset({408, 413})
UNMATCHED = "unmatched"


def route_label(route: BaseRoute | None, scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The path template (``/v1/models/{name}``, ``/web/{path}``) of the request's ``route``, or
    ``"unmatched"``: the label that keeps the metrics' route cardinality bounded.

    ``route`` is what the router recorded in ``scope["route"]``; FastAPI records only its own
    routes. Without one (``/openapi.json``, the static files mounted under ``/web``, a CORS
    preflight answered before routing, a ``HEAD`` served as ``GET`` on a copy of the scope) the
    request's ``scope``, as it was before routing rewrote it, is matched against ``routes`` as
    the router would: a path match under another method still names its route.
    """
    if route is None:
        partial = None
        for candidate in routes:
            match, _ = candidate.matches(scope)
            if match is Match.FULL:
                route = candidate
                break
            if match is Match.PARTIAL and partial is None:
                partial = candidate
        else:
            route = partial
    return str(getattr(route, "path_format", UNMATCHED))


class RequestContextMiddleware:
    """Gives each request its id (``X-Request-ID``, the caller's when harmless), tags its log
    lines with it, and counts and times it in the metrics by route (see :func:`route_label`:
    ``routes`` are every route of the app, those of included routers listed one by one), method
    and status.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        # Latin-1, as ASGI header bytes are: a caller's non-UTF-8 id failed here with a 500.
        incoming = headers.get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state[STARTED_STATE] = time.monotonic()
        token = REQUEST_ID.set(request_id)
        # The router rewrites the scope in place (a mount's root_path): the request as it came.
        arrived = dict(scope)
        status = 500
        started = time.perf_counter()
        body_bytes = 0
        declared = headers.get(b"content-length", b"")
        declared_bytes = int(declared) if declared.isdigit() else None
        chunked = b"transfer-encoding" in headers
        # A request without a body (GET, Content-Length: 0) has nothing left to read.
        body_complete = not chunked and not declared_bytes

        async def counting_receive() -> Message:
            nonlocal body_bytes, body_complete
            message = await receive()
            if message["type"] == "http.request":
                body_bytes += len(message.get("body", b""))
                body_complete = not message.get("more_body", False)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = MutableHeaders(scope=message)
                response_headers[REQUEST_ID_HEADER] = request_id
                if not body_complete and (
                    status in _ALWAYS_CLOSE
                    or chunked
                    or declared_bytes is None
                    or declared_bytes - body_bytes > DRAIN_LIMIT_BYTES
                ):
                    response_headers["Connection"] = "close"
            await send(message)

        metrics.REQUESTS_IN_FLIGHT.inc()
        try:
            await self.app(scope, counting_receive, send_with_id)
        finally:
            metrics.REQUESTS_IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            label = route_label(scope.get("route"), arrived, self.routes)
            metrics.REQUESTS.labels(route=label, method=scope["method"], status=str(status)).inc()
            metrics.REQUEST_DURATION.labels(route=label).observe(elapsed)
            if status in _REFUSALS:
                metrics.REFUSED_DURATION.labels(status=str(status)).observe(elapsed)
                metrics.REFUSED_BODY_BYTES.labels(status=str(status)).inc(body_bytes)
            REQUEST_ID.reset(token)
