// Deploy a configuration: batch size, then fit and evaluate parameters in the framework's own
// vocabulary (Keras' fit/evaluate keywords, or Ignite's run and the DataLoader's for PyTorch).
import { all, post } from "./api.js";
import { $, h, onSubmit } from "./ui.js";

const form = $("#deployment-form");
const vocabulary = JSON.parse(form.dataset.vocabulary);
// What each parameter is, for its input; the names themselves come from the server's list.
const KINDS = {
  epochs: ["number", 10], max_epochs: ["number", 10], validation_split: ["number"], shuffle: ["bool"], drop_last: ["bool"],
  pin_memory: ["bool"], persistent_workers: ["bool"], class_weight: ["json"], verbose: ["text"], timeout: ["number"],
};
let configurations = [];
let models = [];

function input(section, name) {
  const key = `${section}.${name}`;
  const [kind, value] = KINDS[name] || ["number"];
  if (kind === "bool") {
    return h("div", { class: "field" }, h("label", { for: key }, h("code", {}, name)),
      h("select", { id: key, name: key }, h("option", { value: "" }, "default"), h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false")));
  }
  return h("div", { class: "field" }, h("label", { for: key }, h("code", {}, name)),
    h("input", { id: key, name: key, type: kind === "number" ? "number" : "text", step: "any", value: section === "fit" ? value : undefined, placeholder: "default" }));
}

function frameworkOf(configuration) {
  const mine = models.filter((m) => configuration.model_ids.includes(m.id));
  return { framework: (mine[0] || {}).framework || "tensorflow", chained: mine.some((m) => m.upper_model_id) };
}

function renderParams() {
  const configuration = configurations.find((c) => c.id === Number($("#configuration_id").value));
  if (!configuration) return;
  const { framework, chained } = frameworkOf(configuration);
  const words = vocabulary[framework];
  const fit = $("#fit"), evaluate = $("#evaluate");
  // Keep what the user typed where the same name exists in the other vocabulary.
  const kept = new FormData(form);
  fit.replaceChildren(...words.fit.map((n) => input("fit", n)));
  evaluate.replaceChildren(...words.evaluate.map((n) => input("evaluate", n)));
  for (const [k, v] of kept) { const node = form.elements.namedItem(k); if (node && v !== "" && (k.startsWith("fit.") || k.startsWith("evaluate."))) node.value = v; }
  const pretty = framework === "tensorflow" ? "Keras" : "PyTorch / Ignite";
  $("#fit-legend").textContent = `Fit parameters (${pretty} names)`;
  $("#evaluate-legend").textContent = `Evaluate parameters (${pretty} names)`;
  $("#configuration-about").textContent = `${pretty} · ${configuration.model_ids.length} model(s)${chained ? " · a distributed chain" : ""}`;
  $("#distributed-set").hidden = !chained;
}

// The incremental fieldset: shown when its box is ticked; the timeout is off when "indefinite".
function syncIncremental() {
  $("#incremental-set").hidden = !$("#incremental").checked;
  $("[name='incremental.stream_timeout_s']").disabled = $("[name='incremental.indefinite']").checked;
  // Epochs are per window when learning continuously (1 by default), per run otherwise.
  const epochs = form.elements.namedItem("fit.epochs") || form.elements.namedItem("fit.max_epochs");
  if (epochs && $("#incremental").checked && epochs.value === String(KINDS.epochs[1])) epochs.value = "1";
}

const invalid = (field, message) => Object.assign(new Error(message), { field });

function optionalNumber(data, key, { integer = false, zero = false } = {}) {
  const raw = String(data.get(key) ?? "").trim();
  if (raw === "") return null;
  const value = Number(raw);
  const name = key.split(".")[1];
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) throw invalid(key, `${name} must be ${integer ? "a whole number" : "a number"}`);
  if (zero ? value < 0 : value <= 0) throw invalid(key, `${name} must be ${zero ? "0 or more" : "more than 0"}`);
  return value;
}

/** The REST contract's "incremental" object, checked here first so each mistake shows at its field. */
function incremental(data) {
  const windowSamples = optionalNumber(data, "incremental.window_samples", { integer: true });
  const windowS = optionalNumber(data, "incremental.window_s");
  if (windowSamples === null && windowS === null) {
    throw invalid("incremental.window_samples", "give the window's size in samples or in seconds (or both)");
  }
  const indefinite = data.get("incremental.indefinite") === "on";
  const timeout = indefinite ? null : optionalNumber(data, "incremental.stream_timeout_s");
  if (!indefinite && timeout === null) {
    throw invalid("incremental.stream_timeout_s", "give the seconds without a record after which training ends, or tick Indefinite");
  }
  const metric = String(data.get("incremental.monitoring_metric") || "").trim();
  return {
    window_samples: windowSamples, window_s: windowS, stream_timeout_s: timeout,
    monitoring_metric: metric || null, change: data.get("incremental.change") === "down" ? "down" : "up",
    improvement: optionalNumber(data, "incremental.improvement", { zero: true }) ?? 0,
  };
}

function section(data, name) {
  const found = {};
  for (const [key, raw] of data) {
    if (!key.startsWith(name + ".") || raw === "") continue;
    const field = key.slice(name.length + 1);
    const [kind] = KINDS[field] || ["number"];
    let value = raw;
    if (kind === "bool") value = raw === "true";
    else if (kind === "number") value = Number(raw);
    else if (kind === "json") {
      try { value = JSON.parse(raw); } catch { throw Object.assign(new Error(`${field} must be JSON`), { field: key }); }
    } else if (/^\d+$/.test(raw)) value = Number(raw);
    found[field] = value;
  }
  return found;
}

async function load() {
  [configurations, models] = await Promise.all([all("/configurations"), all("/models")]);
  const wanted = new URLSearchParams(location.search).get("configuration_id");
  $("#configuration_id").replaceChildren(...configurations.map((c) => h("option", { value: c.id, selected: String(c.id) === wanted }, `${c.name} (#${c.id})`)));
  renderParams();
}

$("#configuration_id").addEventListener("change", renderParams);
$("#incremental").addEventListener("change", syncIncremental);
$("[name='incremental.indefinite']").addEventListener("change", syncIncremental);
syncIncremental();
onSubmit(form, async (data) => {
  const configuration = configurations.find((c) => c.id === Number(data.get("configuration_id")));
  if (!configuration) throw Object.assign(new Error("pick a configuration (create one first)"), { field: "configuration_id" });
  const body = {
    configuration_id: configuration.id,
    batch_size: Number(data.get("batch_size")),
    gpus: Number(data.get("gpus") || 0),
    confusion_matrix: data.get("confusion_matrix") === "on",
    fit: section(data, "fit"),
    evaluate: section(data, "evaluate"),
  };
  if (data.get("incremental") === "on") body.incremental = incremental(data);
  if (frameworkOf(configuration).chained) {
    body.distributed = {
      optimizer: data.get("distributed.optimizer"), learning_rate: Number(data.get("distributed.learning_rate")),
      loss: data.get("distributed.loss"), metrics: String(data.get("distributed.metrics")).split(",").map((s) => s.trim()).filter(Boolean),
    };
  }
  const deployment = await post("/deployments", body);
  const results = deployment.results || [];
  location.assign(results.length === 1 ? `/results/${results[0].id}` : `/results?q=deployment+${deployment.id}`);
});
load();
