// camfleet web UI, shared helpers: state, DOM building, API requests. Plain ES modules, no build step.

export const TOKEN_KEY = "camfleet_token";
export const PAGE_SIZE = 20;
export const state = {
  token: localStorage.getItem(TOKEN_KEY) || "",
  status: null,
  page: "live",
  eventsOffset: 0,
  eventsTotal: 0,
  filters: {},
  selected: null,
  ws: null,
  wsDelay: 500,
  eventsTimer: null,
};

export const $ = (sel) => document.querySelector(sel);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

// ---------------------------------------------------------------- token and requests

export function setCookie(token) {
  // <img> and <video> requests cannot carry a header: reads also accept this cookie
  document.cookie = `${TOKEN_KEY}=${encodeURIComponent(token)}; path=/; SameSite=Strict`;
}

export function saveToken(token) {
  state.token = token;
  localStorage.setItem(TOKEN_KEY, token);
  setCookie(token);
}

export function askToken(message) {
  const dialog = $("#token-dialog");
  $("#token-error").textContent = message || "";
  if (!dialog.open) dialog.showModal();
}

export class ApiError extends Error {
  constructor(status, body) {
    super(`HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { ...options, headers });
  let body = null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) body = await response.json();
  if (response.status === 401) askToken(state.token ? "That token was not accepted." : "");
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export function fmtTime(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleString() : "";
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
