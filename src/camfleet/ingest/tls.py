"""Certificate verification for cameras reached over TLS (``rtsps://``, ``https://``).

FFmpeg (PyAV's build links GnuTLS) verifies nothing unless asked, so every
TLS source is opened with ``tls_verify=1`` unless its configuration says
``tls.verify: false``; ``tls.ca_file`` names the PEM file of the authority
(or the self-signed certificate) to trust instead of the system's store.
These are options of FFmpeg's ``tls`` protocol: the ``rtsp`` and ``http``
protocols hand their options down to the TLS connection they open.

When verification fails, FFmpeg only says "Input/output error", so
:func:`diagnose` repeats the handshake with Python's :mod:`ssl` (no
credentials are sent) to say why: unknown authority, wrong host name, expired.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["TLS_SCHEMES", "TRUST_HINT", "TlsOptions", "diagnose", "uses_tls"]

TLS_SCHEMES = ("rtsps", "https")
"""URL schemes whose connection is TLS from the start."""

TRUST_HINT = (
    "to trust a camera with a self-signed certificate, set tls.ca_file to the PEM file of its "
    "certificate authority (or of the certificate itself), or set tls.verify: false to accept any "
    "certificate (anyone on the network path can then impersonate the camera); camfleet probe "
    "and ingest take --tls-ca-file and --no-tls-verify"
)
"""What to do when a camera's certificate is not trusted."""

_DEFAULT_PORTS = {"rtsps": 322, "https": 443}


@dataclass(frozen=True)
class TlsOptions:
    """How a TLS camera's certificate is checked.

    Attributes:
        verify: check the certificate chain and that it names the URL's host
            (on by default).
        ca_file: PEM file of the authorities to trust (the camera's own CA or
            self-signed certificate); None uses the system's trust store.
    """

    verify: bool = True
    ca_file: str | None = None

    def ffmpeg_options(self) -> dict[str, str]:
        """The FFmpeg ``tls`` protocol options that apply these settings."""
        if not self.verify:
            return {"tls_verify": "0"}
        options = {"tls_verify": "1"}
        if self.ca_file:
            options["ca_file"] = self.ca_file
        return options

    def ca_problem(self) -> str | None:
        """Why ``ca_file`` cannot be used (missing, unreadable), or None when it can."""
        if not self.verify or not self.ca_file:
            return None
        if not os.path.isfile(self.ca_file):
            return f"tls.ca_file {self.ca_file} does not exist or is not a file"
        if not os.access(self.ca_file, os.R_OK):
            return f"tls.ca_file {self.ca_file} is not readable by this process"
        return None


def uses_tls(url: str) -> bool:
    """True when ``url`` is reached over TLS (``rtsps://`` or ``https://``)."""
    return urlsplit(url).scheme.lower() in TLS_SCHEMES


def diagnose(url: str, tls: TlsOptions, timeout: float) -> str | None:
    """Why the certificate of the TLS server at ``url`` fails verification, or None.

    Repeats only the TLS handshake (no request, no credentials) with the same
    trust settings and returns OpenSSL's reason, e.g. ``"self-signed
    certificate in certificate chain"``. None when the handshake verifies,
    the server cannot be reached, or ``url`` is not TLS; ``timeout`` is in
    seconds.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in TLS_SCHEMES or not tls.verify or not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    try:
        context = ssl.create_default_context(cafile=tls.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        return f"tls.ca_file {tls.ca_file} holds no usable certificate ({exc})"
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=parts.hostname):
            return None
    except ssl.SSLCertVerificationError as exc:
        return str(exc.verify_message or exc.reason or exc)
    except (OSError, ssl.SSLError):
        return None
