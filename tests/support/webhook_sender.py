"""A webhook sender in a process of its own (for ``kill -9`` tests): a pump delivering a journal to one hook.

Kept apart from the test modules so a spawned child imports only the outbox and the webhooks.
"""

from __future__ import annotations

import threading

from camfleet.config.webhooks import WebhookConfig
from camfleet.events import Pump, PumpSettings
from camfleet.integrations.webhooks import WebhookSink


def run_pump(path: str, hook: WebhookConfig, node: str) -> None:
    """Deliver the journal at ``path`` to ``hook`` until the process is killed."""
    sink = WebhookSink(hook, node=node)
    Pump(path, [sink], settings=PumpSettings(poll_s=0.02)).start()
    threading.Event().wait()  # until killed
