"""Create, open, validate and remove ring segments in the shared-memory directory.

A segment is created under a temporary name, fully initialised, locked by its
publisher, and only then linked (or atomically renamed) to its public name, so
a reader never sees a half-written header. Replacing the segment of a dead
publisher gives the new publisher a fresh file; subscribers still mapping the
old one see its publisher lock free and report :class:`PublisherGone`.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from . import _sys
from .errors import AlreadyRunning, InvalidFormat, LayoutMismatch, NotFound, NotOwner, SegmentError
from .format import FrameFormat, PixelFormat
from .layout import (
    HEADER_BYTES,
    HEADER_DTYPE,
    KIND_FRAMES,
    KIND_NAMES,
    LAYOUT_VERSION,
    MAGIC,
    MAX_EXTRADATA,
    MAX_SLOTS,
    MAX_SUBSCRIBERS,
    PAGE,
    SUB_DTYPE,
    LockMap,
    Offsets,
    field_offset,
    validate_key,
)

_SEGMENT_PREFIX = "camfleet."


def shm_dir() -> Path:
    """Directory holding the segments: ``$CAMFLEET_SHM_DIR`` or ``/dev/shm``."""
    return Path(os.environ.get("CAMFLEET_SHM_DIR", "/dev/shm"))


def segment_path(key: str, kind: int) -> Path:
    """Public path of the ``kind`` segment of ring ``key``."""
    return shm_dir() / f"{_SEGMENT_PREFIX}{validate_key(key)}.{KIND_NAMES[kind]}"


def list_segments() -> list[tuple[str, int, Path]]:
    """Every ring segment in :func:`shm_dir` as (key, kind, path), sorted."""
    out: list[tuple[str, int, Path]] = []
    kinds = {name: kind for kind, name in KIND_NAMES.items()}
    with contextlib.suppress(FileNotFoundError):
        for entry in shm_dir().iterdir():
            name = entry.name
            if not name.startswith(_SEGMENT_PREFIX) or ".tmp-" in name:
                continue
            key, _, suffix = name[len(_SEGMENT_PREFIX) :].rpartition(".")
            if suffix in kinds and key:
                out.append((key, kinds[suffix], entry))
    return sorted(out)


def create_private_file(path: Path, size: int) -> int:
    """Create ``path`` afresh, owner-only (0600) and ``size`` bytes long; return its descriptor (read-write).

    The shared-memory directory is writable by everyone, so a predictable name
    may already be taken by someone else's file or symlink: opening it with
    ``O_CREAT|O_TRUNC`` would truncate (or create) whatever it points to. The
    file is made under a random name with ``O_EXCL|O_NOFOLLOW`` and renamed
    over ``path``, which replaces a planted symlink instead of following it.
    """
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.ftruncate(fd, size)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.close(fd)
        raise
    return fd


def _read_pid(fd: int) -> int:
    raw = os.pread(fd, 4, field_offset(HEADER_DTYPE, "pub_pid"))
    return int.from_bytes(raw, "little") if len(raw) == 4 else 0


class Segment:
    """An open ring segment: its file, its mappings and typed views of its header.

    ``meta`` maps the header and tables read-write; ``payload`` maps the frame
    slots or packet buffer, read-write for the publisher and read-only for
    subscribers. ``validated`` is the private, read-only copy of the header
    that was checked (or written, for the publisher): the ring's geometry
    (slot count, sizes, frame format, capacity) is taken from it, never again
    from the shared mapping, which another process could change after the check.
    """

    def __init__(self, key: str, kind: int, path: Path, fd: int, publisher: bool,
                 validated: np.ndarray) -> None:
        self.key = key
        self.kind = kind
        self.path = path
        self.fd = fd
        self.is_publisher = publisher
        self.validated = validated
        self._ino = os.fstat(fd).st_ino
        self.offsets = Offsets.compute(kind, int(validated["n_slots"]))
        total = int(validated["total_bytes"])
        self.meta = mmap.mmap(fd, self.offsets.payload, mmap.MAP_SHARED)
        access = mmap.ACCESS_WRITE if publisher else mmap.ACCESS_READ
        self.payload = mmap.mmap(
            fd, total - self.offsets.payload, access=access, offset=self.offsets.payload
        )
        self.header = np.ndarray((), HEADER_DTYPE, buffer=self.meta)
        self.subs = np.ndarray((MAX_SUBSCRIBERS,), SUB_DTYPE, buffer=self.meta, offset=self.offsets.subs)
        self._anchor = ctypes.c_char.from_buffer(self.meta)
        self._base_addr = ctypes.addressof(self._anchor)
        self._closed = False

    # ---- typed views -------------------------------------------------
    # memoryview casts: reading or writing one item costs a fraction of what a
    # numpy scalar access does, which matters on the per-frame path.
    def u64(self, field: str) -> memoryview:
        """A one-item uint64 view of a header field (read and write ``v[0]``)."""
        return self.view(field_offset(HEADER_DTYPE, field), 1, "Q")

    def i64(self, field: str) -> memoryview:
        """A one-item int64 view of a header field."""
        return self.view(field_offset(HEADER_DTYPE, field), 1, "q")

    def u32(self, field: str) -> memoryview:
        """A one-item uint32 view of a header field."""
        return self.view(field_offset(HEADER_DTYPE, field), 1, "I")

    def view(self, offset: int, count: int, fmt: Literal["Q", "q", "I"]) -> memoryview[int]:
        """``count`` items of struct format ``fmt`` (Q, q or I) at ``offset`` of the metadata."""
        size = 4 if fmt == "I" else 8
        return memoryview(self.meta)[offset : offset + count * size].cast(fmt)

    def address(self, field: str) -> int:
        """Virtual address of a header field (for futex calls)."""
        return self._base_addr + field_offset(HEADER_DTYPE, field)

    def sub_stats(self, k: int) -> memoryview:
        """int64 view of subscriber ``k``'s counters, from ``acked`` to ``last_pts``."""
        offset = self.offsets.subs + k * SUB_DTYPE.itemsize + field_offset(SUB_DTYPE, "acked")
        return self.view(offset, 8, "q")

    def sub_state(self, k: int) -> memoryview:
        """uint32 view of subscriber ``k``'s state word."""
        offset = self.offsets.subs + k * SUB_DTYPE.itemsize + field_offset(SUB_DTYPE, "state")
        return self.view(offset, 1, "I")

    # ---- liveness ----------------------------------------------------
    def publisher_alive(self) -> bool:
        """True while the publisher holds its lock (always True for the publisher)."""
        if self.is_publisher:
            return not self._closed
        return _sys.lock_holder(self.fd, LockMap.PUBLISHER) is not None

    @property
    def replaced(self) -> bool:
        """True when the public path no longer names this segment's file."""
        try:
            return os.stat(self.path).st_ino != self._ino
        except FileNotFoundError:
            return True

    # ---- lifetime ----------------------------------------------------
    def close(self, *, unlink: bool = False) -> None:
        """Unmap (when no view is left) and close; the publisher may unlink it."""
        if self._closed:
            return
        self._closed = True
        if unlink and not self.replaced:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        del self._anchor
        for region in (self.meta, self.payload):
            # Views handed out to users keep the mapping alive; it is then
            # unmapped by the garbage collector, never under a live view.
            with contextlib.suppress(BufferError):
                region.close()
        os.close(self.fd)


def create_segment(
    key: str,
    kind: int,
    n_slots: int,
    payload_bytes: int,
    init: Callable[[np.ndarray], None],
) -> Segment:
    """Create the ``kind`` segment of ``key`` and return it, owned by the caller.

    ``init`` fills the kind-specific header fields. Raises
    :class:`AlreadyRunning` when a live publisher owns the key; a segment left
    by a dead publisher is replaced.
    """
    path = segment_path(key, kind)
    offsets = Offsets.compute(kind, n_slots)
    total = offsets.payload + payload_bytes
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        try:
            os.posix_fallocate(fd, 0, total)
        except OSError as exc:
            raise SegmentError(
                f"ring {key!r}: cannot allocate {total / 2**20:.1f} MiB in {path.parent} "
                f"({exc.strerror}); free space there or enlarge it "
                "(e.g. mount -o remount,size=2G /dev/shm)"
            ) from None
        header = _write_header(fd, key, kind, n_slots, offsets, total, init)
        if not _sys.try_lock(fd, LockMap.PUBLISHER):
            raise SegmentError(f"ring {key!r}: cannot lock new segment {tmp}")
        _install(key, tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.close(fd)
        raise
    return Segment(key, kind, path, fd, publisher=True, validated=header)


def _write_header(
    fd: int,
    key: str,
    kind: int,
    n_slots: int,
    offsets: Offsets,
    total: int,
    init: Callable[[np.ndarray], None],
) -> np.ndarray:
    """Write the header of a new segment; returns a read-only copy of what was written."""
    header = np.zeros((), HEADER_DTYPE)
    header["magic"] = MAGIC
    header["version"] = LAYOUT_VERSION
    header["kind"] = kind
    header["total_bytes"] = total
    header["payload_offset"] = offsets.payload
    header["pub_pid"] = os.getpid()
    header["created_ns"] = time.time_ns()
    header["key"] = key.encode()
    header["n_slots"] = n_slots
    init(header)
    os.pwrite(fd, header.tobytes(), 0)
    header.flags.writeable = False
    return header


def _install(key: str, tmp: Path, path: Path) -> None:
    """Give the initialised ``tmp`` segment its public name, if no live publisher has it."""
    for _attempt in range(50):
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        else:
            os.unlink(tmp)
            return
        try:
            old = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        try:
            st = os.fstat(old)
            if st.st_uid != os.geteuid():
                raise NotOwner(
                    f"ring {key!r}: {path} belongs to uid {st.st_uid}, not to you "
                    f"(uid {os.geteuid()}); it is left alone"
                )
            if not _sys.try_lock(old, LockMap.PUBLISHER):
                raise AlreadyRunning(key, _read_pid(old))
            if os.stat(path).st_ino != st.st_ino:
                continue  # replaced meanwhile by another publisher: look again
            # The old publisher is dead. Mark its segment shut down so any
            # subscriber still mapping it stops waiting, then take the name.
            if st.st_size >= HEADER_BYTES:
                os.pwrite(old, (1).to_bytes(4, "little"), field_offset(HEADER_DTYPE, "shutdown"))
            os.rename(tmp, path)
            return
        finally:
            os.close(old)
    raise SegmentError(f"ring {key!r}: could not install segment {path} (contended)")


def open_segment(key: str, kind: int, connect_timeout: float = 0.0) -> Segment:
    """Open the ``kind`` segment of ``key`` as a subscriber.

    Waits up to ``connect_timeout`` seconds for a live publisher. Raises
    :class:`NotFound` when none appears, and :class:`SegmentError` (or a
    subclass) when the file is not a valid camfleet segment of this user.
    """
    path = segment_path(key, kind)
    deadline = time.monotonic() + max(connect_timeout, 0.0)
    delay = 0.005
    while True:
        reason = f"no ring {key!r} ({path} does not exist)"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            fd = -1
        if fd >= 0:
            try:
                header = validate_segment(fd, key, kind, path)
                if _sys.lock_holder(fd, LockMap.PUBLISHER) is not None:
                    # built from the copy just checked: the geometry is never re-read (no TOCTOU)
                    return Segment(key, kind, path, fd, publisher=False, validated=header)
                reason = f"ring {key!r} has no live publisher (pid {_read_pid(fd)} is gone)"
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            suffix = f" after waiting {connect_timeout:g} s" if connect_timeout > 0 else ""
            raise NotFound(reason + suffix)
        # Connecting is not the frame path: a short back-off is enough here.
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.1)


def validate_segment(fd: int, key: str, kind: int | None, path: Path) -> np.ndarray:
    """Check ownership, permissions, magic, layout version, kind and every geometry field.

    The header is read once into a private copy and every field a reader
    relies on is checked on that copy: the slot (or packet index)
    count, the payload offset, the file size against the header's total and
    against slot size times slot count (frames) or the buffer capacity (packets),
    the frame format with its strides and frame size, and the extradata
    length and time base (packets). Returns that copy, read-only; build the
    segment from it rather than reading the shared header again. Raises a
    :class:`SegmentError` subclass that names the segment and what is wrong.
    """
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        raise NotOwner(
            f"ring {key!r}: {path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}); "
            "refusing to open it"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise SegmentError(
            f"ring {key!r}: {path} has mode {stat.S_IMODE(st.st_mode):04o}; camfleet segments "
            "are owner-only (0600)"
        )
    if st.st_size < HEADER_BYTES:
        raise SegmentError(
            f"ring {key!r}: {path} is truncated ({st.st_size} bytes, a header alone is "
            f"{HEADER_BYTES})"
        )
    raw = os.pread(fd, HEADER_DTYPE.itemsize, 0)
    if len(raw) != HEADER_DTYPE.itemsize:
        raise SegmentError(f"ring {key!r}: {path} shrank while being read")
    # an ndarray over bytes is read-only: the checked copy cannot change afterwards
    header = np.ndarray((), HEADER_DTYPE, buffer=raw)
    if bytes(header["magic"]) != MAGIC:
        raise SegmentError(f"ring {key!r}: {path} is not a camfleet ring segment (bad magic)")
    version = int(header["version"])
    if version != LAYOUT_VERSION:
        raise LayoutMismatch(
            f"ring {key!r}: {path} has layout version {version}, this camfleet reads version "
            f"{LAYOUT_VERSION}; run publisher and subscribers from the same camfleet release"
        )
    seg_kind = int(header["kind"])
    if seg_kind not in KIND_NAMES:
        raise SegmentError(f"ring {key!r}: {path} has unknown segment kind {seg_kind}")
    if kind is not None and seg_kind != kind:
        raise SegmentError(
            f"ring {key!r}: {path} holds {KIND_NAMES[seg_kind]}, expected {KIND_NAMES[kind]}"
        )
    _check_geometry(header, seg_kind, st.st_size, key, path)
    return header


def _check_geometry(h: np.ndarray, kind: int, file_size: int, key: str, path: Path) -> None:
    """Raise :class:`SegmentError` if any size field of header ``h`` is inconsistent."""

    def bad(what: str) -> SegmentError:
        return SegmentError(f"ring {key!r}: {path} has a damaged header: {what}")

    n = int(h["n_slots"])
    if kind == KIND_FRAMES:
        low, high, what = 2, MAX_SLOTS, "slot count"
    else:
        low, high, what = 64, 65536, "packet index size"
    if not low <= n <= high:
        raise bad(f"{what} {n} is outside {low}..{high}")
    offsets = Offsets.compute(kind, n)
    total = int(h["total_bytes"])
    if total != file_size:
        raise SegmentError(
            f"ring {key!r}: {path} is truncated or damaged ({file_size} bytes, header says {total})"
        )
    if int(h["payload_offset"]) != offsets.payload:
        raise bad(f"payload offset {int(h['payload_offset'])}, expected {offsets.payload} for {n} slots")
    payload = total - offsets.payload
    if payload <= 0:
        raise bad(f"no payload after {offsets.payload} bytes of metadata (total {total})")
    if kind == KIND_FRAMES:
        _check_frames(h, n, payload, bad)
    else:
        _check_packets(h, payload, bad)


def _check_frames(h: np.ndarray, n: int, payload: int, bad: Callable[[str], SegmentError]) -> None:
    n_planes = int(h["n_planes"])
    if not 1 <= n_planes <= 4:
        raise bad(f"plane count {n_planes} is outside 1..4")
    strides = tuple(int(s) for s in h["strides"][:n_planes])
    try:
        # FrameFormat checks the size, the pixel format, the plane count and each stride against its row
        fmt = FrameFormat(int(h["width"]), int(h["height"]), PixelFormat(int(h["pix_fmt"])), strides)
    except (InvalidFormat, ValueError) as exc:
        raise bad(f"frame format: {exc}") from None
    frame_bytes, slot_bytes = int(h["frame_bytes"]), int(h["slot_bytes"])
    if frame_bytes != fmt.frame_bytes:
        raise bad(f"frame size {frame_bytes} bytes, but {fmt.describe()} with strides {strides} "
                  f"is {fmt.frame_bytes}")
    if slot_bytes < frame_bytes or slot_bytes % PAGE:
        raise bad(f"slot size {slot_bytes} bytes: must be a multiple of {PAGE} holding a "
                  f"{frame_bytes}-byte frame")
    if slot_bytes * n != payload:
        raise bad(f"{n} slots of {slot_bytes} bytes are {slot_bytes * n} bytes, the file holds {payload}")


def _check_packets(h: np.ndarray, payload: int, bad: Callable[[str], SegmentError]) -> None:
    capacity = int(h["capacity"])
    if capacity < 64 * 1024 or capacity % PAGE or capacity != payload:
        raise bad(f"packet buffer capacity {capacity} bytes; the file holds {payload} "
                  f"(at least 64 KiB, a multiple of {PAGE})")
    extradata = int(h["extradata_len"])
    if extradata > MAX_EXTRADATA:
        raise bad(f"extradata length {extradata} exceeds {MAX_EXTRADATA} bytes")
    num, den = int(h["time_base_num"]), int(h["time_base_den"])
    if num <= 0 or den <= 0:
        raise bad(f"time base {num}/{den} is not positive")
