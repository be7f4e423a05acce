"use strict";
const $ = (id) => document.getElementById(id);
const fmt = (x) => (Math.abs(x) >= 0.01 || x === 0 ? x.toFixed(3) : x.toExponential(2));

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(`${body.error}: ${body.detail}`);
  return body;
}

function itemLine(item) {
  const li = document.createElement("li");
  li.textContent = item.text || "(no text)";
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = ` ${item.item_id}` + (item.score !== undefined ? ` · ${fmt(item.score)}` : "");
  li.append(id);
  return li;
}

function fill(list, items) { list.replaceChildren(...items.map(itemLine)); }

async function showUser(event) {
  event?.preventDefault();
  const user = $("user-id").value.trim();
  $("user-error").textContent = "";
  try {
    const history = await api(`/v1/users/${encodeURIComponent(user)}/history`);
    fill($("history"), history.items.slice().reverse().slice(0, 30));
    const recs = await api("/v1/recommend", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user_id: user, k: Number($("k").value) || 10 }),
    });
    $("recs").tBodies[0].replaceChildren(...recs.items.map(recRow));
  } catch (err) { $("user-error").textContent = err.message; }
}

function recRow(rec, i) {
  const tr = document.createElement("tr");
  const cell = (className, ...children) => {
    const td = document.createElement("td");
    td.className = className;
    td.append(...children);
    tr.append(td);
  };
  // One "name value" pair a line, never broken inside, so the numbers line up down the table.
  const pairs = (entries) => entries.map(([name, value]) => {
    const div = document.createElement("div");
    div.className = "pair";
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = value;
    div.append(`${name} `, num);
    return div;
  });
  const item = itemLine({ text: rec.text, item_id: rec.item_id });  // its score has a column
  cell("num", String(i + 1));
  cell("", ...item.childNodes);
  cell("num", fmt(rec.score));
  cell("", ...pairs(Object.entries(rec.scores).map(([t, v]) => [t, fmt(v)])));
  cell("", ...pairs(rec.because.map((b) => [b.item_id, b.similarity.toFixed(2)])));
  return tr;
}

async function search(event) {
  event.preventDefault();
  const q = encodeURIComponent($("query").value);
  try { fill($("search-results"), (await api(`/v1/search?q=${q}&k=10`)).items); }
  catch (err) { $("search-results").replaceChildren(itemLine({ text: err.message, item_id: "" })); }
}

async function addItem(event) {
  event.preventDefault();
  const id = $("new-id").value.trim(), text = $("new-text").value.trim();
  try {
    await api("/v1/items", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-API-Key": $("api-key").value },
      body: JSON.stringify({ items: [{ item_id: id, text }] }),
    });
    $("item-status").textContent = `added ${id}`;
    fill($("new-search"), (await api(`/v1/search?q=${encodeURIComponent(text)}&k=5`)).items);
    fill($("new-similar"),
      (await api(`/v1/similar-items?item_id=${encodeURIComponent(id)}&k=5`)).items);
  } catch (err) { $("item-status").textContent = err.message; }
}

async function start() {
  try {
    const health = await api("/v1/health");
    $("health").textContent = `${health.items} items · ${health.users} users · ` +
      `tasks: ${health.tasks.join(", ")}`;
    const users = await api("/v1/users?limit=50");
    $("user-list").replaceChildren(...users.users.map((u) => new Option(u.user_id)));
    if (users.users.length) { $("user-id").value = users.users[0].user_id; showUser(); }
  } catch (err) { $("health").textContent = err.message; }
}

$("user-form").addEventListener("submit", showUser);
$("search-form").addEventListener("submit", search);
$("item-form").addEventListener("submit", addItem);
start();
