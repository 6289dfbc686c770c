// Data sources: what the control topic announced, and re-sending one to another deployment.
import { all, post } from "./api.js";
import { $, flash, fmt, h, onSubmit, pagedList, updates, soonAndLater } from "./ui.js";

const dialog = $("#resend");
const form = $("#resend-form");
let chosen = null;

async function resend(source) {
  chosen = source;
  const deployments = await all("/deployments");
  $("#resend-title").textContent = `Re-send data source #${source.id} (${source.topic})`;
  $("#deployment_id").replaceChildren(...deployments.map((d) => h("option", { value: d.id }, `deployment #${d.id} (${d.status})`)));
  form.querySelector(".form-error").textContent = "";
  dialog.showModal();
}

const list = pagedList($("#list"), {
  path: "/datasources",
  empty: "Nothing announced yet: a data source (examples/digits/send_training_data.py) announces its stream here.",
  columns: [
    { title: "Id", cell: (d) => `#${d.id}` },
    { title: "Deployment", cell: (d) => `#${d.deployment_id}` },
    { title: "Topic", cell: (d) => h("span", {}, h("code", {}, d.topic), d.lost ? h("span", { class: "form-error" }, ` lost: ${d.lost}`) : null) },
    { title: "Format", cell: (d) => h("details", {}, h("summary", {}, d.input_format), h("pre", { class: "block" }, JSON.stringify(d.input_config, null, 2))) },
    { title: "Validation", num: true, cell: (d) => fmt(d.validation_rate, 2) },
    { title: "Test", num: true, cell: (d) => fmt(d.test_rate, 2) },
    { title: "Messages", num: true, cell: (d) => fmt(d.total_msg) },
    { title: "Description", cell: (d) => d.description || "–" },
    { title: "Announced", cell: (d) => h("span", {}, new Date(d.created_at).toLocaleString(), h("br"), h("span", { class: "hint" }, `${d.control_topic} ${d.partition}:${d.offset}`)) },
    { title: "", cell: (d) => h("button", { type: "button", class: "small", onclick: () => resend(d), disabled: Boolean(d.lost) }, "Re-send") },
  ],
});

onSubmit(form, async (data) => {
  const deployment = Number(data.get("deployment_id"));
  await post(`/datasources/${chosen.id}/send`, { deployment_id: deployment });
  dialog.close();
  flash(`Data source #${chosen.id} sent to deployment #${deployment}.`);
});
$("#resend-cancel").addEventListener("click", () => dialog.close());
const q = new URLSearchParams(location.search).get("q");
if (q) { $("#filter").value = q; list.reload(); }
updates([["datasource"]], soonAndLater(() => list.reload()));
