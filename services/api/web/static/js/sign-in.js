// Sign-in: the API token becomes a session cookie; then back to the page that sent us here.
import { post } from "./api.js";
import { $, onSubmit } from "./ui.js";

const form = $("#sign-in");
onSubmit(form, async (data) => {
  const token = String(data.get("token") || "").trim();
  if (!token) throw Object.assign(new Error("enter the API token"), { field: "token" });
  await post("/session", { token });
  const next = new URLSearchParams(location.search).get("next") || "/models";
  // Only a path of this site: never an address elsewhere.
  location.assign(next.startsWith("/") && !next.startsWith("//") ? next : "/models");
});
$("#token").focus();
