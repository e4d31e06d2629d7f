// Tasks: the register (filters, sorting, pages), the calendar, a task's card and the task form.
//
// Buttons and forms the user has no right to are not on the page (the template leaves them out);
// crm decides anyway. Every change of a task sends the version the card shows (If-Match): when the
// task changed meanwhile, the card is loaded again and says so, instead of overwriting the change.
import { PagedTable, api, el, formatDateTime, restoreForm, t, timeZone } from "./common.js";
import { announce, contactName, contactPicker, employeeName, named, when } from "./work.js";
import { Calendar, anchorOf, fromInputValue, fromZoned, isoDay, moveTask, parseDay, toInputValue, zonedParts } from "./calendar.js";
import { phoneNumber } from "./calling.js"; // and the live calls bar on this page too

/** Where a call placed from a task comes from: the call log attaches it to the task and contact. */
function callContext(task) {
  return task.contact_id ? { task_id: task.id, contact_id: task.contact_id } : { task_id: task.id };
}

const body = document.body.dataset;
const canModify = body.canModify === "true";
const canChangeStatus = body.canChangeStatus === "true";
const me = body.employeeId || "";
const OPEN_GROUPS = ["set", "in_progress", "overdue", "suspended"];

const projects = new Map(); // id -> name

async function loadProjects() {
  try {
    const { body: page } = await api("/api/projects", { params: { status: "active", limit: 100 } });
    for (const project of page.items) projects.set(project.id, project.name);
  } catch (error) {
    if (error.status !== 401) announce(error.message);
  }
  for (const select of [document.getElementById("task-project"), document.getElementById("task-form-project")]) {
    if (!select) continue;
    select.append(...[...projects].map(([id, name]) => el("option", { value: id }, name)));
  }
}

// --- statuses ----------------------------------------------------------------------------------

let statuses = new Map(); // code -> {name, group, active}
const statusesLoaded = api("/api/task-statuses")
  .then(({ body: items }) => {
    statuses = new Map(items.map((item) => [item.code, item]));
  })
  .catch(() => {});

function statusName(code) {
  const status = statuses.get(code);
  if (status?.builtin) return t(`tasks_group_${status.group}`);
  return status?.name || code;
}

// --- the register ------------------------------------------------------------------------------

function setUpRegister(show) {
  const form = document.getElementById("task-filters");
  const contact = contactPicker(form.elements.contact, document.getElementById("task-contact-options"));
  const table = new PagedTable({
    prefix: "tasks",
    path: "/api/tasks",
    totalKey: "tasks_total",
    emptyKey: "tasks_none_found",
    params: () => {
      const group = form.elements.status_group.value;
      return {
        scope: form.elements.scope.value,
        status_group: group === "open" ? OPEN_GROUPS : group,
        from_date: form.elements.from_date.value,
        to_date: form.elements.to_date.value,
        tz: timeZone(),
        overdue: form.elements.overdue.checked ? "true" : "",
        project_id: form.elements.project_id.value,
        contact_id: contact.id() || "",
        q: form.elements.q.value.trim(),
        sort: form.elements.sort.value,
      };
    },
    columns: [
      (task) => {
        const link = el("a", { href: `/tasks?id=${encodeURIComponent(task.id)}`, class: "task-link" }, task.name);
        link.addEventListener("click", (event) => {
          event.preventDefault();
          show(task.id, { push: true });
        });
        return link;
      },
      (task) => el("span", { class: `task-group group-${task.status_group}` }, statusName(task.status)),
      (task) => t(`tasks_priority_${task.priority}`),
      (task) => when(task.start_at),
      (task) => el("span", { class: task.overdue ? "overdue" : null }, when(task.end_at), task.overdue ? ` ${t("tasks_overdue_mark")}` : ""),
      (task) => el("span", {}, task.executors.flatMap((executor, i) => [i ? ", " : "", named(employeeName, executor.employee_id)])),
      (task) => (task.contact_id ? named(contactName, task.contact_id) : ""),
    ],
  });
  const initial = new URLSearchParams(location.search);
  if (initial.get("project_id")) form.elements.project_id.dataset.wanted = initial.get("project_id");
  restoreForm(form);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (contact.id() === null) {
      document.getElementById("tasks-total").textContent = t("tasks_pick_contact");
      return;
    }
    table.reset();
  });
  form.addEventListener("reset", () => setTimeout(() => table.reset(), 0));
  return table;
}

// --- the task's card ---------------------------------------------------------------------------

function setUpCard({ onChanged, edit }) {
  const section = document.getElementById("task-detail");
  const title = document.getElementById("task-title");
  const statusText = document.getElementById("task-status-text");
  const fields = document.getElementById("task-fields");
  const description = document.getElementById("task-description");
  const actions = document.getElementById("task-actions");
  const statusForm = document.getElementById("task-status-form");
  const moveForm = document.getElementById("task-move-form");
  const executorsForm = document.getElementById("task-executors-form");
  const calls = document.getElementById("task-calls");
  const reminders = document.getElementById("task-reminders");
  const reminderForm = document.getElementById("task-reminder-form");
  const comments = document.getElementById("task-comments");
  const commentForm = document.getElementById("task-comment-form");
  let current = null;

  function fact(label, ...value) {
    return [el("dt", {}, t(label)), el("dd", {}, ...value)];
  }

  function render(task) {
    current = task;
    section.hidden = false;
    document.getElementById("task-editor")?.setAttribute("hidden", "");
    section.dataset.taskId = task.id;
    section.dataset.version = String(task.version);
    title.textContent = task.name;
    statusText.textContent = t("tasks_status_is", { status: statusName(task.status) });
    fields.replaceChildren(
      ...fact("col_priority", t(`tasks_priority_${task.priority}`)),
      ...fact("tasks_col_start", when(task.start_at)),
      ...fact("tasks_col_deadline", when(task.end_at), task.overdue ? ` ${t("tasks_overdue_mark")}` : ""),
      ...fact("tasks_col_executors", ...task.executors.flatMap((executor, i) => [i ? ", " : "", named(employeeName, executor.employee_id)])),
      ...(task.contact_id
        ? fact("tasks_col_contact", el("a", { href: `/contacts?id=${encodeURIComponent(task.contact_id)}` }, named(contactName, task.contact_id)))
        : []),
      ...(task.project_id
        ? fact("tasks_col_project", el("a", { href: `/projects?id=${encodeURIComponent(task.project_id)}` }, projects.get(task.project_id) || task.project_id))
        : []),
      ...(task.phone ? fact("tasks_phone", phoneNumber(task.phone, callContext(task))) : []),
      ...(task.author_id ? fact("tasks_author", named(employeeName, task.author_id)) : []),
    );
    description.textContent = task.description;
    actions.replaceChildren();
    if (canModify) {
      const button = el("button", { type: "button", id: "task-edit" }, t("tasks_edit"));
      button.addEventListener("click", () => edit(current));
      actions.append(button);
    }
    if (statusForm) {
      const select = statusForm.elements.status;
      const choices = [...statuses.values()].filter((s) => s.active && s.code !== task.status && s.group !== "overdue");
      select.replaceChildren(...choices.map((s) => el("option", { value: s.code }, statusName(s.code))));
      statusForm.hidden = !choices.length;
    }
    // A late refresh of the same version must not undo what the user is typing in the move form.
    const shown = `${task.id}@${task.version}`;
    if (moveForm && moveForm.dataset.shown !== shown) {
      moveForm.dataset.shown = shown;
      const anchor = anchorOf(task);
      const value = anchor ? toInputValue(anchor) : "";
      moveForm.elements.date.value = value.slice(0, 10);
      moveForm.elements.time.value = value.slice(11, 16);
    }
    if (executorsForm) fillExecutors(task);
  }

  async function fillExecutors(task) {
    const select = executorsForm.elements.employee_ids;
    const chosen = new Set(task.executors.map((executor) => executor.employee_id));
    let visible = [];
    try {
      ({ body: { items: visible } } = await api("/api/employees", { params: { limit: 100 } }));
    } catch {
      visible = [];
    }
    const ids = new Set([...visible.map((e) => e.id), ...chosen]);
    const names = new Map(visible.map((e) => [e.id, e.name]));
    select.replaceChildren(
      ...[...ids].map((id) => {
        const option = el("option", { value: id, selected: chosen.has(id) }, names.get(id) || id);
        if (!names.has(id)) employeeName(id).then((name) => (option.textContent = name));
        return option;
      }),
    );
  }

  function refused(error) {
    if (error.status === 412) return t("cal_move_conflict");
    if (error.status === 409 && Array.isArray(error.body?.allowed)) {
      const allowed = error.body.allowed.map(statusName).join(", ") || t("tasks_none");
      return t("tasks_status_refused", { allowed });
    }
    return error.message;
  }

  /** Run a change of the card; on a refusal, load the task again and say why. */
  async function change(button, run) {
    if (button) button.disabled = true;
    try {
      const task = await run();
      if (task) render(task);
      await onChanged(current);
      return true;
    } catch (error) {
      if (error.status === 401) return false;
      const text = refused(error);
      await show(current.id, { quiet: true });
      statusText.textContent = text;
      announce(text);
      return false;
    } finally {
      if (button) button.disabled = false;
    }
  }

  statusForm?.addEventListener("submit", (event) => {
    event.preventDefault();
    const status = statusForm.elements.status.value;
    change(statusForm.querySelector("button"), async () => {
      const { body: task } = await api(`/api/tasks/${encodeURIComponent(current.id)}/status`, {
        method: "POST",
        body: { status },
        headers: { "If-Match": `"${current.version}"` },
      });
      announce(t("tasks_status_is", { status: statusName(task.status) }));
      return task;
    });
  });

  moveForm?.addEventListener("submit", (event) => {
    event.preventDefault();
    const date = moveForm.elements.date.value;
    if (!date) return;
    const [hour, minute] = (moveForm.elements.time.value || "09:00").split(":").map(Number);
    change(moveForm.querySelector("button"), async () => {
      const task = await moveTask(current, fromZoned({ ...parseDay(date), hour, minute }));
      announce(t("cal_moved", { name: task.name, when: formatDateTime(anchorOf(task)) }));
      return task;
    });
  });

  executorsForm?.addEventListener("submit", (event) => {
    event.preventDefault();
    const ids = [...executorsForm.elements.employee_ids.selectedOptions].map((option) => option.value);
    change(executorsForm.querySelector("button"), async () => {
      const { body: task } = await api(`/api/tasks/${encodeURIComponent(current.id)}/executors`, {
        method: "PUT",
        body: { employee_ids: ids },
        headers: { "If-Match": `"${current.version}"` },
      });
      announce(t("tasks_saved"));
      return task;
    });
  });

  async function loadExtras(id) {
    const [callList, reminderList, commentList] = await Promise.all([
      api(`/api/tasks/${encodeURIComponent(id)}/calls`).then(({ body: items }) => items).catch(() => []),
      api(`/api/tasks/${encodeURIComponent(id)}/reminders`).then(({ body: items }) => items).catch(() => []),
      api(`/api/tasks/${encodeURIComponent(id)}/comments`).then(({ body: items }) => items).catch(() => []),
    ]);
    calls.replaceChildren(
      ...callList.map((call) =>
        el(
          "li",
          {},
          when(call.started_at),
          " · ",
          call.direction ? t(`direction_${call.direction}`) : "",
          call.number ? ` · ${call.number}` : "",
          call.disposition ? ` · ${t(`disposition_${call.disposition}`)}` : "",
        ),
      ),
    );
    if (!callList.length) calls.replaceChildren(el("li", { class: "muted" }, t("tasks_no_calls")));
    reminders.replaceChildren(
      ...reminderList.map((reminder) => {
        const item = el("li", {}, when(reminder.remind_at), " · ", named(employeeName, reminder.employee_id), reminder.dismissed_at ? ` · ${t("tasks_reminder_dismissed")}` : "");
        if (reminder.employee_id === me) {
          const remove = el("button", { type: "button", class: "link-button", "aria-label": t("tasks_remove_reminder_of", { when: formatDateTime(reminder.remind_at) }) }, t("tasks_remove"));
          remove.addEventListener("click", async () => {
            try {
              await api(`/api/tasks/${encodeURIComponent(id)}/reminders/${encodeURIComponent(reminder.id)}`, { method: "DELETE" });
              await loadExtras(id);
            } catch (error) {
              if (error.status !== 401) announce(error.message);
            }
          });
          item.append(" ", remove);
        }
        return item;
      }),
    );
    if (!reminderList.length) reminders.replaceChildren(el("li", { class: "muted" }, t("tasks_no_reminders")));
    comments.replaceChildren(
      ...commentList.map((comment) =>
        el("li", {}, el("p", { class: "note-meta" }, comment.author_name, " · ", when(comment.created_at)), el("p", { class: "note-text" }, comment.body)),
      ),
    );
    if (!commentList.length) comments.replaceChildren(el("li", { class: "muted" }, t("tasks_no_comments")));
  }

  reminderForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const remindAt = fromInputValue(reminderForm.elements.remind_at.value);
    if (!remindAt || !current) return;
    const button = reminderForm.querySelector("button");
    button.disabled = true;
    try {
      await api(`/api/tasks/${encodeURIComponent(current.id)}/reminders`, { method: "POST", body: { remind_at: remindAt } });
      reminderForm.reset();
      announce(t("tasks_reminder_added"));
      await loadExtras(current.id);
    } catch (error) {
      if (error.status !== 401) announce(error.message);
    } finally {
      button.disabled = false;
    }
  });

  restoreForm(commentForm);
  commentForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = commentForm.elements.body.value.trim();
    if (!text || !current) return;
    const button = commentForm.querySelector("button");
    button.disabled = true;
    try {
      await api(`/api/tasks/${encodeURIComponent(current.id)}/comments`, { method: "POST", body: { body: text } });
      commentForm.reset();
      await loadExtras(current.id);
    } catch (error) {
      if (error.status !== 401) announce(error.message);
    } finally {
      button.disabled = false;
    }
  });

  async function show(id, { push = false, quiet = false } = {}) {
    if (push) history.pushState(null, "", withParams({ id }));
    await statusesLoaded;
    try {
      const { body: task } = await api(`/api/tasks/${encodeURIComponent(id)}`);
      render(task);
      if (!quiet) title.focus();
      await loadExtras(id);
    } catch (error) {
      if (error.status === 401) return;
      section.hidden = false;
      title.textContent = t("load_failed", { error: error.message });
    }
  }

  return { show, current: () => current, hide: () => (section.hidden = true) };
}

// --- the task form: new task, or the card's fields -----------------------------------------------

function setUpEditor({ onSaved }) {
  const section = document.getElementById("task-editor");
  if (!section) return null;
  const form = document.getElementById("task-form");
  const heading = document.getElementById("task-editor-title");
  const status = document.getElementById("task-form-status");
  const contact = contactPicker(form.elements.contact, document.getElementById("task-form-contact-options"));
  let editing = null;
  let key = null;

  function open(task, preset = {}) {
    editing = task;
    key = crypto.randomUUID();
    section.hidden = false;
    document.getElementById("task-detail").hidden = true;
    heading.textContent = task ? t("tasks_edit_heading", { name: task.name }) : t("tasks_new");
    status.textContent = "";
    form.reset();
    if (form.elements.assign_me) form.elements.assign_me.closest("label").hidden = Boolean(task);
    const values = task || preset;
    form.elements.name.value = values.name || "";
    form.elements.description.value = values.description || "";
    form.elements.start_at.value = toInputValue(values.start_at);
    form.elements.end_at.value = toInputValue(values.end_at);
    form.elements.priority.value = values.priority || "normal";
    const project = values.project_id || "";
    if (project && !projects.has(project)) form.elements.project_id.append(el("option", { value: project }, project));
    form.elements.project_id.value = project;
    if (values.contact_id) contactName(values.contact_id).then((name) => contact.set(values.contact_id, name));
    else contact.set("", "");
    heading.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const contactId = contact.id();
    if (contactId === null) {
      status.textContent = t("tasks_pick_contact");
      form.elements.contact.focus();
      return;
    }
    const fields = {
      name: form.elements.name.value.trim(),
      description: form.elements.description.value,
      start_at: fromInputValue(form.elements.start_at.value),
      end_at: fromInputValue(form.elements.end_at.value),
      priority: form.elements.priority.value,
      project_id: form.elements.project_id.value || null,
      contact_id: contactId || null,
    };
    if (!fields.name) {
      status.textContent = t("tasks_name_needed");
      form.elements.name.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    status.textContent = t("tasks_saving");
    try {
      let task;
      if (editing) {
        ({ body: task } = await api(`/api/tasks/${encodeURIComponent(editing.id)}`, {
          method: "PATCH",
          body: fields,
          headers: { "If-Match": `"${editing.version}"` },
        }));
      } else {
        const draft = Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== null && value !== ""));
        draft.executor_ids = form.elements.assign_me?.checked && me ? [me] : [];
        ({ body: task } = await api("/api/tasks", { method: "POST", body: draft, headers: { "Idempotency-Key": key } }));
      }
      section.hidden = true;
      announce(t("tasks_saved"));
      await onSaved(task);
    } catch (error) {
      if (error.status === 401) return;
      status.textContent = error.status === 412 ? t("cal_move_conflict") : error.message;
    } finally {
      button.disabled = false;
    }
  });

  document.getElementById("task-form-cancel").addEventListener("click", () => {
    section.hidden = true;
    if (editing) document.getElementById("task-detail").hidden = false;
  });
  return { open };
}

// --- the page ----------------------------------------------------------------------------------

function withParams(changes) {
  const params = new URLSearchParams(location.search);
  for (const [name, value] of Object.entries(changes)) {
    if (value) params.set(name, value);
    else params.delete(name);
  }
  const text = params.toString();
  return text ? `${location.pathname}?${text}` : location.pathname;
}

const params = new URLSearchParams(location.search);
let table = null;
let calendar = null;

const card = setUpCard({
  onChanged: async () => {
    await Promise.all([table.go(table.page), calendarShown() ? calendar.load() : null]);
  },
  edit: (task) => editor?.open(task),
});

const editor = setUpEditor({
  onSaved: async (task) => {
    history.replaceState(null, "", withParams({ id: task.id, new: null }));
    await card.show(task.id);
    await Promise.all([table.reset(), calendarShown() ? calendar.load() : null]);
  },
});

table = setUpRegister(card.show);

const registerView = document.getElementById("register-view");
const calendarView = document.getElementById("calendar-view");
const showRegister = document.getElementById("show-register");
const showCalendar = document.getElementById("show-calendar");

function calendarShown() {
  return !calendarView.hidden;
}

calendar = new Calendar({
  container: document.getElementById("calendar"),
  title: document.getElementById("cal-title"),
  status: document.getElementById("cal-status"),
  canMove: canModify,
  onOpen: (id) => card.show(id, { push: true }),
  onMoved: (task) => {
    if (card.current()?.id === task.id) card.show(task.id, { quiet: true });
    table.go(table.page);
  },
  announce,
  state: {
    view: params.get("cal") || "week",
    date: params.get("date") || isoDay(zonedParts(new Date())),
    scope: me ? "mine" : "all",
  },
});

const calScope = document.getElementById("cal-scope");
calScope.value = calendar.scope;
calScope.addEventListener("change", () => {
  calendar.scope = calScope.value;
  calendar.load();
});

function keepCalendarState() {
  history.replaceState(null, "", withParams({ view: "calendar", cal: calendar.view, date: calendar.date }));
  for (const button of calendarView.querySelectorAll("[data-view]")) {
    button.setAttribute("aria-pressed", String(button.dataset.view === calendar.view));
  }
}

function switchTo(view) {
  const toCalendar = view === "calendar";
  registerView.hidden = toCalendar;
  calendarView.hidden = !toCalendar;
  showRegister.setAttribute("aria-pressed", String(!toCalendar));
  showCalendar.setAttribute("aria-pressed", String(toCalendar));
  if (toCalendar) {
    keepCalendarState();
    calendar.load();
  } else {
    history.replaceState(null, "", withParams({ view: null, cal: null, date: null }));
  }
}

showRegister.addEventListener("click", () => switchTo("register"));
showCalendar.addEventListener("click", () => switchTo("calendar"));
for (const button of calendarView.querySelectorAll("[data-view]")) {
  button.addEventListener("click", async () => {
    await calendar.setView(button.dataset.view);
    keepCalendarState();
  });
}
for (const [id, action] of [
  ["cal-prev", () => calendar.step(-1)],
  ["cal-next", () => calendar.step(1)],
  ["cal-today", () => calendar.goToday()],
]) {
  document.getElementById(id).addEventListener("click", async () => {
    await action();
    keepCalendarState();
  });
}

document.getElementById("new-task")?.addEventListener("click", () => editor?.open(null));

loadProjects().then(() => {
  const filter = document.getElementById("task-project");
  if (filter.dataset.wanted) {
    if (!projects.has(filter.dataset.wanted)) filter.append(el("option", { value: filter.dataset.wanted }, filter.dataset.wanted));
    filter.value = filter.dataset.wanted;
  }
  table.reset();
});
if (params.get("view") === "calendar") switchTo("calendar");
if (params.get("id")) card.show(params.get("id"));
else if (params.get("new") && editor) editor.open(null, { project_id: params.get("project_id") || "", contact_id: params.get("contact_id") || "" });
window.addEventListener("popstate", () => {
  const id = new URLSearchParams(location.search).get("id");
  if (id) card.show(id);
  else card.hide();
});
