"""What an import reports: the converted configuration and the notes about it."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

__all__ = ["ImportNote", "ImportResult", "Notes"]

NoteKind = Literal["not mapped", "converted"]


@dataclasses.dataclass(frozen=True)
class ImportNote:
    """One thing the importer could not map (``not mapped``) or changed on the way (``converted``).

    ``key`` is the source configuration's path (``cameras.door.zones.porch.inertia``);
    ``reason`` says why, and never quotes a credential (URLs go through
    :func:`camfleet.redact.mask_url`).
    """

    kind: NoteKind
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.key}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class ImportResult:
    """The converted configuration (plain data, as the YAML file will hold it) and the notes."""

    config: dict[str, Any]
    notes: list[ImportNote]


class Notes:
    """Collects :class:`ImportNote`\\ s while a conversion runs (helpers get one and add to it)."""

    def __init__(self) -> None:
        self.items: list[ImportNote] = []

    def unmapped(self, key: str, reason: str) -> None:
        """Record that ``key`` has no camfleet counterpart, and why."""
        self.items.append(ImportNote("not mapped", key, reason))

    def converted(self, key: str, reason: str) -> None:
        """Record that ``key`` was mapped with a change the user should know about."""
        self.items.append(ImportNote("converted", key, reason))
