// Results: every trained model's state, moving live as the trainers report.
import { all } from "./api.js";
import { $, badge, fmt, h, link, pagedList, updates, soonAndLater } from "./ui.js";

let names = new Map();
const search = $("#list");
const list = pagedList(search, {
  path: "/results",
  empty: "No result yet: deploy a configuration.",
  prepare: async (items) => { names = new Map((await all("/models")).map((m) => [m.id, m.name])); return items; },
  columns: [
    { title: "Id", cell: (r) => link(`/results/${r.id}`, `#${r.id}`) },
    { title: "Model", cell: (r) => link(`/models/${r.model_id}`, names.get(r.model_id) || `#${r.model_id}`) },
    { title: "Deployment", cell: (r) => `#${r.deployment_id}` },
    { title: "Status", cell: (r) => h("span", {}, badge(r.status), r.error ? h("span", { class: "hint" }, ` ${r.error.slice(0, 120)}`) : null) },
    { title: "Epochs", num: true, cell: (r) => String(Math.max(0, ...Object.values(r.train_metrics).map((v) => v.length))) },
    { title: "Version", num: true, cell: (r) => (r.latest_version ? `v${r.latest_version}` : "–") },
    { title: "Test metrics", cell: (r) => Object.entries(r.test_metrics).map(([k, v]) => `${k} ${fmt(v)}`).join(", ") || "–" },
  ],
});
const q = new URLSearchParams(location.search).get("q");
if (q) { $("#filter").value = q; list.reload(); }
updates([["result"]], soonAndLater(() => list.reload()));
