// The one way pages talk to the gateway: JSON over /api/v1 with the session cookie.
// Mutations carry the CSRF token from the page's <meta>; a 202 (command still running) is followed
// until it ends; an error answer (problem+json) becomes an ApiError naming its field and line.

const BASE = "/api/v1";

export class ApiError extends Error {
  constructor(problem, status) {
    super(problem.detail || problem.title || `error ${status}`);
    this.status = status;
    this.title = problem.title || "";
    this.field = problem.field || null;
    this.line = problem.line || null;
    this.errors = problem.errors || [];
  }
}

function csrf() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function problemOf(response) {
  try { return await response.json(); } catch { return { detail: `${response.status} ${response.statusText}` }; }
}

function toSignIn() {
  const next = location.pathname + location.search;
  location.assign(`/sign-in?next=${encodeURIComponent(next)}`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function follow(location_, deadline) {
  // The command's outcome appears at its Location; poll until it has one.
  for (let wait = 300; Date.now() < deadline; wait = Math.min(wait * 1.5, 2000)) {
    await sleep(wait);
    const state = await request("GET", location_.replace(BASE, ""));
    if (state.data.status === "rejected") throw new ApiError(state.data.outcome, state.data.outcome.status);
    if (state.data.status === "succeeded") return state.data.outcome;
  }
  throw new ApiError({ detail: "the command is still running; reload the page later" }, 202);
}

export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(BASE + path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && !path.startsWith("/session")) { toSignIn(); throw new ApiError({ detail: "signed out" }, 401); }
  if (response.status === 202) {
    const pending = await response.json();
    return { data: await follow(pending.location, Date.now() + 10 * 60 * 1000), total: null };
  }
  if (!response.ok) throw new ApiError(await problemOf(response), response.status);
  const total = response.headers.get("X-Total-Count");
  const text = response.status === 204 ? "" : await response.text();
  return { data: text ? JSON.parse(text) : null, total: total === null ? null : Number(total) };
}

export const get = async (path) => (await request("GET", path)).data;
export const post = async (path, body) => (await request("POST", path, body)).data;
export const del = async (path) => (await request("DELETE", path)).data;

/** One page of a list: {items, total}. */
export async function list(path, { limit, offset = 0, q = "", ...filters } = {}) {
  const params = new URLSearchParams();
  if (limit) params.set("limit", limit);
  if (offset) params.set("offset", offset);
  if (q) params.set("q", q);
  for (const [k, v] of Object.entries(filters)) if (v !== undefined && v !== null && v !== "") params.set(k, v);
  const query = params.toString();
  const answer = await request("GET", path + (query ? `?${query}` : ""));
  return { items: answer.data, total: answer.total ?? answer.data.length };
}

/** Every item of a list (the pickers of forms). */
export const all = async (path, filters = {}) => (await list(path, { limit: 1000, ...filters })).items;
