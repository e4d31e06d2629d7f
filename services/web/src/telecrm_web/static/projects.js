// Projects: the register, a project's card with its tasks, and the project form. Editing sends the
// version the card shows; when the project changed meanwhile, crm refuses (409) and the card is
// loaded again.
import { PagedTable, api, el, restoreForm, t } from "./common.js";
import "./calling.js";
import { announce, employeeName, named, when } from "./work.js";

const me = document.body.dataset.employeeId || "";

function period(project) {
  if (!project.start_date && !project.end_date) return "";
  return `${project.start_date || "…"} – ${project.end_date || "…"}`;
}

function setUpList(show) {
  const form = document.getElementById("project-filters");
  const table = new PagedTable({
    prefix: "projects",
    path: "/api/projects",
    totalKey: "projects_total",
    emptyKey: "projects_none_found",
    params: () => ({ status: form.elements.status.value, name: form.elements.name.value.trim() }),
    columns: [
      (project) => {
        const link = el("a", { href: `/projects?id=${encodeURIComponent(project.id)}`, class: "project-link" }, project.name);
        link.addEventListener("click", (event) => {
          event.preventDefault();
          history.pushState(null, "", link.href);
          show(project.id);
        });
        return link;
      },
      (project) => t(`projects_status_${project.status}`),
      (project) => period(project),
      (project) => (project.manager_id ? named(employeeName, project.manager_id) : ""),
    ],
  });
  restoreForm(form);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    table.reset();
  });
  table.reset();
  return table;
}

function setUpCard({ edit }) {
  const section = document.getElementById("project-detail");
  const title = document.getElementById("project-title");
  const fields = document.getElementById("project-fields");
  const description = document.getElementById("project-description");
  const newTask = document.getElementById("project-new-task");
  let current = null;
  const tasks = new PagedTable({
    prefix: "project-tasks",
    path: "/api/tasks",
    totalKey: "tasks_total",
    emptyKey: "tasks_none_found",
    params: () => ({ project_id: current?.id, scope: "all", sort: "deadline" }),
    columns: [
      (task) => el("a", { href: `/tasks?id=${encodeURIComponent(task.id)}`, class: "task-link" }, task.name),
      (task) => el("span", { class: `task-group group-${task.status_group}` }, t(`tasks_group_${task.status_group}`)),
      (task) => el("span", { class: task.overdue ? "overdue" : null }, when(task.end_at)),
    ],
  });

  function fact(label, value) {
    return value ? [el("dt", {}, t(label)), el("dd", {}, value)] : [];
  }

  function render(project) {
    current = project;
    section.hidden = false;
    document.getElementById("project-editor")?.setAttribute("hidden", "");
    section.dataset.projectId = project.id;
    title.textContent = project.name;
    fields.replaceChildren(
      ...fact("col_status", t(`projects_status_${project.status}`)),
      ...fact("projects_period", period(project)),
      ...fact("projects_manager", project.manager_id ? named(employeeName, project.manager_id) : ""),
    );
    description.textContent = project.description;
    if (newTask) newTask.href = `/tasks?new=1&project_id=${encodeURIComponent(project.id)}`;
  }

  document.getElementById("project-edit")?.addEventListener("click", () => edit(current));

  async function show(id, { quiet = false } = {}) {
    try {
      const { body: project } = await api(`/api/projects/${encodeURIComponent(id)}`);
      render(project);
      if (!quiet) title.focus();
      await tasks.reset();
    } catch (error) {
      if (error.status === 401) return;
      section.hidden = false;
      title.textContent = t("load_failed", { error: error.message });
    }
  }
  return { show, current: () => current };
}

function setUpEditor({ onSaved, reload }) {
  const section = document.getElementById("project-editor");
  if (!section) return null;
  const form = document.getElementById("project-form");
  const heading = document.getElementById("project-editor-title");
  const status = document.getElementById("project-form-status");
  let editing = null;

  function open(project) {
    editing = project;
    section.hidden = false;
    document.getElementById("project-detail").hidden = true;
    heading.textContent = project ? t("tasks_edit_heading", { name: project.name }) : t("projects_new");
    status.textContent = "";
    form.reset();
    form.elements.status.hidden = !project;
    form.querySelector('label[for="project-status"]').hidden = !project;
    if (project) {
      form.elements.name.value = project.name;
      form.elements.description.value = project.description;
      form.elements.start_date.value = project.start_date || "";
      form.elements.end_date.value = project.end_date || "";
      form.elements.status.value = project.status;
    }
    heading.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = {
      name: form.elements.name.value.trim(),
      description: form.elements.description.value,
      start_date: form.elements.start_date.value || null,
      end_date: form.elements.end_date.value || null,
    };
    if (!fields.name) {
      status.textContent = t("tasks_name_needed");
      form.elements.name.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      let project;
      if (editing) {
        ({ body: project } = await api(`/api/projects/${encodeURIComponent(editing.id)}`, {
          method: "PATCH",
          body: { ...fields, status: form.elements.status.value, version: editing.version },
        }));
      } else {
        const draft = Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== null));
        if (me) draft.manager_id = me;
        ({ body: project } = await api("/api/projects", { method: "POST", body: draft }));
      }
      section.hidden = true;
      announce(t("tasks_saved"));
      await onSaved(project);
    } catch (error) {
      if (error.status === 401) return;
      if (error.status === 409 && editing) {
        editing = await reload(editing.id);
        status.textContent = t("projects_conflict");
      } else {
        status.textContent = error.message;
      }
    } finally {
      button.disabled = false;
    }
  });
  document.getElementById("project-form-cancel").addEventListener("click", () => {
    section.hidden = true;
    if (editing) document.getElementById("project-detail").hidden = false;
  });
  return { open };
}

let table = null;
const editor = setUpEditor({
  onSaved: async (project) => {
    history.pushState(null, "", `/projects?id=${encodeURIComponent(project.id)}`);
    await card.show(project.id);
    await table.reset();
  },
  reload: async (id) => {
    const { body: project } = await api(`/api/projects/${encodeURIComponent(id)}`);
    return project;
  },
});
const card = setUpCard({ edit: (project) => editor?.open(project) });
table = setUpList(card.show);
document.getElementById("new-project")?.addEventListener("click", () => editor?.open(null));
const chosen = new URLSearchParams(location.search).get("id");
if (chosen) card.show(chosen);
window.addEventListener("popstate", () => {
  const id = new URLSearchParams(location.search).get("id");
  if (id) card.show(id);
  else document.getElementById("project-detail").hidden = true;
});
