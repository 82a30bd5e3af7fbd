"""The OpenAPI document is exact: problems, operation ids, media types, constraints, security."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from taggram.service.api import create_app
from taggram.service.settings import Settings

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
# /v2 problems: application/json unless the client's Accept names application/problem+json.
PROTOCOL_PROBLEM = {"application/json": PROBLEM["application/problem+json"], **PROBLEM}


def _document(repository: Path, **settings: Any) -> dict[str, Any]:
    """``/openapi.json`` once the app's lifespan has read the repository."""
    app = create_app(Settings(model_repository=repository, warmup=False, **settings))

    async def fetch() -> dict[str, Any]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                document: dict[str, Any] = (await client.get("/openapi.json")).json()
        return document

    return asyncio.run(fetch())


@pytest.fixture(scope="module")
def document(tiny_repository: Path) -> dict[str, Any]:
    return _document(tiny_repository, default_model="tiny")


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def test_every_error_status_carries_the_problem_schema(document: dict[str, Any]) -> None:
    ids = []
    for path, method, operation in _operations(document):
        ids.append(operation["operationId"])
        for status, response in operation["responses"].items():
            # /readyz answers its probe body ({"status": "starting"}) with its 503.
            if int(status) >= 400 and path != "/readyz":
                expected = PROTOCOL_PROBLEM if path.startswith("/v2") else PROBLEM
                assert response["content"] == expected, (path, method, status)
    assert len(ids) == len(set(ids))
    assert all("__" not in operation_id for operation_id in ids)  # not FastAPI's generated ones
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert {"type", "title", "status", "detail", "instance", "code", "request_id"} <= set(
        schemas["Problem"]["properties"]
    )


def test_statuses_each_operation_can_return(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert set(paths["/v1/tag"]["post"]["responses"]) == {
        *("200", "400", "404", "408", "413", "415", "422", "429", "500", "503")
    }
    # Every operation that reads a body can time out reading it (408) and refuse its
    # Content-Encoding (415: /v2 inference requests included), and every tagging one can find
    # its model's queue full (429).
    with_body = [
        (path, method, operation)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]
    assert {path for path, _, _ in with_body} >= {"/v1/tag", "/v1/tag/batch", "/v1/models"}
    for path, method, operation in with_body:
        assert "408" in operation["responses"], (path, method)
        assert "415" in operation["responses"], (path, method)
        assert "request_timeout" in operation["responses"]["408"]["description"]
    assert "429" in paths["/v1/tag/batch"]["post"]["responses"]
    assert "429" in paths["/v2/models/{model_name}/infer"]["post"]["responses"]
    retry_after = paths["/v1/tag"]["post"]["responses"]["429"]["headers"]["Retry-After"]
    assert retry_after["schema"] == {"type": "integer", "minimum": 1}
    assert set(paths["/healthz"]["get"]["responses"]) == {"200"}


def test_metrics_are_plain_text_and_uploads_are_multipart(document: dict[str, Any]) -> None:
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(metrics) == {"text/plain"}
    body = document["paths"]["/v1/tag"]["post"]["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["additionalProperties"] is False
    assert form["properties"]["file"] == {"type": "string", "format": "binary"}
    raw = {"audio/*", "video/*", "application/ogg", "application/mp4", "application/octet-stream"}
    assert set(body) == {"multipart/form-data", *raw}
    batch = document["paths"]["/v1/tag/batch"]["post"]["requestBody"]["content"]
    files = batch["multipart/form-data"]["schema"]["properties"]["files"]
    assert (files["minItems"], files["maxItems"]) == (1, Settings().max_batch_files)


def test_v2_inference_documents_binary_requests_and_the_health_bodies(
    document: dict[str, Any],
) -> None:
    """A client generated from the document can send the binary tensor extension (the body as
    application/octet-stream, its JSON length in Inference-Header-Content-Length) and reads
    the health routes' JSON bodies."""
    paths = document["paths"]
    for path in ("/v2/models/{model_name}/infer",
                 "/v2/models/{model_name}/versions/{model_version}/infer"):  # fmt: skip
        operation = paths[path]["post"]
        assert set(operation["requestBody"]["content"]) == {
            "application/json",
            "application/octet-stream",
        }
        headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
        assert headers == ["Inference-Header-Content-Length"]
    schemas = document["components"]["schemas"]
    live = paths["/v2/health/live"]["get"]["responses"]["200"]["content"]["application/json"]
    assert schemas[live["schema"]["$ref"].rsplit("/", 1)[1]]["required"] == ["live"]


def test_options_carry_the_served_models_constraints(document: dict[str, Any]) -> None:
    parameters = {
        p["name"]: p["schema"] for p in document["paths"]["/v1/tag"]["post"]["parameters"]
    }
    assert parameters["embeddings"]["enum"] == ["embedding"]  # the tiny model's only layer
    assert parameters["hop"]["minimum"] == 1 / 16000
    assert parameters["hop"]["maximum"] == (48128 - 256) / 16000  # one patch span
    assert parameters["threshold"] == {**parameters["threshold"], "minimum": 0, "maximum": 1}
    assert parameters["model"]["type"] == "string" and "enum" not in parameters["model"]
    assert parameters["model"]["examples"] == ["tiny"]
    assert "anyOf" not in parameters["top_k"]  # an absent option is the default, not null
    form = document["paths"]["/v1/tag"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["embeddings"]["enum"] == ["embedding"]


def test_security_is_documented_only_when_keys_are_on(
    document: dict[str, Any], tiny_repository: Path
) -> None:
    assert "securitySchemes" not in document["components"]
    assert all("security" not in op for _, _, op in _operations(document))
    secured = _document(tiny_repository, default_model="tiny", api_keys="k" * 20)
    assert set(secured["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    for path, _, operation in _operations(secured):
        protected = path.startswith(("/v1", "/v2"))
        assert ("security" in operation) == protected, path
        assert ("401" in operation["responses"]) == protected, path
