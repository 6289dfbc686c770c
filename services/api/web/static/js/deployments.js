// Deployments: a configuration deployed for training, one result per model, status live.
import { all } from "./api.js";
import { $, badge, h, link, pagedList, updates, soonAndLater } from "./ui.js";

let configurations = new Map();
const list = pagedList($("#list"), {
  path: "/deployments",
  empty: "No deployment yet.",
  prepare: async (items) => { configurations = new Map((await all("/configurations")).map((c) => [c.id, c])); return items; },
  columns: [
    { title: "Id", cell: (d) => `#${d.id}` },
    { title: "Configuration", cell: (d) => link(`/configurations/${d.configuration_id}`, (configurations.get(d.configuration_id) || { name: `#${d.configuration_id}` }).name) },
    { title: "Status", cell: (d) => badge(d.status) },
    { title: "Results", cell: (d) => h("span", {}, d.results.flatMap((r, i) => [i ? " " : "", link(`/results/${r.id}`, `#${r.id}`), " ", badge(r.status)])) },
    { title: "Batch", num: true, cell: (d) => String(d.batch_size) },
    { title: "Fit", cell: (d) => h("code", {}, JSON.stringify(d.fit)) },
    { title: "Created", cell: (d) => new Date(d.created_at).toLocaleString() },
  ],
});
updates([["deployment"], ["result"]], soonAndLater(() => list.reload()));
