"""The HTTP connection below the app: uvicorn's httptools protocol, with problem details for what
it refuses itself.

uvicorn answers a request it cannot parse (a method it does not know, a ``Content-Length`` that
is negative, past 64 bits or beside ``Transfer-Encoding``, a control character in a header, a
bad chunk size) on its own, before the app sees it, with a ``text/plain`` 400; here that answer
is the problem the app gives for any other malformed request (``malformed_request``, naming what
the parser found wrong).
"""

from __future__ import annotations

import json
import sys
import uuid

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from taggram.service.api.errors import problem_body
from taggram.service.api.middleware import REQUEST_ID_HEADER


class ProblemHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose refusals of malformed requests are problem details."""

    def send_400_response(self, msg: str) -> None:
        """Answer the request the parser refused with a ``malformed_request`` problem naming the
        parser's reason (uvicorn's ``msg`` where it gives none) and close the connection."""
        # Called by uvicorn while it handles the parser's error: that error says what is wrong.
        error = sys.exc_info()[1]
        reason = str(error) if isinstance(error, httptools.HttpParserError) and str(error) else msg
        self._refuse(
            400,
            "malformed_request",
            f"the request is not valid HTTP/1.1 ({reason}); the connection is closed",
        )

    def _refuse(self, status: int, code: str, detail: str) -> None:
        """Answer ``status`` with the problem ``code`` and close the connection."""
        if self.cycle is not None and self.cycle.response_started:
            # Mid-response (a chunk of a body the app is answering is malformed): only closing
            # the connection tells the client; a second status line would corrupt the first.
            self.transport.close()
            return
        path = self._path()
        request_id = uuid.uuid4().hex
        app_path = path[len(self.root_path) :] if path.startswith(self.root_path) else path
        accept = b", ".join(value for name, value in self.headers or [] if name == b"accept")
        body, media_type = problem_body(
            status,
            code,
            detail,
            instance=path,
            request_id=request_id,
            v2=app_path == "/v2" or app_path.startswith("/v2/"),
            accept=accept.decode("latin-1"),
        )
        content = json.dumps(body, separators=(",", ":")).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        own = {
            "content-type": media_type,
            "content-length": str(len(content)),
            "connection": "close",
            REQUEST_ID_HEADER.lower(): request_id,
            "x-content-type-options": "nosniff",
            "cache-control": "no-store",
        }
        for header, text in own.items():
            head.extend([header.encode(), b": ", text.encode(), b"\r\n"])
        self.transport.write(b"".join([*head, b"\r\n", content]))
        self.transport.close()

    def _path(self) -> str:
        """The path of the request line as far as it was read (``""`` before any)."""
        url = getattr(self, "url", b"")  # set once a request begins
        if not url:
            return ""
        try:
            path = httptools.parse_url(url).path
        except httptools.HttpParserInvalidURLError:
            return ""
        return path.decode("latin-1") if path else ""
