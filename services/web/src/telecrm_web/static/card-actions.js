// What the agent makes from a call on its screen-pop card, during the call or after it: a task (the
// call attached to it), an event in the journal (with the call's contact and number), and a personal
// reminder. crm has no reminder of its own apart from tasks: a reminder is a task for the user, due
// at that time, that reminds them then (the form says so).
//
// Each part is a button that opens a small form under it (one at a time; Escape closes it and gives
// the focus back to the button). A button the user has no right to is not there (crm refuses
// anyway). A form cannot be sent twice: its button is disabled while it posts, and the same
// Idempotency-Key goes with every try until one succeeds. crm's refusals of a field (422) are shown
// under that field; others under the form.
import { api, el, language, restoreForm, t, timeZone } from "./common.js";
import { addDays, fromInputValue, fromZoned, parseDay, toInputValue, today } from "./calendar.js";

const body = document.body;
const employeeId = body.dataset.employeeId || "";
const canCreateTask = body.dataset.canCreateTask === "true";
const canCreateEvent = body.dataset.canCreateEvent === "true";
const HOUR = 3_600_000;
const REMIND_CHOICES = ["15m", "1h", "tomorrow", "at"];
const TOMORROW_HOUR = 9;

let eventTypes = null;

/** The journal's types an agent records by hand: active ones, not the call log's own call types. */
function recordableTypes() {
  eventTypes ??= api("/api/event-types")
    .then(({ body: types }) => types.filter((type) => type.active && type.channel !== "call"))
    .catch(() => []);
  return eventTypes;
}

function timeOfDay(date) {
  return new Intl.DateTimeFormat(language, { timeZone: timeZone(), timeStyle: "short" }).format(date);
}

function dateTime(date) {
  return new Intl.DateTimeFormat(language, { timeZone: timeZone(), dateStyle: "medium", timeStyle: "short" }).format(date);
}

function tomorrowAt(hour) {
  return fromZoned({ ...parseDay(addDays(today(), 1)), hour, minute: 0 });
}

/** The card's actions (null when the user may do none of them). `view` is the card: its `card` (the
 * screen pop), `id` (for element ids) and `comment()` (what the call registration says so far). */
export function cardActions(view) {
  const parts = [];
  if (canCreateTask) parts.push(taskPart(view));
  if (canCreateEvent) parts.push(eventPart(view));
  if (canCreateTask && employeeId) parts.push(reminderPart(view));
  if (!parts.length) return null;
  const heading = el("h4", { id: `${view.id}-actions-title` }, t("card_actions_heading"));
  const made = el("ul", { class: "card-made", "aria-live": "polite" });
  const buttons = el("div", { class: "card-action-buttons" });
  const section = el("section", { class: "card-actions", "aria-labelledby": heading.id }, heading, buttons);
  const opened = { current: null };
  for (const part of parts) {
    const action = new Action(part, made, opened);
    buttons.append(action.button);
    section.append(action.form);
  }
  section.append(made);
  return section;
}

/** The call's contact (when the card knows it) and the customer's number, for what is made. */
function callParty(view) {
  const lookup = view.card.lookup || {};
  const known = lookup.contact && (lookup.match === "exact" || lookup.match === "suffix");
  const contactId = known ? lookup.contact.contact_id : null;
  const phone = view.card.e164 || view.card.number || null;
  return { contactId, contactName: known ? lookup.contact.name : null, phone };
}

function who(view) {
  const party = callParty(view);
  return party.contactName || party.phone || t("card_unknown");
}

// --- one action: its button, its form, sending it ---------------------------------------------

class Action {
  constructor(part, made, opened) {
    this.part = part;
    this.made = made;
    this.opened = opened;
    this.key = null;
    const id = part.id;
    this.fields = new Map(); // name the API gives in a 422 -> its input
    this.button = el("button", { type: "button", "aria-expanded": "false", "aria-controls": id }, part.label);
    this.status = el("p", { class: "form-status", role: "status" });
    this.submit = el("button", { type: "submit" }, part.submitLabel);
    const cancel = el("button", { type: "button", class: "secondary" }, t("card_cancel"));
    this.form = el("form", { id, class: "card-action-form", novalidate: true, hidden: true });
    this.form.append(...part.build(this), this.status, el("div", { class: "buttons" }, this.submit, cancel));
    this.button.addEventListener("click", () => (this.form.hidden ? this.open() : this.close()));
    cancel.addEventListener("click", () => this.close());
    this.form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        this.close();
      }
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.form.addEventListener("input", (event) => this.clearError(event.target));
    Promise.resolve(part.ready).then(() => {
      // Back from log-in with what was typed (only an open form is kept: see open()).
      this.form.dataset.formKey = part.formKey;
      if (restoreForm(this.form)) this.open({ keep: true });
      else delete this.form.dataset.formKey;
    });
  }

  /** A labelled field with the place for its error; `apiName` is how a 422 names it. */
  field(name, label, input, apiName = name) {
    const errorId = `${input.id}-error`;
    const error = el("p", { class: "field-error", id: errorId });
    input.setAttribute("aria-describedby", [input.getAttribute("aria-describedby"), errorId].filter(Boolean).join(" "));
    this.fields.set(apiName, { input, error });
    return el("div", { class: "field" }, label ? el("label", { for: input.id }, label) : null, input, error);
  }

  open({ keep = false } = {}) {
    if (this.opened.current && this.opened.current !== this) this.opened.current.close({ focus: false });
    this.opened.current = this;
    if (!keep && this.form.dataset.filled !== "true") this.part.fill(this.form);
    this.form.dataset.filled = "true";
    this.form.hidden = false;
    this.form.dataset.formKey = this.part.formKey; // kept over a log-in while it is open
    this.button.setAttribute("aria-expanded", "true");
    this.form.querySelector("input[type=radio]:checked, input:not([type=radio]):not([type=checkbox]):not(:disabled), select, textarea")?.focus();
  }

  close({ focus = true } = {}) {
    this.form.hidden = true;
    delete this.form.dataset.formKey;
    this.button.setAttribute("aria-expanded", "false");
    if (this.opened.current === this) this.opened.current = null;
    if (focus) this.button.focus();
  }

  /** A field the user corrects loses its error. */
  clearError(input) {
    for (const place of this.fields.values()) {
      const describedBy = input.getAttribute?.("aria-describedby") || "";
      if (!describedBy.split(" ").includes(place.error.id)) continue;
      place.input.removeAttribute("aria-invalid");
      place.error.textContent = "";
    }
  }

  clearErrors() {
    this.status.textContent = "";
    this.status.classList.remove("error");
    for (const { input, error } of this.fields.values()) {
      input.removeAttribute("aria-invalid");
      error.textContent = "";
    }
  }

  /** Errors by field ({apiName: text}); the first such field gets the focus. */
  showErrors(errors) {
    let first = null;
    for (const [name, text] of Object.entries(errors)) {
      const place = this.fields.get(name);
      if (!place) {
        this.status.textContent = text;
        this.status.classList.add("error");
        continue;
      }
      place.input.setAttribute("aria-invalid", "true");
      place.error.textContent = text;
      first ??= place.input;
    }
    first?.focus();
  }

  async send() {
    if (this.submit.disabled) return;
    this.clearErrors();
    const request = this.part.read(this.form);
    if (request.errors) {
      this.showErrors(request.errors);
      return;
    }
    this.key ??= crypto.randomUUID();
    this.submit.disabled = true;
    this.status.textContent = t("card_saving");
    try {
      const { body: answer, headers } = await api(request.path, {
        method: "POST",
        body: request.body,
        headers: { "Idempotency-Key": this.key },
      });
      this.key = null;
      this.status.textContent = "";
      const item = this.part.made(answer, headers, request);
      this.made.append(item);
      this.form.dataset.filled = "false"; // the next opening starts afresh
      this.close({ focus: false });
      item.querySelector("a")?.focus();
    } catch (error) {
      if (error.status === 401) return;
      this.status.textContent = "";
      this.showErrors(refusal(error));
    } finally {
      this.submit.disabled = false;
    }
  }
}

/** crm's refusal as errors by field: a 422 names them; anything else is the form's. */
function refusal(error) {
  const detail = error.body?.detail;
  if (error.status !== 422 || !Array.isArray(detail)) return { "": error.message };
  const errors = {};
  for (const item of detail) {
    const name = (item.loc || []).filter((part) => part !== "body" && typeof part === "string").at(-1) || "";
    const text = t("card_field_error", { error: item.msg || "" });
    errors[name] = errors[name] ? `${errors[name]} ${text}` : text;
  }
  return errors;
}

function madeLink(prefix, href, text, ...after) {
  return el("li", {}, prefix, " ", el("a", { href }, text), ...after);
}

// --- a task from the call -------------------------------------------------------------------------

function taskPart(view) {
  const id = `${view.id}-task`;
  const inputs = {};
  return {
    id,
    label: t("card_task_new"),
    submitLabel: t("card_task_create"),
    formKey: `card-task:${view.card.call_id}`,
    build(action) {
      inputs.name = el("input", { id: `${id}-name`, name: "name", type: "text", maxlength: 500, autocomplete: "off", required: true });
      inputs.date = el("input", { id: `${id}-date`, name: "date", type: "date" });
      inputs.time = el("input", { id: `${id}-time`, name: "time", type: "time", "aria-label": t("card_task_deadline_time") });
      inputs.priority = el(
        "select",
        { id: `${id}-priority`, name: "priority" },
        ["low", "normal", "high"].map((value) => el("option", { value, selected: value === "normal" }, t(`tasks_priority_${value}`))),
      );
      const parts = [
        action.field("name", t("card_task_name"), inputs.name),
        el(
          "div",
          { class: "field" },
          el("label", { for: inputs.date.id }, t("card_task_deadline")),
          el("div", { class: "inline" }, inputs.date, inputs.time),
        ),
      ];
      // The deadline's error sits under both of its inputs.
      const deadlineError = el("p", { class: "field-error", id: `${id}-deadline-error` });
      for (const input of [inputs.date, inputs.time]) input.setAttribute("aria-describedby", deadlineError.id);
      action.fields.set("end_at", { input: inputs.date, error: deadlineError });
      parts[1].append(deadlineError);
      parts.push(action.field("priority", t("card_task_priority"), inputs.priority));
      if (employeeId) {
        inputs.mine = el("input", { type: "checkbox", name: "assign_me", value: "yes", checked: true });
        parts.push(el("label", { class: "choice" }, inputs.mine, " ", t("card_task_assign_me")));
      }
      return parts;
    },
    fill() {
      inputs.name.value = t("card_task_default_name", { who: who(view) });
      // An hour from now, on the hour.
      const due = new Date(Math.ceil((Date.now() + HOUR) / HOUR) * HOUR);
      const [day, time] = toInputValue(due.toISOString()).split("T");
      inputs.date.value = day;
      inputs.time.value = time;
      inputs.priority.value = "normal";
      if (inputs.mine) inputs.mine.checked = true;
    },
    read() {
      const name = inputs.name.value.trim();
      const errors = {};
      if (!name) errors.name = t("card_name_needed");
      let endAt = null;
      if (inputs.date.value) {
        if (!inputs.time.value) errors.end_at = t("card_time_needed");
        else endAt = fromInputValue(`${inputs.date.value}T${inputs.time.value}`);
      } else if (inputs.time.value) {
        errors.end_at = t("card_date_needed");
      }
      if (Object.keys(errors).length) return { errors };
      const party = callParty(view);
      const task = {
        name,
        end_at: endAt,
        priority: inputs.priority.value,
        executor_ids: inputs.mine?.checked ? [employeeId] : [],
        contact_id: party.contactId,
        phone: party.phone,
      };
      return { path: `/api/tasks/from-call/${encodeURIComponent(view.card.call_id)}`, body: withoutEmpty(task) };
    },
    made(task, headers) {
      const attached = headers.get("X-Call-Link") !== "none";
      return madeLink(
        t("card_task_created"),
        `/tasks?id=${encodeURIComponent(task.id)}`,
        task.name,
        attached ? null : ` ${t("card_call_not_attached")}`,
      );
    },
  };
}

// --- an event in the journal ----------------------------------------------------------------------

function eventPart(view) {
  const id = `${view.id}-event`;
  const inputs = {};
  const ready = recordableTypes().then((types) => {
    inputs.type.append(...types.map((type) => el("option", { value: type.code }, type.name)));
    inputs.noTypes.hidden = types.length > 0;
  });
  return {
    id,
    label: t("card_event_new"),
    submitLabel: t("card_event_create"),
    formKey: `card-event:${view.card.call_id}`,
    ready,
    build(action) {
      inputs.type = el("select", { id: `${id}-type`, name: "type_code" });
      inputs.noTypes = el("p", { class: "muted", hidden: true }, t("card_event_no_types"));
      inputs.subject = el("input", { id: `${id}-subject`, name: "subject", type: "text", maxlength: 255, autocomplete: "off" });
      inputs.content = el("textarea", { id: `${id}-content`, name: "content", rows: 3, maxlength: 100000 });
      inputs.start = el("input", { id: `${id}-start`, name: "start_at", type: "datetime-local" });
      return [
        el("p", { class: "hint" }, t("card_event_hint")),
        action.field("type_code", t("card_event_type"), inputs.type),
        inputs.noTypes,
        action.field("subject", t("card_event_subject"), inputs.subject),
        action.field("content", t("card_event_content"), inputs.content),
        action.field("start_at", t("card_event_time"), inputs.start),
      ];
    },
    fill() {
      inputs.subject.value = "";
      inputs.content.value = view.comment();
      inputs.start.value = toInputValue(new Date().toISOString());
    },
    read() {
      const errors = {};
      if (!inputs.type.value) errors.type_code = t("card_type_needed");
      if (!inputs.start.value) errors.start_at = t("card_time_needed");
      if (Object.keys(errors).length) return { errors };
      const party = callParty(view);
      const event = {
        type_code: inputs.type.value,
        subject: inputs.subject.value.trim(),
        content: inputs.content.value,
        start_at: fromInputValue(inputs.start.value),
        contact_id: party.contactId,
        phone: party.phone,
      };
      return { path: "/api/events", body: withoutEmpty(event), typeName: inputs.type.selectedOptions[0]?.textContent };
    },
    made(event, headers, request) {
      return madeLink(t("card_event_added"), `/events?id=${encodeURIComponent(event.id)}`, event.subject || request.typeName || event.type_code);
    },
  };
}

// --- a personal reminder --------------------------------------------------------------------------

function reminderPart(view) {
  const id = `${view.id}-remind`;
  const inputs = {};
  const labels = {
    "15m": () => t("card_remind_in_minutes", { total: 15 }),
    "1h": () => t("card_remind_in_hours", { total: 1 }),
    tomorrow: () => t("card_remind_tomorrow", { time: timeOfDay(tomorrowAt(TOMORROW_HOUR)) }),
    at: () => t("card_remind_chosen"),
  };
  const when = {
    "15m": () => new Date(Date.now() + 15 * 60_000),
    "1h": () => new Date(Date.now() + HOUR),
    tomorrow: () => tomorrowAt(TOMORROW_HOUR),
    at: () => (inputs.at.value ? new Date(fromInputValue(inputs.at.value)) : null),
  };
  const chosen = () => inputs.choices.find((radio) => radio.checked)?.value || "15m";
  const showChosen = () => {
    inputs.at.disabled = chosen() !== "at";
  };
  return {
    id,
    label: t("card_remind_new"),
    submitLabel: t("card_remind_submit"),
    formKey: `card-remind:${view.card.call_id}`,
    build(action) {
      inputs.choices = REMIND_CHOICES.map((value) =>
        el("input", { type: "radio", name: "when", value, id: `${id}-${value}`, checked: value === "15m" }),
      );
      inputs.at = el("input", { id: `${id}-at`, name: "at", type: "datetime-local", "aria-label": t("card_remind_time"), disabled: true });
      inputs.text = el("input", { id: `${id}-text`, name: "text", type: "text", maxlength: 500, autocomplete: "off" });
      const error = el("p", { class: "field-error", id: `${id}-when-error` });
      inputs.at.setAttribute("aria-describedby", error.id);
      action.fields.set("remind_at", { input: inputs.at, error });
      action.fields.set("end_at", { input: inputs.at, error }); // the task is due at the reminder
      const choices = inputs.choices.map((radio) => el("label", { class: "choice", for: radio.id }, radio, " ", labels[radio.value]()));
      const fieldset = el("fieldset", {}, el("legend", {}, t("card_remind_when")), ...choices, inputs.at, error);
      fieldset.addEventListener("change", (event) => {
        showChosen();
        if (event.target.value === "at" && event.target.checked) inputs.at.focus();
      });
      return [
        el("p", { class: "hint" }, t("card_remind_hint")),
        fieldset,
        action.field("name", t("card_remind_text"), inputs.text),
      ];
    },
    fill() {
      inputs.text.value = t("card_task_default_name", { who: who(view) });
      inputs.choices[0].checked = true;
      inputs.at.value = toInputValue(new Date(Date.now() + HOUR).toISOString());
      showChosen();
    },
    read() {
      const errors = {};
      const text = inputs.text.value.trim();
      if (!text) errors.name = t("card_name_needed");
      const at = when[chosen()]();
      if (!at) errors.remind_at = t("card_time_needed");
      else if (at.getTime() <= Date.now()) errors.remind_at = t("card_time_past");
      if (Object.keys(errors).length) return { errors };
      const party = callParty(view);
      const task = {
        name: text,
        end_at: at.toISOString(),
        remind_at: at.toISOString(),
        executor_ids: [employeeId],
        contact_id: party.contactId,
        phone: party.phone,
      };
      return { path: `/api/tasks/from-call/${encodeURIComponent(view.card.call_id)}`, body: withoutEmpty(task), at };
    },
    made(task, headers, request) {
      return madeLink(t("card_remind_set", { time: dateTime(request.at) }), `/tasks?id=${encodeURIComponent(task.id)}`, task.name);
    },
  };
}

function withoutEmpty(values) {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== null && value !== undefined && value !== ""));
}
