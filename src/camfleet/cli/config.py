"""``camfleet config``: check a configuration file, export its JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from camfleet.config import ConfigError

# The pipeline's loader, not config's: it checks every element's settings against the element's
# typed model (imported here, in the command, because the elements pull OpenCV, SciPy, the tracker).

app = typer.Typer(help="Check a configuration file; export the configuration's JSON Schema.",
                  no_args_is_help=True)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@app.command("check")
def check_command(
    file: Annotated[Path, typer.Argument(help="The YAML configuration file.")],
    ignore_unset_env: Annotated[bool, typer.Option(
        "--ignore-unset-env", help="Do not report unset ${VAR}s (check without the secrets)."
    )] = False,
) -> None:
    """Validate FILE; print every problem as FILE:LINE:COL: path: message (exit 1), or a summary.

    Element settings are validated by each installed element's typed model (plugins included).
    """
    from camfleet.pipeline.validate import load_config  # noqa: PLC0415 - see the import note above

    try:
        cfg = load_config(file, require_env=not ignore_unset_env)
    except ConfigError as exc:
        for issue in exc.issues:
            typer.echo(issue.format(str(file)))
        typer.echo(f"{file}: {_count(len(exc.issues), 'problem')}")
        raise typer.Exit(1) from None
    enabled = sum(c.enabled for c in cfg.cameras.values())
    cams = _count(len(cfg.cameras), "camera")
    if enabled != len(cfg.cameras):
        cams += f" ({enabled} enabled)"
    parts = [cams, _count(len(cfg.pipelines), "pipeline"), _count(len(cfg.models), "model"),
             _count(len(cfg.detectors), "detector")]
    typer.echo(f"{file}: ok: {', '.join(parts)}")


@app.command("schema")
def schema_command(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to this file instead of stdout."
    )] = None,
) -> None:
    """Print the configuration's JSON Schema (for editors), with every installed element's settings."""
    from camfleet.pipeline.validate import config_json_schema_text  # noqa: PLC0415 - see the import note above

    try:
        text = config_json_schema_text()
    except ConfigError as exc:  # a broken plugin
        for issue in exc.issues:
            typer.echo(issue.format(), err=True)
        raise typer.Exit(1) from None
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"cannot write {output}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {output}", err=True)
