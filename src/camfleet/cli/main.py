"""Entry point of the ``camfleet`` command.

A subcommand's module is imported only when that subcommand runs:
``camfleet cluster nodes`` does not pay for the pipeline, the detectors and
the API that ``camfleet run`` needs (about 1.5 s of imports). The top-level
``--help``, a mistyped command and :data:`app` have them all.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Sequence

import typer

from camfleet import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run"),
    "demo": ("demo", "run"),
    "probe": ("ingest", "probe_command"),
    "ingest": ("ingest", "ingest_command"),
    "sim": ("sim", "sim"),
    "status": ("status", "status"),
    "reload": ("status", "reload"),
    "logs": ("logview", "logs"),
    "nats": ("fleet", "nats"),
    "agent": ("fleet", "agent"),
    "coordinator": ("fleet", "coordinator"),
    "bus": ("bus", "app"),
    "models": ("models", "app"),
    "config": ("config", "app"),
    "import": ("importer", "app"),
    "storage": ("storage", "app"),
    "token": ("token", "app"),
    "cluster": ("cluster", "app"),
}
"""Subcommand -> (module of ``camfleet.cli``, its command function or Typer app), in help order."""


def version() -> None:
    """Print the camfleet version."""
    typer.echo(__version__)


def build_app(names: Iterable[str] = COMMANDS) -> typer.Typer:
    """The ``camfleet`` command with the subcommands ``names`` (default: all), their modules imported."""
    cli = typer.Typer(
        name="camfleet",
        help="AI video analytics for a fleet of cameras: decode once, share zero-copy, heal.",
        no_args_is_help=True,
        add_completion=False,
    )
    for name in names:
        module, attr = COMMANDS[name]
        target = getattr(importlib.import_module(f"camfleet.cli.{module}"), attr)
        if isinstance(target, typer.Typer):
            cli.add_typer(target, name=name)
        else:
            cli.command(name)(target)
    cli.command("version")(version)
    cli.callback()(_group)  # a group even with one subcommand (``camfleet version``)
    return cli


def _group() -> None:
    pass


def _wanted(args: Sequence[str]) -> list[str]:
    """The subcommands ``args`` (the command line after ``camfleet``) needs: the one named, else all."""
    first = next((a for a in args if not a.startswith("-")), None)
    if first == "version":
        return []
    return [first] if first in COMMANDS else list(COMMANDS)


def main() -> None:
    """Run the CLI."""
    build_app(_wanted(sys.argv[1:]))()


def __getattr__(name: str) -> typer.Typer:
    # ``app``, the whole command (tests drive it with typer's CliRunner), built on first use
    if name == "app":
        app = build_app()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
