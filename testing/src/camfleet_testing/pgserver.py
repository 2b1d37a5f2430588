"""A throw-away PostgreSQL server for tests and benchmarks: initdb into a temp dir, pg_ctl start/stop.

As root the server runs as user ``postgres`` (``runuser``); it listens on a unix socket in its
own directory and on a free TCP port of 127.0.0.1 with password (SCRAM) authentication.
Never touches the system cluster.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import psycopg

from camfleet.store.errors import StoreError

BIN_ENV = "CAMFLEET_PG_BIN"
"""Environment variable naming the directory of initdb/pg_ctl (default: $PATH, then newest
/usr/lib/postgresql/*/bin)."""

START_TIMEOUT_S = 60
"""How long (seconds) pg_ctl waits for the server to start or stop."""

FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
"""Settings for tests: no durability, much faster commits."""


def find_bin_dir() -> Path:
    """The directory holding initdb and pg_ctl; StoreError saying how to install them when absent."""
    forced = os.environ.get(BIN_ENV)
    if forced:  # authoritative when set
        if (Path(forced) / "initdb").is_file() and (Path(forced) / "pg_ctl").is_file():
            return Path(forced)
        raise StoreError(
            f"${BIN_ENV}={forced} does not hold the PostgreSQL server binaries initdb and pg_ctl"
        )
    candidates: list[str] = []
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for c in candidates:
        if (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    raise StoreError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in $CAMFLEET_PG_BIN, $PATH or "
        "/usr/lib/postgresql/*/bin: install them (Debian: apt-get install postgresql)"
    )


def _version_key(path: str) -> tuple[int, ...]:
    part = Path(path).parent.name
    return tuple(int(x) for x in part.split(".") if x.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_options(sock: Path, port: int, settings: dict[str, str]) -> str:
    """The ``pg_ctl -o`` string: socket dir, port, loopback only, ``settings``; every word shell-quoted.

    pg_ctl hands this string to a shell, so a path or value with a space or a
    shell character must arrive as one word and never run as a command.
    """
    words = ["-k", str(sock), "-p", str(port), "-c", "listen_addresses=127.0.0.1"]
    for name, value in settings.items():
        words += ["-c", f"{name}={value}"]
    return " ".join(shlex.quote(w) for w in words)


class PgServer:
    """One temporary PostgreSQL server; ``url`` is a postgresql:// URL for its ``postgres`` superuser.

    ``settings`` are extra server settings (``-c name=value``), e.g. :data:`FAST_SETTINGS`.
    Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.settings = dict(settings or {})
        self.bin_dir = find_bin_dir()
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self.root: Path | None = None
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        """SQLAlchemy/libpq URL of the ``postgres`` database (password included: do not log)."""
        return self.url_for("postgres")

    def url_for(self, database: str, *, password: str | None = None) -> str:
        """URL of ``database`` here; ``password`` overrides the real one (for bad-password tests)."""
        pw = self.password if password is None else password
        return f"postgresql://postgres:{pw}@127.0.0.1:{self.port}/{database}"

    def _cmd(self, *args: str) -> list[str]:
        if self._as_postgres:
            return ["runuser", "-u", "postgres", "--", *args]
        return list(args)

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S + 10) -> None:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            out = (proc.stdout + proc.stderr).replace(self.password, "***").strip()
            raise StoreError(f"{Path(args[0]).name} failed (exit {proc.returncode}): {out[-2000:]}")

    def start(self) -> PgServer:
        """Run initdb on a fresh data directory and start the server (bounded by START_TIMEOUT_S)."""
        self.root = Path(tempfile.mkdtemp(prefix="camfleet-pg-"))
        data, sock = self.root / "data", self.root / "sock"
        sock.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self._as_postgres:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise StoreError("PostgreSQL refuses to run as root and there is no 'postgres' user to "
                                 "run it as (Debian's postgresql package creates it)") from None
            for p in (self.root, sock, pwfile):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        try:
            self._run(
                str(self.bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--no-sync",
            )
            last: StoreError | None = None
            for _ in range(3):  # the free port may be taken between probe and bind: try another
                self.port = _free_port()
                try:
                    self._run(
                        str(self.bin_dir / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"),
                        "-o", server_options(sock, self.port, self.settings),
                        "-w", "-t", str(START_TIMEOUT_S), "start",
                    )
                    return self
                except StoreError as exc:
                    last = StoreError(f"{exc}; server log: {self.log_tail()}")
            assert last is not None
            raise last
        except BaseException:
            self.stop()
            raise

    def log_tail(self, n: int = 2000) -> str:
        """The end of the server's log file ('' if there is none)."""
        if self.root is None:
            return ""
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")[-n:]
        return ""

    def create_database(self, name: str) -> str:
        """Create database ``name`` (an identifier: letters, digits, _) and return its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"bad database name {name!r}")
        with psycopg.connect(self.url_for("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url_for(name)

    def stop(self) -> None:
        """Stop the server (fast, then immediate) and remove its directory."""
        if self.root is None:
            return
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            for mode in ("fast", "immediate"):
                try:
                    self._run(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "-t", "30",
                              "stop")
                    break
                except (StoreError, subprocess.TimeoutExpired):
                    continue
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
