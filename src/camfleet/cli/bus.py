"""``camfleet bus``: look at the shared-memory rings on this machine."""

from __future__ import annotations

import dataclasses
import json
import time

import typer

from camfleet import framebus
from camfleet.framebus.inspect import RingInfo, list_rings, ring_info
from camfleet.framebus.layout import KIND_FRAMES, KIND_PACKETS, validate_key

app = typer.Typer(help="Inspect the frame and packet rings on this machine.", no_args_is_help=True)


def _kind(packets: bool) -> int:
    return KIND_PACKETS if packets else KIND_FRAMES


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List rings: publisher pid, format, fps, subscribers."""
    rings = list_rings()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in rings], indent=2))
        return
    if not rings:
        typer.echo(f"no rings in {framebus.shm_dir()}")
        return
    typer.echo(f"{'KEY':<24} {'KIND':<8} {'PUBLISHER':<14} {'FORMAT':<26} {'FPS':>7} {'SEQ':>9} SUBSCRIBERS")
    for r in rings:
        if r.error:
            typer.echo(f"{r.key:<24} {r.kind:<8} error: {r.error}")
            continue
        state = f"{r.publisher_pid}" + ("" if r.publisher_alive else " (dead)")
        subs = ", ".join(s.name + ("" if s.alive else "(dead)") for s in r.subscribers) or "-"
        fps = f"{r.fps:7.1f}" if r.kind == "frames" else "      -"
        typer.echo(
            f"{r.key:<24} {r.kind:<8} {state:<14} {r.description:<26} {fps} {r.last_seq:>9} {subs}"
        )


def _print_stat(r: RingInfo) -> None:
    typer.echo(f"ring {r.key} ({r.kind})  {r.path}")
    if r.error:
        typer.echo(f"  error: {r.error}")
        return
    alive = "alive" if r.publisher_alive else "DEAD"
    typer.echo(f"  publisher   pid {r.publisher_pid} ({alive})")
    typer.echo(f"  format      {r.description}")
    if r.kind == "frames":
        typer.echo(f"  ring        {r.slots} slots, policy {r.policy}, {r.size_bytes / 2**20:.1f} MiB")
        typer.echo(f"  rate        {r.fps:.1f} fps")
    else:
        typer.echo(f"  index       {r.slots} entries, {r.size_bytes / 2**20:.1f} MiB")
    typer.echo(f"  last        seq {r.last_seq}, pts {r.last_pts}")
    typer.echo(f"  evictions   {r.evictions}   lease revocations {r.revocations}")
    if not r.subscribers:
        typer.echo("  subscribers none")
        return
    typer.echo(
        f"  {'SUBSCRIBER':<20} {'PID':>7} {'MODE':<10} {'STATE':<8} {'HELD':>4} {'DELIVERED':>10} "
        f"{'SKIPPED':>8} {'GAPS':>6} {'OVERRUNS':>8} {'REVOKED':>7} {'LAST':>9}"
    )
    for s in r.subscribers:
        state = "evicted" if s.evicted else ("alive" if s.alive else "dead")
        typer.echo(
            f"  {s.name:<20} {s.pid:>7} {s.mode:<10} {state:<8} {s.held:>4} {s.delivered:>10} "
            f"{s.skipped:>8} {s.gaps:>6} {s.overruns:>8} {s.revocations:>7} {s.last_seq:>9}"
        )


@app.command("stat")
def stat_command(
    key: str,
    packets: bool = typer.Option(False, "--packets", help="The packet ring instead of frames."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one ring's publisher, geometry, counters and subscribers."""
    try:
        validate_key(key)
    except framebus.InvalidKey as exc:
        raise typer.BadParameter(str(exc)) from None
    info = ring_info(key, _kind(packets))
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(info), indent=2))
    else:
        _print_stat(info)
    if info.error:
        raise typer.Exit(1)


@app.command("tail")
def tail_command(
    key: str,
    packets: bool = typer.Option(False, "--packets", help="Follow the packet ring."),
    duration: float = typer.Option(0.0, help="Stop after this many seconds (0: until Ctrl-C)."),
    connect_timeout: float = typer.Option(5.0, help="Seconds to wait for the publisher."),
) -> None:
    """Follow a ring live: one line a second with sequence, fps and gaps."""
    name = f"tail-{time.monotonic_ns() % 10**9}"
    try:
        if packets:
            _tail_packets(key, name, duration, connect_timeout)
        else:
            _tail_frames(key, name, duration, connect_timeout)
    except framebus.FramebusError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


def _tail_frames(key: str, name: str, duration: float, connect_timeout: float) -> None:
    end = time.monotonic() + duration if duration > 0 else None
    with framebus.subscribe(key, mode="latest", name=name, connect_timeout=connect_timeout) as sub:
        t0, n0, s0 = time.monotonic(), 0, 0
        count = 0
        while end is None or time.monotonic() < end:
            try:
                with sub.next(timeout=1.0) as frame:
                    seq, pts = frame.seq, frame.pts
                    count += 1
            except framebus.FrameTimeout:
                seq, pts = sub.stats().last_seq, sub.stats().last_pts
            now = time.monotonic()
            if now - t0 >= 1.0:
                skipped = sub.stats().skipped
                fps = (count - n0 + skipped - s0) / (now - t0)
                typer.echo(f"seq {seq:>9}  pts {pts:>12}  {fps:6.1f} fps  skipped {skipped - s0:>4}")
                t0, n0, s0 = now, count, skipped


def _tail_packets(key: str, name: str, duration: float, connect_timeout: float) -> None:
    end = time.monotonic() + duration if duration > 0 else None
    with framebus.subscribe_packets(key, name=name, connect_timeout=connect_timeout) as sub:
        t0, n, nbytes, keys, lost = time.monotonic(), 0, 0, 0, 0
        seq = 0
        while end is None or time.monotonic() < end:
            try:
                p = sub.next(timeout=1.0)
                seq, n, nbytes = p.seq, n + 1, nbytes + len(p.data)
                keys += p.is_key
                lost += p.lost
            except framebus.FrameTimeout:
                pass
            now = time.monotonic()
            if now - t0 >= 1.0:
                dt = now - t0
                typer.echo(
                    f"seq {seq:>9}  {n / dt:6.1f} pkt/s  {nbytes * 8 / dt / 1e6:7.2f} Mbit/s  "
                    f"keyframes {keys}  lost {lost}  codec {sub.codec}"
                )
                t0, n, nbytes, keys, lost = now, 0, 0, 0, 0
