"""Headers that keep a browser from misreading answers or framing the docs, on a real server."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx

from tests.support.server import Server


def test_every_answer_says_nosniff_and_the_apis_are_not_stored(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        answers = {
            "models": http.get("/v1/models"),
            "unknown model": http.get("/v1/models/no_such_model"),
            "v2 metadata": http.get("/v2"),
            # refused by the middleware that inflates bodies, before any route
            "encoding": http.post("/v1/tag", content=b"x", headers={"Content-Encoding": "br"}),
        }
        for name, response in answers.items():
            assert response.headers["X-Content-Type-Options"] == "nosniff", name
            assert response.headers["Cache-Control"] == "no-store", name
        for path in ("/healthz", "/metrics", "/openapi.json", "/nowhere", "/web/app.js"):
            response = http.get(path)
            assert response.headers["X-Content-Type-Options"] == "nosniff", path
            assert "no-store" not in response.headers.get("Cache-Control", ""), path


def test_docs_may_not_be_framed_and_run_only_their_own_inline_script(server: Server) -> None:
    docs = httpx.get(f"{server.url}/docs")
    policy = docs.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy
    (script,) = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}';" in policy
