"""Entry point of the ``camfleet`` command."""

from __future__ import annotations

import typer

from camfleet import __version__

from . import (
    bus,
    cluster,
    config,
    demo,
    fleet,
    importer,
    ingest,
    logview,
    models,
    run,
    sim,
    status,
    storage,
    token,
)

app = typer.Typer(
    name="camfleet",
    help="AI video analytics for a fleet of cameras: decode once, share zero-copy, heal.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(bus.app, name="bus")
app.add_typer(models.app, name="models")
app.add_typer(config.app, name="config")
app.add_typer(importer.app, name="import")
app.add_typer(storage.app, name="storage")
app.add_typer(token.app, name="token")
app.add_typer(cluster.app, name="cluster")
app.command("run")(run.run)
app.command("demo")(demo.run)
app.command("probe")(ingest.probe_command)
app.command("ingest")(ingest.ingest_command)
app.command("sim")(sim.sim)
app.command("status")(status.status)
app.command("reload")(status.reload)
app.command("logs")(logview.logs)
app.command("nats")(fleet.nats)
app.command("agent")(fleet.agent)
app.command("coordinator")(fleet.coordinator)


@app.command()
def version() -> None:
    """Print the camfleet version."""
    typer.echo(__version__)


def main() -> None:
    """Run the CLI."""
    app()
