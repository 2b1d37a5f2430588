"""``zones``: polygon zones with enter / exit / dwell per tracked object.

A zone is a polygon in normalised 0..1 coordinates, optionally limited to some
labels. An object is in a zone when the middle of its box's bottom edge (where
it stands) is inside the polygon.
"""

from __future__ import annotations

from pydantic import Field

from .context import FrameContext, TrackedObject, ZoneChange, ZoneEvent
from .element import Element, ElementConfig, PipelineEnv
from .geometry import inside


class ZonesConfig(ElementConfig):
    """Zone settings.

    ``dwell_s``: seconds inside a zone after which one ``dwell`` event is emitted
    (a zone's own ``dwell_s`` overrides it).
    """

    dwell_s: float = Field(10.0, gt=0)


class ZonesElement(Element[ZonesConfig]):
    """Fills ``ctx.zone_events`` and each track's ``zones`` from the camera's zones."""

    name = "zones"
    config_type = ZonesConfig

    def __init__(self, config: ZonesConfig, env: PipelineEnv) -> None:
        super().__init__(config, env)
        self._entered: dict[tuple[int, str], int] = {}  # (track, zone) -> entered at (ns)
        self._dwelt: set[tuple[int, str]] = set()

    def process(self, ctx: FrameContext) -> None:
        """Compare each track's position with every zone and report changes."""
        for obj in ctx.tracks:
            for name, zone in self.env.zones.items():
                labels = zone.get("labels")
                if labels and obj.label not in labels:
                    continue
                key = (obj.track_id, name)
                x, y = obj.box.bottom_center
                now_in = not obj.ended and inside(zone["points"], x / ctx.width, y / ctx.height)
                was_in = key in self._entered
                if now_in and not was_in:
                    self._entered[key] = ctx.capture_ns
                    obj.zones.add(name)
                    ctx.zone_events.append(self._event(name, obj, ZoneChange.ENTER, ctx.capture_ns))
                elif was_in and not now_in:
                    since = self._entered.pop(key)
                    self._dwelt.discard(key)
                    obj.zones.discard(name)
                    ctx.zone_events.append(
                        self._event(name, obj, ZoneChange.EXIT, ctx.capture_ns, since)
                    )
                elif now_in and key not in self._dwelt:
                    since = self._entered[key]
                    limit = float(zone.get("dwell_s", self.config.dwell_s))
                    if ctx.capture_ns - since >= limit * 1e9:
                        self._dwelt.add(key)
                        ctx.zone_events.append(
                            self._event(name, obj, ZoneChange.DWELL, ctx.capture_ns, since)
                        )

    @staticmethod
    def _event(
        zone: str, obj: TrackedObject, change: ZoneChange, now: int, since: int | None = None
    ) -> ZoneEvent:
        dwell = (now - since) / 1e9 if since is not None else 0.0
        return ZoneEvent(zone, obj.track_id, obj.label, change, now, dwell)
