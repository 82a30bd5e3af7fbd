"""Compressed request bodies: ``Content-Encoding: gzip`` and ``deflate`` are decoded on the fly.

An ASGI middleware wraps ``receive`` so every route (raw bodies and multipart forms alike) reads
the decompressed body, chunk by chunk, never more than ``max_bytes`` of it: a compression bomb is
refused with :class:`PayloadTooLargeError` as soon as its output passes the limit. The route is
handed at most ``_INFLATE_STEP`` decompressed bytes per message, so its own limit (``/v1/tag``'s
``max_upload_bytes``, below this bound) counts them as they are inflated and answers first.
``identity`` passes through; any other coding (``br``, ``zstd``, ``compress``, a chain of
codings) is refused with :class:`UnsupportedContentEncodingError` naming it, as is data that is
not of its coding, cut short, or followed by bytes that begin no further gzip member (a gzip
body of several members is inflated whole, as ``gzip -d`` does). Both errors are raised from
the route's reads of the body, where the error handlers answer them.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from taggram.service.errors import PayloadTooLargeError, UnsupportedContentEncodingError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# zlib window bits: gzip framing, and zlib framing, which RFC 9110 calls "deflate". Some clients
# send raw deflate data under that name; it is tried when the zlib header is absent.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Most bytes inflated per zlib call, so one small chunk cannot expand into gigabytes at once.
_INFLATE_STEP = 1 << 20
# Most gzip members in one body: a 20-byte empty member costs a decompressor and a step of its
# own, so a body of nothing but those (13 million in 256 MiB) would cost minutes of CPU for no
# audio. Real bodies of several members hold few (``cat``), or 64 KiB each (bgzip's blocks).
MAX_GZIP_MEMBERS = 4096


class _Inflater:
    """Decompresses one body, at most ``_INFLATE_STEP`` bytes per call to :meth:`step`, counting
    the output against ``max_bytes``."""

    def __init__(self, coding: str, max_bytes: int) -> None:
        self._coding = coding
        self._zlib = zlib.decompressobj(_WBITS[coding])
        self._max_bytes = max_bytes
        self._size = 0
        self._started = False
        self._input = b""  # compressed bytes received and not yet inflated
        self._members = 1  # gzip members begun
        self.more = True  # whether the client has more of the body to send

    @property
    def pending(self) -> bool:
        """Whether received input is left to inflate (call :meth:`step` before reading more)."""
        return bool(self._input) or self._after_end()

    def _after_end(self) -> bool:
        """Whether the compressed stream has ended with received bytes after it."""
        return self._zlib.eof and bool(self._zlib.unused_data or self._input)

    def _next_member(self) -> None:
        """Go on past the end of the stream: gzip's next member, else refuse what follows.

        A gzip body is a series of members (RFC 1952 2.2: ``cat a.gz b.gz``, a client that
        compresses as it streams), which ``gzip -d`` inflates one after another; reading only
        the first dropped the rest of the audio without a word. Bytes after a deflate stream, or
        after a member that begin no other, are refused rather than ignored, for the same reason.
        """
        rest = self._zlib.unused_data + self._input
        if self._coding == "deflate":
            raise UnsupportedContentEncodingError(
                f"the deflate-encoded body has {len(rest)} bytes after the end of its stream"
            )
        if self._members >= MAX_GZIP_MEMBERS:
            raise UnsupportedContentEncodingError(
                f"the gzip-encoded body has more than {MAX_GZIP_MEMBERS} members"
            )
        self._zlib = zlib.decompressobj(_WBITS[self._coding])
        self._input = rest
        self._members += 1

    def push(self, data: bytes, more: bool) -> None:
        """Take the next chunk the client sent (only once the previous one is inflated)."""
        if not self._started and self._coding == "deflate" and data:
            self._started = True
            if (data[0] & 0x0F != 8) or int.from_bytes(data[:2], "big") % 31:
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, no zlib header
        self._input, self.more = data, more

    def step(self) -> bytes:
        """Inflate at most ``_INFLATE_STEP`` bytes of the input (and the tail at the body's end).

        Raises :class:`PayloadTooLargeError` past ``max_bytes`` and
        :class:`UnsupportedContentEncodingError` for data that is not of the coding."""
        if self._after_end():
            self._next_member()
        try:
            out = self._zlib.decompress(self._input, _INFLATE_STEP)
            self._input = self._zlib.unconsumed_tail
            if not self._input and not self.more:
                out += self._zlib.flush()
        except zlib.error as error:
            where = f" after the end of member {self._members - 1}" if self._members > 1 else ""
            raise UnsupportedContentEncodingError(
                f"the body is not valid {self._coding} data{where} ({error})"
            ) from error
        self._size += len(out)
        if self._size > self._max_bytes:
            raise PayloadTooLargeError(
                f"the {self._coding}-encoded body inflates past the limit of "
                f"{self._max_bytes} bytes"
            )
        if not self.pending and not self.more and not self._zlib.eof:
            raise UnsupportedContentEncodingError(f"the {self._coding}-encoded body is truncated")
        return out


class ContentDecodingMiddleware:
    """Serves every route the decoded body of a gzip/deflate request (see the module docs)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        coding = b",".join(v for k, v in headers if k == b"content-encoding").decode("latin-1")
        coding = coding.strip().lower()
        if coding in ("", "identity"):
            await self.app(scope, receive, send)
            return
        # The app sees a body without a coding whose length is not known in advance.
        kept = [(k, v) for k, v in headers if k not in (b"content-encoding", b"content-length")]
        scope = {**scope, "headers": kept}
        if coding not in _WBITS:
            await self.app(scope, _refuse(coding), send)
            return
        await self.app(scope, _inflating(receive, _Inflater(coding, self.max_bytes)), send)


def _refuse(coding: str) -> Receive:
    async def receive() -> Message:
        raise UnsupportedContentEncodingError(
            f"Content-Encoding {coding!r} is not supported: send the body as is (identity), "
            "or compressed with gzip or deflate"
        )

    return receive


def _inflating(receive: Receive, inflater: _Inflater) -> Receive:
    """Each message carries at most one inflation step, so the route's own limit (and its 413)
    comes after about that much of a compression bomb, never after the whole chunk inflated."""

    async def wrapped() -> Message:
        if not inflater.pending:
            message = await receive()
            if message["type"] != "http.request":
                return message
            inflater.push(message.get("body", b""), bool(message.get("more_body", False)))
        body = inflater.step()
        return {
            "type": "http.request",
            "body": body,
            "more_body": inflater.pending or inflater.more,
        }

    return wrapped
