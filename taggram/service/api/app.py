"""The app factory: routes, error envelope, middleware, a lifespan that owns the Tagger."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from importlib.metadata import version

from fastapi import FastAPI

from taggram.service.api.content_encoding import ContentDecodingMiddleware
from taggram.service.api.errors import install_error_handlers
from taggram.service.api.middleware import RequestContextMiddleware
from taggram.service.api.routes import batch, health, models, tag
from taggram.service.api.routes.web import install_web
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
    log.info("ready: models %s", sorted(tagger.models))


def create_app(settings: Settings, lifecycle: Lifecycle | None = None) -> FastAPI:
    """Build the ASGI app. Its lifespan checks the repository (a broken one fails start-up),
    then loads and warms the models in the background: ``/healthz`` answers at once and
    ``/readyz`` turns 200 when every model is warm."""
    state = lifecycle or Lifecycle()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tagger = Tagger(settings)
        app.state.tagger = tagger
        loading = asyncio.create_task(_load(tagger, state))
        try:
            yield
        finally:
            state.ready = False
            loading.cancel()
            with suppress(asyncio.CancelledError):
                await loading
            await tagger.stop()

    app = FastAPI(
        title="taggram",
        summary="Music and audio tagging with musicnn-family models on ONNX Runtime",
        version=version("taggram"),
        lifespan=lifespan,
    )
    app.state.lifecycle = state
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    # The largest body any route reads; each route's own limit then counts decoded bytes.
    inflated = settings.max_upload_bytes * settings.max_batch_files
    app.add_middleware(ContentDecodingMiddleware, max_bytes=inflated)
    for router in (tag.router, batch.router, models.router, health.router):
        app.include_router(router)
    install_web(app)
    return app
