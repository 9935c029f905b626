// What every dashboard page shares: the key (in this tab's sessionStorage only), calls to
// the JSON API with it as a bearer header, the event stream read with fetch (EventSource
// cannot send a header), and helpers that put data into the page as text, never as HTML.

const KEY = "chatq.key";
const ADMIN = "chatq.admin";

export const root = document.body.dataset.root || "";
export const PATH = "/async/chat/completions";

export function currentKey() {
  return sessionStorage.getItem(KEY);
}

export function signIn(key, admin) {
  sessionStorage.setItem(KEY, key);
  if (admin) sessionStorage.setItem(ADMIN, "1");
  else sessionStorage.removeItem(ADMIN);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(ADMIN);
  location.assign(root + "/ui/signin");
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The API's own words for an error: Perplexity's {"error": {"message"}} or a 422's detail.
async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body.error && body.error.message) return body.error.message;
    if (Array.isArray(body.detail)) {
      return body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    }
  } catch {
    // not JSON: the status says it
  }
  return `HTTP ${response.status}`;
}

function authorized(headers, key = currentKey()) {
  const all = new Headers(headers || {});
  all.set("Authorization", "Bearer " + key);
  return all;
}

// A call to the API with the key; the parsed JSON (null for a 204). A refused key signs
// the tab out; any other error is thrown as an ApiError with the server's message.
export async function api(path, { method = "GET", body, key } = {}) {
  const type = body === undefined ? {} : { "Content-Type": "application/json" };
  const headers = authorized(type, key);
  const response = await fetch(root + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    const error = new ApiError(response.status, await errorMessage(response));
    if (response.status === 401 && key === undefined) signOut();
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One server-sent event from its lines; null for a comment (the server's keep-alive pings).
function parseEvent(block) {
  let kind = "message";
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") kind = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (data.length === 0) return null;
  return { event: kind, id, data: JSON.parse(data.join("\n")) };
}

// The events of a request's stream until its done event; a broken connection is resumed
// with Last-Event-ID (no gap, no repeat). Ends quietly when signal aborts.
export async function* requestEvents(id, signal) {
  let last = null;
  for (;;) {
    const headers = authorized({ Accept: "text/event-stream" });
    if (last !== null) headers.set("Last-Event-ID", last);
    let response;
    try {
      response = await fetch(`${root}${PATH}/${encodeURIComponent(id)}/events`, {
        headers,
        signal,
      });
    } catch (error) {
      if (signal && signal.aborted) return;
      await sleep(1000);
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let raw = "";
    let text = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        raw += value;
        // A CR at the end of a chunk may be half of a CRLF: keep it for the next one.
        const cut = raw.endsWith("\r") ? raw.length - 1 : raw.length;
        text += raw.slice(0, cut).replace(/\r\n?/g, "\n");
        raw = raw.slice(cut);
        let end;
        while ((end = text.indexOf("\n\n")) >= 0) {
          const event = parseEvent(text.slice(0, end));
          text = text.slice(end + 2);
          if (event === null) continue;
          if (event.id !== null) last = event.id;
          yield event;
          if (event.event === "done") return;
        }
      }
    } catch (error) {
      if (signal && signal.aborted) return;
    }
    await sleep(500); // the stream ended before done: resume where it stopped
  }
}

// An element with attributes and children; strings become text nodes, never markup.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function showError(error) {
  const box = document.getElementById("error");
  box.textContent = error && error.message ? error.message : String(error);
  box.hidden = false;
}

export function clearError() {
  document.getElementById("error").hidden = true;
}

export const FINISHED = new Set(["COMPLETED", "FAILED"]);

export function statusBadge(status, node = el("span")) {
  node.className = "status status-" + status.toLowerCase().replace("_", "-");
  node.textContent = status;
  return node;
}

export function when(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const date = new Date(seconds * 1000);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function took(from, to) {
  if (from === null || from === undefined || to === null || to === undefined) return "—";
  const seconds = Math.max(0, to - from);
  return seconds < 60 ? `${seconds} s` : `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

export function number(value, digits = 0) {
  return Number(value).toLocaleString(undefined, {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

// A table's body: a row of text cells per item, or one saying there is none.
export function rows(table, items, cells, none = "None.") {
  const body = table.tBodies[0];
  const tr = (item) => el("tr", {}, ...cells(item).map((cell) => el("td", {}, cell)));
  if (items.length > 0) {
    body.replaceChildren(...items.map(tr));
  } else {
    const colspan = table.tHead.rows[0].cells.length;
    body.replaceChildren(el("tr", {}, el("td", { colspan, class: "muted" }, none)));
  }
}

export async function servedModels() {
  const listed = await api("/v1/models");
  return listed.data.map((model) => model.id);
}

// Every page but sign-in: send a tab without a key to sign in, show the navigation, run
// the page; any error it throws is shown.
export function page(main) {
  if (!currentKey()) {
    location.replace(root + "/ui/signin");
    return;
  }
  const nav = document.getElementById("nav");
  nav.hidden = false;
  document.getElementById("nav-admin").hidden = sessionStorage.getItem(ADMIN) !== "1";
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.nav === document.body.dataset.page) link.setAttribute("aria-current", "page");
  }
  document.getElementById("sign-out").addEventListener("click", signOut);
  main().catch(showError);
}
