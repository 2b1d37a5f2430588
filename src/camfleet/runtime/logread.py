"""Reading a log back: the last lines of a file, and following it across rotations (``camfleet logs``)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["follow_log", "tail_log"]



def tail_log(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of the file at ``path`` (without line ends).

    Raises:
        FileNotFoundError: no such file.
    """
    with open(path, "rb") as f:
        return _tail(f, lines)


def _tail(f: BinaryIO, lines: int, block: int = 65536) -> list[str]:
    """The last ``lines`` lines of ``f``; leaves ``f`` at its end."""
    end = f.seek(0, os.SEEK_END)
    if lines <= 0:
        return []
    pos, data = end, b""
    while pos > 0 and data.count(b"\n") <= lines:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
    f.seek(end)
    text = data.decode("utf-8", errors="replace")
    return text.splitlines()[-lines:]


def _newer_files(path: Path, ino: int) -> list[BinaryIO] | None:
    """Open the files written after the one with inode ``ino``, oldest first, ending with ``path``.

    After rotation the followed file is ``path.K``; the ones after it are
    ``path.K-1`` … ``path.1`` and ``path``. None when ``path`` does not exist
    right now (between the rename and the new file), or the chain changed
    while it was being opened.
    """
    names = [path]
    while True:
        try:
            found = os.stat(names[-1]).st_ino == ino
        except FileNotFoundError:
            if len(names) == 1:
                return None
            found = True  # ino was deleted (more rotations than backups): every file left is newer
        if found:
            newer = names[:-1][::-1]
            break
        names.append(path.with_name(f"{path.name}.{len(names)}"))
    files: list[BinaryIO] = []
    try:
        for name in newer:
            files.append(open(name, "rb"))  # noqa: SIM115 (returned)
        if all(os.fstat(f.fileno()).st_ino == os.stat(n).st_ino for f, n in zip(files, newer, strict=True)):
            return files
    except FileNotFoundError:
        pass
    for f in files:
        f.close()
    return None


def follow_log(
    path: Path, stop: threading.Event, *, lines: int = 0, poll: float = 0.2
) -> Iterator[str]:
    """Yield the last ``lines`` lines of ``path``, then each new line until ``stop`` is set.

    Survives rotation: when ``path`` is renamed to ``path.1`` (older ones
    shifted) and created again, the rest of the followed file is read, then
    every file written after it, in order, then the new ``path``; no line is
    lost as long as the files are not deleted first. A file truncated in place
    (no backups kept) is read again from its start. ``poll`` (seconds) is how
    often the file is looked at when nothing new came; a partial last line is
    held back until its line end arrives.

    Raises:
        FileNotFoundError: ``path`` does not exist when following starts.
    """
    f: BinaryIO = open(path, "rb")  # noqa: SIM115 (replaced on rotation)
    pending = b""

    def lines_of(data: bytes) -> list[str]:
        nonlocal pending
        *complete, pending = (pending + data).split(b"\n")
        return [line.decode("utf-8", errors="replace") for line in complete]

    try:
        yield from _tail(f, lines)
        while not stop.is_set():
            chunk = f.read(65536)
            if chunk:
                yield from lines_of(chunk)
                continue
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            here = os.fstat(f.fileno())
            if st is not None and st.st_ino != here.st_ino:
                chain = _newer_files(path, here.st_ino)
                if chain is not None:
                    # the writer closed the followed file before renaming it: what is
                    # left of it is final, and so is every file but the last of the chain
                    yield from lines_of(f.read())
                    f.close()
                    for done in chain[:-1]:
                        with done:
                            yield from lines_of(done.read())
                    f = chain[-1]
                    continue
            elif st is not None and st.st_size < f.tell():
                f.seek(0)  # truncated in place
                pending = b""
                continue
            stop.wait(poll)
        if pending:
            yield pending.decode("utf-8", errors="replace")
    finally:
        with contextlib.suppress(OSError):
            f.close()
