"""``camfleet storage``: check and repair recordings, usage, retention, clip export, lost-key cameras.

``forget-cameras`` drops the API-applied cameras a lost key made unreadable.

Times (``START``/``END``) accept ISO 8601 (``2026-11-21T15:04:05Z``; without
an offset: local time) or epoch seconds. ``CONFIG`` is the node's YAML
configuration (default: the built-in defaults, ``./camfleet-data``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from camfleet.config import Config, ConfigError, load_config
from camfleet.recording import (
    QUARANTINE_DIR,
    ExportError,
    RetentionManager,
    check_storage,
    disk_free_bytes,
    event_clip,
    export_clip,
)
from camfleet.store import Store, StoreError, recovery

app = typer.Typer(help="Recordings: check and repair, usage, retention, clip export.", no_args_is_help=True)

ConfigArg = Annotated[Path | None, typer.Argument(help="The YAML configuration (default: built-in).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="The YAML configuration.")]


def parse_time(text: str) -> float:
    """Epoch seconds from ISO 8601 (no offset: local time) or a number of epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither ISO 8601 (e.g. 2026-11-21T15:04:05Z) nor epoch seconds"
        ) from None


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _load(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        return load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            typer.echo(issue.format(str(path)), err=True)
        raise typer.Exit(2) from None


@contextmanager
def _store(cfg: Config) -> Iterator[Store]:
    try:
        # the node's key file, so that commands reading camera credentials use the node's key
        store = Store.open(cfg.database_url, secret_key_path=cfg.data_path / "secret.key")
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        yield store
    finally:
        store.close()


def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


@app.command("check")
def check_command(
    config: ConfigArg = None,
    repair: Annotated[bool, typer.Option(
        "--repair",
        help="Delete rows whose file is missing; index playable unindexed files, quarantine others "
             "(nothing is deleted).",
    )] = False,
) -> None:
    """Compare segment rows with the files in the recordings directory (exit 1 on a mismatch left)."""
    cfg = _load(config)
    with _store(cfg) as store:
        report = check_storage(store, cfg.recordings_path, repair=repair)
    typer.echo(f"{report.rows} rows, {report.files} files in {cfg.recordings_path}")
    for row in report.missing_files:
        typer.echo(f"  missing file: {row.path} (row {row.id}, {row.camera})")
    for rel in report.orphan_files:
        typer.echo(f"  file without row: {rel}")
    for rel in report.foreign_files:
        typer.echo(f"  not camfleet's (left alone): {rel}")
    for rel in report.part_files:
        typer.echo(f"  unfinished (.part, finalised by the camera's recorder): {rel}")
    if repair:
        typer.echo(f"repaired: {report.rows_deleted} rows deleted, "
                   f"{len(report.files_indexed)} files indexed, "
                   f"{len(report.files_quarantined)} unplayable files quarantined")
    q = report.quarantined
    if q.files:
        typer.echo(f"quarantine: {q.files} files, {_mb(q.bytes)} in "
                   f"{cfg.recordings_path / QUARANTINE_DIR} (never deleted by camfleet; review and remove)")
    if repair:
        return
    if report.ok:
        typer.echo("ok")
        return
    typer.echo("run with --repair to fix")
    raise typer.Exit(1)


@app.command("usage")
def usage_command(config: ConfigArg = None) -> None:
    """Segments and bytes per camera, free space and the storage floor."""
    cfg = _load(config)
    with _store(cfg) as store:
        totals = store.segment_totals()
        spans = {}
        for camera in totals:
            segs = store.query_segments(camera=camera)
            spans[camera] = (segs[0].start, segs[-1].end) if segs else None
    typer.echo(f"{'camera':<20} {'segments':>9} {'size':>14}  oldest -> newest (UTC)")
    for camera, (count, size) in sorted(totals.items()):
        span = spans[camera]
        when = f"{_iso(span[0])} -> {_iso(span[1])}" if span else "-"
        typer.echo(f"{camera:<20} {count:>9} {_mb(size):>14}  {when}")
    total = sum(size for _, size in totals.values())
    free = disk_free_bytes(cfg.recordings_path)
    typer.echo(f"total {_mb(total)}; free {_mb(free)} on {cfg.recordings_path}; "
               f"floor {_mb(cfg.storage.min_free_mb * 2**20)}")


@app.command("retention")
def retention_command(config: ConfigArg = None) -> None:
    """Apply retention once (modes, retain_days, the storage floor) and print what was deleted."""
    cfg = _load(config)
    with _store(cfg) as store:
        from camfleet.events import journal_path  # noqa: PLC0415 - the outbox, only for retention
        from camfleet.recording.retention import journal_open_spans  # noqa: PLC0415

        open_spans = journal_open_spans(journal_path(cfg.data_path))  # motion going on now: kept
        report = RetentionManager(store, cfg, open_spans=open_spans).run_once(time.time())
    for d in report.deleted:
        typer.echo(f"deleted {d.path} ({_mb(d.size)}): {d.reason}")
    typer.echo(f"{len(report.deleted)} segments deleted, {_mb(report.bytes_freed)} freed; "
               f"{report.kept_retained} kept for retained events")


@app.command("export")
def export_command(
    camera: Annotated[str, typer.Argument(help="Camera name.")],
    start: Annotated[str, typer.Argument(help="Start: ISO 8601 or epoch seconds.")],
    end: Annotated[str, typer.Argument(help="End: ISO 8601 or epoch seconds.")],
    out: Annotated[Path, typer.Argument(help="Output MP4 file.")],
    config: ConfigOpt = None,
) -> None:
    """Export CAMERA's footage from START to END into OUT (remuxed, cut at keyframes)."""
    cfg = _load(config)
    t0, t1 = parse_time(start), parse_time(end)
    with _store(cfg) as store:
        try:
            info = export_clip(store, cfg.recordings_path, camera, t0, t1, out)
        except (ExportError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    _print_clip(info.path, info.start, info.end, info.frames, info.size, info.missing)


@app.command("event-clip")
def event_clip_command(
    event_id: Annotated[str, typer.Argument(help="Event id.")],
    out: Annotated[Path, typer.Argument(help="Output MP4 file.")],
    pre: Annotated[float, typer.Option(help="Seconds before the event.")] = 5.0,
    post: Annotated[float, typer.Option(help="Seconds after the event.")] = 5.0,
    config: ConfigOpt = None,
) -> None:
    """Export the footage of event EVENT_ID (with PRE/POST seconds around it) into OUT."""
    cfg = _load(config)
    with _store(cfg) as store:
        try:
            info = event_clip(store, cfg.recordings_path, event_id, out, pre=pre, post=post)
        except (ExportError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    _print_clip(info.path, info.start, info.end, info.frames, info.size, info.missing)


def _print_clip(path: Path, start: float, end: float, frames: int, size: int, missing: float) -> None:
    gap = f"; {missing:.1f} s without footage" if missing else ""
    typer.echo(f"wrote {path}: {_iso(start)} -> {_iso(end)} ({end - start:.2f} s, {frames} frames, "
               f"{_mb(size)}){gap}")


@app.command("forget-cameras")
def forget_cameras_command(
    config: ConfigArg = None,
    everything: Annotated[bool, typer.Option(
        "--all", help="Drop every camera applied or staged through the API, readable or not.",
    )] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Drop the API-applied cameras whose passwords cannot be decrypted (the key was lost).

    Cameras the configuration file defines run from the file again; the others
    must be applied again through the API. Nothing is dropped without
    confirmation (or ``--yes``).
    """
    cfg = _load(config)
    with _store(cfg) as store:
        try:
            names = recovery.stored_cameras(store.engine) if everything else store.unreadable_cameras()
        except StoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        if not names:
            typer.echo("nothing to forget: every stored camera can be read" if not everything
                       else "nothing to forget: no camera is stored")
            return
        what = "stored" if everything else "unreadable"
        typer.echo(f"{what} camera(s) applied through the API: {', '.join(names)}")
        if not yes and not typer.confirm("drop them from the database?", default=False):
            typer.echo("nothing dropped")
            raise typer.Exit(1)
        try:
            gone = store.forget_cameras(names)
        except StoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"forgot {len(names)} camera(s) ({gone} row(s)): {', '.join(names)}; "
               "apply them again through the API if you still need them")
