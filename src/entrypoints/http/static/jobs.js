// A new job (tool, settings, files) and a job's page: uploads, live status, results.

import { call, catalogue, fetchFile, follow, saveBlob, upload } from "./api.js";
import { openCompare } from "./compare.js";
import { describeParams, parameterForm } from "./form.js";
import { bytes, change, dimensions, fill, formatName, h, toast, when } from "./util.js";

const FINAL = new Set(["DONE", "FAILED"]);
const UPLOADS_AT_ONCE = 2;
const PREVIEWABLE = new Set(["image/jpeg", "image/png", "image/webp", "image/gif", "image/avif"]);

/** Jobs started or opened in this page, by instruction id. */
const jobs = new Map();
/** What the job page on screen holds open: its live stream and its listener. */
let onScreen = null;
let lastTool = "images/resize";

// ------------------------------------------------------------------ the model of a job

class Job {
  constructor(instruction, product) {
    this.instruction = instruction;
    this.product = product;
    this.rows = [];
    this.byDetail = new Map();
    this.early = new Map(); // events for files whose upload answer has not arrived yet
    this.listeners = new Set();
    this.uploading = false;
  }

  get id() {
    return this.instruction.id;
  }

  addFiles(files) {
    for (const file of files) {
      this.rows.push({
        key: crypto.randomUUID(),
        file,
        name: file.name,
        preview: PREVIEWABLE.has(file.type) ? URL.createObjectURL(file) : "",
        upload: { state: "queued", progress: 0, error: "" },
        detail: null,
      });
    }
  }

  addDetail(detail) {
    const row = {
      key: detail.id,
      file: null,
      name: detail.original_name,
      preview: "",
      upload: { state: "done", progress: 1, error: "" },
      detail,
    };
    this.rows.push(row);
    this.byDetail.set(detail.id, row);
    this.changed(row, true);
    return row;
  }

  get uploadsInFlight() {
    return this.rows.some((r) => r.upload.state === "queued" || r.upload.state === "uploading");
  }

  get settled() {
    return (
      !this.uploadsInFlight &&
      this.rows.every((r) => r.upload.state === "failed" || FINAL.has(r.detail?.status))
    );
  }

  changed(row, added = false) {
    for (const listener of this.listeners) listener(row, added);
  }

  linkUpload(row, detail) {
    row.detail = detail;
    row.upload.state = "done";
    this.byDetail.set(detail.id, row);
    const early = this.early.get(detail.id);
    this.early.delete(detail.id);
    this.changed(row);
    if (early) this.applyEvent(early);
  }

  async applyEvent(event) {
    const row = this.byDetail.get(event.instruction_detail_id);
    if (!row) {
      if (this.uploadsInFlight) {
        this.early.set(event.instruction_detail_id, event);
      } else {
        const found = await this.fetchDetail(event.instruction_detail_id);
        if (found && !this.byDetail.has(found.id)) this.addDetail(found);
      }
      return;
    }
    const known = row.detail?.status;
    if (known === event.status && (!FINAL.has(known) || row.detail.finished_at)) return;
    row.detail = {
      ...row.detail,
      status: event.status,
      error_message: event.error_message ?? row.detail?.error_message ?? null,
    };
    this.changed(row);
    if (FINAL.has(event.status)) {
      const fresh = await this.fetchDetail(event.instruction_detail_id);
      if (fresh) {
        row.detail = fresh;
        this.changed(row);
      }
    }
  }

  async fetchDetail(detailId) {
    try {
      return (await call("GET", `/instructions/${this.id}/details/${detailId}`)).detail;
    } catch {
      return null;
    }
  }

  startUploads() {
    if (this.uploading) return;
    this.uploading = true;
    const next = async () => {
      for (;;) {
        const row = this.rows.find((r) => r.upload.state === "queued");
        if (!row) return;
        row.upload.state = "uploading";
        this.changed(row);
        try {
          const detail = await upload(this.id, row.file, (fraction) => {
            row.upload.progress = fraction;
            this.changed(row);
          });
          this.linkUpload(row, detail);
        } catch (error) {
          row.upload.state = "failed";
          row.upload.error = error.message;
          this.changed(row);
        }
      }
    };
    Promise.all(Array.from({ length: UPLOADS_AT_ONCE }, next)).finally(() => {
      this.uploading = false;
      this.changed(null);
    });
  }
}

// ------------------------------------------------------------------ a new job

function toolPicker(products, selected, onPick) {
  const group = h("div", { class: "tools", role: "radiogroup", "aria-label": "Tool" });
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

function dropZone(onFiles) {
  const input = h("input", {
    type: "file",
    id: "file-input",
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
    { class: "dropzone", id: "dropzone" },
    input,
    h("div", { class: "dropzone-icon", "aria-hidden": "true" }, "⬆"),
    h("p", {}, h("strong", {}, "Drop images here"), " or ",
      h("label", { for: "file-input", class: "link" }, "choose files")),
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

// A file dropped beside the zone must not replace the console with the image.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

export async function renderNewJob(main) {
  const products = await catalogue();
  let product = products.find((p) => p.key === lastTool) || products[0];
  let picked = [];
  const settings = h("div", { id: "settings" });
  const status = h("p", { class: "form-status", role: "alert" });
  const list = h("ul", { class: "picked", id: "picked" });
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
      else if (picked.length >= product.limits.max_files_per_instruction) problems.push(`${file.name}: at most ${product.limits.max_files_per_instruction} files per job`);
      else picked.push(file);
    }
    status.textContent = problems.join("; ");
    status.className = problems.length ? "form-status error" : "form-status";
    showPicked();
  }

  start.addEventListener("click", async () => {
    if (!form.reportValidity()) return;
    start.disabled = true;
    status.textContent = "Creating the job…";
    status.className = "form-status";
    try {
      const params = await form.params();
      const { instruction } = await call("POST", "/instructions", { product_key: product.key, params });
      const job = new Job(instruction, product);
      job.addFiles(picked);
      jobs.set(job.id, job);
      picked = [];
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      status.textContent = error.message;
      status.className = "form-status error";
      start.disabled = false;
    }
  });

  fill(
    main,
    h("div", { class: "page-head" }, h("h1", {}, "New job"), h("p", { class: "muted" }, "Pick a tool, set it up, and drop your images. Each one is processed on its own; follow them live.")),
    h(
      "div",
      { class: "new-grid" },
      h(
        "section",
        { class: "card", "aria-labelledby": "tool-title" },
        h("h2", { id: "tool-title" }, h("span", { class: "step" }, "1"), "Tool"),
        toolPicker(products, product.key, (chosen) => {
          product = chosen;
          showProduct();
        }),
        h("h2", {}, h("span", { class: "step" }, "2"), "Settings"),
        settings,
      ),
      h(
        "section",
        { class: "card files-card", "aria-labelledby": "files-title" },
        h("h2", { id: "files-title" }, h("span", { class: "step" }, "3"), "Images"),
        dropZone(addFiles),
        limits,
        list,
        status,
        start,
      ),
    ),
  );
  showProduct();
  document.title = "New job · imagecore";
}

// ------------------------------------------------------------------ a job's page

const LABELS = {
  queued: ["Queued", "neutral"],
  uploading: ["Uploading", "info"],
  failed: ["Upload failed", "error"],
  PENDING: ["Waiting", "neutral"],
  PROCESSING: ["Processing", "info"],
  DONE: ["Done", "ok"],
  FAILED: ["Failed", "error"],
};

function stateOf(row) {
  if (row.upload.state !== "done") return row.upload.state;
  return row.detail?.status || "PENDING";
}

function fileRow(job, row) {
  const chip = h("span", { class: "chip" });
  const meta = h("p", { class: "meta" });
  const result = h("p", { class: "result" });
  const bar = h("progress", { max: 100 });
  const compare = h("button", { type: "button", class: "secondary small", onclick: () => openCompare(job, row) }, "Compare");
  const save = h("button", { type: "button", class: "secondary small", onclick: () => downloadOne(job, row, save) }, "Download");
  const thumb = h("div", { class: "thumb", "aria-hidden": "true" });
  const element = h(
    "li",
    { class: "file", dataset: { key: row.key } },
    thumb,
    h("div", { class: "body" }, h("p", { class: "name", title: row.name }, row.name), meta, result, bar),
    h("div", { class: "side" }, chip, h("div", { class: "row-actions" }, compare, save)),
  );

  function update() {
    const state = stateOf(row);
    const detail = row.detail;
    const [text, tone] = LABELS[state] || [state, "neutral"];
    element.dataset.status = state;
    if (detail) element.dataset.detail = detail.id;
    chip.className = `chip ${tone}`;
    chip.textContent = state === "uploading" ? `${text} ${Math.round(row.upload.progress * 100)}%` : text;
    const size = detail?.size ?? row.file?.size;
    const mime = detail?.mime_type || row.file?.type;
    meta.textContent = [bytes(size), dimensions(detail?.width, detail?.height), formatName(mime)].filter(Boolean).join(" · ");
    if (state === "DONE" && detail.output) {
      const out = detail.output;
      result.textContent = `→ ${[formatName(out.mime_type), dimensions(out.width, out.height), bytes(out.size)].filter(Boolean).join(" · ")} (${change(detail.size, out.size)})`;
      result.className = "result ok";
    } else if (state === "FAILED" || state === "failed") {
      result.textContent = state === "failed" ? row.upload.error : detail?.error_message || detail?.error?.message || "failed";
      result.className = "result error";
    } else {
      result.textContent = "";
      result.className = "result";
    }
    bar.hidden = FINAL.has(state) || state === "failed";
    if (state === "uploading" || state === "queued") bar.value = Math.round(row.upload.progress * 100);
    else bar.removeAttribute("value"); // indeterminate while the file waits or is processed
    compare.hidden = state !== "DONE";
    save.hidden = state !== "DONE";
    if (!thumb.firstChild) {
      if (row.preview) thumb.append(h("img", { src: row.preview, alt: "" }));
      else if (mime) thumb.append(h("span", {}, formatName(mime).slice(0, 4)));
    }
  }
  update();
  return { element, update };
}

async function downloadOne(job, row, button) {
  button.disabled = true;
  try {
    // The output record's /file is the result (the detail's own is the original).
    const { blob, name } = await fetchFile(`/instructions/${job.id}/details/${row.detail.output_id}/file`);
    saveBlob(blob, name);
  } catch (error) {
    toast(`Download failed: ${error.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

async function downloadAll(job, button) {
  button.disabled = true;
  const label = button.textContent;
  button.textContent = "Preparing the zip…";
  try {
    const { blob, name } = await fetchFile(`/instructions/${job.id}/archive`);
    saveBlob(blob, name);
  } catch (error) {
    toast(`Download failed: ${error.message}`, "error");
  } finally {
    button.textContent = label;
    button.disabled = false;
  }
}

async function loadJob(id) {
  const known = jobs.get(id);
  if (known) return known;
  const [{ instruction }, { files }, products] = await Promise.all([
    call("GET", `/instructions/${encodeURIComponent(id)}`),
    call("GET", `/instructions/${encodeURIComponent(id)}/details`),
    catalogue(),
  ]);
  const job = new Job(instruction, products.find((p) => p.key === instruction.product_key));
  for (const detail of files) job.addDetail(detail);
  jobs.set(id, job);
  return job;
}

export function leaveJob() {
  if (!onScreen) return;
  onScreen.stream?.close();
  onScreen.job.listeners.delete(onScreen.listener);
  onScreen = null;
}

export async function renderJob(main, id) {
  const job = await loadJob(id);
  const title = job.product?.title || job.instruction.product_key;
  const list = h("ul", { class: "files", id: "files" });
  const summary = h("p", { class: "summary", id: "summary" });
  const overall = h("progress", { class: "overall", max: 1, value: 0 });
  const live = h("span", { class: "conn", id: "live" });
  const zip = h("button", { type: "button", class: "primary", id: "download-all", disabled: true, onclick: () => downloadAll(job, zip) }, "Download all (.zip)");
  const views = new Map();

  function addRow(row) {
    const view = fileRow(job, row);
    views.set(row.key, view);
    list.append(view.element);
  }

  function refresh() {
    const counts = { uploading: 0, waiting: 0, processing: 0, done: 0, failed: 0 };
    for (const row of job.rows) {
      const state = stateOf(row);
      if (state === "queued" || state === "uploading") counts.uploading += 1;
      else if (state === "PENDING") counts.waiting += 1;
      else if (state === "PROCESSING") counts.processing += 1;
      else if (state === "DONE") counts.done += 1;
      else counts.failed += 1;
    }
    const total = job.rows.length;
    const parts = Object.entries(counts).filter(([, n]) => n).map(([name, n]) => `${n} ${name}`);
    summary.textContent = `${total} file${total === 1 ? "" : "s"}${parts.length ? ` · ${parts.join(" · ")}` : ""}`;
    overall.max = Math.max(total, 1);
    overall.value = counts.done + counts.failed;
    zip.disabled = counts.done === 0;
    if (job.settled) {
      live.textContent = total ? "All files finished" : "No files yet";
      live.className = "conn finished";
      onScreen?.stream?.close();
      if (onScreen) onScreen.stream = null;
    }
  }

  const listener = (row, added) => {
    if (row && added && !views.has(row.key)) addRow(row);
    else if (row) views.get(row.key)?.update();
    refresh();
  };

  fill(
    main,
    h(
      "div",
      { class: "page-head job-head" },
      h(
        "div",
        {},
        h("p", { class: "eyebrow" }, h("a", { href: "#/history" }, "History"), " / ", h("code", {}, job.id)),
        h("h1", {}, title),
        h("p", { class: "muted" }, `${describeParams(job.instruction.params, job.product)} · started ${when(job.instruction.created_at)}`),
      ),
      h("div", { class: "actions" }, zip, h("a", { class: "button secondary", href: "#/new" }, "New job")),
    ),
    h("section", { class: "card progress-card" }, h("div", { class: "summary-line" }, summary, live), overall, list),
  );
  for (const row of job.rows) addRow(row);
  leaveJob();
  onScreen = { job, listener, stream: null };
  job.listeners.add(listener);
  if (!job.settled) {
    live.textContent = "Connecting…";
    live.className = "conn";
    onScreen.stream = follow(`/instructions/${encodeURIComponent(job.id)}/events`, {
      onEvent: (event) => job.applyEvent(event),
      onState: (state, message) => {
        if (job.settled) return;
        live.textContent = state === "live" ? "Live" : state === "stopped" ? `Stopped: ${message}` : "Reconnecting…";
        live.className = `conn ${state}`;
      },
    });
    job.startUploads();
  }
  refresh();
  document.title = `${title} · imagecore`;
}

