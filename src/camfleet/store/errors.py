"""The one exception type the store raises."""

from __future__ import annotations


class StoreError(Exception):
    """A store operation failed: bad URL, unreachable server, corrupt file, missing or wrong key.

    The message names what was wrong and where; database passwords are always masked
    and camera credentials never appear in it.
    """
