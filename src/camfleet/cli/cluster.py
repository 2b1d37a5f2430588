"""``camfleet cluster ...``: the fleet's control commands, answered by the leader coordinator over NATS.

``apply FILE.yaml`` makes the fleet's cameras exactly the file's (checked as a
whole first: a bad file changes nothing); ``nodes``, ``status``,
``assignments``, ``history`` and ``leader`` show the fleet; ``drain``,
``cordon`` and ``uncordon`` change where cameras may run; ``events [-f]`` prints
the events of every node (:mod:`.fleet_events`); ``token`` manages the
coordinators' API tokens in the fleet database (:mod:`.fleet_token`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer

from . import fleet_events, fleet_token

app = typer.Typer(help="Control the fleet through its leader coordinator (over NATS).", no_args_is_help=True)
app.add_typer(fleet_token.app, name="token")
app.command("events")(fleet_events.events)

_NATS = typer.Option(
    ..., "--nats", envvar="CAMFLEET_NATS", help="NATS URL(s), comma-separated ($CAMFLEET_NATS)."
)
_CREDS = typer.Option(None, "--nats-creds", help="NATS credentials file (.creds).")
_CA = typer.Option(None, "--nats-ca", help="CA bundle for tls:// servers.")
_TIMEOUT = typer.Option(10.0, "--timeout", min=0.5, max=300, help="Seconds to wait for the leader's answer.")
_JSON = typer.Option(False, "--json", help="Print the leader's answer as JSON.")


def _call(
    nats_url: str,
    creds: Path | None,
    ca: Path | None,
    verb: str,
    payload: dict[str, Any],
    timeout: float,
    pages: str | None = None,
) -> dict[str, Any]:
    """The leader's reply to ``verb``; ``pages``: the listing to read in full, page after page."""
    from camfleet.cluster.control import ControlError, request, request_all  # noqa: PLC0415

    from .fleet import _options  # noqa: PLC0415

    options = _options(nats_url, creds, ca)
    try:
        if pages is not None:
            return asyncio.run(request_all(options, verb, pages, payload, timeout_s=timeout))
        return asyncio.run(request(options, verb, payload, timeout_s=timeout))
    except ControlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except ConnectionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _dump(reply: dict[str, Any]) -> None:
    typer.echo(json.dumps(reply, indent=2, sort_keys=True, default=str))


def _read_fleet_file(path: Path) -> dict[str, Any]:
    import yaml  # noqa: PLC0415

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise typer.BadParameter(f"{path}: cannot read: {exc.strerror or exc}", param_hint="FILE") from None
    except UnicodeDecodeError as exc:
        raise typer.BadParameter(f"{path}: not UTF-8 text (byte {exc.start})", param_hint="FILE") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise typer.BadParameter(
            f"{path}{where}: not valid YAML ({getattr(exc, 'problem', None) or 'syntax'})", param_hint="FILE"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("cameras"), dict):
        raise typer.BadParameter(
            f"{path}: expected a mapping with 'cameras:' (camera name: settings)", param_hint="FILE"
        )
    extra = sorted(str(k) for k in data if k not in ("cameras", "version"))
    if extra:
        raise typer.BadParameter(
            f"{path}: unknown top-level key(s) {', '.join(extra)}: a fleet file has "
            "'cameras' (and optionally 'version')",
            param_hint="FILE",
        )
    cameras: dict[str, Any] = data["cameras"]
    return cameras


@app.command()
def apply(
    file: Path = typer.Argument(
        ...,
        help="Fleet configuration: 'cameras:' as in a node YAML, each camera "
        "with optional 'placement:' hints (labels, group, hardware, stream, pin).",
    ),
    nats_url: str = _NATS,
    creds: Path | None = _CREDS,
    ca: Path | None = _CA,
    timeout: float = _TIMEOUT,
    as_json: bool = _JSON,
) -> None:
    """Make the fleet's cameras exactly FILE's, all or nothing; print where each camera was placed."""
    from camfleet.cluster.control import ControlError, apply_fleet  # noqa: PLC0415

    from .fleet import _options  # noqa: PLC0415

    cameras = _read_fleet_file(file)
    try:  # one request, or (thousands of cameras) staged in pages and applied: all or nothing either way
        reply = asyncio.run(apply_fleet(_options(nats_url, creds, ca), cameras, timeout_s=timeout))
    except ControlError as exc:
        issues = exc.reply.get("issues") or []
        if issues:
            typer.echo(f"error: {file}: {len(issues)} problem(s); nothing was changed:", err=True)
            for issue in issues:
                typer.echo(f"  {issue}", err=True)
        else:
            typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except ConnectionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        _dump(reply)
        return
    counts = reply.get("counts") or {k: len(reply.get(k) or []) for k in ("added", "removed", "changed")}
    typer.echo(
        f"applied (generation {reply['generation']}): {counts['added']} added, "
        f"{counts['removed']} removed, {counts['changed']} changed"
    )
    for cam, node in sorted((reply.get("placed") or {}).items()):
        typer.echo(f"  {cam:<24} -> {node}")
    for cam, why in sorted((reply.get("unplaced") or {}).items()):
        typer.echo(f"  {cam:<24} not placed: {why}")
    for warning in reply.get("warnings") or []:
        typer.echo(f"  warning: {warning}")
    if reply.get("truncated"):  # the leader names at most 200 per list
        typer.echo(
            f"  ({counts.get('placed', '?')} placed, {counts.get('unplaced', '?')} not placed in all; "
            "`camfleet cluster assignments` lists every one)"
        )


@app.command()
def nodes(
    nats_url: str = _NATS,
    creds: Path | None = _CREDS,
    ca: Path | None = _CA,
    timeout: float = _TIMEOUT,
    as_json: bool = _JSON,
) -> None:
    """The fleet's nodes: state, flags, load, cameras, the revision each runs."""
    reply = _call(nats_url, creds, ca, "nodes", {}, timeout, pages="nodes")
    if as_json:
        _dump(reply)
        return
    typer.echo(
        f"{'NODE':<34} {'HOST':<16} {'STATE':<10} {'SCHED':<12} {'CAMS':>4} {'LOAD':>5} {'REV':>9}  ERRORS"
    )
    for n in reply["nodes"]:
        sched = "draining" if n["draining"] else "cordoned" if n["cordoned"] else "yes"
        load = f"{n['utilisation']:.2f}" if n["utilisation"] is not None else "-"
        rev = f"{n['applied_revision']}/{n['desired_revision']}"
        typer.echo(
            f"{n['node_id']:<34} {str(n['hostname'] or '-')[:16]:<16} {n['state']:<10} {sched:<12} "
            f"{len(n['cameras']):>4} {load:>5} {rev:>9}  {'; '.join(n['errors'])}"
        )


@app.command()
def status(
    nats_url: str = _NATS,
    creds: Path | None = _CREDS,
    ca: Path | None = _CA,
    timeout: float = _TIMEOUT,
    as_json: bool = typer.Option(False, "--json", help="Print the leader's answer as JSON (with --watch: "
                                 "one line of JSON per refresh)."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh like top until Ctrl-C (the default "
                               "on a terminal)."),
    once: bool = typer.Option(False, "--once", help="Print once and exit (the default when not on a "
                              "terminal, e.g. in scripts)."),
    interval: float = typer.Option(2.0, "--interval", "-n", min=0.2, max=3600, help="Seconds between "
                                   "refreshes (nodes report every 2 s)."),
    count: int | None = typer.Option(None, "--count", min=1, help="Refresh this many times, then exit "
                                     "(implies --watch)."),
    cameras: bool = typer.Option(False, "--cameras", "-c", help="Also one row per camera: node, state, "
                                 "fps, detector load, CPU."),
) -> None:
    """The fleet like top: per node state, cameras, CPU, load, fps, detector load, last heartbeat.

    Per camera with --cameras. Refreshes on a terminal until Ctrl-C (--once: one snapshot).
    """
    import sys  # noqa: PLC0415

    from . import cluster_top  # noqa: PLC0415

    if watch and once:
        raise typer.BadParameter("--watch and --once exclude each other", param_hint="--watch/--once")
    if once and count is not None:
        raise typer.BadParameter("--count refreshes: it does not go with --once", param_hint="--count")
    tty = sys.stdout.isatty()
    if not (watch or count is not None or (tty and not once and not as_json)):
        reply = _call(nats_url, creds, ca, "status", {}, timeout, pages="cameras")
        typer.echo(json.dumps(reply, indent=2, sort_keys=True, default=str) if as_json
                   else "\n".join(cluster_top.render(reply, cameras=cameras)))
        return
    from .fleet import _options  # noqa: PLC0415

    def show(reply: dict[str, Any] | None, error: str | None) -> None:
        if as_json:
            typer.echo(cluster_top.json_line(reply, error))
            return
        lines = cluster_top.render(reply, cameras=cameras) if reply is not None else [
            cluster_top.printable(f"{time.strftime('%H:%M:%S')} error: {error}")]
        if tty:
            size = shutil.get_terminal_size()
            sys.stdout.write(cluster_top.screen(lines, (size.columns, size.lines)))
            sys.stdout.flush()
        else:  # a log of refreshes, one blank line apart
            typer.echo("\n".join(lines) + "\n")

    import logging  # noqa: PLC0415
    import shutil  # noqa: PLC0415
    import time  # noqa: PLC0415

    # a lost server shows as the refresh's error line; the client's reconnect warnings would scribble
    # over the screen
    logging.getLogger("camfleet.cluster").setLevel(logging.ERROR)

    try:
        ok = asyncio.run(cluster_top.watch(_options(nats_url, creds, ca), interval=interval, count=count,
                                           timeout=timeout, show=show))
    except ConnectionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # Ctrl-C ends a watch: the usual way out, not an error
        return
    if not ok:
        raise typer.Exit(1)


@app.command()
def assignments(
    nats_url: str = _NATS, creds: Path | None = _CREDS, ca: Path | None = _CA, timeout: float = _TIMEOUT
) -> None:
    """Camera → node and fencing token (JSON)."""
    _dump(_call(nats_url, creds, ca, "assignments", {}, timeout, pages="assignments"))


@app.command()
def history(
    camera: str | None = typer.Option(None, help="Only this camera."),
    limit: int = typer.Option(50, min=1, max=10000),
    nats_url: str = _NATS,
    creds: Path | None = _CREDS,
    ca: Path | None = _CA,
    timeout: float = _TIMEOUT,
) -> None:
    """Placement history, newest first: when, camera, from, to, token, why."""
    payload: dict[str, Any] = {"limit": limit} | ({"camera": camera} if camera else {})
    import time  # noqa: PLC0415

    for row in _call(nats_url, creds, ca, "history", payload, timeout)["history"]:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["at"]))
        typer.echo(
            f"{at} {row['camera']:<20} {row['source'] or '-':>34} -> {row['target'] or '-':<34} "
            f"token {row['token']:<6} {row['reason']}"
        )


@app.command()
def leader(
    nats_url: str = _NATS, creds: Path | None = _CREDS, ca: Path | None = _CA, timeout: float = _TIMEOUT
) -> None:
    """Which coordinator leads, and its term."""
    reply = _call(nats_url, creds, ca, "leader", {}, timeout)
    typer.echo(
        f"{reply['coordinator_id']} term {reply['term']} on {reply.get('hostname') or '?'} "
        f"(pid {reply.get('pid') or '?'})"
    )


def _flag(verb: str, node: str, nats_url: str, creds: Path | None, ca: Path | None, timeout: float) -> None:
    reply = _call(nats_url, creds, ca, verb, {"node": node}, timeout)
    state = "draining" if reply["draining"] else "cordoned" if reply["cordoned"] else "schedulable"
    typer.echo(f"{reply['node']}: {state}; {len(reply['cameras'])} camera(s) there now")


@app.command()
def drain(
    node: str = typer.Argument(..., help="Node id."),
    nats_url: str = _NATS,
    creds: Path | None = _CREDS,
    ca: Path | None = _CA,
    timeout: float = _TIMEOUT,
) -> None:
    """Move NODE's cameras elsewhere, a few at a time, and take no new ones (until uncordon)."""
    _flag("drain", node, nats_url, creds, ca, timeout)


@app.command()
def cordon(
    node: str = typer.Argument(..., help="Node id."),
    nats_url: str = _NATS,
    creds: Path | None = _CREDS,
    ca: Path | None = _CA,
    timeout: float = _TIMEOUT,
) -> None:
    """NODE keeps its cameras but takes no new ones."""
    _flag("cordon", node, nats_url, creds, ca, timeout)


@app.command()
def uncordon(
    node: str = typer.Argument(..., help="Node id."),
    nats_url: str = _NATS,
    creds: Path | None = _CREDS,
    ca: Path | None = _CA,
    timeout: float = _TIMEOUT,
) -> None:
    """NODE takes cameras again (ends a cordon or a drain)."""
    _flag("uncordon", node, nats_url, creds, ca, timeout)
