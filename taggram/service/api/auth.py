"""Optional API keys: who may call ``/v1`` and ``/v2``, and with which scope.

Keys come from ``TAGGRAM_API_KEYS`` (comma-separated) and ``TAGGRAM_API_KEYS_FILE`` (one a line,
``#`` comments; a mounted Kubernetes Secret), each ``key`` (scope ``tag``) or ``key:admin``. No
key configured means authentication is off. A client sends ``Authorization: Bearer <key>`` or
``X-API-Key: <key>`` (one key: two different ones in a request are refused); the service keeps
only SHA-256 digests and compares them with :func:`hmac.compare_digest` against every configured
key, so the time taken does not depend on how much of a key matched. A key is named in logs and
metrics by its id, the first 12 hex digits of its digest, never by the key itself.

Routes declare what they need with ``dependencies=[Depends(require_scope("tag"))]``; ``admin``
includes ``tag``. ``/healthz``, ``/readyz``, ``/metrics`` and the documentation stay open.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from taggram.service import metrics
from taggram.service.errors import AuthenticationError, PermissionDeniedError
from taggram.service.settings import Settings, SettingsError

log = logging.getLogger(__name__)

Scope = Literal["tag", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
# What each scope may do: admin (creating and deleting models) also tags.
_GRANTS: dict[Scope, frozenset[Scope]] = {
    "tag": frozenset({"tag"}),
    "admin": frozenset({"tag", "admin"}),
}
# Shorter keys are refused at start-up: they could be guessed.
MIN_KEY_LENGTH = 16
API_KEY_HEADER = "X-API-Key"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id(key: str) -> str:
    """The short id that names ``key`` in logs and metrics (12 hex digits of its SHA-256)."""
    return _digest(key).hex()[:12]


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its short ``id`` (for logs and metrics), scope and SHA-256 digest
    (the key itself is not kept).
    """

    id: str
    scope: Scope
    digest: bytes

    def allows(self, scope: Scope) -> bool:
        """Whether this key's scope grants ``scope`` (``admin`` grants ``tag`` too)."""
        return scope in _GRANTS[self.scope]

    @classmethod
    def parse(cls, entry: str, where: str = "") -> ApiKey:
        """``key`` or ``key:scope``; raises :class:`SettingsError` naming the key by its id and
        by ``where`` it was given (``"entry 2 of TAGGRAM_API_KEYS"``), never by the key: an
        operator cannot tell which of their keys a digest is."""
        secret, colon, scope = entry.strip().rpartition(":")
        if not colon:
            secret, scope = entry.strip(), "tag"
        named = f"API key {key_id(secret)}" + (f" ({where})" if where else "")
        if scope not in SCOPES:
            raise SettingsError(f"{named}: unknown scope {scope!r}; use {SCOPES}")
        if len(secret) < MIN_KEY_LENGTH:
            raise SettingsError(f"{named} is shorter than {MIN_KEY_LENGTH} characters")
        return cls(id=key_id(secret), scope=scope, digest=_digest(secret))


class KeyRing:
    """The configured keys; empty means authentication is off."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys = tuple(keys)

    @property
    def enabled(self) -> bool:
        """Authentication is on when at least one key is configured."""
        return bool(self.keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """Parse ``api_keys`` and ``api_keys_file``; raises :class:`SettingsError` when a key is
        malformed or the file cannot be read."""
        entries = [
            (secret.get_secret_value(), f"entry {number} of TAGGRAM_API_KEYS")
            for number, secret in enumerate(settings.api_keys, 1)
        ]
        if settings.api_keys_file is not None:
            entries += _file_entries(settings.api_keys_file)
        ring = cls(ApiKey.parse(entry, where) for entry, where in entries if entry.strip())
        if settings.api_keys_file is not None and not ring.enabled:
            # Not an error (an empty Secret is how a deployment runs without keys), but a
            # Secret left unfilled by mistake should not open the service without a word.
            log.warning(
                "TAGGRAM_API_KEYS_FILE %s holds no keys: authentication is off, every route open",
                settings.api_keys_file,
            )
        return ring

    def find(self, presented: str) -> ApiKey | None:
        """The key equal to ``presented``, comparing digests in constant time against all."""
        digest = _digest(presented)
        found = None
        for key in self.keys:  # no early exit: the loop takes as long whichever key matches
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found


def _file_entries(path: Path) -> list[tuple[str, str]]:
    """The file's keys, each with where it is (``"line 3 of TAGGRAM_API_KEYS_FILE path"``)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise SettingsError(f"cannot read TAGGRAM_API_KEYS_FILE {path}: {error}") from error
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        where = f"line {number} of TAGGRAM_API_KEYS_FILE {path}"
        entries += [(part, where) for part in line.split(",") if part.strip()]
    return entries


def keys_of(request: Request) -> KeyRing:
    """The app's configured :class:`KeyRing`."""
    ring: KeyRing = request.app.state.keys
    return ring


# Declared as FastAPI security schemes so the OpenAPI document names them; either one will do.
_BEARER = HTTPBearer(
    scheme_name="bearer", auto_error=False, description="`Authorization: Bearer <API key>`"
)
_API_KEY = APIKeyHeader(
    name=API_KEY_HEADER, scheme_name="apiKey", auto_error=False, description="the API key"
)


_HOW = "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def _other_scheme(authorization: str | None) -> str | None:
    """The scheme of an ``Authorization`` header that is not ``Bearer`` (``Basic``, say), else
    None. Such a header is a credential sent, just not one read."""
    scheme = (authorization or "").strip().partition(" ")[0]
    return scheme if scheme and scheme.lower() != "bearer" else None


def _presented_keys(request: Request) -> list[tuple[str, str]]:
    """Every API key the request carries, as ``(header, key)``: each ``Authorization: Bearer``
    and each ``X-API-Key`` header, read as the security schemes read the first of each."""
    keys = []
    for value in request.headers.getlist("Authorization"):
        scheme, credentials = get_authorization_scheme_param(value)
        if scheme.lower() == "bearer" and credentials:
            keys.append(("Authorization: Bearer", credentials))
    keys += [(API_KEY_HEADER, value) for value in request.headers.getlist(API_KEY_HEADER) if value]
    return keys


def _conflict(keys: list[tuple[str, str]]) -> str | None:
    """The 401's detail when ``keys`` are not all one key, else None. Serving the first one
    read would ignore the other without a word (a stale key in a proxy's header, a client's
    default beside the one meant), and which key answered would hang on header order. The
    headers are named, never the keys."""
    different = {key for _, key in keys}
    if len(different) < 2:
        return None
    carriers = " and ".join(dict.fromkeys(header for header, _ in keys))
    return f"the request carries {len(different)} different API keys ({carriers}): send one key"


def _refusal(presented: str | None, scheme: str | None) -> str:
    """The 401's detail: a key that matched none, or why none was read. Told "an API key is
    required", the sender of a credential of another ``scheme`` could not see what to change.
    Only the scheme is named, never the credential (it is a secret), and only its first 32
    characters."""
    if presented:
        return "the API key is not valid"
    if scheme is not None:
        return f"the credential scheme {scheme[:32]!r} is not accepted: {_HOW}"
    return f"an API key is required: {_HOW}"


def require_scope(scope: Scope) -> Callable[..., Awaitable[None]]:
    """A route dependency: 401 without a known key, 403 when its scope does not allow ``scope``.

    The key is read from ``Authorization: Bearer <key>`` or ``X-API-Key`` (the same key in
    both will do; two different keys are a 401). Its id is kept in ``request.state.key_id`` for
    logs and counted in ``taggram_api_key_requests_total{key_id}``. Does nothing while
    authentication is off.
    """

    async def check(
        request: Request,
        # Declare the two schemes in the OpenAPI document; every header is read below.
        # Defaults, not Annotated: annotations are strings here and ``scope`` is a local.
        bearer: HTTPAuthorizationCredentials | None = Security(_BEARER, scopes=[scope]),
        header: str | None = Security(_API_KEY, scopes=[scope]),
    ) -> None:
        ring = keys_of(request)
        if not ring.enabled:
            return
        keys = _presented_keys(request)
        conflict = _conflict(keys)
        if conflict is not None:
            metrics.AUTH_FAILURES.labels(reason="conflict").inc()
            log.info("%s %s: %s", request.method, request.url.path, conflict)
            raise AuthenticationError(conflict)
        presented = keys[0][1] if keys else None
        key = ring.find(presented) if presented else None
        if key is None:
            scheme = _other_scheme(request.headers.get("Authorization"))
            if presented:
                reason, what = "unknown", "unknown API key"
            elif scheme is not None:
                # counted apart: it was "missing", as if no credential had been sent at all
                reason, what = "scheme", f"credential scheme {scheme[:32]!r}, no API key"
            else:
                reason, what = "missing", "missing API key"
            metrics.AUTH_FAILURES.labels(reason=reason).inc()
            log.info("%s %s: %s", request.method, request.url.path, what)
            raise AuthenticationError(_refusal(presented, scheme))
        request.state.key_id = key.id
        if not key.allows(scope):
            metrics.AUTH_FAILURES.labels(reason="scope").inc()
            log.info(
                "%s %s: key %s lacks scope %s", request.method, request.url.path, key.id, scope
            )
            raise PermissionDeniedError(
                f"key {key.id} has scope {key.scope!r}; this needs {scope!r}"
            )
        metrics.API_KEY_REQUESTS.labels(key_id=key.id).inc()

    return check
