// Talking to the imagecore API: JSON calls, uploads with progress, live events, downloads.
//
// The token lives in sessionStorage (this tab only) and goes in the
// Authorization header of every call, the live events included: they are
// read with fetch() and a stream reader, because EventSource cannot send
// headers and a token in a URL ends up in logs.

const TOKEN_KEY = "imagecore.token";

// The service's root: the console's scripts are served from <root>console/, and a
// host may mount the service under any prefix (/images/), so every call goes
// through `apiUrl`, never to an absolute path.
const ROOT = new URL("../", import.meta.url);

/** The URL of an API path such as "/products", under the service's root. */
export function apiUrl(path) {
  return new URL(path.replace(/^\//, ""), ROOT).href;
}

export class ApiError extends Error {
  constructor(status, message, code = "") {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let signedOut = () => {};

/** Call `handler(message)` when the service refuses the stored token (401). */
export function onSignedOut(handler) {
  signedOut = handler;
}

function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "="));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
}

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  },
  get user() {
    return decodeClaims(this.token).sub || "";
  },
  save(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

function authHeaders(token = session.token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function failure(response, token) {
  const payload = await response.json().catch(() => null);
  const message = payload?.message || `${response.status} ${response.statusText}`;
  if (response.status === 401 && token && token === session.token) signedOut(message);
  return new ApiError(response.status, message, payload?.errors?.[0]?.code || "");
}

/** A JSON call; resolves to the envelope's `data`, rejects with an ApiError. */
export async function call(method, path, body, { token = session.token } = {}) {
  const headers = { Accept: "application/json", ...authHeaders(token) };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiUrl(path), init);
  } catch {
    throw new ApiError(0, "The service did not answer. Is it running?");
  }
  if (!response.ok) throw await failure(response, token);
  const payload = await response.json();
  return payload.data;
}

let products = null;

/** The catalogue, fetched once per page load (GET /products is public). */
export async function catalogue() {
  products ??= (await call("GET", "/products", undefined, { token: "" })).products;
  return products;
}

/**
 * Upload one file to an instruction; `onProgress(fraction)` follows the bytes sent.
 * Resolves to the new detail (the file, PENDING); `signal` aborts it (an ApiError
 * with the code "aborted").
 */
export function upload(instructionId, file, onProgress, signal = null) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new ApiError(0, "The upload was cancelled.", "aborted"));
      return;
    }
    const xhr = new XMLHttpRequest();
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.addEventListener("abort", () => reject(new ApiError(0, "The upload was cancelled.", "aborted")));
    const token = session.token;
    xhr.open("POST", apiUrl(`/instructions/${encodeURIComponent(instructionId)}/details`));
    for (const [name, value] of Object.entries(authHeaders(token))) {
      xhr.setRequestHeader(name, value);
    }
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      const payload = xhr.response;
      if (xhr.status === 200 && payload?.data?.files?.length) {
        onProgress(1);
        resolve(payload.data.files[0]);
        return;
      }
      const message = payload?.message || `upload failed (${xhr.status})`;
      if (xhr.status === 401 && token === session.token) signedOut(message);
      reject(new ApiError(xhr.status, message, payload?.errors?.[0]?.code || ""));
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError(0, "The upload was interrupted. Check the connection and retry.")),
    );
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/** Fetch a file with the token; resolves to `{blob, name}` (the name from Content-Disposition). */
export async function fetchFile(path) {
  const token = session.token;
  let response;
  try {
    response = await fetch(apiUrl(path), { headers: authHeaders(token), cache: "no-store" });
  } catch {
    throw new ApiError(0, "The service did not answer. Is it running?");
  }
  if (!response.ok) throw await failure(response, token);
  return { blob: await response.blob(), name: fileName(response.headers.get("Content-Disposition")) };
}

function fileName(disposition) {
  if (!disposition) return "download";
  const encoded = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (encoded) {
    try {
      return decodeURIComponent(encoded[1]);
    } catch {
      /* fall through to the plain name */
    }
  }
  const plain = /filename="([^"]*)"/i.exec(disposition);
  return plain ? plain[1] : "download";
}

/** Save a blob under `name` through the browser's download. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

/**
 * Follow a Server-Sent Events route with the Authorization header.
 * Calls `onEvent(data, id)` for each event, reconnects with Last-Event-ID
 * after a drop, and stops on `close()` or when the token is refused.
 */
export function follow(path, { onEvent, onState = () => {} }) {
  const controller = new AbortController();
  const { signal } = controller;
  let lastEventId = "";
  let retry = 2000;

  function dispatch(frame) {
    let data = "";
    let id = null;
    for (const line of frame.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") data += (data ? "\n" : "") + value;
      else if (field === "id") id = value;
      else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
    }
    if (id !== null) lastEventId = id;
    if (data) onEvent(JSON.parse(data), id);
  }

  async function run() {
    while (!signal.aborted) {
      const token = session.token;
      try {
        const headers = { Accept: "text/event-stream", ...authHeaders(token) };
        if (lastEventId) headers["Last-Event-ID"] = lastEventId;
        const response = await fetch(apiUrl(path), { headers, signal, cache: "no-store" });
        if (!response.ok) {
          const error = await failure(response, token);
          if (response.status < 500) {
            onState("stopped", error.message);
            return;
          }
          throw error;
        }
        onState("live");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            dispatch(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      } catch (error) {
        if (signal.aborted) return;
        onState("reconnecting", error.message);
      }
      if (!signal.aborted) onState("reconnecting");
      await sleep(retry, signal);
    }
  }

  run();
  return { close: () => controller.abort() };
}
