// One request: its messages and parameters, its answer (live, from the event stream, for a
// stream: true request), timings, attempts, error and webhook; cancel and delete.
import {
  ApiError,
  FINISHED,
  PATH,
  api,
  clearError,
  el,
  number,
  page,
  requestEvents,
  root,
  rows,
  showError,
  statusBadge,
  took,
  when,
} from "./app.js";

const id = document.body.dataset.requestId;
const base = `${PATH}/${encodeURIComponent(id)}`;
const answer = document.getElementById("answer");
const cancelButton = document.getElementById("cancel");
const deleteButton = document.getElementById("delete");
let attempts = null;
let run = null; // the run of the text shown; a new run (a restarted job) starts it over

// Content as a string: a string as it is, content chunks by their text.
function contentText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((c) => (c && c.type === "text" ? c.text : JSON.stringify(c))).join("\n");
  }
  return JSON.stringify(content);
}

function fact(list, name, value) {
  list.append(el("dt", {}, name), el("dd", {}, value));
}

function show(request) {
  statusBadge(request.status, document.getElementById("status"));
  const finished = FINISHED.has(request.status);
  cancelButton.disabled = finished;
  deleteButton.disabled = !finished;
  const end = request.completed_at ?? request.failed_at;
  const facts = document.getElementById("facts");
  facts.replaceChildren();
  fact(facts, "Id", request.id);
  fact(facts, "Model", request.model);
  fact(facts, "Created", when(request.created_at));
  fact(facts, "Started", when(request.started_at));
  fact(facts, request.failed_at ? "Failed" : "Completed", when(end));
  fact(facts, "Waited", took(request.created_at, request.started_at));
  fact(facts, "Ran", took(request.started_at, end));
  fact(facts, "Attempts", attempts === null ? "—" : String(attempts));
  for (const [name, value] of Object.entries(request.metadata || {})) {
    fact(facts, `metadata.${name}`, value);
  }
  if (request.response) {
    const choice = (request.response.choices || [])[0];
    answer.textContent = choice ? contentText(choice.message.content) : "";
    const usage = request.response.usage;
    const [prompt, completion] = usage
      ? [number(usage.prompt_tokens), number(usage.completion_tokens)]
      : [];
    document.getElementById("usage").textContent = usage
      ? `${prompt} prompt tokens, ${completion} completion tokens`
      : "";
  }
  const failure = document.getElementById("failure");
  failure.hidden = !request.error_message;
  failure.textContent = request.error_message || "";
}

function showSubmitted(submitted) {
  attempts = submitted.attempts;
  const { messages = [], model, ...parameters } = submitted.request;
  document.getElementById("messages").replaceChildren(
    ...messages.map((message) =>
      el(
        "div",
        { class: "message" },
        el("span", { class: "role" }, String(message.role)),
        el("pre", {}, contentText(message.content)),
      ),
    ),
  );
  const list = document.getElementById("parameters");
  list.replaceChildren();
  for (const [name, value] of Object.entries(parameters)) fact(list, name, JSON.stringify(value));
}

async function showWebhook() {
  const line = document.getElementById("webhook");
  const table = document.getElementById("webhook-attempts");
  let delivery;
  try {
    delivery = await api(`${base}/webhook`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
    line.textContent = "No webhook.";
    return;
  }
  const error = delivery.last_error ? ` (last error: ${delivery.last_error})` : "";
  line.textContent = `${delivery.status} to ${delivery.url}${error}`;
  table.hidden = delivery.attempts.length === 0;
  rows(table, delivery.attempts, (a) => [
    String(a.attempt),
    when(a.at),
    a.status_code === null ? "—" : String(a.status_code),
    a.error ?? "",
  ]);
}

async function refresh() {
  const [request, submitted] = await Promise.all([api(base), api(`${base}/request`)]);
  showSubmitted(submitted);
  show(request);
  await showWebhook();
  return request;
}

async function watch() {
  for await (const event of requestEvents(id)) {
    if (event.event === "status") {
      if (event.data.run !== run) {
        run = event.data.run;
        answer.textContent = ""; // a new run's text starts from its beginning
      }
      attempts = (await api(`${base}/request`)).attempts; // a worker started it (again)
      show(event.data);
    } else if (event.event === "delta") {
      answer.append(event.data.content);
    } else if (event.event === "done") {
      await refresh();
    }
  }
}

page(async () => {
  cancelButton.addEventListener("click", async () => {
    clearError();
    try {
      show(await api(`${base}/cancel`, { method: "POST" }));
    } catch (error) {
      showError(error);
    }
  });
  deleteButton.addEventListener("click", async () => {
    clearError();
    try {
      await api(base, { method: "DELETE" });
      location.assign(root + "/ui");
    } catch (error) {
      showError(error);
    }
  });
  const request = await refresh();
  if (!FINISHED.has(request.status)) await watch();
});
