"""``camfleet cluster token``: the coordinators' API tokens, in the fleet database (valid on each one)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from .token import print_tokens

app = typer.Typer(help="Create, list and revoke the coordinators' API tokens (admin: everything; viewer: "
                       "read-only), kept in the fleet database.", no_args_is_help=True)

DbOpt = Annotated[str | None, typer.Option("--db", help="The fleet database (as for the coordinator); "
                                           "default $CAMFLEET_FLEET_DB or sqlite:///DATA_DIR/fleet.db.")]
DataDirOpt = Annotated[Path, typer.Option(help="The coordinator's data directory (without --db).")]


def _store(db: str | None, data_dir: Path) -> Any:
    from camfleet.fleetstore.store import FleetStore  # noqa: PLC0415 - keeps `camfleet --help` fast
    from camfleet.store.errors import StoreError  # noqa: PLC0415

    url = db or os.environ.get("CAMFLEET_FLEET_DB") or f"sqlite:///{data_dir.resolve() / 'fleet.db'}"
    try:
        return FleetStore(url)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("create")
def create_command(
    name: Annotated[str, typer.Argument(help="A name to recognise the token by (e.g. who uses it).")],
    role: Annotated[str, typer.Option(help="admin (everything) or viewer (read-only).")] = "viewer",
    db: DbOpt = None,
    data_dir: DataDirOpt = Path("camfleet-coordinator"),
) -> None:
    """Create a token for NAME and print it once (only a hash is stored; it cannot be shown again)."""
    from camfleet.store.errors import StoreError  # noqa: PLC0415

    if not name.strip():
        typer.echo("error: NAME must be 1 to 128 characters", err=True)
        raise typer.Exit(2)
    store = _store(db, data_dir)
    try:
        token = store.create_token(name, role)
    except (ValueError, StoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    typer.echo(f"created {role} token {name!r} for every coordinator; it is shown only now:", err=True)
    typer.echo(token)


@app.command("list")
def list_command(db: DbOpt = None, data_dir: DataDirOpt = Path("camfleet-coordinator")) -> None:
    """List every token: id, name, role, when it was created, whether it was revoked (never the token)."""
    store = _store(db, data_dir)
    try:
        rows = store.list_tokens()
    finally:
        store.close()
    print_tokens(rows)


@app.command("revoke")
def revoke_command(
    token_id: Annotated[int, typer.Argument(help="The token's id (see `camfleet cluster token list`).")],
    db: DbOpt = None,
    data_dir: DataDirOpt = Path("camfleet-coordinator"),
) -> None:
    """Revoke a token: every coordinator refuses it from its next request on."""
    store = _store(db, data_dir)
    try:
        done = store.revoke_token(token_id)
    finally:
        store.close()
    if not done:
        typer.echo(f"error: no token with id {token_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked token {token_id}")
