"""Preloaded by the camera processes' forkserver: camfleet's processes do not import the node's ``__main__``.

multiprocessing prepares every process it starts like the one that started it: it imports
the parent's main module again, as ``__mp_main__``, so that functions defined there can be
unpickled. camfleet's processes never need it (their targets and arguments are camfleet's
own), and it is expensive: under ``camfleet run`` the main module is the console script,
which imports the whole CLI (the API, SQLAlchemy, Alembic, cryptography): about 28 MiB of
private memory in every camera process, for nothing. Under a script that embeds a
:class:`~camfleet.runtime.Node`, it is whatever that script imports.

Importing this module in the forkserver wraps :func:`multiprocessing.spawn.prepare` (which
the forkserver's children call before they unpickle their process object) so that processes
whose name starts with :data:`PROCESS_PREFIX` skip that step. Other processes started from
the same forkserver (a program's own) are prepared as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from multiprocessing import spawn
from typing import Any

PROCESS_PREFIX = "camfleet-"
"""Name prefix of the processes camfleet starts (``camfleet-cam1/pipeline``, ``camfleet-detector-cpu``)."""

_MAIN_KEYS = ("init_main_from_name", "init_main_from_path")
_prepare = spawn.prepare


def prepare_without_main(data: Mapping[str, Any]) -> None:
    """:func:`multiprocessing.spawn.prepare`, without re-importing ``__main__`` for camfleet's processes."""
    if str(data.get("name", "")).startswith(PROCESS_PREFIX):
        data = {k: v for k, v in data.items() if k not in _MAIN_KEYS}
    _prepare(data)


def install() -> None:
    """Wrap :func:`multiprocessing.spawn.prepare` in this process (once; the children inherit it)."""
    if spawn.prepare is not prepare_without_main:
        spawn.prepare = prepare_without_main


install()
