"""Child process targets of the supervisor tests (stdlib only: a forkserver child imports this quickly)."""

from __future__ import annotations

import os
import signal
import time


def exit_soon(code: int) -> None:
    """Exit with ``code`` after 50 ms."""
    time.sleep(0.05)
    os._exit(code)


def sleep_forever(ignore_term: bool) -> None:
    """Sleep until killed; with ``ignore_term`` SIGTERM does nothing."""
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(0.1)
