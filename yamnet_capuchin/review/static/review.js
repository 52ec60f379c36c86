// yamcap review: plain JS, no build step. Talks to the JSON API of yamnet_capuchin/review/app.py.
"use strict";

const $ = (id) => document.getElementById(id);
const S = { all: [], view: [], pos: 0, statsTimer: null, pending: 0 };

function labelState(label) {
  if (!label) return "unlabelled";
  if (label === "capuchin") return "call";
  if (label === "other" || label.startsWith("other:")) return "other";
  return "unsure";
}
const fmt = (x, d = 2) => (x === null || x === undefined ? "-" : Number(x).toFixed(d));
const base = (f) => f.split(/[\\/]/).pop();

function status(text, error = false) {
  const el = $("status");
  el.textContent = text;
  el.className = "status" + (error ? " error" : "");
}

// the launch token (yamnet_capuchin/review/security.py): sent with every API request; POSTs are JSON
const TOKEN = (document.querySelector('meta[name="yamcap-token"]') || {}).content || "";

async function api(path, options = {}) {
  const headers = Object.assign({ "X-Yamcap-Token": TOKEN }, options.headers || {});
  if (options.method === "POST") {
    headers["Content-Type"] = "application/json";
    if (options.body === undefined) options = Object.assign({}, options, { body: "{}" });
  }
  const res = await fetch(path, Object.assign({}, options, { headers, credentials: "same-origin" }));
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) throw new Error((body && body.error) || `${res.status} ${res.statusText}`);
  return body;
}

async function loadCandidates(keepId) {
  S.all = await api("/api/candidates?sort=" + encodeURIComponent($("f-sort").value));
  const files = [...new Set(S.all.map((c) => c.file))].sort();
  const sel = $("f-file"), chosen = sel.value;
  sel.innerHTML = '<option value="">all files</option>' +
    files.map((f) => `<option value="${encodeURIComponent(f)}">${base(f)}</option>`).join("");
  sel.value = chosen;
  applyFilter(keepId);
}

function applyFilter(keepId) {
  const st = $("f-state").value, file = decodeURIComponent($("f-file").value || "");
  S.view = S.all.filter((c) => (st === "all" || labelState(c.label) === st) && (!file || c.file === file));
  let pos = keepId ? S.view.findIndex((c) => c.id === keepId) : -1;
  if (pos < 0) pos = S.view.findIndex((c) => !c.label);  // resume at the first unlabelled one
  S.pos = Math.max(0, pos);
  renderList();
  show(S.pos);
  renderProgress();
}

function renderProgress() {
  const done = S.all.filter((c) => c.label).length;
  $("progress-text").textContent = `${done} / ${S.all.length} labelled`;
  $("progress-bar").style.width = S.all.length ? `${(100 * done) / S.all.length}%` : "0";
}

function renderList() {
  const body = $("list").querySelector("tbody");
  body.innerHTML = S.view.map((c, i) => {
    const st = labelState(c.label);
    return `<tr data-i="${i}" id="row-${c.id}"><td>${fmt(c.score)}</td><td>${base(c.file)}</td>` +
      `<td>${fmt(c.start_s, 1)}</td><td class="l-${st}">${c.label || ""}</td></tr>`;
  }).join("");
}

function updateRow(c) {
  const row = $("row-" + c.id);
  if (!row) return;
  const cell = row.cells[3];
  cell.textContent = c.label || "";
  cell.className = "l-" + labelState(c.label);
  row.cells[2].textContent = fmt(c.start_s, 1);
}

function mediaUrl(kind, c) {
  const ext = kind === "image" ? "png" : "wav";
  return `/api/${kind}/${c.id}.${ext}?v=${fmt(c.start_s)}-${fmt(c.end_s)}`;
}

function show(i) {
  const has = S.view.length > 0;
  $("empty").hidden = has;
  $("card").hidden = !has;
  if (!has) { $("position").textContent = "0 / 0"; return; }
  S.pos = Math.min(Math.max(0, i), S.view.length - 1);
  const c = S.view[S.pos];
  $("position").textContent = `${S.pos + 1} / ${S.view.length}`;
  $("c-file").textContent = c.file;
  $("c-score").textContent = fmt(c.score, 3);
  $("c-source").textContent = c.source;
  const st = labelState(c.label);
  $("c-label").textContent = c.label || "unlabelled";
  $("c-label").className = "label-badge " + st;
  $("c-start").value = fmt(c.start_s);
  $("c-end").value = fmt(c.end_s);
  $("c-event-bounds").textContent = c.event_start_s !== null && c.event_start_s !== undefined
    ? `detected ${fmt(c.event_start_s)}-${fmt(c.event_end_s)} s` : "";
  if (c.label && labelState(c.label) === "other") $("c-kind").value = c.label;
  const img = $("c-image");
  img.src = mediaUrl("image", c);
  img.alt = `spectrogram of ${base(c.file)} ${fmt(c.start_s)}-${fmt(c.end_s)} s`;
  const audio = $("c-audio");
  audio.src = mediaUrl("audio", c);
  document.querySelectorAll("#list tr.current").forEach((r) => r.classList.remove("current"));
  const row = $("row-" + c.id);
  if (row) { row.classList.add("current"); row.scrollIntoView({ block: "nearest" }); }
  prefetch(S.pos + 1);
}

function prefetch(i) {
  const c = S.view[i];
  if (!c) return;
  new Image().src = mediaUrl("image", c);  // server renders and caches the PNG
  fetch(mediaUrl("audio", c), { headers: { "X-Yamcap-Token": TOKEN } }).catch(() => {});  // server decodes the recording into its cache
}

async function label(kind) {
  const c = S.view[S.pos];
  if (!c) return;
  let value = kind;
  if (kind === "other") {
    value = ($("c-kind").value || "other").trim().toLowerCase();
    if (value !== "other" && !value.startsWith("other:")) value = "other:" + value;
  }
  const body = { id: c.id, label: value };
  const a = parseFloat($("c-start").value), b = parseFloat($("c-end").value);
  if (!Number.isNaN(a) && Math.abs(a - c.start_s) > 1e-6) body.start_s = a;
  if (!Number.isNaN(b) && Math.abs(b - c.end_s) > 1e-6) body.end_s = b;
  const pos = S.pos;
  // move on at once (fast keyboard labelling); come back if the label was not saved
  if (S.pos + 1 < S.view.length) show(S.pos + 1);
  S.pending = (S.pending || 0) + 1;
  try {
    const res = await api("/api/labels", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    Object.assign(c, { label: res.candidate.label, start_s: res.candidate.start_s, end_s: res.candidate.end_s });
    updateRow(c);
    renderProgress();
    status(`saved: ${value} (${base(c.file)} ${fmt(c.start_s, 1)} s)`);
    if (S.view[S.pos] === c) show(S.pos);  // still shown (last one): show its new label
    scheduleStats();
  } catch (e) {
    status("not saved: " + e.message, true);
    show(pos);
  } finally {
    S.pending -= 1;
  }
}

function scheduleStats() {
  clearTimeout(S.statsTimer);
  S.statsTimer = setTimeout(loadStats, 300);
}

function precisionSvg(rows) {
  const W = 340, H = 150, L = 30, B = 20, T = 8, R = 8;
  const x = (t) => L + t * (W - L - R), y = (p) => T + (1 - p) * (H - T - B);
  const pts = rows.filter((r) => r.precision !== null);
  let svg = `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="precision against score threshold">`;
  svg += `<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#2c323a"/>`;
  for (const p of [0, 0.5, 1]) svg += `<text x="2" y="${y(p) + 3}">${p.toFixed(1)}</text>`;
  for (const t of [0, 0.25, 0.5, 0.75, 1]) svg += `<text x="${x(t) - 8}" y="${H - 6}">${t}</text>`;
  if (pts.length) {
    svg += `<polyline fill="none" stroke="#00c853" stroke-width="2" points="${pts.map((r) => `${x(r.threshold)},${y(r.precision)}`).join(" ")}"/>`;
    for (const r of pts) svg += `<circle cx="${x(r.threshold)}" cy="${y(r.precision)}" r="2.5" fill="#00c853"><title>score >= ${r.threshold}: precision ${fmt(r.precision)} (${r.calls}/${r.n})</title></circle>`;
  } else {
    svg += `<text x="${L + 10}" y="${H / 2}">label some events (call / not a call)</text>`;
  }
  return svg + "</svg>";
}

async function loadStats() {
  let s;
  try { s = await api("/api/stats"); } catch (e) { return; }
  $("precision").innerHTML = '<div class="small muted">precision of the events against score threshold</div>' +
    precisionSvg(s.precision);
  const p = s.progress;
  $("totals").innerHTML = `events: <b>${s.total_before}</b> before, <b>${s.total_after}</b> after removing ` +
    `those labelled not a call &middot; labels: ${p.call} call, ${p.other} not a call, ${p.unsure} unsure`;
  $("counts").querySelector("tbody").innerHTML = s.counts.map((r) =>
    `<tr><td>${base(r.file)}</td><td>${r.before}</td><td>${r.after}</td><td>${r.call}</td><td>${r.other}</td>` +
    `<td>${r.unsure}</td></tr>`).join("");
  showJob("extra", s.extra);
  showJob("retrain", s.retrain);
}

function showJob(kind, job) {
  if (!job) return;
  const el = $(kind === "extra" ? "extra-status" : "retrain-status");
  if (job.state === "running") el.textContent = `running (${fmt(job.seconds, 0)} s)...`;
  else if (job.state === "error") el.textContent = "error: " + job.message;
  else if (job.state === "done" && kind === "extra") el.textContent = `added ${job.result.added} picks`;
  else if (job.state === "done" && kind === "retrain") {
    const r = job.result;
    el.textContent = `done: ${r.total_old} events before, ${r.total_new} with the new model (${r.out_dir})`;
    const t = $("retrain-counts");
    t.hidden = false;
    t.querySelector("tbody").innerHTML = r.per_file.map((x) =>
      `<tr><td>${base(x.file)}</td><td>${x.old}</td><td>${x.labelled}</td><td>${x.new ?? "-"}</td></tr>`).join("");
  }
}

async function poll(kind, then) {
  const job = await api("/api/" + kind).catch(() => null);
  if (!job) return;
  showJob(kind, job);
  if (job.state === "running") setTimeout(() => poll(kind, then), 2000);
  else if (then) then(job);
}

async function startJob(kind) {
  try {
    const job = await api("/api/" + kind, { method: "POST" });
    showJob(kind, job);
    poll(kind, (j) => {
      if (kind === "extra" && j.state === "done") {
        const c = S.view[S.pos];
        loadCandidates(c && c.id);
      }
      loadStats();
    });
  } catch (e) {
    $(kind === "extra" ? "extra-status" : "retrain-status").textContent = "error: " + e.message;
  }
}

function onKey(e) {
  const t = e.target;
  if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) {
    if (t.id === "c-kind" && e.key === "Enter") { e.preventDefault(); label("other"); t.blur(); }
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const actions = {
    "1": () => label("capuchin"), "2": () => label("other"), "3": () => label("unsure"),
    ArrowLeft: () => show(S.pos - 1), ArrowRight: () => show(S.pos + 1),
    " ": () => { const a = $("c-audio"); if (a.paused) a.play().catch(() => {}); else a.pause(); },
  };
  if (actions[e.key]) { e.preventDefault(); actions[e.key](); }
}

function init() {
  // the launch token is now in a cookie: keep it out of the address bar and the history
  if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);
  document.addEventListener("keydown", onKey);
  $("prev").onclick = () => show(S.pos - 1);
  $("next").onclick = () => show(S.pos + 1);
  $("btn-call").onclick = () => label("capuchin");
  $("btn-other").onclick = () => label("other");
  $("btn-unsure").onclick = () => label("unsure");
  $("f-sort").onchange = () => { const c = S.view[S.pos]; loadCandidates(c && c.id); };
  $("f-state").onchange = () => applyFilter();
  $("f-file").onchange = () => applyFilter();
  $("list").onclick = (e) => { const tr = e.target.closest("tr[data-i]"); if (tr) show(+tr.dataset.i); };
  $("btn-extra").onclick = () => startJob("extra");
  $("btn-retrain").onclick = () => startJob("retrain");
  loadCandidates().then(loadStats).catch((e) => status("cannot load candidates: " + e.message, true));
}

document.addEventListener("DOMContentLoaded", init);
