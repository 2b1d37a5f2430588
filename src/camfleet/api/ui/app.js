// camfleet web UI: plain JavaScript modules, no build step, no external resources.
import { closeCamera, initCamera, openCamera, renderState } from "./camera.js";
import { $, api, ApiError, askToken, el, fmtBytes, fmtTime, saveToken, setCookie, state } from "./core.js";
import { closeDetail, eventsChanged, fillCameraFilter, initReview, loadEvents } from "./review.js";
import { fillCameras, initRecordings, openRecordings, recordingsCamera } from "./recordings.js";
import { closeNodes, detectFleet, isFleet, mediaProblem, nodeText, openNodes, placementText } from "./fleet.js";

// ---------------------------------------------------------------- pages

// pages are addressed by the URL's hash: #live, #camera/NAME, #recordings/NAME, #events, ...
const PAGES = ["live", "camera", "events", "recordings", "cameras", "system", "nodes"];

function route() {
  const [page, arg] = location.hash.slice(1).split("/");
  const known = PAGES.includes(page) && (page !== "nodes" || isFleet());
  show(known ? page : "live", arg ? decodeURIComponent(arg) : null);
}

function show(page, arg = null) {
  if (state.page === "camera" && page !== "camera") closeCamera();
  if (state.page === "events" && page !== "events") closeDetail();
  if (state.page === "nodes" && page !== "nodes") closeNodes();
  state.page = page;
  const tab = page === "camera" ? "live" : page;
  for (const b of document.querySelectorAll("button.tab")) {
    b.classList.toggle("active", b.dataset.page === tab);
    b.setAttribute("aria-current", b.dataset.page === tab ? "page" : "false");
  }
  for (const s of document.querySelectorAll("section.page")) s.classList.toggle("hidden", s.id !== `page-${page}`);
  if (page === "camera" && arg) openCamera(arg);
  if (page === "recordings") openRecordings(arg);
  if (page === "events") loadEvents();
  if (page === "cameras") loadCameras();
  if (page === "system") { renderSystem(); loadStorage(); }
  if (page === "nodes") openNodes();
}

// ---------------------------------------------------------------- live grid

function frameUrl(name) {
  return $("#use-mjpeg").checked
    ? `/api/cameras/${encodeURIComponent(name)}/mjpeg?fps=5`
    : `/api/cameras/${encodeURIComponent(name)}/frame.jpg?t=${Date.now()}`;
}

// only tiles on the screen fetch frames (32 cameras: the server encodes what is seen, not all)
const visibility = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const img = entry.target;
    img.dataset.visible = entry.isIntersecting ? "1" : "";
    if (entry.isIntersecting && img.dataset.waiting === "1") refreshImage(img);
  }
});

const PROBLEM_RETRY_MS = 2000;   // a tile whose node cannot serve its picture asks again this often
const timers = new WeakMap();     // img -> its next refresh (one at a time: no second chain of requests)

function refreshLater(img, ms) {
  clearTimeout(timers.get(img));
  timers.set(img, setTimeout(() => refreshImage(img), ms));
}

function refreshImage(img) {
  clearTimeout(timers.get(img));
  if (!img.isConnected) return;
  // a coordinator whose node cannot serve the picture yet: ask again less often (the note says why)
  const since = Date.now() - Number(img.dataset.problemAt || 0);
  if (img.dataset.problem && since < PROBLEM_RETRY_MS) { refreshLater(img, PROBLEM_RETRY_MS - since); return; }
  if (img.dataset.visible !== "1") { img.dataset.waiting = "1"; return; }
  img.dataset.waiting = "";
  img.src = frameUrl(img.dataset.camera);
}

function makeCard(name) {
  const img = el("img", { alt: name, dataset: { camera: name } });
  visibility.observe(img);
  img.addEventListener("load", () => {
    img.dataset.loaded = "1";
    showProblem(img, "");
    if (!$("#use-mjpeg").checked) refreshLater(img, 1000);
  });
  img.addEventListener("error", async () => {
    const src = img.src;
    const problem = isFleet() ? await mediaProblem(src) : "";
    if (img.src !== src) return;   // asked again meanwhile (its node changed): that answer counts
    if (isFleet()) showProblem(img, problem);
    refreshLater(img, PROBLEM_RETRY_MS);
  });
  const open = el("a", { href: `#camera/${encodeURIComponent(name)}`, class: "open", title: `open ${name}` }, img,
    el("p", { class: "media-note hidden", role: "status" }));
  const card = el("div", { class: "card", dataset: { camera: name } }, open,
    el("div", { class: "meta" }, el("strong", {}, name),
      el("span", { class: "state" }), el("span", { class: "fps muted" })));
  return card;
}

// on a coordinator: why the tile has no picture (e.g. "node n2 unreachable since ...")
function showProblem(img, problem) {
  const note = img.parentElement && img.parentElement.querySelector(".media-note");
  if (!note) return;
  img.dataset.problem = problem;
  img.dataset.problemAt = problem ? String(Date.now()) : "";
  img.classList.toggle("no-media", Boolean(problem));
  note.textContent = problem ? `No live picture here: ${problem}` : "";
  note.classList.toggle("hidden", !problem);
  // its node does not answer (killed, cut off): the tile says so now, not once the status goes stale
  const card = img.closest(".card");
  const down = /\bunreachable\b/.test(problem);
  if (card && (card.dataset.unreachable === "1") !== down) {
    card.dataset.unreachable = down ? "1" : "";
    renderGrid();
  }
}

function renderGrid() {
  const grid = $("#grid");
  const cameras = state.status ? Object.values(state.status.cameras).filter((c) => c.enabled) : [];
  const names = new Set(cameras.map((c) => c.name));
  for (const card of [...grid.children]) if (!names.has(card.dataset.camera)) card.remove();
  for (const cam of cameras.sort((a, b) => a.name.localeCompare(b.name))) {
    let card = grid.querySelector(`.card[data-camera="${CSS.escape(cam.name)}"]`);
    if (!card) {
      card = makeCard(cam.name);
      grid.append(card);
      refreshImage(card.querySelector("img"));
    }
    if (isFleet()) {
      // where the camera runs (it changes when a node is drained or dies)
      let node = card.querySelector(".node");
      if (!node) { node = el("span", { class: "node" }); card.querySelector(".meta strong").after(node); }
      node.textContent = nodeText(cam.node);
      node.title = cam.node || "";
      const moved = card.dataset.node !== undefined && card.dataset.node !== (cam.node || "");
      card.dataset.node = cam.node || "";
      // moved to another node (its old one drained or dead): its picture comes from there now, at
      // once (an MJPEG stream from a dead node would stay frozen, a failing tile would wait its turn)
      if (moved) { const img = card.querySelector("img"); showProblem(img, ""); refreshImage(img); }
    }
    const st = card.querySelector(".state");
    const down = card.dataset.unreachable === "1";
    st.textContent = down ? "node unreachable" : stateText(cam);
    st.className = `state state-${down ? "unresponsive" : cam.state}`;
    // a silent node's last rates are not today's: none shown
    card.querySelector(".fps").textContent = down || cam.state === "unresponsive" ? "" :
      `${cam.decode_fps.toFixed(1)} fps · ${cam.processed_fps.toFixed(1)} analysed` +
      (cam.corrupt_fps > 0 ? ` · ${cam.corrupt_fps.toFixed(1)} corrupt/s` : "");
    card.title = cam.last_error || cam.reason || "";
    card.classList.toggle("unresponsive", down || cam.state === "unresponsive");
  }
  $("#grid-empty").classList.toggle("hidden", cameras.length > 0);
}

// ---------------------------------------------------------------- events


// "ended" (a file source played to its end) says when; every other state as is
function stateText(cam) {
  return cam.state === "ended" && cam.ended_at ? `ended ${fmtTime(cam.ended_at)}` : cam.state;
}

// ---------------------------------------------------------------- cameras editor

function showIssues(list, issues) {
  list.replaceChildren(...issues.map((i) => el("li", {},
    `${i.path || "(config)"}: ${i.message}${i.suggestion ? ` (${i.suggestion})` : ""}`)));
}

function fillEditor(name, cfg, isNew) {
  state.selected = isNew ? null : name;
  $("#editor-title").textContent = isNew ? "New camera" : `Camera ${name}`;
  $("#cam-name").value = name || "";
  $("#cam-name").readOnly = !isNew;
  const sources = (cfg && cfg.sources) || [];
  const detect = sources.find((s) => (s.roles || []).includes("detect")) || sources[0];
  $("#cam-url").value = detect ? detect.url : "";
  $("#cam-enabled").checked = !cfg || cfg.enabled !== false;
  const zonesLink = $("#cam-zones-link");
  zonesLink.classList.toggle("hidden", isNew || !name);
  zonesLink.href = `#camera/${encodeURIComponent(name || "")}`;
  $("#cam-json").value = JSON.stringify(cfg || { sources: [{ url: "", roles: ["detect", "record"] }] }, null, 2);
  $("#cam-issues").replaceChildren();
  for (const li of document.querySelectorAll("#camera-list li")) li.classList.toggle("selected", li.dataset.camera === name);
  renderPlacement();
}

// Fleet mode: the node each camera runs on, as /api/cameras said after the last change (an apply
// places at once), then as every status push says (a drain or a lost node moves it later).
const placements = new Map();

function placementFromStatus() {
  if (!isFleet() || !state.status) return;
  for (const cam of Object.values(state.status.cameras)) placements.set(cam.name, { node: cam.node || null,
    text: cam.node ? `runs on ${cam.node} (${stateText(cam)}${cam.reason ? `: ${cam.reason}` : ""})`
      : `runs nowhere: ${cam.reason || "not placed"}` });
  for (const li of document.querySelectorAll("#camera-list li[data-camera]")) {
    const p = placements.get(li.dataset.camera);
    const node = li.querySelector(".node");
    if (p && node) node.textContent = nodeText(p.node);
  }
  renderPlacement();
}

// the editor says where the camera it shows runs (nothing on a single node, where it runs here)
function renderPlacement() {
  const out = $("#cam-placement");
  const p = isFleet() && state.selected ? placements.get(state.selected) : null;
  out.classList.toggle("hidden", !isFleet() || !state.selected);
  out.textContent = !state.selected ? "" : p ? p.text : "not applied yet: Apply places it on a node";
  out.dataset.node = p && p.node ? p.node : "";
}

async function loadCameras() {
  let cams, changes;
  try { [cams, changes] = await Promise.all([api("/api/cameras"), api("/api/changes")]); } catch (e) { return; }
  for (const c of cams) {
    if (!isFleet() || c.pending === "add") continue;   // staged, never applied: placed by the next apply
    const known = placements.get(c.name);
    placements.set(c.name, known && known.node === (c.node || null) ? known
      : { node: c.node || null, text: c.node ? `runs on ${c.node}` : "runs nowhere (not placed)" });
  }
  $("#camera-list").replaceChildren(...cams.map((c) => el("li", {
    dataset: { camera: c.name },
    class: c.name === state.selected ? "selected" : "",
    onclick: () => fillEditor(c.name, c.staged || c.config, false),
  }, c.name, isFleet() ? el("span", { class: "node muted" }, nodeText(c.node)) : "",
  c.pending !== "none" ? el("span", { class: "badge" }, c.pending) : "")));
  renderPlacement();
  $("#changes").replaceChildren(...changes.changes.map((ch) => el("li", { dataset: { camera: ch.camera } },
    `${ch.action} ${ch.camera}`)));
  if (!changes.changes.length) $("#changes").append(el("li", { class: "muted" }, "none"));
  const badge = $("#pending-badge");
  badge.textContent = changes.changes.length;
  badge.classList.toggle("hidden", changes.changes.length === 0);
}

async function stageCamera(event) {
  event.preventDefault();
  const issues = $("#cam-issues");
  const name = $("#cam-name").value.trim();
  let cfg;
  try { cfg = JSON.parse($("#cam-json").value || "{}"); } catch (e) {
    showIssues(issues, [{ path: "", message: `not valid JSON: ${e.message}` }]);
    return;
  }
  const url = $("#cam-url").value.trim();
  if (url) {
    cfg.sources = Array.isArray(cfg.sources) && cfg.sources.length ? cfg.sources : [{ roles: ["detect"] }];
    const detect = cfg.sources.find((s) => (s.roles || []).includes("detect")) || cfg.sources[0];
    detect.url = url;
  }
  cfg.enabled = $("#cam-enabled").checked;
  try {
    await api(`/api/cameras/${encodeURIComponent(name)}`, { method: "PUT", json: cfg });
    issues.replaceChildren(el("li", { class: "muted" }, "staged; apply to run it"));
    state.selected = name;
    await loadCameras();
  } catch (e) {
    if (e.body && e.body.issues) showIssues(issues, e.body.issues);
    else if (e.body && e.body.detail) showIssues(issues, [{ path: "", message: JSON.stringify(e.body.detail) }]);
  }
}

async function deleteCamera() {
  const name = $("#cam-name").value.trim();
  if (!name) return;
  try { await api(`/api/cameras/${encodeURIComponent(name)}`, { method: "DELETE" }); } catch (e) { /* shown by 401 */ }
  fillEditor("", null, true);
  await loadCameras();
}

async function applyChanges() {
  const out = $("#apply-result");
  out.className = "muted";
  out.textContent = "applying…";
  try {
    const r = await api("/api/apply", { method: "POST" });
    out.textContent = `applied (generation ${r.generation})` +
      (r.added.length ? `; added ${r.added.join(", ")}` : "") +
      (r.removed.length ? `; removed ${r.removed.join(", ")}` : "") +
      (r.restarted.length ? `; restarted ${r.restarted.join(", ")}` : "") +
      (r.errors.length ? `; ${r.errors.join("; ")}` : "") + placementText(r);
    out.dataset.applied = String(r.generation);
  } catch (e) {
    out.className = "error";
    if (e.body && e.body.issues) {
      out.textContent = "not applied: the configuration is invalid";
      showIssues($("#cam-issues"), e.body.issues);
    } else if (e.body && e.body.errors) {
      out.textContent = `not applied: ${e.body.errors.join("; ")}`;
    } else {
      out.textContent = `not applied (${e.message})`;
    }
  }
  await loadCameras();
}

// ---------------------------------------------------------------- system

function row(...cells) {
  return el("tr", {}, ...cells.map((c) => el("td", {}, c === null || c === undefined ? "" : c)));
}

function renderSystem() {
  const st = state.status;
  if (!st || state.page !== "system") return;
  $("#node-info").textContent = `${isFleet() ? "coordinator" : "node"} ${st.node} · pid ${st.pid} · up since ${fmtTime(st.started_at)}` +
    ` · configuration generation ${st.reload.generation}` + (st.reload.ok ? "" : ` · last reload failed: ${st.reload.errors.join("; ")}`);
  const cams = Object.values(st.cameras);
  $("#camera-table tbody").replaceChildren(...cams.map((c) => row(c.name, stateText(c), c.decode_fps.toFixed(1),
    c.processed_fps.toFixed(1), c.skipped_fps.toFixed(1), (c.corrupt_fps ?? 0).toFixed(1), c.detector_rps.toFixed(1), c.inference_ms.toFixed(1),
    c.restarts, c.last_error)));
  const procs = [...Object.values(st.detectors), ...cams.flatMap((c) => Object.values(c.processes))];
  $("#process-table tbody").replaceChildren(...procs.map((p) => row(p.name, p.kind, p.state, p.pid,
    p.cpu_percent.toFixed(0), p.rss_mb.toFixed(0), p.restarts, p.last_error)));
}

async function loadStorage() {
  let s;
  try { s = await api("/api/storage"); } catch (e) { return; }
  $("#storage-info").textContent = `${fmtBytes(s.recordings_dir_free_bytes)} free of ` +
    `${fmtBytes(s.recordings_dir_total_bytes)} · ${s.events} events stored`;
  $("#storage-table tbody").replaceChildren(...Object.entries(s.cameras).map(([name, c]) =>
    row(name, c.segments, fmtBytes(c.bytes))));
}

// ---------------------------------------------------------------- WebSocket

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const query = state.token ? `?token=${encodeURIComponent(state.token)}` : "";
  const ws = new WebSocket(`${proto}://${location.host}/api/ws${query}`);
  state.ws = ws;
  ws.onopen = () => {
    state.wsDelay = 500;
    $("#conn").textContent = "live";
    $("#conn").className = "conn on";
  };
  ws.onmessage = (msg) => {
    const data = JSON.parse(msg.data);
    if (data.type === "snapshot") {
      state.status = data.status;
      renderGrid();
      renderSystem();
      if (state.page === "camera") renderState();
      if (state.page === "cameras") placementFromStatus();
      if (state.page === "events") fillCameraFilter();
      if (state.page === "recordings") {
        fillCameras();
        if (!recordingsCamera()) openRecordings(null);
      }
    } else if (data.type === "event") {
      eventsChanged();
    }
  };
  ws.onclose = () => {
    $("#conn").textContent = "offline";
    $("#conn").className = "conn off";
    if (state.ws !== ws) return;
    setTimeout(connect, state.wsDelay);
    state.wsDelay = Math.min(state.wsDelay * 2, 10000);
  };
}

function reconnect() {
  const old = state.ws;
  state.ws = null;
  if (old) old.close();
  connect();
}

// ---------------------------------------------------------------- start

async function start() {
  for (const b of document.querySelectorAll("button.tab")) b.addEventListener("click", () => { location.hash = `#${b.dataset.page}`; });
  window.addEventListener("hashchange", route);
  initCamera();
  initRecordings();
  $("#token-button").addEventListener("click", () => askToken(""));
  $("#token-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    saveToken($("#token-input").value.trim());
    try {
      const me = await api("/api/me");
      $("#token-dialog").close();
      await detectFleet(me.role);
      reconnect();
      route();
    } catch (err) { /* askToken already says why */ }
  });
  $("#use-mjpeg").addEventListener("change", () => {
    for (const img of document.querySelectorAll("#grid img")) refreshImage(img);
  });
  initReview();
  $("#camera-new").addEventListener("click", () => fillEditor("", null, true));
  $("#editor").addEventListener("submit", stageCamera);
  $("#cam-delete").addEventListener("click", deleteCamera);
  $("#apply").addEventListener("click", applyChanges);
  $("#discard").addEventListener("click", async () => {
    try { await api("/api/changes/discard", { method: "POST" }); } catch (e) { /* shown by 401 */ }
    $("#apply-result").textContent = "";
    await loadCameras();
  });
  fillEditor("", null, true);
  setInterval(() => { if (state.page === "system") loadStorage(); }, 10000);
  if (state.token) setCookie(state.token);
  // with a token kept from before, the page loads while the token is checked (one round trip less)
  const early = Boolean(state.token);
  if (early) { connect(); route(); }
  let me;
  try {
    me = await api("/api/me");
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) console.error(e);
    // the token dialog is open; connect once a token is saved
    if (early) { const ws = state.ws; state.ws = null; if (ws) ws.close(); }
    return;
  }
  // a coordinator answers /api/fleet/nodes: the fleet's pages (a node: 404, the page stays as it is)
  const fleet = await detectFleet(me.role);
  if (!early) { connect(); route(); } else if (fleet) route();
}

start();
