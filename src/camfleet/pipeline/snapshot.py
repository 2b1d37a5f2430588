"""``snapshot``: a JPEG of each event's best frame, optionally with its box drawn."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageDraw
from pydantic import Field

from .context import FrameContext
from .element import Element, ElementConfig, PipelineEnv
from .events import EventType, EventUpdate, ObjectEvent


class SnapshotConfig(ElementConfig):
    """Snapshot settings.

    ``boxes``: draw the object's box; ``quality``: JPEG quality 1..95;
    ``height``: scale to this height in pixels (0 keeps the frame's).
    """

    boxes: bool = True
    quality: int = Field(85, ge=1, le=95)
    height: int = Field(0, ge=0)


class SnapshotElement(Element[SnapshotConfig]):
    """Writes ``<data_dir>/snapshots/<camera>/<event id>.jpg`` for events.

    It is written when an event starts,
    improves its best frame, or ends; sets the event's ``snapshot`` path.
    """

    name = "snapshot"
    config_type = SnapshotConfig

    def __init__(self, config: SnapshotConfig, env: PipelineEnv) -> None:
        super().__init__(config, env)
        self._written: dict[str, int] = {}  # event id -> best_seq written

    def process(self, ctx: FrameContext) -> None:
        """Write the snapshots that changed in this frame."""
        for update in ctx.events:
            if not isinstance(update, EventUpdate):
                continue
            event = update.event
            if event.best_image is None:
                continue
            if self._written.get(event.event_id) != event.best_seq:
                self._write(event)
                self._written[event.event_id] = event.best_seq
            if update.type == EventType.END:
                self._written.pop(event.event_id, None)
                event.best_image = None  # the event is over: drop the frame copy

    def _write(self, event: ObjectEvent) -> None:
        assert event.best_image is not None
        image = Image.fromarray(event.best_image)
        if self.config.boxes and event.best_box is not None:
            b = event.best_box
            draw = ImageDraw.Draw(image)
            draw.rectangle((b.x0, b.y0, b.x1, b.y1), outline=(255, 64, 0), width=3)
            draw.text((b.x0 + 4, b.y0 + 4), f"{event.label} {event.top_score:.0%}", fill=(255, 64, 0))
        if self.config.height and image.height != self.config.height:
            width = round(image.width * self.config.height / image.height)
            image = image.resize((width, self.config.height))
        folder = Path(self.env.data_dir) / "snapshots" / event.camera
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{event.event_id}.jpg"
        tmp = path.with_suffix(".jpg.tmp")
        image.save(tmp, "JPEG", quality=self.config.quality)
        os.replace(tmp, path)  # readers never see a half-written file
        event.snapshot = str(path)
