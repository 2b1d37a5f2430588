// The single-camera page: a larger live picture with the overlay of what the pipeline sees
// (objects, zones, masks, motion) and the zone/mask editor drawn on the same picture.
import { $, api, el, state } from "./core.js";
import { isFleet } from "./fleet.js";

const META_KEEP = 64;          // records kept to pair with the picture (a few seconds)
const FRAME_PERIOD_MS = 50;    // the least time between two frame requests (at most 20 fps)
const HIT_PX = 10;             // how close (CSS px) a pointer must be to grab a point

const cam = {
  name: null, gen: 0, ws: null, meta: [], frames: [], imgSeq: 0, shownAt: 0, record: null,
  node: null,                    // fleet mode: the node serving the picture (its frame numbers are its own)
  view: null,                    // GET /api/cameras/{name}
  editing: false, edit: null,    // {zones: {name: {points, labels}}, masks: [[...]]}
  sel: null,                     // {kind: "zone"|"mask", key: name|index}
  point: -1, dragging: false, dirty: false,
};

const LABEL_COLORS = { person: "#3d8bfd", car: "#e0a526", cat: "#c678dd", dog: "#2fb56a", motorcycle: "#e5484d" };
const color = (label) => LABEL_COLORS[label] || "#17c3b2";
const delay = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- open / close

export function openCamera(name) {
  closeCamera();
  cam.name = name;
  cam.gen += 1;
  cam.meta = [];
  for (const f of cam.frames) URL.revokeObjectURL(f.url);
  cam.frames = [];
  cam.record = null;
  cam.imgSeq = 0;
  cam.shownAt = 0;
  cam.node = null;
  $("#cam-title").textContent = name;
  $("#cam-media").textContent = "";
  $("#cam-picture").alt = `live picture of ${name}`;
  stopEditing(true);
  renderState();
  loadView();
  pump(cam.gen);
  connectMeta(cam.gen);
}

export function closeCamera() {
  cam.gen += 1;
  if (cam.ws) { const ws = cam.ws; cam.ws = null; ws.close(); }
}

async function loadView() {
  try { cam.view = await api(`/api/cameras/${encodeURIComponent(cam.name)}`); } catch (e) { cam.view = null; }
  draw();
}

// the camera's state, fps and last error (from the status pushed every second)
export function renderState() {
  if (!cam.name || !state.status) return;
  const c = state.status.cameras[cam.name];
  if (!c) return;
  const st = $("#cam-state");
  st.textContent = c.state;
  st.className = `state state-${c.state}`;
  $("#cam-fps").textContent = `${c.decode_fps.toFixed(1)} fps decoded · ${c.processed_fps.toFixed(1)} analysed` +
    ` · detector ${c.inference_ms.toFixed(0)} ms`;
  $("#cam-error").textContent = c.last_error || c.reason || "";
  $("#cam-node").textContent = c.node ? `on ${c.node}` : "";
  if (isFleet() && c.node && cam.node && c.node !== cam.node) moved();
  if (c.node) cam.node = c.node;
}

// the camera runs on another node now: its frames and records are numbered there from the start,
// so the pictures and records kept from the old node are dropped and the next request waits for none
function moved() {
  cam.gen += 1;
  if (cam.ws) { const ws = cam.ws; cam.ws = null; ws.close(); }
  cam.meta = [];
  for (const f of cam.frames) URL.revokeObjectURL(f.url);
  cam.frames = [];
  cam.imgSeq = 0;
  cam.shownAt = 0;
  pump(cam.gen);
  connectMeta(cam.gen);
}

// ---------------------------------------------------------------- picture and metadata

// Frames are fetched one after the other (each waits for a newer one); the picture shown is the
// newest frame the pipeline analysed, so boxes and picture are the same frame. When no analysed
// frame comes within SYNC_WAIT_MS (pipeline slower than the camera by far, or stopped), the
// newest frame is shown with the newest earlier record.
const SYNC_WAIT_MS = 1000;
const FRAMES_KEEP = 16;

async function pump(gen) {
  let after = 0;
  while (cam.gen === gen) {
    const started = performance.now();
    try {
      const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
      const r = await fetch(`/api/cameras/${encodeURIComponent(cam.name)}/frame.jpg?after=${after}`, { headers });
      if (cam.gen !== gen) return;
      if (!r.ok) {
        after = 0;
        // a coordinator answers 503 while the camera's node cannot serve the picture through it: say so
        const served = isFleet() && r.status === 503;
        const body = served ? await r.json().catch(() => null) : null;
        $("#cam-media").textContent = body && typeof body.detail === "string" ? `No live picture here: ${body.detail}` : "";
        await delay(served ? 3000 : 1000);
        continue;
      }
      $("#cam-media").textContent = "";
      const seq = Number(r.headers.get("X-Frame-Seq") || 0);
      if (seq < after) cam.frames = [];   // the ring restarted
      after = seq;
      const url = URL.createObjectURL(await r.blob());
      if (cam.gen !== gen) { URL.revokeObjectURL(url); return; }
      cam.frames.push({ seq, url, at: performance.now() });
      while (cam.frames.length > FRAMES_KEEP) URL.revokeObjectURL(cam.frames.shift().url);
      present();
    } catch (e) {
      await delay(1000);
    }
    await delay(Math.max(0, FRAME_PERIOD_MS - (performance.now() - started)));
  }
}

// choose the frame to show: the newest with its own record, else (after a while) the newest
function present() {
  if (!cam.frames.length) return;
  const synced = $("#ov-all").checked && !cam.editing;
  const recorded = new Set(cam.meta.map((m) => m.seq));
  let pick = null;
  if (synced) {
    for (const f of cam.frames) if (recorded.has(f.seq) && (!pick || f.seq > pick.seq)) pick = f;
  }
  const newest = cam.frames[cam.frames.length - 1];
  if (!pick || pick.seq <= cam.imgSeq) {
    if (synced && performance.now() - (cam.shownAt || 0) < SYNC_WAIT_MS) return;
    pick = newest;
  }
  if (pick.seq === cam.imgSeq) return;
  const img = $("#cam-picture");
  img.onload = () => {
    if (img.naturalHeight) $("#cam-stage").style.maxWidth = `min(100%, calc(72vh * ${img.naturalWidth / img.naturalHeight}))`;
    draw();
  };
  img.src = pick.url;
  cam.imgSeq = pick.seq;
  cam.shownAt = performance.now();
  img.dataset.seq = String(pick.seq);
  draw();
}

function connectMeta(gen) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const query = state.token ? `?token=${encodeURIComponent(state.token)}` : "";
  const ws = new WebSocket(`${proto}://${location.host}/api/cameras/${encodeURIComponent(cam.name)}/meta${query}`);
  cam.ws = ws;
  ws.onmessage = (msg) => {
    const rec = JSON.parse(msg.data);
    const last = cam.meta[cam.meta.length - 1];
    if (last && rec.seq < last.seq) cam.meta = [];   // the camera's ring restarted: sequence numbers too
    cam.meta.push(rec);
    if (cam.meta.length > META_KEEP) cam.meta.shift();
    present();
  };
  ws.onclose = () => {
    if (cam.ws !== ws || cam.gen !== gen) return;
    setTimeout(() => { if (cam.gen === gen) connectMeta(gen); }, 2000);
  };
}

// the record of the picture shown: the newest analysed frame at or before it
function recordFor(seq) {
  let best = null;
  for (const r of cam.meta) if (r.seq <= seq && (!best || r.seq > best.seq)) best = r;
  return best;
}

// ---------------------------------------------------------------- drawing

function canvasSize() {
  const img = $("#cam-picture");
  const canvas = $("#cam-overlay");
  const w = img.clientWidth, h = img.clientHeight, dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w, h };
}

function polygons() {
  if (cam.editing && cam.edit) return cam.edit;
  const cfg = cam.view && (cam.view.staged || cam.view.config);
  return { zones: (cfg && cfg.zones) || {}, masks: (cfg && cfg.masks) || [] };
}

function drawPolygon(ctx, pts, w, h, stroke, fill, selected) {
  if (!pts.length) return;
  ctx.beginPath();
  pts.forEach(([x, y], i) => (i ? ctx.lineTo(x * w, y * h) : ctx.moveTo(x * w, y * h)));
  ctx.closePath();
  ctx.fillStyle = fill;
  ctx.fill();
  ctx.lineWidth = selected ? 2.5 : 1.5;
  ctx.strokeStyle = stroke;
  ctx.stroke();
  if (selected) {
    pts.forEach(([x, y], i) => {
      ctx.beginPath();
      ctx.arc(x * w, y * h, i === cam.point ? 7 : 5, 0, Math.PI * 2);
      ctx.fillStyle = i === cam.point ? "#fff" : stroke;
      ctx.fill();
    });
  }
}

function label(ctx, text, x, y, bg) {
  ctx.font = "12px system-ui, sans-serif";
  const tw = ctx.measureText(text).width + 6;
  const ty = y > 16 ? y - 16 : y;
  ctx.fillStyle = bg;
  ctx.fillRect(x, ty, tw, 16);
  ctx.fillStyle = "#000";
  ctx.fillText(text, x + 3, ty + 12);
}

export function draw() {
  if (!cam.name) return;
  const canvas = $("#cam-overlay");
  const { ctx, w, h } = canvasSize();
  ctx.clearRect(0, 0, w, h);
  const show = (id) => $(id).checked;
  const polys = polygons();
  if (show("#ov-zones") || cam.editing) {
    polys.masks.forEach((pts, i) => {
      const sel = cam.editing && cam.sel && cam.sel.kind === "mask" && cam.sel.key === i;
      drawPolygon(ctx, pts, w, h, "#e5484d", "rgba(0,0,0,0.45)", sel);
    });
    for (const [name, z] of Object.entries(polys.zones)) {
      const sel = cam.editing && cam.sel && cam.sel.kind === "zone" && cam.sel.key === name;
      drawPolygon(ctx, z.points, w, h, "#2fb56a", "rgba(47,181,106,0.12)", sel);
      if (z.points.length) label(ctx, name, z.points[0][0] * w, z.points[0][1] * h + 16, "#2fb56a");
    }
  }
  const rec = recordFor(cam.imgSeq);
  cam.record = rec;
  canvas.dataset.seq = rec ? String(rec.seq) : "";
  canvas.dataset.objects = rec ? JSON.stringify(rec.objects) : "[]";
  canvas.dataset.pts = rec ? String(rec.pts) : "";
  if (!rec || cam.editing) return;
  if (show("#ov-motion")) {
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = "#e0a526";
    ctx.lineWidth = 1;
    for (const [x0, y0, x1, y1] of rec.motion) ctx.strokeRect(x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h);
    ctx.setLineDash([]);
  }
  if (show("#ov-objects")) {
    for (const o of rec.objects) {
      const [x0, y0, x1, y1] = o.box;
      ctx.strokeStyle = color(o.label);
      ctx.lineWidth = 2;
      ctx.strokeRect(x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h);
      label(ctx, `${o.label} ${(o.score * 100).toFixed(0)}% #${o.id}${o.stationary ? " ·still" : ""}`,
        x0 * w, y0 * h, color(o.label));
    }
  }
  $("#cam-objects").textContent = rec.objects.length
    ? rec.objects.map((o) => `${o.label} #${o.id} ${(o.score * 100).toFixed(0)}%` +
      (o.zones.length ? ` in ${o.zones.join(", ")}` : "")).join(" · ")
    : "no objects";
}

// ---------------------------------------------------------------- zone and mask editor

function selectedPoints() {
  if (!cam.sel || !cam.edit) return null;
  return cam.sel.kind === "zone" ? cam.edit.zones[cam.sel.key]?.points : cam.edit.masks[cam.sel.key];
}

function startEditing() {
  const cfg = cam.view && (cam.view.staged || cam.view.config);
  if (!cfg) { $("#edit-status").textContent = "this camera has no configuration to edit"; return; }
  cam.edit = JSON.parse(JSON.stringify({ zones: cfg.zones || {}, masks: cfg.masks || [] }));
  for (const z of Object.values(cam.edit.zones)) z.labels = z.labels || null;
  cam.editing = true;
  cam.dirty = false;
  cam.sel = null;
  cam.point = -1;
  $("#editor-panel").classList.remove("hidden");
  $("#edit-toggle").textContent = "Stop editing";
  $("#cam-stage").classList.add("editing");
  renderEditor();
  draw();
}

function stopEditing(force) {
  if (!force && cam.dirty && !confirm("Drop the changes not staged?")) return;
  cam.editing = false;
  cam.edit = null;
  cam.sel = null;
  $("#editor-panel").classList.add("hidden");
  $("#edit-toggle").textContent = "Edit zones and masks";
  $("#cam-stage").classList.remove("editing");
  draw();
}

function select(kind, key) {
  cam.sel = { kind, key };
  cam.point = -1;
  renderEditor();
  draw();
}

function renderEditor() {
  const list = $("#poly-list");
  const items = [];
  for (const name of Object.keys(cam.edit.zones)) {
    const sel = cam.sel && cam.sel.kind === "zone" && cam.sel.key === name;
    items.push(el("li", {}, el("button", { type: "button", class: sel ? "sel" : "", dataset: { zone: name },
      onclick: () => select("zone", name) }, `zone ${name} (${cam.edit.zones[name].points.length} points)`)));
  }
  cam.edit.masks.forEach((pts, i) => {
    const sel = cam.sel && cam.sel.kind === "mask" && cam.sel.key === i;
    items.push(el("li", {}, el("button", { type: "button", class: sel ? "sel" : "", dataset: { mask: String(i) },
      onclick: () => select("mask", i) }, `mask ${i + 1} (${pts.length} points)`)));
  });
  list.replaceChildren(...items);
  const zone = cam.sel && cam.sel.kind === "zone" ? cam.edit.zones[cam.sel.key] : null;
  $("#zone-props").classList.toggle("hidden", !zone);
  if (zone) {
    $("#zone-name").value = cam.sel.key;
    $("#zone-labels").value = (zone.labels || []).join(", ");
  }
  $("#poly-delete").disabled = !cam.sel;
  $("#edit-hint").textContent = cam.sel
    ? "Click on the picture to add a point (on an edge: inserted there), drag a point to move it, " +
      "right-click it or press Delete to remove it; arrow keys nudge the selected point."
    : "Choose a zone or mask, or make a new one.";
}

function changed() {
  cam.dirty = true;
  $("#edit-status").textContent = "changed (not staged)";
  renderEditor();
  draw();
}

function pointerPos(ev) {
  const r = $("#cam-overlay").getBoundingClientRect();
  return { x: Math.min(Math.max((ev.clientX - r.left) / r.width, 0), 1),
           y: Math.min(Math.max((ev.clientY - r.top) / r.height, 0), 1), w: r.width, h: r.height };
}

function nearestPoint(pts, p) {
  let best = -1, bestD = HIT_PX;
  pts.forEach(([x, y], i) => {
    const d = Math.hypot((x - p.x) * p.w, (y - p.y) * p.h);
    if (d <= bestD) { best = i; bestD = d; }
  });
  return best;
}

// the edge a click lies on (within HIT_PX), to insert a point there
function nearestEdge(pts, p) {
  if (pts.length < 3) return -1;
  let best = -1, bestD = HIT_PX;
  for (let i = 0; i < pts.length; i++) {
    const [ax, ay] = pts[i], [bx, by] = pts[(i + 1) % pts.length];
    const px = p.x * p.w, py = p.y * p.h, x0 = ax * p.w, y0 = ay * p.h, x1 = bx * p.w, y1 = by * p.h;
    const len2 = (x1 - x0) ** 2 + (y1 - y0) ** 2 || 1;
    const t = Math.min(Math.max(((px - x0) * (x1 - x0) + (py - y0) * (y1 - y0)) / len2, 0), 1);
    const d = Math.hypot(px - (x0 + t * (x1 - x0)), py - (y0 + t * (y1 - y0)));
    if (d <= bestD) { best = i; bestD = d; }
  }
  return best;
}

const round4 = (v) => Math.round(v * 10000) / 10000;

function onPointerDown(ev) {
  if (!cam.editing || ev.button !== 0) return;
  const pts = selectedPoints();
  if (!pts) return;
  const p = pointerPos(ev);
  const hit = nearestPoint(pts, p);
  if (hit >= 0) {
    cam.point = hit;
  } else {
    const edge = nearestEdge(pts, p);
    const at = edge >= 0 ? edge + 1 : pts.length;
    pts.splice(at, 0, [round4(p.x), round4(p.y)]);
    cam.point = at;
    changed();
  }
  cam.dragging = true;
  $("#cam-overlay").setPointerCapture(ev.pointerId);
  draw();
}

function onPointerMove(ev) {
  if (!cam.dragging) return;
  const pts = selectedPoints();
  if (!pts || cam.point < 0) return;
  const p = pointerPos(ev);
  pts[cam.point] = [round4(p.x), round4(p.y)];
  cam.dirty = true;
  draw();
}

function onPointerUp() {
  if (cam.dragging) { cam.dragging = false; changed(); }
}

function deletePoint(i) {
  const pts = selectedPoints();
  if (!pts || i < 0 || i >= pts.length) return;
  pts.splice(i, 1);
  cam.point = Math.min(i, pts.length - 1);
  changed();
}

function onContextMenu(ev) {
  if (!cam.editing) return;
  ev.preventDefault();
  const pts = selectedPoints();
  if (pts) deletePoint(nearestPoint(pts, pointerPos(ev)));
}

function onKey(ev) {
  if (!cam.editing || state.page !== "camera" || ev.target.closest("input, textarea")) return;
  const pts = selectedPoints();
  if (!pts || cam.point < 0) return;
  const step = ev.shiftKey ? 0.02 : 0.005;
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  if (ev.key === "Delete" || ev.key === "Backspace") { ev.preventDefault(); deletePoint(cam.point); }
  else if (moves[ev.key]) {
    ev.preventDefault();
    const [dx, dy] = moves[ev.key];
    const [x, y] = pts[cam.point];
    pts[cam.point] = [round4(Math.min(Math.max(x + dx, 0), 1)), round4(Math.min(Math.max(y + dy, 0), 1))];
    changed();
  } else if (ev.key === "Tab" && pts.length) {
    ev.preventDefault();
    cam.point = (cam.point + (ev.shiftKey ? pts.length - 1 : 1)) % pts.length;
    draw();
  }
}

function newZone() {
  let n = 1;
  while (cam.edit.zones[`zone${n}`]) n++;
  cam.edit.zones[`zone${n}`] = { points: [], labels: null };
  select("zone", `zone${n}`);
  changed();
}

function newMask() {
  cam.edit.masks.push([]);
  select("mask", cam.edit.masks.length - 1);
  changed();
}

function deletePolygon() {
  if (!cam.sel) return;
  if (cam.sel.kind === "zone") delete cam.edit.zones[cam.sel.key];
  else cam.edit.masks.splice(cam.sel.key, 1);
  cam.sel = null;
  changed();
}

function renameZone() {
  if (!cam.sel || cam.sel.kind !== "zone") return;
  const name = $("#zone-name").value.trim();
  const out = $("#edit-status");
  if (name === cam.sel.key) return;
  if (!/^[A-Za-z0-9_-]{1,63}$/.test(name)) { out.textContent = "a zone name is 1-63 of A-Z a-z 0-9 _ -"; return; }
  if (cam.edit.zones[name]) { out.textContent = `there is already a zone ${name}`; return; }
  const zones = {};
  for (const [k, v] of Object.entries(cam.edit.zones)) zones[k === cam.sel.key ? name : k] = v;
  cam.edit.zones = zones;
  cam.sel.key = name;
  changed();
}

function setLabels() {
  if (!cam.sel || cam.sel.kind !== "zone") return;
  const labels = $("#zone-labels").value.split(",").map((s) => s.trim()).filter(Boolean);
  cam.edit.zones[cam.sel.key].labels = labels.length ? labels : null;
  changed();
}

async function stage() {
  const out = $("#edit-status");
  for (const [name, z] of Object.entries(cam.edit.zones)) {
    if (z.points.length < 3) { out.textContent = `zone ${name} needs at least 3 points`; return false; }
  }
  for (const [i, m] of cam.edit.masks.entries()) {
    if (m.length < 3) { out.textContent = `mask ${i + 1} needs at least 3 points`; return false; }
  }
  const view = await api(`/api/cameras/${encodeURIComponent(cam.name)}`);
  const cfg = JSON.parse(JSON.stringify(view.staged || view.config));
  cfg.zones = {};
  for (const [name, z] of Object.entries(cam.edit.zones)) {
    cfg.zones[name] = z.labels && z.labels.length ? { points: z.points, labels: z.labels } : { points: z.points };
  }
  cfg.masks = cam.edit.masks;
  try {
    cam.view = await api(`/api/cameras/${encodeURIComponent(cam.name)}`, { method: "PUT", json: cfg });
  } catch (e) {
    const issues = e.body && e.body.issues ? e.body.issues.map((i) => `${i.path}: ${i.message}`).join("; ") : e.message;
    out.textContent = `not staged: ${issues}`;
    return false;
  }
  cam.dirty = false;
  out.textContent = "staged; apply to use it";
  out.dataset.staged = "1";
  return true;
}

async function stageAndApply() {
  if (cam.dirty && !(await stage())) return;
  const out = $("#edit-status");
  out.textContent = "applying…";
  try {
    const r = await api("/api/apply", { method: "POST" });
    out.textContent = `applied (generation ${r.generation})` + (r.errors.length ? `; ${r.errors.join("; ")}` : "") +
      (r.placed && r.placed[cam.name] ? `; runs on ${r.placed[cam.name]}` : "") +
      (r.unplaced && r.unplaced[cam.name] ? `; runs nowhere: ${r.unplaced[cam.name]}` : "");
    out.dataset.applied = String(r.generation);
    await loadView();
  } catch (e) {
    const why = e.body && e.body.issues ? e.body.issues.map((i) => `${i.path}: ${i.message}`).join("; ")
      : e.body && e.body.errors ? e.body.errors.join("; ") : e.message;
    out.textContent = `not applied: ${why}`;
  }
}

// ---------------------------------------------------------------- wiring

export function initCamera() {
  for (const id of ["#ov-objects", "#ov-zones", "#ov-motion"]) $(id).addEventListener("change", draw);
  $("#ov-all").addEventListener("change", () => {
    $("#cam-overlay").classList.toggle("hidden", !$("#ov-all").checked);
  });
  window.addEventListener("resize", draw);
  const canvas = $("#cam-overlay");
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerUp);
  canvas.addEventListener("contextmenu", onContextMenu);
  document.addEventListener("keydown", onKey);
  $("#edit-toggle").addEventListener("click", () => (cam.editing ? stopEditing(false) : startEditing()));
  $("#zone-new").addEventListener("click", newZone);
  $("#mask-new").addEventListener("click", newMask);
  $("#poly-delete").addEventListener("click", deletePolygon);
  $("#zone-name").addEventListener("change", renameZone);
  $("#zone-labels").addEventListener("change", setLabels);
  $("#edit-stage").addEventListener("click", () => stage());
  $("#edit-apply").addEventListener("click", stageAndApply);
  $("#cam-back").addEventListener("click", () => { location.hash = "#live"; });
  $("#cam-recordings").addEventListener("click", () => { location.hash = `#recordings/${encodeURIComponent(cam.name)}`; });
}
