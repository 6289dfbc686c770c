// Inferences: trained models served on Kafka topics.
import { $, badge, h, link, pagedList, updates, soonAndLater } from "./ui.js";

const list = pagedList($("#list"), {
  path: "/inferences",
  empty: "No inference yet: deploy a finished result.",
  columns: [
    { title: "Id", cell: (i) => link(`/inferences/${i.id}`, `#${i.id}`) },
    { title: "Result", cell: (i) => link(`/results/${i.result_id}`, `#${i.result_id}`) },
    { title: "Status", cell: (i) => badge(i.status) },
    { title: "Input → output", cell: (i) => h("span", {}, h("code", {}, i.input_topic), " → ", h("code", {}, i.output_topic)) },
    { title: "Replicas", num: true, cell: (i) => String(i.replicas) },
    { title: "Created", cell: (i) => new Date(i.created_at).toLocaleString() },
  ],
});
updates([["inference"]], soonAndLater(() => list.reload()));
