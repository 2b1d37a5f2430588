"""Pieces several routers share: path parameter types, the event lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path

from camfleet.config.model import CAMERA_NAME_PATTERN
from camfleet.store import EventRecord, Store

EVENT_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"

CameraName = Annotated[str, Path(pattern=CAMERA_NAME_PATTERN, description="camera name")]
EventId = Annotated[str, Path(pattern=EVENT_ID_PATTERN, description="event id")]


def find_event(store: Store, event_id: str) -> EventRecord:
    """The stored event ``event_id``, or 404."""
    event = store.get_event(event_id)
    if event is None:
        raise HTTPException(404, "no such event")
    return event
