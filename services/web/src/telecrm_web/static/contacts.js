// The contacts page: find contacts by name or number, and one contact with its calls.
import { PagedTable, api, callNotes, callResult, el, formatDateTime, restoreForm, t } from "./common.js";
import { partyCell, phoneNumber } from "./calling.js";
import { recordingControl } from "./recordings.js";

/** The contact's numbers, each with its "Call" button ("" when there is none). */
function phones(contact) {
  const numbers = (contact.phones || []).map((phone) => phone.number || phone.e164 || "").filter(Boolean);
  if (!numbers.length) return "";
  const context = { contact_id: contact.id };
  return el("span", { class: "phones" }, numbers.flatMap((n, i) => (i ? [", ", phoneNumber(n, context)] : [phoneNumber(n, context)])));
}

function setUpList(show) {
  const form = document.getElementById("contact-search");
  const table = new PagedTable({
    prefix: "contacts",
    path: "/api/contacts",
    totalKey: "total_contacts",
    emptyKey: "no_contacts",
    params: () => ({ q: form.elements.q.value.trim(), kind: form.elements.kind.value }),
    columns: [
      (contact) => {
        const link = el("a", { href: `/contacts?id=${encodeURIComponent(contact.id)}`, class: "contact-link" }, contact.name);
        link.addEventListener("click", (event) => {
          event.preventDefault();
          history.pushState(null, "", link.href);
          show(contact.id);
        });
        return link;
      },
      (contact) => t(`kind_${contact.kind}`),
      (contact) => phones(contact),
      (contact) => (contact.emails || []).join(", "),
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
  const section = document.getElementById("contact-detail");
  const title = document.getElementById("contact-title");
  const fields = document.getElementById("contact-fields");
  let contactId = null;
  const calls = new PagedTable({
    prefix: "contact-calls",
    path: "/api/calls",
    totalKey: "total_calls",
    emptyKey: "no_calls",
    params: () => ({ contact_id: contactId, scope: "all" }),
    columns: [
      (call) => el("time", { datetime: call.started_at }, formatDateTime(call.started_at)),
      (call) => (call.direction ? t(`direction_${call.direction}`) : ""),
      (call) => partyCell(call.caller),
      (call) => partyCell(call.callee),
      (call) => [callResult(call), recordingControl(call)],
      (call) => callNotes(call),
    ],
  });

  return async function show(id) {
    contactId = id;
    section.hidden = false;
    title.textContent = t("loading");
    fields.replaceChildren();
    try {
      const { body: contact } = await api(`/api/contacts/${encodeURIComponent(id)}`);
      title.textContent = contact.name;
      const rows = [
        [t("col_kind"), t(`kind_${contact.kind}`)],
        [t("col_company"), contact.company_name || ""],
        [t("col_phones"), phones(contact)],
        [t("col_email"), (contact.emails || []).join(", ")],
        [t("col_address"), contact.address || ""],
        [t("col_contact_notes"), contact.notes || ""],
      ].filter(([, value]) => value);
      fields.replaceChildren(...rows.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
      title.focus();
      await calls.reset();
    } catch (error) {
      if (error.status === 401) return;
      title.textContent = t("load_failed", { error: error.message });
    }
  };
}

const show = setUpDetail();
setUpList(show);
const chosen = new URLSearchParams(location.search).get("id");
if (chosen) show(chosen);
window.addEventListener("popstate", () => {
  const id = new URLSearchParams(location.search).get("id");
  if (id) show(id);
  else document.getElementById("contact-detail").hidden = true;
});
