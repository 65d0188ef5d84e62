// A new job: the images, the tool and its settings, then start.

import { call, catalogue } from "./api.js";
import { parameterForm } from "./form.js";
import { Job, jobs } from "./job.js";
import { explain, parameterOf, parameterProblem } from "./messages.js";
import { dropZone } from "./picker.js";
import { bytes, fill, h } from "./util.js";

let lastTool = "images/resize";

function toolPicker(products, selected, onPick) {
  const group = h("div", { class: "tools", role: "radiogroup", "aria-labelledby": "tool-title" });
  for (const product of products) {
    const input = h("input", {
      type: "radio",
      name: "tool",
      value: product.key,
      id: `tool-${product.key.replace("/", "-")}`,
      checked: product.key === selected,
      onchange: () => onPick(product),
    });
    group.append(
      h(
        "label",
        { class: "tool", for: input.id, title: product.description, dataset: { key: product.key } },
        input,
        h("strong", {}, product.title),
        h("span", {}, product.description),
      ),
    );
  }
  return group;
}

function limitsText(product) {
  const limits = product.limits;
  const formats = limits.input_formats.map((f) => f.toUpperCase()).join(", ");
  return `${formats} · up to ${bytes(limits.max_file_bytes)} each · ${limits.max_files_per_instruction} files at most`;
}

/** Whether two picked files are the same one (picked twice). */
function same(a, b) {
  return a.name === b.name && a.size === b.size && a.lastModified === b.lastModified;
}

export async function renderNewJob(main) {
  const products = await catalogue();
  let product = products.find((p) => p.key === lastTool) || products[0];
  let picked = [];
  const settings = h("div", { id: "settings" });
  const status = h("p", { class: "form-status", id: "picked-status", role: "status" });
  const startStatus = h("p", { class: "form-status", id: "start-status", role: "alert" });
  const list = h("ul", { class: "picked", id: "picked", "aria-label": "Chosen images" });
  const limits = h("p", { class: "hint", id: "limits" });
  const start = h("button", { type: "button", class: "primary block", id: "start", disabled: true }, "Choose images to start");
  let form = null;

  function showProduct() {
    form = parameterForm(product);
    fill(settings, h("p", { class: "about" }, product.description), form);
    limits.textContent = limitsText(product);
    lastTool = product.key;
    showPicked();
  }

  function showPicked() {
    fill(
      list,
      picked.map((file, index) =>
        h(
          "li",
          {},
          h("span", { class: "name", title: file.name }, file.name),
          h("span", { class: "muted" }, bytes(file.size)),
          h(
            "button",
            {
              type: "button",
              class: "icon",
              "aria-label": `Remove ${file.name}`,
              onclick: () => {
                picked.splice(index, 1);
                showPicked();
              },
            },
            "×",
          ),
        ),
      ),
    );
    start.disabled = picked.length === 0;
    const count = picked.length;
    start.textContent = count ? `Process ${count} image${count === 1 ? "" : "s"}` : "Choose images to start";
  }

  function addFiles(files) {
    const problems = [];
    for (const file of files) {
      if (file.type && !file.type.startsWith("image/")) problems.push(`${file.name} is not an image`);
      else if (file.size > product.limits.max_file_bytes) problems.push(`${file.name} is over ${bytes(product.limits.max_file_bytes)}`);
      else if (picked.some((other) => same(other, file))) problems.push(`${file.name} is chosen already`);
      else if (picked.length >= product.limits.max_files_per_instruction) problems.push(`${file.name}: at most ${product.limits.max_files_per_instruction} files per job`);
      else picked.push(file);
    }
    status.textContent = problems.join("; ");
    status.className = problems.length ? "form-status error" : "form-status";
    showPicked();
  }

  start.addEventListener("click", async () => {
    form.clearErrors();
    if (!form.reportValidity()) return;
    start.disabled = true;
    startStatus.textContent = "Creating the job…";
    startStatus.className = "form-status";
    try {
      const params = await form.params();
      const { instruction } = await call("POST", "/instructions", { product_key: product.key, params });
      const job = new Job(instruction, product);
      jobs.set(job.id, job);
      job.addFiles(picked);
      picked = [];
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      const field = error.code === "invalid_parameter" ? parameterOf(error.message) : "";
      if (field && form.showError(field, parameterProblem(error.message))) {
        startStatus.textContent = "Check the setting marked above.";
      } else {
        startStatus.textContent = explain(error.code, error.message).text;
      }
      startStatus.className = "form-status error";
      start.disabled = false;
    }
  });

  fill(
    main,
    h("div", { class: "page-head" }, h("h1", {}, "New job"), h("p", { class: "muted" }, "Add your images, pick a tool and set it up. Each image is processed on its own; follow them live.")),
    h(
      "div",
      { class: "new-grid" },
      h(
        "section",
        { class: "card files-card", "aria-labelledby": "files-title" },
        h("h2", { id: "files-title" }, h("span", { class: "step", "aria-hidden": "true" }, "1"), "Images"),
        dropZone(addFiles),
        limits,
        list,
        status,
      ),
      h(
        "section",
        { class: "card tool-card", "aria-labelledby": "tool-title" },
        h("h2", { id: "tool-title" }, h("span", { class: "step", "aria-hidden": "true" }, "2"), "Tool"),
        toolPicker(products, product.key, (chosen) => {
          product = chosen;
          showProduct();
        }),
        h("h2", { id: "settings-title" }, h("span", { class: "step", "aria-hidden": "true" }, "3"), "Settings"),
        settings,
      ),
      h("div", { class: "start-bar" }, startStatus, start),
    ),
  );
  showProduct();
  document.title = "New job · imagecore";
}
