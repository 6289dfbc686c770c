// Small DOM helpers shared by the pages: elements, forms and their errors, the confirm dialog,
// paged and filtered lists, status badges, and the live updates pushed over server-sent events.
import { ApiError, del, list } from "./api.js";

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const pageId = () => Number(document.body.dataset.id);
export const link = (href, text) => h("a", { href }, text);
export const badge = (status) => h("span", { class: `badge ${status}`, "data-status": status }, (status || "").replace("_", " "));

export function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(digits);
  return String(value);
}

export function flash(message) {
  const box = $("#flash");
  if (box) { box.classList.remove("error"); box.textContent = message; }
}

export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function table(columns, rows, caption) {
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.title)));
  const body = rows.map((row) => h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(row)))));
  const tableNode = h("table", {}, caption ? h("caption", { class: "hint" }, caption) : null, h("thead", {}, head), h("tbody", {}, body));
  return h("div", { class: "table-box", tabindex: "0", role: "region", "aria-label": caption || "table" }, tableNode);
}

// --- forms and their errors -------------------------------------------------------------------

export function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((n) => n.remove());
  form.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
  const top = $(".form-error", form);
  if (top) top.textContent = "";
}

function fieldNode(form, field) {
  // "fit.epochs" names the input fit.epochs; failing that, its section ("fit").
  const parts = String(field).split(".");
  for (let n = parts.length; n > 0; n--) {
    const name = parts.slice(0, n).join(".");
    const found = form.querySelector(`[name="${CSS.escape(name)}"], [data-field="${CSS.escape(name)}"]`);
    if (found) return found;
  }
  return null;
}

/** Shows an error at the field it names (or at the top of the form); returns the node shown. */
export function showError(form, error) {
  const message = error instanceof ApiError || error instanceof Error ? error.message : String(error);
  const target = error.field ? fieldNode(form, error.field) : null;
  if (target) {
    const id = `error-${(target.id || target.name || "field").replace(/\W/g, "-")}`;
    const note = h("p", { class: "field-error", id, role: "alert" }, message);
    target.setAttribute("aria-invalid", "true");
    target.setAttribute("aria-describedby", id);
    (target.closest(".field") || target.parentElement).append(note);
    if (target.focus && target.tagName !== "FIELDSET") target.focus();
    return note;
  }
  const top = $(".form-error", form);
  top.textContent = `${error.title ? error.title + ": " : ""}${message}`;
  return top;
}

/** Runs a form's submit handler with its button disabled and its errors shown in place. */
export function onSubmit(form, handler) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const button = form.querySelector('button[type="submit"]');
    const label = button ? button.textContent : "";
    if (button) { button.disabled = true; button.textContent = "Working…"; }
    try { await handler(new FormData(form)); }
    catch (error) { showError(form, error); }
    finally { if (button) { button.disabled = false; button.textContent = label; } }
  });
}

// --- confirmation -------------------------------------------------------------------------------

export function confirmAction(text, action = "Delete") {
  const dialog = $("#confirm");
  $("#confirm-text", dialog).textContent = text;
  $("#confirm-ok", dialog).textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

/** A destructive action: asks first, then shows what the server said (a 409 says what uses it). */
export async function destroy(what, path, then) {
  if (!(await confirmAction(`Delete ${what}? This cannot be undone.`))) return;
  try {
    await del(path);
    then();
  } catch (error) {
    flashError(error);
  }
}

export function flashError(error) {
  const box = $("#flash");
  box.textContent = "";
  box.classList.add("error");
  box.append(h("span", { class: "form-error", role: "alert" }, `${error.title ? error.title + ": " : ""}${error.message}`));
}

// --- lists --------------------------------------------------------------------------------------

/**
 * A filtered, paged list read from the server: a search box, a table, "n–m of total", and
 * previous/next. Returns {reload} so live updates can refresh it.
 */
export function pagedList(container, { path, columns, pageSize = 20, empty = "Nothing yet.", prepare }) {
  const label = container.dataset.label || "items";
  const search = h("input", { type: "search", id: "filter", name: "q", autocomplete: "off" });
  const form = h("form", { class: "filter", role: "search", "aria-label": `Filter ${label}` },
    h("div", { class: "field" }, h("label", { for: "filter" }, `Filter ${label}`), search),
    h("button", { type: "submit", class: "quiet" }, "Filter"));
  const body = h("div", { "aria-live": "polite" });
  const pager = h("nav", { class: "pager", "aria-label": `Pages of ${label}` });
  container.replaceChildren(form, body, pager);
  let offset = 0;
  let running = null;
  async function reload() {
    const answer = await list(path, { limit: pageSize, offset, q: search.value.trim() });
    const items = prepare ? await prepare(answer.items) : answer.items;
    body.replaceChildren(items.length ? table(columns, items, `${label}: ${answer.total} in all`) : h("p", { class: "hint" }, empty));
    body.dataset.total = answer.total;
    const last = Math.min(offset + items.length, answer.total);
    pager.replaceChildren(...[
      h("span", {}, answer.total ? `${offset + 1}–${last} of ${answer.total}` : ""),
      offset > 0 ? h("button", { type: "button", class: "quiet small", onclick: () => { offset = Math.max(0, offset - pageSize); refresh(); } }, "Previous") : null,
      last < answer.total ? h("button", { type: "button", class: "quiet small", onclick: () => { offset += pageSize; refresh(); } }, "Next") : null,
    ].filter(Boolean));
  }
  function refresh() {
    // One reload at a time; a burst of live updates folds into the next one.
    if (running) { running.again = true; return running.promise; }
    running = { again: false };
    running.promise = (async () => {
      try { do { running.again = false; await reload(); } while (running.again); }
      catch (error) { flashError(error); }
      finally { running = null; }
    })();
    return running.promise;
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); offset = 0; refresh(); });
  search.addEventListener("input", () => { clearTimeout(search.timer); search.timer = setTimeout(() => { offset = 0; refresh(); }, 250); });
  refresh();
  return { reload: refresh };
}

// --- live updates -------------------------------------------------------------------------------

/** Calls handler(message) for each change the server pushes for these filters. */
export function updates(filters, handler) {
  const params = new URLSearchParams();
  for (const [entity, id] of filters) { params.append("entity", entity); if (id !== undefined) params.append("id", id); }
  const source = new EventSource(`/api/v1/updates?${params}`, { withCredentials: true });
  const entities = new Set(filters.map(([entity]) => entity));
  for (const entity of entities) {
    source.addEventListener(entity, (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      handler(message);
    });
  }
  window.addEventListener("pagehide", () => source.close());
  return source;
}

/**
 * fn, run soon after an update and again a little later: an event can come before every service
 * has stored its part of it (the orchestrator records a status it heard from a worker).
 */
export function soonAndLater(fn, delays = [150, 2000, 6000]) {
  let timers = [];
  return () => { timers.forEach(clearTimeout); timers = delays.map((ms) => setTimeout(fn, ms)); };
}

/** The payload of a pushed event, whichever way the hub wraps it. */
export const payloadOf = (message) => (message.detail && message.detail.payload) || message.detail || {};

// --- every page -----------------------------------------------------------------------------------

const signOut = document.getElementById("sign-out");
if (signOut) {
  signOut.addEventListener("click", async () => {
    try { await del("/session"); } catch { /* signed out already */ }
    location.assign("/sign-in");
  });
}

// A page whose data cannot be read (say, a model that does not exist) says why instead of staying blank.
window.addEventListener("unhandledrejection", (event) => {
  if (event.reason && event.reason.status === 401) return;  // on its way to the sign-in page
  flashError(event.reason instanceof Error ? event.reason : new Error(String(event.reason)));
});
