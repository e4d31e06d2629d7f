// Forms of the numbers and administration pages: errors shown next to their field, a status line,
// choosers of employees and teams, and a confirmation before anything is deleted or taken away.
//
// The services validate: their 422 names the field (`loc: ["body", "login"]`) and the message goes
// under that field; a 409 (a login taken, an extension registered already, a stale version) goes
// under the field its text names, else on the form's status line.
import { el, t } from "./common.js";

export function announce(text) {
  const announcer = document.getElementById("announcer");
  if (!announcer) return;
  announcer.textContent = "";
  setTimeout(() => {
    announcer.textContent = text;
  }, 50);
}

function errorSlot(form, name) {
  return form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
}

export function setStatus(form, text, { error = false } = {}) {
  const status = form.querySelector(".form-status");
  if (!status) return;
  status.textContent = text;
  status.classList.toggle("error", error);
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll("[data-error-for]")) slot.textContent = "";
  for (const field of form.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
  setStatus(form, "");
}

function markField(form, name, text) {
  const slot = errorSlot(form, name);
  if (!slot) return false;
  slot.textContent = text;
  const field = form.elements[name];
  const target = field instanceof RadioNodeList ? field[0] : field;
  if (target && "setAttribute" in target) {
    target.setAttribute("aria-invalid", "true");
    if (!form.querySelector("[aria-invalid]:focus")) target.focus();
  }
  return true;
}

/**
 * Show an ApiError of a form: 422 items under their fields, a 409 under the field its message names
 * (`conflicts`: [[/login/i, "login"], ...]), anything else on the status line.
 */
export function showError(form, error, conflicts = []) {
  if (error.status === 401) return;
  const detail = error.body?.detail;
  let placed = false;
  if (error.status === 422 && Array.isArray(detail)) {
    const rest = [];
    for (const item of detail) {
      const loc = (item.loc || []).filter((part) => part !== "body");
      const name = String(loc[0] ?? "");
      if (!markField(form, name, item.msg)) rest.push(`${name}: ${item.msg}`);
      else placed = true;
    }
    if (rest.length) setStatus(form, t("invalid_input", { details: rest.join("; ") }), { error: true });
    else setStatus(form, t("adm_check_fields"), { error: true });
    announce(t("adm_check_fields"));
    return;
  }
  if (error.status === 409 && typeof detail === "string") {
    for (const [pattern, name] of conflicts) {
      if (pattern.test(detail) && markField(form, name, detail)) {
        placed = true;
        break;
      }
    }
  }
  const text = error.status === 409 && typeof detail === "string" ? t("adm_conflict", { error: detail }) : error.message;
  if (!placed) setStatus(form, text, { error: true });
  announce(text);
}

/** window.confirm in the user's language; true when they agreed. */
export function confirmAction(key, values = {}) {
  return window.confirm(t(key, values));
}

export function employeeLabel(employee) {
  if (!employee) return "";
  return employee.extension ? `${employee.name} (${employee.extension})` : employee.name;
}

/** Replace the options of `select` after its first `keep` ones, keeping the chosen value if it is still there. */
export function fillOptions(select, items, { value, label, keep = 1 }) {
  const chosen = select.value;
  const fixed = [...select.options].slice(0, keep);
  select.replaceChildren(...fixed, ...items.map((item) => el("option", { value: value(item) }, label(item))));
  if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
}

/** Disable the form's buttons while `work` runs (one click, one request). */
export async function busy(form, work) {
  const buttons = [...form.querySelectorAll("button")].filter((button) => !button.disabled);
  for (const button of buttons) button.disabled = true;
  try {
    return await work();
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}
