// Shared by the desktop's pages: messages, safe element building, the JSON API and kept form data.
//
// Text from the services (names, numbers, comments) only ever reaches the page through
// textContent, attribute values and <option> text, never through innerHTML: a name such as
// "<img src=x onerror=...>" shows as those characters.

const messages = JSON.parse(document.getElementById("i18n")?.textContent || "{}");

const plurals = new Intl.PluralRules(document.documentElement.lang || "en");

/** The message `key` with its {placeholders} filled in; a message of plural forms ({one, few, many,
 * other}) gives the form for its `count` (else its `total`): "1 task", "5 задач". `count` is the
 * number when `total` is already formatted ("12,345"). */
export function t(key, values = {}) {
  let text = messages[key] ?? key;
  if (typeof text === "object") {
    const count = typeof values.count === "number" ? values.count : values.total;
    text = (typeof count === "number" && text[plurals.select(count)]) || text.other;
  }
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

/**
 * el("p", {class: "x", "aria-live": "polite"}, "text", otherNode): an element whose string children
 * become text nodes. Attributes starting with "on" are refused (handlers go through addEventListener).
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) throw new Error(`event handler attribute ${name} refused`);
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const language = document.documentElement.lang || "en";

/** The user's time zone: their choice (cookie, set on the desktop) or the browser's. */
export function timeZone() {
  const chosen = document.body.dataset.timeZone;
  if (chosen) return chosen;
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/** A date and time in the user's language and time zone. */
export function formatDateTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return new Intl.DateTimeFormat(language, {
    dateStyle: "short",
    timeStyle: "medium",
    timeZone: timeZone(),
  }).format(date);
}

/** Seconds as m:ss (h:mm:ss past an hour). */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const total = Math.round(Number(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export function formatNumber(value) {
  return new Intl.NumberFormat(language).format(value);
}

// --- kept form data ----------------------------------------------------------------------------
// When the session has ended, what the user typed is kept in sessionStorage (this tab only) and put
// back once they have logged in again and the same form is on the page (a card comes back with the
// catch-up of screen pops).

const KEPT = "telecrm:kept-forms";

function keptForms() {
  try {
    return JSON.parse(sessionStorage.getItem(KEPT) || "{}");
  } catch {
    return {};
  }
}

/** Keep the values of every form with a data-form-key. */
export function keepForms() {
  const kept = keptForms();
  for (const form of document.querySelectorAll("form[data-form-key]")) {
    const values = {};
    for (const field of form.elements) {
      if (!field.name || field.type === "password" || field.type === "hidden") continue;
      if ((field.type === "radio" || field.type === "checkbox") && !field.checked) continue;
      values[field.name] = field.value;
    }
    kept[form.dataset.formKey] = values;
  }
  sessionStorage.setItem(KEPT, JSON.stringify(kept));
}

/** Put kept values back into `form` (once); true when there were some. */
export function restoreForm(form) {
  const kept = keptForms();
  const values = kept[form.dataset.formKey];
  if (!values) return false;
  for (const field of form.elements) {
    if (!field.name || !(field.name in values)) continue;
    if (field.type === "radio" || field.type === "checkbox") field.checked = field.value === values[field.name];
    else field.value = values[field.name];
    field.dispatchEvent(new Event("change", { bubbles: true }));
  }
  delete kept[form.dataset.formKey];
  sessionStorage.setItem(KEPT, JSON.stringify(kept));
  return true;
}

/** The session ended: keep the forms and go to log-in, coming back here afterwards. */
export function sessionEnded() {
  keepForms();
  const next = location.pathname + location.search;
  location.assign(`/login?expired=1&next=${encodeURIComponent(next)}`);
}

// --- the JSON API --------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, body, headers) {
    super(describe(status, body));
    this.status = status;
    this.body = body;
    this.headers = headers;
  }
}

function describe(status, body) {
  if (status === 403) return t("forbidden");
  if (status === 502 || status === 503 || status === 504) return t("service_unavailable");
  const detail = body?.detail;
  if (status === 422 && Array.isArray(detail)) {
    const details = detail
      .map((item) => `${(item.loc || []).filter((part) => part !== "body" && part !== "query").join(".")}: ${item.msg}`)
      .join("; ");
    return t("invalid_input", { details });
  }
  if (typeof detail === "string") return t("error_generic", { error: detail });
  if (detail && typeof detail.message === "string") return t("error_generic", { error: detail.message });
  return t("error_generic", { error: String(status) });
}

/** `params` as a query string, leaving out empty values (an array value repeats its key). */
export function queryString(params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== null && item !== undefined && item !== "") query.append(key, item);
    }
  }
  return query.toString();
}

const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

/**
 * fetch() of the desktop's JSON API: the CSRF token on every change, JSON in and out. Resolves to
 * {body, headers}; rejects with ApiError. A 401 keeps the forms and goes to log-in.
 */
export async function api(path, { method = "GET", body, headers = {}, params } = {}) {
  let url = path;
  if (params) {
    const text = queryString(params);
    if (text) url += `?${text}`;
  }
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (method !== "GET") init.headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new ApiError(0, { detail: t("service_unavailable") }, new Headers());
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (response.status === 401) {
    sessionEnded();
    throw new ApiError(401, data, response.headers);
  }
  if (!response.ok) throw new ApiError(response.status, data, response.headers);
  return { body: data, headers: response.headers };
}

// --- paged lists ---------------------------------------------------------------------------------

export const PAGE_SIZE = 25;

/** A table filled one page at a time: `cursors[i]` is the cursor of page i (null for the first). */
export class PagedTable {
  constructor({ prefix, path, columns, params, totalKey, emptyKey }) {
    this.path = path;
    this.columns = columns;
    this.params = params;
    this.totalKey = totalKey;
    this.emptyKey = emptyKey;
    this.body = document.getElementById(`${prefix}-body`);
    this.total = document.getElementById(`${prefix}-total`);
    this.pageLabel = document.getElementById(`${prefix}-page`);
    this.prev = document.getElementById(`${prefix}-prev`);
    this.next = document.getElementById(`${prefix}-next`);
    this.cursors = [null];
    this.page = 0;
    this.nextCursor = null;
    this.loading = 0;
    this.prev.addEventListener("click", () => this.go(this.page - 1));
    this.next.addEventListener("click", () => this.go(this.page + 1));
  }

  reset() {
    this.cursors = [null];
    return this.go(0);
  }

  async go(page) {
    if (page > 0 && page >= this.cursors.length) {
      if (!this.nextCursor) return;
      this.cursors.push(this.nextCursor);
    }
    const ticket = ++this.loading;
    this.prev.disabled = true;
    this.next.disabled = true;
    this.body.setAttribute("aria-busy", "true");
    this.total.textContent = t("loading");
    try {
      const { body: data } = await api(this.path, {
        params: { ...this.params(), cursor: this.cursors[page], limit: PAGE_SIZE },
      });
      if (ticket !== this.loading) return; // a newer request won
      this.page = page;
      this.nextCursor = data.next_cursor;
      this.render(data);
    } catch (error) {
      if (ticket !== this.loading || error.status === 401) return;
      this.body.replaceChildren(
        el("tr", {}, el("td", { colspan: this.columns.length, class: "error" }, t("load_failed", { error: error.message }))),
      );
      this.total.textContent = "";
      const retry = el("button", { type: "button" }, t("retry"));
      retry.addEventListener("click", () => this.go(page));
      this.body.querySelector("td").append(" ", retry);
    } finally {
      if (ticket === this.loading) this.body.removeAttribute("aria-busy");
    }
  }

  render(data) {
    const rows = data.items.map((item) => el("tr", {}, this.columns.map((column) => el("td", {}, column(item)))));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: this.columns.length, class: "empty" }, t(this.emptyKey))));
    this.body.replaceChildren(...rows);
    if (data.total !== null && data.total !== undefined) {
      this.total.textContent = t(this.totalKey, { total: formatNumber(data.total), count: data.total });
    } else if (this.total.textContent === t("loading")) {
      this.total.textContent = "";
    }
    this.pageLabel.textContent = t("page_info", { page: this.page + 1 });
    this.prev.disabled = this.page === 0;
    this.next.disabled = !data.next_cursor;
  }
}

// --- calls ---------------------------------------------------------------------------------------

export function party(p) {
  if (!p) return "";
  const number = p.number || p.e164 || "";
  return p.name ? `${p.name} (${number})` : number;
}

export function callResult(call) {
  if (call.disposition) return t(`disposition_${call.disposition}`);
  return t(`state_${call.state}`);
}

export function callNotes(call) {
  const notes = call.notes || {};
  return [notes.reason, notes.result, notes.comment].filter(Boolean).join(" · ");
}
