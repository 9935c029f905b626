// The owner's requests, newest first, filtered by status and model; unfinished ones are
// watched on their event streams, so their status changes in place.
import {
  FINISHED,
  PATH,
  api,
  el,
  page,
  requestEvents,
  root,
  servedModels,
  showError,
  statusBadge,
  took,
  when,
} from "./app.js";

// Event streams open at once: browsers allow six connections to a host, and the page's
// other calls need some.
const MAX_WATCHED = 3;
const PAGE_SIZE = 50;

const table = document.getElementById("requests");
const statusFilter = document.getElementById("filter-status");
const modelFilter = document.getElementById("filter-model");
const more = document.getElementById("more");
let nextToken = null;

// The rows being watched for the list as it is now; a new list (other filters) stops them.
class Watching {
  constructor() {
    this.stop = new AbortController();
    this.open = 0;
    this.waiting = []; // [id, row] of unfinished requests not yet watched
  }

  add(id, tr) {
    this.waiting.push([id, tr]);
    this.more();
  }

  more() {
    while (this.open < MAX_WATCHED && this.waiting.length > 0 && !this.stop.signal.aborted) {
      const [id, tr] = this.waiting.shift();
      this.watch(id, tr);
    }
  }

  async watch(id, tr) {
    this.open += 1;
    try {
      for await (const event of requestEvents(id, this.stop.signal)) {
        if (event.event === "status" || event.event === "done") tr.update(event.data);
      }
    } catch {
      // a request deleted meanwhile: its row stays as it was
    } finally {
      this.open -= 1;
      this.more();
    }
  }
}

let watching = new Watching();

function endOf(request) {
  return request.completed_at ?? request.failed_at;
}

function row(request) {
  const href = `${root}/ui/requests/${encodeURIComponent(request.id)}`;
  // The id's first part: enough to tell requests apart, and it fits a phone.
  const link = el("a", { href, title: request.id }, request.id.slice(0, 8));
  const status = statusBadge(request.status);
  const duration = el("span", {}, took(request.created_at, endOf(request)));
  const tr = el(
    "tr",
    { "data-id": request.id },
    el("td", {}, when(request.created_at)),
    el("td", { class: "id" }, link),
    el("td", {}, request.model),
    el("td", {}, status),
    el("td", {}, duration),
  );
  tr.update = (changed) => {
    statusBadge(changed.status, status);
    duration.textContent = took(changed.created_at, endOf(changed));
  };
  if (!FINISHED.has(request.status)) watching.add(request.id, tr);
  return tr;
}

function query() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (statusFilter.value) params.set("status", statusFilter.value);
  if (modelFilter.value) params.set("model", modelFilter.value);
  if (nextToken) params.set("next_token", nextToken);
  return params;
}

async function load(append) {
  if (!append) {
    watching.stop.abort();
    watching = new Watching();
    nextToken = null;
  }
  const listed = await api(`${PATH}?${query()}`);
  const trs = listed.requests.map(row);
  if (append) table.tBodies[0].append(...trs);
  else table.tBodies[0].replaceChildren(...trs);
  nextToken = listed.next_token;
  more.hidden = nextToken === null;
  document.getElementById("empty").hidden = table.tBodies[0].rows.length > 0;
}

function filtersChanged() {
  const params = new URLSearchParams();
  if (statusFilter.value) params.set("status", statusFilter.value);
  if (modelFilter.value) params.set("model", modelFilter.value);
  const search = params.toString();
  history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
  return load(false);
}

page(async () => {
  const wanted = new URLSearchParams(location.search);
  const models = await servedModels();
  const model = wanted.get("model");
  if (model && !models.includes(model)) models.push(model); // an old request's model
  modelFilter.append(...models.map((name) => el("option", { value: name }, name)));
  statusFilter.value = wanted.get("status") || "";
  modelFilter.value = model || "";
  for (const control of [statusFilter, modelFilter]) {
    control.addEventListener("change", () => filtersChanged().catch(showError));
  }
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    filtersChanged().catch(showError);
  });
  document.getElementById("refresh").addEventListener("click", () => load(false).catch(showError));
  more.addEventListener("click", () => load(true).catch(showError));
  await load(false);
});
