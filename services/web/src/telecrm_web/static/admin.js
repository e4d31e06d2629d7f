// The administration page: users (create with an initial password, roles, employee, rights, disable /
// enable, reset password, unlock), teams (name, supervisor, members), employees (name, extension, team).
// Each section is a list and one form that adds, or edits the row whose "Edit" was pressed; crm
// validates and its answer is shown next to the field. Deleting, disabling and resetting a password
// ask first.
import { PagedTable, api, el, formatDateTime, t } from "./common.js";
import { announce, busy, clearErrors, confirmAction, employeeLabel, fillOptions, setStatus, showError } from "./admin-forms.js";

const people = { employees: [], teams: [] }; // for the choosers and the names in the lists
const named = (list, id) => list.find((item) => item.id === id);
const path = (kind, id, suffix = "") => `/api/admin/${kind}/${encodeURIComponent(id)}${suffix}`;

function editButton(label, onClick) {
  const button = el("button", { type: "button", class: "edit" }, t("adm_edit"));
  button.setAttribute("aria-label", label);
  button.addEventListener("click", onClick);
  return button;
}

function switchMode(prefix, item, { addHeading, editHeading, addLabel }) {
  document.getElementById(`${prefix}-form-heading`).textContent = item ? editHeading : addHeading;
  document.getElementById(`${prefix}-submit`).textContent = item ? t("adm_save") : addLabel;
  document.getElementById(`${prefix}-cancel`).hidden = !item;
  const remove = document.getElementById(`${prefix}-delete`);
  if (remove) remove.hidden = !item;
}

async function loadChoosers() {
  const [employees, teams] = await Promise.all([
    api("/api/admin/employees", { params: { limit: 500 } }),
    api("/api/admin/teams", { params: { limit: 500 } }),
  ]);
  people.employees = employees.body.items || [];
  people.teams = teams.body.items || [];
  const employeeOptions = { value: (e) => e.id, label: employeeLabel };
  fillOptions(document.getElementById("user-employee_id"), people.employees, employeeOptions);
  fillOptions(document.getElementById("team-supervisor_id"), people.employees, employeeOptions);
  fillOptions(document.getElementById("employee-team_id"), people.teams, { value: (team) => team.id, label: (team) => team.name });
  teams_.fillMembers();
}

async function refreshAll() {
  try {
    await loadChoosers();
  } catch (error) {
    if (error.status !== 401) announce(t("load_failed", { error: error.message }));
  }
  await Promise.all([users.table.go(users.table.page), teams_.table.go(teams_.table.page), employees.table.go(employees.table.page)]);
}

// --- users ---------------------------------------------------------------------------------------

const users = (() => {
  const form = document.getElementById("user-form");
  const filters = document.getElementById("user-filters");
  const extra = document.getElementById("user-extra");
  const stateText = document.getElementById("user-state");
  const toggle = document.getElementById("user-toggle");
  const unlock = document.getElementById("user-unlock");
  const passwordForm = document.getElementById("user-password-form");
  const CONFLICTS = [
    [/login/i, "login"],
    [/employee/i, "employee_id"],
    [/admin/i, "roles"],
  ];
  let editing = null;

  const locked = (user) => user.locked_until && new Date(user.locked_until) > new Date();
  function stateOf(user) {
    if (user.disabled) return t("adm_state_disabled");
    if (locked(user)) return t("adm_state_locked", { until: formatDateTime(user.locked_until) });
    return t("adm_state_enabled");
  }

  const table = new PagedTable({
    prefix: "users",
    path: "/api/admin/users",
    totalKey: "adm_total_users",
    emptyKey: "adm_no_users",
    params: () => ({ q: filters.elements.q.value.trim(), role: filters.elements.role.value }),
    columns: [
      (user) => user.login,
      (user) => (user.employee_id ? named(people.employees, user.employee_id)?.name || user.employee_id : ""),
      (user) => user.roles.map((role) => t(`adm_role_${role}`)).join(", "),
      (user) => el("span", { class: user.disabled ? "status muted" : "status" }, stateOf(user)),
      (user) => (user.last_login_at ? el("time", { datetime: user.last_login_at }, formatDateTime(user.last_login_at)) : ""),
      (user) => editButton(t("adm_edit_user", { login: user.login }), () => edit(user)),
    ],
  });

  function rightSelects() {
    return [...form.querySelectorAll("select[data-right]")];
  }

  function fill(user) {
    form.elements.login.value = user.login;
    form.elements.employee_id.value = user.employee_id || "";
    for (const box of form.querySelectorAll('input[name="roles"]')) box.checked = user.roles.includes(box.value);
    form.elements.visibility.value = user.visibility === "team" ? "team" : "own";
    for (const select of rightSelects()) {
      const right = select.dataset.right;
      select.value = user.granted_rights.includes(right) ? "grant" : user.revoked_rights.includes(right) ? "revoke" : "";
    }
    stateText.textContent = t("adm_user_state", { state: stateOf(user) });
    toggle.textContent = user.disabled ? t("adm_enable") : t("adm_disable");
    unlock.hidden = !locked(user);
  }

  function edit(user) {
    editing = user;
    clearErrors(form);
    clearErrors(passwordForm);
    fill(user);
    document.getElementById("user-password-field").hidden = true;
    extra.hidden = false;
    switchMode("user", user, { editHeading: t("adm_user_edit_heading", { login: user.login }) });
    form.elements.login.focus();
  }

  function stopEditing() {
    editing = null;
    form.reset();
    clearErrors(form);
    document.getElementById("user-password-field").hidden = false;
    extra.hidden = true;
    switchMode("user", null, { addHeading: t("adm_user_add"), addLabel: t("adm_user_create") });
  }

  function values() {
    const roles = [...form.querySelectorAll('input[name="roles"]:checked')].map((box) => box.value);
    const granted = rightSelects().filter((s) => s.value === "grant").map((s) => s.dataset.right);
    const revoked = rightSelects().filter((s) => s.value === "revoke").map((s) => s.dataset.right);
    return {
      login: form.elements.login.value.trim(),
      employee_id: form.elements.employee_id.value || null,
      roles,
      visibility: form.elements.visibility.value,
      granted_rights: granted,
      revoked_rights: revoked,
    };
  }

  async function changed(user, message) {
    editing = user;
    fill(user);
    announce(message);
    await table.go(table.page);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = values();
    await busy(form, async () => {
      try {
        if (editing) {
          const { body: user } = await api(path("users", editing.id), { method: "PATCH", body: { ...body, version: editing.version } });
          setStatus(form, t("adm_saved"));
          await changed(user, t("adm_saved"));
        } else {
          const password = form.elements.password.value;
          if (password) body.password = password;
          if (!body.employee_id) delete body.employee_id;
          const { body: user } = await api("/api/admin/users", { method: "POST", body });
          form.reset();
          setStatus(form, t("adm_user_created", { login: user.login }));
          announce(t("adm_user_created", { login: user.login }));
          await table.reset();
        }
      } catch (error) {
        showError(form, error, CONFLICTS);
      }
    });
  });

  toggle.addEventListener("click", async () => {
    if (!editing) return;
    const disable = !editing.disabled;
    if (disable && !confirmAction("adm_confirm_disable", { login: editing.login })) return;
    try {
      const { body: user } = await api(path("users", editing.id), {
        method: "PATCH",
        body: { disabled: disable, version: editing.version },
      });
      await changed(user, disable ? t("adm_user_disabled", { login: user.login }) : t("adm_user_enabled", { login: user.login }));
      setStatus(form, disable ? t("adm_user_disabled", { login: user.login }) : t("adm_user_enabled", { login: user.login }));
    } catch (error) {
      showError(form, error, CONFLICTS);
    }
  });

  unlock.addEventListener("click", async () => {
    if (!editing) return;
    try {
      const { body: user } = await api(path("users", editing.id, "/unlock"), { method: "POST" });
      await changed(user, t("adm_user_unlocked", { login: user.login }));
    } catch (error) {
      showError(form, error);
    }
  });

  passwordForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(passwordForm);
    if (!editing) return;
    if (!confirmAction("adm_confirm_password", { login: editing.login })) return;
    await busy(passwordForm, async () => {
      try {
        const { body: user } = await api(path("users", editing.id, "/password"), {
          method: "POST",
          body: { password: passwordForm.elements.password.value, version: editing.version },
        });
        passwordForm.reset();
        setStatus(passwordForm, t("adm_password_set", { login: user.login }));
        await changed(user, t("adm_password_set", { login: user.login }));
      } catch (error) {
        showError(passwordForm, error);
      }
    });
  });

  document.getElementById("user-cancel").addEventListener("click", stopEditing);
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    table.reset();
  });
  return { table };
})();

// --- teams ---------------------------------------------------------------------------------------

const teams_ = (() => {
  const form = document.getElementById("team-form");
  const members = document.getElementById("team-members");
  const memberList = document.getElementById("team-member-list");
  const memberForm = document.getElementById("team-member-form");
  const CONFLICTS = [[/named|exists already/i, "name"]];
  let editing = null;
  let current = []; // the members of the team being edited

  const table = new PagedTable({
    prefix: "teams",
    path: "/api/admin/teams",
    totalKey: "adm_total_teams",
    emptyKey: "adm_no_teams",
    params: () => ({}),
    columns: [
      (team) => team.name,
      (team) => (team.supervisor_id ? named(people.employees, team.supervisor_id)?.name || team.supervisor_id : ""),
      (team) => editButton(t("adm_edit_team", { name: team.name }), () => edit(team)),
    ],
  });

  function fillMembers() {
    const ids = new Set(current.map((employee) => employee.id));
    fillOptions(memberForm.elements.employee_id, people.employees.filter((e) => !ids.has(e.id)), {
      value: (e) => e.id,
      label: employeeLabel,
    });
  }

  async function loadMembers() {
    if (!editing) return;
    const { body } = await api("/api/admin/employees", { params: { team_id: editing.id, limit: 500 } });
    current = body.items || [];
    memberList.replaceChildren(
      ...current.map((employee) => {
        const remove = el("button", { type: "button", class: "danger" }, t("adm_remove"));
        remove.setAttribute("aria-label", t("adm_remove_member", { name: employee.name }));
        remove.addEventListener("click", () => removeMember(employee, remove));
        return el("li", {}, employeeLabel(employee), " ", remove);
      }),
    );
    if (!current.length) memberList.replaceChildren(el("li", { class: "muted" }, t("adm_no_members")));
    fillMembers();
  }

  async function setTeam(employee, teamId) {
    await api(path("employees", employee.id), { method: "PATCH", body: { team_id: teamId, version: employee.version } });
  }

  async function removeMember(employee, button) {
    if (!confirmAction("adm_confirm_remove_member", { name: employee.name, team: editing.name })) return;
    button.disabled = true;
    try {
      await setTeam(employee, null);
      announce(t("adm_member_removed", { name: employee.name }));
    } catch (error) {
      showError(memberForm, error);
    }
    await loadMembers();
    await refreshAll();
  }

  async function edit(team) {
    editing = team;
    clearErrors(form);
    form.elements.name.value = team.name;
    form.elements.supervisor_id.value = team.supervisor_id || "";
    switchMode("team", team, { editHeading: t("adm_team_edit_heading", { name: team.name }) });
    members.hidden = false;
    form.elements.name.focus();
    try {
      await loadMembers();
    } catch (error) {
      showError(memberForm, error);
    }
  }

  function stopEditing() {
    editing = null;
    current = [];
    form.reset();
    clearErrors(form);
    members.hidden = true;
    switchMode("team", null, { addHeading: t("adm_team_add"), addLabel: t("adm_team_create") });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = { name: form.elements.name.value.trim(), supervisor_id: form.elements.supervisor_id.value || null };
    await busy(form, async () => {
      try {
        if (editing) {
          const { body: team } = await api(path("teams", editing.id), { method: "PATCH", body: { ...body, version: editing.version } });
          editing = team;
          setStatus(form, t("adm_saved"));
          announce(t("adm_saved"));
        } else {
          if (!body.supervisor_id) delete body.supervisor_id;
          const { body: team } = await api("/api/admin/teams", { method: "POST", body });
          form.reset();
          setStatus(form, t("adm_team_created", { name: team.name }));
          announce(t("adm_team_created", { name: team.name }));
        }
        await refreshAll();
      } catch (error) {
        showError(form, error, CONFLICTS);
      }
    });
  });

  memberForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(memberForm);
    const employee = named(people.employees, memberForm.elements.employee_id.value);
    if (!editing || !employee) return;
    await busy(memberForm, async () => {
      try {
        await setTeam(employee, editing.id);
        setStatus(memberForm, t("adm_member_added", { name: employee.name }));
        announce(t("adm_member_added", { name: employee.name }));
      } catch (error) {
        showError(memberForm, error);
      }
      await refreshAll();
      await loadMembers();
    });
  });

  document.getElementById("team-delete").addEventListener("click", async () => {
    if (!editing || !confirmAction("adm_confirm_delete_team", { name: editing.name })) return;
    try {
      await api(path("teams", editing.id), { method: "DELETE" });
      announce(t("adm_team_deleted", { name: editing.name }));
      stopEditing();
      await refreshAll();
    } catch (error) {
      showError(form, error);
    }
  });
  document.getElementById("team-cancel").addEventListener("click", stopEditing);
  return { table, fillMembers };
})();

// --- employees -----------------------------------------------------------------------------------

const employees = (() => {
  const form = document.getElementById("employee-form");
  const filters = document.getElementById("employee-filters");
  const activeField = document.getElementById("employee-active-field");
  const CONFLICTS = [
    [/extension/i, "extension"],
    [/exists already/i, "name"],
  ];
  let editing = null;

  const table = new PagedTable({
    prefix: "employees",
    path: "/api/admin/employees",
    totalKey: "adm_total_employees",
    emptyKey: "adm_no_employees",
    params: () => ({ q: filters.elements.q.value.trim() }),
    columns: [
      (employee) => employee.name,
      (employee) => employee.extension || "",
      (employee) => employee.team_name || "",
      (employee) => employee.email || "",
      (employee) => (employee.active ? t("adm_state_active") : el("span", { class: "muted" }, t("adm_state_inactive"))),
      (employee) => editButton(t("adm_edit_employee", { name: employee.name }), () => edit(employee)),
    ],
  });

  function edit(employee) {
    editing = employee;
    clearErrors(form);
    form.elements.name.value = employee.name;
    form.elements.extension.value = employee.extension || "";
    form.elements.team_id.value = employee.team_id || "";
    form.elements.email.value = employee.email || "";
    form.elements.active.checked = employee.active;
    activeField.hidden = false;
    switchMode("employee", employee, { editHeading: t("adm_employee_edit_heading", { name: employee.name }) });
    form.elements.name.focus();
  }

  function stopEditing() {
    editing = null;
    form.reset();
    clearErrors(form);
    activeField.hidden = true;
    switchMode("employee", null, { addHeading: t("adm_employee_add"), addLabel: t("adm_employee_create") });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = {
      name: form.elements.name.value.trim(),
      extension: form.elements.extension.value.trim() || null,
      team_id: form.elements.team_id.value || null,
      email: form.elements.email.value.trim() || null,
    };
    await busy(form, async () => {
      try {
        if (editing) {
          const { body: employee } = await api(path("employees", editing.id), {
            method: "PATCH",
            body: { ...body, active: form.elements.active.checked, version: editing.version },
          });
          editing = employee;
          setStatus(form, t("adm_saved"));
          announce(t("adm_saved"));
        } else {
          for (const key of Object.keys(body)) if (body[key] === null) delete body[key];
          const { body: employee } = await api("/api/admin/employees", { method: "POST", body });
          form.reset();
          setStatus(form, t("adm_employee_created", { name: employee.name }));
          announce(t("adm_employee_created", { name: employee.name }));
        }
        await refreshAll();
      } catch (error) {
        showError(form, error, CONFLICTS);
      }
    });
  });

  document.getElementById("employee-delete").addEventListener("click", async () => {
    if (!editing || !confirmAction("adm_confirm_delete_employee", { name: editing.name })) return;
    try {
      await api(path("employees", editing.id), { method: "DELETE" });
      announce(t("adm_employee_deleted", { name: editing.name }));
      stopEditing();
      await refreshAll();
    } catch (error) {
      showError(form, error);
    }
  });
  document.getElementById("employee-cancel").addEventListener("click", stopEditing);
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    table.reset();
  });
  return { table };
})();

refreshAll();
