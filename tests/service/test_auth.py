"""API keys: parsing, the keys file, constant-time lookup, scopes, 401/403 problems, CORS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, FastAPI
from prometheus_client import REGISTRY

from taggram.service.api import create_app
from taggram.service.api.auth import ApiKey, KeyRing, key_id, require_scope
from taggram.service.api.errors import install_error_handlers
from taggram.service.settings import Settings

TAG = "a-tag-key-of-some-length"
ADMIN = "an-admin-key-of-some-length"


def test_keys_carry_a_scope_tag_by_default() -> None:
    assert ApiKey.parse(TAG).scope == "tag"
    assert ApiKey.parse(f"{ADMIN}:admin").scope == "admin"
    assert ApiKey.parse(f"{TAG}:tag").id == key_id(TAG)
    assert ApiKey.parse(f"{ADMIN}:admin").allows("tag")
    assert not ApiKey.parse(TAG).allows("admin")


@pytest.mark.parametrize("entry", ["k3y-x9", f"{TAG}:owner", "s3cr3t-q:admin"])
def test_malformed_keys_are_refused_without_showing_them(entry: str) -> None:
    with pytest.raises(ValueError) as error:
        ApiKey.parse(entry)
    assert entry.partition(":")[0] not in str(error.value)


def test_keys_come_from_the_environment_and_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# a Kubernetes Secret\n\n{ADMIN}:admin  # the operator\n")
    monkeypatch.setenv("TAGGRAM_API_KEYS", f" {TAG} ,")
    monkeypatch.setenv("TAGGRAM_API_KEYS_FILE", str(keys_file))
    ring = KeyRing.from_settings(Settings())
    assert ring.enabled
    assert {(key.id, key.scope) for key in ring.keys} == {
        (key_id(TAG), "tag"),
        (key_id(ADMIN), "admin"),
    }
    assert "a-tag-key" not in repr(Settings())  # keys are secrets, even in a settings dump
    missing = Settings(api_keys_file=tmp_path / "absent")
    with pytest.raises(ValueError, match="TAGGRAM_API_KEYS_FILE"):
        KeyRing.from_settings(missing)


def test_a_keys_file_without_keys_warns_that_authentication_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A Secret left holding only comments turned authentication off without a word."""
    keys_file = tmp_path / "keys"
    keys_file.write_text("# fill in: key[:scope], one a line\n\n")
    monkeypatch.delenv("TAGGRAM_API_KEYS", raising=False)
    with caplog.at_level("WARNING", logger="taggram.service.api.auth"):
        assert not KeyRing.from_settings(Settings(api_keys_file=keys_file)).enabled
    assert f"TAGGRAM_API_KEYS_FILE {keys_file} holds no keys: authentication is off" in caplog.text
    caplog.clear()
    keys_file.write_text(f"{ADMIN}:admin\n")
    with caplog.at_level("WARNING", logger="taggram.service.api.auth"):
        assert KeyRing.from_settings(Settings(api_keys_file=keys_file)).enabled
    assert caplog.text == ""


def test_lookup_finds_exactly_the_key() -> None:
    ring = KeyRing([ApiKey.parse(TAG), ApiKey.parse(f"{ADMIN}:admin")])
    found = ring.find(ADMIN)
    assert found is not None and found.scope == "admin"
    for wrong in ("", TAG[:-1], TAG + "x", TAG.upper(), f"{TAG}:tag"):
        assert ring.find(wrong) is None
    assert not KeyRing([]).enabled


def _app(keys: list[str]) -> FastAPI:
    app = FastAPI()
    app.state.keys = KeyRing(ApiKey.parse(entry) for entry in keys)
    install_error_handlers(app)

    @app.get("/v1/thing", dependencies=[Depends(require_scope("tag"))])
    async def thing() -> str:
        return "tagged"

    @app.delete("/v1/thing", dependencies=[Depends(require_scope("admin"))])
    async def delete_thing() -> str:
        return "deleted"

    return app


def _call(app: FastAPI, method: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, "/v1/thing", headers=headers)

    return asyncio.run(run())


def test_scopes_decide_what_a_key_may_do() -> None:
    app = _app([TAG, f"{ADMIN}:admin"])
    bearer = {"Authorization": f"Bearer {TAG}"}
    assert _call(app, "GET", bearer).json() == "tagged"
    assert _call(app, "GET", {"X-API-Key": TAG}).json() == "tagged"
    forbidden = _call(app, "DELETE", bearer)
    assert forbidden.status_code == 403
    assert forbidden.headers["Content-Type"] == "application/problem+json"
    assert forbidden.json()["code"] == "forbidden"
    assert key_id(TAG) in forbidden.json()["detail"] and TAG not in forbidden.text
    assert _call(app, "DELETE", {"X-API-Key": ADMIN}).json() == "deleted"


@pytest.mark.parametrize(
    "headers",
    [None, {"Authorization": "Bearer wrong-key-of-some-length"}, {"Authorization": f"Basic {TAG}"}],
)
def test_a_missing_or_wrong_key_gets_401_with_a_challenge(headers: dict[str, str] | None) -> None:
    response = _call(_app([TAG]), "GET", headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="taggram"'
    assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({"Authorization": f"Basic {TAG}"}, "the credential scheme 'Basic' is not accepted: "),
        ({"Authorization": "Bearer"}, "an API key is required: "),
        ({"Authorization": f"Basic {TAG}", "X-API-Key": "wrong-key-of-some-length"}, "the API"),
    ],
)
def test_a_credential_of_another_scheme_is_told_how_to_send_the_key(
    headers: dict[str, str], detail: str
) -> None:
    """``Authorization: Basic ...`` was told "an API key is required" although it sent one."""
    response = _call(_app([TAG]), "GET", headers)
    assert response.status_code == 401
    assert response.json()["detail"].startswith(detail)
    assert TAG not in response.text


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (None, "missing"),
        ({"Authorization": "Bearer"}, "missing"),
        ({"Authorization": f"Basic {TAG}"}, "scheme"),
        ({"Authorization": "Digest username=someone"}, "scheme"),
        ({"X-API-Key": "wrong-key-of-some-length"}, "unknown"),
        ({"Authorization": f"Basic {TAG}", "X-API-Key": "wrong-key-of-some-length"}, "unknown"),
        ({"Authorization": f"Bearer {TAG}", "X-API-Key": "wrong-key-of-some-length"}, "conflict"),
    ],
)
def test_each_refusal_is_counted_under_what_happened(
    headers: dict[str, str] | None, reason: str
) -> None:
    """``Authorization: Basic ...`` alone was counted as ``missing``, as if no credential had
    been sent at all; it is ``scheme``."""
    reasons = ("missing", "scheme", "unknown", "scope", "conflict")

    def counts() -> dict[str, float]:
        return {
            name: REGISTRY.get_sample_value("taggram_auth_failures_total", {"reason": name}) or 0
            for name in reasons
        }

    before = counts()
    assert _call(_app([TAG]), "GET", headers).status_code == 401
    after = counts()
    assert {name: after[name] - before[name] for name in reasons} == {
        name: 1 if name == reason else 0 for name in reasons
    }


def test_without_keys_everything_is_open() -> None:
    app = _app([])
    assert _call(app, "GET").json() == "tagged"
    assert _call(app, "DELETE").json() == "deleted"


def test_cors_is_off_by_default_and_follows_the_setting(tiny_repository: Path) -> None:
    preflight = {
        "Origin": "https://catalogue.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }

    def options(settings: Settings) -> httpx.Response:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=create_app(settings))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.options("/v1/tag", headers=preflight)

        return asyncio.run(run())

    closed = options(Settings(model_repository=tiny_repository))
    assert "access-control-allow-origin" not in closed.headers
    # As copied from the address bar (a trailing slash, capitals): it was matched as written,
    # so the browser's own origin was refused (400 to the preflight) without a word.
    for written in ("https://catalogue.example", "https://Catalogue.example/"):
        allowed = options(Settings(model_repository=tiny_repository, cors_origins=written))
        assert allowed.status_code == 200, written
        assert allowed.headers["access-control-allow-origin"] == "https://catalogue.example"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
