// An inference, live: status, each replica's throughput, latency, lag and errors (pushed stats),
// and the predictions drawn as they stream: class counts with the configured labels and colours,
// or the regression outputs, over the visualization's average window. Stop and delete. The version
// policy (pinned or following the latest) and the version the replicas serve, with the control that
// promotes, rolls back or follows the latest (SetModelVersion), both kept live by pushed events.
import { get, post } from "./api.js";
import { bars, lineChart, PALETTE } from "./charts.js";
import { $, badge, clearErrors, confirmAction, destroy, facts, flash, flashError, fmt, h, link, pageId, payloadOf, showError, table, updates, soonAndLater } from "./ui.js";

const id = pageId();
let inference = null;
let config = { type: "classification", average_updated: false, average_window: 10000, labels: [] };
let counts = [];
let windowClasses = [];
let series = [];
let total = 0;
let versions = [];

const labelOf = (i) => (config.labels.find((l) => l.id === i) || { label: String(i) }).label;
const colorOf = (i) => (config.labels.find((l) => l.id === i) || { color: PALETTE[i % PALETTE.length] }).color;
const argmax = (v) => v.reduce((best, x, i) => (x > v[best] ? i : best), 0);

function drawAbout() {
  const i = inference;
  $("#about").replaceChildren(facts([
    ["Status", h("span", { id: "status", "data-status": i.status }, badge(i.status))],
    i.error ? ["Reason", h("span", { class: "form-error" }, i.error)] : null,
    ["Result", link(`/results/${i.result_id}`, `#${i.result_id}`)],
    ["Model", link(`/models/${i.model_id}`, `#${i.model_id}`)],
    ["Topics", h("span", {}, h("code", {}, i.input_topic), " → ", h("code", {}, i.output_topic), i.upper_topic ? h("span", {}, " (unsure → ", h("code", {}, i.upper_topic), `, limit ${i.limit})`) : null)],
    ["Input", h("details", {}, h("summary", {}, i.input_format || "from training"), h("pre", { class: "block" }, JSON.stringify(i.input_config, null, 2)))],
    ["Replicas", String(i.replicas)],
    ["Version policy", h("span", { id: "policy", "data-policy": String(i.model_version ?? "") }, policyText(i.model_version))],
    ["Serving version", h("span", { id: "serving", "data-version": i.serving_version ?? "" }, i.serving_version ? `v${i.serving_version}` : "– (no replica reported yet)")],
  ]));
  drawVersionChoice();
  const running = i.status === "running" || i.status === "starting";
  $("#actions").replaceChildren(...[
    running ? h("button", { type: "button", class: "danger", id: "stop", onclick: stop }, "Stop inference") : null,
    h("button", { type: "button", class: "danger", id: "delete", onclick: () => destroy(`inference #${id}`, `/inferences/${id}`, () => location.assign("/inferences")) }, "Delete inference"),
  ].filter(Boolean));
}

function policyText(policy) {
  if (policy === "latest") return "follows the latest version";
  return policy ? `pinned to v${policy}` : "–";
}

const newest = () => Math.max(0, ...versions.map((v) => v.version));

function drawVersionChoice() {
  const select = $("#model_version");
  const policy = String(inference.model_version ?? "");
  const chosen = select.dataset.touched ? select.value : policy;
  const metric = (v) => Object.entries(v.metrics || {}).slice(0, 2).map(([k, x]) => `${k} ${fmt(x)}`).join(", ");
  select.replaceChildren(
    h("option", { value: "latest" }, "Follow the latest version"),
    ...[...versions].sort((a, b) => b.version - a.version).map((v) => h("option", { value: String(v.version) },
      `v${v.version}${v.version === newest() ? " (newest)" : ""}${metric(v) ? ` · ${metric(v)}` : ""}`)),
  );
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  labelButton();
}

function labelButton() {
  // The button says what it will do: promote, roll back, pin, or follow the latest.
  const wanted = $("#model_version").value;
  const serving = inference.serving_version || (typeof inference.model_version === "number" ? inference.model_version : null);
  const button = $("#apply-version");
  if (wanted === "latest") button.textContent = "Follow latest";
  else if (!serving) button.textContent = `Serve v${wanted}`;
  else if (Number(wanted) > serving) button.textContent = `Promote to v${wanted}`;
  else if (Number(wanted) < serving) button.textContent = `Roll back to v${wanted}`;
  else button.textContent = `Pin v${wanted}`;
  button.disabled = wanted === String(inference.model_version ?? "");
}

async function loadVersions() {
  try { versions = await get(`/results/${inference.result_id}/versions`); }
  catch (error) { if (error.status !== 404) throw error; versions = []; }
  drawVersionChoice();
}

async function stop() {
  if (!(await confirmAction("Stop this inference's replicas? Inputs wait on the topic until it runs again.", "Stop"))) return;
  try { inference = await post(`/inferences/${id}/stop`); drawAbout(); } catch (error) { flashError(error); }
}

async function drawStats() {
  const rows = await get(`/inferences/${id}/stats`);
  const latest = new Map();
  for (const row of rows) if (!latest.has(row.replica)) latest.set(row.replica, row);
  const shown = [...latest.values()];
  $("#stats").replaceChildren(shown.length ? table([
    { title: "Replica", cell: (r) => r.replica },
    { title: "Messages/s", num: true, cell: (r) => fmt(r.throughput, 1) },
    { title: "p50 ms", num: true, cell: (r) => fmt(r.latency_p50_ms, 1) },
    { title: "p99 ms", num: true, cell: (r) => fmt(r.latency_p99_ms, 1) },
    { title: "Lag", num: true, cell: (r) => fmt(r.lag) },
    { title: "Errors", num: true, cell: (r) => fmt(r.errors) },
    { title: "At", cell: (r) => new Date(r.recorded_at).toLocaleTimeString() },
  ], shown, "Latest statistics of each replica") : h("p", { class: "hint" }, "No statistics yet: replicas report every few seconds while they run."));
}

function add(values) {
  total += 1;
  if (config.type === "regression") {
    values.forEach((v, i) => { (series[i] = series[i] || []).push(v); if (series[i].length > Math.min(config.average_window, 300)) series[i].shift(); });
    return;
  }
  const k = argmax(values);
  while (counts.length < values.length) counts.push(0);
  counts[k] += 1;
  windowClasses.push(k);
  if (windowClasses.length > config.average_window) windowClasses.shift();
}

function current() {
  if (!total) return "–";
  if (config.type === "regression") return series.map((s, i) => `${labelOf(i)} ${fmt(s.at(-1), 2)}`).join(" · ");
  if (!config.average_updated) return labelOf(windowClasses.at(-1));
  const seen = new Map();
  windowClasses.forEach((c) => seen.set(c, (seen.get(c) || 0) + 1));
  return labelOf([...seen.entries()].reduce((a, b) => (b[1] > a[1] ? b : a))[0]);
}

let pending = false;
function drawViz() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    $("#live-count").textContent = total.toLocaleString("en");
    $("#live-current").textContent = current();
    const n = Math.max(counts.length, ...config.labels.map((l) => l.id + 1), 0);
    const box = $("#viz");
    box.dataset.total = total;
    if (config.type === "regression") {
      box.replaceChildren(lineChart("Predicted values", series.map((s, i) => ({ name: labelOf(i), values: s, color: colorOf(i) })), { xLabel: "prediction" }));
    } else {
      const shown = Array.from({ length: n }, (_, i) => counts[i] || 0);
      box.replaceChildren(bars(shown, labelOf, colorOf));
    }
  });
}

function stream() {
  const source = new EventSource(`/api/v1/inferences/${id}/stream`, { withCredentials: true });
  const state = $("#live-state");
  source.onopen = () => { state.textContent = "connecting…"; };
  source.onerror = () => { state.textContent = "disconnected, retrying…"; };
  source.addEventListener("config", (event) => {
    const data = JSON.parse(event.data);
    state.textContent = "live";  // the feed is positioned: nothing sent from now on is missed
    if (data.visualization) config = Object.assign(config, data.visualization);
    $("#viz-title").textContent = config.type === "regression" ? "Live predictions (values)" : "Live predictions (classes)";
    drawViz();
  });
  source.addEventListener("predictions", (event) => { JSON.parse(event.data).predictions.forEach(add); drawViz(); });
  window.addEventListener("pagehide", () => source.close());
}

async function main() {
  inference = await get(`/inferences/${id}`);
  if (inference.visualization) config = Object.assign(config, inference.visualization);
  drawAbout();
  drawViz();
  await loadVersions();
  await drawStats();
  stream();
  const select = $("#model_version");
  select.addEventListener("change", () => { select.dataset.touched = "1"; labelButton(); });
  const versionForm = $("#version-form");
  versionForm.addEventListener("submit", async (event) => {
    // Not ui.onSubmit: the button's label is this page's (it names the action), redrawn after.
    event.preventDefault();
    clearErrors(versionForm);
    const wanted = select.value === "latest" ? "latest" : Number(select.value);
    const button = $("#apply-version");
    button.disabled = true;
    try {
      await post(`/inferences/${id}/model-version`, { model_version: wanted });
      delete select.dataset.touched;
      inference = await get(`/inferences/${id}`);
      flash(wanted === "latest" ? "Following the latest version." : `Pinned to v${wanted}: the replicas switch between two micro-batches.`);
    } catch (error) {
      showError(versionForm, error);
    } finally {
      drawAbout();
    }
  });
  const again = soonAndLater(async () => { inference = await get(`/inferences/${id}`); drawAbout(); });
  const versionsAgain = soonAndLater(loadVersions, [150, 2000]);
  updates([["inference", id], ["result", inference.result_id]], (message) => {
    // One stream for both: its filters cross (entities x ids), so each update is checked here.
    if (message.entity === "result") { if (message.id === inference.result_id && message.kind === "ModelVersionStored") versionsAgain(); return; }
    if (message.id !== id) return;
    if (message.kind === "InferenceVersionChanged") {
      const p = payloadOf(message);
      if (p.version) { inference.serving_version = p.version; drawAbout(); }
    }
    if (message.kind === "InferenceStats") drawStats();
    // Stats say a replica runs even when its status change was stored after it was pushed.
    if (message.kind !== "InferenceStats" || inference.status === "starting") again();
  });
}
main();
