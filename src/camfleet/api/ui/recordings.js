// The recordings page: a camera's day on a timeline (recorded spans, gaps, motion, events);
// click to play from a point, drag to choose a span (plays from its start; export it as a clip),
// step between events. Playback is the segment files in sequence (HTTP Range), no export needed.
import { $, api, el, state } from "./core.js";
import { isFleet } from "./fleet.js";

const DAY = 86400;
const tl = {
  camera: null, day: null, data: null, view: [0, 0],   // view: [start, end] epoch seconds shown
  queue: [], qi: -1, playhead: null, sel: null, drag: null, loadToken: 0, playToken: 0,
};

const pad = (n) => String(n).padStart(2, "0");
const hms = (t) => { const d = new Date(t * 1000); return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; };
const dayStart = (t) => { const d = new Date(t * 1000); d.setHours(0, 0, 0, 0); return d.getTime() / 1000; };
const isoDay = (t) => { const d = new Date(t * 1000); return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`; };

export function recordingsCamera() { return tl.camera; }

// the camera choice follows the status pushed every second (cameras come and go)
export function fillCameras() {
  const cams = state.status ? Object.keys(state.status.cameras).sort() : [];
  const select = $("#rec-camera");
  if ([...select.options].map((o) => o.value).join() === cams.join()) return;
  select.replaceChildren(...cams.map((c) => el("option", { value: c }, c)));
  if (tl.camera) select.value = tl.camera;
}

export function openRecordings(camera) {
  const cams = state.status ? Object.keys(state.status.cameras).sort() : [];
  tl.camera = camera || tl.camera || cams[0] || null;
  fillCameras();
  if (tl.day === null) tl.day = dayStart(Date.now() / 1000);
  $("#rec-day").value = isoDay(tl.day);
  load();
}

async function load() {
  if (!tl.camera) return;
  const token = ++tl.loadToken;
  const params = new URLSearchParams({ start: tl.day, end: tl.day + DAY });
  let data;
  const out = $("#rec-error");
  try { data = await api(`/api/recordings/${encodeURIComponent(tl.camera)}/timeline?${params}`); } catch (e) {
    // a coordinator: the recordings stay on the camera's node (a 503 naming the node when it is down)
    if (token === tl.loadToken && isFleet() && e.status === 503 && e.body && typeof e.body.detail === "string") {
      out.textContent = `no recordings here: ${e.body.detail}`;
      out.dataset.unavailable = "1";
    }
    return;
  }
  if (token !== tl.loadToken) return;
  if (out.dataset.unavailable) { out.textContent = ""; out.dataset.unavailable = ""; }
  tl.data = data;
  setZoom(Number($("#rec-zoom").value));
  const n = data.events.length;
  $("#rec-summary").textContent = `${data.recorded.length} recorded spans · ${data.motion.length} motion · ` +
    `${n}${data.events_truncated ? "+" : ""} events`;
  renderEventList();
  draw();
}

// zoom: seconds shown, centred on the playhead, the selection or the newest recording
function setZoom(seconds) {
  const d = tl.data;
  if (!d) return;
  const last = d.recorded.length ? d.recorded[d.recorded.length - 1][1] : Math.min(Date.now() / 1000, d.end);
  const centre = tl.playhead ?? (tl.sel ? tl.sel[0] : last);
  let s = seconds >= DAY ? d.start : centre - seconds / 2;
  s = Math.max(d.start, Math.min(s, d.end - seconds));
  tl.view = [s, s + Math.min(seconds, DAY)];
  draw();
}

function renderEventList() {
  const list = $("#rec-events");
  const evs = tl.data.events.slice(-200).reverse();   // the newest 200 as a keyboard-usable list
  list.replaceChildren(...evs.map((ev) => el("li", {}, el("button", {
    type: "button", class: "link", dataset: { id: ev.id, start: String(ev.start) },
    onclick: () => playAt(ev.start - 1),
  }, `${hms(ev.start)} ${ev.label} ${(ev.top_score * 100).toFixed(0)}%` + (ev.zones.length ? ` (${ev.zones.join(", ")})` : "")))));
}

// ---------------------------------------------------------------- drawing

function xOf(t, w) { return ((t - tl.view[0]) / (tl.view[1] - tl.view[0])) * w; }
function tOf(x, w) { return tl.view[0] + (x / w) * (tl.view[1] - tl.view[0]); }

export function draw() {
  const canvas = $("#rec-canvas");
  if (!tl.data || !canvas.isConnected || state.page !== "recordings") return;
  const w = canvas.clientWidth, h = canvas.clientHeight, dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#2a1518";   // gaps: nothing recorded
  ctx.fillRect(0, 14, w, 26);
  const span = (a, b, y, hh, fill) => {
    if (b < tl.view[0] || a > tl.view[1]) return;
    const x0 = xOf(a, w), x1 = xOf(b, w);
    ctx.fillStyle = fill;
    ctx.fillRect(x0, y, Math.max(x1 - x0, 1), hh);
  };
  for (const [a, b] of tl.data.recorded) span(a, b, 14, 26, "#1f6f43");
  for (const [a, b] of tl.data.motion) span(a, b, 42, 8, "#e0a526");
  let shown = 0;
  for (const ev of tl.data.events) {
    if (ev.start < tl.view[0] || ev.start > tl.view[1]) continue;
    shown++;
    const x = xOf(ev.start, w);
    ctx.fillStyle = "#e5484d";
    ctx.fillRect(x - 1, 52, 2, 14);
  }
  canvas.dataset.markers = String(shown);
  canvas.dataset.recorded = JSON.stringify(tl.data.recorded);
  canvas.dataset.view = `${tl.view[0]},${tl.view[1]}`;
  if (tl.sel) span(Math.min(...tl.sel), Math.max(...tl.sel), 12, 40, "rgba(61,139,253,0.35)");
  // the hour (or minute) ticks
  const len = tl.view[1] - tl.view[0];
  const step = len > 6 * 3600 ? 3600 : len > 3600 ? 900 : len > 600 ? 60 : 10;
  ctx.fillStyle = "#8a929c";
  ctx.font = "11px system-ui, sans-serif";
  let lastLabel = -1e9;
  for (let t = Math.ceil(tl.view[0] / step) * step; t <= tl.view[1]; t += step) {
    const x = xOf(t, w);
    ctx.fillRect(x, 0, 1, 6);
    if (x - lastLabel > 60) { ctx.fillText(hms(t).slice(0, step >= 60 ? 5 : 8), x + 2, 10); lastLabel = x; }
  }
  if (tl.playhead !== null && tl.playhead >= tl.view[0] && tl.playhead <= tl.view[1]) {
    ctx.fillStyle = "#fff";
    ctx.fillRect(xOf(tl.playhead, w) - 1, 0, 2, h);
  }
  $("#rec-time").textContent = tl.playhead !== null ? `at ${hms(tl.playhead)}` : "";
  $("#rec-export").disabled = !tl.sel;
  $("#rec-selection").textContent = tl.sel
    ? `selected ${hms(Math.min(...tl.sel))}–${hms(Math.max(...tl.sel))}` : "drag on the timeline to choose a span";
}

// ---------------------------------------------------------------- playback

function segmentUrl(path) {
  return `/api/recordings/files/${path.split("/").map(encodeURIComponent).join("/")}`;
}

export async function playAt(t) {
  const video = $("#rec-video");
  const token = ++tl.playToken;
  tl.playhead = t;
  let segs;
  try {
    segs = await api(`/api/recordings?${new URLSearchParams({ camera: tl.camera, start: t, end: t + 3600, limit: 100 })}`);
  } catch (e) { return; }
  if (token !== tl.playToken) return;
  tl.queue = segs.filter((s) => s.end > t);
  tl.qi = 0;
  $("#rec-error").textContent = tl.queue.length ? "" : `nothing recorded at or after ${hms(t)}`;
  if (!tl.queue.length) { draw(); return; }
  const first = tl.queue[0];
  video.dataset.start = String(first.start);
  video.dataset.requested = String(t);
  video.src = segmentUrl(first.path);
  const offset = Math.max(0, t - first.start);
  video.addEventListener("loadedmetadata", () => { video.currentTime = Math.min(offset, video.duration || offset); }, { once: true });
  video.play().catch(() => {});
  draw();
}

async function nextSegment() {
  const video = $("#rec-video");
  tl.qi += 1;
  if (tl.qi >= tl.queue.length) {
    const last = tl.queue[tl.queue.length - 1];
    if (last) await playAt(last.end);   // fetch what follows (recording may still be going on)
    return;
  }
  const s = tl.queue[tl.qi];
  video.dataset.start = String(s.start);
  video.src = segmentUrl(s.path);
  video.play().catch(() => {});
}

function onTime() {
  const video = $("#rec-video");
  const s = tl.queue[tl.qi];
  if (!s) return;
  tl.playhead = s.start + video.currentTime;
  video.dataset.playhead = String(tl.playhead);
  draw();
}

function stepEvent(dir) {
  if (!tl.data || !tl.data.events.length) return;
  const now = tl.playhead ?? (dir > 0 ? tl.data.start : tl.data.end);
  const evs = tl.data.events;
  // the event starts 1 s after where playback starts: skip past the one just stepped to
  const target = dir > 0 ? evs.find((e) => e.start - 1 > now + 0.5) : [...evs].reverse().find((e) => e.start - 1 < now - 0.5);
  if (target) playAt(target.start - 1);
}

function exportSpan() {
  if (!tl.sel) return;
  const a = Math.min(...tl.sel), b = Math.max(...tl.sel);
  const url = `/api/recordings/${encodeURIComponent(tl.camera)}/clip.mp4?${new URLSearchParams({ start: a, end: b })}`;
  const link = el("a", { href: url, download: `${tl.camera}-${isoDay(a)}-${hms(a).replaceAll(":", "")}.mp4` });
  document.body.append(link);
  link.click();
  link.remove();
}

// ---------------------------------------------------------------- pointer and keyboard

function onDown(ev) {
  if (!tl.data || ev.button !== 0) return;
  const canvas = $("#rec-canvas");
  const r = canvas.getBoundingClientRect();
  tl.drag = { x: ev.clientX, t: tOf(ev.clientX - r.left, r.width) };
  canvas.setPointerCapture(ev.pointerId);
}

function onMove(ev) {
  const canvas = $("#rec-canvas");
  const r = canvas.getBoundingClientRect();
  const t = tOf(ev.clientX - r.left, r.width);
  canvas.title = hms(t);
  if (tl.drag && Math.abs(ev.clientX - tl.drag.x) > 4) {
    tl.sel = [tl.drag.t, t];
    draw();
  }
}

function onUp(ev) {
  if (!tl.drag) return;
  const moved = Math.abs(ev.clientX - tl.drag.x) > 4;
  const t = tl.drag.t;
  tl.drag = null;
  if (moved && tl.sel) playAt(Math.min(...tl.sel));
  else { tl.sel = null; playAt(t); }
}

function onKey(ev) {
  if (state.page !== "recordings" || ev.target.closest("input, select, textarea")) return;
  const video = $("#rec-video");
  if (ev.key === "n") stepEvent(1);
  else if (ev.key === "p") stepEvent(-1);
  else if (ev.key === " ") { ev.preventDefault(); video.paused ? video.play().catch(() => {}) : video.pause(); }
  else if (ev.key === "ArrowRight" && tl.playhead !== null) playAt(tl.playhead + (ev.shiftKey ? 60 : 10));
  else if (ev.key === "ArrowLeft" && tl.playhead !== null) playAt(Math.max(tl.playhead - (ev.shiftKey ? 60 : 10), 0));
}

export function initRecordings() {
  const canvas = $("#rec-canvas");
  canvas.addEventListener("pointerdown", onDown);
  canvas.addEventListener("pointermove", onMove);
  canvas.addEventListener("pointerup", onUp);
  document.addEventListener("keydown", onKey);
  window.addEventListener("resize", draw);
  const video = $("#rec-video");
  video.addEventListener("timeupdate", onTime);
  video.addEventListener("ended", nextSegment);
  video.addEventListener("error", () => { if (video.getAttribute("src")) nextSegment(); });
  $("#rec-camera").addEventListener("change", () => { location.hash = `#recordings/${encodeURIComponent($("#rec-camera").value)}`; });
  $("#rec-day").addEventListener("change", () => {
    const [y, m, d] = $("#rec-day").value.split("-").map(Number);
    if (y) { tl.day = new Date(y, m - 1, d).getTime() / 1000; tl.playhead = null; tl.sel = null; load(); }
  });
  $("#rec-prev-day").addEventListener("click", () => { tl.day = dayStart(tl.day - DAY / 2); $("#rec-day").value = isoDay(tl.day); load(); });
  $("#rec-next-day").addEventListener("click", () => { tl.day = dayStart(tl.day + DAY * 1.5); $("#rec-day").value = isoDay(tl.day); load(); });
  $("#rec-zoom").addEventListener("change", () => setZoom(Number($("#rec-zoom").value)));
  $("#rec-prev-event").addEventListener("click", () => stepEvent(-1));
  $("#rec-next-event").addEventListener("click", () => stepEvent(1));
  $("#rec-export").addEventListener("click", exportSpan);
  $("#rec-refresh").addEventListener("click", load);
}
