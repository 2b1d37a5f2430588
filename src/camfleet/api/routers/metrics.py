"""``/metrics``: Prometheus text format (bearer token like the rest of the API)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..auth import authorize

router = APIRouter(tags=["system"], dependencies=[Depends(authorize)])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition"}})
async def metrics(request: Request) -> Response:
    """Per camera: state, fps (decode/processed/skipped), detector req/s, inference ms; per process."""
    body = await asyncio.to_thread(generate_latest, request.app.state.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
