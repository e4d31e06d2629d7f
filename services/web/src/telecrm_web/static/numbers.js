// The numbers registry: our extensions with their employee and the contacts' numbers in one list,
// filtered by kind, employee, contact and number, each number with its "Call" button. Admins add,
// edit and delete extensions here (the employee chosen among crm's); a contact's number is crm's and
// is edited on the contact (the row links there).
import { PagedTable, api, el, restoreForm, t } from "./common.js";
import { phoneNumber } from "./calling.js";
import { announce, busy, clearErrors, confirmAction, employeeLabel, fillOptions, setStatus, showError } from "./admin-forms.js";

const isAdmin = document.body.dataset.isAdmin === "true";
const filters = document.getElementById("number-filters");
const editor = document.getElementById("extension-form");
const CONFLICTS = [
  [/registered already/i, "number"],
  [/employee/i, "employee_id"],
];
let editing = null; // the extension being edited, else null (the form adds one)

function employeeCell(number) {
  if (!number.employee_id) return "";
  const name = number.employee_name || number.employee_id;
  if (number.employee_active === false) return el("span", { class: "muted" }, t("num_inactive", { name }));
  return name;
}

function contactCell(number) {
  if (!number.contact_id) return "";
  const name = number.contact_name || number.contact_id;
  const link = el("a", { href: `/contacts?id=${encodeURIComponent(number.contact_id)}` }, name);
  return number.company_name ? [link, el("span", { class: "muted" }, ` · ${number.company_name}`)] : link;
}

function actionsCell(number) {
  if (number.kind === "contact") {
    return el("span", { class: "muted" }, t("num_edited_in_crm"));
  }
  if (!isAdmin) return "";
  const edit = el("button", { type: "button", class: "edit-number" }, t("adm_edit"));
  edit.setAttribute("aria-label", t("num_edit_extension", { number: number.number }));
  edit.addEventListener("click", () => startEditing(number));
  const remove = el("button", { type: "button", class: "delete-number danger" }, t("adm_delete"));
  remove.setAttribute("aria-label", t("num_delete_extension", { number: number.number }));
  remove.addEventListener("click", () => deleteExtension(number, remove));
  return el("span", { class: "row-actions" }, edit, " ", remove);
}

const table = new PagedTable({
  prefix: "numbers",
  path: "/api/numbers",
  totalKey: "num_total",
  emptyKey: "num_none",
  params: () => ({
    kind: filters.elements.kind.value,
    employee_id: filters.elements.employee_id.value,
    contact_id: filters.elements.contact_id.value,
    number: filters.elements.number.value.trim(),
  }),
  columns: [
    (number) => phoneNumber(number.number, number.contact_id ? { contact_id: number.contact_id } : {}),
    (number) => t(`num_kind_${number.kind}`),
    (number) => number.label || (number.phone_kind ? t(`phone_${number.phone_kind}`) : ""),
    employeeCell,
    (number) => number.team_name || "",
    contactCell,
    actionsCell,
  ],
});

async function loadEmployees() {
  try {
    const { body } = await api("/api/directory/employees");
    const items = body.items || [];
    fillOptions(filters.elements.employee_id, items, { value: (e) => e.id, label: employeeLabel });
    if (editor) fillOptions(editor.elements.employee_id, items, { value: (e) => e.id, label: employeeLabel });
  } catch (error) {
    if (error.status !== 401) announce(t("load_failed", { error: error.message }));
  }
}

async function findContacts() {
  const q = filters.elements.contact_q.value.trim();
  const select = filters.elements.contact_id;
  if (!q) {
    fillOptions(select, [], { value: () => "", label: () => "" });
    select.value = "";
    return;
  }
  const { body } = await api("/api/contacts", { params: { q, limit: 50 } });
  fillOptions(select, body.items || [], { value: (c) => c.id, label: (c) => c.name });
  if (select.options.length === 2) select.value = select.options[1].value;
}

filters.elements.contact_q.addEventListener("change", () => findContacts().catch(() => {}));
filters.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    if (filters.elements.contact_q.value.trim() && !filters.elements.contact_id.value) await findContacts();
  } catch (error) {
    if (error.status === 401) return;
  }
  table.reset();
});
filters.addEventListener("reset", () => {
  setTimeout(() => {
    fillOptions(filters.elements.contact_id, [], { value: () => "", label: () => "" });
    table.reset();
  });
});

// --- admins: add, edit, delete extensions ---------------------------------------------------------

function startEditing(number) {
  editing = number;
  clearErrors(editor);
  editor.elements.number.value = number.number;
  editor.elements.label.value = number.label || "";
  const select = editor.elements.employee_id;
  if (number.employee_id && ![...select.options].some((option) => option.value === number.employee_id)) {
    select.append(el("option", { value: number.employee_id }, number.employee_name || number.employee_id));
  }
  select.value = number.employee_id || "";
  document.getElementById("extension-form-heading").textContent = t("num_edit_heading", { number: number.number });
  document.getElementById("extension-submit").textContent = t("adm_save");
  document.getElementById("extension-cancel").hidden = false;
  editor.elements.number.focus();
}

function stopEditing() {
  editing = null;
  editor.reset();
  clearErrors(editor);
  document.getElementById("extension-form-heading").textContent = t("num_add_heading");
  document.getElementById("extension-submit").textContent = t("num_add");
  document.getElementById("extension-cancel").hidden = true;
}

async function deleteExtension(number, button) {
  if (!confirmAction("num_confirm_delete", { number: number.number })) return;
  button.disabled = true;
  try {
    await api(`/api/numbers/${encodeURIComponent(number.id)}`, { method: "DELETE", params: { version: number.version } });
    if (editing?.id === number.id) stopEditing();
    announce(t("num_deleted", { number: number.number }));
  } catch (error) {
    if (error.status === 401) return;
    announce(error.status === 409 ? t("adm_changed_meanwhile") : error.message);
    button.disabled = false;
  }
  await table.go(table.page);
}

async function saveExtension(event) {
  event.preventDefault();
  clearErrors(editor);
  const values = {
    number: editor.elements.number.value.trim(),
    label: editor.elements.label.value.trim() || null,
    employee_id: editor.elements.employee_id.value || null,
  };
  await busy(editor, async () => {
    try {
      if (editing) {
        await api(`/api/numbers/${encodeURIComponent(editing.id)}`, {
          method: "PATCH",
          body: { ...values, version: editing.version },
        });
        stopEditing();
        setStatus(editor, t("num_saved", { number: values.number }));
      } else {
        await api("/api/numbers", { method: "POST", body: values });
        editor.reset();
        setStatus(editor, t("num_added", { number: values.number }));
      }
      announce(editor.querySelector(".form-status").textContent);
      await table.go(table.page);
    } catch (error) {
      showError(editor, error, CONFLICTS);
    }
  });
}

if (editor) {
  restoreForm(editor);
  editor.addEventListener("submit", saveExtension);
  document.getElementById("extension-cancel").addEventListener("click", stopEditing);
}
restoreForm(filters);
loadEmployees();
table.reset();
