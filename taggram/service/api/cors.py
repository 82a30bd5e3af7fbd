"""CORS by Starlette's ``CORSMiddleware``, its preflight refusals answered as problems.

Starlette refuses a preflight it does not allow with a ``text/plain`` 400 ("Disallowed CORS
origin, method"), the one answer of the service that was no problem+json and had no ``code``.
:class:`ProblemCORSMiddleware` leaves the CORS logic to Starlette and rewrites only that answer:
a 400 ``cors_refused`` problem whose detail names what was refused (the origin, the method, the
request headers) and what the preflight asked for, with Starlette's CORS headers kept.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from taggram.service.api.errors import problem_response, shown

CORS_REFUSED = "cors_refused"
# How Starlette's refusal begins; the rest lists what failed: "origin, method, headers".
_STARLETTE_REFUSAL = "Disallowed CORS "
# The answer's own headers, not the CORS ones to keep.
_BODY_HEADERS = ("content-length", "content-type")


class _PreflightRefusal(Response):
    """A 400 ``cors_refused`` problem, written when sent: the problem needs the request (its path
    and request id), which Starlette's ``preflight_response`` is not given."""

    def __init__(self, detail: str, headers: dict[str, str]) -> None:
        super().__init__(status_code=400, headers=headers)
        self.detail = detail
        self.cors_headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        problem = problem_response(
            request, 400, CORS_REFUSED, self.detail, headers=self.cors_headers
        )
        await problem(scope, receive, send)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's ``CORSMiddleware`` (same arguments), refusing preflights with a problem."""

    def preflight_response(self, request_headers: Headers) -> Response:
        """Starlette's answer to a preflight; a refusal (400) as a ``cors_refused`` problem."""
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        failed = bytes(response.body).decode().removeprefix(_STARLETTE_REFUSAL).split(", ")
        reasons = [self._reason(failure, request_headers) for failure in failed]
        headers = {
            name: value for name, value in response.headers.items() if name not in _BODY_HEADERS
        }
        return _PreflightRefusal(f"CORS preflight refused: {'; '.join(reasons)}", headers)

    def _reason(self, failure: str, asked: Headers) -> str:
        """Why the preflight was refused, for one of Starlette's failure words."""
        if failure == "origin":
            return f"origin {shown(asked['origin'])} is not allowed (TAGGRAM_CORS_ORIGINS)"
        if failure == "method":
            method = asked["access-control-request-method"]
            return f"method {shown(method)} is not allowed ({', '.join(self.allow_methods)})"
        if failure == "headers":
            wanted = asked.get("access-control-request-headers", "")
            return (
                f"request headers {shown(wanted)} are not all allowed "
                f"({', '.join(sorted(self.allow_headers))})"
            )
        if failure == "private-network":
            return "private network access is not allowed"
        return failure  # a word of a later Starlette: as it says it
