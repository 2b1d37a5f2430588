"""``camfleet cluster events [-f]``: the object events of every node, from the fleet's events stream.

Reads the JetStream stream ``CAMFLEET_EVENTS`` (``camfleet.events.<node>``)
with an ordered consumer: the events published in the last ``--since``
seconds, then, with ``-f``, each new one as it comes, until Ctrl-C. These are
the messages as the nodes sent them, before the coordinator's fencing check
(``camfleet coordinator --api``'s ``/api/events`` lists the stored ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

_NODE_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
IDLE_S = 2.0
"""Without ``-f``: stop once caught up, or after this long without a message (seconds)."""


def _line(node: str, change: str, event: dict[str, Any]) -> str:
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(event["start"])))
    return (f"{at}  {node:<14} {event['camera']:<16} {event['label']:<10} {change:<6} "
            f"{float(event['top_score']):.2f}  {event['id']}")


async def _follow(options: Any, follow: bool, since_s: float, node: str | None, camera: str | None,
                  as_json: bool) -> int:
    import nats.errors  # noqa: PLC0415
    import nats.js.errors  # noqa: PLC0415
    from nats.js.api import ConsumerConfig, DeliverPolicy  # noqa: PLC0415

    from camfleet.cluster.connection import NatsOptions, connect  # noqa: PLC0415
    from camfleet.cluster.registry import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX  # noqa: PLC0415
    from camfleet.vocabulary import EventMessage, decode  # noqa: PLC0415

    client = await connect(NatsOptions(options.urls, options.creds, options.ca_file, name="camfleet-events"))
    try:
        js = client.jetstream(timeout=5.0)
        try:
            last = int((await js.stream_info(EVENTS_STREAM)).state.last_seq or 0)
        except nats.js.errors.NotFoundError:
            if not follow:
                typer.echo("no events yet (the fleet's events stream does not exist)", err=True)
                return 0
            last = 0
            while True:  # the stream appears with the first agent's first event
                await asyncio.sleep(1.0)
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.stream_info(EVENTS_STREAM)
                    break
        start = datetime.fromtimestamp(time.time() - since_s, UTC)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start)
        subject = f"{EVENTS_SUBJECT_PREFIX}.{node or '*'}"
        sub = await js.subscribe(subject, stream=EVENTS_STREAM, ordered_consumer=True, config=config)
        while True:
            try:
                msg = await sub.next_msg(timeout=None if follow else IDLE_S)
            except (TimeoutError, nats.errors.TimeoutError):
                return 0
            seq = int(msg.metadata.sequence.stream)
            try:
                message = decode(msg.data)
            except (ValueError, KeyError, TypeError):
                message = None
            if isinstance(message, EventMessage) and (camera is None or message.event.camera == camera):
                sender = msg.subject[len(EVENTS_SUBJECT_PREFIX) + 1:]
                event = message.event.public()
                if as_json:
                    token = (msg.headers or {}).get("Camfleet-Token")
                    typer.echo(json.dumps({"node": sender, "event_type": message.type, "event": event,
                                           "token": int(token) if token and token.isdigit() else None,
                                           "seq": seq}, separators=(",", ":")))
                else:
                    typer.echo(_line(sender, message.type, event))
            if not follow and seq >= last:
                return 0
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 2.0)


def events(
    nats_url: str = typer.Option(..., "--nats", envvar="CAMFLEET_NATS", help="NATS URL(s), comma-separated "
                                 "($CAMFLEET_NATS)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events until Ctrl-C."),
    since: float = typer.Option(600.0, "--since", min=0.0, max=365 * 86400.0, help="Start with the events "
                                "published in the last this many seconds."),
    node: str | None = typer.Option(None, "--node", help="Only this node's events."),
    camera: str | None = typer.Option(None, "--camera", help="Only this camera's events."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line (node, event_type, event, "
                                 "token, seq)."),
    creds: Path | None = typer.Option(None, "--nats-creds", help="NATS credentials file (.creds)."),
    ca: Path | None = typer.Option(None, "--nats-ca", help="CA bundle for tls:// servers."),
) -> None:
    """The fleet's object events (start/update/end) from every node; ``-f`` follows new ones."""
    from .fleet import _options  # noqa: PLC0415

    if node is not None and not _NODE_RE.fullmatch(node):  # a subject token: no '.', '*', '>' or spaces
        raise typer.BadParameter(f"{node[:64]!r} is not a node id", param_hint="--node")
    options = _options(nats_url, creds, ca)
    try:
        code = asyncio.run(_follow(options, follow, since, node, camera, as_json))
    except KeyboardInterrupt:
        code = 0
    except ConnectionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)
