// Models: framework, parameters, the chain it belongs to, and the configurations using each.
import { all } from "./api.js";
import { $, fmt, link, pagedList, updates, soonAndLater } from "./ui.js";

let names = new Map();
let usedBy = new Map();

async function prepare(items) {
  const [models, configurations] = await Promise.all([all("/models"), all("/configurations")]);
  names = new Map(models.map((m) => [m.id, m.name]));
  usedBy = new Map();
  for (const c of configurations) for (const id of c.model_ids) (usedBy.get(id) || usedBy.set(id, []).get(id)).push(c);
  return items;
}

const list = pagedList($("#list"), {
  path: "/models",
  empty: "No model yet: define one with New model.",
  prepare,
  columns: [
    { title: "Id", cell: (m) => link(`/models/${m.id}`, `#${m.id}`) },
    { title: "Name", cell: (m) => link(`/models/${m.id}`, m.name) },
    { title: "Framework", cell: (m) => (m.framework === "tensorflow" ? "TensorFlow" : "PyTorch") },
    { title: "Parameters", num: true, cell: (m) => fmt(m.summary.parameters) },
    { title: "Upper model", cell: (m) => (m.upper_model_id ? link(`/models/${m.upper_model_id}`, names.get(m.upper_model_id) || `#${m.upper_model_id}`) : "–") },
    { title: "Configurations", cell: (m) => { const used = usedBy.get(m.id) || []; return used.length ? used.flatMap((c, i) => [i ? ", " : "", link(`/configurations/${c.id}`, c.name)]) : "–"; } },
  ],
});
updates([["model"], ["configuration"]], soonAndLater(() => list.reload()));
