// flowpods run view: plain JavaScript, no build step. Every text from the API is set with textContent
// (never innerHTML); the token stays in sessionStorage and is sent only in the Authorization header.
"use strict";

const ROW_H = 22;
const OVERSCAN = 8;
const STATES = ["CREATED", "QUEUED", "RUNNING", "RETRYING", "PAUSED", "KILLING", "SUCCESS", "WARNING", "FAILED",
  "KILLED", "CANCELLED"];
const PHASES = [["queued", "queued (pod not scheduled)"], ["starting", "pod scheduled, container starting"],
  ["working", "working"], ["retry wait", "waiting to retry"], ["executor", "in the executor / subflow"],
  ["unknown", "time of a transition unknown"]];
const state = { token: null, namespace: null, access: null, timer: null, list: [], view: null, selected: null,
  openapi: null };

// --- helpers -----------------------------------------------------------------------------------------------

function $(id) { return document.getElementById(id); }

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)}ms`;
  if (s < 120) return `${s.toFixed(2)}s`;
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  return h ? `${h}h${String(m % 60).padStart(2, "0")}m` : `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
}

function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }
function ms(iso) { return new Date(iso).getTime(); }
function phaseClass(name) { return "p-" + name.replace(/[^a-z]+/g, "-"); }
function safeUrl(url) { return typeof url === "string" && /^https?:\/\//.test(url) ? url : null; }
function enc(text) { return encodeURIComponent(text); }

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
  const response = await fetch(path, { ...(options || {}), headers, cache: "no-store", credentials: "omit" });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    if (response.status === 401) { logout(message); }
    throw new HttpError(response.status, message);
  }
  return body;
}

function show(section) {
  for (const id of ["login", "list", "execution", "compare"]) $(id).hidden = id !== section;
  $("logout").hidden = section === "login";
}

function stopTimer() { if (state.timer) { clearTimeout(state.timer); state.timer = null; } }

// --- login -------------------------------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  const namespace = $("login-namespace").value.trim();
  const token = $("login-token").value.trim();
  $("login-error").textContent = "";
  state.token = token;
  try {
    const access = await api(`/api/v1/access/${enc(namespace)}`);
    sessionStorage.setItem("flowpods.token", token);
    sessionStorage.setItem("flowpods.namespace", namespace);
    $("login-token").value = "";
    state.namespace = namespace;
    state.access = access;
    route();
  } catch (err) {
    state.token = null;
    $("login-error").textContent = `Not logged in: ${err.message}`;
  }
}

function logout(message) {
  stopTimer();
  sessionStorage.removeItem("flowpods.token");
  state.token = null; state.access = null;
  $("who").textContent = "";
  show("login");
  if (typeof message === "string") $("login-error").textContent = message;
}

async function ensureAccess(namespace) {
  if (state.access && state.access.namespace === namespace) return state.access;
  state.access = await api(`/api/v1/access/${enc(namespace)}`);
  state.namespace = namespace;
  sessionStorage.setItem("flowpods.namespace", namespace);
  return state.access;
}

function showWho() {
  const a = state.access;
  if (!a) return;
  const verbs = Object.entries(a.may).filter(([, ok]) => ok).map(([v]) => v).join(", ") || "nothing";
  $("who").textContent = `${a.user} · ${a.namespace}: may ${verbs}`;
}

// --- routing -----------------------------------------------------------------------------------------------

async function route() {
  stopTimer();
  if (!state.token) { show("login"); return; }
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === "x" && parts.length === 3) {
      await ensureAccess(parts[1]); showWho();
      return openExecution(parts[1], parts[2]);
    }
    if (parts[0] === "compare" && parts.length === 4) {
      await ensureAccess(parts[1]); showWho();
      return openCompare(parts[1], parts[2], parts[3]);
    }
    await ensureAccess(state.namespace); showWho();
    return openList();
  } catch (err) {
    if (err.status === 401) return;
    show("list");
    $("list-error").textContent = err.message;
  }
}

// --- the list ----------------------------------------------------------------------------------------------

function openList() {
  show("list");
  $("f-namespace").value = state.namespace;
  refreshList();
}

async function refreshList() {
  stopTimer();
  $("list-error").textContent = "";
  try {
    const data = await api(`/api/v1/executions/${enc(state.namespace)}`);
    state.list = data.items;
    renderList();
    $("list-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    state.list = [];
    renderList();
    $("list-error").textContent = err.message;
  }
  if ($("f-live").checked && !$("list").hidden) state.timer = setTimeout(refreshList, 3000);
}

function listFiltered() {
  const flow = $("f-flow").value.trim().toLowerCase();
  const wanted = $("f-state").value;
  const label = $("f-label").value.trim();
  const [lk, lv] = label.includes("=") ? label.split("=", 2) : [label, null];
  let rows = state.list.filter((r) =>
    (!flow || (r.flowId || "").toLowerCase().includes(flow)) && (!wanted || r.state === wanted) &&
    (!lk || (lk in r.labels && (lv === null || r.labels[lk] === lv))));
  const sort = $("f-sort").value;
  const by = { "duration-desc": (a, b) => (b.seconds ?? -1) - (a.seconds ?? -1),
    "duration-asc": (a, b) => (a.seconds ?? Infinity) - (b.seconds ?? Infinity),
    "queue-desc": (a, b) => (b.queuedSeconds ?? -1) - (a.queuedSeconds ?? -1),
    start: (a, b) => (b.created || "").localeCompare(a.created || "") }[sort];
  return rows.slice().sort(by);
}

function renderList() {
  const body = clear($("executions").tBodies[0]);
  for (const r of listFiltered()) {
    const link = el("a", { href: `#/x/${enc(r.namespace)}/${enc(r.name)}`, text: r.name, "data-name": r.name });
    body.append(el("tr", { "data-name": r.name },
      el("td", {}, link, r.parent ? el("span", { class: "muted", text: ` ← ${r.parent}` }) : null),
      el("td", { text: r.namespace }), el("td", { text: r.flowId || "" }),
      el("td", { class: `state s-${r.state}`, text: r.state }),
      el("td", { text: when(r.created) }),
      el("td", { class: "num", text: seconds(r.seconds), "data-seconds": r.seconds }),
      el("td", { class: "num", text: seconds(r.queuedSeconds) }),
      el("td", { text: r.trigger }),
      el("td", {}, ...Object.entries(r.labels).map(([k, v]) => el("span", { class: "label", text: `${k}=${v}` }))),
      el("td", { class: "num", text: r.taskRuns })));
  }
}

// --- one execution -----------------------------------------------------------------------------------------

async function openExecution(namespace, name) {
  show("execution");
  $("exec-error").textContent = "";
  const started = performance.now();
  let view;
  try {
    view = await api(`/api/v1/executions/${enc(namespace)}/${enc(name)}/timeline`);
  } catch (err) {
    clear($("exec-head")); clear($("exec-actions"));
    state.view = null;
    renderTimeline();
    $("exec-error").textContent = err.message;
    return;
  }
  const same = state.view && state.view.name === view.name;
  const before = same ? detailSignature() : null;
  state.view = view;
  if (!same) { state.selected = null; $("timeline").scrollTop = 0; }
  renderHead(); renderActions(); renderTimeline(); renderSlowest();
  if (!same || detailSignature() !== before) renderDetail();  // keep an opened log while nothing changed
  if (!same) renderCompareChoice();
  $("inputs").textContent = JSON.stringify(view.inputs, null, 2);
  $("outputs").textContent = JSON.stringify(view.outputs, null, 2);
  $("trigger").textContent = JSON.stringify({ type: view.trigger, data: view.triggerData }, null, 2);
  $("timeline").setAttribute("data-render-ms", String(Math.round(performance.now() - started)));
  $("timeline").setAttribute("data-ready", view.name);
  const every = view.timeline.rows.length > 500 ? 10000 : 3000;  // a big run is heavier to read and draw
  if (view.timeline.running) state.timer = setTimeout(() => openExecution(namespace, name), every);
}

function renderHead() {
  const v = state.view, t = v.timeline;
  const head = clear($("exec-head"));
  const took = (ms(t.end) - ms(t.start)) / 1000;
  head.append(
    el("span", { class: "big", text: v.name }),
    el("span", { class: `state big s-${v.state}`, id: "exec-state", text: v.state }),
    el("span", { text: `flow ${v.flowId}` }),
    el("span", { text: `created ${when(v.created)}` }),
    el("span", { id: "exec-duration", text: `${t.running ? "running for" : "took"} ${seconds(took)}` }),
    el("span", { text: `queued ${seconds(t.queuedSeconds)}` }),
    el("span", { text: `trigger ${v.trigger}` }),
    el("span", { text: `${t.rows.length} rows` }));
  const jaeger = safeUrl(v.links && v.links.jaeger);
  if (jaeger) head.append(el("a", { id: "jaeger-link", href: jaeger, target: "_blank", rel: "noopener noreferrer",
    text: `trace ${v.traceId} in Jaeger` }));
  else if (v.traceId) head.append(el("span", { text: `trace ${v.traceId} (no Jaeger URL configured)` }));
  if (v.message) head.append(el("span", { class: "error", text: v.message }));
  const legend = clear($("legend"));
  for (const [name, what] of PHASES) legend.append(el("span", {}, el("i", { class: phaseClass(name) }), what));
  legend.append(el("span", { text: "◆ critical path" }), el("span", { text: "◀ slowest" }));
  const axis = clear($("timeline-axis"));
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    axis.append(el("span", { style: { left: `${f * 100}%` }, text: `+${seconds(took * f)}` }));
  }
}

function renderActions() {
  const v = state.view, may = state.access.may, actions = clear($("exec-actions"));
  const running = v.timeline.running;
  const paths = (state.openapi && state.openapi.paths) || {};
  const has = (suffix) => Object.keys(paths).some((p) => p.endsWith(suffix));
  const base = `/api/v1/executions/${enc(v.namespace)}/${enc(v.name)}`;
  if (may.create && running) {
    actions.append(el("button", { id: "kill", type: "button", text: "Kill", onclick: () => act("DELETE", v.links.kill,
      `Kill ${v.name}? Running task runs are stopped.`) }));
  }
  // resume and restart appear only when this server has those routes and RBAC allows `update`
  if (may.update && has("/{name}/resume") && v.state === "PAUSED") {
    actions.append(el("button", { id: "resume", type: "button", text: "Resume",
      onclick: () => act("POST", `${base}/resume`, `Resume ${v.name}?`) }));
  }
  if (may.update && has("/{name}/restart") && !running) {
    actions.append(el("button", { id: "restart", type: "button", text: "Restart",
      onclick: () => act("POST", `${base}/restart`, `Restart ${v.name} from its failed tasks?`) }));
  }
  if (!may.create && !may.update) actions.append(el("span", { class: "muted", text: "read-only: you may not change executions here" }));
}

async function act(method, path, question) {
  if (!window.confirm(question)) return;
  try { await api(path, { method }); } catch (err) { $("exec-error").textContent = err.message; }
  openExecution(state.view.namespace, state.view.name);
}

// the timeline is windowed: only the rows in view (and a few around) are in the DOM
function renderTimeline() {
  const box = $("timeline"), spacer = clear($("timeline-spacer"));
  const rows = state.view ? state.view.timeline.rows : [];
  spacer.style.height = `${rows.length * ROW_H}px`;
  box.onscroll = () => requestAnimationFrame(drawWindow);
  drawWindow();
}

function drawWindow() {
  const box = $("timeline"), spacer = $("timeline-spacer");
  if (!state.view) return;
  const t = state.view.timeline, rows = t.rows;
  const first = Math.max(0, Math.floor(box.scrollTop / ROW_H) - OVERSCAN);
  const last = Math.min(rows.length, Math.ceil((box.scrollTop + box.clientHeight) / ROW_H) + OVERSCAN);
  clear(spacer);
  const t0 = ms(t.start), total = Math.max(ms(t.end) - t0, 1);
  const pct = (iso) => Math.min(Math.max((ms(iso) - t0) / total * 100, 0), 100);
  for (let i = first; i < last; i++) {
    const r = rows[i];
    const classes = ["row"];
    if (r.critical) classes.push("critical");
    if (t.slowest === r.key) classes.push("slowest");
    if (state.selected === r.key) classes.push("selected");
    if (["FAILED", "KILLED"].includes(r.state)) classes.push("failed");
    const track = el("div", { class: "track" });
    const segments = [...r.phases.map((p) => [p, null]),
      ...r.attempts.flatMap((a) => a.phases.map((p) => [p, a]))];
    for (const [p, a] of segments) {
      const left = pct(p.start), width = Math.max(pct(p.end) - left, 0);
      const who = a ? `attempt ${a.number}: ` : "";
      track.append(el("div", { class: `seg ${phaseClass(p.name)}`, "data-phase": p.name, "data-start": p.start,
        "data-end": p.end, style: { left: `${left}%`, width: `${width}%` },
        title: `${who}${p.name} ${seconds((ms(p.end) - ms(p.start)) / 1000)}` }));
    }
    for (const a of r.attempts.slice(0, -1)) {
      const end = a.phases.length ? a.phases[a.phases.length - 1].end : null;
      if (end) track.append(el("div", { class: "attempt-end", style: { left: `${pct(end)}%` } }));
    }
    const tries = r.attempts.length > 1 ? ` ×${r.attempts.length}` : "";
    spacer.append(el("div", { class: classes.join(" "), "data-key": r.key, "data-index": i,
      style: { top: `${i * ROW_H}px` }, onclick: () => { state.selected = r.key; drawWindow(); renderDetail(); } },
      el("span", { class: `name s-${r.state}`, style: { paddingLeft: `${8 + r.depth * 14}px` },
        title: `${r.label} ${r.state}`, text: `${r.label}${tries}` }),
      track,
      el("span", { class: "took", text: r.start ? seconds(r.seconds) : r.state })));
  }
}

function renderSlowest() {
  const v = state.view, body = clear($("slowest").tBodies[0]);
  const workers = v.timeline.rows.filter((r) => r.attempts.length && r.seconds !== null)
    .sort((a, b) => b.seconds - a.seconds).slice(0, 8);
  for (const r of workers) {
    const median = v.medians[r.taskId];
    const ratio = median ? r.seconds / median : null;
    body.append(el("tr", {}, el("td", { text: r.label }), el("td", { class: "num", text: seconds(r.seconds) }),
      el("td", { class: "num", text: median !== undefined ? seconds(median) : "no earlier run" }),
      el("td", { class: "num", text: ratio ? `${ratio.toFixed(1)}×` : "–" })));
  }
  if (!workers.length) body.append(el("tr", {}, el("td", { colspan: 4, class: "muted", text: "no task ran in a pod" })));
  body.append(el("tr", {}, el("td", { colspan: 4, class: "muted",
    text: `medians over the flow's last ${v.recentRuns} finished runs` })));
}

function detailSignature() {
  const r = state.view && state.view.timeline.rows.find((x) => x.key === state.selected);
  return r ? JSON.stringify([r.key, r.state, r.attempts.map((a) => [a.state, a.phases.length])]) : "";
}

function renderDetail() {
  const pane = clear($("detail"));
  const v = state.view;
  const r = v && v.timeline.rows.find((x) => x.key === state.selected);
  if (!r) { pane.append(el("p", { class: "muted", text: "Select a task run in the timeline." })); return; }
  pane.append(el("h2", { id: "detail-title", text: `${r.label} · ${r.state}` }));
  if (r.kind) pane.append(el("div", { class: "muted", text: r.kind }));
  if (r.critical) pane.append(el("div", { text: "◆ on the critical path: it delayed the end of the run" }));
  const median = v.medians[r.taskId];
  if (r.seconds !== null && r.start) pane.append(el("div", { text: `took ${seconds(r.seconds)}` +
    (median !== undefined ? `; median of recent runs ${seconds(median)}` : "") }));
  if (!r.start) pane.append(el("div", { class: "muted", text: "not run yet" }));
  if (r.error) pane.append(el("div", { class: "error", text: r.error }));
  for (const a of r.attempts) {
    pane.append(el("h2", { text: `attempt ${a.number} · ${a.state}` + (a.pod ? ` · pod ${a.pod}` : "") +
      (a.node ? ` on ${a.node}` : "") }));
    const list = el("ul");
    for (const p of a.phases) {
      list.append(el("li", { text: `${p.name}: ${seconds((ms(p.end) - ms(p.start)) / 1000)} (from ${when(p.start)})` }));
    }
    if (a.unknown.length) list.append(el("li", { class: "muted", text: `unknown: ${a.unknown.join(", ")} ` +
      "(not in the stored status, and the pod does not say)" }));
    if (a.reason) list.append(el("li", { class: "error", text: a.reason }));
    pane.append(list);
    const out = el("pre", { class: "logs", hidden: true });
    pane.append(el("button", { type: "button", class: "show-logs", text: "Logs",
      onclick: () => loadInto(out, "logs", r, a) }), " ",
    el("button", { type: "button", class: "why-pending", text: "Why pending?",
      onclick: () => loadInto(out, "pending", r, a) }), out);
  }
  if (Object.keys(r.outputs || {}).length) pane.append(el("h2", { text: "outputs" }),
    el("pre", { text: JSON.stringify(r.outputs, null, 2) }));
}

async function loadInto(out, what, r, a) {
  out.hidden = false;
  out.textContent = "loading…";
  const v = state.view;
  const path = `/api/v1/executions/${enc(r.execution === v.name ? v.namespace : v.namespace)}/${enc(r.execution)}` +
    `/${what}?taskRunId=${enc(r.taskRunId)}&attempt=${a.number}`;
  try {
    const data = await api(path);
    if (what === "logs") {
      out.textContent = data.available ? `${data.message}\n\n${data.text}` : data.message;
    } else if (!data.exists) {
      out.textContent = `pod ${data.pod || "–"}: it does not exist (any more): nothing to say why it waited`;
    } else {
      const lines = [`pod ${data.pod}: phase ${data.phase}`];
      for (const c of data.conditions) lines.push(`condition ${c.type}=${c.status}` +
        (c.reason ? ` (${c.reason}: ${c.message || ""})` : "") + ` since ${c.lastTransitionTime}`);
      for (const c of data.containers) lines.push(`container ${c.name}: ${c.state}` +
        (c.reason ? ` (${c.reason}: ${c.message || ""})` : ""));
      for (const e of data.events) lines.push(`event ${e.at} ${e.type} ${e.reason}: ${e.message}` +
        (e.count > 1 ? ` (×${e.count})` : ""));
      if (!data.events.length) lines.push("no Events about this pod (they expire after an hour)");
      out.textContent = lines.join("\n");
    }
  } catch (err) { out.textContent = err.message; }
}

// --- compare -----------------------------------------------------------------------------------------------

async function renderCompareChoice() {
  const v = state.view, box = clear($("compare-pick"));
  if (!state.list.length || state.list[0].namespace !== v.namespace) {
    try { state.list = (await api(`/api/v1/executions/${enc(v.namespace)}`)).items; } catch (err) { state.list = []; }
  }
  const others = state.list.filter((r) => r.flowId === v.flowId && r.name !== v.name);
  if (!others.length) { box.append(el("span", { class: "muted", text: "no other execution of this flow" })); return; }
  const select = el("select", { id: "compare-with" });
  for (const r of others) select.append(el("option", { value: r.name, text: `${r.name} (${r.state}, ${seconds(r.seconds)})` }));
  box.append(select, " ", el("button", { type: "button", id: "compare-go", text: "Compare",
    onclick: () => { location.hash = `#/compare/${enc(v.namespace)}/${enc(v.name)}/${enc(select.value)}`; } }));
}

async function openCompare(namespace, a, b) {
  show("compare");
  $("compare-title").textContent = `${a} (A) against ${b} (B)`;
  $("compare-error").textContent = "";
  const body = clear($("compare-table").tBodies[0]);
  try {
    const data = await api(`/api/v1/executions/${enc(namespace)}/${enc(a)}/compare/${enc(b)}`);
    for (const c of data.tasks) {
      const delta = c.a !== null && c.b !== null ? c.b - c.a : null;
      body.append(el("tr", {}, el("td", { text: c.label }),
        el("td", { class: "num", text: c.a !== null ? `${seconds(c.a)} ${c.stateA}` : "did not run" }),
        el("td", { class: "num", text: c.b !== null ? `${seconds(c.b)} ${c.stateB}` : "did not run" }),
        el("td", { class: "num", text: delta === null ? "–" : `${delta >= 0 ? "+" : "−"}${seconds(Math.abs(delta))}` })));
    }
  } catch (err) { $("compare-error").textContent = err.message; }
}

// --- start -------------------------------------------------------------------------------------------------

function init() {
  const select = $("f-state");
  for (const s of STATES) select.append(el("option", { value: s, text: s }));
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout());
  for (const id of ["f-flow", "f-state", "f-label", "f-sort"]) {
    $(id).addEventListener("input", renderList);
    $(id).addEventListener("change", renderList);
  }
  $("f-live").addEventListener("change", refreshList);
  $("f-namespace").addEventListener("change", async () => {
    try { await ensureAccess($("f-namespace").value.trim()); showWho(); refreshList(); }
    catch (err) { $("list-error").textContent = err.message; }
  });
  window.addEventListener("hashchange", route);
  state.token = sessionStorage.getItem("flowpods.token");
  state.namespace = sessionStorage.getItem("flowpods.namespace") || "";
  $("login-namespace").value = state.namespace;
  fetch("/api/v1/openapi.json").then((r) => r.json()).then((doc) => { state.openapi = doc; }).catch(() => {});
  route();
}

document.addEventListener("DOMContentLoaded", init);
