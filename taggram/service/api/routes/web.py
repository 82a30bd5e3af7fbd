"""``GET /``: the web page; ``GET /docs``: Swagger UI; ``/web/*``: their scripts, style sheets and
icon (package data).

Swagger UI's files are served from the package (``static/swagger-ui/``: swagger-ui-dist's bundle
and style sheet, Apache-2.0, its ``LICENSE`` and ``NOTICE`` beside them), as FastAPI's recipe for
self-hosting them does: FastAPI's own ``/docs`` loads them from a CDN, a blank page offline.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from importlib.metadata import version

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Receive, Scope, Send

from taggram.service import web
from taggram.service.api.paths import root_path

router = APIRouter(include_in_schema=False)

# Only the page's own files and the API on the same origin: no inline script, no third party.
# ``blob:`` is the chosen file, played back by the page's <audio> element.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'"
)
# /docs: Swagger UI's files from this service; its one inline script (FastAPI's, which starts
# Swagger UI) allowed by its hash, so that no other inline script runs. Data URIs are its icons.
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' {scripts}; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
ASSETS_PATH = "/web"
# swagger-ui-dist's files under the assets (its version is in the README's "API" section).
SWAGGER_UI = f"{ASSETS_PATH}/swagger-ui"


@router.get("/", response_class=HTMLResponse)
async def page(request: Request) -> HTMLResponse:
    """The page, with ``<base href>`` set to the root path the request came through."""
    root = root_path(request.scope)
    return HTMLResponse(
        web.index_html(base=f"{root}/", version=version("taggram")),
        headers={
            "Content-Security-Policy": _CSP,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/docs", response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:
    """Swagger UI on this service's OpenAPI document, every file from this service: no
    third-party host is contacted (the online validator is off too)."""
    root = root_path(request.scope)
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{SWAGGER_UI}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{SWAGGER_UI}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.svg",
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers["Content-Security-Policy"] = _DOCS_CSP.format(
        scripts=" ".join(_script_hashes(bytes(page.body).decode()))
    )
    return page


def _script_hashes(html: str) -> list[str]:
    """The CSP sources (``'sha256-<base64>'``) of the inline scripts of ``html``."""
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    ]


class _WholeFiles(StaticFiles):
    """Static files served whole: a ``Range`` request gets the full file (200), as RFC 9110
    lets a server answer, and ``Accept-Ranges: none`` says so.

    Starlette answers a Range it cannot serve (``bytes=5-1``, ``bytes=99999999-``, or
    ``items=0-1``, which RFC 9110 says to ignore) with a text/plain 400 or 416 from inside the
    file response, past the app's problem-details handlers. The assets are small files the page
    and /docs load whole, so serving parts of them bought nothing.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request without its ``Range`` and ``If-Range`` headers."""
        if scope["type"] == "http":
            ranged = (b"range", b"if-range")
            scope = {**scope, "headers": [h for h in scope["headers"] if h[0] not in ranged]}
        await super().__call__(scope, receive, send)

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file at ``path`` (normalised); the page's template is not served raw: it is
        served filled in at ``/``, with the page's headers (``/web/index.html`` answered the
        template itself, ``{{BASE}}`` unfilled and no Content-Security-Policy).

        Raises:
            HTTPException: 404 for the template, as for a file that is not there.
        """
        if path == web.TEMPLATE:
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        """Starlette's file response, saying that no part of the file is served alone."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["accept-ranges"] = "none"
        return response


def install_web(app: FastAPI) -> None:
    """Serve the page's assets under ``/web`` (the page itself and ``/docs`` are ``router``'s)."""
    app.mount(ASSETS_PATH, _WholeFiles(packages=[(web.PACKAGE, web.STATIC)]), name="web")
