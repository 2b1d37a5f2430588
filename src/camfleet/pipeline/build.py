"""Building a camera's pipeline from the configuration file."""

from __future__ import annotations

from typing import Any

from camfleet.config import Config

from .element import PipelineEnv
from .pipeline import Pipeline


def camera_env(config: Config, camera: str, services: dict[str, Any] | None = None) -> PipelineEnv:
    """The :class:`PipelineEnv` of ``camera``: its zones and masks, the data directory, services."""
    cam = config.camera(camera)
    zones = {
        name: {"points": [tuple(p) for p in z.points], **({"labels": list(z.labels)} if z.labels else {})}
        for name, z in cam.zones.items()
    }
    masks = [[(float(x), float(y)) for x, y in poly] for poly in cam.masks]
    return PipelineEnv(camera=camera, data_dir=config.data_path, zones=zones, masks=masks,
                       services=dict(services or {}))


def camera_pipeline(config: Config, camera: str, services: dict[str, Any] | None = None, *,
                    publish_meta: bool = False) -> Pipeline:
    """``camera``'s pipeline as configured (element settings validated by each element).

    ``publish_meta``: publish each analysed frame's objects for the live overlay.
    """
    specs = [(e.name, dict(e.params)) for e in config.pipeline_of(camera)]
    return Pipeline(specs, camera_env(config, camera, services), publish_meta=publish_meta)
