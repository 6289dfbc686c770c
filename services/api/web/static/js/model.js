// A model: define one (or save a changed copy of one) in the code editor; the sandbox's answer
// is shown in place: the summary, or the error at its line. Distributed models pick their upper model.
import { all, get, post } from "./api.js";
import { CodeEditor } from "./editor.js";
import { $, destroy, fmt, h, link, onSubmit, pageId, table } from "./ui.js";

const form = $("#model-form");
const code = new CodeEditor($("#code-editor"), { name: "code", rows: 16 });
const imports = new CodeEditor($("#imports-editor"), { name: "imports", rows: 3 });
const id = pageId();
let models = [];

function summaryView(model) {
  const s = model.summary;
  const shapes = (list) => list.map((shape) => `(${shape.map((d) => (d === null ? "None" : d)).join(", ")})`).join(", ");
  return h("div", { class: "summary", "data-parameters": s.parameters },
    h("div", { class: "summary-figs" },
      h("div", {}, h("b", { id: "parameter-count" }, fmt(s.parameters)), "parameters"),
      h("div", {}, h("b", {}, fmt(s.trainable_parameters)), "trainable"),
      h("div", {}, h("b", {}, String(s.layers.length)), "layers"),
      h("div", {}, h("b", { class: "mono" }, shapes(s.input_shapes)), "input shape"),
      h("div", {}, h("b", { class: "mono" }, shapes(s.output_shapes)), "output shape")),
    table([
      { title: "Layer", cell: (l) => l.name },
      { title: "Type", cell: (l) => l.type },
      { title: "Output shape", cell: (l) => (l.output_shape ? JSON.stringify(l.output_shape) : "–") },
      { title: "Parameters", num: true, cell: (l) => fmt(l.parameters) },
    ], s.layers, "Layers"));
}

function chainOf(startId) {
  // From a model up through its upper models: edge → fog → cloud.
  const byId = new Map(models.map((m) => [m.id, m]));
  const chain = [];
  for (let m = byId.get(startId); m && chain.length < 100; m = byId.get(m.upper_model_id)) chain.push(m);
  return chain;
}

function showChain() {
  const upper = Number($("#upper_model_id").value);
  const chain = upper ? chainOf(upper) : [];
  $("#chain").textContent = chain.length ? `Chain: this model → ${chain.map((m) => `${m.name} (#${m.id})`).join(" → ")}` : "";
}

function toggleDistributed() {
  $("#upper-field").hidden = !$("#distributed").checked;
  showChain();
}

async function load() {
  models = await all("/models");
  const framework = $("#framework").value;
  $("#upper_model_id").replaceChildren(...models.filter((m) => m.id !== id).map((m) => h("option", { value: m.id }, `${m.name} (#${m.id}, ${m.framework})`)));
  if (!id) {
    // A new model starts from the example of upstream Kafka-ML's README.
    if (!code.value) code.value = "model = tf.keras.models.Sequential([\n    tf.keras.layers.Flatten(input_shape=(8, 8)),\n    tf.keras.layers.Dense(128, activation='relu'),\n    tf.keras.layers.Dense(10, activation='softmax'),\n])\nmodel.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])\n";
    $("#framework").value = framework;
    return;
  }
  const model = await get(`/models/${id}`);
  const configurations = (await all("/configurations")).filter((c) => c.model_ids.includes(id));
  $("#name").value = `${model.name} (copy)`;
  $("#framework").value = model.framework;
  $("#description").value = model.description;
  code.value = model.code;
  imports.value = model.imports;
  if (model.upper_model_id) {
    $("#distributed").checked = true;
    $("#upper_model_id").value = model.upper_model_id;
  }
  toggleDistributed();
  document.querySelector("h1").textContent = `Model ${model.name}`;
  document.title = `Model ${model.name} · Kafka-ML`;
  $("#existing").hidden = false;
  $("#existing-summary").replaceChildren(
    h("p", { class: "hint" }, `${model.framework === "tensorflow" ? "TensorFlow" : "PyTorch"} · created ${new Date(model.created_at).toLocaleString()}${model.description ? " · " + model.description : ""}`),
    summaryView(model));
  const lower = models.filter((m) => m.upper_model_id === id);
  const chain = chainOf(id);
  $("#existing-use").replaceChildren(
    h("p", {}, "Chain: ", ...chain.flatMap((m, i) => [i ? " → " : "", m.id === id ? h("strong", {}, m.name) : link(`/models/${m.id}`, m.name)]),
      lower.length ? h("span", {}, " · fed by ", ...lower.flatMap((m, i) => [i ? ", " : "", link(`/models/${m.id}`, m.name)])) : null),
    h("p", {}, "Configurations: ", ...(configurations.length ? configurations.flatMap((c, i) => [i ? ", " : "", link(`/configurations/${c.id}`, c.name)]) : ["none"])));
  $("#delete").addEventListener("click", () => destroy(`model ${model.name}`, `/models/${id}`, () => location.assign("/models")));
}

$("#distributed").addEventListener("change", toggleDistributed);
$("#upper_model_id").addEventListener("change", showChain);

onSubmit(form, async (data) => {
  const body = {
    name: String(data.get("name") || "").trim(),
    framework: data.get("framework"),
    description: String(data.get("description") || ""),
    imports: imports.value,
    code: code.value,
    upper_model_id: $("#distributed").checked ? Number($("#upper_model_id").value) || null : null,
  };
  if (!body.name) throw Object.assign(new Error("give the model a name"), { field: "name" });
  const box = $("#validation");
  box.hidden = false;
  $("#summary").replaceChildren(h("p", { class: "hint" }, "Validating in the trainer's sandbox…"));
  try {
    const model = await post("/models", body);
    $("#summary").replaceChildren(
      h("p", { class: "flash", role: "status" }, "Saved as ", link(`/models/${model.id}`, `model #${model.id} ${model.name}`)),
      summaryView(model));
    models.push(model);
  } catch (error) {
    $("#summary").replaceChildren(h("p", { class: "form-error", role: "alert", id: "validation-error", "data-line": error.line || "" },
      error.line ? `Line ${error.line}: ${error.message}` : error.message));
    if (error.line) (error.field === "imports" ? imports : code).markLine(error.line);
    if (error.field && error.field !== "code" && error.field !== "imports") throw error;
  }
});

load();
