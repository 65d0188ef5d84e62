// Small helpers: building DOM nodes (never from HTML text), and formatting for people.

/**
 * Create an element: `h("button", {class: "primary", onclick: go}, "Start")`.
 * Attributes starting with "on" become listeners; `null`/`false` values are skipped;
 * children may be strings, nodes, arrays or null.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name in element && typeof value !== "string") {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `element`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

const SIZE_UNITS = ["bytes", "KB", "MB", "GB"];

/** 487350 -> "476 KB" (powers of 1024, so the 200 MiB limit reads "200 MB"). */
export function bytes(value) {
  if (value === null || value === undefined) return "";
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < SIZE_UNITS.length - 1) {
    size /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || size >= 100 ? 0 : 1;
  return `${size.toFixed(digits)} ${SIZE_UNITS[unit]}`;
}

/** "2560 × 1600", or "" when unknown. */
export function dimensions(width, height) {
  return width && height ? `${width} × ${height}` : "";
}

/** The change from `before` to `after` bytes: "−92%" or "+4%". */
export function change(before, after) {
  if (!before || after === null || after === undefined) return "";
  const exact = ((after - before) / before) * 100;
  // 1.9 KB from 514 KB is −99.6%, not −100%: keep a decimal near the ends.
  const percent = Math.abs(exact) >= 99.5 && Math.abs(exact) < 100 ? exact.toFixed(1) : Math.round(exact);
  if (Number(percent) === 0) return "same size";
  return exact < 0 ? `−${String(percent).replace("-", "")}%` : `+${percent}%`;
}

const WHEN = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** An ISO time for people, in their zone. */
export function when(iso) {
  return iso ? WHEN.format(new Date(iso)) : "";
}

/** "image/webp" -> "WebP". */
export function formatName(mime) {
  const names = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WebP",
    "image/avif": "AVIF",
    "image/gif": "GIF",
    "image/tiff": "TIFF",
    "image/heif": "HEIF",
    "image/heic": "HEIC",
    "application/json": "JSON",
  };
  return names[mime] || (mime || "").split("/").pop().toUpperCase();
}

/** "keep_metadata" -> "Keep metadata". */
export function label(name) {
  const words = name.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** Show a short message in the corner; `kind` is "info" or "error". */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast ${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}
