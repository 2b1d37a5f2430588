"""Where a process's memory goes: PSS and private bytes by kind of mapping, from /proc/PID/smaps.

Like ``smem``, but per kind of mapping rather than per process: shared-memory rings, the
interpreter and shared libraries, other mapped files (models), the heap (malloc, Python objects,
numpy buffers) and thread stacks. PSS splits a shared page among the processes mapping it, so
summing PSS over processes never counts a page twice; private bytes (USS) are pages only this
process has (what a process adds when it starts, or frees when it ends).

Kinds:

* ``shm``: files in ``/dev/shm`` (frame, packet and request rings, the heartbeat table);
* ``libs``: shared objects and executables (``.so``, the ``python`` binary);
* ``files``: any other mapped file (a model mapped by its runtime, locale archives);
* ``heap``: anonymous memory and ``[heap]``: malloc arenas, Python objects, numpy arrays;
* ``stacks``: ``[stack]`` and the anonymous mappings right after a guard page (thread stacks);
* ``other``: the kernel's (``[vdso]``, ``[vvar]``...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("heap", "libs", "shm", "files", "stacks", "other")
"""Mapping kinds, in the order tables print them."""

_MiB = 2**20
_GUARD_MAX = 1024 * 1024  # bytes: larger inaccessible mappings are reserves, not stack guards


@dataclass
class Breakdown:
    """One process's (or a sum of processes') memory by kind, bytes: PSS and private (USS)."""

    pss: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    private: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    rss: int = 0
    processes: int = 0

    @property
    def pss_total(self) -> int:
        """PSS of every kind, bytes."""
        return sum(self.pss.values())

    @property
    def private_total(self) -> int:
        """Private bytes of every kind (USS), bytes."""
        return sum(self.private.values())

    def add(self, other: Breakdown) -> Breakdown:
        """This breakdown plus ``other`` (a new one)."""
        out = Breakdown(rss=self.rss + other.rss, processes=self.processes + other.processes)
        for k in KINDS:
            out.pss[k] = self.pss[k] + other.pss[k]
            out.private[k] = self.private[k] + other.private[k]
        return out

    def as_mib(self) -> dict[str, object]:
        """PSS and private MiB by kind, plus totals (JSON-ready)."""
        return {"pss_mib": {k: round(v / _MiB, 2) for k, v in self.pss.items()},
                "private_mib": {k: round(v / _MiB, 2) for k, v in self.private.items()},
                "pss_total_mib": round(self.pss_total / _MiB, 2),
                "private_total_mib": round(self.private_total / _MiB, 2),
                "rss_mib": round(self.rss / _MiB, 2), "processes": self.processes}


def _kind(path: str, *, after_guard: bool) -> str:
    if path.startswith("/dev/shm/"):
        return "shm"
    if path == "[heap]":
        return "heap"
    if path == "[stack]" or path.startswith("[stack:"):
        return "stacks"
    if path.startswith("["):
        return "other"
    if not path:
        return "stacks" if after_guard else "heap"
    name = path.rsplit("/", 1)[-1]
    if ".so" in name or name.startswith("python"):
        return "libs"
    return "files"


def parse_smaps(text: str) -> Breakdown:
    """The breakdown of one ``/proc/PID/smaps`` text."""
    out = Breakdown(processes=1)
    kind = "other"
    guard_end = -1  # where the last small inaccessible anonymous mapping (a stack guard) ends
    private = 0
    for line in text.splitlines():
        head = line.split(None, 1)[0] if line else ""
        if head and "-" in head and not head.endswith(":"):  # a mapping's first line
            parts = line.split(None, 5)
            perms = parts[1] if len(parts) > 1 else ""
            path = parts[5].strip() if len(parts) > 5 else ""
            start, _, end = head.partition("-")
            lo, hi = int(start, 16), int(end, 16)
            # a thread stack sits right above its guard pages (a few KiB, no access); a malloc
            # arena sits below a large inaccessible reserve instead
            kind = _kind(path, after_guard=not path and lo == guard_end)
            guard_end = hi if perms.startswith("---") and not path and hi - lo <= _GUARD_MAX else -1
            continue
        if head == "Pss:":
            out.pss[kind] += int(line.split()[1]) * 1024
        elif head == "Rss:":
            out.rss += int(line.split()[1]) * 1024
        elif head in ("Private_Clean:", "Private_Dirty:"):
            private = int(line.split()[1]) * 1024
            out.private[kind] += private
    return out


def breakdown(pid: int) -> Breakdown | None:
    """The breakdown of process ``pid`` (None when it is gone or not readable)."""
    with contextlib.suppress(OSError):
        return parse_smaps(Path(f"/proc/{pid}/smaps").read_text())
    return None


def total(pids: Iterable[int]) -> Breakdown:
    """The sum of the breakdowns of ``pids`` (those readable)."""
    out = Breakdown()
    for pid in pids:
        b = breakdown(pid)
        if b is not None:
            out = out.add(b)
    return out


def table(rows: dict[str, Breakdown], per: int = 1, title: str = "") -> list[str]:
    """Lines of a table: one row per name, PSS MiB by kind (divided by ``per``), then private MiB."""
    head = f"{title:28} " + " ".join(f"{k:>7}" for k in KINDS) + f" {'PSS':>7} {'USS':>7} {'RSS':>7}"
    lines = [head]
    for name, b in rows.items():
        cells = " ".join(f"{b.pss[k] / _MiB / per:7.1f}" for k in KINDS)
        lines.append(f"{name:28} {cells} {b.pss_total / _MiB / per:7.1f} "
                     f"{b.private_total / _MiB / per:7.1f} {b.rss / _MiB / per:7.1f}")
    return lines
