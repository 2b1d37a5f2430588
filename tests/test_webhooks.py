"""Webhooks against a real HTTP receiver on loopback: outages, slowness, refusals, a kill -9 of the
sender mid-delivery, the SSRF guard at delivery time, pinned HTTPS, and a real node's events."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camfleet.config import load_config_text
from camfleet.config.webhooks import WebhookConfig
from camfleet.events import Journal, Pump, PumpSettings, journal_path
from camfleet.integrations import Integrations
from camfleet.integrations.webhooks import WebhookRefused, WebhookSink
from camfleet.integrations.webhooks.payload import delivery, matches
from camfleet.runtime import Node
from camfleet.vocabulary import Event, EventMessage, decode
from tests.support.runtime_helpers import States, camera_yaml, config_text
from tests.support.tls_ca import make_ca_and_server
from tests.support.webhook_receiver import Received, Receiver
from tests.support.webhook_sender import run_pump

pytestmark = [pytest.mark.process, pytest.mark.beside]

SECRET = "whsec_test_0123456789abcdef"
NODE = "node-under-test"
T0 = 1_700_000_000.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET)
    try:
        yield r
    finally:
        r.close()


def _hook(url: str, **kw: Any) -> WebhookConfig:
    settings: dict[str, Any] = {"name": "h", "url": url, "secret": SECRET,
                                "events": ["start", "update", "end"], "timeout_s": 0.5,
                                "retry_initial_s": 0.05, "retry_max_s": 0.2}
    return WebhookConfig.model_validate({**settings, **kw})


def _event(i: int, kind: str = "start", camera: str = "door") -> EventMessage:
    ev = Event(id=f"e{i}", camera=camera, label="person", start=T0 + i, top_score=0.5 + i / 100,
               end=T0 + i + 3 if kind == "end" else None, data={"track_id": i})
    return EventMessage(kind, ev)  # type: ignore[arg-type]


def _expected(path: Path, hook: WebhookConfig, node: str = NODE) -> dict[str, bytes]:
    """Idempotency key -> body of every journalled event message the hook's filters pass."""
    with Journal(path) as journal:
        messages = [decode(e.body) for e in journal.entries("event")]
    return {d.key: d.body for d in (delivery(hook.name, node, m) for m in messages
                                    if isinstance(m, EventMessage) and matches(hook, m))}


def test_outages_slowness_and_a_refusal_lose_nothing_and_dedupe_to_the_journal(
        tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    """500s, then answers slower than the timeout, then a 400 for one message: every other
    message is processed, the idempotency keys dedupe to exactly the journal's messages, every
    signature verifies, and the refused one is skipped while the next ones flow."""
    script = iter([(500, 0.0)] * 3 + [(200, 1.0)] * 2)  # down, then slow (answers after the 0.5 s timeout)

    def answer(r: Received) -> tuple[int, float]:
        if r.data.get("event", {}).get("id") == "poison":
            return 400, 0.0
        return next(script, (200, 0.0))

    receiver.answer = answer
    hook = _hook(receiver.url)
    path = journal_path(tmp_path)
    sink = WebhookSink(hook, node=NODE)
    pump = Pump(path, [sink], settings=PumpSettings(poll_s=0.02))
    pump.start()
    try:
        with Journal(path) as journal:
            journal.append([_event(i) for i in range(5)])
            poisoned = Event(id="poison", camera="door", label="person", start=T0)
            journal.append([EventMessage("start", poisoned)])
            journal.append([_event(i, "update") for i in range(5)] + [_event(i, "end") for i in range(5)])
            journal.append([_event(i) for i in range(5, 8)])
        expected = _expected(path, hook)
        assert len(expected) == 19  # 18 good and the poisoned one
        poison = next(k for k in expected if k.startswith("poison:"))
        good = set(expected) - {poison}
        receiver.wait(lambda reqs: good <= set(receiver.processed()), 20)
        assert pump.flush(10), "the pump did not confirm every entry"
    finally:
        pump.stop(3.0)
        sink.close()
    requests = list(receiver.requests)
    processed = receiver.processed()
    assert set(processed) == good  # deduped by key: exactly what the journal has, the refused one aside
    assert all(r.verified for r in requests), "a signature did not verify"
    for r in requests:  # a redelivery is the same body, and the body names its own key
        assert r.body == expected[r.key]
        assert json.loads(r.body)["key"] == r.key
        assert r.headers["content-type"] == "application/json"
        assert r.headers["x-camfleet-event"] == json.loads(r.body)["type"]
        assert r.headers["x-camfleet-hook"] == "h"
    assert sum(r.status == 500 for r in requests) == 3
    slow = [r for r in requests if r.status == 200 and r.key in {s.key for s in requests[3:5]}]
    assert len(slow) >= 2, "a message answered after the timeout is sent again, with the same key"
    assert [r.status for r in requests if r.key == poison] == [400]  # refused once, not retried
    first = {}
    for r in requests:
        first.setdefault(r.key, r.at)
    for i in range(5):  # in journal order, outages or not
        keys = {json.loads(expected[k])["type"]: k for k in good if k.startswith(f"e{i}:")}
        assert first[keys["start"]] <= first[keys["update"]] <= first[keys["end"]]
    assert first[poison] < max(first.values()), "messages after the refused one were delivered"
    stats = sink.stats()
    assert stats["delivered"] == 18 and stats["refused"] == 1
    assert stats["failed"] >= 5 and stats["last_status"] == 200 and stats["last_success_at"] > 0
    assert pump.counts["skipped"] == 1
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any("HTTP 400" in m and poison in m for m in refused), refused


def test_hostile_answers_are_bounded_and_redirects_not_followed(receiver: Receiver) -> None:
    """A 10 MB answer is read no further than 64 KiB, a refusal's text is cut short in the
    reason, a redirect (to the metadata service) is a refusal and is not followed, and a
    connection dropped without an answer is an outage."""
    sink = WebhookSink(_hook(receiver.url), node=NODE)
    try:
        receiver.reply_body = b"A" * 10_000_000
        receiver.answer = lambda r: (200, 0.0)
        sink.write([_event(0)])
        receiver.answer = lambda r: (400, 0.0)
        with pytest.raises(WebhookRefused) as refused:
            sink.write([_event(1)])
        assert "HTTP 400: AAA" in str(refused.value) and len(str(refused.value)) < 400
        receiver.reply_body = b""
        receiver.reply_headers = {"Location": "http://169.254.169.254/latest/meta-data/"}
        receiver.answer = lambda r: (302, 0.0)
        with pytest.raises(WebhookRefused, match="HTTP 302"):
            sink.write([_event(2)])
        receiver.answer = lambda r: (0, 0.0)
        with pytest.raises(ConnectionError):
            sink.write([_event(3)])
    finally:
        sink.close()
    assert [r.status for r in receiver.requests] == [200, 400, 302, 0]  # nothing followed the redirect
    stats = sink.stats()
    assert (stats["delivered"], stats["refused"], stats["failed"]) == (1, 2, 1)
    assert receiver.requests[0].headers["accept-encoding"] == "identity"


def test_kill_9_mid_delivery_redelivers_with_the_same_key_and_body(
        tmp_path: Path, receiver: Receiver) -> None:
    """The sender dies after the receiver got a message and before it confirmed it: the next
    sender sends that message again, byte for byte, with the same idempotency key."""
    held = threading.Event()

    def answer(r: Received) -> tuple[int, float]:
        if r.data.get("event", {}).get("id") == "e1" and not held.is_set():
            held.set()
            return 200, 30.0  # processed, then the answer is held until the sender is killed
        return 200, 0.0

    receiver.answer = answer
    path = journal_path(tmp_path)
    hook = _hook(receiver.url)
    with Journal(path) as journal:
        journal.register_sinks({"webhook:h": True})  # a run that had the hook: the history is for it
        journal.append([_event(0), _event(1), _event(2)])
    proc = mp.get_context("spawn").Process(target=run_pump, args=(str(path), hook, NODE), daemon=True)
    proc.start()
    try:
        receiver.wait(lambda reqs: held.is_set() and len(reqs) >= 2, 30)
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    finally:
        if proc.is_alive():
            proc.kill()
    before = list(receiver.requests)
    e1 = next(r for r in before if r.data["event"]["id"] == "e1")
    sink = WebhookSink(hook, node=NODE)
    pump = Pump(path, [sink], settings=PumpSettings(poll_s=0.02))
    pump.start()
    try:
        assert pump.flush(10)
    finally:
        pump.stop(3.0)
        sink.close()
    again = [r for r in receiver.requests[len(before):] if r.key == e1.key]
    assert again and again[0].body == e1.body and again[0].verified
    assert set(receiver.processed()) == set(_expected(path, hook))


def test_ssrf_guard_refuses_at_delivery_time_and_keeps_the_messages(
        tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    """A name that resolves to the metadata address is refused when sending (counted, retried,
    nothing skipped); once it resolves to the receiver, the request goes to the checked address
    with the original Host header."""
    answers = {"hooks.test": ["169.254.169.254"]}
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return list(answers[host])

    hook = _hook(f"http://hooks.test:{receiver.port}/in?token=abc")
    sink = WebhookSink(hook, node=NODE, resolve=resolve)
    path = journal_path(tmp_path)
    pump = Pump(path, [sink], settings=PumpSettings(poll_s=0.02))
    pump.start()
    try:
        with Journal(path) as journal:
            journal.append([_event(0), _event(0, "end")])
        end = time.monotonic() + 10
        while sink.stats()["blocked"] < 3:  # a counter, not an event: bounded polling
            assert time.monotonic() < end, sink.stats()
            time.sleep(0.02)
        row = pump.sink_stats()["webhook:h"]
        assert row["lag"] == 2 and row["attempts"] >= 3 and "169.254.169.254" in row["error"]
        assert receiver.requests == []
        answers["hooks.test"] = ["127.0.0.1"]  # the DNS is put right
        receiver.wait(lambda reqs: len(reqs) == 2, 10)
        assert pump.flush(5)
    finally:
        pump.stop(3.0)
        sink.close()
    assert pump.counts["skipped"] == 0
    first = receiver.requests[0]
    assert first.headers["host"] == f"hooks.test:{receiver.port}" and first.path == "/in?token=abc"
    assert set(asked) == {"hooks.test"} and len(asked) >= 5  # resolved for every attempt
    assert "webhook h: not sent: hooks.test resolves to 169.254.169.254" in caplog.text
    assert "token=abc" not in caplog.text and SECRET not in caplog.text


def test_https_is_pinned_to_the_checked_address_with_the_name_as_sni(tmp_path: Path) -> None:
    """The connection goes to the resolved IP, yet TLS checks the certificate against the name."""
    files = make_ca_and_server(tmp_path, dns_names=("hooks.test",))
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(files.cert, files.key)
    client_tls = ssl.create_default_context(cafile=str(files.ca))
    r = Receiver(SECRET, tls=server_tls)
    path = journal_path(tmp_path / "data")
    path.parent.mkdir()
    names = {"hooks.test": ["127.0.0.1"], "wrong.test": ["127.0.0.1"]}
    good = WebhookSink(_hook(f"https://hooks.test:{r.port}/tls", name="good"), node=NODE,
                       resolve=lambda h, p: names[h], verify=client_tls)
    wrong = WebhookSink(_hook(f"https://wrong.test:{r.port}/tls", name="wrong"), node=NODE,
                        resolve=lambda h, p: names[h], verify=client_tls)
    try:
        good.write([_event(0)])
        assert r.requests[0].headers["host"] == f"hooks.test:{r.port}" and r.requests[0].verified
        with pytest.raises(ConnectionError):  # the certificate is not for wrong.test: an outage, retried
            wrong.write([_event(0)])
        assert len(r.requests) == 1 and wrong.stats()["failed"] == 1
    finally:
        good.close()
        wrong.close()
        r.close()


def test_a_node_delivers_its_cameras_events_through_the_filters(
        tmp_path: Path, shm_dir: Path, receiver: Receiver) -> None:
    """A real node, two synthetic cameras with people, a hook for camera ``a`` and ``person``:
    the receiver gets the start and (when the node stops) the end of ``a``'s events, nothing of
    ``b``, exactly the journal's messages that match, with the per-hook stats in the status."""
    cameras = camera_yaml("a", 0) + camera_yaml("b", 1)
    text = config_text(tmp_path, cameras) + (
        "webhooks:\n"
        f"  - {{name: door, url: '{receiver.url}', secret: {SECRET}, cameras: [a], labels: [person],\n"
        "     retry_initial_s: 0.1}\n")
    config = load_config_text(text)
    node = Node(config)
    integrations = Integrations.for_config(config)
    assert [s.name for i in integrations.items for s in i.sinks()] == ["webhook:door"]
    integrations.attach(node)
    node.start()
    integrations.start(node)
    states = States(node)
    b_started = threading.Event()
    unsubscribe = node.add_listener(
        lambda m: b_started.set() if m.get("type") == "event" and m["event"]["camera"] == "b" else None)
    try:
        states.wait("a", "healthy", 60)
        got = receiver.wait(lambda reqs: any(r.data["type"] == "start" for r in reqs), 60)
        started = next(r for r in got if r.data["type"] == "start")
        assert started.verified and started.data["event"]["camera"] == "a"
        assert started.data["node"] == socket.gethostname()
        end = time.monotonic() + 10
        while not node.status().sinks.get("webhook:door", {}).get("delivered"):  # a later status pass
            assert time.monotonic() < end, node.status().sinks
            time.sleep(0.1)
        row = node.status().sinks["webhook:door"]
        assert row["last_status"] == 200 and row["lag"] >= 0 and row["attempts"] == 0
        assert b_started.wait(60), "camera b had no event (the filter would have nothing to pass over)"
    finally:
        unsubscribe()
        states.close()
        node.stop()  # the pipelines end their open events; the pump delivers them before it stops
        integrations.stop()
    hook = config.webhooks[0]
    expected = _expected(journal_path(config.data_path), hook, socket.gethostname())
    processed = receiver.processed()
    assert set(processed) == set(expected)
    assert all(r.verified for r in receiver.requests)
    types = {(r.data["event"]["id"], r.data["type"]) for r in processed.values()}
    assert (started.data["event"]["id"], "end") in types, "the event's end reached the hook"
    assert {r.data["event"]["camera"] for r in processed.values()} == {"a"}
    assert {r.data["event"]["label"] for r in processed.values()} == {"person"}
