// Before and after: the original and the output of one file, side by side, with their facts.

import { fetchFile, saveBlob } from "./api.js";
import { bytes, change, dimensions, fill, formatName, h, toast } from "./util.js";

const dialog = document.getElementById("compare");
let urls = [];

dialog.addEventListener("close", () => {
  for (const url of urls) URL.revokeObjectURL(url);
  urls = [];
  fill(dialog);
});
dialog.addEventListener("click", (event) => {
  if (event.target === dialog) dialog.close(); // a click on the backdrop
});

function picture(blob, mime, alt) {
  if (mime === "application/json") {
    const pre = h("pre", { class: "json" }, "…");
    blob.text().then((text) => {
      try {
        pre.textContent = JSON.stringify(JSON.parse(text), null, 2);
      } catch {
        pre.textContent = text;
      }
    });
    return pre;
  }
  const url = URL.createObjectURL(blob);
  urls.push(url);
  const image = h("img", { src: url, alt });
  image.addEventListener("error", () => {
    image.replaceWith(h("div", { class: "no-preview" }, `No preview of ${formatName(mime)} in this browser`));
  });
  return image;
}

function figure(title, facts) {
  const frame = h("div", { class: "frame loading" }, h("span", { class: "muted" }, "Loading…"));
  return {
    element: h("figure", {}, frame, h("figcaption", {}, h("strong", {}, title), h("span", {}, facts))),
    show(blob, mime, alt) {
      frame.classList.remove("loading");
      fill(frame, picture(blob, mime, alt));
    },
    fail(message) {
      frame.classList.remove("loading");
      fill(frame, h("div", { class: "no-preview" }, message));
    },
  };
}

/** Open the comparison of one finished file of `job`. */
export async function openCompare(job, row) {
  const detail = row.detail;
  const output = detail.output;
  const details = `/instructions/${job.id}/details`;
  const base = `${details}/${detail.id}/file`;
  const before = figure(
    "Original",
    [formatName(detail.mime_type), dimensions(detail.width, detail.height), bytes(detail.size)].filter(Boolean).join(" · "),
  );
  const after = figure(
    "Result",
    [formatName(output.mime_type), dimensions(output.width, output.height), `${bytes(output.size)} (${change(detail.size, output.size)})`]
      .filter(Boolean)
      .join(" · "),
  );
  let result = null;
  const save = h(
    "button",
    {
      type: "button",
      class: "primary",
      id: "compare-download",
      onclick: () => (result ? saveBlob(result.blob, result.name) : null),
    },
    "Download result",
  );
  fill(
    dialog,
    h(
      "header",
      {},
      h("h2", { id: "compare-title", title: detail.original_name }, detail.original_name),
      h("button", { type: "button", class: "icon", "aria-label": "Close", onclick: () => dialog.close() }, "×"),
    ),
    h("div", { class: "compare-grid" }, before.element, after.element),
    h("footer", {}, save),
  );
  dialog.showModal();

  const original = row.file
    ? Promise.resolve({ blob: row.file, name: row.name })
    : fetchFile(`${base}?variant=original`);
  original.then(
    ({ blob }) => before.show(blob, detail.mime_type, `${detail.original_name}, original`),
    (error) => before.fail(error.message),
  );
  try {
    result = await fetchFile(`${details}/${detail.output_id}/file`);
    after.show(result.blob, output.mime_type, `${detail.original_name}, result`);
  } catch (error) {
    after.fail(error.message);
    toast(`Could not load the result: ${error.message}`, "error");
  }
}
