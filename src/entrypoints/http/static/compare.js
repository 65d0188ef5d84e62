// Before and after: the original and the result of one file, one over the other with a
// split slider, fitted or at 1:1 with both panned together; a metadata result as a list.

import { fetchFile, saveBlob } from "./api.js";
import { bytes, change, dimensions, fill, formatName, h, label, toast } from "./util.js";

const dialog = document.getElementById("compare");
let urls = [];
let opener = null;

dialog.addEventListener("close", () => {
  for (const url of urls) URL.revokeObjectURL(url);
  urls = [];
  fill(dialog);
  opener?.focus();
  opener = null;
});
dialog.addEventListener("click", (event) => {
  if (event.target === dialog) dialog.close(); // a click on the backdrop
});

function header(title) {
  return h(
    "header",
    {},
    h("h2", { id: "compare-title", title }, title),
    h("button", { type: "button", class: "icon", "aria-label": "Close", onclick: () => dialog.close() }, "×"),
  );
}

function metadataValue(value, depth) {
  if (value === null || typeof value !== "object") return String(value);
  if (Array.isArray(value)) return value.map((item) => (typeof item === "object" ? JSON.stringify(item) : String(item))).join(", ");
  return depth < 2 ? metadataList(value, depth + 1) : h("code", {}, JSON.stringify(value));
}

function metadataList(data, depth = 0) {
  if (!data || typeof data !== "object") return h("pre", { class: "json" }, JSON.stringify(data, null, 2));
  return h(
    "dl",
    { class: depth ? "metadata nested" : "metadata", id: depth ? null : "metadata" },
    Object.entries(data).map(([name, value]) => [h("dt", {}, depth ? name : label(name)), h("dd", {}, metadataValue(value, depth))]),
  );
}

async function openMetadata(job, row) {
  const detail = row.detail;
  const body = h("div", { class: "metadata-body", tabindex: 0, "aria-label": "Metadata" }, h("p", { class: "muted" }, "Loading…"));
  let result = null;
  fill(
    dialog,
    header(`Metadata of ${detail.original_name}`),
    body,
    h("footer", {}, h("button", { type: "button", class: "primary", id: "compare-download", onclick: () => result && saveBlob(result.blob, result.name) }, "Download JSON")),
  );
  dialog.showModal();
  try {
    result = await fetchFile(`/instructions/${job.id}/details/${detail.output_id}/file`);
    fill(body, metadataList(JSON.parse(await result.blob.text())));
  } catch (error) {
    fill(body, h("p", { class: "no-preview" }, error.message));
  }
}

function image(blob, alt, className) {
  const url = URL.createObjectURL(blob);
  urls.push(url);
  return h("img", { src: url, alt, class: className, draggable: "false" });
}

/** Drag the stage to pan it (both layers move: they share one scroll box). */
function draggable(stage) {
  let from = null;
  stage.addEventListener("pointerdown", (event) => {
    if (!stage.classList.contains("actual")) return;
    from = { x: event.clientX, y: event.clientY, left: stage.scrollLeft, top: stage.scrollTop };
    stage.setPointerCapture(event.pointerId);
  });
  stage.addEventListener("pointermove", (event) => {
    if (!from) return;
    stage.scrollLeft = from.left - (event.clientX - from.x);
    stage.scrollTop = from.top - (event.clientY - from.y);
  });
  for (const end of ["pointerup", "pointercancel"]) stage.addEventListener(end, () => (from = null));
}

/** Open the comparison of one finished file of `job`; `opener` gets the focus back. */
export async function openCompare(job, row, source = document.activeElement) {
  opener = source;
  const detail = row.detail;
  const output = detail.output;
  if (output.mime_type === "application/json") return openMetadata(job, row);
  const details = `/instructions/${job.id}/details`;
  const layers = h("div", { class: "layers", id: "compare-layers" }, h("p", { class: "muted loading" }, "Loading…"));
  const stage = h("div", { class: "stage", id: "compare-stage", tabindex: 0, "aria-label": "Comparison: arrow keys pan at 1:1" }, layers);
  const split = h("input", {
    type: "range",
    id: "compare-split",
    min: 0,
    max: 100,
    value: 50,
    "aria-label": "Split: original on the left, result on the right",
    oninput: () => layers.style.setProperty("--split", `${split.value}%`),
  });
  const zoom = h("button", {
    type: "button",
    class: "secondary small",
    id: "compare-zoom",
    "aria-pressed": "false",
    onclick: () => {
      const actual = !stage.classList.contains("actual");
      stage.classList.toggle("actual", actual);
      zoom.setAttribute("aria-pressed", String(actual));
      zoom.textContent = actual ? "Fit to window" : "Zoom to 1:1";
      sizeLayers();
    },
  }, "Zoom to 1:1");
  let result = null;
  let after = null;
  function sizeLayers() {
    // At 1:1 a pixel of the result is a pixel of the screen, the original scaled to match.
    if (!after?.naturalWidth) return;
    layers.style.setProperty("--width", `${after.naturalWidth}px`);
    layers.style.setProperty("--ratio", `${after.naturalWidth} / ${after.naturalHeight}`);
    layers.style.setProperty("--aspect", String(after.naturalWidth / after.naturalHeight));
  }
  const facts = h(
    "div",
    { class: "facts" },
    h("p", { class: "before" }, h("strong", {}, "Original "), [formatName(detail.mime_type), dimensions(detail.width, detail.height), bytes(detail.size)].filter(Boolean).join(" · ")),
    h("p", { class: "after" }, h("strong", {}, "Result "), [formatName(output.mime_type), dimensions(output.width, output.height), `${bytes(output.size)} (${change(detail.size, output.size)})`].filter(Boolean).join(" · ")),
  );
  fill(
    dialog,
    header(detail.original_name),
    h("div", { class: "compare-tools" }, h("label", { for: "compare-split", class: "split-label" }, "Original", split, "Result"), zoom),
    stage,
    facts,
    h("footer", {}, h("button", { type: "button", class: "primary", id: "compare-download", onclick: () => result && saveBlob(result.blob, result.name) }, "Download result")),
  );
  draggable(stage);
  dialog.showModal();

  try {
    const [original, output_] = await Promise.all([
      row.file ? { blob: row.file, name: row.name } : fetchFile(`${details}/${detail.id}/file?variant=original`),
      fetchFile(`${details}/${detail.output_id}/file`),
    ]);
    result = output_;
    const before = image(original.blob, `${detail.original_name}, original`, "before");
    after = image(result.blob, `${detail.original_name}, result`, "after");
    for (const picture of [before, after]) {
      picture.addEventListener("error", () => {
        picture.replaceWith(h("div", { class: "no-preview" }, `No preview of ${formatName(picture === before ? detail.mime_type : output.mime_type)} in this browser`));
      });
    }
    after.addEventListener("load", sizeLayers);
    fill(layers, before, after);
  } catch (error) {
    fill(layers, h("div", { class: "no-preview" }, error.message));
    toast(`Could not load the comparison: ${error.message}`, "error");
  }
}
