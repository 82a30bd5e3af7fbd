"""Python client for the taggram HTTP API: :class:`TaggramClient` (sync) and
:class:`AsyncTaggramClient` (asyncio), both on httpx.

Tagging is a pure function of the audio and the options, so every call is safe to repeat: the
clients retry connection failures, 429 (queue full) and 502/503/504 (starting, draining, behind a
proxy) with exponential backoff, waiting what a ``Retry-After`` header asks for when there is one.
Other failures raise at once as :class:`RequestRejectedError` (4xx: the file or the options are at
fault; :class:`AuthenticationFailedError` for a missing, unknown or too weak API key) or
:class:`ServiceError` (5xx), carrying the service's error code from its RFC 9457 problem body
(``application/problem+json``: ``code``, ``detail``, ``request_id``).

    with TaggramClient("http://localhost:8000", api_key=os.environ.get("TAGGRAM_API_KEY")) as c:
        result = c.tag("song.mp3", model="MTT_vgg", top_k=5)
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from taggram.audio_files import open_audio_file
from taggram.filenames import printable

Audio = str | Path | bytes
# One item of a batch: a path, or (filename, bytes) for audio already in memory.
BatchItem = str | Path | tuple[str, bytes]
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


class TaggramClientError(Exception):
    """Base of every error the client raises (the server's own errors are another hierarchy)."""


class APIError(TaggramClientError):
    """The service answered with an error: ``code`` and ``message`` (the problem's ``detail``),
    ``request_id`` to find it in the service's logs, and the whole problem ``body``."""

    def __init__(
        self, status: int, code: str, message: str, body: Any = None, request_id: str | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.body = status, code, message, body
        self.request_id = request_id


class RequestRejectedError(APIError):
    """4xx: this file or these options will fail every time (undecodable, too long, bad model)."""


class AuthenticationFailedError(RequestRejectedError):
    """401 or 403: no API key, an unknown one, or one whose scope does not allow the call."""


class ServiceError(APIError):
    """5xx, or 429/503 still answered after every retry."""


class ConnectionFailedError(TaggramClientError):
    """The service could not be reached, even after every retry. Its ``code``, ``unreachable``,
    is what ``taggram tag`` and the catalogue's records report, beside the service's codes."""

    code = "unreachable"


class NotAServiceError(TaggramClientError):
    """The URL answers HTTP, but no taggram service does: ``GET /v1/models`` is a 404 (a URL with
    ``/v1`` or ``/v1/tag`` on it, another server's port), or a success is not JSON (a web server's
    page). Every request would fail alike, so the commands refuse such a ``--url`` at once."""

    code = "not_a_service"


def _not_a_service(base_url: httpx.URL, error: APIError) -> NotAServiceError:
    """What a 404 to ``GET /v1/models``, which every taggram service answers, says of the URL
    (not the 404's body: another server's is a page of HTML)."""
    return NotAServiceError(
        f"{str(base_url).rstrip('/')}: no taggram service answers there (GET /v1/models answered "
        f"{error.status}); give the service's root URL, e.g. http://127.0.0.1:8000 (with its path "
        "prefix behind a proxy), not an endpoint such as /v1/tag"
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying: ``attempts`` tries in all, the wait doubling from ``backoff``
    seconds up to ``max_delay`` (with jitter so many clients do not retry in lockstep).

    Raises:
        ValueError: ``attempts`` below 1, or ``backoff`` or ``max_delay`` not a finite number of
            seconds >= 0 (a NaN or negative wait would fail in ``sleep`` at the first retry).
    """

    attempts: int = 8
    backoff: float = 0.5
    max_delay: float = 30.0
    statuses: frozenset[int] = frozenset({429, 502, 503, 504})

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        for name in ("backoff", "max_delay"):
            seconds = getattr(self, name)
            if not (math.isfinite(seconds) and seconds >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {seconds}")

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (0-based): what ``retry_after``
        (a ``Retry-After`` header in seconds) asks for plus up to 25 % jitter, else the jittered
        exponential backoff; at most ``max_delay``."""
        if retry_after is not None:
            try:
                asked = max(0.0, float(retry_after))
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
            else:
                # Up to a quarter more than asked, never less: the tracks (and pods) refused
                # together would otherwise all come back in the same instant, and be refused again.
                return min(self.max_delay, asked * random.uniform(1.0, 1.25))
        exponential = min(self.max_delay, self.backoff * 2**attempt)
        return exponential * random.uniform(0.5, 1.0)

    def next_wait(
        self, attempt: int, outcome: httpx.Response | httpx.TransportError
    ) -> float | None:
        """The wait before the next try, or ``None`` when ``outcome`` is final."""
        if attempt + 1 >= self.attempts:
            return None
        if isinstance(outcome, httpx.TransportError):
            return self.delay(attempt)
        if outcome.status_code in self.statuses:
            return self.delay(attempt, outcome.headers.get("Retry-After"))
        return None


def _problem(body: Any) -> tuple[str, str, str | None]:
    """``(code, message, request_id)`` of an error body: an RFC 9457 problem, or the envelope
    ``{"error": {"code", "message", "request_id"}}`` of taggram 0.1 servers."""
    if isinstance(body, dict) and "code" in body and "detail" in body:
        request_id = body.get("request_id")
        return (
            str(body["code"]),
            str(body["detail"]),
            None if request_id is None else str(request_id),
        )
    error = body["error"]
    request_id = error.get("request_id")
    return (
        str(error["code"]),
        str(error["message"]),
        None if request_id is None else str(request_id),
    )


def _checked(outcome: httpx.Response | httpx.TransportError) -> Any:
    """The JSON body of a success; the typed error for anything else."""
    if isinstance(outcome, httpx.TransportError):
        raise ConnectionFailedError(f"{outcome.request.url}: {outcome!r}") from outcome
    if outcome.is_success:
        try:
            return outcome.json()
        except ValueError as error:  # a web server's page: JSONDecodeError was a traceback
            media_type = outcome.headers.get("Content-Type", "no Content-Type")
            raise NotAServiceError(
                f"{outcome.request.url}: the answer is not JSON ({media_type}): no taggram service "
                "answers there"
            ) from error
    request_id: str | None
    try:
        body = outcome.json()
        code, message, request_id = _problem(body)
    except (ValueError, KeyError, TypeError, AttributeError):
        body, code, message = outcome.text, f"http_{outcome.status_code}", outcome.text[:500]
        request_id = outcome.headers.get("X-Request-ID")
    kind: type[APIError] = ServiceError
    if outcome.status_code in (401, 403):
        kind = AuthenticationFailedError
    elif 400 <= outcome.status_code < 500:
        kind = RequestRejectedError
    raise kind(outcome.status_code, code, message, body, request_id)


def service_url_problem(url: str) -> str | None:
    """Why ``url`` is no service's base URL (an absolute http(s) URL with a host), or ``None``.

    The commands refuse such a ``--url`` (``127.0.0.1:8000``, ``ftp://host``) as a usage error:
    every request would fail alike with httpx's words, after its retries.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is not None and parsed.scheme in ("http", "https") and parsed.host:
        return None
    return f"{url!r} is not a service URL: give http://host:port or https://host"


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The ``Authorization: Bearer`` header that sends ``api_key`` (none without a key)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _query(options: dict[str, Any]) -> dict[str, str]:
    """Tag options as query parameters (what ``/v1/tag`` and ``/v1/tag/batch`` read): booleans
    as ``true``/``false``, a list or tuple (several models) comma-separated."""
    return {key: _query_value(value) for key, value in options.items() if value is not None}


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        # str() of a list would send "['A', 'B']", which the service reads as model "['A'".
        return ",".join(map(str, value))
    return str(value)


def read_audio_file(path: Path) -> bytes:
    """The bytes of the file at ``path``, to upload: a regular file or a pipe, read whole
    (:func:`~taggram.audio_files.open_audio_file`, which refuses a device).

    Raises:
        OSError: ``path`` cannot be read, or is a device (``EINVAL``).
    """
    with open_audio_file(path) as handle:
        return handle.read()


def _audio_file(audio: Audio, filename: str | None) -> tuple[str, bytes]:
    if isinstance(audio, bytes):
        return filename or "audio", audio
    path = Path(audio)
    return filename or printable(path.name), read_audio_file(path)


def _batch_files(items: Sequence[BatchItem]) -> list[tuple[str, tuple[str, bytes]]]:
    if not items:  # httpx would send no multipart body at all: a 415 naming no Content-Type
        raise ValueError("tag_batch needs at least one file")
    files = []
    for item in items:
        name, data = item if isinstance(item, tuple) else _audio_file(item, None)
        files.append(("files", (name, data)))
    return files


class TaggramClient:
    """Blocking client; one connection pool, so reuse one instance (``with`` closes it).

    ``api_key``: sent as ``Authorization: Bearer <key>`` when the service requires keys.
    """

    def __init__(
        self,
        url: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
        api_key: str | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._http = http or httpx.Client(
            base_url=url, timeout=timeout, headers=auth_headers(api_key)
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                outcome = error
            wait = self.retry.next_wait(attempt, outcome)
            if wait is None:
                return _checked(outcome)
            time.sleep(wait)
            attempt += 1

    def tag(self, audio: Audio, *, filename: str | None = None, **options: Any) -> dict[str, Any]:
        """Tag one file (a path or bytes); options as ``/v1/tag`` takes them (model, top_k, ...)."""
        return dict(
            self._request(
                "POST",
                "/v1/tag",
                files={"file": _audio_file(audio, filename)},
                params=_query(options),
            )
        )

    def tag_batch(self, items: Sequence[BatchItem], **options: Any) -> list[dict[str, Any]]:
        """Several files in one request: one ``{filename, result | error}`` per file, in order.

        Raises:
            ValueError: ``items`` is empty (nothing is sent).
            RequestRejectedError, ServiceError, ConnectionFailedError: as :meth:`tag`.
        """
        body = self._request(
            "POST", "/v1/tag/batch", files=_batch_files(items), params=_query(options)
        )
        return list(body["results"])

    def models(self) -> dict[str, Any]:
        """``GET /v1/models``: ``{"default_model", "models": [metadata, ...]}``.

        Raises:
            NotAServiceError: the URL answers, but no taggram service does (404, not JSON).
            RequestRejectedError, ServiceError, ConnectionFailedError: as :meth:`tag`.
        """
        try:
            return dict(self._request("GET", "/v1/models"))
        except RequestRejectedError as error:
            if error.status == 404:
                raise _not_a_service(self._http.base_url, error) from error
            raise

    def health(self) -> dict[str, Any]:
        """``/readyz``: retried while the service starts, so it also waits for readiness."""
        return dict(self._request("GET", "/readyz"))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncTaggramClient:
    """The asyncio twin of :class:`TaggramClient`; safe to share between concurrent tasks."""

    def __init__(
        self,
        url: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        http: httpx.AsyncClient | None = None,
        max_connections: int = 100,
        api_key: str | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        limits = httpx.Limits(max_connections=max_connections)
        # For an upload the service answered before reading it all (below): the same service,
        # timeout and key through a blocking socket. Not for a caller's own client.
        self._blocking_url = None if http is not None else url
        self._timeout, self._headers = timeout, auth_headers(api_key)
        self._http = http or httpx.AsyncClient(
            base_url=url, timeout=timeout, limits=limits, headers=auth_headers(api_key)
        )

    def _blocking_request(self, method: str, path: str, kwargs: dict[str, Any]) -> httpx.Response:
        assert self._blocking_url is not None
        with httpx.Client(
            base_url=self._blocking_url, timeout=self._timeout, headers=self._headers
        ) as http:
            return http.request(method, path, **kwargs)

    def _answered_early(self, error: httpx.TransportError, kwargs: dict[str, Any]) -> bool:
        """Whether ``error`` may hide the service's answer to an upload it refused before reading
        all of it (413 past its byte limit, 429 while busy, 401): it answers and closes the
        connection, the rest of the upload then fails to send, and asyncio closes a socket whose
        send failed, the answer unread in it (so a file over the limit was "unreachable", tried
        again on every catalogue run). A blocking socket still reads that answer."""
        return (
            self._blocking_url is not None
            and "files" in kwargs
            and isinstance(error, httpx.ReadError | httpx.WriteError)
        )

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        attempt = 0
        blocking = False  # this upload is sent again through a blocking socket
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                if blocking:
                    outcome = await asyncio.to_thread(self._blocking_request, method, path, kwargs)
                else:
                    outcome = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                outcome = error
                if not blocking and self._answered_early(error, kwargs):
                    blocking = True
                    continue  # at once, and not counted: the first try's answer was lost
            wait = self.retry.next_wait(attempt, outcome)
            if wait is None:
                return _checked(outcome)
            await asyncio.sleep(wait)
            attempt += 1

    async def tag(
        self, audio: Audio, *, filename: str | None = None, **options: Any
    ) -> dict[str, Any]:
        """Tag one file (a path, or bytes with ``filename``); the ``/v1/tag`` response as a dict.

        Options are those of ``POST /v1/tag`` (``model``, ``top_k``, ``threshold``, ``taggram``,
        ``embeddings``, ``hop``). Raises as :meth:`TaggramClient.tag`.
        """
        file = await asyncio.to_thread(_audio_file, audio, filename)
        return dict(
            await self._request("POST", "/v1/tag", files={"file": file}, params=_query(options))
        )

    async def tag_batch(self, items: Sequence[BatchItem], **options: Any) -> list[dict[str, Any]]:
        """Tag several files in one ``/v1/tag/batch`` request; a result or error per file.
        Raises ``ValueError`` for no ``items`` (nothing is sent), else as :meth:`tag`."""
        files = await asyncio.to_thread(_batch_files, items)
        body = await self._request("POST", "/v1/tag/batch", files=files, params=_query(options))
        return list(body["results"])

    async def models(self) -> dict[str, Any]:
        """``GET /v1/models``: ``{"default_model", "models": [metadata, ...]}``; raises as
        :meth:`TaggramClient.models`."""
        try:
            return dict(await self._request("GET", "/v1/models"))
        except RequestRejectedError as error:
            if error.status == 404:
                raise _not_a_service(self._http.base_url, error) from error
            raise

    async def health(self) -> dict[str, Any]:
        """``GET /readyz`` (retried while the service starts or drains): ``{"status": ...}``."""
        return dict(await self._request("GET", "/readyz"))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
