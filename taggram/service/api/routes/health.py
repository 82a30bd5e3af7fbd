"""Probes and metrics: ``/healthz`` (alive), ``/readyz`` (send traffic?), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from taggram.service.api.deps import LifecycleDep
from taggram.service.api.schemas import Health

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    operation_id="healthz",
    response_model=Health,
    summary="Liveness: the process answers",
)
async def healthz() -> Health:
    """Liveness: 200 whenever the process answers (models may still be loading)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="readyz",
    response_model=Health,
    summary="Readiness: models loaded and warmed, not draining",
    responses={503: {"model": Health, "description": "starting, draining or failed"}},
)
async def readyz(lifecycle: LifecycleDep) -> JSONResponse:
    """Readiness: 200 when every model is loaded and warmed and the service is not draining,
    else 503 with the state.
    """
    status_code = 200 if lifecycle.accepting_traffic else 503
    return JSONResponse({"status": lifecycle.status}, status_code=status_code)


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (text exposition format)",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def prometheus_metrics() -> Response:
    """Every collector of the default registry in the Prometheus text exposition format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
