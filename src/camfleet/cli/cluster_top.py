"""``camfleet cluster status``: the fleet as text, once or refreshed like ``top``.

:func:`render` turns the leader's ``status`` reply into the screen (the nodes;
every camera with ``cameras``); :func:`watch` asks the leader again every
``interval`` seconds over one NATS connection and prints each screen (an
election or a lost server shows as an error line and the next refresh tries
again). Pure text and ANSI: no terminal library.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from camfleet.cluster.connection import NatsOptions, connect
from camfleet.cluster.control import ControlError, ask, ask_all

__all__ = ["HOME", "json_line", "printable", "render", "screen", "watch"]

log = logging.getLogger("camfleet.cli.cluster_top")

HOME = "\x1b[H"
"""ANSI: cursor to the top left (each line then ends with erase-to-end, the frame with erase-below)."""
_EOL = "\x1b[K"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_EOS = "\x1b[J"


def _num(value: Any, digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.{digits}f}"


def _age(seconds: Any) -> str:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return "-"
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


def _states(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def render(reply: dict[str, Any], *, cameras: bool = False) -> list[str]:
    """The lines of one screen: a summary, one row per node, then one per camera when ``cameras``.

    Per node: its state, whether it takes cameras, cameras placed, CPU of its processes (% of one
    core), placement load (share of its capacity given), frames/s decoded and analysed, detector
    requests/s, seconds since its last heartbeat and its last status report, its errors.
    """
    leader = reply.get("leader") or {}
    nodes = reply.get("nodes") or []
    cams: dict[str, Any] = reply.get("cameras") or {}
    figures: dict[str, Any] = reply.get("node_figures") or {}
    stamp = reply.get("at")
    at = float(stamp) if isinstance(stamp, int | float) else time.time()
    by_state: dict[str, int] = {}
    for c in cams.values():
        state = str(c.get("state") or ("unplaced" if c.get("unplaced") else "unknown"))
        by_state[state] = by_state.get(state, 0) + 1
    clock = time.strftime("%H:%M:%S", time.localtime(at))
    lines = [
        f"fleet at {clock}: leader {leader.get('coordinator_id', '?')} (term {leader.get('term', '?')}, "
        f"{leader.get('hostname') or '?'}), revision {reply.get('revision', '?')}; {len(nodes)} node(s), "
        f"{len(cams)} camera(s)" + (f": {_states(by_state)}" if by_state else ""),
    ]
    if reply.get("error"):
        lines.append(f"error: {reply['error']}")
    lines += [
        "",
        f"{'NODE':<34} {'HOST':<14} {'STATE':<8} {'SCHED':<8} {'CAMS':>4} {'CPU%':>6} {'LOAD':>5} "
        f"{'DEC/s':>6} {'PROC/s':>6} {'DET/s':>6} {'BEAT':>5} {'REPORT':>6}  ERRORS",
    ]
    for n in nodes:
        node_id = str(n.get("node_id"))
        f = figures.get(node_id) or {}
        sched = "draining" if n.get("draining") else "cordoned" if n.get("cordoned") else "yes"
        report_at = f.get("at")
        report = at - report_at if isinstance(report_at, int | float) else None
        lines.append(
            f"{node_id:<34} {str(n.get('hostname') or '-')[:14]:<14} {str(n.get('state'))[:8]:<8} "
            f"{sched:<8} {len(n.get('cameras') or []):>4} {_num(f.get('cpu_percent')):>6} "
            f"{_num(n.get('utilisation'), 2):>5} {_num(f.get('decode_fps')):>6} "
            f"{_num(f.get('processed_fps')):>6} {_num(f.get('detector_rps')):>6} "
            f"{_age(n.get('heartbeat_age_s')):>5} {_age(report):>6}  "
            f"{'; '.join(str(e) for e in n.get('errors') or [])}".rstrip()
        )
    if cameras:
        lines += [
            "",
            f"{'CAMERA':<24} {'NODE':<34} {'TOKEN':>6} {'STATE':<10} {'DEC/s':>6} {'PROC/s':>6} "
            f"{'DET/s':>6} {'CPU%':>6}  REASON",
        ]
        for name, c in cams.items():
            reason = c.get("unplaced") or (
                f"stopping on {c['stopping_on']} first" if c.get("stopping_on") else c.get("reason") or ""
            )
            lines.append(
                f"{name:<24} {c.get('node') or '-'!s:<34} {c.get('token') or '-':>6} "
                f"{c.get('state') or '-'!s:<10} {_num(c.get('decode_fps')):>6} "
                f"{_num(c.get('processed_fps')):>6} "
                f"{_num(c.get('detector_rps')):>6} {_num(c.get('cpu_percent')):>6}  {reason}".rstrip()
            )
    lines += [f"warning: {w}" for w in reply.get("warnings") or []]
    return [printable(line) for line in lines]


def printable(text: str) -> str:
    """``text`` with its control characters shown as ``?``.

    Names, hosts and errors come from the nodes' reports: an escape sequence in one must not reach
    the operator's terminal.
    """
    return _CONTROL.sub("?", text)


def screen(lines: list[str], size: tuple[int, int] | None) -> str:
    """``lines`` as one terminal frame of ``size`` (columns, rows); None: plain text.

    From the top left, each line cut to the terminal's width, rows past its height left out
    (said on the last row), the previous frame's text erased.
    """
    if size is None:
        return "\n".join(lines)
    cols, rows = size
    if len(lines) > rows - 1:
        hidden = len(lines) - (rows - 2)
        lines = [*lines[: rows - 2], f"... {hidden} more row(s): a taller terminal, or --once"]
    return HOME + "".join(line[:cols] + _EOL + "\n" for line in lines) + _EOS


async def watch(
    options: NatsOptions,
    *,
    interval: float,
    count: int | None,
    timeout: float,
    show: Callable[[dict[str, Any] | None, str | None], None],
) -> bool:
    """Ask the leader for ``status`` every ``interval`` seconds (``count`` times; None: until cancelled).

    ``show(reply, error)`` gets each answer, or the error when there was none (no leader during an
    election, a timeout). One connection throughout (raises ConnectionError if none can be made).
    Returns whether the last answer was a reply.
    """
    client = await connect(
        NatsOptions(options.urls, options.creds, options.ca_file, name="camfleet-cluster-status"),
        timeout_s=min(timeout, 10.0),
    )
    ok = False
    try:
        done = 0
        while True:
            began = time.monotonic()
            try:
                reply = await ask_all(lambda verb, body: ask(client, verb, body, timeout_s=timeout),
                                      "status", "cameras")
            except ControlError as exc:
                ok = False
                # while the client reconnects, a timeout says nothing about the leader
                show(None, str(exc) if client.is_connected else "no NATS server answers; reconnecting")
            else:
                ok = True
                show(reply, None)
            done += 1
            if count is not None and done >= count:
                return ok
            # a screen refresh: the next one ``interval`` after this one began
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))
    finally:
        try:
            await asyncio.wait_for(client.close(), 2.0)
        except Exception as exc:  # closing: nothing more to do
            log.debug("close: %r", exc)


def json_line(reply: dict[str, Any] | None, error: str | None) -> str:
    """One refresh as a line of JSON (``{"ok": false, "error": ...}`` when the leader did not answer)."""
    return json.dumps(reply if reply is not None else {"ok": False, "error": error},
                      separators=(",", ":"), sort_keys=True, default=str)
