// Deploy a finished result for inference: the input format and config come filled in from its
// training stream (editable); a sub-model of a distributed chain also takes its upper topic and limit.
// The model version: the newest at deploy time pinned (the REST default), one listed version, or
// "latest" (follow every new version of a continuous training).
import { all, get, post } from "./api.js";
import { $, fmt, h, onSubmit } from "./ui.js";

const form = $("#inference-form");
let results = [];
let models = new Map();

async function fillVersions(result) {
  let versions = [];
  try { versions = await get(`/results/${result.id}/versions`); }
  catch (error) { if (error.status !== 404) $("#result-about").textContent += ` · versions: ${error.message}`; }
  const wanted = new URLSearchParams(location.search).get("model_version") || "";
  const metric = (v) => Object.entries(v.metrics || {}).slice(0, 2).map(([k, x]) => `${k} ${fmt(x)}`).join(", ");
  $("#model_version").replaceChildren(
    h("option", { value: "" }, versions.length ? `The newest now (v${Math.max(...versions.map((v) => v.version))}), pinned` : "The newest now, pinned"),
    h("option", { value: "latest", selected: wanted === "latest" }, "Follow the latest version"),
    ...[...versions].sort((a, b) => b.version - a.version).map((v) => h("option", { value: String(v.version), selected: wanted === String(v.version) },
      `v${v.version}${metric(v) ? ` · ${metric(v)}` : ""}`)),
  );
}

async function fill() {
  const result = results.find((r) => r.id === Number($("#result_id").value));
  if (!result) return;
  await fillVersions(result);
  const model = models.get(result.model_id);
  $("#chain-set").hidden = !(model && model.upper_model_id);
  $("#result-about").textContent = model ? `${model.name} (${model.framework})` : "";
  if (!$("#input_topic").value) $("#input_topic").value = `inference-${result.id}-in`;
  if (!$("#output_topic").value) $("#output_topic").value = `inference-${result.id}-out`;
  try {
    const suggested = await get(`/results/${result.id}/inference-config`);
    $("#input_format").value = suggested.input_format;
    $("#input_config").value = JSON.stringify(suggested.input_config, null, 2);
  } catch (error) {
    $("#result-about").textContent += ` · ${error.message}`;
  }
}

function labels(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line, n) => {
    const [id, label, color] = line.split(",").map((part) => part.trim());
    if (!/^\d+$/.test(id || "") || !label) throw Object.assign(new Error(`line ${n + 1}: write "id, label, colour" (e.g. 0, zero, #1d4ed8)`), { field: "visualization.labels" });
    return color ? { id: Number(id), label, color } : { id: Number(id), label };
  });
}

async function load() {
  const [all_results, all_models] = await Promise.all([all("/results"), all("/models")]);
  models = new Map(all_models.map((m) => [m.id, m]));
  // A continuous training may be served while it trains (or after it is stopped) once it stored a version.
  results = all_results.filter((r) => r.model_available && ["finished", "training", "stopped"].includes(r.status));
  const wanted = new URLSearchParams(location.search).get("result_id");
  $("#result_id").replaceChildren(...results.map((r) => h("option", { value: r.id, selected: String(r.id) === wanted },
    `#${r.id} ${(models.get(r.model_id) || { name: "model " + r.model_id }).name} (deployment ${r.deployment_id}${r.status === "finished" ? "" : ", " + r.status})`)));
  await fill();
}

$("#result_id").addEventListener("change", () => { $("#input_topic").value = ""; $("#output_topic").value = ""; fill(); });
onSubmit(form, async (data) => {
  let config = null;
  const raw = String(data.get("input_config") || "").trim();
  if (raw) {
    try { config = JSON.parse(raw); } catch { throw Object.assign(new Error("the input config must be JSON"), { field: "input_config" }); }
  }
  const body = {
    result_id: Number(data.get("result_id")),
    replicas: Number(data.get("replicas") || 1),
    input_topic: String(data.get("input_topic")).trim(),
    output_topic: String(data.get("output_topic")).trim(),
    input_format: data.get("input_format"),
    input_config: config,
    gpus: Number(data.get("gpus") || 0),
    visualization: {
      type: data.get("visualization.type"),
      average_updated: data.get("visualization.average_updated") === "on",
      average_window: Number(data.get("visualization.average_window") || 10000),
      labels: labels(String(data.get("visualization.labels") || "")),
    },
  };
  const version = String(data.get("model_version") || "");
  if (version) body.model_version = version === "latest" ? "latest" : Number(version);
  if (!$("#chain-set").hidden) {
    if (data.get("upper_topic")) body.upper_topic = String(data.get("upper_topic")).trim();
    if (data.get("limit") !== "") body.limit = Number(data.get("limit"));
  }
  if (!body.result_id) throw Object.assign(new Error("pick a finished result"), { field: "result_id" });
  const inference = await post("/inferences", body);
  location.assign(`/inferences/${inference.id}`);
});
load();
