// A job's page: its files' uploads and live status, results, adding files, deleting.

import { call, catalogue, fetchFile, follow, saveBlob } from "./api.js";
import { openCompare } from "./compare.js";
import { describeParams } from "./form.js";
import { FINAL, Job, dropJob, jobs } from "./job.js";
import { explain } from "./messages.js";
import { renderNewJob } from "./newjob.js";
import { dropZone } from "./picker.js";
import { bytes, change, dimensions, fill, formatName, h, toast, when } from "./util.js";

export { renderNewJob };

/** What the job page on screen holds open: its live stream, listener and clock. */
let onScreen = null;
const THUMBNAIL_MAX_BYTES = 2 * 1024 * 1024;
const SLOW = new Set(["images/compress"]);
const PERMANENT = new Set(["unsupported_media_type", "file_too_large", "image_too_large", "too_many_files", "validation_error"]);

const LABELS = {
  queued: ["Queued", "neutral"],
  uploading: ["Uploading", "info"],
  failed: ["Upload failed", "error"],
  lost: ["Not uploaded", "error"],
  PENDING: ["Waiting", "neutral"],
  PROCESSING: ["Processing", "info"],
  DONE: ["Done", "ok"],
  FAILED: ["Failed", "error"],
  cleaned: ["Removed", "neutral"],
};

function stateOf(row) {
  if (row.upload.state !== "done") return row.upload.state;
  const status = row.detail?.status || "PENDING";
  return status === "DONE" && row.detail.is_cleaned ? "cleaned" : status;
}

function duration(seconds) {
  if (seconds < 2) return "1 second";
  if (seconds < 120) return `${Math.round(seconds)} seconds`;
  if (seconds < 2 * 3600) return `${Math.round(seconds / 60)} minutes`;
  if (seconds < 2 * 86400) return `${Math.round(seconds / 3600)} hours`;
  return `${Math.round(seconds / 86400)} days`;
}

const isJson = (mime) => mime === "application/json";

/** What a finished file's result says beyond its facts: what compress chose, what was kept. */
function notes(job, detail) {
  const params = job.instruction.params || {};
  const out = detail.output;
  const said = [];
  const meta = detail.metadata || {};
  if (job.instruction.product_key === "images/compress" && meta.quality !== undefined) {
    if (meta.strategy === "original") said.push("kept the original: no smaller file looked the same");
    else if (meta.quality !== null) {
      const similarity = meta.ssim ? `, similarity ${Number(meta.ssim).toFixed(3)}` : "";
      const target = meta.target_ssim ? ` (asked for ${meta.target_ssim})` : "";
      said.push(`quality ${meta.quality} chosen${similarity}${target}`);
    }
  }
  const width = detail.width;
  const height = detail.height;
  if (["images/resize", "images/thumbnail"].includes(job.instruction.product_key) && !params.upscale) {
    if ((params.width && width && params.width > width && out.width === width) || (params.height && height && params.height > height && out.height === height)) {
      said.push(`not enlarged: the image is ${dimensions(width, height)}`);
    }
  }
  if (job.instruction.product_key === "images/crop" && ((params.width && params.width > width) || (params.height && params.height > height))) {
    said.push(`the crop was larger than the image (${dimensions(width, height)}), so it was kept whole`);
  }
  return said;
}

function fileRow(job, row) {
  const chip = h("span", { class: "chip" });
  const meta = h("p", { class: "meta" });
  const result = h("p", { class: "result" });
  const detailText = h("p", { class: "detail-text" });
  const bar = h("progress", { max: 100, "aria-label": `Progress of ${row.name}` });
  const compare = h("button", { type: "button", class: "secondary small", onclick: () => openCompare(job, row) }, "Compare");
  const save = h("button", { type: "button", class: "secondary small", "aria-label": `Download the result of ${row.name}`, onclick: () => downloadOne(job, row, save) }, "Download");
  const retry = h("button", { type: "button", class: "secondary small", "aria-label": `Retry ${row.name}`, onclick: () => job.retry(row) }, "Retry");
  const drop = h("button", { type: "button", class: "ghost small", onclick: () => job.cancel(row) }, "Cancel");
  const thumb = h("div", { class: "thumb", "aria-hidden": "true" });
  const element = h(
    "li",
    { class: "file", dataset: { key: row.key } },
    thumb,
    h("div", { class: "body" }, h("p", { class: "name", title: row.name }, row.name), meta, result, detailText, bar),
    h("div", { class: "side" }, chip, h("div", { class: "row-actions" }, compare, save, retry, drop)),
  );

  function showThumb(url, fallback) {
    const image = h("img", { src: url, alt: "" });
    image.addEventListener("error", () => fill(thumb, h("span", {}, fallback)));
    fill(thumb, image);
  }

  function update() {
    const state = stateOf(row);
    const detail = row.detail;
    const [text, tone] = LABELS[state] || [state, "neutral"];
    element.dataset.status = state;
    if (detail) element.dataset.detail = detail.id;
    chip.className = `chip ${tone}`;
    chip.textContent = text;
    if (state === "uploading") chip.textContent = `${text} ${Math.round(row.upload.progress * 100)}%`;
    if (state === "PROCESSING" && detail?.started_at) row.processingSince ??= Date.parse(detail.started_at);
    if (state === "PROCESSING" && row.processingSince) {
      chip.textContent = `${text} · ${Math.round((Date.now() - row.processingSince) / 1000)} s`;
    }
    // The type is the service's, sniffed from the bytes: never guessed from the name.
    meta.textContent = [bytes(detail?.size ?? row.size), dimensions(detail?.width, detail?.height), detail ? formatName(detail.mime_type) : ""].filter(Boolean).join(" · ");
    let said = "";
    let tech = "";
    let kind = "result";
    if (state === "DONE" && detail.output) {
      const out = detail.output;
      if (isJson(out.mime_type)) said = "Metadata read: view it below";
      else {
        said = `→ ${[formatName(out.mime_type), dimensions(out.width, out.height), bytes(out.size)].filter(Boolean).join(" · ")} (${change(detail.size, out.size)})`;
        kind = "result ok";
      }
      tech = notes(job, detail).join(" · ");
    } else if (state === "cleaned") {
      said = "Its files were deleted from the server";
      tech = "Past the time results are kept, or the job was deleted.";
    } else if (state === "FAILED") {
      ({ text: said, detail: tech } = explain(detail?.error?.code, detail?.error_message || detail?.error?.message));
      kind = "result error";
    } else if (state === "failed" || state === "lost") {
      ({ text: said, detail: tech } = explain(row.upload.code, row.upload.error));
      if (state === "lost") tech = row.file ? "" : "Add it again to process it.";
      kind = "result error";
    } else if (state === "PROCESSING" && SLOW.has(job.instruction.product_key)) {
      said = "Trying qualities until the result looks the same as the original: usually a few seconds a photo";
    }
    result.textContent = said;
    result.className = kind;
    detailText.textContent = tech;
    bar.hidden = FINAL.has(state) || ["failed", "lost", "cleaned"].includes(state);
    if (state === "uploading" || state === "queued") bar.value = Math.round(row.upload.progress * 100);
    else bar.removeAttribute("value"); // indeterminate while the file waits or is processed
    const viewable = state === "DONE" && detail.output;
    compare.hidden = !viewable;
    save.hidden = !viewable;
    if (viewable) {
      const json = isJson(detail.output.mime_type);
      compare.textContent = json ? "View metadata" : "Compare";
      compare.setAttribute("aria-label", json ? `View the metadata of ${row.name}` : `Compare ${row.name} with its result`);
      save.textContent = json ? "Download JSON" : "Download";
    }
    // A refusal for what the file is would come again: only a passing trouble is retried.
    retry.hidden = !(state === "failed" && row.file && !PERMANENT.has(row.upload.code));
    drop.hidden = !["queued", "uploading", "failed", "lost"].includes(state);
    drop.textContent = state === "queued" || state === "uploading" ? "Cancel" : "Remove";
    drop.setAttribute("aria-label", `${drop.textContent} ${row.name}`);
    const fallback = detail ? formatName(detail.mime_type).slice(0, 4) : "?";
    if (viewable && !isJson(detail.output.mime_type) && !row.outputThumb && detail.output.size <= THUMBNAIL_MAX_BYTES) {
      row.outputThumb = "loading";
      thumbnails.push(async () => {
        const { blob } = await fetchFile(`/instructions/${job.id}/details/${detail.output_id}/file`);
        row.outputThumb = URL.createObjectURL(blob);
        update();
      });
    }
    const wanted = row.outputThumb && row.outputThumb !== "loading" ? row.outputThumb : row.preview;
    if (thumb.dataset.shown !== (wanted || fallback)) {
      thumb.dataset.shown = wanted || fallback;
      if (wanted) showThumb(wanted, fallback);
      else fill(thumb, h("span", {}, fallback));
    }
  }
  update();
  return { element, update };
}

/** Thumbnails of results, fetched two at a time so they never crowd out the uploads. */
const thumbnails = {
  queue: [],
  running: 0,
  push(task) {
    this.queue.push(task);
    this.next();
  },
  next() {
    while (this.running < 2 && this.queue.length) {
      const task = this.queue.shift();
      this.running += 1;
      task()
        .catch(() => {})
        .finally(() => {
          this.running -= 1;
          this.next();
        });
    }
  },
};

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
  if (known) {
    if (known.retentionSeconds === null) {
      known.retentionSeconds = await call("GET", `/instructions/${encodeURIComponent(id)}/details`).then((d) => d.retention_seconds, () => null);
    }
    return known;
  }
  const [{ instruction }, { files, retention_seconds: retention }, products] = await Promise.all([
    call("GET", `/instructions/${encodeURIComponent(id)}`),
    call("GET", `/instructions/${encodeURIComponent(id)}/details`),
    catalogue(),
  ]);
  const job = new Job(instruction, products.find((p) => p.key === instruction.product_key));
  job.retentionSeconds = retention ?? null;
  for (const detail of files) job.addDetail(detail);
  job.addNotes();
  jobs.set(id, job);
  return job;
}

export function leaveJob() {
  if (!onScreen) return;
  onScreen.stream?.close();
  clearInterval(onScreen.clock);
  onScreen.job.listeners.delete(onScreen.listener);
  onScreen = null;
}

function totals(job) {
  let before = 0;
  let after = 0;
  for (const row of job.rows) {
    const out = row.detail?.output;
    if (row.detail?.status !== "DONE" || !out || isJson(out.mime_type)) continue;
    before += row.detail.size;
    after += out.size;
  }
  return before ? `${bytes(before)} → ${bytes(after)} (${change(before, after)})` : "";
}

export async function renderJob(main, id) {
  const job = await loadJob(id);
  const title = job.product?.title || job.instruction.product_key;
  const list = h("ul", { class: "files", id: "files", "aria-label": "Files" });
  const summary = h("p", { class: "summary", id: "summary" });
  const total = h("p", { class: "total", id: "total" });
  const overall = h("progress", { class: "overall", max: 1, value: 0, "aria-label": "Files finished" });
  const live = h("span", { class: "conn", id: "live" });
  const retention = h("p", { class: "hint", id: "retention" });
  const zip = h("button", { type: "button", class: "primary", id: "download-all", disabled: true, onclick: () => downloadAll(job, zip) }, "Download all (.zip)");
  const remove = h("button", { type: "button", class: "danger", id: "delete-job", onclick: () => deleteJob(job) }, "Delete job");
  const adder = dropZone(
    (files) => {
      const repeated = job.addFiles(files);
      if (repeated.length) toast(`Already in this job: ${repeated.join(", ")}`);
      goLive();
      job.startUploads();
    },
    { id: "add-files", compact: true, label: "Add images" },
  );
  const views = new Map();

  function addRow(row) {
    const view = fileRow(job, row);
    views.set(row.key, view);
    list.append(view.element);
  }

  function refresh() {
    const counts = { uploading: 0, "not uploaded": 0, waiting: 0, processing: 0, done: 0, removed: 0, failed: 0 };
    for (const row of job.rows) {
      const state = stateOf(row);
      if (state === "queued" || state === "uploading") counts.uploading += 1;
      else if (state === "lost") counts["not uploaded"] += 1;
      else if (state === "PENDING") counts.waiting += 1;
      else if (state === "PROCESSING") counts.processing += 1;
      else if (state === "DONE") counts.done += 1;
      else if (state === "cleaned") counts.removed += 1;
      else counts.failed += 1;
    }
    const count = job.rows.length;
    const parts = Object.entries(counts).filter(([, n]) => n).map(([name, n]) => `${n} ${name}`);
    summary.textContent = `${count} file${count === 1 ? "" : "s"}${parts.length ? ` · ${parts.join(" · ")}` : ""}`;
    total.textContent = totals(job);
    const failed = counts.failed + counts["not uploaded"];
    overall.max = Math.max(count, 1);
    overall.value = count - counts.uploading - counts.waiting - counts.processing;
    overall.className = `overall${failed && !counts.done && !counts.removed ? " failed" : failed ? " mixed" : ""}`;
    zip.disabled = counts.done === 0;
    remove.disabled = count === 0 || counts.removed + counts["not uploaded"] === count;
    const kept = job.retentionSeconds ? `Results are kept ${duration(job.retentionSeconds)} after they finish, then deleted.` : "";
    const ends = job.rows.map((r) => (stateOf(r) === "DONE" ? Date.parse(r.detail.finished_at || "") : NaN)).filter((t) => !Number.isNaN(t));
    retention.textContent = kept && ends.length ? `${kept} The first goes ${when(new Date(Math.min(...ends) + job.retentionSeconds * 1000).toISOString())}.` : kept;
    if (job.settled) {
      if (!count) live.textContent = "No files yet";
      else if (counts["not uploaded"] === count) live.textContent = "Nothing uploaded: add the files again";
      else if (failed && !counts.done && !counts.removed) live.textContent = count === 1 ? "The file failed" : `All ${count} files failed`;
      else if (failed) live.textContent = `Finished: ${failed} of ${count} failed`;
      else live.textContent = "All files finished";
      live.className = `conn finished${failed && !counts.done ? " failed" : ""}`;
      onScreen?.stream?.close();
      if (onScreen) onScreen.stream = null;
    }
  }

  const listener = (row, added, removed) => {
    if (row && removed) {
      views.get(row.key)?.element.remove();
      views.delete(row.key);
    } else if (row && added && !views.has(row.key)) addRow(row);
    else if (row) views.get(row.key)?.update();
    refresh();
  };

  function goLive() {
    if (!onScreen || onScreen.stream) return;
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
  }

  async function deleteJob() {
    const question = "Delete this job's files from the server now? Uploads not finished are cancelled. The job stays in History.";
    if (!window.confirm(question)) return;
    for (const row of [...job.rows]) if (["queued", "uploading", "failed", "lost"].includes(row.upload.state)) job.cancel(row);
    remove.disabled = true;
    try {
      const { files } = await call("DELETE", `/instructions/${encodeURIComponent(job.id)}/details`);
      for (const detail of files) {
        const row = job.byDetail.get(detail.id);
        if (row) {
          row.detail = detail;
          job.changed(row);
        }
      }
      dropJob(job.id);
      jobs.set(job.id, job);
      toast("The job's files were deleted.");
    } catch (error) {
      toast(`Could not delete the job: ${error.message}`, "error");
      refresh();
    }
  }

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
      h("div", { class: "actions" }, zip, h("a", { class: "button secondary", href: "#/new" }, "New job"), remove),
    ),
    h(
      "section",
      { class: "card progress-card", "aria-label": "Progress" },
      h("div", { class: "summary-line", role: "status", "aria-live": "polite" }, summary, live),
      total,
      overall,
      list,
      adder,
      retention,
    ),
  );
  for (const row of job.rows) addRow(row);
  leaveJob();
  onScreen = { job, listener, stream: null, clock: null };
  onScreen.clock = setInterval(() => {
    for (const row of job.rows) if (stateOf(row) === "PROCESSING") views.get(row.key)?.update();
  }, 1000);
  job.listeners.add(listener);
  if (!job.settled) {
    goLive();
    job.startUploads();
  }
  refresh();
  document.title = `${title} · imagecore`;
}
