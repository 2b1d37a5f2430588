"""The coordinator API's models: the node's, each with the fields a fleet adds (nothing else differs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..schemas import ApplyResult, CameraView, Event


class FleetCameraView(CameraView):
    """A camera as on a node, plus ``node``: where the leader placed it (null: not placed)."""

    node: str | None = None


class FleetApplyResult(ApplyResult):
    """An apply's outcome as on a node, plus where the leader placed the cameras."""

    placed: dict[str, str] = Field(default_factory=dict, description="camera → node")
    unplaced: dict[str, str] = Field(default_factory=dict, description="camera → why it runs nowhere")
    warnings: list[str] = Field(default_factory=list)


class FleetEvent(Event):
    """An event as on a node, plus the ``node`` that sent it.

    ``retain_pending``: that node still has to be told of a retain flag set while it was unreachable.
    """

    node: str
    retain_pending: bool = Field(default=False, description="the node has not taken ``retained`` yet")


class FleetEventPage(BaseModel):
    """One page of events from every node, newest first, and how many match in all."""

    items: list[FleetEvent]
    total: int
    limit: int
    offset: int


def fleet_event(row: dict[str, Any]) -> FleetEvent:
    """The API model of a row of :func:`camfleet.fleetstore.events.page_events`."""
    return FleetEvent(**{k: v for k, v in row.items() if k not in ("token", "published_at")})
