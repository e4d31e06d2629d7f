// Service tickets: the register (filter by status and product) and one ticket with its workflow
// buttons and notes. The buttons are the moves crm allows now (`allowed_next`), shown only to users
// with the right to modify tickets; crm decides anyway (403, and 409 when the ticket changed).
import { PagedTable, api, el, formatDateTime, restoreForm, t } from "./common.js";
import { phoneNumber } from "./calling.js"; // and the live calls bar (hang up, hold, transfer)

const canModify = document.body.dataset.canModifyTicket === "true";

function announce(text) {
  const announcer = document.getElementById("announcer");
  announcer.textContent = "";
  setTimeout(() => {
    announcer.textContent = text;
  }, 50);
}

function statusLabel(status) {
  return t(`ticket_status_${status}`);
}

let table = null;

function setUpList(show) {
  const form = document.getElementById("ticket-filters");
  table = new PagedTable({
    prefix: "tickets",
    path: "/api/tickets",
    totalKey: "total_tickets",
    emptyKey: "no_tickets",
    params: () => ({ status: form.elements.status.value, product: form.elements.product.value.trim() }),
    columns: [
      (ticket) => {
        const link = el("a", { href: `/tickets?id=${encodeURIComponent(ticket.id)}`, class: "ticket-link" }, ticket.code);
        link.addEventListener("click", (event) => {
          event.preventDefault();
          history.pushState(null, "", link.href);
          show(ticket.id);
        });
        return link;
      },
      (ticket) => ticket.ticket_date,
      (ticket) => ticket.product,
      (ticket) => ticket.description,
      (ticket) => t(`priority_${ticket.priority}`),
      (ticket) => el("span", { class: `status status-${ticket.status}` }, statusLabel(ticket.status)),
    ],
  });
  restoreForm(form);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    table.reset();
  });
  table.reset();
}

function setUpDetail() {
  const section = document.getElementById("ticket-detail");
  const title = document.getElementById("ticket-title");
  const statusText = document.getElementById("ticket-status-text");
  const description = document.getElementById("ticket-description");
  const client = document.getElementById("ticket-client");
  const actions = document.getElementById("ticket-actions");
  const notes = document.getElementById("ticket-notes");
  const noteForm = document.getElementById("ticket-note-form");
  let current = null;

  function render(ticket) {
    current = ticket;
    section.hidden = false;
    section.dataset.ticketId = ticket.id;
    section.dataset.status = ticket.status;
    title.textContent = `${ticket.code} · ${ticket.product || ""}`.replace(/ · $/, "");
    statusText.textContent = t("ticket_status_is", { status: statusLabel(ticket.status) });
    description.textContent = ticket.description;
    showClient(ticket);
    const buttons = canModify
      ? ticket.allowed_next.map((next) => {
          const button = el("button", { type: "button", dataset: { status: next } }, t(`ticket_move_${next}`));
          button.addEventListener("click", () => move(next, buttons));
          return button;
        })
      : [];
    actions.replaceChildren(...buttons);
  }

  /** The client's name and numbers, each with its Call button (the call is attached to the ticket). */
  async function showClient(ticket) {
    client.replaceChildren();
    let contact;
    try {
      ({ body: contact } = await api(`/api/contacts/${encodeURIComponent(ticket.client_id)}`));
    } catch {
      return; // not visible to this user, or gone: the ticket still shows
    }
    if (current?.id !== ticket.id) return; // another ticket was opened meanwhile
    const context = { ticket_id: ticket.id, contact_id: ticket.client_id };
    const numbers = (contact.phones || []).map((phone) => phone.number || phone.e164 || "").filter(Boolean);
    client.append(
      el("a", { href: `/contacts?id=${encodeURIComponent(ticket.client_id)}` }, contact.name || ticket.client_id),
      ...numbers.flatMap((number) => [" ", phoneNumber(number, context)]),
    );
  }

  async function move(status, buttons) {
    // One move at a time: a double click does not send the same move twice.
    for (const button of buttons) button.disabled = true;
    try {
      const { body: ticket } = await api(`/api/tickets/${encodeURIComponent(current.id)}/status`, {
        method: "POST",
        body: { status, version: current.version },
      });
      render(ticket);
      announce(t("ticket_status_is", { status: statusLabel(ticket.status) }));
      await Promise.all([loadNotes(ticket.id), table.go(table.page)]);
    } catch (error) {
      if (error.status === 401) return;
      announce(error.message);
      statusText.textContent = error.message;
      if (error.status === 409) await show(current.id, { keepMessage: true });
      else for (const button of buttons) button.disabled = false;
    }
  }

  async function loadNotes(id) {
    const { body: items } = await api(`/api/tickets/${encodeURIComponent(id)}/notes`);
    notes.replaceChildren(
      ...items.map((note) =>
        el(
          "li",
          {},
          el("p", { class: "note-meta" }, note.author_name, " · ", el("time", { datetime: note.created_at }, formatDateTime(note.created_at))),
          el("p", { class: "note-text" }, note.text),
        ),
      ),
    );
    if (!items.length) notes.replaceChildren(el("li", { class: "muted" }, t("ticket_no_notes")));
  }

  async function show(id, { keepMessage = false } = {}) {
    const message = statusText.textContent;
    try {
      const { body: ticket } = await api(`/api/tickets/${encodeURIComponent(id)}`);
      render(ticket);
      if (keepMessage) statusText.textContent = `${message} ${t("ticket_status_is", { status: statusLabel(ticket.status) })}`;
      else title.focus();
      await loadNotes(id);
    } catch (error) {
      if (error.status === 401) return;
      section.hidden = false;
      title.textContent = t("load_failed", { error: error.message });
    }
  }

  if (noteForm) {
    restoreForm(noteForm);
    noteForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const submit = noteForm.querySelector("button[type=submit]");
      const text = noteForm.elements.text.value.trim();
      if (!text || !current) return;
      submit.disabled = true;
      try {
        await api(`/api/tickets/${encodeURIComponent(current.id)}/notes`, { method: "POST", body: { text } });
        noteForm.reset();
        await loadNotes(current.id);
      } catch (error) {
        if (error.status !== 401) announce(error.message);
      } finally {
        submit.disabled = false;
      }
    });
  }
  return show;
}

const show = setUpDetail();
setUpList(show);
const chosen = new URLSearchParams(location.search).get("id");
if (chosen) show(chosen);
window.addEventListener("popstate", () => {
  const id = new URLSearchParams(location.search).get("id");
  if (id) show(id);
  else document.getElementById("ticket-detail").hidden = true;
});
