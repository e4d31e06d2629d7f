// The events journal: crm's events (calls the call log journaled, visits, letters...) filtered by
// type, contact and period, one event's form to read or change it, and a new event. A change sends
// the version it was made on: when someone changed the event meanwhile, crm refuses (409) and the
// form shows the event as it is now.
import { PagedTable, api, el, restoreForm, t, timeZone } from "./common.js";
import { fromInputValue, toInputValue } from "./calendar.js";
import { phoneNumber } from "./calling.js";
import { announce, contactName, contactPicker, employeeName, named, when } from "./work.js";

const canCreate = document.body.dataset.canCreate === "true";
const canModify = document.body.dataset.canModify === "true";
let types = new Map(); // code -> type

function typeName(code) {
  return types.get(code)?.name || code;
}

async function loadTypes() {
  try {
    const { body: items } = await api("/api/event-types");
    types = new Map(items.map((type) => [type.code, type]));
  } catch (error) {
    if (error.status !== 401) announce(error.message);
  }
  const options = () => [...types.values()].filter((type) => type.active).map((type) => el("option", { value: type.code }, type.name));
  document.getElementById("event-type-filter").append(...options());
  document.getElementById("event-type").append(...options());
}

function setUpList(show) {
  const form = document.getElementById("event-filters");
  const contact = contactPicker(form.elements.contact, document.getElementById("event-contact-filter-options"));
  const table = new PagedTable({
    prefix: "events",
    path: "/api/events",
    totalKey: "journal_total",
    emptyKey: "journal_none_found",
    params: () => ({
      type: form.elements.type.value,
      contact_id: contact.id() || "",
      phone: form.elements.phone.value.trim(),
      from_date: form.elements.from_date.value,
      to_date: form.elements.to_date.value,
      tz: timeZone(),
      q: form.elements.q.value.trim(),
    }),
    columns: [
      (event) => {
        const link = el("a", { href: `/events?id=${encodeURIComponent(event.id)}`, class: "event-link" }, when(event.start_at));
        link.addEventListener("click", (click) => {
          click.preventDefault();
          history.pushState(null, "", link.href);
          show(event.id);
        });
        return link;
      },
      (event) => typeName(event.type_code),
      (event) => event.subject || "",
      (event) => {
        const context = event.contact_id ? { contact_id: event.contact_id } : {};
        const who = event.contact_id ? named(contactName, event.contact_id) : "";
        if (!event.phone) return who;
        return el("span", {}, who, who ? " " : "", phoneNumber(event.phone, context));
      },
      (event) => (event.direction ? t(`direction_${event.direction}`) : ""),
      (event) => (event.responsible_employee_id ? named(employeeName, event.responsible_employee_id) : ""),
    ],
  });
  restoreForm(form);
  form.addEventListener("submit", (submit) => {
    submit.preventDefault();
    if (contact.id() === null) {
      document.getElementById("events-total").textContent = t("tasks_pick_contact");
      return;
    }
    table.reset();
  });
  form.addEventListener("reset", () => setTimeout(() => table.reset(), 0));
  return table;
}

function setUpDetail(onSaved) {
  const section = document.getElementById("event-detail");
  const title = document.getElementById("event-title");
  const meta = document.getElementById("event-meta");
  const form = document.getElementById("event-form");
  const status = document.getElementById("event-form-status");
  const save = document.getElementById("event-save");
  const makeTask = document.getElementById("event-make-task");
  const contact = contactPicker(form.elements.contact, document.getElementById("event-contact-options"));
  let current = null;
  let key = null;
  let initial = {};

  function read(contactId) {
    return {
      type_code: form.elements.type_code.value,
      start_at: fromInputValue(form.elements.start_at.value),
      end_at: fromInputValue(form.elements.end_at.value),
      subject: form.elements.subject.value.trim() || null,
      content: form.elements.content.value || null,
      contact_id: contactId || null,
      phone: form.elements.phone.value.trim() || null,
      direction: form.elements.direction.value || null,
    };
  }

  /** Only what the user changed: a call's event keeps following the call log in the rest. */
  function changed(fields) {
    return Object.fromEntries(Object.entries(fields).filter(([name, value]) => value !== initial[name]));
  }

  function fill(event) {
    current = event;
    key = event ? null : crypto.randomUUID();
    section.hidden = false;
    status.textContent = "";
    form.reset();
    const editable = event ? canModify && !event.archived : canCreate;
    for (const field of form.elements) field.disabled = !editable;
    save.hidden = !editable;
    if (!event) {
      title.textContent = t("journal_new");
      meta.textContent = "";
      section.dataset.eventId = "";
      form.elements.type_code.value = types.has("call") ? "call" : form.elements.type_code.value;
      contact.set("", "");
      if (makeTask) makeTask.hidden = true;
      return;
    }
    section.dataset.eventId = event.id;
    title.textContent = [typeName(event.type_code), event.subject].filter(Boolean).join(" · ");
    meta.replaceChildren(
      when(event.start_at),
      event.source === "calls" ? ` · ${t("journal_from_call_log")}` : "",
      event.disposition ? ` · ${t(`disposition_${event.disposition}`)}` : "",
    );
    if (!types.has(event.type_code)) form.elements.type_code.append(el("option", { value: event.type_code }, event.type_code));
    form.elements.type_code.value = event.type_code;
    form.elements.start_at.value = toInputValue(event.start_at);
    form.elements.end_at.value = toInputValue(event.end_at);
    form.elements.subject.value = event.subject || "";
    form.elements.content.value = event.content || "";
    form.elements.phone.value = event.phone || "";
    form.elements.direction.value = event.direction || "";
    contact.set("", "");
    initial = read(event.contact_id);
    if (event.contact_id) contactName(event.contact_id).then((name) => contact.set(event.contact_id, name));
    if (makeTask) {
      const params = new URLSearchParams({ new: "1" });
      if (event.contact_id) params.set("contact_id", event.contact_id);
      if (event.project_id) params.set("project_id", event.project_id);
      makeTask.href = `/tasks?${params}`;
      makeTask.hidden = false;
    }
  }

  async function show(id, { keepStatus = false } = {}) {
    const said = status.textContent;
    try {
      const { body: event } = await api(`/api/events/${encodeURIComponent(id)}`);
      fill(event);
      if (keepStatus) status.textContent = said;
      else title.focus();
    } catch (error) {
      if (error.status === 401) return;
      section.hidden = false;
      title.textContent = t("load_failed", { error: error.message });
    }
  }

  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const contactId = contact.id();
    if (contactId === null) {
      status.textContent = t("tasks_pick_contact");
      form.elements.contact.focus();
      return;
    }
    const fields = read(contactId);
    save.disabled = true;
    status.textContent = t("tasks_saving");
    try {
      let event;
      if (current) {
        ({ body: event } = await api(`/api/events/${encodeURIComponent(current.id)}`, {
          method: "PATCH",
          body: { ...changed(fields), version: current.version },
        }));
      } else {
        const draft = Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== null));
        ({ body: event } = await api("/api/events", { method: "POST", body: draft, headers: { "Idempotency-Key": key } }));
        history.pushState(null, "", `/events?id=${encodeURIComponent(event.id)}`);
      }
      fill(event);
      status.textContent = t("tasks_saved");
      announce(t("tasks_saved"));
      await onSaved();
    } catch (error) {
      if (error.status === 401) return;
      if (error.status === 409 && current) {
        status.textContent = t("journal_conflict");
        await show(current.id, { keepStatus: true });
      } else {
        status.textContent = error.message;
      }
    } finally {
      save.disabled = false;
    }
  });
  return { show, fill };
}

let table = null;
const detail = setUpDetail(() => table.go(table.page));
table = setUpList(detail.show);
document.getElementById("new-event")?.addEventListener("click", () => {
  history.pushState(null, "", "/events");
  detail.fill(null);
  document.getElementById("event-title").focus();
});
await loadTypes();
table.reset();
const chosen = new URLSearchParams(location.search).get("id");
if (chosen) detail.show(chosen);
window.addEventListener("popstate", () => {
  const id = new URLSearchParams(location.search).get("id");
  if (id) detail.show(id);
  else document.getElementById("event-detail").hidden = true;
});
