// What went wrong, said for the person using the console rather than for a developer.
//
// The service's messages are precise but technical ("VipsJpeg: premature end of
// JPEG image"); each is kept as the detail behind a plain sentence chosen by its code.

import { bytes } from "./util.js";

const MEGAPIXEL = 1_000_000;

function pixels(message) {
  const found = /(\d+)x(\d+) pixels, more than the limit of (\d+)/.exec(message || "");
  if (!found) return "";
  const [, width, height, limit] = found.map(Number);
  return ` It is ${width} × ${height} (${Math.round((width * height) / MEGAPIXEL)} megapixels); the limit is ${Math.round(limit / MEGAPIXEL)} megapixels.`;
}

function largerThan(message) {
  const found = /larger than (\d+) bytes/.exec(message || "");
  return found ? ` The limit is ${bytes(Number(found[1]))} a file.` : "";
}

const PLAIN = {
  corrupt_image: () => "This file is damaged or cut short, so it cannot be read. Try exporting it again.",
  processing_error: () => "This image could not be processed.",
  image_too_large: (message) => `This image is too large to process.${pixels(message)}`,
  file_too_large: (message) => `This file is too large.${largerThan(message)}`,
  unsupported_media_type: () => "This is not an image in a format imagecore reads (JPEG, PNG, WebP, AVIF, GIF, TIFF, HEIF).",
  too_many_files: () => "This job holds as many files as it may: start a new job for the others.",
  processing_timeout: () => "Processing took too long and was stopped.",
  processor_crashed: () => "The image decoder stopped on this file.",
  too_many_attempts: () => "It could not be processed after several tries.",
  worker_lost: () => "The worker stopped before finishing, several times.",
  stale: () => "Nobody finished this file in time: upload it again.",
  cancelled: () => "Cancelled: the job was deleted before this file was processed.",
  service_busy: () => "The service is busy: try again in a minute.",
  dependency_unavailable: () => "The service cannot store files right now: try again in a minute.",
  rate_limited: () => "Too many requests: wait a moment and try again.",
};

/**
 * `{text, detail}` for an error `code` and the service's `message`: `text` for people,
 * `detail` the service's own words (shown smaller, for a bug report), or "" when
 * the plain sentence says it all.
 */
export function explain(code, message) {
  const plain = PLAIN[code];
  if (!plain) return { text: message ? capitalise(message) : "Something went wrong.", detail: "" };
  return { text: plain(message), detail: message || "" };
}

/** The parameter an `invalid_parameter` message names ("parameter 'text': ..."), or "". */
export function parameterOf(message) {
  return /^parameter '([a-z_]+)'/.exec(message || "")?.[1] || "";
}

/** What an invalid parameter's message says after its name, as a sentence. */
export function parameterProblem(message) {
  const reason = (message || "").replace(/^parameter '[a-z_]+':\s*/, "");
  return capitalise(reason);
}

function capitalise(text) {
  const sentence = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(sentence) ? sentence : `${sentence}.`;
}
