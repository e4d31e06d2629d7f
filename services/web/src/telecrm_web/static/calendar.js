// Tasks on a day, week or month calendar, in the user's time zone, and moving them.
//
// crm's GET /tasks/calendar says which local days each task runs on; a task sits at its start (or,
// without one, its deadline). Dragging it to another day, or to another hour of the day and week
// views, shifts its start and deadline together (its length stays). Drag is not for everyone: a
// focused task moves with the arrow keys (left / right a day; up / down an hour, or a week on the
// month view), and the task card has a "move to" form. Every move sends the version the page saw
// (If-Match): when crm refuses (the task changed meanwhile, or no right), the calendar is loaded
// again, the task is back where it is, and the reason is said.
import { api, el, language, t, timeZone } from "./common.js";

// --- dates in the user's time zone ---------------------------------------------------------------

const formatters = new Map();

/** The wall-clock parts of an instant in `zone`. */
export function zonedParts(date, zone = timeZone()) {
  let format = formatters.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    formatters.set(zone, format);
  }
  const parts = Object.fromEntries(format.formatToParts(date).map((part) => [part.type, part.value]));
  return {
    year: Number(parts.year),
    month: Number(parts.month),
    day: Number(parts.day),
    hour: Number(parts.hour) % 24,
    minute: Number(parts.minute),
    second: Number(parts.second),
  };
}

/** The instant a wall-clock time in `zone` is (the later one of a repeated hour). */
export function fromZoned({ year, month, day, hour = 0, minute = 0, second = 0 }, zone = timeZone()) {
  const wall = Date.UTC(year, month - 1, day, hour, minute, second);
  let guess = wall;
  for (let i = 0; i < 3; i += 1) {
    const seen = zonedParts(new Date(guess), zone);
    const difference = wall - Date.UTC(seen.year, seen.month - 1, seen.day, seen.hour, seen.minute, seen.second);
    if (!difference) break;
    guess += difference;
  }
  return new Date(guess);
}

const pad = (value) => String(value).padStart(2, "0");

/** "2026-11-24" of wall-clock parts. */
export function isoDay(parts) {
  return `${parts.year}-${pad(parts.month)}-${pad(parts.day)}`;
}

export function parseDay(text) {
  const [year, month, day] = text.split("-").map(Number);
  return { year, month, day };
}

/** The day `days` after `text` ("2026-11-24"). */
export function addDays(text, days) {
  const { year, month, day } = parseDay(text);
  const date = new Date(Date.UTC(year, month - 1, day + days));
  return isoDay({ year: date.getUTCFullYear(), month: date.getUTCMonth() + 1, day: date.getUTCDate() });
}

export function today() {
  return isoDay(zonedParts(new Date()));
}

/** Days from `a` to `b` (both "YYYY-MM-DD"). */
function daysBetween(a, b) {
  const x = parseDay(a);
  const y = parseDay(b);
  return Math.round((Date.UTC(y.year, y.month - 1, y.day) - Date.UTC(x.year, x.month - 1, x.day)) / 86_400_000);
}

/** An instant as the value of an <input type="datetime-local">, in the user's zone. */
export function toInputValue(iso) {
  if (!iso) return "";
  const p = zonedParts(new Date(iso));
  return `${isoDay(p)}T${pad(p.hour)}:${pad(p.minute)}`;
}

/** The value of an <input type="datetime-local"> (user's zone) as an ISO instant, or null. */
export function fromInputValue(value) {
  if (!value) return null;
  const [day, time] = value.split("T");
  const [hour, minute] = (time || "00:00").split(":").map(Number);
  return fromZoned({ ...parseDay(day), hour, minute }).toISOString();
}

function dayLabel(text, options) {
  const { year, month, day } = parseDay(text);
  return new Intl.DateTimeFormat(language, { timeZone: "UTC", ...options }).format(new Date(Date.UTC(year, month - 1, day)));
}

function timeLabel(iso) {
  return new Intl.DateTimeFormat(language, { timeZone: timeZone(), timeStyle: "short" }).format(new Date(iso));
}

// --- moving a task -----------------------------------------------------------------------------

/** A task's place on the calendar: its start, else its deadline. */
export function anchorOf(task) {
  return task.start_at || task.end_at;
}

/** The task with its start and deadline put so that its anchor is at `when` (its length kept). */
export function shiftedTo(task, when) {
  const anchor = anchorOf(task);
  const changes = {};
  if (!anchor) {
    changes.end_at = when.toISOString();
    return changes;
  }
  const delta = when.getTime() - new Date(anchor).getTime();
  for (const name of ["start_at", "end_at"]) {
    if (task[name]) changes[name] = new Date(new Date(task[name]).getTime() + delta).toISOString();
  }
  return changes;
}

/** Why a move was refused, in the user's words. */
export function moveRefusal(error) {
  if (error.status === 412) return t("cal_move_conflict");
  if (error.status === 403) return t("cal_move_forbidden");
  if (error.status === 404) return t("cal_move_gone");
  return t("cal_move_failed", { error: error.message });
}

/** PATCH the task's dates with the version the page saw; the task as crm has it now. */
export async function moveTask(task, when) {
  const { body } = await api(`/api/tasks/${encodeURIComponent(task.id)}`, {
    method: "PATCH",
    body: shiftedTo(task, when),
    headers: { "If-Match": `"${task.version}"` },
  });
  return body;
}

// --- the calendar ------------------------------------------------------------------------------

const HOURS = Array.from({ length: 24 }, (_, hour) => hour);
const FIRST_HOUR_SHOWN = 8;

export class Calendar {
  /**
   * `container` gets the grid; `onOpen(taskId)` opens a task's card; `onMoved(task)` after a move;
   * `announce(text)` tells screen readers.
   */
  constructor({ container, title, status, canMove, onOpen, onMoved, announce, state }) {
    this.container = container;
    this.title = title;
    this.status = status;
    this.canMove = canMove;
    this.onOpen = onOpen;
    this.onMoved = onMoved || (() => {});
    this.announce = announce;
    this.view = state.view || "week";
    this.date = state.date || today();
    this.scope = state.scope || "all";
    this.tasks = new Map();
    this.loading = 0;
    this.dragged = null;
  }

  setView(view) {
    this.view = view;
    return this.load();
  }

  step(direction) {
    if (this.view === "day") this.date = addDays(this.date, direction);
    else if (this.view === "week") this.date = addDays(this.date, 7 * direction);
    else {
      const { year, month } = parseDay(this.date);
      const next = new Date(Date.UTC(year, month - 1 + direction, 1));
      this.date = isoDay({ year: next.getUTCFullYear(), month: next.getUTCMonth() + 1, day: 1 });
    }
    return this.load();
  }

  goToday() {
    this.date = today();
    return this.load();
  }

  async load({ focus = null } = {}) {
    const ticket = ++this.loading;
    this.container.setAttribute("aria-busy", "true");
    try {
      const { body } = await api("/api/tasks/calendar", {
        params: { view: this.view, date: this.date, tz: timeZone(), scope: this.scope },
      });
      if (ticket !== this.loading) return;
      this.render(body);
      if (focus) this.container.querySelector(`.cal-task[data-task-id="${CSS.escape(focus)}"]`)?.focus();
    } catch (error) {
      if (ticket !== this.loading || error.status === 401) return;
      this.container.replaceChildren(el("p", { class: "error" }, t("load_failed", { error: error.message })));
    } finally {
      if (ticket === this.loading) this.container.removeAttribute("aria-busy");
    }
  }

  render(data) {
    this.tasks = new Map(data.tasks.map((task) => [task.id, task]));
    this.first = data.first_day;
    this.last = data.last_day;
    this.container.dataset.view = data.view;
    this.container.dataset.firstDay = data.first_day;
    if (data.view === "month") {
      this.title.textContent = dayLabel(data.first_day, { month: "long", year: "numeric" });
      this.container.replaceChildren(this.monthGrid(data));
    } else {
      this.title.textContent =
        data.view === "day"
          ? dayLabel(data.first_day, { dateStyle: "full" })
          : `${dayLabel(data.first_day, { dateStyle: "medium" })} – ${dayLabel(data.last_day, { dateStyle: "medium" })}`;
      this.container.replaceChildren(this.hourGrid(data));
      const wrap = this.container.querySelector(".cal-scroll");
      const row = this.container.querySelector(`tr[data-hour="${FIRST_HOUR_SHOWN}"]`);
      if (wrap && row) wrap.scrollTop = row.offsetTop - (wrap.querySelector("thead")?.offsetHeight || 0);
    }
    if (data.truncated) this.status.textContent = t("cal_truncated");
  }

  /** Each local day of the answer with its task ids. */
  daysOf(data) {
    return new Map(data.days.map((day) => [day.date, day.task_ids]));
  }

  anchorDay(task) {
    const anchor = anchorOf(task);
    return anchor ? isoDay(zonedParts(new Date(anchor))) : null;
  }

  monthGrid(data) {
    const days = this.daysOf(data);
    const { year, month, day } = parseDay(data.first_day);
    const weekday = (new Date(Date.UTC(year, month - 1, day)).getUTCDay() + 6) % 7; // Monday = 0
    let cursor = addDays(data.first_day, -weekday);
    const head = el(
      "tr",
      {},
      Array.from({ length: 7 }, (_, i) => el("th", { scope: "col" }, dayLabel(addDays(cursor, i), { weekday: "short" }))),
    );
    const rows = [];
    while (daysBetween(cursor, data.last_day) >= 0) {
      const cells = [];
      for (let i = 0; i < 7; i += 1) {
        const date = cursor;
        const outside = daysBetween(data.first_day, date) < 0 || daysBetween(date, data.last_day) < 0;
        const cell = this.slot(date, null, outside ? "cal-day outside" : "cal-day");
        cell.append(el("span", { class: "cal-date" }, dayLabel(date, { day: "numeric" })));
        if (date === today()) cell.classList.add("today");
        for (const id of days.get(date) || []) {
          const task = this.tasks.get(id);
          if (task) cell.append(this.chip(task, date, null));
        }
        cells.push(cell);
        cursor = addDays(cursor, 1);
      }
      rows.push(el("tr", {}, cells));
    }
    return el("table", { class: "cal-grid month" }, el("caption", { class: "visually-hidden" }, this.title.textContent), el("thead", {}, head), el("tbody", {}, rows));
  }

  hourGrid(data) {
    const days = this.daysOf(data);
    const dates = [];
    for (let date = data.first_day; daysBetween(date, data.last_day) >= 0; date = addDays(date, 1)) dates.push(date);
    const head = el(
      "tr",
      {},
      el("th", { scope: "col", class: "cal-hour" }, el("span", { class: "visually-hidden" }, t("cal_hour"))),
      dates.map((date) =>
        el("th", { scope: "col", class: date === today() ? "today" : null }, dayLabel(date, { weekday: "short", day: "numeric", month: "short" })),
      ),
    );
    const placed = new Map(); // "date|hour" -> tasks anchored there
    const allDay = new Map(); // date -> tasks running that day but anchored elsewhere
    for (const date of dates) {
      for (const id of days.get(date) || []) {
        const task = this.tasks.get(id);
        if (!task) continue;
        if (this.anchorDay(task) === date) {
          const key = `${date}|${zonedParts(new Date(anchorOf(task))).hour}`;
          placed.set(key, [...(placed.get(key) || []), task]);
        } else {
          allDay.set(date, [...(allDay.get(date) || []), task]);
        }
      }
    }
    const allDayRow = el(
      "tr",
      { class: "cal-all-day" },
      el("th", { scope: "row", class: "cal-hour" }, t("cal_all_day")),
      dates.map((date) => {
        const cell = this.slot(date, null, "cal-slot");
        for (const task of allDay.get(date) || []) cell.append(this.chip(task, date, null));
        return cell;
      }),
    );
    const rows = HOURS.map((hour) =>
      el(
        "tr",
        { dataset: { hour: String(hour) } },
        el("th", { scope: "row", class: "cal-hour" }, `${pad(hour)}:00`),
        dates.map((date) => {
          const cell = this.slot(date, hour, "cal-slot");
          for (const task of placed.get(`${date}|${hour}`) || []) cell.append(this.chip(task, date, hour));
          return cell;
        }),
      ),
    );
    return el(
      "div",
      { class: "cal-scroll" },
      el("table", { class: `cal-grid ${data.view}` }, el("caption", { class: "visually-hidden" }, this.title.textContent), el("thead", {}, head), el("tbody", {}, allDayRow, rows)),
    );
  }

  /** A cell tasks can be dropped on. */
  slot(date, hour, className) {
    const cell = el("td", { class: className, dataset: { date, ...(hour === null ? {} : { hour: String(hour) }) } });
    if (!this.canMove) return cell;
    cell.addEventListener("dragover", (event) => {
      if (!this.dragged) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      cell.classList.add("drop-target");
    });
    cell.addEventListener("dragleave", () => cell.classList.remove("drop-target"));
    cell.addEventListener("drop", (event) => {
      event.preventDefault();
      cell.classList.remove("drop-target");
      const dragged = this.dragged;
      this.dragged = null;
      if (!dragged) return;
      const target = { date, hour };
      if (target.date === dragged.date && target.hour === dragged.hour) return;
      cell.append(dragged.chip); // shown where it was dropped while crm is asked
      this.move(dragged.task, this.destination(dragged, target), dragged.chip);
    });
    return cell;
  }

  chip(task, date, hour) {
    const anchor = anchorOf(task);
    const label = [hour !== null && anchor ? timeLabel(anchor) : null, task.name].filter(Boolean).join(" ");
    const chip = el(
      "button",
      {
        type: "button",
        class: `cal-task group-${task.status_group}${task.overdue ? " overdue" : ""}`,
        draggable: this.canMove ? "true" : null,
        "aria-keyshortcuts": this.canMove ? "ArrowLeft ArrowRight ArrowUp ArrowDown" : null,
        "aria-describedby": "cal-hint",
        title: label,
        dataset: { taskId: task.id, date, ...(hour === null ? {} : { hour: String(hour) }) },
      },
      label,
    );
    chip.addEventListener("click", () => this.onOpen(task.id));
    if (!this.canMove) return chip;
    chip.addEventListener("dragstart", (event) => {
      this.dragged = { task, date, hour, chip };
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", task.id);
      chip.classList.add("dragging");
    });
    chip.addEventListener("dragend", () => {
      chip.classList.remove("dragging");
      for (const cell of this.container.querySelectorAll(".drop-target")) cell.classList.remove("drop-target");
    });
    chip.addEventListener("keydown", (event) => {
      if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
      const hourly = this.view !== "month" && hour !== null;
      const steps = {
        ArrowLeft: { days: -1 },
        ArrowRight: { days: 1 },
        ArrowUp: hourly ? { hours: -1 } : { days: -7 },
        ArrowDown: hourly ? { hours: 1 } : { days: 7 },
      };
      const step = steps[event.key];
      if (!step) return;
      event.preventDefault();
      const target = { date: addDays(date, step.days || 0), hour: hourly ? hour + (step.hours || 0) : hour };
      if (target.hour !== null && (target.hour < 0 || target.hour > 23)) {
        target.date = addDays(target.date, target.hour < 0 ? -1 : 1);
        target.hour = (target.hour + 24) % 24;
      }
      this.move(task, this.destination({ task, date, hour }, target), chip);
    });
    return chip;
  }

  /** Where the task's anchor goes when its chip moves from `from` (date, hour) to `to`. */
  destination(from, to) {
    const anchor = anchorOf(from.task);
    const parts = anchor ? zonedParts(new Date(anchor)) : { hour: 9, minute: 0 };
    const anchorDay = anchor ? isoDay(parts) : from.date;
    const date = addDays(anchorDay, daysBetween(from.date, to.date));
    const hour = to.hour !== null ? to.hour : parts.hour;
    return fromZoned({ ...parseDay(date), hour, minute: parts.minute });
  }

  async move(task, when, chip) {
    if (chip) chip.setAttribute("aria-busy", "true");
    this.status.textContent = "";
    this.status.classList.remove("error");
    try {
      const moved = await moveTask(task, when);
      const text = t("cal_moved", { name: moved.name, when: new Intl.DateTimeFormat(language, { timeZone: timeZone(), dateStyle: "medium", timeStyle: "short" }).format(new Date(anchorOf(moved))) });
      this.status.textContent = text;
      this.announce(text);
      await this.load({ focus: task.id });
      this.onMoved(moved);
    } catch (error) {
      if (error.status === 401) return;
      const text = moveRefusal(error);
      await this.load({ focus: task.id }); // back where crm has it
      this.status.textContent = text;
      this.status.classList.add("error");
      this.announce(text);
    }
  }
}
