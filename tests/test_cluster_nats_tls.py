"""The fleet over TLS with a password: what production looks like when the machines are separate.

Real parts: a throw-away CA and a server certificate for 127.0.0.1
(:mod:`camfleet_testing.tls`, the ``cryptography`` package); one ``nats-server``
(the wheel's) with JetStream that requires TLS from clients and a user and
password; ``camfleet coordinator`` and ``camfleet agent`` as processes over
``tls://fleet:PASSWORD@127.0.0.1:PORT`` with ``--nats-ca``. Checked:
``camfleet cluster nodes`` over the same URL lists the agent alive; without the
CA the CLI exits 2 with one line naming the URL (password masked) and the
cause, no traceback; a wrong or missing password is refused at once (not
retried until the timeout); with several URLs, a server whose certificate is
not trusted does not stop the client trying the others; the password appears
in no log or output.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import nats.aio.client as nats_client
import pytest

from camfleet.cluster.connection import NatsOptions, connect
from camfleet_testing.nats import NatsHarness
from camfleet_testing.tls import make_ca_and_server
from tests.support.fleet import NODE_CONFIG, cli_env, seed_capacity, spawn_cli, stop_process, wait_for

pytestmark = pytest.mark.process

PASSWORD = "pa55-w0rd-in-the-url"


def _cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "camfleet.cli", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=cli_env(), timeout=timeout, check=False)


def _alive_nodes(url: str, ca: Path) -> list[str] | None:
    done = _cli("cluster", "nodes", "--nats", url, "--nats-ca", str(ca), "--json", "--timeout", "2")
    assert PASSWORD not in done.stdout + done.stderr
    if done.returncode != 0:
        return None
    return [n["node_id"] for n in json.loads(done.stdout)["nodes"] if n["state"] == "alive"] or None


def _refused(options: NatsOptions) -> str:
    """Why :func:`connect` refuses ``options`` (it must, well before its 10 s timeout)."""
    async def attempt() -> str:
        try:
            client = await connect(options, timeout_s=10)
        except ConnectionError as exc:
            return str(exc)
        await client.close()
        raise AssertionError(f"{options.shown}: connected")

    return asyncio.run(attempt())


async def _connects(options: NatsOptions) -> bool:
    client = await connect(options, timeout_s=10)
    await client.close()
    return True


def test_fleet_over_tls_with_a_password_and_clear_refusals(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    tls = make_ca_and_server(tmp_path / "tls")
    with NatsHarness(tmp_path / "nats", tls=(tls.cert, tls.key), users={"fleet": PASSWORD}) as nats:
        port = nats.servers[0].spec.port
        assert nats.url == f"tls://127.0.0.1:{port}"
        url = f"tls://fleet:{PASSWORD}@127.0.0.1:{port}"
        shown = f"tls://***:***@127.0.0.1:{port}"
        data = tmp_path / "agent"
        data.mkdir()
        (tmp_path / "node.yaml").write_text(NODE_CONFIG.format(data=data))
        seed_capacity(data)
        logs = {"coordinator": tmp_path / "coordinator.log", "agent": tmp_path / "agent.log"}
        nats_args = ["--nats", url, "--nats-ca", str(tls.ca)]
        procs = [
            spawn_cli(["coordinator", *nats_args, "--data-dir", str(tmp_path / "c1"),
                       "--db", f"sqlite:///{tmp_path / 'fleet.db'}"], logs["coordinator"]),
            spawn_cli(["agent", *nats_args, "--config", str(tmp_path / "node.yaml")], logs["agent"]),
        ]
        try:
            # the CLI without the CA, while the fleet starts: refused at once, in one line
            no_ca = subprocess.Popen([sys.executable, "-m", "camfleet.cli", "cluster", "nodes", "--nats", url,
                                      "--timeout", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, env=cli_env())
            out, err = no_ca.communicate(timeout=60)
            assert no_ca.returncode == 2 and out == "", (out, err)
            assert err.startswith(f"error: cannot connect to NATS at {shown}: the server's TLS "
                                  "certificate is not trusted"), err
            assert "--nats-ca" in err and "Traceback" not in err and len(err.splitlines()) == 1, err
            node_id = wait_for("the node id", lambda: (data / "node-id").is_file()
                               and (data / "node-id").read_text().strip(), 30)
            assert wait_for("the agent listed alive", lambda: _alive_nodes(url, tls.ca), 30) == [node_id]

            # a wrong password, and no credentials at all: refused, not retried until the timeout
            for bad in (f"tls://fleet:wrong-{PASSWORD}@127.0.0.1:{port}", nats.url):
                error = _refused(NatsOptions((bad,), ca_file=tls.ca))
                assert "authorization refused" in error and "wrong-" not in error, error
            # a plain nats:// URL to this server still gets TLS (the server asks for it) and the CA applies
            assert asyncio.run(_connects(NatsOptions((f"nats://fleet:{PASSWORD}@127.0.0.1:{port}",),
                                                     ca_file=tls.ca)))

            # several URLs, one server's certificate from another CA, tried first: the others are tried
            monkeypatch.setattr(nats_client, "shuffle", lambda servers: None)  # keep the order given
            other_tls = make_ca_and_server(tmp_path / "tls-other")
            with NatsHarness(tmp_path / "nats-other", tls=(other_tls.cert, other_tls.key),
                             users={"fleet": PASSWORD}) as other:
                bad = f"tls://fleet:{PASSWORD}@127.0.0.1:{other.servers[0].spec.port}"
                assert asyncio.run(_connects(NatsOptions((bad, url), ca_file=tls.ca)))
                # every one refused: at once, naming the cause
                error = _refused(NatsOptions((bad, bad.replace("fleet:", "nobody:")), ca_file=tls.ca))
                assert "certificate is not trusted" in error and PASSWORD not in error, error
        finally:
            for proc in procs:
                stop_process(proc)
        for name, log in logs.items():
            text = log.read_text()
            assert PASSWORD not in text, f"the password is in the {name}'s log"
            assert "Traceback" not in text and "eof_received" not in text, text[-3000:]
