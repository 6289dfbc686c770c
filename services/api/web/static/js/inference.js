// An inference, live: status, each replica's throughput, latency, lag and errors (pushed stats),
// and the predictions drawn as they stream: class counts with the configured labels and colours,
// or the regression outputs, over the visualization's average window. Stop and delete.
import { get, post } from "./api.js";
import { bars, lineChart, PALETTE } from "./charts.js";
import { $, badge, confirmAction, destroy, facts, flashError, fmt, h, link, pageId, table, updates, soonAndLater } from "./ui.js";

const id = pageId();
let inference = null;
let config = { type: "classification", average_updated: false, average_window: 10000, labels: [] };
let counts = [];
let windowClasses = [];
let series = [];
let total = 0;

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
  ]));
  const running = i.status === "running" || i.status === "starting";
  $("#actions").replaceChildren(...[
    running ? h("button", { type: "button", class: "danger", id: "stop", onclick: stop }, "Stop inference") : null,
    h("button", { type: "button", class: "danger", id: "delete", onclick: () => destroy(`inference #${id}`, `/inferences/${id}`, () => location.assign("/inferences")) }, "Delete inference"),
  ].filter(Boolean));
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
  await drawStats();
  stream();
  const again = soonAndLater(async () => { inference = await get(`/inferences/${id}`); drawAbout(); });
  updates([["inference", id]], (message) => {
    if (message.kind === "InferenceStats") drawStats();
    // Stats say a replica runs even when its status change was stored after it was pushed.
    if (message.kind !== "InferenceStats" || inference.status === "starting") again();
  });
}
main();
