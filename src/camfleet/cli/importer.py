"""``camfleet import``: convert another product's configuration into camfleet's.

``camfleet import frigate FRIGATE.yml -o camfleet.yaml`` prints every note
(``not mapped: KEY: why``, ``converted: KEY: what changed``), writes the YAML,
then checks the written file as ``camfleet config check --ignore-unset-env``
does (``${FRIGATE_*}`` variables need not be set here) and prints its problems
as FILE:LINE:COL; it exits 1 when the result does not validate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from camfleet.config import ConfigError

app = typer.Typer(help="Convert another product's configuration into camfleet's.", no_args_is_help=True)

_HEADER = ("# Converted from the Frigate configuration {src} by `camfleet import frigate`.\n"
           "# Check it: camfleet config check {dst}\n")


def _read(src: Path) -> Any:
    try:
        return yaml.safe_load(src.read_text(encoding="utf-8"))
    except OSError as exc:
        typer.echo(f"cannot read {src}: {exc.strerror or exc}", err=True)
    except yaml.YAMLError as exc:  # the position, not the text (it may hold a password)
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        typer.echo(f"{src}{where}: not valid YAML", err=True)
    raise typer.Exit(2)


@app.command("frigate")
def frigate_command(
    src: Annotated[Path, typer.Argument(help="Frigate config.yml, 0.12 to 0.18.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The camfleet configuration to write.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT if it exists.")] = False,
) -> None:
    """Convert a Frigate configuration; print what could not be mapped and why; check the result."""
    from camfleet.importers.frigate import convert  # noqa: PLC0415 - keeps `camfleet --help` light
    from camfleet.pipeline.validate import load_config  # noqa: PLC0415 - pulls the pipeline elements

    data = _read(src)
    if not isinstance(data, dict):
        typer.echo(f"{src}: not a Frigate configuration (expected a mapping at the top)", err=True)
        raise typer.Exit(2)
    if output.exists() and not force:
        typer.echo(f"{output} exists; use --force to overwrite it", err=True)
        raise typer.Exit(2)
    result = convert(data)
    for note in result.notes:
        typer.echo(str(note))
    text = _HEADER.format(src=src.name, dst=output.name) + yaml.safe_dump(
        result.config, sort_keys=False, default_flow_style=None, width=110)
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"cannot write {output}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {output}: {len(result.config['cameras'])} camera(s), {len(result.notes)} note(s)")
    try:
        load_config(output, require_env=False)
    except ConfigError as exc:
        for issue in exc.issues:
            typer.echo(issue.format(str(output)))
        typer.echo(f"{output}: does not validate ({len(exc.issues)} problem(s)); fix it by hand")
        raise typer.Exit(1) from None
    typer.echo(f"{output}: ok")
