"""The fleet's control API: core NATS request/reply on ``camfleet.ctl.<verb>``, answered by the leader only.

Requests and replies are JSON objects; a reply is ``{"ok": true, ...}`` or
``{"ok": false, "error": "...", "issues": [...]}``. Camera source URLs are
always masked in replies. Verbs:

=============  ==========================================  ===================================
verb           request                                     reply
=============  ==========================================  ===================================
``leader``     ``{}``                                      the leader's id, host, pid, term
``stage``      ``{"cameras": {name: settings|null}}``      ``staged`` (null: a removal)
``staged``     ``{}``                                      ``staged``
``discard``    ``{}``                                      ``discarded`` (count)
``apply``      ``{}`` (the staged edits) or                ``generation``, ``added``,
               ``{"cameras": {...}}`` (the whole fleet)    ``removed``, ``changed``, ``placed``,
                                                           ``unplaced``, ``warnings``
``cameras``    ``{}``                                      ``cameras`` (masked settings, node)
``nodes``      ``{}``                                      ``nodes``
``assignments````{}``                                      ``assignments``, ``unplaced``
``status``     ``{}``                                      nodes, cameras with their state,
                                                           ``node_figures`` (each node's CPU,
                                                           frames/s, detector load)
``history``    ``{"limit": N, "camera": name}``            ``history`` (newest first)
``drain``      ``{"node": id}``                            the node's flags
``cordon``     ``{"node": id}``                            the node's flags
``uncordon``   ``{"node": id}``                            the node's flags
=============  ==========================================  ===================================

Settings are the camera's mapping as in a node YAML plus ``placement`` hints
(:mod:`.fleetconfig`). The client side is :func:`request`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from camfleet.api.cameras import check_depth, mask_camera, unmask_sources
from camfleet.config import Config, ConfigError
from camfleet.fleetstore.store import FleetCamera
from camfleet.redact import mask_text
from camfleet.store.errors import StoreError

from .connection import NatsOptions, connect
from .fleetconfig import FleetConfigError, validate_fleet
from .leader import FleetLeader, node_figures
from .registry import CTL_PREFIX

__all__ = ["VERBS", "ControlAPI", "ControlError", "ask", "request"]

log = logging.getLogger("camfleet.cluster.control")

VERBS = (
    "leader",
    "stage",
    "staged",
    "discard",
    "apply",
    "cameras",
    "nodes",
    "assignments",
    "status",
    "history",
    "drain",
    "cordon",
    "uncordon",
)
APPLY_WAIT_S = 5.0
"""How long an apply, drain, cordon or uncordon waits for the scheduling pass it caused (seconds)."""


class ControlError(RuntimeError):
    """A control request failed: no leader, a timeout, or the leader's error (the message says which).

    ``reply``: the leader's whole answer when it gave one (e.g. ``issues`` of a refused apply).
    """

    def __init__(self, message: str, reply: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reply = reply or {}


class _BadRequest(ValueError):
    pass


def _raw(cam: FleetCamera) -> dict[str, Any]:
    return cam.settings | {"placement": cam.placement}


def _unmasked(edits: dict[str, Any], *known: dict[str, Any]) -> dict[str, Any]:
    """``edits`` with masked source URLs (as a reply showed them) replaced by the stored ones.

    A masked URL that matches none of the camera's known sources is an error (give the credentials again).
    """
    out: dict[str, Any] = {}
    for name, raw in edits.items():
        if isinstance(raw, dict) and isinstance(raw.get("sources"), list):
            stored = [k.get(name) for k in known if isinstance(k.get(name), dict)]
            out[name] = unmask_sources(raw, stored, where=f"cameras.{name}.")
        else:
            out[name] = raw
    return out


class ControlAPI:
    """Answers control requests with the leader's state (``info``: the leader's own description)."""

    def __init__(
        self, leader: FleetLeader, info: Callable[[], dict[str, Any]], base: Config | None = None
    ) -> None:
        self.leader = leader
        self.info = info
        self.base = base
        self._lock = asyncio.Lock()  # one change at a time: stage/apply/flags read-modify-write the store
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "leader": self._leader,
            "stage": self._stage,
            "staged": self._staged,
            "discard": self._discard,
            "apply": self._apply,
            "cameras": self._cameras,
            "nodes": self._nodes,
            "assignments": self._assignments,
            "status": self._status,
            "history": self._history,
            "drain": self._drain,
            "cordon": self._cordon,
            "uncordon": self._uncordon,
        }

    async def on_message(self, msg: Msg) -> None:
        """The subscription's callback: answer ``msg`` (a request on ``camfleet.ctl.<verb>``)."""
        verb = msg.subject[len(CTL_PREFIX) + 1 :]
        reply = await self.handle(verb, msg.data)
        if msg.reply:
            try:
                await msg.respond(json.dumps(reply, separators=(",", ":"), default=str).encode())
            except nats.errors.Error as exc:
                log.warning("control: reply to %s not sent: %r", verb, exc)

    async def handle(self, verb: str, data: bytes) -> dict[str, Any]:
        """The reply to one request (never raises)."""
        handler = self._handlers.get(verb)
        if handler is None:
            return {"ok": False, "error": f"unknown verb {verb[:40]!r}; verbs: {', '.join(VERBS)}"}
        try:
            payload = json.loads(data) if data.strip() else {}
            if not isinstance(payload, dict):
                raise _BadRequest("the request must be a JSON object")
            check_depth(payload, "request", 24)
            if not self.leader.leading():
                return {"ok": False, "error": "this coordinator no longer leads; ask again"}
            return await handler(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            if isinstance(exc, FleetConfigError):
                return {"ok": False, "error": str(exc), "issues": exc.issues}
            if isinstance(exc, ConfigError):
                return {"ok": False, "error": mask_text(str(exc)), "issues": [str(i) for i in exc.issues]}
            return {"ok": False, "error": f"bad request: {mask_text(str(exc))[:500]}"}
        except StoreError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # an answer, never a silent timeout at the client
            log.exception("control: %s failed", verb)
            return {"ok": False, "error": f"{verb} failed: {type(exc).__name__}: {mask_text(str(exc))[:300]}"}

    # ------------------------------------------------------------------ cameras
    def _edits(self, payload: dict[str, Any]) -> dict[str, Any]:
        cameras = payload.get("cameras")
        if not isinstance(cameras, dict):
            raise _BadRequest("'cameras' must be a mapping of camera name to settings (or null to remove)")
        return cameras

    async def _validate(self, cameras: dict[str, Any]) -> dict[str, FleetCamera]:
        return await asyncio.to_thread(validate_fleet, cameras, self.base)

    async def _stage(self, payload: dict[str, Any]) -> dict[str, Any]:
        edits = self._edits(payload)
        async with self._lock:
            store = self.leader.store
            merged = {n: _raw(c) for n, c in (await asyncio.to_thread(store.cameras)).items()}
            staged: dict[str, Any] = {
                n: None if c is None else _raw(c) for n, c in (await asyncio.to_thread(store.staged)).items()
            }
            edits = _unmasked(edits, merged, staged)
            for name, raw in (staged | edits).items():
                if raw is None:
                    merged.pop(name, None)
                else:
                    merged[name] = raw
            checked = await self._validate(merged)
            await asyncio.to_thread(
                store.stage, {n: None if v is None else checked[n] for n, v in edits.items()}
            )
            return await self._staged({})

    async def _staged(self, _payload: dict[str, Any]) -> dict[str, Any]:
        staged = await asyncio.to_thread(self.leader.store.staged)
        return {
            "ok": True,
            "staged": {n: None if c is None else mask_camera(_raw(c)) for n, c in staged.items()},
        }

    async def _discard(self, _payload: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            return {"ok": True, "discarded": await asyncio.to_thread(self.leader.store.discard)}

    async def _apply(self, payload: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            store = self.leader.store
            before = await asyncio.to_thread(store.cameras)
            if "cameras" in payload:
                wanted = self._edits(payload)
                if any(v is None for v in wanted.values()):
                    raise _BadRequest("an apply of the whole fleet lists cameras, not removals (null)")
                staged = {
                    n: None if c is None else _raw(c)
                    for n, c in (await asyncio.to_thread(store.staged)).items()
                }
                wanted = _unmasked(wanted, {n: _raw(c) for n, c in before.items()}, staged)
            else:
                wanted = {n: _raw(c) for n, c in before.items()}
                for name, cam in (await asyncio.to_thread(store.staged)).items():
                    if cam is None:
                        wanted.pop(name, None)
                    else:
                        wanted[name] = _raw(cam)
            checked = await self._validate(wanted)  # a bad configuration changes nothing anywhere
            generation = await asyncio.to_thread(store.apply, checked)
            await self.leader.resume()
            await self.leader.reload()
        placed = await self.leader.wait_pass(APPLY_WAIT_S)
        result = self.leader.last_plan
        changed = sorted(
            n
            for n in checked
            if n in before
            and (before[n].settings != checked[n].settings or before[n].placement != checked[n].placement)
        )
        reply: dict[str, Any] = {
            "ok": True,
            "generation": generation,
            "added": sorted(set(checked) - set(before)),
            "removed": sorted(set(before) - set(checked)),
            "changed": changed,
            "scheduled": placed,
        }
        if result is not None:
            reply["placed"] = {c: a.node for c, a in result.assignments.items() if a.node is not None}
            reply["unplaced"] = {c: u.reason for c, u in result.unplaced.items()}
            reply["warnings"] = list(result.warnings)
        return reply

    async def _cameras(self, _payload: dict[str, Any]) -> dict[str, Any]:
        where = self._where()
        cams = self.leader.cameras
        return {
            "ok": True,
            "cameras": {
                n: {
                    "settings": mask_camera(c.settings),
                    "placement": c.placement,
                    **where.get(n, {"node": None}),
                }
                for n, c in sorted(cams.items())
            },
        }

    # ------------------------------------------------------------------ placement and nodes
    def _where(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for node, d in self.leader.desired.items():
            for cam, dc in d.cameras.items():
                out[cam] = {"node": node, "token": dc.token}
        for cam, t in self.leader.transit.items():
            out.setdefault(cam, {"node": t.target, "token": t.revision, "stopping_on": t.source})
        return out

    async def _assignments(self, _payload: dict[str, Any]) -> dict[str, Any]:
        result = self.leader.last_plan
        unplaced = {c: u.reason for c, u in result.unplaced.items()} if result is not None else {}
        return {"ok": True, "assignments": self._where(), "unplaced": unplaced}

    async def _nodes(self, _payload: dict[str, Any]) -> dict[str, Any]:
        members = self.leader.members()
        rows = await asyncio.to_thread(self.leader.store.nodes)
        result = self.leader.last_plan
        loads = result.loads if result is not None else {}
        now = time.monotonic()  # the membership's clock
        out = []
        for node_id in sorted(set(members) | set(rows)):
            m, row = members.get(node_id), rows.get(node_id, {})
            record = m.record if m is not None else None
            cordoned, draining = self.leader.flags.get(node_id, (False, False))
            d = self.leader.desired.get(node_id)
            report = self.leader.applied.get(node_id)
            load = loads.get(node_id)
            beat = m.last_beat if m is not None else None
            out.append(
                {
                    "node_id": node_id,
                    "state": m.state if m is not None else row.get("state", "unknown"),
                    "hostname": record.hostname if record else (row.get("record") or {}).get("hostname"),
                    "labels": record.labels if record else {},
                    "cordoned": cordoned,
                    "draining": draining,
                    "capacity": record.capacity if record else {},
                    "cameras": sorted(d.cameras) if d else [],
                    "utilisation": round(load.utilisation, 3) if load else None,
                    # what the node is given now (pixels/s decoded, inferences/s), against its capacity
                    "load": {"decode_pixels_per_s": load.decode_pps, "inferences_per_s": load.infer_ps}
                    if load else {},
                    "version": record.version if record else None,
                    # seconds since this leader saw the node's last heartbeat (None: never)
                    "heartbeat_age_s": round(now - beat, 1) if beat is not None else None,
                    "desired_revision": d.revision if d else 0,
                    "applied_revision": report.revision if report else 0,
                    "refused": report.refused if report else 0,
                    "errors": report.errors if report else [],
                    "fenced": report.fenced if report else False,
                }
            )
        return {"ok": True, "nodes": out}

    async def _status(self, _payload: dict[str, Any]) -> dict[str, Any]:
        nodes = (await self._nodes({}))["nodes"]
        where = self._where()
        result = self.leader.last_plan
        cams: dict[str, Any] = {}
        for name in sorted(self.leader.cameras):
            w = where.get(name, {"node": None})
            node = w.get("node")
            reported = (self.leader.statuses.get(node or "", {}).get("cameras") or {}).get(name, {})
            entry = dict(w) | {
                "state": reported.get("state"),
                "reason": reported.get("reason"),
                "decode_fps": reported.get("decode_fps"),
                "processed_fps": reported.get("processed_fps"),
                "detector_rps": reported.get("detector_rps"),
                "cpu_percent": reported.get("cpu_percent"),
            }
            if result is not None and name in result.unplaced:
                entry["unplaced"] = result.unplaced[name].reason
            cams[name] = entry
        return {
            "ok": True,
            "leader": self.info(),
            "revision": self.leader.revision,
            "nodes": nodes,
            "cameras": cams,
            # each node's totals from its latest status report (CPU, frames/s, detector load)
            "node_figures": {n: node_figures(summary) for n, summary in sorted(self.leader.statuses.items())},
            "warnings": list(result.warnings) if result else [],
            "error": self.leader.error,
            "at": time.time(),
        }

    async def _history(self, payload: dict[str, Any]) -> dict[str, Any]:
        limit = payload.get("limit", 100)
        camera = payload.get("camera")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10000:
            raise _BadRequest("'limit' must be an integer from 1 to 10000")
        if camera is not None and not isinstance(camera, str):
            raise _BadRequest("'camera' must be a camera name")
        rows = await asyncio.to_thread(self.leader.store.history, limit, camera)
        return {"ok": True, "history": rows}

    async def _leader(self, _payload: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, **self.info()}

    async def _flag(self, payload: dict[str, Any], verb: str) -> dict[str, Any]:
        node = payload.get("node")
        if not isinstance(node, str) or not node:
            raise _BadRequest("'node' must be a node id")
        async with self._lock:
            known = set(self.leader.members()) | set(await asyncio.to_thread(self.leader.store.nodes))
            if node not in known:
                raise _BadRequest(f"unknown node {node[:128]!r}; known: {', '.join(sorted(known)) or 'none'}")
            values = {
                "drain": {"draining": True},
                "cordon": {"cordoned": True},
                "uncordon": {"cordoned": False, "draining": False},
            }[verb]
            await asyncio.to_thread(self.leader.store.update_node, node, **values)
            await self.leader.reload()
        await self.leader.wait_pass(APPLY_WAIT_S)
        cordoned, draining = self.leader.flags.get(node, (False, False))
        d = self.leader.desired.get(node)
        return {
            "ok": True,
            "node": node,
            "cordoned": cordoned,
            "draining": draining,
            "cameras": sorted(d.cameras) if d else [],
        }

    async def _drain(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._flag(payload, "drain")

    async def _cordon(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._flag(payload, "cordon")

    async def _uncordon(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._flag(payload, "uncordon")


async def request(
    options: NatsOptions, verb: str, payload: dict[str, Any] | None = None, *, timeout_s: float = 10.0
) -> dict[str, Any]:
    """Ask the fleet's leader ``verb``; its reply when ``ok``, else :class:`ControlError` with its error.

    Raises ControlError for no leader (nobody answers), a timeout, or an answer that is not JSON;
    ConnectionError when no NATS server answers.
    """
    client = await connect(
        NatsOptions(options.urls, options.creds, options.ca_file, name="camfleet-cluster-cli"),
        timeout_s=min(timeout_s, 10.0),
    )
    try:
        return await ask(client, verb, payload, timeout_s=timeout_s)
    finally:
        try:
            await asyncio.wait_for(client.close(), 2.0)
        except Exception as exc:  # closing: nothing more to do
            log.debug("close: %r", exc)


async def ask(
    client: Client, verb: str, payload: dict[str, Any] | None = None, *, timeout_s: float = 10.0
) -> dict[str, Any]:
    """Ask the fleet's leader ``verb`` over the connected ``client``; its reply when ``ok``.

    Raises ControlError (no leader, a timeout, the leader's error: the message says which).
    """
    data = json.dumps(payload or {}, separators=(",", ":")).encode()
    try:
        msg = await client.request(f"{CTL_PREFIX}.{verb}", data, timeout=timeout_s)
    except nats.errors.NoRespondersError:
        raise ControlError(
            "no leader coordinator answers (none running, or an election under way: "
            "try again in a few seconds)"
        ) from None
    except (TimeoutError, nats.errors.TimeoutError):
        raise ControlError(f"the leader did not answer {verb} within {timeout_s:g} s") from None
    except nats.errors.MaxPayloadError:
        raise ControlError(
            f"{verb}: the request is larger than the NATS server accepts "
            f"({client.max_payload} bytes): apply fewer cameras at a time "
            "(stage them in parts)"
        ) from None
    except nats.errors.Error as exc:
        raise ControlError(f"{verb}: {type(exc).__name__}: {mask_text(str(exc))[:200]}") from None
    try:
        reply = json.loads(msg.data)
    except ValueError:
        raise ControlError(f"{verb}: the answer is not JSON") from None
    if not isinstance(reply, dict):
        raise ControlError(f"{verb}: the answer is not a JSON object")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error") or "failed"), reply)
    return reply
