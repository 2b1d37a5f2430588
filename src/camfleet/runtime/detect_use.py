"""Which detectors and models a camera uses: the one answer, read from its parsed ``detect`` elements.

The defaults (detector ``cpu``, model ``ssd-mobilenet-v2``) live only in
:class:`camfleet.pipeline.detect.DetectConfig`; everything here reads the
element's parsed configuration, never its raw parameters.
"""

from __future__ import annotations

from typing import NamedTuple

from camfleet.config import Config
from camfleet.pipeline.detect import DetectConfig, DetectElement
from camfleet.pipeline.registry import build_config


class DetectUse(NamedTuple):
    """One ``detect`` element of a pipeline: the detector it asks and the model id it wants."""

    detector: str
    model: str


def detect_uses(config: Config, camera: str) -> list[DetectUse]:
    """The (detector, model) of each ``detect`` element of ``camera``'s pipeline, in pipeline order.

    Raises pydantic's ``ValidationError`` when a ``detect`` element's settings are invalid.
    """
    uses = []
    for element in config.pipeline_of(camera):
        if element.name != DetectElement.name:
            continue
        settings = build_config(DetectElement, dict(element.params))
        assert isinstance(settings, DetectConfig)
        uses.append(DetectUse(settings.detector, settings.model))
    return uses


def detector_models(config: Config) -> dict[str, str]:
    """Which model each detector used by an enabled camera serves (detector name -> model id).

    Raises ``ValueError`` when one detector is asked to run two models.
    """
    used: dict[str, str] = {}
    for name, cam in config.cameras.items():
        if not cam.enabled:
            continue
        for detector, model in detect_uses(config, name):
            if used.setdefault(detector, model) != model:
                raise ValueError(
                    f"detector {detector!r} is asked to run two models ({used[detector]!r} and "
                    f"{model!r}); give each model its own detector"
                )
    return used


def detector_instances(detector: str, processes: int) -> list[str]:
    """The process names of detector ``detector`` run as ``processes`` processes (``cpu``; ``cpu-0``...)."""
    return [detector] if processes == 1 else [f"{detector}-{i}" for i in range(processes)]
