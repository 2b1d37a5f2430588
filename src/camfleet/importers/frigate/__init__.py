"""Frigate configurations (0.12 to 0.18) to camfleet's: :func:`convert`.

One module per concern: :mod:`.version` (which release wrote the file),
:mod:`.geometry` (zones and masks, pixels to fractions), :mod:`.record`
(retention keys of every release), :mod:`.sources` (inputs, roles, go2rtc,
``{FRIGATE_*}`` variables), :mod:`.objects` (tracked labels and filters,
motion) and :mod:`.convert` (the whole, cameras and pipelines).

``mqtt`` maps onto camfleet's ``mqtt`` (the same broker, topics and payloads;
camfleet's QoS defaults to 1).

Not mapped, and why (each is also reported as a note when the file has it):
a camera's own ``mqtt`` (snapshot crop, size, required zones),
``detectors``/``model`` (camfleet's default model on a CPU detector),
``snapshots``, ``birdseye``, ``live``, ``audio``, ``review``, zone
``inertia``/``loitering_time``, filter ``threshold``/``max_area``/ratios, and
the other sections camfleet has no counterpart for.
"""

from __future__ import annotations

from .convert import convert
from .version import FrigateVersion, frigate_version

__all__ = ["FrigateVersion", "convert", "frigate_version"]
