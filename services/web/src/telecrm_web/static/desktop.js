// The agent desktop: preferences, the call log, missed calls, and live screen-pop cards.
import {
  PagedTable,
  api,
  callNotes,
  callResult,
  queryString,
  ApiError,
  el,
  formatDateTime,
  formatDuration,
  formatNumber,
  restoreForm,
  sessionEnded,
  t,
  timeZone,
} from "./common.js";
import { missedColumns, partyCell, phoneNumber, refreshLiveCalls, setUpWhoIsIt } from "./calling.js";
import { recordingControl } from "./recordings.js";
import { cardActions } from "./card-actions.js";

const body = document.body;
const employeeId = body.dataset.employeeId || "";
const canCreateContact = body.dataset.canCreateContact === "true";
const canModifyContact = body.dataset.canModifyContact === "true";

// --- preferences ------------------------------------------------------------------------------

function setUpPreferences() {
  const languageSelect = document.getElementById("pref-language");
  languageSelect.addEventListener("change", async () => {
    await savePreference({ language: languageSelect.value });
  });
  const zoneSelect = document.getElementById("pref-time-zone");
  const current = timeZone();
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  if (!zones.includes(current)) zones.unshift(current);
  for (const zone of zones) zoneSelect.append(el("option", { value: zone, selected: zone === current }, zone));
  zoneSelect.addEventListener("change", async () => {
    await savePreference({ time_zone: zoneSelect.value });
  });
}

async function savePreference(values) {
  try {
    await api("/api/preferences", { method: "PUT", body: values });
    location.reload();
  } catch (error) {
    if (error.status !== 401) announce(error.message);
  }
}

function announce(text) {
  const announcer = document.getElementById("announcer");
  announcer.textContent = "";
  // A new text node a moment later is read out even when the text repeats.
  setTimeout(() => {
    announcer.textContent = text;
  }, 50);
}

function setUpCallLog() {
  const form = document.getElementById("call-filters");
  const scope = form.elements.scope;
  const table = new PagedTable({
    prefix: "calls",
    path: "/api/calls",
    totalKey: "total_calls",
    emptyKey: "no_calls",
    params: () => ({
      number: form.elements.number.value.trim(),
      from_date: form.elements.from_date.value,
      to_date: form.elements.to_date.value,
      tz: timeZone(),
      scope: scope.value,
      direction: form.elements.direction.value,
      disposition: form.elements.disposition.value,
    }),
    columns: [
      (call) => el("time", { datetime: call.started_at }, formatDateTime(call.started_at)),
      (call) => (call.direction ? t(`direction_${call.direction}`) : ""),
      (call) => partyCell(call.caller),
      (call) => partyCell(call.callee),
      (call) => call.extension || "",
      (call) => callResult(call),
      (call) => [formatDuration(call.talk_seconds), recordingControl(call)],
      (call) => callNotes(call),
    ],
  });
  restoreForm(form);
  const exportLink = document.getElementById("calls-export");
  const refresh = () => {
    // The CSV has the filters on the screen (the whole result, streamed; not only this page).
    exportLink.href = `/api/calls/export.csv?${queryString(table.params())}`;
    return table.reset();
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    refresh();
  });
  form.addEventListener("reset", () => setTimeout(refresh, 0));
  refresh();
  return table;
}

function setUpMissed() {
  const table = new PagedTable({
    prefix: "missed",
    path: "/api/missed-calls",
    totalKey: "total_missed",
    emptyKey: "no_missed",
    params: () => ({ state: "open" }),
    columns: missedColumns,
  });
  table.reset();
  return table;
}

// --- screen pops ------------------------------------------------------------------------------

const DISMISSED = "telecrm:dismissed-cards";
const dismissed = new Set(JSON.parse(sessionStorage.getItem(DISMISSED) || "[]"));
let notesOptions = null;

function noteOptions() {
  notesOptions ??= api("/api/notes/options")
    .then(({ body: data }) => data)
    .catch(() => ({ reasons: [], results: [], max_lengths: { reason: 200, result: 200, comment: 4000 } }));
  return notesOptions;
}

/** The cards on the page, by call id. */
const cards = new Map();

function onCard(card) {
  refreshLiveCalls();
  if (dismissed.has(card.call_id)) return;
  const shown = cards.get(card.call_id);
  if (shown) {
    if (card.seq <= shown.card.seq) return;
    shown.update(card);
    return;
  }
  const view = new CardView(card);
  cards.set(card.call_id, view);
  document.getElementById("cards").prepend(view.node);
  document.getElementById("no-cards").hidden = true;
  if (card.state === "ringing") announce(t("new_call_announcement", { number: card.number }));
}

function dismiss(view) {
  dismissed.add(view.card.call_id);
  sessionStorage.setItem(DISMISSED, JSON.stringify([...dismissed].slice(-200)));
  cards.delete(view.card.call_id);
  const next = view.node.nextElementSibling || view.node.previousElementSibling;
  view.node.remove();
  if (!cards.size) document.getElementById("no-cards").hidden = false;
  (next?.querySelector("h3") || document.getElementById("pops-heading")).focus();
}

let cardCount = 0;

class CardView {
  constructor(card) {
    this.card = card;
    this.id = `card-${++cardCount}`;
    this.etag = null;
    this.contactKey = null;
    this.title = el("h3", { id: `${this.id}-title`, tabindex: "-1" });
    this.state = el("p", { class: "card-state" });
    const close = el("button", { type: "button", class: "close", "aria-label": t("card_close"), title: t("card_close") }, "×");
    close.addEventListener("click", () => dismiss(this));
    this.contact = el("div", { class: "card-contact" });
    this.node = el(
      "article",
      { class: "card", "aria-labelledby": `${this.id}-title`, dataset: { callId: card.call_id } },
      el("header", {}, this.title, close),
      this.state,
      card.number || card.e164 ? el("p", { class: "card-call" }, phoneNumber(card.e164 || card.number)) : null,
      this.contact,
    );
    this.node.append(this.notesForm());
    const actions = cardActions(this); // a task, an event, a reminder from the call
    if (actions) this.node.append(actions);
    this.update(card);
  }

  update(card) {
    this.card = card;
    this.node.dataset.state = card.state;
    const who = card.direction === "outbound" ? "card_call_to" : "card_call_from";
    this.title.textContent = t(who, { number: card.number || t("card_unknown") });
    const parts = [];
    if (card.state === "ringing") parts.push(t("card_ringing", { extension: card.extension }));
    else if (card.state === "answered") {
      parts.push(
        card.answered_extension && card.answered_extension !== card.extension
          ? t("card_answered_by", { extension: card.answered_extension })
          : t("card_answered"),
      );
    } else {
      const disposition = card.disposition ? t(`disposition_${card.disposition}`) : "";
      parts.push(
        card.answered_extension && card.answered_extension !== card.extension
          ? t("card_answered_by", { extension: card.answered_extension })
          : t("card_ended", { disposition }),
      );
    }
    if (card.started_at) parts.push(t("card_started", { time: formatDateTime(card.started_at) }));
    this.state.textContent = parts.join(" · ");
    const key = `${card.lookup_state}:${card.lookup ? JSON.stringify(card.lookup) : ""}:${card.missed_open}`;
    if (key !== this.contactKey) {
      this.contactKey = key;
      this.renderContact();
    }
  }

  renderContact() {
    const card = this.card;
    if (card.lookup_state === "pending") {
      this.contact.replaceChildren(el("p", { class: "muted" }, t("card_looking_up")));
      return;
    }
    if (card.lookup_state === "none" || (card.lookup_state === "failed" && !this.retried)) {
      // Nobody looked the number up for this tab yet (it opened after the ring), or it failed: ask.
      this.retried = true;
      this.contact.replaceChildren(el("p", { class: "muted" }, t("card_looking_up")));
      this.lookUp();
      return;
    }
    if (card.lookup_state === "failed") {
      const retry = el("button", { type: "button" }, t("retry"));
      retry.addEventListener("click", () => this.lookUp());
      this.contact.replaceChildren(el("p", { class: "error" }, t("card_lookup_failed"), " ", retry));
      return;
    }
    const lookup = card.lookup || {};
    const parts = [];
    if (lookup.contact && (lookup.match === "exact" || lookup.match === "suffix")) {
      parts.push(...contactDetails(lookup, card.missed_open));
    } else if (lookup.match === "ambiguous" && lookup.candidates?.length) {
      parts.push(el("p", {}, t("card_ambiguous")));
      parts.push(el("ul", { class: "candidates" }, lookup.candidates.map((c) => el("li", {}, candidateLabel(c)))));
      if (card.missed_open) parts.push(el("p", {}, t("card_open_missed", { count: card.missed_open })));
    } else {
      parts.push(el("p", { class: "unknown" }, t("card_unknown")));
      if (lookup.hidden) parts.push(el("p", { class: "muted" }, t("card_hidden", { count: lookup.hidden })));
      if (card.missed_open) parts.push(el("p", {}, t("card_open_missed", { count: card.missed_open })));
      if (canCreateContact || canModifyContact) parts.push(this.unknownForm());
    }
    if (lookup.incomplete) parts.push(el("p", { class: "muted" }, t("card_incomplete")));
    this.contact.replaceChildren(...parts);
    const form = this.contact.querySelector("form");
    if (form) restoreForm(form);
  }

  async lookUp() {
    const number = this.card.e164 || this.card.number;
    if (!number) {
      this.update({ ...this.card, lookup_state: "done", lookup: { match: "none", candidates: [] } });
      return;
    }
    try {
      const { body: lookup } = await api("/api/lookup", { params: { number } });
      this.update({ ...this.card, lookup_state: "done", lookup });
    } catch (error) {
      if (error.status === 401) return;
      this.retried = true;
      this.update({ ...this.card, lookup_state: "failed", lookup: null });
    }
  }

  // The form of an unknown number: a new person or company with the number filled in, or the number
  // added to a contact there is already.
  unknownForm() {
    const id = this.id;
    const choices = [];
    if (canCreateContact) choices.push(["person", t("new_person")], ["company", t("new_company")]);
    if (canModifyContact) choices.push(["existing", t("add_existing")]);
    const form = el("form", { class: "unknown-form", dataset: { formKey: `contact:${this.card.call_id}` } });
    const legend = el("legend", {}, t("contact_kind"));
    const radios = choices.map(([value, label], index) =>
      el(
        "label",
        { class: "choice" },
        el("input", { type: "radio", name: "kind", value, checked: index === 0 }),
        " ",
        label,
      ),
    );
    const nameLabel = el("label", { for: `${id}-name` }, t("contact_name"));
    const name = el("input", { id: `${id}-name`, name: "name", type: "text", maxlength: 200, autocomplete: "off" });
    const number = el("input", {
      id: `${id}-number`,
      name: "number",
      type: "tel",
      maxlength: 64,
      value: this.card.number || this.card.e164 || "",
      required: true,
    });
    const phoneKind = el(
      "select",
      { id: `${id}-phone-kind`, name: "phone_kind" },
      ["mobile", "work", "home", "fax", "other"].map((kind) => el("option", { value: kind }, t(`phone_${kind}`))),
    );
    const create = el("button", { type: "submit" }, t("create_contact"));
    const newFields = el(
      "div",
      { class: "new-fields" },
      nameLabel,
      name,
      el("label", { for: `${id}-number` }, t("phone_number")),
      number,
      el("label", { for: `${id}-phone-kind` }, t("phone_kind")),
      phoneKind,
      create,
    );
    const query = el("input", { id: `${id}-query`, name: "query", type: "search", maxlength: 200, autocomplete: "off" });
    const search = el("button", { type: "button" }, t("search_button"));
    const results = el("ul", { class: "search-results", "aria-live": "polite" });
    const existingFields = el(
      "div",
      { class: "existing-fields" },
      el("label", { for: `${id}-query` }, t("search_contact")),
      el("div", { class: "inline" }, query, search),
      results,
    );
    const status = el("p", { class: "form-status", role: "status" });
    form.append(el("fieldset", {}, legend, ...radios), newFields, existingFields, status);

    const showKind = () => {
      const kind = form.elements.kind?.value || form.querySelector('input[name="kind"]:checked')?.value;
      const existing = kind === "existing";
      newFields.hidden = existing;
      existingFields.hidden = !existing;
      nameLabel.textContent = kind === "company" ? t("company_name") : t("contact_name");
      if (kind === "company" && phoneKind.value === "mobile") phoneKind.value = "work";
      if (kind === "person" && phoneKind.value === "work") phoneKind.value = "mobile";
    };
    form.addEventListener("change", (event) => {
      if (event.target.name === "kind") showKind();
    });
    showKind();

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const kind = form.querySelector('input[name="kind"]:checked')?.value;
      if (kind === "existing") return search.click();
      create.disabled = true;
      status.textContent = "";
      const phone = { number: number.value.trim(), kind: phoneKind.value };
      try {
        await api("/api/contacts", {
          method: "POST",
          body: { kind, name: name.value.trim() || phone.number, phones: [phone] },
          headers: { "Idempotency-Key": `${this.card.call_id}:${kind}:${phone.number}`.slice(0, 100) },
        });
        status.textContent = t("contact_created");
        announce(t("contact_created"));
        await this.lookUp();
      } catch (error) {
        if (error.status === 401) return;
        status.textContent = duplicateMessage(error) || error.message;
      } finally {
        create.disabled = false;
      }
    });

    const runSearch = async () => {
      const q = query.value.trim();
      if (!q) return;
      results.replaceChildren(el("li", { class: "muted" }, t("loading")));
      try {
        const { body: page } = await api("/api/contacts", { params: { q, limit: 10 } });
        const items = page.items.map((contact) => {
          const add = el("button", { type: "button" }, t("add_number", { name: contact.name }));
          add.addEventListener("click", () => this.addNumber(contact, number.value.trim(), phoneKind.value, status));
          return el("li", {}, add);
        });
        results.replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, t("search_none"))]));
      } catch (error) {
        if (error.status === 401) return;
        results.replaceChildren(el("li", { class: "error" }, error.message));
      }
    };
    search.addEventListener("click", runSearch);
    query.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        runSearch();
      }
    });
    return form;
  }

  async addNumber(contact, numberText, kind, status) {
    try {
      await api(`/api/contacts/${encodeURIComponent(contact.id)}/phones`, {
        method: "POST",
        body: { number: numberText, kind },
      });
      status.textContent = t("number_added", { name: contact.name });
      announce(status.textContent);
      await this.lookUp();
    } catch (error) {
      if (error.status === 401) return;
      status.textContent = duplicateMessage(error) || error.message;
    }
  }

  /** What the call registration's comment says so far (an event from the call starts with it). */
  comment() {
    return this.node.querySelector(".notes-form textarea[name=comment]")?.value.trim() || "";
  }

  // The call registration: reason, result and comment, saved on the call (If-Match: its version).
  notesForm() {
    const id = this.id;
    const form = el("form", { class: "notes-form", dataset: { formKey: `notes:${this.card.call_id}` } });
    const status = el("p", { class: "form-status", role: "status" });
    const save = el("button", { type: "submit" }, t("notes_save"));
    form.append(el("h4", {}, t("notes_heading")));
    noteOptions().then((options) => {
      const field = (name, choices, maxLength) => {
        const label = el("label", { for: `${id}-${name}` }, t(`notes_${name}`));
        if (choices?.length) {
          return [label, el("select", { id: `${id}-${name}`, name }, el("option", { value: "" }, "—"), choices.map((c) => el("option", { value: c }, c)))];
        }
        return [label, el("input", { id: `${id}-${name}`, name, type: "text", maxlength: maxLength })];
      };
      const lengths = options.max_lengths || {};
      form.append(
        ...field("reason", options.reasons, lengths.reason || 200),
        ...field("result", options.results, lengths.result || 200),
        el("label", { for: `${id}-comment` }, t("notes_comment")),
        el("textarea", { id: `${id}-comment`, name: "comment", rows: 3, maxlength: lengths.comment || 4000 }),
        save,
        status,
      );
      restoreForm(form);
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      save.disabled = true;
      status.textContent = "";
      try {
        await this.saveNotes(form, status);
      } finally {
        save.disabled = false;
      }
    });
    return form;
  }

  async saveNotes(form, status) {
    const path = `/api/calls/${encodeURIComponent(this.card.call_id)}/notes`;
    const value = (name) => form.elements[name].value.trim() || null;
    const notes = { reason: value("reason"), result: value("result"), comment: value("comment") };
    const contactId = this.card.lookup?.contact?.contact_id;
    if (contactId) notes.contact_id = contactId;
    try {
      if (!this.etag) {
        const { headers } = await api(path);
        this.etag = headers.get("ETag");
      }
      const { headers } = await api(path, {
        method: "PATCH",
        body: notes,
        headers: this.etag ? { "If-Match": this.etag } : {},
      });
      this.etag = headers.get("ETag");
      status.textContent = t("notes_saved");
    } catch (error) {
      if (error.status === 401) return;
      if (error.status === 412) {
        const { body: theirs, headers } = await api(path);
        this.etag = headers.get("ETag");
        for (const name of ["reason", "result", "comment"]) form.elements[name].value = theirs[name] || "";
        status.textContent = t("notes_conflict");
      } else if (error.status === 404) {
        status.textContent = t("notes_call_not_logged");
      } else {
        status.textContent = error.message;
      }
    }
  }
}

function candidateLabel(contact) {
  return [contact.name, contact.company_name].filter(Boolean).join(" — ");
}

function duplicateMessage(error) {
  const duplicates = error instanceof ApiError && error.status === 409 ? error.body?.detail?.duplicates : null;
  if (!duplicates?.length) return null;
  const names = duplicates.map((d) => d.name || d.number).join(", ");
  return t("duplicate_number", { names });
}

function contactDetails(lookup, missedOpen) {
  const c = lookup.contact;
  const parts = [el("p", { class: "contact-name" }, c.name)];
  const facts = el("dl", { class: "facts" });
  if (c.company_name && c.kind !== "company") facts.append(el("dt", {}, t("card_company")), el("dd", {}, c.company_name));
  if (c.responsible_employee_name || c.responsible_employee_id) {
    const who = c.responsible_employee_name || c.responsible_employee_id;
    const ext = c.responsible_extension ? ` (${t("extension_label", { extension: c.responsible_extension })})` : "";
    facts.append(el("dt", {}, t("card_responsible")), el("dd", {}, who + ext));
  }
  if (facts.children.length) parts.push(facts);
  if (missedOpen) parts.push(el("p", { class: "missed-open" }, t("card_open_missed", { count: missedOpen })));
  parts.push(el("h4", {}, t("card_open_tasks")));
  if (lookup.open_tasks?.length) {
    const list = el(
      "ul",
      { class: "tasks" },
      lookup.open_tasks.map((task) =>
        el("li", {}, task.title, " ", el("span", { class: "muted" }, [task.status, task.due_at ? formatDateTime(task.due_at) : ""].filter(Boolean).join(" · "))),
      ),
    );
    parts.push(list);
    const more = lookup.open_tasks_total - lookup.open_tasks.length;
    if (more > 0) parts.push(el("p", { class: "muted" }, t("card_more_tasks", { count: more })));
  } else {
    parts.push(el("p", { class: "muted" }, t("card_no_tasks")));
  }
  parts.push(el("h4", {}, t("card_last_calls")));
  const calls = lookup.calls;
  if (calls?.recent?.length) {
    parts.push(el("p", { class: "muted" }, t("card_calls_summary", { total: calls.total, missed: calls.missed })));
    parts.push(
      el(
        "ul",
        { class: "recent-calls" },
        calls.recent.map((call) =>
          el(
            "li",
            {},
            el("time", { datetime: call.started_at }, formatDateTime(call.started_at)),
            " · ",
            t(`direction_${call.direction}`),
            " · ",
            callResult(call), // a call still ringing or talking has its state, not a disposition
            call.talk_seconds ? ` · ${formatDuration(call.talk_seconds)}` : "",
          ),
        ),
      ),
    );
  } else {
    parts.push(el("p", { class: "muted" }, t("card_no_calls")));
  }
  return parts;
}

// --- the live connection ----------------------------------------------------------------------

/**
 * The WebSocket of screen pops: reconnects with backoff and asks for what it missed meanwhile (the
 * cards that changed after the last one it saw; all of them when the server restarted, and at the
 * first connection of a page, which has no card yet).
 */
class Live {
  constructor(onCard) {
    this.onCard = onCard;
    this.status = document.getElementById("live-status");
    this.attempt = 0;
    this.socket = null;
    this.boot = "";
    this.seq = 0;
    this.lastMessage = Date.now();
    this.pingInterval = 20000;
    setInterval(() => this.watch(), 5000);
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = `boot=${encodeURIComponent(this.boot)}&after=${this.seq}`;
    const socket = new WebSocket(`${scheme}//${location.host}/api/live?${query}`);
    this.socket = socket;
    this.lastMessage = Date.now();
    socket.addEventListener("message", (event) => this.receive(JSON.parse(event.data)));
    socket.addEventListener("close", (event) => this.closed(socket, event.code));
  }

  receive(message) {
    this.lastMessage = Date.now();
    if (message.type === "hello") {
      this.attempt = 0;
      if (message.ping_interval) this.pingInterval = message.ping_interval * 1000;
      if (message.boot !== this.boot) {
        this.boot = message.boot;
        this.seq = 0;
      }
      this.status.textContent = t("live_connected");
      this.status.dataset.state = "connected";
    } else if (message.type === "card") {
      if (message.card.seq > this.seq) this.seq = message.card.seq;
      this.onCard(message.card);
    }
  }

  closed(socket, code) {
    if (socket !== this.socket) return;
    this.socket = null;
    if (code === 4401) {
      sessionEnded();
      return;
    }
    this.status.textContent = t("live_reconnecting");
    this.status.dataset.state = "reconnecting";
    const delay = Math.min(30000, 500 * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
    this.attempt += 1;
    setTimeout(() => this.connect(), delay);
  }

  watch() {
    // Nothing heard for over two pings: the connection is dead without having said so.
    if (this.socket && Date.now() - this.lastMessage > 2.5 * this.pingInterval) this.socket.close();
  }
}

// --- start ------------------------------------------------------------------------------------

setUpPreferences();
setUpCallLog();
setUpMissed();
setUpWhoIsIt((calls) =>
  el(
    "ul",
    { class: "who-calls" },
    calls.map((call) =>
      el(
        "li",
        {},
        el("time", { datetime: call.started_at }, formatDateTime(call.started_at)),
        " · ",
        call.direction ? t(`direction_${call.direction}`) : "",
        " · ",
        callResult(call),
        call.talk_seconds ? ` · ${formatDuration(call.talk_seconds)}` : "",
      ),
    ),
  ),
);
if (employeeId) {
  new Live(onCard).connect();
} else {
  const status = document.getElementById("live-status");
  status.textContent = "";
}
window.addEventListener("pageshow", (event) => {
  if (event.persisted) location.reload(); // back/forward cache: the session may have changed
});
