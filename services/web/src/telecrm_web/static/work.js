// Shared by the pages of tasks, events and projects: names for the ids crm gives (employees are
// asked for in one request per page render), a contact search box, and small formatting helpers.
import { api, el, formatDateTime } from "./common.js";

export function announce(text) {
  const announcer = document.getElementById("announcer");
  announcer.textContent = "";
  setTimeout(() => {
    announcer.textContent = text;
  }, 50);
}

export function when(iso) {
  return iso ? el("time", { datetime: iso }, formatDateTime(iso)) : "";
}

// --- names of employees and contacts (ids are what crm gives) ------------------------------------

const employees = new Map(); // id -> Promise<name>
let pendingEmployees = new Map(); // id -> resolve
let employeesTimer = null;

export function employeeName(id) {
  if (!employees.has(id)) {
    employees.set(id, new Promise((resolve) => pendingEmployees.set(id, resolve)));
    employeesTimer ??= setTimeout(fetchEmployees, 0);
  }
  return employees.get(id);
}

async function fetchEmployees() {
  const batch = pendingEmployees;
  pendingEmployees = new Map();
  employeesTimer = null;
  let found = [];
  try {
    ({ body: { items: found } } = await api("/api/employees", { params: { id: [...batch.keys()] } }));
  } catch {
    found = [];
  }
  const names = new Map(found.map((employee) => [employee.id, employee.name]));
  for (const [id, resolve] of batch) resolve(names.get(id) || id);
}

const contacts = new Map();

export function contactName(id) {
  if (!contacts.has(id)) {
    contacts.set(
      id,
      api(`/api/contacts/${encodeURIComponent(id)}`)
        .then(({ body: contact }) => contact.name)
        .catch(() => id),
    );
  }
  return contacts.get(id);
}

/** A span that shows `id` until its name is known. */
export function named(lookup, id) {
  const span = el("span", {}, id);
  lookup(id).then((name) => {
    span.textContent = name;
  });
  return span;
}

/** A search box with a datalist of contacts: the chosen contact's id, "" for none, null for text
 * that names no contact of the list. */
export function contactPicker(input, list) {
  const found = new Map(); // name -> id
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const q = input.value.trim();
    if (q.length < 2 || found.has(q)) return;
    timer = setTimeout(async () => {
      try {
        const { body: page } = await api("/api/contacts", { params: { q, limit: 10 } });
        for (const contact of page.items) found.set(contact.name, contact.id);
        list.replaceChildren(...page.items.map((contact) => el("option", { value: contact.name })));
      } catch {
        // the list stays as it was; the user can type on
      }
    }, 250);
  });
  return {
    id() {
      const text = input.value.trim();
      if (!text) return "";
      return found.get(text) ?? null;
    },
    set(id, name) {
      input.value = name;
      if (id) found.set(name, id);
    },
  };
}

