// The console's shell: sign-in, the top bar and the routes (#/new, #/jobs/ID, #/history).

import { ApiError, call, onSignedOut, session } from "./api.js";
import { renderHistory } from "./history.js";
import { leaveJob, renderJob, renderNewJob } from "./jobs.js";
import { fill, h, toast } from "./util.js";

const main = document.getElementById("main");
const topbar = document.getElementById("topbar");
function showShell(signedIn) {
  topbar.hidden = !signedIn;
  document.getElementById("user").textContent = signedIn ? session.user : "";
  document.body.classList.toggle("signed-out", !signedIn);
}

function markNav(route) {
  for (const link of document.querySelectorAll("[data-nav]")) {
    const current = link.dataset.nav === route;
    link.classList.toggle("current", current);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function signInWith(token, status) {
  status.textContent = "Checking the token…";
  status.className = "form-status";
  try {
    await call("GET", "/instructions?size=1", undefined, { token });
  } catch (error) {
    status.textContent =
      error.status === 401 ? `That token was not accepted: ${error.message}.` : error.message;
    status.className = "form-status error";
    return;
  }
  session.save(token);
  go(!location.hash || location.hash === "#/sign-in" ? "#/new" : location.hash);
}

let byHost = null;

/**
 * Whether a host that mounts the service signs the user in itself (a cookie, say):
 * the API then answers without a token, and the console needs none.
 */
async function signedInByHost() {
  if (byHost !== null) return byHost;
  // Remembered only once the service has said yes (200) or no (401): a failed
  // probe (the service restarting) asks again on the next route.
  const answer = await call("GET", "/instructions?size=1", undefined, { token: "" }).then(
    () => true,
    (error) => (error.status === 401 ? false : null),
  );
  byHost = answer;
  document.getElementById("sign-out").hidden = answer === true;
  return answer === true;
}

/** Show `hash`: through hashchange when it changes, at once when it is already there. */
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function devLoginForm() {
  let available = false;
  try {
    available = (await call("GET", "/auth/dev-token", undefined, { token: "" })).available;
  } catch {
    available = false;
  }
  if (!available) return null;
  const status = h("p", { class: "form-status", role: "alert" });
  const input = h("input", {
    id: "dev-user",
    name: "user_id",
    type: "text",
    autocomplete: "username",
    placeholder: "alice",
    required: true,
    maxlength: 128,
  });
  return h(
    "form",
    {
      class: "dev-login",
      id: "dev-login",
      onsubmit: async (event) => {
        event.preventDefault();
        const user = input.value.trim();
        if (!user) {
          input.focus();
          return;
        }
        try {
          const { token } = await call("POST", "/auth/dev-token", { user_id: user }, { token: "" });
          await signInWith(token, status);
        } catch (error) {
          status.textContent = error.message;
          status.className = "form-status error";
        }
      },
    },
    h("div", { class: "divider" }, h("span", {}, "or, on this machine")),
    h("label", { for: "dev-user" }, "Development sign-in"),
    h("div", { class: "inline" }, input, h("button", { type: "submit", class: "secondary" }, "Sign in as this user")),
    h("p", { class: "hint" }, "Enabled by DEV_LOGIN=true; mints a one-hour token. Never on in production."),
    status,
  );
}

async function renderSignIn(notice = "") {
  showShell(false);
  const status = h("p", { class: notice ? "form-status error" : "form-status", role: "alert" }, notice);
  const token = h("textarea", {
    id: "token",
    name: "token",
    rows: 4,
    spellcheck: false,
    autocomplete: "off",
    placeholder: "eyJhbGciOiJIUzI1NiIs…",
    required: true,
  });
  const card = h(
    "section",
    { class: "card sign-in", "aria-labelledby": "sign-in-title" },
    h("div", { class: "sign-in-brand" }, h("img", { src: new URL("icon.svg", import.meta.url).href, alt: "", width: 40, height: 40 }), h("span", {}, "imagecore")),
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", { class: "muted" }, "Resize, convert, compress and more: upload images, follow each one live, download the results."),
    h(
      "form",
      {
        id: "token-form",
        onsubmit: (event) => {
          event.preventDefault();
          const value = token.value.trim().replace(/^Bearer\s+/i, "");
          if (!value) {
            status.textContent = "Paste a token first.";
            status.className = "form-status error";
            token.focus();
            return;
          }
          signInWith(value, status);
        },
      },
      h("label", { for: "token" }, "Access token"),
      token,
      h("p", { class: "hint" }, "A JWT from your gateway, or on the server: ", h("code", {}, "imagecore token --user YOU")),
      h("button", { type: "submit", class: "primary block" }, "Sign in"),
    ),
    status,
  );
  fill(main, h("div", { class: "center" }, card));
  const dev = await devLoginForm();
  if (dev) card.append(dev);
  document.title = "Sign in · imagecore";
}

async function route() {
  leaveJob();
  if (!session.token && !(await signedInByHost())) {
    await renderSignIn();
    return;
  }
  showShell(true);
  const [path, search = ""] = location.hash.slice(1).split("?");
  const [, name = "new", id = ""] = path.split("/");
  try {
    if (name === "jobs" && id) {
      markNav("");
      await renderJob(main, id);
    } else if (name === "history") {
      markNav("history");
      await renderHistory(main, Number(new URLSearchParams(search).get("page")) || 1);
    } else {
      markNav("new");
      await renderNewJob(main);
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    fill(
      main,
      h(
        "section",
        { class: "card empty" },
        h("h1", {}, error.status === 404 ? "Not found" : "Something went wrong"),
        h("p", { class: "muted" }, error.message),
        h("a", { class: "button secondary", href: "#/new" }, "Start a new job"),
      ),
    );
  }
  main.focus({ preventScroll: true });
}

onSignedOut((message) => {
  session.clear();
  leaveJob();
  toast(`Signed out: ${message}`, "error");
  renderSignIn(`Your session ended (${message}). Sign in again.`);
});

document.getElementById("sign-out").addEventListener("click", () => {
  session.clear();
  go("#/sign-in");
});

window.addEventListener("hashchange", route);
route();
