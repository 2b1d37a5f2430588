"""Logging for CLI commands: one format, and credentials scrubbed from every line."""

from __future__ import annotations

import logging

from camfleet.redact import mask_text, quiet_http_clients


class MaskCredentials(logging.Filter):
    """Rewrites each record so no ``scheme://user:pass@`` survives in the output."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the fully formatted message (arguments included); always keeps the record."""
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr at INFO (DEBUG with ``verbose``), with credential masking."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(MaskCredentials())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # FFmpeg's own log lines quote URLs with passwords: keep them out, except when debugging
    logging.getLogger("libav").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    quiet_http_clients()  # a webhook URL's path may be its secret
