"""``GET /``: the web page; ``GET /docs``: Swagger UI; ``/web/*``: their scripts, style sheets and
icon (package data).

Swagger UI's files are served from the package (``static/swagger-ui/``: swagger-ui-dist's bundle
and style sheet, Apache-2.0, its ``LICENSE`` and ``NOTICE`` beside them), as FastAPI's recipe for
self-hosting them does: FastAPI's own ``/docs`` loads them from a CDN, a blank page offline.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.metadata import version

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

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


def install_web(app: FastAPI) -> None:
    """Serve the page's assets under ``/web`` (the page itself and ``/docs`` are ``router``'s)."""
    app.mount(ASSETS_PATH, StaticFiles(packages=[(web.PACKAGE, web.STATIC)]), name="web")
