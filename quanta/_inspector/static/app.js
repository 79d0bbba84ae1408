"use strict";
// The QuantaDB inspector's pages: plain JS, no build step. The token lives in an HttpOnly
// cookie set by the first page load (?token=...), so fetch() needs nothing more.
const $ = (id) => document.getElementById(id);
let entities = [];
let recordsOffset = 0;
const PAGE = 25;

function esc(v) {
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function table(columns, rows) {
  const head = "<tr>" + columns.map((c) => `<th>${esc(c)}</th>`).join("") + "</tr>";
  const body = rows.map((r) => "<tr>" + r.map((v) => `<td>${esc(v)}</td>`).join("") + "</tr>").join("");
  return `<table><thead>${head}</thead><tbody>${body}</tbody></table>`;
}

function kv(obj) {
  return table(["name", "value"], Object.entries(obj).map(([k, v]) => [k, v]));
}

function bars(title, pairs, width = 360) {
  // a small inline SVG bar chart of [label, number] pairs
  const max = Math.max(1, ...pairs.map((p) => p[1]));
  const h = 20 * pairs.length + 24;
  let svg = `<svg width="${width}" height="${h}" role="img" aria-label="${esc(title)}">`;
  svg += `<text x="4" y="14" font-size="12" font-weight="bold">${esc(title)}</text>`;
  pairs.forEach(([label, n], i) => {
    const y = 22 + i * 20;
    const w = Math.round(((width - 170) * n) / max);
    svg += `<text x="4" y="${y + 12}" font-size="11">${esc(label)}</text>`;
    svg += `<rect x="70" y="${y}" width="${w}" height="14" fill="#4a7fb0"></rect>`;
    svg += `<text x="${74 + w}" y="${y + 12}" font-size="11">${esc(n)}</text>`;
  });
  return svg + "</svg>";
}

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== "") url.searchParams.set(k, v);
  const r = await fetch(url, { credentials: "same-origin" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function loadEntities() {
  const d = await api("/api/entities");
  entities = d.entities;
  $("seq").textContent = d.seq;
  $("mode").textContent = d.read_only ? "(read-only open)" : "(writer)";
  let html = "";
  for (const e of entities) {
    html += `<div class="entity" data-entity="${esc(e.name)}"><h3>${esc(e.name)} <small>v${e.version}, ${e.count} records, key ${esc(e.primary_key)}</small></h3>`;
    html += table(["field", "type", "optional"], e.fields.map((f) => [f.name, f.type, f.optional]));
    if (e.indexes.length) html += table(["index", "fields", "unique", "multi", "state"], e.indexes.map((i) => [i.name, i.fields.join(", "), i.unique, i.multi, i.state]));
    html += "</div>";
  }
  $("entities").innerHTML = html || "<p>No entities stored.</p>";
  for (const sel of [$("records-entity"), $("query-entity")]) {
    const cur = sel.value;
    sel.innerHTML = entities.map((e) => `<option>${esc(e.name)}</option>`).join("");
    if (cur) sel.value = cur;
  }
}

async function loadRecords() {
  const entity = $("records-entity").value;
  if (!entity) return;
  try {
    const d = await api("/api/records", { entity, where: $("records-where").value, offset: recordsOffset, limit: PAGE });
    $("records").innerHTML = table(d.columns, d.rows);
    $("records-info").textContent = `rows ${d.offset + 1}-${d.offset + d.rows.length}`;
  } catch (err) {
    $("records").innerHTML = `<p class="error">${esc(err.message)}</p>`;
  }
}

async function runQuery() {
  $("query-error").textContent = "";
  try {
    const d = await api("/api/query", { entity: $("query-entity").value, where: $("query-where").value, order: $("query-order").value, limit: $("query-limit").value });
    $("query-timing").textContent = `${d.rows.length} rows in ${d.ms} ms (access ${d.access}${d.index ? ", index " + d.index : ""})`;
    $("query-explain").textContent = d.explain;
    $("query-rows").innerHTML = table(d.columns, d.rows);
  } catch (err) {
    $("query-error").textContent = err.message;
  }
}

async function loadEngine() {
  const s = await api("/api/engine");
  const levels = s.levels.map((lv) => [`L${lv.level}`, lv.bytes]);
  const cache = s.block_cache;
  const hits = cache.hits || 0, misses = cache.misses || 0;
  let html = `<div class="card">${bars("table bytes per level", levels)}</div>`;
  html += `<div class="card">${bars("bytes written", [["WAL", s.bytes_written_wal], ["flush", s.bytes_written_flush], ["compact", s.bytes_written_compaction]])}</div>`;
  html += `<div class="card">${bars("block cache", [["hits", hits], ["misses", misses]])}</div>`;
  html += table(["level", "files", "bytes"], s.levels.map((lv) => [lv.level, lv.files, lv.bytes]));
  const flat = Object.assign({}, s);
  delete flat.levels;
  flat.cache_hit_rate = hits + misses ? (hits / (hits + misses)).toFixed(3) : "n/a";
  html += kv(flat);
  $("engine").innerHTML = html;
}

async function loadBus() {
  const b = await api("/api/bus");
  let html = kv({ seq: b.seq, published: b.published, subscribers: b.subscribers, event_subscribers: b.event_subscribers, max_lag: b.max_lag, overflowed: b.overflowed });
  html += table(["kind", "from", "to", "lag", "capacity", "conflate", "done", "error"], b.taps.map((t) => [t.kind, t.lo, t.hi, t.lag, t.capacity, t.conflate, t.done, t.error]));
  $("bus").innerHTML = html;
}

async function loadSchema() {
  const s = await api("/api/schema");
  let html = table(["entity", "version", "class", "indexes"], Object.entries(s.schemas).map(([n, v]) => [n, v.version, v.class, v.indexes.map((i) => i.join(": ")).join(", ")]));
  html += "<h3>Running migration jobs</h3>" + (Object.keys(s.record_jobs).length ? kv(s.record_jobs) : "<p>none</p>");
  html += "<h3>Running index jobs</h3>" + (Object.keys(s.index_jobs).length ? kv(s.index_jobs) : "<p>none</p>");
  html += "<h3>Entities with records but no stored schema</h3><p>" + (s.untracked.length ? esc(s.untracked.join(", ")) : "none") + "</p>";
  $("schema").innerHTML = html;
}

const loaders = { entities: loadEntities, records: loadRecords, query: async () => {}, live: async () => {}, engine: loadEngine, bus: loadBus, schema: loadSchema };

async function show(page) {
  if (!loaders[page]) page = "entities";
  document.querySelectorAll(".page").forEach((p) => p.classList.toggle("active", p.id === "page-" + page));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  try { await loaders[page](); } catch (err) { $("page-" + page).insertAdjacentHTML("beforeend", `<p class="error">${esc(err.message)}</p>`); }
  document.body.dataset.loaded = page;
}

const seen = [];
function liveChart() {
  const last = seen.slice(-30);
  $("live-chart").innerHTML = bars("keys changed per commit (last 30)", last.map((c) => [String(c.seq), c.changes]), 420);
}

function startLive() {
  const es = new EventSource("/api/events");
  es.addEventListener("hello", (ev) => { $("live-seq").textContent = JSON.parse(ev.data).seq; document.body.dataset.live = "on"; });
  es.onmessage = (ev) => {
    const c = JSON.parse(ev.data);
    seen.push(c);
    $("live-seq").textContent = c.seq;
    $("seq").textContent = c.seq;
    $("live-count").textContent = seen.length;
    $("live-rows").insertAdjacentHTML("afterbegin", `<tr><td>${c.seq}</td><td>${c.changes}</td><td>${esc(c.origin)}</td><td>${new Date().toLocaleTimeString()}</td></tr>`);
    liveChart();
  };
}

window.addEventListener("hashchange", () => show(location.hash.slice(1)));
window.addEventListener("DOMContentLoaded", async () => {
  $("records-form").addEventListener("submit", (e) => { e.preventDefault(); recordsOffset = 0; loadRecords(); });
  $("records-prev").addEventListener("click", () => { recordsOffset = Math.max(0, recordsOffset - PAGE); loadRecords(); });
  $("records-next").addEventListener("click", () => { recordsOffset += PAGE; loadRecords(); });
  $("query-form").addEventListener("submit", (e) => { e.preventDefault(); runQuery(); });
  await loadEntities();
  startLive();
  await show(location.hash.slice(1) || "entities");
});
