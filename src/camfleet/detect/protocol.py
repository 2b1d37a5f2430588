"""The detector service's wire format: length-prefixed JSON over a Unix socket.

Only small control messages travel here (request ids, sequence numbers,
detections). The images themselves go through each camera's framebus request
ring, so nothing large is ever serialised.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

from camfleet.framebus import PixelFormat, frame_ring_bytes, shm_dir
from camfleet.framebus.layout import validate_key

_HEADER = struct.Struct("!I")
_MAX_KEY = 63  # characters of a ring key
_HASH_BYTES = 5  # 10 hex digits: collisions among one node's cameras are out of reach
MAX_MESSAGE = 4 * 2**20


class ProtocolError(Exception):
    """A peer sent something that is not a valid message."""


def socket_path(detector: str) -> Path:
    """Where detector ``detector`` listens (beside the rings, owner-only)."""
    return shm_dir() / f"camfleet.det-{validate_key(detector)}.sock"


def request_ring_key(camera: str, detector: str) -> str:
    """Ring key carrying ``camera``'s images to ``detector`` (63 characters at most).

    ``dq-DETECTOR-CAMERA`` as is when it fits; a longer one is cut and ends in
    a short hash of the whole, so two long camera names that share their first
    characters still get rings of their own.
    """
    key = f"dq-{detector}-{camera}"
    if len(key) > _MAX_KEY:
        digest = hashlib.blake2b(key.encode(), digest_size=_HASH_BYTES).hexdigest()
        key = f"{key[: _MAX_KEY - len(digest) - 1]}-{digest}"
    return validate_key(key)


REQUEST_MAX_IMAGES = 8
"""Most images a camera sends a detector in one request (unless its client says otherwise)."""


MAX_INFLIGHT = 2
"""Most requests one camera has in flight to a detector: its request ring holds this many requests' images."""


def request_ring_slots(max_images: int = REQUEST_MAX_IMAGES) -> int:
    """Slots of a camera's request ring: :data:`MAX_INFLIGHT` requests in flight, two spare, at least 4."""
    return max(MAX_INFLIGHT * max_images + 2, 4)


def request_ring_bytes(input_size: tuple[int, int], max_images: int = REQUEST_MAX_IMAGES) -> int:
    """Bytes of shared memory of one request ring of RGB images at the model's ``input_size`` (w, h)."""
    return frame_ring_bytes(input_size[0], input_size[1], PixelFormat.RGB24, request_ring_slots(max_images))


def encode(message: dict[str, Any]) -> bytes:
    """One message as bytes on the wire."""
    data = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(data)) + data


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    """Send one message (blocking)."""
    sock.sendall(encode(message))


class Reader:
    """Accumulates bytes from a socket and yields complete messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add received bytes; return the messages now complete."""
        self._buf += data
        out = []
        while len(self._buf) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buf)
            if size > MAX_MESSAGE:
                raise ProtocolError(f"message of {size} bytes exceeds {MAX_MESSAGE}")
            if len(self._buf) < _HEADER.size + size:
                break
            raw = bytes(self._buf[_HEADER.size : _HEADER.size + size])
            del self._buf[: _HEADER.size + size]
            try:
                msg = json.loads(raw)
            except ValueError as exc:
                raise ProtocolError(f"invalid JSON message: {exc}") from None
            if not isinstance(msg, dict) or "op" not in msg:
                raise ProtocolError("a message must be an object with an 'op'")
            out.append(msg)
        return out


def listen(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, created owner-only (a stale one is replaced)."""
    if path.exists():
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock
