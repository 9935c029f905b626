// What an admin key sees of the whole server: the queue per status and model, and every
// owner's usage. Any other key is told it is not an admin key.
import { ApiError, api, number, page, rows } from "./app.js";

page(async () => {
  let summary;
  try {
    summary = await api("/admin/summary");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 403)) throw error;
    document.getElementById("not-admin").hidden = false;
    return;
  }
  document.getElementById("admin-panels").hidden = false;
  const queue = document.getElementById("queue");
  rows(queue, summary.queue, (q) => [q.status, q.model, number(q.requests)], "Nothing waiting.");
  rows(document.getElementById("owners"), summary.usage, (u) => [
    u.owner,
    u.model,
    number(u.requests),
    number(u.prompt_tokens),
    number(u.completion_tokens),
    number(u.total_tokens),
    number(u.cost, 6),
  ]);
});
