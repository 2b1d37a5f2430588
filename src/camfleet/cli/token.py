"""``camfleet token``: create, list and revoke API tokens (stored hashed in the node's database)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from camfleet.config import ConfigError, load_config, load_config_text

app = typer.Typer(help="Create, list and revoke API tokens (admin: everything; viewer: read-only).",
                  no_args_is_help=True)

ConfigArg = Annotated[Path | None, typer.Argument(
    help="The node's configuration file (its database); default: the embedded default's data directory.",
)]
DataDirOpt = Annotated[Path, typer.Option(help="Data directory of the embedded default (without CONFIG).")]


def _store(config: Path | None, data_dir: Path) -> Any:
    from camfleet.store import Store, StoreError  # noqa: PLC0415 - keeps `camfleet --help` fast

    try:
        if config is not None:
            cfg = load_config(config, require_env=False)
        else:
            cfg = load_config_text(f"data_dir: {json.dumps(str(data_dir.resolve()))}\n")
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    try:
        return Store.open(cfg.database_url, secret_key_path=cfg.data_path / "secret.key")
    except StoreError as exc:
        typer.echo(f"error: database: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("create")
def create_command(
    name: Annotated[str, typer.Argument(help="A name to recognise the token by (e.g. who uses it).")],
    config: ConfigArg = None,
    role: Annotated[str, typer.Option(help="admin (everything) or viewer (read-only).")] = "viewer",
    data_dir: DataDirOpt = Path("camfleet-data"),
) -> None:
    """Create a token for NAME and print it once (only a hash is stored; it cannot be shown again)."""
    if role not in ("admin", "viewer"):
        typer.echo(f"error: --role must be admin or viewer, not {role!r}", err=True)
        raise typer.Exit(2)
    if not name.strip() or len(name) > 128:
        typer.echo("error: NAME must be 1 to 128 characters", err=True)
        raise typer.Exit(2)
    the_role: Literal["admin", "viewer"] = "admin" if role == "admin" else "viewer"
    store = _store(config, data_dir)
    try:
        token = store.create_token(name, the_role)
    finally:
        store.close()
    typer.echo(f"created {the_role} token {name!r}; it is shown only now:", err=True)
    typer.echo(token)


@app.command("list")
def list_command(config: ConfigArg = None, data_dir: DataDirOpt = Path("camfleet-data")) -> None:
    """List every token: id, name, role, when it was created, whether it was revoked (never the token)."""
    store = _store(config, data_dir)
    try:
        rows = store.list_tokens()
    finally:
        store.close()
    print_tokens(rows)


def print_tokens(rows: Sequence[Any]) -> None:
    """Print token rows (``id``, ``role``, ``created`` epoch s, ``active``, ``name``) as a table."""
    if not rows:
        typer.echo("no tokens")
        return
    typer.echo(f"{'id':>4}  {'role':<6}  {'created':<19}  {'state':<7}  name")
    for row in rows:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.created))
        state = "active" if row.active else "revoked"
        typer.echo(f"{row.id:>4}  {row.role:<6}  {created:<19}  {state:<7}  {row.name}")


@app.command("revoke")
def revoke_command(
    token_id: Annotated[int, typer.Argument(help="The token's id (see `camfleet token list`).")],
    config: ConfigArg = None,
    data_dir: DataDirOpt = Path("camfleet-data"),
) -> None:
    """Revoke a token: requests with it are refused from now on."""
    store = _store(config, data_dir)
    try:
        done = store.revoke_token(token_id)
    finally:
        store.close()
    if not done:
        typer.echo(f"error: no token with id {token_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked token {token_id}")
