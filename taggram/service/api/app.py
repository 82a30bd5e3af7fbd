"""The app factory: routes, error envelope, middleware, a lifespan that owns the Tagger."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI
from starlette.routing import Mount, Route

from taggram.service.api.auth import API_KEY_HEADER, KeyRing
from taggram.service.api.body_budget import BodyBudgetMiddleware
from taggram.service.api.content_encoding import ContentDecodingMiddleware
from taggram.service.api.cors import ProblemCORSMiddleware
from taggram.service.api.errors import install_error_handlers
from taggram.service.api.head import HeadMiddleware
from taggram.service.api.middleware import REQUEST_ID_HEADER, RequestContextMiddleware
from taggram.service.api.openapi import build_openapi
from taggram.service.api.routes import batch, health, models, tag, triton, v2, web
from taggram.service.api.routes.web import install_web
from taggram.service.api.security_headers import SecurityHeadersMiddleware
from taggram.service.lifecycle import Lifecycle
from taggram.service.settings import Settings
from taggram.service.tagging import Tagger

log = logging.getLogger(__name__)


async def _load(tagger: Tagger, state: Lifecycle) -> None:
    """Create and warm the sessions while the server already answers probes."""
    try:
        await tagger.start()
    except Exception:
        log.exception("loading the models failed; shutting down")
        state.failed = True
        return
    state.ready = True
    log.info("ready: models %s, default %s", sorted(tagger.models), tagger.settings.default_model)


def create_app(
    settings: Settings, lifecycle: Lifecycle | None = None, tagger: Tagger | None = None
) -> FastAPI:
    """Build the ASGI app. Its lifespan checks the repository (a broken one fails start-up)
    unless ``tagger`` was made from it already, then loads and warms the models in the
    background: ``/healthz`` answers at once and ``/readyz`` turns 200 when every model is warm.
    Malformed API keys raise :class:`~taggram.service.settings.SettingsError` here, before the
    server starts."""
    state = lifecycle or Lifecycle()
    keys = KeyRing.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served = tagger or Tagger(settings)
        app.state.tagger = served
        loading = asyncio.create_task(_load(served, state))
        try:
            yield
        finally:
            state.ready = False
            loading.cancel()
            with suppress(asyncio.CancelledError):
                await loading
            await served.stop()

    app = FastAPI(
        title="taggram",
        summary="Music and audio tagging with musicnn-family models on ONNX Runtime",
        version=version("taggram"),
        lifespan=lifespan,
        # /docs is served from the package (routes/web.py); FastAPI's loads a CDN's files, and so
        # does its ReDoc page, which is left out.
        docs_url=None,
        redoc_url=None,
    )
    # A path with a trailing slash is a 404 naming the path without it (api/errors.py), not
    # Starlette's empty 307 redirect.
    app.router.redirect_slashes = False
    app.state.lifecycle = state
    app.state.keys = keys
    install_error_handlers(app)
    # triton before v2: GET /v2/models/stats is the statistics, not a model named "stats".
    routers = (
        tag.router,
        batch.router,
        models.router,
        triton.router,
        v2.router,
        health.router,
        web.router,
    )
    for router in routers:
        app.include_router(router)
    install_web(app)
    app.add_middleware(HeadMiddleware)
    # Inside the request metrics and the decoding of compressed bodies: its refusals are
    # counted, and it counts the decoded bytes that the uploads' spools hold.
    app.add_middleware(BodyBudgetMiddleware, max_bytes=settings.max_body_bytes_in_flight)
    if settings.cors_origins:
        # Outside the routes, so preflight requests are answered before authentication, and
        # inside the request metrics, which count the preflights too; a refused preflight is a
        # problem, like every other refusal.
        app.add_middleware(
            ProblemCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                API_KEY_HEADER,
                "Content-Type",
                "Content-Encoding",
                REQUEST_ID_HEADER,
                v2.HEADER_LENGTH,
            ],
            expose_headers=[
                REQUEST_ID_HEADER,
                "Server-Timing",
                "Retry-After",
                "WWW-Authenticate",
                v2.HEADER_LENGTH,
            ],
        )
    # FastAPI lists an included router as one opaque route: its routes are listed one by one.
    own = [route for route in app.router.routes if isinstance(route, Route | Mount)]
    routes = [*own, *(route for router in routers for route in router.routes)]
    app.add_middleware(RequestContextMiddleware, routes=routes)
    # The largest body any route reads; each route's own limit then counts decoded bytes.
    inflated = settings.max_upload_bytes * settings.max_batch_files
    app.add_middleware(ContentDecodingMiddleware, max_bytes=inflated)
    # Outermost: every answer gets them, the refusals of the middleware above included.
    app.add_middleware(SecurityHeadersMiddleware)

    def openapi() -> dict[str, Any]:
        """Built once the models are known (their embedding names and patch lengths); whatever
        changes the served models must reset ``app.openapi_schema`` to ``None``. From the
        repository's models only: the document is open without a key, and the custom models'
        names (a client's own, maybe telling) are for keys to list (``GET /v1/models``); their
        features and patches are their bases', so the constraints stay the same."""
        if app.openapi_schema is not None:
            return app.openapi_schema
        tagger: Tagger | None = getattr(app.state, "tagger", None)
        document = build_openapi(
            app,
            keys,
            [entry.metadata for entry in tagger.entries.values()] if tagger else [],
            settings.max_batch_files,
            extra_schemas=[v2.InferenceRequest, triton.RepositoryIndexRequest],
        )
        if tagger is not None:
            app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    return app
