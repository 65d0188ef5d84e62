// The list of past jobs (GET /instructions), newest first, a page at a time.

import { call, catalogue } from "./api.js";
import { describeParams } from "./form.js";
import { fill, h, when } from "./util.js";

const PAGE_SIZE = 10;
const TONES = { PENDING: "neutral", PROCESSING: "info", DONE: "ok", FAILED: "error" };
const STATUS_LABELS = { PENDING: "Waiting", PROCESSING: "Processing", DONE: "Done", FAILED: "Failed" };
let statusFilter = "";

function counts(instruction) {
  const c = instruction.counts || {};
  const total = c.total ?? 0;
  const parts = [`${total} file${total === 1 ? "" : "s"}`];
  if (c.DONE) parts.push(`${c.DONE} done`);
  if (c.FAILED) parts.push(`${c.FAILED} failed`);
  const open = (c.PENDING || 0) + (c.PROCESSING || 0);
  if (open) parts.push(`${open} in progress`);
  return parts.join(" · ");
}

export async function renderHistory(main, page = 1) {
  const query = new URLSearchParams({ page: String(page), size: String(PAGE_SIZE) });
  if (statusFilter) query.set("status", statusFilter);
  const [{ instructions, pagination }, products] = await Promise.all([
    call("GET", `/instructions?${query}`),
    catalogue(),
  ]);
  const byKey = new Map(products.map((p) => [p.key, p]));
  const pages = Math.max(1, Math.ceil(pagination.total / pagination.size));
  const filter = h(
    "select",
    {
      id: "status-filter",
      "aria-label": "Show",
      onchange: () => {
        statusFilter = filter.value;
        if (location.hash === "#/history") renderHistory(main, 1);
        else location.hash = "#/history";
      },
    },
    h("option", { value: "" }, "All jobs"),
    Object.entries(STATUS_LABELS).map(([value, text]) =>
      h("option", { value, selected: value === statusFilter || null }, text),
    ),
  );
  const rows = instructions.map((instruction) =>
    h(
      "li",
      {},
      h(
        "a",
        { class: "job-link", href: `#/jobs/${instruction.id}`, dataset: { id: instruction.id } },
        h(
          "span",
          { class: "what" },
          h("strong", {}, byKey.get(instruction.product_key)?.title || instruction.product_key),
          h("span", { class: "muted" }, describeParams(instruction.params, byKey.get(instruction.product_key))),
        ),
        h("span", { class: "count" }, counts(instruction)),
        h("time", { datetime: instruction.created_at }, when(instruction.created_at)),
        h(
          "span",
          { class: `chip ${TONES[instruction.status] || "neutral"}` },
          STATUS_LABELS[instruction.status] || instruction.status,
        ),
      ),
    ),
  );
  fill(
    main,
    h(
      "div",
      { class: "page-head history-head" },
      h("div", {}, h("h1", {}, "History"), h("p", { class: "muted" }, `${pagination.total} job${pagination.total === 1 ? "" : "s"}, newest first`)),
      filter,
    ),
    h(
      "section",
      { class: "card history" },
      rows.length
        ? h("ul", { class: "jobs", id: "jobs" }, rows)
        : h(
            "div",
            { class: "empty" },
            h("p", {}, statusFilter ? "No job matches this filter." : "No jobs yet."),
            h("a", { class: "button primary", href: "#/new" }, "Start a job"),
          ),
      pages > 1
        ? h(
            "nav",
            { class: "pager", "aria-label": "Pages" },
            h("a", { class: "button secondary small", href: `#/history?page=${page - 1}`, hidden: page <= 1 }, "← Newer"),
            h("span", { class: "muted" }, `Page ${page} of ${pages}`),
            h("a", { class: "button secondary small", href: `#/history?page=${page + 1}`, hidden: page >= pages }, "Older →"),
          )
        : null,
    ),
  );
  document.title = "History · imagecore";
}
