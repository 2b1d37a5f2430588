"""Classifying what goes wrong with a camera into a few kinds a person can act on.

FFmpeg's messages quote the URL they failed on, password included, so an
:class:`IngestError` is always built from a masked URL and masked text.
"""

from __future__ import annotations

import enum
import errno

from camfleet.redact import mask_text, mask_url

from .tls import TRUST_HINT


class ErrorKind(enum.Enum):
    """What went wrong, in words that say what to check."""

    UNREACHABLE = "unreachable host"
    REFUSED = "connection refused"
    TIMEOUT = "timeout"
    UNAUTHORIZED = "wrong credentials (401)"
    FORBIDDEN = "forbidden (403)"
    PERMISSION = "permission denied"
    NOT_FOUND = "no such stream (404)"
    NO_SUCH_FILE = "no such file or device"
    UNSUPPORTED_CODEC = "unsupported codec"
    CORRUPT = "corrupt data"
    UNTRUSTED = "TLS certificate not trusted"
    NO_VIDEO = "no video stream"
    STALLED = "stalled"
    ENDED = "stream ended"
    BAD_URL = "invalid URL"
    OTHER = "error"


_HINTS = {
    ErrorKind.UNREACHABLE: "check the address and the network path to the camera",
    ErrorKind.REFUSED: (
        "the host answered but nothing listens on that port; check the port and that the "
        "camera's RTSP/HTTP service is on"
    ),
    ErrorKind.TIMEOUT: "the camera did not answer in time; check it is powered and reachable",
    ErrorKind.UNAUTHORIZED: "check the user name and password",
    ErrorKind.FORBIDDEN: "the user has no right to this stream",
    ErrorKind.PERMISSION: "this process may not open the file or device (check its permissions)",
    ErrorKind.NOT_FOUND: "check the stream path in the URL",
    ErrorKind.NO_SUCH_FILE: "check the path",
    ErrorKind.UNSUPPORTED_CODEC: "the stream's codec cannot be decoded here",
    ErrorKind.CORRUPT: "the data is not a decodable video stream",
    ErrorKind.NO_VIDEO: "the source has no video stream",
    ErrorKind.UNTRUSTED: TRUST_HINT,
}


class IngestError(Exception):
    """A camera failure: its :class:`ErrorKind`, the masked URL and masked detail."""

    def __init__(self, kind: ErrorKind, url: str, detail: str = "") -> None:
        self.kind = kind
        self.url = mask_url(url)
        self.detail = mask_text(detail)
        hint = _HINTS.get(kind)
        text = f"{self.url}: {kind.value}"
        if self.detail:
            text += f" ({self.detail})"
        if hint:
            text += f"; {hint}"
        super().__init__(text)


_BY_ERRNO = {
    errno.ECONNREFUSED: ErrorKind.REFUSED,
    errno.ETIMEDOUT: ErrorKind.TIMEOUT,
    errno.EHOSTUNREACH: ErrorKind.UNREACHABLE,
    errno.ENETUNREACH: ErrorKind.UNREACHABLE,
    errno.EHOSTDOWN: ErrorKind.UNREACHABLE,
    errno.ENOENT: ErrorKind.NO_SUCH_FILE,
    errno.ENODEV: ErrorKind.NO_SUCH_FILE,
    errno.EACCES: ErrorKind.PERMISSION,
    errno.EPERM: ErrorKind.PERMISSION,
}

# FFmpeg error names (PyAV exception class names) that have no errno of their own
_BY_NAME = {
    "HTTPUnauthorizedError": ErrorKind.UNAUTHORIZED,
    "HTTPForbiddenError": ErrorKind.FORBIDDEN,
    "HTTPNotFoundError": ErrorKind.NOT_FOUND,
    "DecoderNotFoundError": ErrorKind.UNSUPPORTED_CODEC,
    "DemuxerNotFoundError": ErrorKind.UNSUPPORTED_CODEC,
    "InvalidDataError": ErrorKind.CORRUPT,
    "EOFError": ErrorKind.ENDED,
    "TimeoutError": ErrorKind.TIMEOUT,
    "ExitError": ErrorKind.TIMEOUT,  # FFmpeg's interrupt callback fired: our own deadline
}

_BY_TEXT = (
    ("401", ErrorKind.UNAUTHORIZED),
    ("unauthorized", ErrorKind.UNAUTHORIZED),
    ("403", ErrorKind.FORBIDDEN),
    ("404", ErrorKind.NOT_FOUND),
    ("not found", ErrorKind.NOT_FOUND),
    ("name or service not known", ErrorKind.UNREACHABLE),
    ("temporary failure in name resolution", ErrorKind.UNREACHABLE),
    ("no route to host", ErrorKind.UNREACHABLE),
    ("timed out", ErrorKind.TIMEOUT),
    ("connection refused", ErrorKind.REFUSED),
    ("invalid data", ErrorKind.CORRUPT),
)


def classify(exc: BaseException, url: str) -> IngestError:
    """Turn any exception from opening or reading ``url`` into an :class:`IngestError`."""
    if isinstance(exc, IngestError):
        return exc
    detail = str(getattr(exc, "strerror", None) or exc)
    for cls in type(exc).__mro__:
        kind = _BY_NAME.get(cls.__name__)
        if kind is not None and cls.__module__.startswith("av"):
            return IngestError(kind, url, detail)
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in _BY_ERRNO:
        return IngestError(_BY_ERRNO[code], url, detail)
    if isinstance(exc, TimeoutError):
        return IngestError(ErrorKind.TIMEOUT, url, detail)
    low = detail.lower()
    for needle, kind in _BY_TEXT:
        if needle in low:
            return IngestError(kind, url, detail)
    return IngestError(ErrorKind.OTHER, url, f"{type(exc).__name__}: {detail}")
