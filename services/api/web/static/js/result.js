// A training result, live: the status as it moves (waiting for data, training, finished, failed
// with its reason, stopped), the curves growing epoch by epoch from the events the server pushes,
// the confusion matrix as a heat map, the test metrics, the download and stop. Continuous learning
// adds the prequential (test-then-train) metric per window, growing from pushed WindowCompleted
// events, and the result's model versions, each downloadable.
import { get, post } from "./api.js";
import { heatmap, lineChart } from "./charts.js";
import { $, badge, confirmAction, facts, flash, flashError, fmt, h, link, pageId, payloadOf, table, updates, soonAndLater } from "./ui.js";

const id = pageId();
let result = null;
let model = null;
let incremental = false;
let settings = null;  // the deployment's incremental settings
let windows = [];
let versions = [];
const ACTIVE = ["created", "waiting_data", "training"];

function drawCurves() {
  const metrics = [...new Set([...Object.keys(result.train_metrics), ...Object.keys(result.val_metrics)])].sort();
  const box = $("#curves");
  const epochs = Math.max(0, ...Object.values(result.train_metrics).map((v) => v.length));
  box.dataset.epochs = epochs;
  box.replaceChildren(...(metrics.length ? metrics.map((m) => lineChart(m, [
    { name: "training", values: result.train_metrics[m] || [] },
    ...(result.val_metrics[m] ? [{ name: "validation", values: result.val_metrics[m], dashed: true }] : []),
  ])) : [h("p", { class: "hint" }, ACTIVE.includes(result.status) ? "The curves appear with the first epoch." : "No epoch was reported.")]));
}

// Before a result has any, and on a gateway without the versions routes, there is nothing to list.
const orNone = (promise) => promise.catch((error) => { if (error.status === 404) return []; throw error; });

function drawWindows() {
  const section = $("#windows-section");
  section.hidden = !(incremental || windows.length);
  $("#curves-section").hidden = incremental && !Object.keys(result.train_metrics).length;
  if (section.hidden) return;
  const box = $("#windows");
  box.dataset.windows = windows.length;
  // By window number: a window not (yet) read leaves a gap in the line, not a shifted curve.
  const last = Math.max(0, ...windows.map((w) => w.window));
  const at = (rows, which, name) => { const values = Array(last).fill(null); rows.forEach((w) => { values[w.window - 1] = (w[which] || {})[name] ?? null; }); return values; };
  const names = [...new Set(windows.flatMap((w) => [...Object.keys(w.prequential || {}), ...Object.keys(w.train || {})]))].sort();
  box.replaceChildren(...(names.length ? names.map((m) => lineChart(`${m} per window`, [
    { name: "prequential", values: at(windows, "prequential", m) },
    { name: "training", values: at(windows, "train", m), dashed: true },
    ...(windows.some((w) => (w.val || {})[m] !== undefined) ? [{ name: "validation", values: at(windows, "val", m), dashed: true }] : []),
  ], { xLabel: "window" })) : [h("p", { class: "hint" }, ACTIVE.includes(result.status) ? "The curve appears with the first window." : "No window was reported.")]));
}

const short = (sha) => h("code", { title: sha }, String(sha || "").slice(0, 12));
const metricsText = (metrics) => Object.entries(metrics || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(", ") || "–";

function drawVersions() {
  const box = $("#versions");
  box.dataset.versions = versions.length;
  box.replaceChildren(versions.length ? table([
    { title: "Version", cell: (v) => h("span", { "data-version": v.version }, `v${v.version}`) },
    { title: "Created", cell: (v) => (v.created_at ? new Date(v.created_at).toLocaleString() : "–") },
    { title: "Metrics", cell: (v) => metricsText(v.metrics) },
    { title: "SHA-256", cell: (v) => short(v.sha256) },
    { title: "Window", num: true, cell: (v) => fmt(v.window ?? null) },
    { title: "Model", cell: (v) => h("a", { href: `/api/v1/results/${id}/versions/${v.version}/model`, download: "", "aria-label": `Download version ${v.version}` }, "Download") },
  ], [...versions].reverse(), "Model versions, newest first") : h("p", { class: "hint" }, ACTIVE.includes(result.status)
    ? "A version appears when the training stores a model (each window that improves the monitored metric, when learning continuously)."
    : "No stored version."));
}

async function loadVersions() {
  versions = await orNone(get(`/results/${id}/versions`));
  drawVersions();
  drawAbout();
}

function learningText(i) {
  const window = [i.window_samples ? `${fmt(i.window_samples)} samples` : null, i.window_s ? `${fmt(i.window_s, 1)} s` : null].filter(Boolean).join(" or ");
  const end = i.stream_timeout_s ? `ends after ${fmt(i.stream_timeout_s, 1)} s without a record` : "runs until stopped";
  const version = i.monitoring_metric
    ? `a version when ${i.monitoring_metric} goes ${i.change} by more than ${i.improvement}`
    : "a version per window";
  return `windows of ${window} · ${end} · ${version}`;
}

function drawAbout() {
  const r = result;
  const status = h("span", { id: "status", "data-status": r.status }, badge(r.status),
    r.status === "waiting_data" ? " waiting for its data stream (send it to this deployment)" : "",
    r.status === "training" ? " training…" : "");
  $("#about").replaceChildren(facts([
    ["Status", status],
    r.error ? ["Reason", h("span", { class: "form-error", id: "error" }, r.error)] : null,
    ["Model", link(`/models/${r.model_id}`, model ? model.name : `#${r.model_id}`)],
    ["Deployment", link(`/results?q=deployment+${r.deployment_id}`, `#${r.deployment_id}`)],
    ["Data source", r.datasource_id ? link(`/datasources?q=${r.datasource_id}`, `#${r.datasource_id}`) : "–"],
    r.samples ? ["Samples", `${fmt(r.samples.train)} training, ${fmt(r.samples.validation)} validation, ${fmt(r.samples.test)} test${r.samples.bad ? `, ${r.samples.bad} undecodable` : ""}`] : null,
    r.training_time !== null ? ["Training time", `${fmt(r.training_time, 1)} s`] : null,
    settings ? ["Continuous learning", h("span", { id: "incremental" }, learningText(settings))] : null,
  ]));
  const actions = [];
  if (r.model_available) actions.push(h("a", { class: "button", id: "download", href: `/api/v1/results/${id}/model`, download: "" }, "Download the trained model"));
  if (r.status === "finished" || (versions.length && r.status !== "failed")) actions.push(h("a", { class: "button", href: `/inferences/new?result_id=${id}` }, "Deploy for inference"));
  if (ACTIVE.includes(r.status)) actions.push(h("button", { type: "button", class: "danger", onclick: stop }, "Stop training"));
  $("#actions").replaceChildren(...actions);
  const test = Object.entries(r.test_metrics);
  $("#test").replaceChildren(test.length ? table([{ title: "Metric", cell: ([k]) => k }, { title: "Value", num: true, cell: ([name, v]) => h("span", { "data-metric": name }, fmt(v)) }], test, "Test metrics")
    : h("p", { class: "hint" }, "Computed on the test split when training finishes."));
  if (r.confusion_matrix) $("#matrix").replaceChildren(heatmap(r.confusion_matrix));
  else $("#matrix").replaceChildren(h("p", { class: "hint" }, r.status === "finished" ? "Not computed (deploy with the confusion matrix on)." : "Computed when training finishes."));
}

async function stop() {
  if (!(await confirmAction("Stop this training? The epochs done so far are kept; the model is not.", "Stop"))) return;
  try { result = await post(`/results/${id}/stop`); flash("Stopped."); drawAbout(); } catch (error) { flashError(error); }
}

async function refetch() {
  result = await get(`/results/${id}`);
  drawAbout();
  drawCurves();
  drawWindows();
}

function onWindow(p, at) {
  // Like an epoch: the window's metrics come with the event and the curve grows without a reload.
  if (!result || p.result_id !== id || !p.window) return;
  const row = { window: p.window, samples: p.samples, prequential: p.prequential || {}, train: p.train || {}, val: p.val || {},
    version: p.version ?? null, created_at: new Date(at * 1000).toISOString() };
  windows = [...windows.filter((w) => w.window !== p.window), row].sort((a, b) => a.window - b.window);
  incremental = true;
  if (result.status !== "training" && ACTIVE.includes(result.status)) result.status = "training";
  drawWindows();
  drawAbout();
}

function onEpoch(p) {
  // The epoch's metrics come with the event: the curve grows without a reload.
  if (!result || p.result_id !== id) return;
  const at = p.epoch - 1;
  for (const [which, values] of [["train_metrics", p.train || {}], ["val_metrics", p.val || {}]]) {
    for (const [name, value] of Object.entries(values)) {
      const series = result[which][name] || (result[which][name] = []);
      series[at] = value;
    }
  }
  if (result.status !== "training") result.status = "training";
  drawCurves();
  drawAbout();
}

async function main() {
  result = await get(`/results/${id}`);
  try { model = await get(`/models/${result.model_id}`); } catch { model = null; }
  document.querySelector("h1").textContent = `Result #${id}${model ? " · " + model.name : ""}`;
  const deployment = await get(`/deployments/${result.deployment_id}`).catch(() => ({}));
  [windows, versions] = await Promise.all([orNone(get(`/results/${id}/windows`)), orNone(get(`/results/${id}/versions`))]);
  settings = deployment.incremental || null;
  incremental = Boolean(settings) || windows.length > 0;
  drawAbout();
  drawCurves();
  drawWindows();
  drawVersions();
  const again = soonAndLater(refetch);
  const versionsAgain = soonAndLater(loadVersions, [150, 2000]);
  updates([["result", id]], (message) => {
    if (message.kind === "EpochCompleted") onEpoch(payloadOf(message));
    else if (message.kind === "WindowCompleted") onWindow(payloadOf(message), message.at);
    else if (message.kind === "ModelVersionStored" || message.kind === "ModelVersionPublished") { versionsAgain(); again(); }
    else again();
  });
}
main();
