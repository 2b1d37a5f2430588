"""``camfleet token`` (the sub-app): create, list, revoke against a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from camfleet.cli.token import app
from camfleet.store import Store

pytestmark = pytest.mark.unit


def test_create_list_revoke(tmp_path: Path) -> None:
    config = tmp_path / "camfleet.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    runner = CliRunner()
    r = runner.invoke(app, ["create", "--role", "admin", "ops", str(config)])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("cft_")
    store = Store.open(f"sqlite:///{tmp_path / 'data' / 'camfleet.db'}",
                       secret_key_path=tmp_path / "data" / "secret.key")
    try:
        row = store.verify_token(token)
        assert row is not None and row.role == "admin" and row.name == "ops"
        listed = runner.invoke(app, ["list", str(config)])
        assert listed.exit_code == 0 and "ops" in listed.stdout and "active" in listed.stdout
        assert token not in listed.stdout
        assert runner.invoke(app, ["revoke", str(row.id), str(config)]).exit_code == 0
        assert store.verify_token(token) is None
        assert "revoked" in runner.invoke(app, ["list", str(config)]).stdout
        assert runner.invoke(app, ["revoke", "999", str(config)]).exit_code == 1
    finally:
        store.close()
    bad = runner.invoke(app, ["create", "--role", "root", "x", str(config)])
    assert bad.exit_code == 2 and "admin or viewer" in bad.output


def test_default_data_dir(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["create", "viewer-1", "--data-dir", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d" / "camfleet.db").exists()
    assert "viewer" in runner.invoke(app, ["list", "--data-dir", str(tmp_path / "d")]).stdout
