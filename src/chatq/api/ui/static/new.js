// The new-request form: the served models; submits and opens the new request's page.
import { PATH, api, clearError, el, page, root, servedModels, showError } from "./app.js";

const form = document.getElementById("new-request");

function optionalNumber(id) {
  const value = document.getElementById(id).value;
  return value === "" ? undefined : Number(value);
}

page(async () => {
  const models = await servedModels();
  document.getElementById("model").replaceChildren(
    ...models.map((name) => el("option", { value: name }, name)),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const system = document.getElementById("system").value;
    const messages = [
      ...(system.trim() ? [{ role: "system", content: system }] : []),
      { role: "user", content: document.getElementById("prompt").value },
    ];
    const request = { model: document.getElementById("model").value, messages };
    const maxTokens = optionalNumber("max-tokens");
    const temperature = optionalNumber("temperature");
    if (maxTokens !== undefined) request.max_tokens = maxTokens;
    if (temperature !== undefined) request.temperature = temperature;
    if (document.getElementById("stream").checked) request.stream = true;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const created = await api(PATH, { method: "POST", body: { request } });
      location.assign(`${root}/ui/requests/${encodeURIComponent(created.id)}`);
    } catch (error) {
      showError(error);
      button.disabled = false;
    }
  });
});
