"""Typed dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from taggram.service.errors import NotReadyError
from taggram.service.lifecycle import Lifecycle
from taggram.service.tagging import Tagger


def get_tagger(request: Request) -> Tagger:
    """The app's :class:`~taggram.service.tagging.Tagger`.

    Raises:
        NotReadyError: models are still loading (503).
    """
    tagger: Tagger | None = getattr(request.app.state, "tagger", None)
    if tagger is None:
        raise NotReadyError("models are still loading")
    return tagger


def get_lifecycle(request: Request) -> Lifecycle:
    """The app's :class:`~taggram.service.lifecycle.Lifecycle` (ready, draining, failed)."""
    lifecycle: Lifecycle = request.app.state.lifecycle
    return lifecycle


def no_query_parameters(request: Request) -> None:
    """Refuse every query parameter on a route that reads none: ``GET /v1/models?kind=custom``
    listed every model, as if filtered. Raises :class:`RequestValidationError` located at
    ``["query", name]`` (422 ``invalid_options``), as an unknown tag option is."""
    names = dict.fromkeys(request.query_params.keys())
    if names:
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": "Extra inputs are not permitted",
                    "input": request.query_params.getlist(name),
                }
                for name in names
            ]
        )


TaggerDep = Annotated[Tagger, Depends(get_tagger)]
LifecycleDep = Annotated[Lifecycle, Depends(get_lifecycle)]
