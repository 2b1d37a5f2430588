"""The fleet's control API: core NATS request/reply on ``camfleet.ctl.<verb>``, answered by the leader only.

Requests and replies are JSON objects; a reply is ``{"ok": true, ...}`` or
``{"ok": false, "error": "...", "issues": [...]}``. Camera source URLs are
always masked in replies. Verbs:

=============  ==========================================  ===================================
verb           request                                     reply
=============  ==========================================  ===================================
``leader``     ``{}``                                      the leader's id, host, pid, term
``stage``      ``{"cameras": {name: settings|null}}``      ``staged``: this request's edits
                                                           (null: a removal), ``total`` staged
``staged``     ``{}`` + paging                             ``staged``, ``next``
``discard``    ``{}``                                      ``discarded`` (count)
``apply``      ``{}`` (the staged edits),                  ``generation``, ``counts``, ``added``,
               ``{"cameras": {...}}`` (the whole fleet),   ``removed``, ``changed``, ``placed``
               or ``{"staged_only": true}`` (the fleet     (where the added and changed went),
               becomes exactly the staged cameras: a       ``unplaced``, ``warnings``: lists
               whole fleet sent in ``stage`` pages)        capped at 200 (``truncated``)
``cameras``    ``{}`` + paging                             ``cameras`` (masked settings, node),
                                                           ``next``
``nodes``      ``{}`` + paging                             ``nodes``, ``next``
``assignments````{}`` + paging                             ``assignments``, ``unplaced``, ``next``
``status``     ``{}`` + paging (cameras)                   nodes, cameras with their state,
                                                           ``node_figures`` (each node's CPU,
                                                           frames/s, detector load)
``history``    ``{"limit": N, "camera": name}``            ``history`` (newest first)
``drain``      ``{"node": id}``                            the node's flags
``cordon``     ``{"node": id}``                            the node's flags
``uncordon``   ``{"node": id}``                            the node's flags
=============  ==========================================  ===================================

Paging: NATS refuses a message over its ``max_payload`` (1 MB by default), so
listings come in pages: the request may give ``limit`` (items, at most
10,000) and ``after`` (the last name of the previous page); a page also ends
before its reply would pass half the server's ``max_payload``. ``next`` is the
``after`` of the following page, null on the last. :func:`ask_all` reads every
page. Staging checks only the cameras it is given (:class:`.FleetValidator`);
apply checks the whole fleet, each camera checked once per leader.

Settings are the camera's mapping as in a node YAML plus ``placement`` hints
(:mod:`.fleetconfig`). The client side is :func:`request`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
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
from .fleetconfig import FleetConfigError, FleetValidator
from .leader import FleetLeader, node_figures
from .registry import CTL_PREFIX

__all__ = ["VERBS", "ControlAPI", "ControlError", "apply_fleet", "ask", "ask_all", "request", "request_all"]

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
PAGE_LIMIT = 10_000
"""The most items one page of a listing holds (``limit``; the default too)."""
PAGE_BYTES = 512 * 1024
"""A page ends before its reply passes this many bytes (half of NATS's default 1 MB ``max_payload``)."""
REPLY_CAP = 200
"""Names an apply's reply lists at most per list (``added``, ``placed``, ...); ``counts`` has the totals."""
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


def page_args(payload: dict[str, Any]) -> tuple[int, str | None]:
    """``limit`` and ``after`` of a listing request (defaults: the most, from the start); ValueError."""
    limit = payload.get("limit", PAGE_LIMIT)
    after = payload.get("after")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= PAGE_LIMIT:
        raise _BadRequest(f"'limit' must be an integer from 1 to {PAGE_LIMIT}")
    if after is not None and (not isinstance(after, str) or len(after) > 256):
        raise _BadRequest("'after' must be the 'next' of the previous page (a name)")
    return limit, after


def page(
    items: Iterable[tuple[str, Any]], limit: int, after: str | None, max_bytes: int
) -> tuple[list[tuple[str, Any]], str | None]:
    """The items after ``after`` (sorted by name), at most ``limit`` of them and about ``max_bytes`` of JSON.

    Returns the page and the ``next`` cursor (None: this is the last page). A page holds at
    least one item, whatever its size.
    """
    rest = sorted((kv for kv in items if after is None or kv[0] > after), key=lambda kv: kv[0])
    out: list[tuple[str, Any]] = []
    size = 0
    for name, value in rest:
        size += len(name) + len(json.dumps(value, separators=(",", ":"), default=str)) + 8
        if out and (len(out) >= limit or size > max_bytes):
            return out, out[-1][0]
        out.append((name, value))
    return out, None


class ControlAPI:
    """Answers control requests with the leader's state (``info``: the leader's own description).

    ``page_bytes``: the JSON a listing's page holds at most (half the server's ``max_payload``).
    """

    def __init__(
        self,
        leader: FleetLeader,
        info: Callable[[], dict[str, Any]],
        base: Config | None = None,
        page_bytes: int = PAGE_BYTES,
    ) -> None:
        self.leader = leader
        self.info = info
        self.base = base
        self.page_bytes = page_bytes
        self.validator = FleetValidator(base)
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
        return await asyncio.to_thread(self.validator.validate, cameras)

    async def _stage(self, payload: dict[str, Any]) -> dict[str, Any]:
        edits = self._edits(payload)
        async with self._lock:
            store = self.leader.store
            names = list(edits)
            stored = {n: _raw(c) for n, c in (await asyncio.to_thread(store.cameras, names)).items()}
            staged: dict[str, Any] = {
                n: None if c is None else _raw(c)
                for n, c in (await asyncio.to_thread(store.staged, names)).items()
            }
            edits = _unmasked(edits, stored, staged)
            # only what this request changes is checked: every camera's check depends on it and the base
            # alone, the rest was checked when it was staged or applied (and apply checks the whole again)
            checked = await self._validate({n: v for n, v in edits.items() if v is not None})
            await asyncio.to_thread(
                store.stage, {n: None if v is None else checked[n] for n, v in edits.items()}
            )
            total = await asyncio.to_thread(store.staged_count)
        shown = {n: None if v is None else mask_camera(_raw(checked[n])) for n, v in sorted(edits.items())}
        return {"ok": True, "staged": shown, "total": total}

    async def _staged(self, payload: dict[str, Any]) -> dict[str, Any]:
        limit, after = page_args(payload)
        staged = await asyncio.to_thread(self.leader.store.staged)
        items, nxt = page(
            ((n, None if c is None else mask_camera(_raw(c))) for n, c in staged.items()),
            limit,
            after,
            self.page_bytes,
        )
        return {"ok": True, "staged": dict(items), "next": nxt}

    async def _discard(self, _payload: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            return {"ok": True, "discarded": await asyncio.to_thread(self.leader.store.discard)}

    async def _apply(self, payload: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            store = self.leader.store
            before = await asyncio.to_thread(store.cameras)
            staged_only = payload.get("staged_only", False)
            if not isinstance(staged_only, bool):
                raise _BadRequest("'staged_only' must be true or false")
            if "cameras" in payload:
                if staged_only:
                    raise _BadRequest("'staged_only' applies the staged cameras: give no 'cameras' with it")
                wanted = self._edits(payload)
                if any(v is None for v in wanted.values()):
                    raise _BadRequest("an apply of the whole fleet lists cameras, not removals (null)")
                staged = {
                    n: None if c is None else _raw(c)
                    for n, c in (await asyncio.to_thread(store.staged)).items()
                }
                wanted = _unmasked(wanted, {n: _raw(c) for n, c in before.items()}, staged)
            else:
                # staged_only: the fleet is exactly the staged cameras (a whole fleet sent in pages)
                wanted = {} if staged_only else {n: _raw(c) for n, c in before.items()}
                for name, cam in (await asyncio.to_thread(store.staged)).items():
                    if cam is None:
                        wanted.pop(name, None)
                    else:
                        wanted[name] = _raw(cam)
            t0, n0 = time.monotonic(), self.validator.checked
            checked = await self._validate(wanted)  # a bad configuration changes nothing anywhere
            t1 = time.monotonic()
            generation = await asyncio.to_thread(store.apply, checked)
            self.validator.retain(checked)
            t2 = time.monotonic()
            await self.leader.resume()
            await self.leader.reload()
        placed = await self.leader.wait_pass(APPLY_WAIT_S)
        log.info(
            "apply (generation %d): %d camera(s), %d checked in %.2f s, stored in %.2f s, placed%s %.2f s on",
            generation,
            len(checked),
            self.validator.checked - n0,
            t1 - t0,
            t2 - t1,
            "" if placed else " (not yet)",
            time.monotonic() - t2,
        )
        result = self.leader.last_plan
        changed = sorted(
            n
            for n in checked
            if n in before
            and (before[n].settings != checked[n].settings or before[n].placement != checked[n].placement)
        )
        added = sorted(set(checked) - set(before))
        removed = sorted(set(before) - set(checked))
        counts = {"added": len(added), "removed": len(removed), "changed": len(changed)}
        # counts and at most REPLY_CAP names per list: a reply naming 20,000 cameras is over NATS's payload
        reply: dict[str, Any] = {
            "ok": True,
            "generation": generation,
            "counts": counts,
            "added": added[:REPLY_CAP],
            "removed": removed[:REPLY_CAP],
            "changed": changed[:REPLY_CAP],
            "scheduled": placed,
        }
        truncated = max(counts.values()) > REPLY_CAP
        if result is not None:
            where = {c: a.node for c, a in result.assignments.items() if a.node is not None}
            counts |= {"placed": len(where), "unplaced": len(result.unplaced)}
            news = [c for c in (*added, *changed) if c in where]
            reply["placed"] = {c: where[c] for c in news[:REPLY_CAP]}
            reply["unplaced"] = {c: result.unplaced[c].reason for c in sorted(result.unplaced)[:REPLY_CAP]}
            reply["warnings"] = list(result.warnings)[:REPLY_CAP]
            truncated = truncated or len(news) > REPLY_CAP or len(result.unplaced) > REPLY_CAP
            truncated = truncated or len(result.warnings) > REPLY_CAP
        reply["truncated"] = truncated
        return reply

    async def _cameras(self, payload: dict[str, Any]) -> dict[str, Any]:
        limit, after = page_args(payload)
        where = self._where()
        cams = self.leader.cameras
        items, nxt = page(
            (
                (
                    n,
                    {
                        "settings": mask_camera(c.settings),
                        "placement": c.placement,
                        **where.get(n, {"node": None}),
                    },
                )
                for n, c in cams.items()
            ),
            limit,
            after,
            self.page_bytes,
        )
        return {"ok": True, "cameras": dict(items), "next": nxt}

    # ------------------------------------------------------------------ placement and nodes
    def _where(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for node, d in self.leader.desired.items():
            for cam, dc in d.cameras.items():
                out[cam] = {"node": node, "token": dc.token}
        for cam, t in self.leader.transit.items():
            out.setdefault(cam, {"node": t.target, "token": t.revision, "stopping_on": t.source})
        return out

    async def _assignments(self, payload: dict[str, Any]) -> dict[str, Any]:
        limit, after = page_args(payload)
        result = self.leader.last_plan
        unplaced = result.unplaced if result is not None else {}
        # one listing of both, by camera name: an assignment, or why the camera is placed nowhere
        rows: dict[str, Any] = {c: {"unplaced": u.reason} for c, u in unplaced.items()} | self._where()
        items, nxt = page(rows.items(), limit, after, self.page_bytes)
        return {
            "ok": True,
            "assignments": {c: v for c, v in items if "unplaced" not in v},
            "unplaced": {c: v["unplaced"] for c, v in items if "unplaced" in v},
            "next": nxt,
        }

    async def _nodes(self, payload: dict[str, Any]) -> dict[str, Any]:
        limit, after = page_args(payload)
        items, nxt = page(((n["node_id"], n) for n in await self._node_rows()), limit, after, self.page_bytes)
        return {"ok": True, "nodes": [n for _, n in items], "next": nxt}

    async def _node_rows(self) -> list[dict[str, Any]]:
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
                    if load
                    else {},
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
        return out

    async def _status(self, payload: dict[str, Any]) -> dict[str, Any]:
        # cameras come in pages; the nodes, their figures and the warnings with the first page only
        limit, after = page_args(payload)
        first = after is None
        nodes = await self._node_rows() if first else []
        figures = ({n: node_figures(summary) for n, summary in sorted(self.leader.statuses.items())}
                   if first else {})
        where = self._where()
        result = self.leader.last_plan
        warnings = list(result.warnings) if result and first else []
        fixed = len(json.dumps([nodes, figures, warnings], separators=(",", ":"), default=str))
        names, nxt = page(((n, None) for n in self.leader.cameras), limit, after, 1 << 62)
        cams: dict[str, Any] = {}
        for name, _ in names:
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
        # the same cameras again, cut by size now that each entry is known
        items, cut = page(cams.items(), limit, None, max(self.page_bytes - fixed, self.page_bytes // 4))
        return {
            "ok": True,
            "leader": self.info(),
            "revision": self.leader.revision,
            "nodes": nodes,
            "cameras": dict(items),
            # each node's totals from its latest status report (CPU, frames/s, detector load)
            "node_figures": figures,
            "warnings": warnings,
            "error": self.leader.error,
            "at": time.time(),
            "next": cut if cut is not None else nxt,
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


async def ask_all(
    asker: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]],
    verb: str,
    field: str,
    payload: dict[str, Any] | None = None,
    *,
    max_pages: int = 10_000,
) -> dict[str, Any]:
    """A paged listing read whole: the first reply with ``field`` holding every page's items.

    ``asker(verb, payload)`` asks one page (:func:`ask` on a client, or the fleet API's
    ``control``); ``field`` is the listing (``nodes``, ``cameras``...): lists are joined,
    mappings merged (``unplaced`` of ``assignments`` too). Raises what ``asker`` raises, and
    ControlError when the pages do not end within ``max_pages``.
    """
    base = dict(payload or {})
    reply = await asker(verb, base)
    out = dict(reply)
    nxt = reply.get("next")
    for _ in range(max_pages):
        if not nxt:
            out["next"] = None
            return out
        more = await asker(verb, base | {"after": nxt})
        for key in (field, "unplaced"):
            got, have = more.get(key), out.get(key)
            if isinstance(got, list) and isinstance(have, list):
                out[key] = have + got
            elif isinstance(got, dict) and isinstance(have, dict):
                out[key] = have | got
        if more.get("next") is not None and more.get("next") <= nxt:
            raise ControlError(f"{verb}: the leader's pages do not advance (after {nxt!r})")
        nxt = more.get("next")
    raise ControlError(f"{verb}: more than {max_pages} pages")


async def request_all(
    options: NatsOptions,
    verb: str,
    field: str,
    payload: dict[str, Any] | None = None,
    *,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """:func:`request` of a paged listing, every page (one connection; ``timeout_s`` per page)."""
    client = await connect(
        NatsOptions(options.urls, options.creds, options.ca_file, name="camfleet-cluster-cli"),
        timeout_s=min(timeout_s, 10.0),
    )

    async def one(v: str, p: dict[str, Any]) -> dict[str, Any]:
        return await ask(client, v, p, timeout_s=timeout_s)

    try:
        return await ask_all(one, verb, field, payload)
    finally:
        try:
            await asyncio.wait_for(client.close(), 2.0)
        except Exception as exc:  # closing: nothing more to do
            log.debug("close: %r", exc)


STAGE_PAGE = 500
"""Cameras per ``stage`` request of :func:`apply_fleet` (each page is checked at the leader: seconds)."""


async def apply_fleet(
    options: NatsOptions, cameras: dict[str, Any], *, timeout_s: float = 10.0, max_bytes: int | None = None
) -> dict[str, Any]:
    """Make the fleet's cameras exactly ``cameras``: the ``apply`` reply, or ControlError with the issues.

    A fleet whose request fits in one NATS message is applied in one request. A larger one
    (thousands of cameras) is staged in pages (the staged edits are discarded first) and
    applied with ``staged_only``; any page's problems, every page's gathered, discard the
    staging and raise: nothing is applied. ``timeout_s``: per request; ``max_bytes``: the
    largest request (default: three quarters of the server's ``max_payload``; half of it per page).
    """
    client = await connect(
        NatsOptions(options.urls, options.creds, options.ca_file, name="camfleet-cluster-cli"),
        timeout_s=min(timeout_s, 10.0),
    )
    try:
        size = len(json.dumps({"cameras": cameras}, separators=(",", ":"), default=str))
        largest = max_bytes if max_bytes is not None else client.max_payload * 3 // 4
        if size <= largest:
            return await ask(client, "apply", {"cameras": cameras}, timeout_s=timeout_s)
        await ask(client, "discard", timeout_s=timeout_s)
        names = sorted(cameras)
        issues: list[str] = []
        budget = largest * 2 // 3
        i = 0
        while i < len(names):
            chunk: dict[str, Any] = {}
            used = 0
            while i < len(names) and len(chunk) < STAGE_PAGE:
                one = len(json.dumps(cameras[names[i]], separators=(",", ":"), default=str)) + len(names[i])
                if chunk and used + one > budget:
                    break
                chunk[names[i]], used, i = cameras[names[i]], used + one, i + 1
            try:
                await ask(client, "stage", {"cameras": chunk}, timeout_s=timeout_s)
            except ControlError as exc:
                if not exc.reply.get("issues"):
                    with contextlib.suppress(ControlError):
                        await ask(client, "discard", timeout_s=timeout_s)
                    raise
                issues += [str(x) for x in exc.reply["issues"]]
        if issues:
            await ask(client, "discard", timeout_s=timeout_s)
            raise ControlError(f"{len(issues)} problem(s) in the fleet configuration", {"issues": issues})
        return await ask(client, "apply", {"staged_only": True}, timeout_s=timeout_s)
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
