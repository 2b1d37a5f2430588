"""Which Frigate release wrote a configuration: its ``version:`` key, or 0.13 without one.

Frigate added ``version:`` in 0.14 (its config migration writes ``0.14``,
``0.15-1``, ``0.16-0``, ...), so a file without it is treated as 0.13 and
older, whose coordinates are pixels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["FrigateVersion", "frigate_version"]

FrigateVersion = tuple[int, int]
"""(major, minor), e.g. (0, 15)."""

_VERSION = re.compile(r"^\s*(\d+)\.(\d+)")
_UNVERSIONED: FrigateVersion = (0, 13)


def frigate_version(frigate: Mapping[str, Any]) -> FrigateVersion:
    """The (major, minor) release the configuration is written for; (0, 13) when it does not say."""
    raw = frigate.get("version")
    if raw is None:
        return _UNVERSIONED
    match = _VERSION.match(str(raw))
    if match is None:  # unreadable: the oldest form is the safest guess (pixels are detected anyway)
        return _UNVERSIONED
    return int(match.group(1)), int(match.group(2))
