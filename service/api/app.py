"""The app factory: routes, error envelope, middleware, a lifespan that owns the Tagger."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI

from service.api.errors import install_error_handlers
from service.api.middleware import RequestContextMiddleware
from service.api.routes import batch, health, models, tag
from service.lifecycle import Lifecycle
from service.settings import Settings
from service.tagging import Tagger

log = logging.getLogger(__name__)


def create_app(settings: Settings, lifecycle: Lifecycle | None = None) -> FastAPI:
    """Build the ASGI app; models load and warm up in its lifespan, before it reports ready."""
    state = lifecycle or Lifecycle()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tagger = Tagger(settings)
        await tagger.start()
        app.state.tagger = tagger
        state.ready = True
        log.info("ready: models %s, default %s", sorted(tagger.models), settings.default_model)
        try:
            yield
        finally:
            state.ready = False
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
    for router in (tag.router, batch.router, models.router, health.router):
        app.include_router(router)
    return app
