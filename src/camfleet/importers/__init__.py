"""Importers: other products' configurations converted into camfleet's.

Each importer is a pure function from the other product's parsed
configuration to an :class:`ImportResult`: the camfleet configuration as
plain data (ready for YAML) and the :class:`ImportNote`\\ s saying what could
not be mapped, or was changed on the way, and why. Nothing here reads or
writes files; ``camfleet import`` (:mod:`camfleet.cli.importer`) does.
"""

from __future__ import annotations

from .notes import ImportNote, ImportResult, Notes

__all__ = ["ImportNote", "ImportResult", "Notes"]
