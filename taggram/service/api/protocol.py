"""The HTTP connection below the app: uvicorn's httptools protocol, with a bounded wait for a
request's head and problem details for what it refuses itself.

uvicorn answers a request it cannot parse (a method it does not know, a ``Content-Length`` that
is negative, past 64 bits or beside ``Transfer-Encoding``, a control character in a header, a
bad chunk size) on its own, before the app sees it, with a ``text/plain`` 400; here that answer
is the problem the app gives for any other malformed request (``malformed_request``, naming what
the parser found wrong). And uvicorn bounds neither the wait for a first request nor the time a
request's line and headers take to arrive: a connection that sent nothing, or that sent a header
line every few seconds (slowloris), stayed open for ever. Here a new connection idle for the
keep-alive timeout is closed, as uvicorn closes one between requests, and a request whose head is
not complete within the read timeout (``TAGGRAM_READ_TIMEOUT_SECONDS``) of its first byte gets a
408 ``request_timeout`` and its connection closed, as a stalled body does in ``uploads``. Nor
does it bound a head's size (a 20 MiB header was read whole, and held): past
:data:`MAX_HEAD_BYTES` a request gets a 431 ``headers_too_large`` and its connection closed.

The service switches to no other protocol (uvicorn is run without WebSockets), so a request's
``Upgrade`` header is ignored, as RFC 9110 allows: the request is served as HTTP/1.1. httptools
took every byte after the head of such a request for the other protocol's, so the body of an
upload sent with ``Upgrade: h2c`` (``curl --http2`` on an ``http://`` URL) was lost: a
multipart upload was "cut short", a raw one's audio parsed as a next request. Here the body is
parsed as the request's own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from taggram.service.api.errors import problem_body
from taggram.service.api.middleware import REQUEST_ID_HEADER

log = logging.getLogger(__name__)

# Most bytes of a request's line and headers: 64 KiB, twice nginx's default (4 buffers of 8 KiB).
MAX_HEAD_BYTES = 64 * 1024


class _HeadTooLargeError(Exception):
    """Raised in the parser's callback for a head that completed past :data:`MAX_HEAD_BYTES`, so
    that the parser stops there and :meth:`ProblemHttpProtocol.send_400_response` answers 431."""


class ProblemHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with problem-details refusals and a request-head deadline.

    Made for a server by :func:`protocol_class`, which sets :attr:`head_timeout_seconds`.
    """

    head_timeout_seconds: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        # Where the parser is: inside a request (from its first byte to its body's end), and
        # past that request's head. Not the response's state: a request answered early (a 422
        # before its body was read) has the rest of its body drained after its response.
        self._in_message = False
        self._head_done = False
        # The request line's target and headers as parsed so far (a lower bound of the head).
        self._head_size = 0
        # The request asked for an upgrade and declared a body, which httptools will not parse.
        self._body_after_upgrade = False
        # The parser is reading that body behind a head of our own, which is not a request.
        self._resuming_body = False
        self._chunk = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Take the connection, closed if no request begins within the keep-alive timeout."""
        super().connection_made(transport)
        # uvicorn arms its keep-alive timeout only once a response is sent.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and its request-head deadline."""
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; the first bytes of a request start its head's deadline and count."""
        if not self._in_message:  # these bytes begin a request
            self._start_head_clock()
        if self._head_timer is not None:
            self._head_bytes += len(data)
        # Read by the parser's callbacks below: where an ignored upgrade's body starts, what a
        # refused request began with. Not kept past them (up to 256 kB per connection).
        self._chunk = data
        try:
            super().data_received(data)
        finally:
            self._chunk = b""
        if self._in_message and not self._head_done:  # a request begun after another's end
            self._start_head_clock()
        # The timer is still set while the head is incomplete (and the connection open).
        if self._head_timer is not None and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse_large_head()

    def on_message_begin(self) -> None:
        """A new request begins (not the head that resumes an upgrade request's body)."""
        if not self._resuming_body:
            self._in_message, self._head_done, self._head_size = True, False, 0
            super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        """Part of the request target."""
        if not self._resuming_body:
            self._head_size += len(url)
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header of the request."""
        if not self._resuming_body:
            self._head_size += len(name) + len(value) + 4  # ": " and CRLF
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head arrived in time: its deadline is off, and the request goes to the app.

        A head that ended in the same read as it passed :data:`MAX_HEAD_BYTES` was never seen
        incomplete past the bound by :meth:`data_received`: it is refused here, so that the
        bound does not depend on how the bytes were split in transit (a 70 kB header was served
        when it arrived in one read, refused with 431 in several).
        """
        if self._resuming_body:
            return
        if self._head_size > MAX_HEAD_BYTES:
            raise _HeadTooLargeError
        self._head_done = True
        self._cancel_head_timer()
        self._body_after_upgrade = self.parser.should_upgrade() and _declares_body(self.headers)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The request's body is complete (not yet, for one behind an ignored upgrade)."""
        if self._body_after_upgrade:
            return
        self._resuming_body = False
        self._in_message = False
        super().on_message_complete()

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn calls this where the parser stopped at the end of an upgrade request's head
        # (its error holds the offset there) and no protocol switch follows: the request is
        # served as HTTP/1.1, and the bytes after its head are parsed as such.
        error = sys.exc_info()[1]
        offset = error.args[0] if isinstance(error, httptools.HttpParserUpgrade) else None
        log.debug("ignoring the request's Upgrade header")
        if not isinstance(offset, int):
            return
        rest = self._chunk[offset:]
        if self._body_after_upgrade:
            # A head of our own declaring the request's framing makes a parser read the body,
            # which goes to the request's cycle. A new parser: after an upgrade llhttp starts
            # afresh, but after one that ends its connection (``Connection: close``, HTTP/1.0)
            # it stays closed, ignoring every later byte (the body never came: a 408). ``close``
            # in our head closes the new one where the request ends: what follows is ignored, as
            # uvicorn does after any request that ends its connection.
            self._body_after_upgrade = False
            self._resuming_body = True
            close = b"" if self.parser.should_keep_alive() else b"Connection: close\r\n"
            self.parser = httptools.HttpRequestParser(self)
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn's
            chunked = any(name == b"transfer-encoding" for name, _ in self.headers)
            length = _content_length(self.headers)
            framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % length
            rest = b"POST / HTTP/1.1\r\n" + close + framing + b"\r\n\r\n" + rest
        if rest:
            try:
                self.parser.feed_data(rest)
            except httptools.HttpParserUpgrade:
                pass  # a pipelined upgrade request behind it: uvicorn too drops what follows
            except httptools.HttpParserError:
                self.send_400_response("Invalid HTTP request received.")

    def send_400_response(self, msg: str) -> None:
        """Answer the request the parser refused with a ``malformed_request`` problem naming the
        parser's reason (uvicorn's ``msg`` where it gives none) and close the connection."""
        # Called by uvicorn while it handles the parser's error: that error says what is wrong.
        error = sys.exc_info()[1]
        if isinstance(error, httptools.HttpParserCallbackError) and isinstance(
            error.__context__, _HeadTooLargeError
        ):
            self._refuse_large_head()
            return
        if self._chunk.startswith(b"PRI * HTTP/2.0"):
            detail = "HTTP/2 is not served here (the service speaks HTTP/1.1)"
        elif self._chunk[:1] == b"\x16" and self._chunk[1:2] == b"\x03":
            detail = "a TLS handshake: this port speaks plain HTTP (TLS ends at the ingress)"
        else:
            if isinstance(error, httptools.HttpParserCallbackError) and error.__context__:
                error = error.__context__  # what uvicorn's own callback refused (CONNECT's URL)
            reason = str(error) if isinstance(error, httptools.HttpParserError) else ""
            detail = f"the request is not valid HTTP/1.1 ({reason or msg})"
        self._refuse(400, "malformed_request", f"{detail}; the connection is closed")

    def _start_head_clock(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)
            self._head_bytes = 0

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self._in_message and self._head_done):
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head whose rest uvicorn has not read yet, reading being paused while
            # the request before it is served: that wait is ours, not the client's.
            self._start_head_clock()
            return
        log.info("closing a connection whose request head took over %gs", self.head_timeout_seconds)
        self._refuse(
            408,
            "request_timeout",
            f"the request line and headers were not complete within "
            f"{self.head_timeout_seconds:g} s (TAGGRAM_READ_TIMEOUT_SECONDS); the connection is "
            "closed",
        )

    def _refuse_large_head(self) -> None:
        self._refuse(
            431,
            "headers_too_large",
            f"the request line and headers pass {MAX_HEAD_BYTES} bytes; the connection is closed",
        )

    def _refuse(self, status: int, code: str, detail: str) -> None:
        """Answer ``status`` with the problem ``code`` and close the connection."""
        self._cancel_head_timer()
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


def protocol_class(head_timeout_seconds: float) -> type[ProblemHttpProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, with a request head allowed
    ``head_timeout_seconds`` (> 0) from its first byte."""
    return type(
        "ProblemHttpProtocol",
        (ProblemHttpProtocol,),
        {"head_timeout_seconds": head_timeout_seconds},
    )


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The request's ``Content-Length`` (0 without one; httptools has refused a malformed one)."""
    values = [value for name, value in headers if name == b"content-length"]
    return int(values[0]) if values and values[0].strip().isdigit() else 0


def _declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request with these (lower-cased) headers has a body."""
    chunked = any(name == b"transfer-encoding" for name, _ in headers)
    return chunked or _content_length(headers) > 0
