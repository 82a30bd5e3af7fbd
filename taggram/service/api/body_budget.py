"""Every request body in flight, all requests together, under one byte budget.

Each route bounds its own body (``TAGGRAM_MAX_UPLOAD_BYTES``, ``TAGGRAM_MAX_BATCH_BYTES``), but
nothing bounded how many bodies arrive at once: each is held until its request ends (spooled to
``/tmp`` past 1 MiB), so a burst of large uploads filled the disk, and on Kubernetes a ``/tmp``
``emptyDir`` past its ``sizeLimit`` gets the pod evicted with every request in it. This ASGI
middleware counts the bytes each request has received (decoded bytes of a compressed body: what
the spool holds) until the request ends, and refuses a body that would take the total past
``max_bytes`` with 429 ``overloaded`` (retryable: another replica, or this one a moment later, has
room): from its ``Content-Length`` before a byte of it is read, else as it arrives. Raised from
the route's read of the body, like the other body errors, so the error handlers answer it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taggram.service import metrics
from taggram.service.errors import OverloadedError

# What a refused client is told to wait: bodies in flight end within seconds to minutes, and
# the load balancer should try another replica first.
RETRY_AFTER_SECONDS = 2.0


class BodyBudgetMiddleware:
    """Refuses a request body that would take the bytes held by requests in flight past
    ``max_bytes`` (see the module docs); ``taggram_body_in_flight_bytes`` shows the total."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.held = 0

    def _refuse(self, size: int) -> OverloadedError:
        return OverloadedError(
            f"this replica is receiving {self.held} bytes of other uploads; {size} more would "
            f"pass its limit of {self.max_bytes} (TAGGRAM_MAX_BODY_BYTES_IN_FLIGHT)",
            retry_after_seconds=RETRY_AFTER_SECONDS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        unread = int(declared) if declared.isdigit() else 0
        held = 0

        async def counting_receive() -> Message:
            nonlocal held, unread
            if unread and self.held + unread > self.max_bytes:
                raise self._refuse(unread)
            message = await receive()
            size = len(message.get("body", b"")) if message["type"] == "http.request" else 0
            if size and self.held + size > self.max_bytes:
                raise self._refuse(size)
            self.held += size
            held += size
            unread = max(0, unread - size)
            metrics.BODY_IN_FLIGHT_BYTES.set(self.held)
            return message

        try:
            await self.app(scope, counting_receive, send)
        finally:
            self.held -= held
            metrics.BODY_IN_FLIGHT_BYTES.set(self.held)
