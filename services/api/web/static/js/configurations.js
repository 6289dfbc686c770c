// Configurations: pick models (the top of a distributed chain brings its chain; the API adds it).
import { all, post } from "./api.js";
import { $, h, link, onSubmit, pagedList, updates, soonAndLater } from "./ui.js";

let models = [];
const byId = () => new Map(models.map((m) => [m.id, m]));

function chainBelow(top) {
  // Every model whose chain of upper models reaches `top`.
  const map = byId();
  return models.filter((m) => {
    for (let u = m.upper_model_id, n = 0; u && n < 100; u = (map.get(u) || {}).upper_model_id, n++) if (u === top.id) return true;
    return false;
  });
}

async function loadChoices() {
  models = await all("/models");
  const tops = models.filter((m) => !m.upper_model_id);
  $("#model-choices").replaceChildren(...(tops.length ? tops.map((m) => {
    const below = chainBelow(m);
    return h("label", {}, h("input", { type: "checkbox", name: "model_ids", value: m.id }),
      h("span", {}, `${m.name} (#${m.id}, ${m.framework}, ${m.summary.parameters.toLocaleString("en")} parameters)`,
        below.length ? h("span", { class: "hint" }, ` brings its chain: ${below.map((b) => b.name).join(", ")}`) : null));
  }) : [h("p", { class: "hint" }, "No model yet: ", link("/models/new", "define one"), ".")]));
}

const list = pagedList($("#list"), {
  path: "/configurations",
  empty: "No configuration yet.",
  prepare: async (items) => { if (!models.length) models = await all("/models"); return items; },
  columns: [
    { title: "Id", cell: (c) => link(`/configurations/${c.id}`, `#${c.id}`) },
    { title: "Name", cell: (c) => link(`/configurations/${c.id}`, c.name) },
    { title: "Models", cell: (c) => c.model_ids.flatMap((id, i) => [i ? ", " : "", link(`/models/${id}`, (byId().get(id) || { name: `#${id}` }).name)]) },
    { title: "Created", cell: (c) => new Date(c.created_at).toLocaleString() },
  ],
});

onSubmit($("#configuration-form"), async (data) => {
  const ids = data.getAll("model_ids").map(Number);
  if (!ids.length) throw Object.assign(new Error("pick at least one model"), { field: "model_ids" });
  const configuration = await post("/configurations", {
    name: String(data.get("name") || "").trim(), description: String(data.get("description") || ""), model_ids: ids,
  });
  location.assign(`/configurations/${configuration.id}`);
});

if (new URLSearchParams(location.search).has("new")) $("#new-wrap").open = true;
loadChoices();
updates([["configuration"], ["model"]], soonAndLater(() => { list.reload(); loadChoices(); }));
