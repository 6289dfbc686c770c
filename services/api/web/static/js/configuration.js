// A configuration: its models, its deployments, and their results compared side by side
// (curves of every result overlaid per metric; final and test metrics in one table).
import { all, get } from "./api.js";
import { lineChart, PALETTE } from "./charts.js";
import { $, badge, destroy, facts, fmt, h, link, pageId, table, updates, soonAndLater } from "./ui.js";

const id = pageId();

async function load() {
  const [configuration, models, deployments] = await Promise.all([get(`/configurations/${id}`), all("/models"), all("/deployments")]);
  const names = new Map(models.map((m) => [m.id, m.name]));
  const mine = deployments.filter((d) => d.configuration_id === id);
  document.querySelector("h1").textContent = `Configuration ${configuration.name}`;
  $("#about").replaceChildren(
    facts([
      ["Models", h("span", {}, configuration.model_ids.flatMap((m, i) => [i ? ", " : "", link(`/models/${m}`, names.get(m) || `#${m}`)]))],
      ["Deployments", mine.length ? h("span", {}, mine.flatMap((d, i) => [i ? ", " : "", link(`/results?q=deployment+${d.id}`, `#${d.id}`), " ", badge(d.status)])) : "none yet"],
      configuration.description ? ["Description", configuration.description] : null,
      ["Created", new Date(configuration.created_at).toLocaleString()],
    ]),
    h("p", { class: "actions" },
      h("a", { class: "button", href: `/deployments/new?configuration_id=${id}` }, "Deploy for training"),
      h("button", { type: "button", class: "danger", onclick: () => destroy(`configuration ${configuration.name}`, `/configurations/${id}`, () => location.assign("/configurations")) }, "Delete configuration")));
  const results = (await Promise.all(mine.map((d) => all("/results", { deployment_id: d.id })))).flat();
  const label = (r) => `#${r.id} ${names.get(r.model_id) || "model " + r.model_id} (deployment ${r.deployment_id})`;
  const testNames = [...new Set(results.flatMap((r) => Object.keys(r.test_metrics)))].sort();
  const trainNames = [...new Set(results.flatMap((r) => Object.keys(r.train_metrics)))].sort();
  $("#compare-table").replaceChildren(results.length ? table([
    { title: "Result", cell: (r) => link(`/results/${r.id}`, label(r)) },
    { title: "Status", cell: (r) => badge(r.status) },
    ...trainNames.map((n) => ({ title: `final ${n}`, num: true, cell: (r) => fmt((r.train_metrics[n] || []).at(-1)) })),
    ...testNames.map((n) => ({ title: `test ${n}`, num: true, cell: (r) => fmt(r.test_metrics[n]) })),
    { title: "Time (s)", num: true, cell: (r) => fmt(r.training_time, 1) },
  ], results, "Final and test metrics") : h("p", { class: "hint" }, "No result yet: deploy this configuration."));
  $("#compare-charts").replaceChildren(...trainNames.map((metric) => lineChart(metric, results.flatMap((r, k) => [
    { name: `${label(r)} train`, values: r.train_metrics[metric] || [], color: PALETTE[k % PALETTE.length] },
    ...(r.val_metrics[metric] ? [{ name: `${label(r)} validation`, values: r.val_metrics[metric], color: PALETTE[k % PALETTE.length], dashed: true }] : []),
  ]))));
}

load();
updates([["result"], ["deployment"]], soonAndLater(load, [300, 2000, 6000]));
