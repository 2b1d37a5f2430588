"""Webhooks, pure logic: signatures, the SSRF address policy, the configuration, filters and keys."""

from __future__ import annotations

import ipaddress
import json
import math

import httpx
import pytest

from camfleet.cli.status import format_status
from camfleet.config import ConfigError, load_config_text
from camfleet.config.sources import with_cameras
from camfleet.config.webhooks import WebhookConfig
from camfleet.integrations.webhooks.payload import delivery, matches
from camfleet.integrations.webhooks.signing import sign, verify
from camfleet.integrations.webhooks.sink import backoff_steps
from camfleet.integrations.webhooks.ssrf import AddressRefused, Target
from camfleet.netpolicy import AddressKind, classify, literal_address, refusal
from camfleet.runtime.reconcile import plan
from camfleet.vocabulary import Event, EventMessage

pytestmark = pytest.mark.unit

SECRET = "whsec_0123456789abcdef"


# --------------------------------------------------------------------------- signing


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    # the vector was checked with: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_...
    assert sign(SECRET, 1_700_000_000, b'{"a":1}') == (
        "v1=9f5e37cdc7ea587c7c02062d93283cad000d66a831b2a1676418696db47ed6c2")


def test_verify_accepts_the_signature_and_refuses_tampering_other_secrets_and_replays() -> None:
    body, ts = b'{"type":"start"}', 1_700_000_000
    sig = sign(SECRET, ts, body)
    assert verify(SECRET, str(ts), sig, body, now=ts + 10)
    assert verify(SECRET, str(ts), f"v0=deadbeef, {sig}", body, now=ts)  # several entries: one matches
    assert not verify(SECRET, str(ts), sig, body + b" ", now=ts)  # body changed
    assert not verify(SECRET + "x", str(ts), sig, body, now=ts)  # another secret
    assert not verify(SECRET, str(ts + 1), sig, body, now=ts)  # timestamp changed
    assert not verify(SECRET, str(ts), sig, body, now=ts + 301)  # replayed after the window
    assert not verify(SECRET, str(ts), sig, body, now=ts - 301)  # from the future
    assert verify(SECRET, str(ts), sig, body, now=ts + 3000, tolerance_s=3600)
    arabic_indic = "\u0661\u0667\u0660\u0660"  # digits to str.isdigit, not to a timestamp
    for bad_ts in ("", "abc", "-1", "1e9", " 1700000000", arabic_indic):
        assert not verify(SECRET, bad_ts, sig, body, now=ts)
    assert not verify(SECRET, str(ts), sig.replace("v1=", "v2="), body, now=ts)
    assert not verify(SECRET, str(ts), "", body, now=ts)


# --------------------------------------------------------------------------- address policy


@pytest.mark.parametrize(("address", "kind"), [
    ("169.254.169.254", AddressKind.METADATA),
    ("169.254.170.2", AddressKind.METADATA),
    ("fd00:ec2::254", AddressKind.METADATA),
    ("100.100.100.200", AddressKind.METADATA),
    ("::ffff:169.254.169.254", AddressKind.METADATA),  # IPv4-mapped
    ("64:ff9b::a9fe:a9fe", AddressKind.METADATA),  # NAT64
    ("2002:a9fe:a9fe::1", AddressKind.METADATA),  # 6to4
    ("169.254.1.1", AddressKind.LINK_LOCAL),
    ("fe80::1", AddressKind.LINK_LOCAL),
    ("fe80::1%2", AddressKind.LINK_LOCAL),
    ("10.1.2.3", AddressKind.PRIVATE),
    ("172.16.0.9", AddressKind.PRIVATE),
    ("192.168.1.20", AddressKind.PRIVATE),
    ("100.64.0.1", AddressKind.PRIVATE),
    ("fd12:3456::1", AddressKind.PRIVATE),
    ("127.0.0.1", AddressKind.LOOPBACK),
    ("::1", AddressKind.LOOPBACK),
    ("::ffff:127.0.0.1", AddressKind.LOOPBACK),
    ("0.0.0.0", AddressKind.UNSPECIFIED),
    ("::", AddressKind.UNSPECIFIED),
    ("224.0.0.251", AddressKind.MULTICAST),
    ("ff02::1", AddressKind.MULTICAST),
    ("240.0.0.1", AddressKind.RESERVED),
    ("8.8.8.8", AddressKind.PUBLIC),
    ("2606:4700:4700::1111", AddressKind.PUBLIC),
])
def test_addresses_are_classified(address: str, kind: AddressKind) -> None:
    assert classify(ipaddress.ip_address(address)) is kind


def test_policy_refuses_link_local_and_metadata_by_default_and_private_only_when_asked() -> None:
    default = {"allow_private": True, "allow_link_local": False}
    assert refusal(AddressKind.PUBLIC, **default) is None
    assert refusal(AddressKind.PRIVATE, **default) is None
    assert refusal(AddressKind.LOOPBACK, **default) is None
    assert "allow_link_local" in (refusal(AddressKind.METADATA, **default) or "")
    assert "allow_link_local" in (refusal(AddressKind.LINK_LOCAL, **default) or "")
    assert refusal(AddressKind.METADATA, allow_private=True, allow_link_local=True) is None
    strict = {"allow_private": False, "allow_link_local": False}
    assert refusal(AddressKind.PRIVATE, **strict) and refusal(AddressKind.LOOPBACK, **strict)
    lax = {"allow_private": True, "allow_link_local": True}
    for never in (AddressKind.UNSPECIFIED, AddressKind.MULTICAST, AddressKind.RESERVED):
        assert refusal(never, **lax) is not None


def test_literal_addresses_include_the_forms_the_resolver_takes_without_dns() -> None:
    meta = ipaddress.ip_address("169.254.169.254")
    assert literal_address("2852039166") == meta
    assert literal_address("0xa9.0xfe.0xa9.0xfe") == meta
    assert literal_address("169.254.43518") == meta
    assert literal_address("[::1]") == ipaddress.ip_address("::1")
    assert literal_address("hooks.example.org") is None


def _target(url: str, answers: dict[str, list[str]], **allow: bool) -> Target:
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise ConnectionError(f"cannot resolve {host}")
        return answers[host]
    return Target(url, allow_private=allow.get("allow_private", True),
                  allow_link_local=allow.get("allow_link_local", False), resolve=resolve)


def test_target_checks_every_resolved_address_and_pins_the_checked_one() -> None:
    t = _target("https://user:p%40ss@Hooks.Example.org:8443/in?x=1", {"hooks.example.org": ["192.0.2.10"]})
    assert t.addresses() == ["192.0.2.10"]
    pinned = t.pinned_url("192.0.2.10")
    assert str(pinned) == "https://192.0.2.10:8443/in?x=1"  # credentials leave the URL ...
    assert t.host_header == "hooks.example.org:8443"
    assert isinstance(t.auth, httpx.BasicAuth)  # ... for basic auth
    assert t.extensions() == {"sni_hostname": "hooks.example.org"}
    assert str(_target("http://h/", {}).pinned_url("2001:db8::5")) == "http://[2001:db8::5]/"
    assert _target("http://h/", {}).host_header == "h"
    assert _target("https://10.0.0.5/x", {}).extensions() == {}

    # one bad address refuses the name: it may be the one the connection would have used
    rebinding = _target("http://evil.example/", {"evil.example": ["192.0.2.1", "169.254.169.254"]})
    with pytest.raises(AddressRefused, match=r"169\.254\.169\.254"):
        rebinding.addresses()
    assert isinstance(AddressRefused("x"), ConnectionError)  # retried by the pump, never skipped
    with pytest.raises(AddressRefused, match="metadata"):
        _target("http://metadata.google.internal./x", {}).addresses()  # refused without asking DNS
    allowed = _target("http://metadata.google.internal/x", {"metadata.google.internal": ["169.254.169.254"]},
                      allow_link_local=True)
    assert allowed.addresses() == ["169.254.169.254"]
    with pytest.raises(AddressRefused, match="private"):
        _target("http://nas.lan/", {"nas.lan": ["192.168.1.5"]}, allow_private=False).addresses()
    with pytest.raises(ConnectionError, match="cannot resolve"):
        _target("http://gone.example/", {}).addresses()
    with pytest.raises(AddressRefused):
        _target("http://2852039166/", {}).addresses()  # a literal is judged without resolving


# --------------------------------------------------------------------------- configuration


def _config(hooks: str) -> str:
    return f"cameras: {{}}\nwebhooks:\n{hooks}"


def _error(hooks: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config_text(_config(hooks))
    return str(info.value)


def test_config_accepts_a_hook_and_never_shows_its_secrets() -> None:
    cfg = load_config_text(_config(
        "  - name: ha\n"
        "    url: https://me:hunter2@ha.lan:8123/api/webhook/abc?token=t0ken\n"
        f"    secret: {SECRET}\n"
        "    headers: {Authorization: Bearer s3cret}\n"
        "    cameras: [door]\n    labels: [person]\n    zones: [porch]\n    events: [start, update]\n"))
    hook = cfg.webhooks[0]
    assert (hook.events, hook.cameras, hook.allow_private, hook.allow_link_local) == (
        ["start", "update"], ["door"], True, False)
    shown = json.dumps(cfg.model_dump_public()) + repr(cfg) + repr(hook)
    for secret in ("hunter2", "t0ken", SECRET, "s3cret"):
        assert secret not in shown
    assert cfg.model_dump_public()["webhooks"][0]["url"] == "https://***:***@ha.lan:8123/api/webhook/abc?token=***"
    # the API's camera changes rebuild the configuration from its dump: the hook survives whole
    again = with_cameras(cfg, {})
    assert again.webhooks[0] == hook and again.webhooks[0].secret == SECRET
    assert load_config_text("cameras: {}\n").webhooks == []


def test_config_defaults_and_env_secret() -> None:
    cfg = load_config_text(_config("  - {name: n8n, url: 'http://10.0.0.9/h', secret: '${HOOK_SECRET}'}\n"),
                           env={"HOOK_SECRET": SECRET})
    hook = cfg.webhooks[0]
    assert hook.secret == SECRET and hook.events == ["start", "end"]
    assert (hook.timeout_s, hook.retry_initial_s, hook.retry_max_s) == (10.0, 1.0, 300.0)


@pytest.mark.parametrize(("hook", "message"), [
    ("{name: aws, url: 'http://169.254.169.254/latest/meta-data', secret: S}",
     "webhook 'aws': url points at 169.254.169.254: a cloud metadata address is refused"),
    ("{name: dec, url: 'http://2852039166/', secret: S}", "webhook 'dec': url points at 169.254.169.254"),
    ("{name: gcp, url: 'http://metadata.google.internal/computeMetadata/v1/', secret: S}",
     "webhook 'gcp': url names the cloud metadata service"),
    ("{name: ll, url: 'http://[fe80::1]:8080/', secret: S}",
     "webhook 'll': url points at fe80::1: a link-local"),
    ("{name: lan, url: 'http://192.168.1.4/', secret: S, allow_private: false}",
     "webhook 'lan': url points at 192.168.1.4: a private address is refused"),
    ("{name: zero, url: 'http://0.0.0.0:80/', secret: S}", "webhook 'zero': url points at 0.0.0.0"),
    ("{name: ftp, url: 'ftp://files/x', secret: S}", "webhook 'ftp': url must start with http://"),
    ("{name: nohost, url: 'http:///x', secret: S}", "webhook 'nohost': url has no host"),
    ("{name: port, url: 'http://h:99999/', secret: S}", "webhook 'port': url is not a valid URL"),
    ("{name: hdr, url: 'http://h/', secret: S, headers: {X-Camfleet-Signature: x}}",
     "webhook 'hdr': header 'X-Camfleet-Signature' is set by camfleet itself"),
    ("{name: crlf, url: 'http://h/', secret: S, headers: {X-A: \"a\\r\\nX-B: b\"}}", "line break"),
    ("{name: twice, url: 'http://h/', secret: S, events: [start, start]}", "events lists a type twice"),
    ("{name: bad, url: 'http://h/', secret: S, events: [new]}", "Input should be 'start', 'update' or 'end'"),
    ("{name: short, url: 'http://h/', secret: abc}", "secret: String should have at least 16 characters"),
    ("{name: 'a b', url: 'http://h/', secret: S}", "invalid webhook name"),
    ("{name: nosecret, url: 'http://h/'}", "webhooks[0].secret: missing required key 'secret'"),
])
def test_config_errors_name_the_hook_and_never_quote_the_url(hook: str, message: str) -> None:
    text = _error("  - " + hook.replace("secret: S", f"secret: {SECRET}") + "\n")
    assert message in text
    assert SECRET not in text


def test_config_refuses_two_hooks_with_one_name() -> None:
    text = _error(f"  - {{name: ha, url: 'http://a/', secret: {SECRET}}}\n"
                  f"  - {{name: ha, url: 'http://b/', secret: {SECRET}}}\n")
    assert "two webhooks are called 'ha'" in text


def test_config_allows_link_local_when_asked() -> None:
    cfg = load_config_text(_config(f"  - {{name: ll, url: 'http://169.254.10.10/', secret: {SECRET}, "
                                   "allow_link_local: true}\n"))
    assert cfg.webhooks[0].allow_link_local


# --------------------------------------------------------------------------- filters, body, keys


def _hook(**kw: object) -> WebhookConfig:
    return WebhookConfig.model_validate({"name": "h", "url": "http://h/", "secret": SECRET, **kw})


def _msg(kind: str = "start", camera: str = "door", label: str = "person", zones: tuple[str, ...] = (),
         score: float = 0.8, end: float | None = None) -> EventMessage:
    ev = Event(id="ev1", camera=camera, label=label, start=1_700_000_000.0, end=end, top_score=score,
               zones=list(zones), snapshot="/private/path.jpg", data={"track_id": 3})
    return EventMessage(kind, ev)  # type: ignore[arg-type]


def test_filters_by_type_camera_label_and_entered_zone() -> None:
    assert matches(_hook(), _msg("start")) and matches(_hook(), _msg("end", end=1_700_000_005.0))
    assert not matches(_hook(), _msg("update"))
    assert matches(_hook(events=["update"]), _msg("update"))
    assert not matches(_hook(cameras=["yard"]), _msg(camera="door"))
    assert matches(_hook(cameras=["yard", "door"]), _msg(camera="door"))
    assert not matches(_hook(labels=["car"]), _msg(label="person"))
    assert not matches(_hook(zones=["porch"]), _msg(zones=()))
    assert matches(_hook(zones=["porch", "drive"]), _msg(zones=("lawn", "drive")))


def test_body_is_the_rest_event_and_the_key_is_stable_per_message_state() -> None:
    d = delivery("h", "node1", _msg())
    body = json.loads(d.body)
    assert body == {"key": d.key, "type": "start", "hook": "h", "node": "node1",
                    "event": _msg().event.public()}
    assert "snapshot" not in body["event"] and body["event"]["has_snapshot"] is True  # the path stays private
    assert d.key.startswith("ev1:start:") and d.type == "start"
    again = delivery("h", "node1", _msg())
    assert (again.key, again.body) == (d.key, d.body)  # a redelivery is byte for byte the same
    assert delivery("h", "node1", _msg("update")).key != d.key
    assert delivery("h", "node1", _msg("update", score=0.9)).key != delivery("h", "node1", _msg("update")).key
    with pytest.raises(ValueError):
        delivery("h", "node1", _msg(score=math.nan))


def test_backoff_doubles_up_to_its_ceiling() -> None:
    assert backoff_steps(1.0, 300.0) == (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0)
    assert backoff_steps(5.0, 5.0) == (5.0,)


# --------------------------------------------------------------------------- camfleet status


def test_status_shows_each_sink_with_its_delivery_counters() -> None:
    snapshot = {"node": "local", "pid": 1, "started_at": 0.0, "cameras": {}, "detectors": {}, "reload": {},
                "sinks": {"store": {"lag": 0, "down_s": 0.0, "attempts": 0, "error": ""},
                          "webhook:ha": {"lag": 12, "down_s": 30.5, "attempts": 4, "error": "HTTP 503",
                                         "delivered": 7, "failed": 4, "refused": 1, "blocked": 0,
                                         "last_status": 503, "last_latency_ms": 12.5}}}
    text = format_status(snapshot)
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith(("store", "webhook:"))}
    assert "up" in lines["store"].split()
    row = lines["webhook:ha"].split()
    assert row[:6] == ["webhook:ha", "12", "DOWN", "7", "4", "1"]
    assert "HTTP 503" in lines["webhook:ha"]


def test_a_reload_that_changes_the_hooks_says_they_apply_at_the_next_start() -> None:
    old = load_config_text(_config(f"  - {{name: ha, url: 'http://a/', secret: {SECRET}}}\n"))
    same = load_config_text(_config(f"  - {{name: ha, url: 'http://a/', secret: {SECRET}}}\n"))
    new = load_config_text(_config(f"  - {{name: ha, url: 'http://b/', secret: {SECRET}}}\n"))
    assert "webhooks" not in plan(old, same).needs_node_restart
    assert "webhooks" in plan(old, new).needs_node_restart
