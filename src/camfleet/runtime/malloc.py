"""glibc malloc settings for camfleet's processes (no-ops where the C library is not glibc)."""

from __future__ import annotations

import ctypes
import os

CAMERA_ARENAS = 2
"""Malloc arenas a camera process uses at most (``MALLOC_ARENA_MAX``): the main thread's, one more.

glibc gives each new thread that allocates an arena of its own (up to 8 per core), each holding
its own free memory; a camera process has a few mostly idle threads (heartbeat, watchdogs)
and, above 1080p, FFmpeg's decoding threads."""

_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def limit_arenas(arenas: int) -> None:
    """Let malloc create at most ``arenas`` arenas in this process from now on (inherited by forks)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return
    if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version"):
        libc.mallopt(_M_ARENA_MAX, arenas)


def default_arenas() -> int:
    """The arena limit glibc itself uses on a 64-bit machine: 8 per core."""
    return 8 * (os.cpu_count() or 1)
