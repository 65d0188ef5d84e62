// A product's parameter form, built from GET /products: types, choices, ranges, defaults.
//
// Empty fields are left out of the instruction, so the service applies its
// own defaults (shown as placeholders); a value equal to its default is left
// out too, so the job's parameters read as what was actually chosen.

import { h, label } from "./util.js";

const UNITS = { width: "px", height: "px", left: "px", top: "px", margin: "px", angle: "°" };
const KEEP = "Keep the input's";
const FORMATS = { jpeg: "JPEG", png: "PNG", webp: "WebP", avif: "AVIF", gif: "GIF", tiff: "TIFF" };
// Names and hints a person reads more easily than the API's.
const LABELS = { target_ssim: "Target similarity", keep_metadata: "Keep metadata", upscale: "Allow enlarging" };
const HINTS = {
  target_ssim: "How close to the original the result must look: 1 is identical; 0.98 looks the same to most eyes (an SSIM score)",
  image: "A small PNG, JPEG or WebP picture to stamp (at most 1 MB)",
};

function hintOf(parameter) {
  if (HINTS[parameter.name]) return HINTS[parameter.name];
  // A required format has no default to keep, whatever the general description says.
  if (parameter.name === "format" && parameter.required) return "The format to write";
  return parameter.description;
}

function nameOf(parameter) {
  return LABELS[parameter.name] || label(parameter.name);
}

function range(parameter) {
  const { minimum, maximum } = parameter;
  if (minimum === undefined && maximum === undefined) return "";
  const unit = UNITS[parameter.name] ? ` ${UNITS[parameter.name]}` : "";
  if (minimum !== undefined && maximum !== undefined) return `${minimum}–${maximum}${unit}`;
  return minimum !== undefined ? `at least ${minimum}${unit}` : `at most ${maximum}${unit}`;
}

function isFileParameter(parameter) {
  // A base64 image (the watermark's): picked as a file, sent as base64.
  return parameter.type === "string" && parameter.name === "image";
}

function numberInput(parameter, id) {
  const integer = parameter.type === "integer";
  const span = (parameter.maximum ?? 0) - (parameter.minimum ?? 0);
  const step = integer ? 1 : span > 0 && span <= 1 ? 0.01 : "any";
  return h("input", {
    id,
    name: parameter.name,
    type: "number",
    inputmode: integer ? "numeric" : "decimal",
    min: parameter.minimum ?? null,
    max: parameter.maximum ?? null,
    step,
    placeholder: parameter.default ?? (parameter.required ? "required" : "optional"),
    required: parameter.required || null,
  });
}

function choiceInput(parameter, id) {
  const select = h("select", { id, name: parameter.name, required: parameter.required || null });
  if (parameter.default === null || parameter.default === undefined) {
    select.append(
      parameter.required
        ? h("option", { value: "", disabled: true, selected: true }, "Choose…")
        : h("option", { value: "" }, parameter.name === "format" ? KEEP : "—"),
    );
  }
  for (const choice of parameter.choices) {
    const isDefault = choice === parameter.default;
    const text = parameter.name === "format" ? FORMATS[choice] || choice : choice;
    select.append(
      h("option", { value: choice, selected: isDefault || null }, isDefault ? `${text} (default)` : text),
    );
  }
  return select;
}

function booleanInput(parameter, id) {
  return h("input", {
    id,
    name: parameter.name,
    type: "checkbox",
    role: "switch",
    checked: Boolean(parameter.default),
  });
}

function colorInput(parameter, id) {
  const fallback = /^#[0-9a-f]{6}/i.test(parameter.default || "") ? parameter.default.slice(0, 7) : "#ffffff";
  return h("input", { id, name: parameter.name, type: "color", value: fallback });
}

function fileInput(parameter, id) {
  return h("input", { id, name: parameter.name, type: "file", accept: "image/png,image/jpeg,image/webp" });
}

function textInput(parameter, id) {
  return h("input", {
    id,
    name: parameter.name,
    type: "text",
    maxlength: parameter.max_length ?? null,
    placeholder: parameter.default ?? (parameter.name === "aspect_ratio" ? "e.g. 16:9" : "optional"),
    required: parameter.required || null,
    autocomplete: "off",
  });
}

function control(parameter, id) {
  if (parameter.type === "integer" || parameter.type === "number") return numberInput(parameter, id);
  if (parameter.type === "choice") return choiceInput(parameter, id);
  if (parameter.type === "boolean") return booleanInput(parameter, id);
  if (parameter.type === "color") return colorInput(parameter, id);
  if (isFileParameter(parameter)) return fileInput(parameter, id);
  return textInput(parameter, id);
}

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener("load", () => resolve(String(reader.result).split(",", 2)[1] || ""));
    reader.addEventListener("error", () => reject(new Error(`could not read ${file.name}`)));
    reader.readAsDataURL(file);
  });
}

async function valueOf(parameter, input) {
  switch (parameter.type) {
    case "integer":
    case "number":
      return input.value === "" ? undefined : Number(input.value);
    case "boolean":
      return input.checked;
    case "color": {
      const initial = /^#[0-9a-f]{6}/i.test(parameter.default || "") ? parameter.default.slice(0, 7) : "";
      return input.value.toLowerCase() === initial.toLowerCase() ? undefined : input.value;
    }
    default:
      if (isFileParameter(parameter)) {
        return input.files.length ? readBase64(input.files[0]) : undefined;
      }
      return input.value.trim() === "" ? undefined : input.value.trim();
  }
}

/**
 * The form of `product` as a <form> element with `params()` resolving to the
 * chosen parameters (defaults and empty fields left out).
 */
export function parameterForm(product, formId = "params") {
  const form = h("form", { class: "params", id: formId, novalidate: true });
  const inputs = [];
  const errors = new Map();
  if (!product.parameters.length) {
    form.append(h("p", { class: "muted" }, "This tool takes no settings."));
  }
  for (const parameter of product.parameters) {
    const id = `param-${parameter.name}`;
    const input = control(parameter, id);
    inputs.push([parameter, input]);
    const hint = [hintOf(parameter), range(parameter)].filter(Boolean).join(" · ");
    const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
    input.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
    errors.set(parameter.name, [input, error]);
    const wide = parameter.type === "string" || parameter.name === "fit";
    if (parameter.type === "boolean") {
      form.append(
        h(
          "div",
          { class: "field toggle", dataset: { name: parameter.name } },
          h("label", { for: id }, input, h("span", {}, nameOf(parameter))),
          h("p", { class: "hint", id: `${id}-hint` }, hint),
          error,
        ),
      );
      continue;
    }
    form.append(
      h(
        "div",
        { class: wide ? "field wide" : "field", dataset: { name: parameter.name } },
        h("label", { for: id }, nameOf(parameter), parameter.required ? h("span", { class: "req" }, " (required)") : null),
        input,
        h("p", { class: "hint", id: `${id}-hint` }, hint),
        error,
      ),
    );
  }
  /** Mark the field of parameter `name` with `message` and bring it into view; false if none. */
  form.showError = (name, message) => {
    const found = errors.get(name);
    if (!found) return false;
    const [input, error] = found;
    error.textContent = message;
    error.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.scrollIntoView({ block: "center" });
    input.focus({ preventScroll: true });
    return true;
  };
  form.clearErrors = () => {
    for (const [input, error] of errors.values()) {
      error.hidden = true;
      error.textContent = "";
      input.removeAttribute("aria-invalid");
    }
  };
  form.params = async () => {
    const params = {};
    for (const [parameter, input] of inputs) {
      const value = await valueOf(parameter, input);
      if (value === undefined || value === parameter.default) continue;
      params[parameter.name] = value;
    }
    return params;
  };
  return form;
}

/**
 * "width 640 · format WebP" for a job's parameters: only what differs from
 * the product's defaults (the service fills every default in).
 */
export function describeParams(params, product) {
  const defaults = new Map((product?.parameters || []).map((p) => [p.name, p.default]));
  const parts = [];
  for (const [name, value] of Object.entries(params || {})) {
    if (value === null || value === undefined || defaults.get(name) === value) continue;
    if (name === "image") parts.push("image mark");
    else if (name === "format") parts.push(`as ${FORMATS[value] || value}`);
    else if (value === true) parts.push(label(name).toLowerCase());
    else if (value === false) parts.push(`no ${label(name).toLowerCase()}`);
    else parts.push(`${label(name).toLowerCase()} ${value}`);
  }
  return parts.join(" · ") || "default settings";
}
