"""Typed dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

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


TaggerDep = Annotated[Tagger, Depends(get_tagger)]
LifecycleDep = Annotated[Lifecycle, Depends(get_lifecycle)]
