"""Thin wrappers over the Linux primitives the rings are built on.

* Open-file-description (OFD) byte-range locks: the kernel makes them atomic,
  they conflict between threads and processes alike, and they vanish when the
  holder's last descriptor closes -- including when the holder is killed. The
  rings use them for publisher/subscriber liveness, for slot leases and for the
  registry mutex, so a crashed process can never leave a lock behind.
* futex wait/wake on a 32-bit word in shared memory: a blocked subscriber costs
  no CPU and wakes within microseconds of a publish.
* pidfd: a descriptor that becomes readable when a process exits, so death is
  noticed at once instead of by a periodic check.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import struct
import time
from typing import Final

_FLOCK: Final = struct.Struct("hhqqi4x")  # struct flock on 64-bit Linux

_SYS_FUTEX: Final = {"x86_64": 202, "aarch64": 98, "arm64": 98}.get(platform.machine(), 202)
_FUTEX_WAIT: Final = 0
_FUTEX_WAKE: Final = 1
_INT_MAX: Final = 0x7FFFFFFF

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


def _flock(kind: int, start: int, length: int) -> bytes:
    return _FLOCK.pack(kind, os.SEEK_SET, start, length, 0)


class LockRequest:
    """Pre-packed shared, exclusive and unlock requests for one byte range (hot paths)."""

    __slots__ = ("exclusive", "shared", "unlock")

    def __init__(self, start: int, length: int = 1) -> None:
        self.shared = _flock(fcntl.F_RDLCK, start, length)
        self.exclusive = _flock(fcntl.F_WRLCK, start, length)
        self.unlock = _flock(fcntl.F_UNLCK, start, length)


def try_request(fd: int, request: bytes) -> bool:
    """Apply a pre-packed OFD lock request; False if another holder conflicts."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def try_lock(fd: int, start: int, length: int = 1, *, shared: bool = False) -> bool:
    """Take an OFD lock on ``length`` bytes at ``start`` without blocking.

    Returns True if the lock was taken, False if another holder conflicts.
    ``shared`` takes a read (shared) lock, otherwise an exclusive one.
    """
    kind = fcntl.F_RDLCK if shared else fcntl.F_WRLCK
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(kind, start, length))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def lock_blocking(fd: int, start: int, length: int = 1) -> None:
    """Take an exclusive OFD lock, waiting for conflicting holders to go."""
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, _flock(fcntl.F_WRLCK, start, length))


def unlock(fd: int, start: int, length: int = 1) -> None:
    """Release whatever lock this descriptor holds on the given byte range."""
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_UNLCK, start, length))


def lock_holder(fd: int, start: int, length: int = 1) -> int | None:
    """Return the first byte offset in the range locked by another descriptor.

    Returns None when nothing in the range is locked by anyone else. Locks held
    through ``fd`` itself never count as conflicts.
    """
    raw = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock(fcntl.F_WRLCK, start, length))
    kind, _whence, lstart, _len, _pid = _FLOCK.unpack(raw)
    if kind == fcntl.F_UNLCK:
        return None
    return int(lstart)


def lock_holders(fd: int, start: int, length: int) -> list[int]:
    """Return every byte offset in ``[start, start+length)`` locked by others."""
    found: list[int] = []
    pos, end = start, start + length
    while pos < end:
        hit = lock_holder(fd, pos, end - pos)
        if hit is None:
            break
        found.append(hit)
        pos = hit + 1
    return found


def futex_wait(address: int, expected: int, timeout_s: float | None) -> None:
    """Sleep while the 32-bit word at ``address`` equals ``expected``.

    Returns on a wake-up, on a value change, on a signal or after ``timeout_s``
    seconds (None waits without limit); callers re-check their condition.
    """
    if timeout_s is None:
        ts_ptr = None
    else:
        timeout_s = max(timeout_s, 0.0)
        sec = int(timeout_s)
        ts = _Timespec(sec, int((timeout_s - sec) * 1e9))
        ts_ptr = ctypes.byref(ts)
    rc = _syscall(
        _SYS_FUTEX, ctypes.c_void_p(address), _FUTEX_WAIT, ctypes.c_uint32(expected),
        ts_ptr, None, 0,
    )
    if rc == -1:
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.ETIMEDOUT, errno.EINTR):
            raise OSError(err, os.strerror(err))


def futex_wake(address: int) -> None:
    """Wake every process sleeping in :func:`futex_wait` on ``address``."""
    _syscall(_SYS_FUTEX, ctypes.c_void_p(address), _FUTEX_WAKE, _INT_MAX, None, None, 0)


def wait_for_publish(address: int, word: int, deadline: float | None, *, watched: bool,
                     fallback_slice: float = 0.25) -> bool:
    """Sleep on a ring's publish word until it changes or ``deadline`` (monotonic s) passes.

    Returns False, without sleeping, once the deadline has passed. When the
    publisher's death cannot be watched through a pidfd (``watched`` False),
    sleeps at most ``fallback_slice`` seconds so the caller re-checks liveness.
    """
    wait = None if deadline is None else deadline - time.monotonic()
    if wait is not None and wait <= 0:
        return False
    if not watched:
        wait = fallback_slice if wait is None else min(wait, fallback_slice)
    futex_wait(address, word, wait)
    return True


def pidfd_open(pid: int) -> int | None:
    """Return a pidfd for ``pid``, or None if it is gone or not visible here."""
    if pid <= 0:
        return None
    try:
        return os.pidfd_open(pid)
    except (ProcessLookupError, PermissionError, OSError):
        return None
