// Sign in: check the key against the API, then keep it in this tab's sessionStorage.
import { ApiError, api, currentKey, root, showError, signIn } from "./app.js";

if (currentKey()) location.replace(root + "/ui");

document.getElementById("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault(); // never sent anywhere as a form: it would carry the key
  const input = document.getElementById("key");
  const key = input.value.trim();
  try {
    await api("/v1/models", { key });
  } catch (error) {
    showError(error.status === 401 ? new Error("That key was not accepted.") : error);
    return;
  }
  let admin = true;
  try {
    await api("/admin/summary", { key });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 403)) {
      showError(error);
      return;
    }
    admin = false; // any key may sign in; only an admin key sees the admin view
  }
  input.value = "";
  signIn(key, admin);
  location.assign(root + "/ui");
});
