// Picking image files: a button that opens the file chooser, and a zone files can be dropped on.

import { h } from "./util.js";

/**
 * A drop zone around a file picker; `onFiles(files)` receives what was picked or dropped.
 * `id` names the file input (tests and labels find it by it).
 */
export function dropZone(onFiles, { id = "file-input", compact = false, label = "Choose images" } = {}) {
  const input = h("input", {
    type: "file",
    id,
    multiple: true,
    accept: "image/*,.heic,.heif,.avif",
    class: "visually-hidden",
    onchange: () => {
      onFiles([...input.files]);
      input.value = "";
    },
  });
  const zone = h(
    "div",
    { class: compact ? "dropzone compact" : "dropzone", id: id === "file-input" ? "dropzone" : `${id}-zone` },
    input,
    compact ? null : h("div", { class: "dropzone-icon", "aria-hidden": "true" }, "⬆"),
    h(
      "p",
      {},
      h("label", { for: id, class: "button secondary pick" }, label),
      h("span", { class: "drop-hint" }, " or drop them here"),
    ),
  );
  let depth = 0;
  zone.addEventListener("dragenter", (event) => {
    event.preventDefault();
    depth += 1;
    zone.classList.add("over");
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  zone.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove("over");
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    zone.classList.remove("over");
    onFiles([...event.dataTransfer.files]);
  });
  return zone;
}

// A file dropped beside a zone must not replace the console with the image.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());
