"""``GET /``: the web page; ``/web/*``: its script, style sheet and icon (package data)."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from taggram.service import web

router = APIRouter(include_in_schema=False)

# Only the page's own files and the API on the same origin: no inline script, no third party.
# ``blob:`` is the chosen file, played back by the page's <audio> element.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'"
)
ASSETS_PATH = "/web"


@router.get("/", response_class=HTMLResponse)
async def page(request: Request) -> HTMLResponse:
    """The page, with ``<base href>`` set to the root path the request came through."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return HTMLResponse(
        web.index_html(base=f"{root}/", version=version("taggram")),
        headers={
            "Content-Security-Policy": _CSP,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


def install_web(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/web``."""
    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(packages=[(web.PACKAGE, web.STATIC)]), name="web")
