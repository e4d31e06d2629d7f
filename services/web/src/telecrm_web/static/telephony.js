// The telephony admin page: the sip-gateway's routes edited as one document and saved whole with the
// version they were loaded at (409 when someone changed them meanwhile: the page reloads theirs), and
// the trunk, provider API and capacity shown as the deployment set them.
//
// Structural changes (an entry added, removed or renamed, a member moved) re-render the editor from the
// document; typing only changes the document. Every name and number is text (el / textContent).

import { api, el, t } from "./common.js";

const SECTIONS = ["extensions", "lines", "groups", "queues"];
const KIND = { extensions: "extension", groups: "group", queues: "queue" };
const LEGEND = {
  extensions: "telephony_extension_legend",
  lines: "telephony_line_legend",
  groups: "telephony_group_legend",
  queues: "telephony_queue_legend",
};
const FIELD_LABELS = {
  contact: "telephony_contact",
  name: "telephony_name",
  employee_id: "telephony_employee_id",
  ring_timeout: "telephony_ring_timeout",
  overflow: "telephony_overflow",
  record: "telephony_record",
  strategy: "telephony_strategy",
  members: "telephony_members",
  member_timeout: "telephony_member_timeout",
  timeout: "telephony_timeout",
  extension: "telephony_target",
  group: "telephony_target",
  queue: "telephony_target",
};

const form = document.getElementById("routes-form");
const registrar = document.getElementById("registrar");
const saveButton = document.getElementById("routes-save");
const reloadButton = document.getElementById("routes-reload");
const statusLine = document.getElementById("routes-status");
const fileLine = document.getElementById("routes-file");
const problem = document.getElementById("routes-problem");
const facts = document.getElementById("deployment-facts");

let state = { routes: null, version: "", writable: false };
let saving = false;
let uid = 0;

function say(text, kind = "") {
  statusLine.textContent = text;
  statusLine.className = `form-status ${kind}`.trim();
}

// --- the deployment (read-only) -------------------------------------------------------------------

function fact(label, ...value) {
  return [el("dt", {}, t(label)), el("dd", {}, ...value)];
}

function registration(trunk) {
  if (!trunk.registration) return t("telephony_no_registration");
  if (trunk.registered) return el("span", { class: "registered" }, t("telephony_registered"));
  const why = [trunk.status, trunk.reason].filter(Boolean).join(" ");
  return el("span", { class: "not-registered" }, why ? t("telephony_not_registered_why", { why }) : t("telephony_not_registered"));
}

async function loadDeployment() {
  try {
    const { body } = await api("/api/admin/telephony");
    const none = t("telephony_none");
    const trunk = body.trunk;
    const provider = body.provider;
    const pbxs = provider.pbxs.map((pbx) =>
      t(pbx.secret_set ? "telephony_pbx_with_secret" : "telephony_pbx", { name: pbx.name, extensions: pbx.extensions.join(", ") }),
    );
    facts.replaceChildren(
      ...fact("telephony_trunk_uri", trunk.uri || none),
      ...fact("telephony_trunk_username", trunk.username || none),
      ...fact("telephony_trunk_password", t(trunk.password_set ? "telephony_set" : "telephony_not_set")),
      ...fact("telephony_trunk_registration", registration(trunk)),
      ...fact("telephony_provider_keys", provider.api_keys.join(", ") || none),
      ...fact("telephony_provider_pbxs", pbxs.join("; ") || none),
      ...fact(
        "telephony_capacity",
        t("telephony_capacity_value", { calls: body.capacity.max_calls, ring_all: body.capacity.max_ring_all }),
      ),
    );
  } catch (error) {
    if (error.status === 401) return;
    facts.replaceChildren(el("dd", { class: "error" }, t("load_failed", { error: error.message })));
  } finally {
    facts.removeAttribute("aria-busy");
  }
}

// --- building the editor --------------------------------------------------------------------------

function field(label, input, { wide = false, name } = {}) {
  const id = `tel-${++uid}`;
  input.id = id;
  if (name) input.dataset.field = name;
  return el("div", { class: wide ? "field wide" : "field" }, el("label", { for: id }, t(label)), input);
}

function textInput(value, onInput, attributes = {}) {
  const input = el("input", { type: "text", autocomplete: "off", maxlength: 300, ...attributes });
  input.value = value ?? "";
  input.addEventListener("input", () => onInput(input.value));
  return input;
}

/** Seconds: empty is the default (`null` where the file takes one, else the key is left out). */
function secondsInput(value, onInput) {
  const input = el("input", { type: "number", min: 1, max: 600, step: "any", inputmode: "decimal" });
  input.value = value ?? "";
  input.addEventListener("input", () => onInput(input.value === "" ? null : Number(input.value)));
  return input;
}

function selectInput(options, current, onChange) {
  const select = el("select", {}, options.map(([value, label]) => el("option", { value }, label)));
  select.value = current ?? "";
  select.addEventListener("change", () => onChange(select.value));
  return select;
}

function describeTarget(target) {
  const [kind, ...rest] = target.split(":");
  const name = rest.join(":");
  if (kind === "extension") {
    const who = state.routes.extensions[name]?.name;
    return t(who ? "telephony_target_extension_named" : "telephony_target_extension", { number: name, name: who });
  }
  if (kind === "group") return t("telephony_target_group", { name });
  if (kind === "queue") return t("telephony_target_queue", { name });
  return target;
}

function targets() {
  return ["extensions", "groups", "queues"].flatMap((section) =>
    Object.keys(state.routes[section]).map((key) => `${KIND[section]}:${key}`),
  );
}

function targetOptions(current, first) {
  const options = [...first, ...targets().map((target) => [target, describeTarget(target)])];
  if (current && !options.some(([value]) => value === current)) options.push([current, current]);
  return options;
}

function overflowSelect(entry, { line = false } = {}) {
  const first = line
    ? [["", t("telephony_overflow_own")], ["missed", t("telephony_overflow_missed")]]
    : [["", t("telephony_overflow_missed")]];
  const current = !line && entry.overflow === "missed" ? "" : entry.overflow || "";
  return selectInput(targetOptions(current, first), current, (value) => {
    entry.overflow = value || null;
  });
}

function recordBox(entry, label) {
  const id = `tel-${++uid}`;
  const box = el("input", { type: "checkbox", id, "data-field": "record" });
  box.checked = Boolean(entry.record);
  box.addEventListener("change", () => {
    entry.record = box.checked;
  });
  return el("label", { class: "choice wide", for: id }, box, t(label));
}

function keyField(section, key) {
  const label = section === "extensions" || section === "lines" ? "telephony_number" : "telephony_key";
  const input = el("input", { type: "text", autocomplete: "off", maxlength: 64, required: true, "data-key-input": "" });
  input.value = key;
  input.addEventListener("change", () => {
    const wanted = input.value.trim();
    if (wanted === key) return;
    const error = input.closest(".entry").querySelector("[data-error]");
    if (!wanted || wanted in state.routes[section]) {
      error.textContent = t(wanted ? "telephony_key_taken" : "telephony_key_empty", { key: wanted });
      input.setAttribute("aria-invalid", "true");
      input.value = key;
      input.focus();
      return;
    }
    rename(section, key, wanted);
    // On to the entry's next field, as the Tab that usually confirms a rename would have gone.
    render({ section, key: wanted, selector: ".field:nth-of-type(2) input, .field:nth-of-type(2) select" });
  });
  return field(label, input, { name: "key" });
}

function membersField(section, key, entry) {
  const list = el("ol", { class: "members wide", tabindex: -1, "data-field": "members", "aria-label": t("telephony_members") });
  entry.members.forEach((number, index) => {
    const who = state.routes.extensions[number]?.name;
    const action = (name, label, disabled, change) => {
      const button = el("button", { type: "button", "data-action": name, "aria-label": t(label, { member: number }) }, t(`${label}_short`));
      button.disabled = disabled;
      button.addEventListener("click", () => {
        change();
        const still = entry.members.includes(number);
        render({ section, key, selector: still ? `li[data-member="${CSS.escape(number)}"] [data-action="${name}"]` : "[data-action='add-member']" });
      });
      return button;
    };
    list.append(
      el(
        "li",
        { "data-member": number },
        el("span", {}, who ? `${number} · ${who}` : number),
        action("up", "telephony_move_up", index === 0, () => entry.members.splice(index - 1, 0, ...entry.members.splice(index, 1))),
        action("down", "telephony_move_down", index === entry.members.length - 1, () =>
          entry.members.splice(index + 1, 0, ...entry.members.splice(index, 1)),
        ),
        action("remove", "telephony_remove_member", false, () => entry.members.splice(index, 1)),
      ),
    );
  });
  if (!entry.members.length) list.append(el("li", { class: "muted" }, t("telephony_no_members")));
  const free = Object.entries(state.routes.extensions).filter(([number]) => !entry.members.includes(number));
  const choose = el(
    "select",
    { id: `tel-${++uid}` },
    free.map(([number, extension]) => el("option", { value: number }, extension.name ? `${number} · ${extension.name}` : number)),
  );
  const add = el("button", { type: "button", "data-action": "add-member" }, t("telephony_add_member"));
  add.disabled = !free.length;
  add.addEventListener("click", () => {
    if (!choose.value) return;
    entry.members.push(choose.value);
    render({ section, key, selector: "[data-action='add-member']" });
  });
  return [
    el("h4", { class: "wide" }, t("telephony_members")),
    list,
    el("div", { class: "member-add wide" }, el("label", { for: choose.id, class: "visually-hidden" }, t("telephony_member_to_add")), choose, add),
  ];
}

function lineTarget(entry) {
  if (entry.extension != null) return `extension:${entry.extension}`;
  if (entry.group != null) return `group:${entry.group}`;
  if (entry.queue != null) return `queue:${entry.queue}`;
  return "";
}

function entryBox(section, key) {
  const entry = state.routes[section][key];
  const legend = t(LEGEND[section], { key });
  const error = el("p", { class: "field-error wide", id: `tel-${++uid}`, "data-error": "" });
  const box = el("fieldset", { class: "entry", "data-section": section, "data-key": key }, el("legend", {}, legend));
  box.append(keyField(section, key));
  const set = (name) => (value) => {
    entry[name] = value;
  };
  if (section === "extensions") {
    box.append(
      field("telephony_name", textInput(entry.name, set("name"), { maxlength: 100 }), { name: "name" }),
      field("telephony_contact", textInput(entry.contact, set("contact"), { placeholder: `sip:${key}@10.0.0.5:5060` }), {
        wide: true,
        name: "contact",
      }),
      field("telephony_employee_id", textInput(entry.employee_id, set("employee_id"), { maxlength: 128 }), { name: "employee_id" }),
      field(
        "telephony_ring_timeout",
        secondsInput(entry.ring_timeout, (value) => {
          if (value === null) delete entry.ring_timeout;
          else entry.ring_timeout = value;
        }),
        { name: "ring_timeout" },
      ),
      field("telephony_overflow", overflowSelect(entry), { wide: true, name: "overflow" }),
      recordBox(entry, "telephony_record_extension"),
    );
  } else if (section === "lines") {
    const target = selectInput(targetOptions(lineTarget(entry), []), lineTarget(entry), (value) => {
      const [kind, ...rest] = value.split(":");
      entry.extension = entry.group = entry.queue = null;
      entry[kind] = rest.join(":");
    });
    box.append(
      field("telephony_name", textInput(entry.name, set("name"), { maxlength: 100 }), { name: "name" }),
      field("telephony_target", target, { name: "extension" }),
      field("telephony_overflow", overflowSelect(entry, { line: true }), { wide: true, name: "overflow" }),
      recordBox(entry, "telephony_record_line"),
    );
  } else {
    box.append(
      field("telephony_display_name", textInput(entry.name, set("name"), { maxlength: 100 }), { name: "name" }),
      field(
        "telephony_strategy",
        selectInput(
          [
            ["all", t("telephony_strategy_all")],
            ["sequential", t("telephony_strategy_sequential")],
          ],
          entry.strategy,
          set("strategy"),
        ),
        { name: "strategy" },
      ),
      field(
        "telephony_member_timeout",
        secondsInput(entry.member_timeout, (value) => {
          if (value === null) delete entry.member_timeout;
          else entry.member_timeout = value;
        }),
        { name: "member_timeout" },
      ),
      field("telephony_timeout", secondsInput(entry.timeout, set("timeout")), { name: "timeout" }),
      field("telephony_overflow", overflowSelect(entry), { name: "overflow" }),
      ...membersField(section, key, entry),
    );
  }
  const remove = el("button", { type: "button", class: "entry-remove", "aria-label": t("telephony_remove_entry", { entry: legend }) }, t("telephony_remove"));
  remove.addEventListener("click", () => {
    delete state.routes[section][key];
    render({ section: null, selector: `[data-add="${section}"]` });
  });
  box.append(error, remove);
  for (const input of box.querySelectorAll("input, select")) input.setAttribute("aria-describedby", error.id);
  return box;
}

function boxOf(section, key) {
  return [...document.querySelectorAll(`.entry[data-section="${section}"]`)].find((box) => box.dataset.key === String(key));
}

function render(focus = null) {
  registrar.value = state.routes.registrar || "";
  for (const section of SECTIONS) {
    document.getElementById(`${section}-list`).replaceChildren(...Object.keys(state.routes[section]).map((key) => entryBox(section, key)));
  }
  saveButton.disabled = !state.writable || saving;
  if (focus) {
    const scope = focus.section ? boxOf(focus.section, focus.key) : document;
    scope?.querySelector(focus.selector)?.focus();
  }
}

/** Rename an entry in place (its position kept) and every reference to it. */
function rename(section, from, to) {
  const entries = state.routes[section];
  state.routes[section] = Object.fromEntries(Object.entries(entries).map(([key, value]) => [key === from ? to : key, value]));
  const kind = KIND[section];
  if (!kind) return;
  const all = SECTIONS.flatMap((name) => Object.values(state.routes[name]));
  for (const entry of all) {
    if (entry.overflow === `${kind}:${from}`) entry.overflow = `${kind}:${to}`;
    if (entry[kind] === from) entry[kind] = to; // a line's target
    if (kind === "extension" && Array.isArray(entry.members)) {
      entry.members = entry.members.map((member) => (member === from ? to : member));
    }
  }
}

function freeKey(section) {
  const taken = state.routes[section];
  if (section === "extensions") {
    const numbers = Object.keys(taken).map(Number).filter(Number.isInteger);
    let next = numbers.length ? Math.max(...numbers) + 1 : 100;
    while (String(next) in taken) next += 1;
    return String(next);
  }
  const base = { lines: "new-line", groups: "new-group", queues: "new-queue" }[section];
  let n = 1;
  while (`${base}-${n}` in taken) n += 1;
  return `${base}-${n}`;
}

function newEntry(section) {
  if (section === "extensions") return { contact: "", name: "", employee_id: "", overflow: null, record: false };
  if (section === "lines") {
    const first = Object.keys(state.routes.extensions)[0] ?? "";
    return { extension: first, group: null, queue: null, name: "", overflow: null, record: false };
  }
  return { strategy: section === "groups" ? "all" : "sequential", members: [], timeout: null, overflow: null, name: "" };
}

for (const button of document.querySelectorAll("[data-add]")) {
  button.addEventListener("click", () => {
    const section = button.dataset.add;
    const key = freeKey(section);
    state.routes[section][key] = newEntry(section);
    render({ section, key, selector: "[data-key-input]" });
  });
}

registrar.addEventListener("input", () => {
  state.routes.registrar = registrar.value.trim();
});

// --- loading and saving -----------------------------------------------------------------------------

function showFile(body) {
  const where = body.path ? t("telephony_file", { path: body.path }) : t("telephony_packaged_default");
  fileLine.textContent = body.writable ? where : `${where} ${t("telephony_file_read_only")}`;
  problem.hidden = !body.error;
  problem.textContent = body.error ? t("telephony_file_problem", { error: body.error }) : "";
}

function apply(body) {
  state = { routes: body.routes, version: body.version, writable: body.writable };
  showFile(body);
  render();
}

async function loadRoutes() {
  const { body } = await api("/api/admin/telephony/routes");
  apply(body);
}

function clearErrors() {
  for (const line of form.querySelectorAll("[data-error]")) line.textContent = "";
  for (const box of form.querySelectorAll(".entry.has-error")) box.classList.remove("has-error");
  for (const input of form.querySelectorAll('[aria-invalid="true"]')) input.removeAttribute("aria-invalid");
}

/** The gateway's 422: each message on its entry (and field), the first one focused. */
function showErrors(detail) {
  let first = null;
  const elsewhere = [];
  for (const item of detail) {
    const [section, key, name] = (item.loc || []).filter((part) => part !== "body");
    const box = SECTIONS.includes(section) ? boxOf(section, key) : null;
    if (!box) {
      if (section === "registrar") {
        registrar.setAttribute("aria-invalid", "true");
        first ??= registrar;
      }
      elsewhere.push(item.msg);
      continue;
    }
    const line = box.querySelector("[data-error]");
    const label = FIELD_LABELS[name] ? `${t(FIELD_LABELS[name])}: ` : "";
    line.textContent = [line.textContent, `${label}${item.msg}`].filter(Boolean).join(" ");
    box.classList.add("has-error");
    const input = (name && box.querySelector(`[data-field="${name}"]`)) || box.querySelector("[data-key-input]");
    input.setAttribute("aria-invalid", "true");
    first ??= input;
  }
  say([t("telephony_invalid", { count: detail.length }), ...elsewhere].join(" "), "error");
  first?.focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (saving || !state.routes) return;
  saving = true;
  saveButton.disabled = true;
  clearErrors();
  say(t("telephony_saving"));
  try {
    const { body } = await api("/api/admin/telephony/routes", {
      method: "PUT",
      body: state.routes,
      headers: { "If-Match": `"${state.version}"` },
    });
    apply(body);
    say(t("telephony_saved"), "ok");
  } catch (error) {
    if (error.status === 401) return;
    if (error.status === 422 && Array.isArray(error.body?.detail)) {
      showErrors(error.body.detail);
    } else if (error.status === 409 && error.body?.code === "stale") {
      await loadRoutes().catch(() => {});
      say(t("telephony_stale"), "error");
    } else if (error.status === 409 && error.body?.code === "read_only") {
      state.writable = false;
      say(t("telephony_read_only"), "error");
    } else {
      say(t("telephony_save_failed", { error: error.message }), "error");
    }
  } finally {
    saving = false;
    saveButton.disabled = !state.writable;
  }
});

reloadButton.addEventListener("click", async () => {
  clearErrors();
  try {
    await loadRoutes();
    say(t("telephony_reloaded"));
  } catch (error) {
    if (error.status !== 401) say(t("load_failed", { error: error.message }), "error");
  }
});

loadDeployment();
loadRoutes().catch((error) => {
  if (error.status !== 401) say(t("load_failed", { error: error.message }), "error");
});
