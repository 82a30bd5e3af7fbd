"""Probes and metrics: ``/healthz`` (alive), ``/readyz`` (send traffic?), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import LifecycleDep
from service.api.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Readiness: models loaded and warmed, not draining",
    responses={503: {"model": Health, "description": "starting or draining"}},
)
async def readyz(lifecycle: LifecycleDep) -> JSONResponse:
    if lifecycle.accepting_traffic:
        return JSONResponse({"status": "ready"})
    status = "draining" if lifecycle.draining else "starting"
    return JSONResponse({"status": status}, status_code=503)


@router.get("/metrics", summary="Prometheus metrics (text exposition format)")
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
