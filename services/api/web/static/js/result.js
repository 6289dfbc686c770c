// A training result, live: the status as it moves (waiting for data, training, finished, failed
// with its reason, stopped), the curves growing epoch by epoch from the events the server pushes,
// the confusion matrix as a heat map, the test metrics, the download and stop.
import { get, post } from "./api.js";
import { heatmap, lineChart } from "./charts.js";
import { $, badge, confirmAction, facts, flash, flashError, fmt, h, link, pageId, payloadOf, table, updates, soonAndLater } from "./ui.js";

const id = pageId();
let result = null;
let model = null;
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
  ]));
  const actions = [];
  if (r.model_available) actions.push(h("a", { class: "button", id: "download", href: `/api/v1/results/${id}/model`, download: "" }, "Download the trained model"));
  if (r.status === "finished") actions.push(h("a", { class: "button", href: `/inferences/new?result_id=${id}` }, "Deploy for inference"));
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
  drawAbout();
  drawCurves();
  const again = soonAndLater(refetch);
  updates([["result", id]], (message) => {
    if (message.kind === "EpochCompleted") onEpoch(payloadOf(message));
    else again();
  });
}
main();
