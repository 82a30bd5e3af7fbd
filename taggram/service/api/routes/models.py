"""``GET /v1/models`` and ``GET /v1/models/{name}``: the repository's metadata."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from taggram.repository import ModelMetadata
from taggram.service.api.auth import require_scope
from taggram.service.api.deps import TaggerDep
from taggram.service.api.openapi import problems
from taggram.service.api.schemas import ModelList

router = APIRouter(tags=["models"], dependencies=[Depends(require_scope("tag"))])


@router.get(
    "/v1/models",
    operation_id="list_models",
    response_model=ModelList,
    summary="List the loaded models",
    responses=problems(503),
)
async def list_models(tagger: TaggerDep) -> ModelList:
    return ModelList(
        default_model=tagger.settings.default_model, models=list(tagger.models.values())
    )


@router.get(
    "/v1/models/{name}",
    operation_id="get_model",
    response_model=ModelMetadata,
    summary="One model's metadata",
    responses=problems(404, 503),
)
async def get_model(name: str, tagger: TaggerDep) -> ModelMetadata:
    return tagger.model(name)
