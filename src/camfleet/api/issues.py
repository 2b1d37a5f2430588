"""Configuration problems as API data."""

from __future__ import annotations

from camfleet.config import ConfigError

from .schemas import Issue


def issues_of(error: ConfigError, *, positions: bool) -> list[Issue]:
    """The issues of ``error``; lines and columns only when they refer to text the caller sent."""
    return [
        Issue(path=i.path, message=i.message, suggestion=i.suggestion,
              line=i.line if positions else None, column=i.column if positions else None)
        for i in error.issues
    ]
