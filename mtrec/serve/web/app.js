"use strict";
const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ formatting
const SIG3 = new Intl.NumberFormat("en",
  { minimumSignificantDigits: 3, maximumSignificantDigits: 3 });
const SUPER = { "-": "⁻", "+": "", 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶",
  7: "⁷", 8: "⁸", 9: "⁹" };
// Tasks whose score is a probability (shown as a percentage): the next item's softmax over
// the catalog and the binary behaviours.
const PROBABILITY = new Set(["next_item", "click", "like", "cart", "collect", "purchase"]);
const WHEN = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "short",
  timeZone: "UTC" });

/** A number to 3 significant digits, as people write it (1.23×10⁻⁵ when tiny or huge). */
function fmt(x) {
  if (typeof x !== "number" || !Number.isFinite(x)) return "–";
  const a = Math.abs(x);
  if (a === 0 || (a >= 1e-3 && a < 1e6)) return SIG3.format(x);
  const [mantissa, exp] = x.toExponential(2).split("e");
  return `${mantissa}×10${[...exp].map((c) => SUPER[c]).join("")}`;
}

const taskValue = (task, v) => (PROBABILITY.has(task) ? `${fmt(100 * v)}%` : fmt(v));
const taskName = (task) => task.replaceAll("_", " ");

function when(ts) {
  const t = document.createElement("time");
  if (ts === null || ts === undefined) { t.textContent = "time unknown"; return t; }
  const date = new Date(ts * 1000);
  t.dateTime = date.toISOString();
  t.textContent = `${WHEN.format(date)} UTC`;
  return t;
}

// ------------------------------------------------------------------ the API
class ApiError extends Error {
  constructor(status, reason, detail, scope) {
    let text = `HTTP ${status}${reason ? ` (${reason})` : ""}: ${detail}`;
    if (status === 401) {
      text = `HTTP 401: this server needs an API key with ${scope} scope: type it in the ` +
        `API key box at the top (the server said: ${detail})`;
    } else if (status === 403) {
      text = `HTTP 403: this API key lacks the ${scope} scope (the server said: ${detail})`;
    }
    super(text);
    this.status = status;
  }
}

/** ``path``'s JSON answer; every request carries the API key box's value as X-API-Key. */
async function api(path, { scope = "read", body, method } = {}) {
  const headers = {};
  const key = $("api-key").value;
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method: method || (body === undefined ? "GET" : "POST"),
      headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new Error(`could not reach the server (${err.message})`);
  }
  const raw = await response.text();
  let json = null;
  try { json = JSON.parse(raw); } catch { /* not JSON: a proxy's page, say */ }
  if (!response.ok) {
    throw new ApiError(response.status, json?.error || response.statusText,
      json?.detail || raw.slice(0, 200) || "no detail", scope);
  }
  return json;
}

// ------------------------------------------------------------------ building blocks
function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children);
  return node;
}

/** An item's title, then its id in grey (and a score when given). */
function itemLabel(item) {
  const id = ` ${item.item_id}` + (item.score !== undefined ? ` · ${fmt(item.score)}` : "");
  return [el("span", "title", item.text || "(no text)"), el("span", "id", id)];
}

function fill(list, items) {
  list.replaceChildren(...items.map((item) => el("li", "", ...itemLabel(item))));
}

function historyRow(step) {
  const behaviors = el("span", "behaviors",
    ...(step.behaviors.length ? step.behaviors : ["?"]).map((b) => el("span", "chip", b)));
  return el("li", "", ...itemLabel(step), el("div", "meta", behaviors, when(step.ts)));
}

function recRow(rec, i) {
  const tr = document.createElement("tr");
  const cell = (className, label, ...children) => {
    const td = el("td", className, ...children);
    td.dataset.label = label;
    tr.append(td);
  };
  // One "name value" pair a line, the value never broken, so the numbers line up.
  const pair = (name, value, title) => {
    const div = el("div", "pair", el("span", "name", name), el("span", "num", value));
    if (title) div.title = title;
    return div;
  };
  const tasks = Object.entries(rec.scores);
  cell("num rank", "#", String(i + 1));
  cell("item", "item", ...itemLabel({ text: rec.text, item_id: rec.item_id }));
  cell("num score", "score", fmt(rec.score));
  // (a cold-start answer has neither per-task scores nor explanations)
  cell(tasks.length ? "tasks" : "tasks empty", "per task", ...(tasks.length
    ? tasks.map(([t, v]) => pair(taskName(t), taskValue(t, v), `${t} = ${v}`))
    : ["–"]));
  cell(rec.because.length ? "because" : "because empty", "because you saw",
    ...(rec.because.length
      ? rec.because.map((b) => pair(b.text || b.item_id, b.similarity.toFixed(2),
        `${b.item_id}: cosine similarity ${b.similarity.toFixed(3)}`))
      : ["–"]));
  return tr;
}

// ------------------------------------------------------------------ the user panel
let userRequest = 0;  // answers to an older request than the latest are dropped

function clearUser() {
  $("user-error").textContent = "";
  $("user-status").textContent = "";
  $("history").replaceChildren();
  $("history-note").textContent = "(latest first)";
  $("recs").tBodies[0].replaceChildren();
  $("policy-recs").tBodies[0].replaceChildren();
  $("recs-label").hidden = true;
}

let hasPolicy = false;  // the bundle has a ranking policy (GET /v1/health)

async function showUser(event) {
  event?.preventDefault();
  const user = $("user-id").value.trim();
  const k = Number($("k").value);
  const mine = ++userRequest;
  clearUser();
  $("user-status").textContent = "loading…";
  const [history, recs, policy] = await Promise.allSettled([
    api(`/v1/users/${encodeURIComponent(user)}/history`),
    api("/v1/recommend", { body: { user_id: user, k } }),
    hasPolicy ? api("/v1/recommend", { body: { user_id: user, k, policy: true } })
      : Promise.resolve(null),
  ]);
  if (mine !== userRequest) return;
  clearUser();
  const unknown = history.status === "rejected" && history.reason.status === 404;
  const failed = [history, recs].find((r) => r.status === "rejected" && !(r === history && unknown));
  if (failed) { $("user-error").textContent = failed.reason.message; return; }
  const { items, cold_start: cold } = recs.value;
  if (unknown) {
    $("history").replaceChildren(el("li", "none", `no history: ${user} is not a known user`));
  } else {
    const steps = history.value.items;
    $("history").replaceChildren(...steps.slice().reverse().slice(0, 30).map(historyRow));
    $("history-note").textContent = steps.length > 30
      ? `(latest 30 of ${steps.length}, latest first)` : "(latest first)";
  }
  $("recs").tBodies[0].replaceChildren(...items.map(recRow));
  $("policy-panel").hidden = !(policy.status === "fulfilled" && policy.value);
  if (!$("policy-panel").hidden) {
    $("policy-recs").tBodies[0].replaceChildren(...policy.value.items.map(recRow));
  }
  $("recs-label").hidden = !cold;
  $("recs-label").textContent = cold ? "cold start (trending)" : "";
  $("user-status").textContent = cold
    ? `${unknown ? "unknown user" : "no history"}: the cold-start list (trending items), ` +
      `${items.length} shown`
    : `${items.length} recommendations for ${user}`;
}

async function loadUsers() {
  try {
    const users = await api("/v1/users?limit=50");
    $("user-list").replaceChildren(...users.users.map((u) => new Option(u.user_id)));
    if (!$("user-id").value && users.users.length) $("user-id").value = users.users[0].user_id;
    if ($("user-id").value) await showUser();
  } catch (err) {
    clearUser();
    $("user-error").textContent = err.message;
  }
}

// ------------------------------------------------------------------ search and new items
async function search(event) {
  event.preventDefault();
  const q = encodeURIComponent($("query").value);
  $("search-error").textContent = "";
  $("search-results").replaceChildren();
  try { fill($("search-results"), (await api(`/v1/search?q=${q}&k=10`)).items); }
  catch (err) { $("search-error").textContent = err.message; }
}

async function addItem(event) {
  event.preventDefault();
  const id = $("new-id").value.trim(), text = $("new-text").value.trim();
  const status = $("item-status");
  status.className = "";
  status.textContent = "";
  $("new-search").replaceChildren();
  $("new-similar").replaceChildren();
  try {
    await api("/v1/items", { scope: "write:items", body: { items: [{ item_id: id, text }] } });
    status.textContent = `added ${id}`;
    fill($("new-search"), (await api(`/v1/search?q=${encodeURIComponent(text)}&k=5`)).items);
    fill($("new-similar"),
      (await api(`/v1/similar-items?item_id=${encodeURIComponent(id)}&k=5`)).items);
  } catch (err) {
    status.className = "error";
    status.textContent = err.message;
  }
}

async function start() {
  try {
    const health = await api("/v1/health");
    hasPolicy = Boolean(health.policy);
    $("health").textContent = `${health.items} items · ${health.users} users · ` +
      `tasks: ${health.tasks.join(", ")}` + (hasPolicy ? " · long-term policy" : "");
  } catch (err) { $("health").textContent = err.message; }
  await loadUsers();
}

$("key-form").addEventListener("submit", (event) => { event.preventDefault(); loadUsers(); });
$("user-form").addEventListener("submit", showUser);
$("search-form").addEventListener("submit", search);
$("item-form").addEventListener("submit", addItem);
start();
