// Fleet mode: served by a coordinator (`camfleet coordinator --api`), the same UI shows every node's
// cameras, a Nodes page (capacity, load, cameras, state, drain/cordon/uncordon) and where each camera runs.
// Served by a node, /api/fleet/nodes is 404 and nothing here changes the page.
import { $, api, ApiError, el, fmtTime, state } from "./core.js";

const NODES_PERIOD_MS = 2000;   // the Nodes page refreshes this often while shown
const fleet = { on: false, admin: false, nodes: [], source: "", error: "", timer: null, busy: new Set() };

export function isFleet() { return fleet.on; }

// Ask once at start: a coordinator has /api/fleet/nodes (its leader's view or its database's; a 503
// when that database fails is still a coordinator). A node answers 404: the single-node UI as it was.
export async function detectFleet(role) {
  try {
    take(await api("/api/fleet/nodes"));
  } catch (e) {
    if (!(e instanceof ApiError) || e.status === 404) return false;
    fleet.error = why(e);
  }
  fleet.on = true;
  fleet.admin = role === "admin";
  document.body.classList.add("fleet");
  $("#nodes-tab").classList.remove("hidden");
  fillNodeFilter();
  document.querySelector("header h1").textContent = "camfleet fleet";
  return true;
}

// ---------------------------------------------------------------- the Nodes page

function pct(used, capacity) {
  if (!capacity || capacity <= 0 || used === undefined || used === null) return null;
  return Math.max(0, used / capacity);
}

// one bar: how much of a capacity is given to the node's cameras (over 100 %: shown full, red)
function bar(label, used, capacity, unit) {
  const f = pct(used, capacity);
  const width = f === null ? 0 : Math.min(f, 1) * 100;
  const text = f === null ? "unknown" : `${(f * 100).toFixed(0)}\u00a0%`;
  const title = f === null ? `${label}: no capacity measured`
    : `${label}: ${fmtRate(used)} of ${fmtRate(capacity)} ${unit}`;
  const level = f === null ? "" : f >= 1 ? "over" : f >= 0.8 ? "high" : "";
  const fill = el("div", { class: "fill" });
  fill.style.width = `${width.toFixed(1)}%`;   // CSSOM, not an inline style attribute (the CSP allows this)
  return el("div", { class: "bar-row", title },
    el("span", { class: "bar-label muted" }, label),
    el("div", { class: `bar ${level}`, role: "meter", ariaLabel: label, ariaValueMin: "0", ariaValueMax: "100",
      ariaValueNow: f === null ? "0" : String(Math.round(f * 100)), dataset: { fraction: f === null ? "" : f.toFixed(3) } },
    fill),
    el("span", { class: "bar-value" }, text));
}

function fmtRate(v) {
  if (v === null || v === undefined) return "?";
  if (v >= 1e9) return `${(v / 1e9).toFixed(1)} G`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)} M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)} k`;
  return v.toFixed(v < 10 ? 1 : 0);
}

function fmtAge(s) {
  if (s === null || s === undefined) return "never";
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function nodeState(n) {
  // the flags say more than "alive": a draining node is alive and emptying
  if (n.draining) return "draining";
  if (n.cordoned) return "cordoned";
  return n.state || "unknown";
}

async function flag(node, verb) {
  const out = $("#nodes-result");
  fleet.busy.add(node);
  renderNodes();
  out.className = "muted";
  out.textContent = `${verb} ${node}…`;
  try {
    const r = await api(`/api/fleet/nodes/${encodeURIComponent(node)}/${verb}`, { method: "POST" });
    out.textContent = `${verb} ${node}: done` + (r.cameras ? ` · runs ${r.cameras.length ? r.cameras.join(", ") : "no camera"}` : "");
  } catch (e) {
    out.className = "error";
    out.textContent = `${verb} ${node} failed: ${why(e)}`;
  }
  fleet.busy.delete(node);
  await loadNodes();
}

function nodeCard(n) {
  const cap = n.capacity || {};
  const load = n.load || {};
  const st = nodeState(n);
  const buttons = [];
  if (fleet.admin) {
    const busy = fleet.busy.has(n.node_id) || fleet.source !== "leader";
    const button = (verb, text, show) => show ? el("button", { type: "button", class: `node-${verb}`,
      disabled: busy, title: fleet.source !== "leader" ? "no leader coordinator answers" : "",
      onclick: () => flag(n.node_id, verb) }, text) : "";
    buttons.push(button("drain", "Drain", !n.draining),
      button("cordon", "Cordon", !n.cordoned && !n.draining),
      button("uncordon", "Uncordon", n.cordoned || n.draining));
  }
  const cams = n.cameras || [];
  return el("article", { class: "node-card", dataset: { node: n.node_id, state: st } },
    el("div", { class: "node-head" },
      el("strong", {}, n.node_id),
      el("span", { class: `state node-state state-${st}` }, st),
      el("span", { class: "muted" }, n.hostname || "")),
    el("div", { class: "muted node-facts" },
      `version ${n.version || "?"} · ` + (n.heartbeat_age_s !== undefined || !n.status_at
        ? `last heartbeat ${fmtAge(n.heartbeat_age_s)}` : `last status ${fmtTime(n.status_at)}`) +
      (n.utilisation !== null && n.utilisation !== undefined ? ` · utilisation ${(n.utilisation * 100).toFixed(0)}\u00a0%` : "") +
      (n.errors && n.errors.length ? ` · errors: ${n.errors.join("; ")}` : "") + (n.fenced ? " · fenced" : "")),
    bar("decode", load.decode_pixels_per_s, cap.decode_pixels_per_s, "pixels/s"),
    bar("detect", load.inferences_per_s, cap.inferences_per_s, "inferences/s"),
    el("div", { class: "node-cameras" }, cams.length ? `${cams.length} camera${cams.length === 1 ? "" : "s"}: ` : "no cameras",
      ...cams.map((c) => el("a", { href: `#camera/${encodeURIComponent(c)}`, class: "chip" }, c))),
    buttons.length ? el("div", { class: "toolbar" }, ...buttons) : "");
}

function renderNodes() {
  const list = $("#nodes");
  list.replaceChildren(...fleet.nodes.map(nodeCard));
  $("#nodes-empty").classList.toggle("hidden", fleet.nodes.length > 0);
  $("#nodes-source").textContent = fleet.error ? `not refreshed: ${fleet.error}`
    : fleet.source === "leader" ? "" : "no leader coordinator answers: what the last one recorded (no load, no actions)";
}

function take(reply) {
  fleet.nodes = reply.nodes;
  fleet.source = reply.source;
  fleet.error = "";
}

function why(e) {
  return e.body && typeof e.body.detail === "string" ? e.body.detail : e.message;
}

export async function loadNodes() {
  try {
    take(await api("/api/fleet/nodes"));
  } catch (e) {
    // keep the last list shown, and say why it is not fresh
    fleet.error = e instanceof ApiError ? why(e) : "the coordinator does not answer";
  }
  fillNodeFilter();
  if (state.page === "nodes") renderNodes();
}

// the events page's node filter (events keep the node that sent them, gone or not)
function fillNodeFilter() {
  const select = $("#filter-node");
  select.classList.remove("hidden");
  const ids = fleet.nodes.map((n) => n.node_id).sort();
  const shown = [...select.options].slice(1).map((o) => o.value);
  if (ids.every((id) => shown.includes(id))) return;
  const value = select.value;
  const all = [...new Set([...shown, ...ids])].sort();
  select.replaceChildren(el("option", { value: "" }, "all nodes"), ...all.map((id) => el("option", { value: id }, id)));
  select.value = value;
}

export function openNodes() {
  loadNodes();
  if (!fleet.timer) fleet.timer = setInterval(() => { if (state.page === "nodes") loadNodes(); }, NODES_PERIOD_MS);
}

export function closeNodes() {
  if (fleet.timer) { clearInterval(fleet.timer); fleet.timer = null; }
}

// ---------------------------------------------------------------- pieces for the other pages

// "on node-a" for a camera or an event (nothing on a single node)
export function nodeText(node) {
  if (!fleet.on) return "";
  return node ? `on ${node}` : "not placed";
}

// Media (live frames, snapshots, clips) comes from the camera's node. While the coordinator cannot
// fetch it (503: "node n2 unreachable since ..."), the page says so instead of showing a broken picture.
// Returns that message, or "" for anything else (it worked, or a 404 the page handles as before).
export async function mediaProblem(url) {
  if (!fleet.on) return "";
  try {
    const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
    const r = await fetch(url, { headers });
    if (r.status !== 503) { if (r.body) r.body.cancel().catch(() => {}); return ""; }
    const body = (r.headers.get("content-type") || "").includes("application/json") ? await r.json().catch(() => null) : null;
    return body && typeof body.detail === "string" ? body.detail : "the camera's node cannot be reached";
  } catch (e) {
    return "the coordinator does not answer";
  }
}

// the apply result's "placed cam on node" for the cameras it added or changed (`placed` holds the
// whole fleet's: 72 cameras would not fit a line), and which cameras run nowhere and why
export function placementText(r) {
  if (!fleet.on) return "";
  const touched = [...(r.added || []), ...(r.updated || [])].sort();
  const placed = touched.filter((c) => r.placed && r.placed[c]).map((c) => `${c} on ${r.placed[c]}`);
  const unplaced = Object.entries(r.unplaced || {});
  const mine = unplaced.filter(([c]) => touched.includes(c)).map(([c, why]) => `${c} runs nowhere (${why})`);
  const others = unplaced.length - mine.length;
  return (placed.length ? `; placed ${placed.join(", ")}` : "") + (mine.length ? `; ${mine.join("; ")}` : "") +
    (others > 0 ? `; ${others} other camera${others === 1 ? "" : "s"} run${others === 1 ? "s" : ""} nowhere` : "") +
    ((r.warnings || []).length ? `; ${r.warnings.join("; ")}` : "");
}
