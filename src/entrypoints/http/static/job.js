// The model of a job in this page: its files, their uploads, and what a reload would lose.
//
// A file being uploaded lives only in this page. So that closing or reloading the
// tab cannot lose one silently, the page asks first (beforeunload), and each job
// keeps a note in localStorage of the files not uploaded yet; a reopened job shows
// them as "not uploaded", with the reason, until they are added again.

import { call, upload } from "./api.js";

export const FINAL = new Set(["DONE", "FAILED"]);
const UPLOADS_AT_ONCE = 2;
const PREVIEWABLE = new Set(["image/jpeg", "image/png", "image/webp", "image/gif", "image/avif"]);
const NOTES = "imagecore.unsent.";
const INTERRUPTED = "The page was closed or reloaded before this file was sent.";

/** Jobs started or opened in this page, by instruction id. */
export const jobs = new Map();

/** Whether a file of `row` and `file` are the same one (name, size and date). */
function sameFile(row, file) {
  return row.name === file.name && row.size === file.size && (!row.modified || row.modified === file.lastModified);
}

export class Job {
  constructor(instruction, product) {
    this.instruction = instruction;
    this.product = product;
    this.rows = [];
    this.byDetail = new Map();
    this.early = new Map(); // events for files whose upload answer has not arrived yet
    this.listeners = new Set();
    this.uploading = false;
    this.retentionSeconds = null;
  }

  get id() {
    return this.instruction.id;
  }

  /** Add local files to upload; returns the names left out because they are here already. */
  addFiles(files) {
    const repeated = [];
    for (const file of files) {
      const lost = this.rows.find((r) => r.upload.state === "lost" && sameFile(r, file));
      const here = this.rows.find((r) => r.upload.state !== "lost" && r.upload.state !== "cancelled" && sameFile(r, file));
      if (here) {
        repeated.push(file.name);
        continue;
      }
      const row = lost || { key: crypto.randomUUID(), detail: null };
      Object.assign(row, {
        file,
        name: file.name,
        size: file.size,
        modified: file.lastModified,
        preview: PREVIEWABLE.has(file.type) ? URL.createObjectURL(file) : "",
        upload: { state: "queued", progress: 0, error: "", code: "" },
      });
      if (lost) this.changed(row);
      else {
        this.rows.push(row);
        this.changed(row, true);
      }
    }
    this.saveNotes();
    return repeated;
  }

  addDetail(detail) {
    const row = {
      key: detail.id,
      file: null,
      name: detail.original_name,
      size: detail.size,
      preview: "",
      upload: { state: "done", progress: 1, error: "", code: "" },
      detail,
    };
    this.rows.push(row);
    this.byDetail.set(detail.id, row);
    this.changed(row, true);
    return row;
  }

  /** Rows for the files a note says were not uploaded (the page went away, or refused). */
  addNotes() {
    for (const note of readNotes(this.id)) {
      const uploaded = this.rows.some((r) => r.name === note.name && r.size === note.size);
      if (uploaded) continue;
      const interrupted = note.state === "queued" || note.state === "uploading";
      this.rows.push({
        key: crypto.randomUUID(),
        file: null,
        name: note.name,
        size: note.size,
        modified: note.modified,
        preview: "",
        upload: {
          state: "lost",
          progress: 0,
          error: interrupted ? INTERRUPTED : note.error,
          code: interrupted ? "interrupted" : note.code,
        },
        detail: null,
      });
    }
  }

  /** Remember the files of this job not uploaded yet; forget the note when there are none. */
  saveNotes() {
    const unsent = this.rows
      .filter((r) => ["queued", "uploading", "failed", "lost"].includes(r.upload.state))
      .map((r) => ({ name: r.name, size: r.size, modified: r.modified, state: r.upload.state === "lost" ? "failed" : r.upload.state, error: r.upload.error, code: r.upload.code }));
    try {
      if (unsent.length) localStorage.setItem(NOTES + this.id, JSON.stringify(unsent));
      else localStorage.removeItem(NOTES + this.id);
    } catch {
      /* storage full or refused: the beforeunload question still warns */
    }
  }

  forget(row) {
    this.rows.splice(this.rows.indexOf(row), 1);
    this.saveNotes();
    this.changed(row, false, true);
  }

  get uploadsInFlight() {
    return this.rows.some((r) => r.upload.state === "queued" || r.upload.state === "uploading");
  }

  get settled() {
    return (
      !this.uploadsInFlight &&
      this.rows.every((r) => ["failed", "lost"].includes(r.upload.state) || FINAL.has(r.detail?.status))
    );
  }

  changed(row, added = false, removed = false) {
    for (const listener of this.listeners) listener(row, added, removed);
  }

  linkUpload(row, detail) {
    row.detail = detail;
    row.upload.state = "done";
    row.upload.abort = null;
    this.byDetail.set(detail.id, row);
    const early = this.early.get(detail.id);
    this.early.delete(detail.id);
    this.saveNotes();
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
      error: event.error_code ? { code: event.error_code, message: event.error_message } : row.detail?.error,
    };
    if (event.status === "PROCESSING") row.processingSince ??= Date.now();
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

  /** Upload the queued files, a few at a time. */
  startUploads() {
    if (this.uploading) return;
    this.uploading = true;
    const next = async () => {
      for (;;) {
        const row = this.rows.find((r) => r.upload.state === "queued");
        if (!row) return;
        const controller = new AbortController();
        row.upload.state = "uploading";
        row.upload.abort = () => controller.abort();
        this.saveNotes();
        this.changed(row);
        try {
          const detail = await upload(
            this.id,
            row.file,
            (fraction) => {
              row.upload.progress = fraction;
              this.changed(row);
            },
            controller.signal,
          );
          this.linkUpload(row, detail);
        } catch (error) {
          if (error.code === "aborted") continue; // cancel() has dealt with the row
          row.upload.state = "failed";
          row.upload.error = error.message;
          row.upload.code = error.code;
          row.upload.abort = null;
          this.saveNotes();
          this.changed(row);
        }
      }
    };
    Promise.all(Array.from({ length: UPLOADS_AT_ONCE }, next)).finally(() => {
      this.uploading = false;
      this.changed(null);
    });
  }

  /** Stop a file's upload (or its place in the queue) and drop it from the job. */
  cancel(row) {
    row.upload.abort?.();
    row.upload.state = "cancelled";
    this.forget(row);
  }

  /** Queue a failed upload again (its file is still in this page). */
  retry(row) {
    if (!row.file) return;
    Object.assign(row.upload, { state: "queued", progress: 0, error: "", code: "" });
    this.saveNotes();
    this.changed(row);
    this.startUploads();
  }
}

function readNotes(id) {
  try {
    const notes = JSON.parse(localStorage.getItem(NOTES + id) || "[]");
    return Array.isArray(notes) ? notes : [];
  } catch {
    return [];
  }
}

/** Forget what this page knows of a job (its files were deleted). */
export function dropJob(id) {
  jobs.delete(id);
  try {
    localStorage.removeItem(NOTES + id);
  } catch {
    /* nothing kept */
  }
}

// Closing or reloading the tab would end every upload in flight: ask first.
window.addEventListener("beforeunload", (event) => {
  if ([...jobs.values()].some((job) => job.uploadsInFlight)) {
    event.preventDefault();
    event.returnValue = ""; // older browsers ask only when this is set
  }
});
