// Event review: filters (camera, label, zone, score, time, not yet reviewed), thumbnails,
// mark reviewed, retain, and a detail view with the snapshot, the object's path over it and the clip.
import { $, api, el, fmtTime, PAGE_SIZE, state } from "./core.js";
import { mediaProblem } from "./fleet.js";

// missed: events came while a detail was open (the list was kept as the user saw it)
const review = { items: [], current: -1, missed: false };

function eventUrl(id, what = "") { return `/api/events/${encodeURIComponent(id)}${what}`; }

// The event open in the detail view (undefined when none). The list may be reloaded while it is
// open, so code that awaits compares events by id, never by object.
function openEvent() { return review.current >= 0 ? review.items[review.current] : undefined; }

// The two marks an event carries: where each is saved and shown.
const MARKS = {
  reviewed: { path: "/reviewed", box: "input.reviewed", detail: "#detail-reviewed", rowClass: "reviewed" },
  retained: { path: "/retain", box: "input.retain", detail: "#detail-retain" },
};

async function setMark(ev, mark, value) {
  const m = MARKS[mark];
  try {
    await api(eventUrl(ev.id, m.path), { method: "PUT", json: { [mark]: value } });
    ev[mark] = value;
  } catch (e) { /* a viewer token may not write: the 403 leaves it as it was */ }
  const li = document.querySelector(`#events li[data-id="${CSS.escape(ev.id)}"]`);
  if (li) {
    if (m.rowClass) li.classList.toggle(m.rowClass, ev[mark]);
    li.querySelector(m.box).checked = ev[mark];
  }
  const open = openEvent();
  if (open && open.id === ev.id) { open[mark] = ev[mark]; $(m.detail).checked = ev[mark]; }
}

function eventItem(ev, index) {
  const img = ev.has_snapshot
    ? el("img", { src: eventUrl(ev.id, "/snapshot.jpg"), alt: `${ev.label} on ${ev.camera}`, loading: "lazy", decoding: "async" })
    : el("div", { class: "muted noshot" }, "no snapshot");
  // on a coordinator the snapshot stays on the node that made it: say where when it cannot be shown
  if (ev.node && ev.has_snapshot) {
    img.addEventListener("error", () => img.replaceWith(el("div", { class: "muted noshot" }, `snapshot on ${ev.node}`)));
  }
  const reviewed = el("input", { type: "checkbox", class: "reviewed", checked: ev.reviewed, title: "reviewed" });
  reviewed.addEventListener("change", () => setMark(ev, "reviewed", reviewed.checked));
  const retain = el("input", { type: "checkbox", class: "retain", checked: ev.retained, title: "keep past retention" });
  retain.addEventListener("change", () => setMark(ev, "retained", retain.checked));
  const span = ev.end ? `${Math.max(0, ev.end - ev.start).toFixed(1)} s` : "ongoing";
  const data = ev.node ? { id: ev.id, camera: ev.camera, node: ev.node } : { id: ev.id, camera: ev.camera };
  return el("li", { dataset: data, class: ev.reviewed ? "reviewed" : "" },
    el("button", { type: "button", class: "thumb", title: "details", onclick: () => openDetail(index) }, img),
    el("div", { class: "info" },
      el("div", {}, el("strong", {}, ev.label), ` on ${ev.camera}`, ` · ${(ev.top_score * 100).toFixed(0)}%`,
        ev.node ? el("span", { class: "node" }, ` · node ${ev.node}`) : ""),
      el("div", { class: "muted" }, `${fmtTime(ev.start)} · ${span}`,
        ev.zones.length ? ` · zones: ${ev.zones.join(", ")}` : "")),
    el("label", {}, reviewed, " reviewed"),
    el("label", {}, retain, " retain"),
    el("button", { type: "button", onclick: () => openDetail(index, true) }, "clip"));
}

function toEpoch(value) { return value ? String(new Date(value).getTime() / 1000) : ""; }

function filterParams() {
  const f = state.filters;
  const params = new URLSearchParams({ limit: PAGE_SIZE, offset: state.eventsOffset });
  for (const k of ["camera", "node", "label", "zone"]) if (f[k]) params.set(k, f[k]);
  if (f.min_score) params.set("min_score", String(Number(f.min_score) / 100));
  if (f.after) params.set("after", toEpoch(f.after));
  if (f.before) params.set("before", toEpoch(f.before));
  if (f.unreviewed) params.set("reviewed", "false");
  return params;
}

let loads = 0;  // loads started: an answer to an older one (other filters, another page) is dropped

export async function loadEvents() {
  fillCameraFilter();
  const load = ++loads;
  let page;
  try { page = await api(`/api/events?${filterParams()}`); } catch (e) { return; }
  if (load !== loads) return;
  review.missed = false;
  state.eventsTotal = page.total;
  const open = openEvent();
  review.items = page.items;
  if (open) {  // the open event keeps its place (or the detail closes when this page no longer has it)
    review.current = page.items.findIndex((e) => e.id === open.id);
    if (review.current < 0) closeDetail();
  }
  $("#events").replaceChildren(...page.items.map(eventItem));
  $("#events-empty").classList.toggle("hidden", page.items.length > 0);
  const last = Math.min(page.offset + page.items.length, page.total);
  $("#events-range").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "";
}

export function eventsChanged() {
  // events arrive in bursts; reload the first page at most once a second, and not under an open
  // detail: that list stays as the user saw it until the detail closes
  if (state.page !== "events" || state.eventsOffset !== 0 || state.eventsTimer) return;
  if (review.current >= 0) { review.missed = true; return; }
  state.eventsTimer = setTimeout(() => {
    state.eventsTimer = null;
    if (review.current >= 0) review.missed = true;  // a detail opened meanwhile
    else if (state.page === "events") loadEvents();
  }, 1000);
}

export function fillCameraFilter() {
  const select = $("#filter-camera");
  const cams = state.status ? Object.keys(state.status.cameras).sort() : [];
  if (select.options.length === cams.length + 1) return;
  const value = select.value;
  select.replaceChildren(el("option", { value: "" }, "all cameras"), ...cams.map((c) => el("option", { value: c }, c)));
  select.value = value;
}

// ---------------------------------------------------------------- detail

function drawPath(ev) {
  const img = $("#detail-snapshot");
  const canvas = $("#detail-path");
  const w = img.clientWidth, h = img.clientHeight, dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const path = (ev.data && ev.data.path) || [];
  canvas.dataset.points = String(path.length);
  if (path.length < 1) return;
  ctx.strokeStyle = "#3d8bfd";
  ctx.lineWidth = 3;
  ctx.lineJoin = "round";
  ctx.beginPath();
  path.forEach(([, x, y], i) => (i ? ctx.lineTo(x * w, y * h) : ctx.moveTo(x * w, y * h)));
  ctx.stroke();
  const dot = (p, fill) => { ctx.beginPath(); ctx.arc(p[1] * w, p[2] * h, 5, 0, Math.PI * 2); ctx.fillStyle = fill; ctx.fill(); };
  dot(path[0], "#2fb56a");                 // where it was first seen
  dot(path[path.length - 1], "#e5484d");   // where it was last seen
}

async function openDetail(index, play = false) {
  const ev = review.items[index];
  if (!ev) return;
  review.current = index;
  const box = $("#player");
  box.classList.remove("hidden");
  $("#detail-title").textContent = `${ev.label} on ${ev.camera} · ${(ev.top_score * 100).toFixed(0)}%` +
    (ev.node ? ` · node ${ev.node}` : "");
  $("#detail-info").textContent = `${fmtTime(ev.start)} → ${ev.end ? fmtTime(ev.end) : "ongoing"}` +
    (ev.zones.length ? ` · zones: ${ev.zones.join(", ")}` : "") + ` · track ${ev.data.track_id ?? "?"}`;
  $("#detail-reviewed").checked = ev.reviewed;
  $("#detail-retain").checked = ev.retained;
  const img = $("#detail-snapshot");
  img.onload = () => drawPath(ev);
  // on a coordinator the snapshot stays on its node (the list says which): no broken picture
  img.onerror = () => { if (ev.node && review.items[review.current] === ev) $("#detail-stage").classList.add("hidden"); };
  if (ev.has_snapshot) img.src = eventUrl(ev.id, "/snapshot.jpg");
  else { img.removeAttribute("src"); drawPath(ev); }
  $("#detail-stage").classList.toggle("hidden", !ev.has_snapshot);
  const video = $("#clip");
  $("#clip-error").textContent = "";
  video.src = eventUrl(ev.id, "/clip.mp4");
  if (play) video.play().catch(() => {});
  box.scrollIntoView({ block: "nearest" });
  $("#player-close").focus({ preventScroll: true });
}

export function closeDetail() {
  const v = $("#clip");
  v.pause();
  v.removeAttribute("src");
  v.load();
  $("#player").classList.add("hidden");
  review.current = -1;
  if (review.missed) {  // what came while it was open
    review.missed = false;
    eventsChanged();
  }
}

function onKey(ev) {
  if (state.page !== "events" || ev.target.closest("input, select, textarea")) return;
  const cur = review.items[review.current];
  if (ev.key === "Escape" && review.current >= 0) closeDetail();
  else if (ev.key === "j" || (ev.key === "ArrowDown" && review.current >= 0)) {
    ev.preventDefault();
    openDetail(Math.min(review.current + 1, review.items.length - 1));
  } else if (ev.key === "k" || (ev.key === "ArrowUp" && review.current >= 0)) {
    ev.preventDefault();
    openDetail(Math.max(review.current - 1, 0));
  } else if (ev.key === "r" && cur) setMark(cur, "reviewed", !cur.reviewed);
}

export function initReview() {
  $("#event-filters").addEventListener("submit", (e) => {
    e.preventDefault();
    const data = Object.fromEntries(new FormData(e.target));
    state.filters = data;
    state.eventsOffset = 0;
    loadEvents();
  });
  $("#events-prev").addEventListener("click", () => {
    state.eventsOffset = Math.max(0, state.eventsOffset - PAGE_SIZE);
    loadEvents();
  });
  $("#events-next").addEventListener("click", () => {
    if (state.eventsOffset + PAGE_SIZE < state.eventsTotal) { state.eventsOffset += PAGE_SIZE; loadEvents(); }
  });
  $("#events-mark-page").addEventListener("click", async () => {
    const ids = review.items.filter((e) => !e.reviewed).map((e) => e.id);
    if (!ids.length) return;
    try { await api("/api/events/reviewed", { method: "POST", json: { ids, reviewed: true } }); } catch (e) { return; }
    loadEvents();
  });
  $("#player-close").addEventListener("click", closeDetail);
  $("#clip").addEventListener("error", async () => {
    const src = $("#clip").getAttribute("src");
    if (!src) return;
    // on a coordinator the clip may be on a node it cannot fetch from yet: say that, not "no recording"
    const ev = review.items[review.current];
    const problem = ev && ev.node ? await mediaProblem(src) : "";
    if ($("#clip").getAttribute("src") !== src) return;
    $("#clip-error").textContent = problem ? `no clip here: ${problem}` : "no recording covers this event";
  });
  $("#detail-reviewed").addEventListener("change", () => {
    const ev = review.items[review.current];
    if (ev) setMark(ev, "reviewed", $("#detail-reviewed").checked);
  });
  $("#detail-retain").addEventListener("change", () => {
    const ev = review.items[review.current];
    if (ev) setMark(ev, "retained", $("#detail-retain").checked);
  });
  $("#detail-prev").addEventListener("click", () => openDetail(Math.max(review.current - 1, 0)));
  $("#detail-next").addEventListener("click", () => openDetail(Math.min(review.current + 1, review.items.length - 1)));
  window.addEventListener("resize", () => { const ev = review.items[review.current]; if (ev) drawPath(ev); });
  document.addEventListener("keydown", onKey);
}
