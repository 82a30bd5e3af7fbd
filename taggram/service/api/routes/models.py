"""``GET /v1/models`` and ``GET /v1/models/{name}``: the repository's metadata."""

from __future__ import annotations

from fastapi import APIRouter

from taggram.repository import ModelMetadata
from taggram.service.api.deps import TaggerDep
from taggram.service.api.schemas import ModelList

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList, summary="List the loaded models")
async def list_models(tagger: TaggerDep) -> ModelList:
    return ModelList(
        default_model=tagger.settings.default_model, models=list(tagger.models.values())
    )


@router.get("/v1/models/{name}", response_model=ModelMetadata, summary="One model's metadata")
async def get_model(name: str, tagger: TaggerDep) -> ModelMetadata:
    return tagger.model(name)
