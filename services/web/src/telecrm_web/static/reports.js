// The reports page: a period of whole days in the user's time zone, whose calls (an employee's, a
// team's, a contact's or the company's), and the figures as a table and as bar charts drawn here with
// DOM methods (the calls per hour of the day and per weekday), plus calls' own SVG chart as an <img>.
import { api, el, formatDuration, formatNumber, language, queryString, restoreForm, t, timeZone } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";
const form = document.getElementById("report-form");

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

// --- the period --------------------------------------------------------------------------------

/** Today's date (YYYY-MM-DD) in the user's time zone. */
function today() {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: timeZone(), year: "numeric", month: "2-digit", day: "2-digit" })
    .formatToParts(new Date())
    .reduce((found, part) => ({ ...found, [part.type]: part.value }), {});
  return new Date(Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day)));
}

const iso = (day) => day.toISOString().slice(0, 10);
const addDays = (day, days) => new Date(day.getTime() + days * 86_400_000);

/** [first, last] day of a named period (weeks start on Monday). */
function periodDays(name) {
  const day = today();
  const monday = addDays(day, -((day.getUTCDay() + 6) % 7));
  const first = new Date(Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), 1));
  switch (name) {
    case "this_week":
      return [monday, addDays(monday, 6)];
    case "last_week":
      return [addDays(monday, -7), addDays(monday, -1)];
    case "this_month":
      return [first, addDays(new Date(Date.UTC(day.getUTCFullYear(), day.getUTCMonth() + 1, 1)), -1)];
    case "last_month":
      return [new Date(Date.UTC(day.getUTCFullYear(), day.getUTCMonth() - 1, 1)), addDays(first, -1)];
    default:
      return null;
  }
}

function applyPeriod() {
  const days = periodDays(form.elements.period.value);
  if (!days) return;
  form.elements.from_date.value = iso(days[0]);
  form.elements.to_date.value = iso(days[1]);
}

// --- whose report --------------------------------------------------------------------------------

function showSubjectFields() {
  const subject = form.elements.subject.value;
  for (const field of form.querySelectorAll("[data-subject]")) field.hidden = field.dataset.subject !== subject;
}

function fill(select, items, chosen) {
  select.replaceChildren(...items.map((item) => el("option", { value: item.id, selected: item.id === chosen }, item.name || item.id)));
}

async function loadSubjects() {
  const own = document.body.dataset.employeeId || "";
  const { body } = await api("/api/reports/subjects");
  const employees = body.employees;
  if (own && !employees.some((employee) => employee.id === own)) employees.unshift({ id: own, name: t("reports_me") });
  fill(form.elements.employee, employees, own);
  fill(form.elements.team, body.teams, null);
}

async function findContacts() {
  const q = form.elements.contact_q.value.trim();
  const select = form.elements.contact;
  try {
    const { body } = await api("/api/contacts", { params: { q, limit: 50 } });
    fill(select, body.items, null);
    status(body.items.length ? "" : t("no_contacts"));
  } catch (error) {
    if (error.status !== 401) status(error.message);
  }
}

function chosenSubject() {
  const subject = form.elements.subject.value;
  const select = { employee: form.elements.employee, team: form.elements.team, contact: form.elements.contact }[subject];
  return { subject, id: select ? select.value : null, name: select?.selectedOptions[0]?.textContent || "" };
}

// --- the report ----------------------------------------------------------------------------------

const statusLine = document.getElementById("report-status");

function status(text) {
  statusLine.textContent = text;
}

function duration(seconds) {
  return seconds === null || seconds === undefined ? "–" : formatDuration(seconds);
}

function figures(report) {
  const c = report.counts;
  const b = report.callbacks;
  const rows = [
    ["reports_calls", formatNumber(c.calls)],
    ["reports_inbound", formatNumber(c.inbound)],
    ["reports_outbound", formatNumber(c.outbound)],
    ["reports_internal", formatNumber(c.internal)],
    ["reports_answered", formatNumber(c.answered)],
    ["reports_answered_by_others", formatNumber(c.answered_by_others)],
    ["reports_missed", formatNumber(c.missed)],
    ["reports_missed_outgoing", formatNumber(c.missed_outgoing)],
    ["reports_called_back", formatNumber(b.called_back)],
    ["reports_still_open", formatNumber(b.open)],
    ["reports_mean_callback", duration(b.mean_callback_seconds)],
    ["reports_talk_total", duration(c.talk_seconds)],
    ["reports_talk_mean", duration(c.mean_talk_seconds)],
  ];
  document
    .getElementById("report-figures-body")
    .replaceChildren(...rows.map(([key, value]) => el("tr", { dataset: { figure: key } }, el("th", { scope: "row" }, t(key)), el("td", {}, value))));
}

/**
 * Stacked bars (answered, missed, the rest) of `entries` [{label, title, answered, missed, calls}], in
 * an SVG sized by its viewBox; each bar has a <title> and the chart a text alternative.
 */
function barChart(entries, summary, width) {
  const height = 200;
  const bottom = 20;
  const top = 14;
  const left = 16;
  const step = (width - 2 * left) / entries.length;
  const most = Math.max(1, ...entries.map((entry) => entry.calls));
  const scale = (height - bottom - top) / most;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary, class: "bars" });
  chart.append(svg("line", { x1: 0, x2: width, y1: height - bottom, y2: height - bottom, class: "axis" }));
  chart.append(svg("text", { x: 2, y: 10, class: "tick" }, formatNumber(most)));
  entries.forEach((entry, index) => {
    const group = svg("g", { class: "bar", "data-calls": entry.calls });
    group.append(svg("title", {}, entry.title));
    let y = height - bottom;
    const other = Math.max(0, entry.calls - entry.answered - entry.missed);
    for (const [value, kind] of [
      [entry.answered, "answered"],
      [entry.missed, "missed"],
      [other, "other"],
    ]) {
      if (!value) continue;
      const h = value * scale;
      y -= h;
      group.append(svg("rect", { x: left + index * step + 1, y, width: Math.max(1, step - 2), height: h, class: `bar-${kind}` }));
    }
    chart.append(group);
    if (entry.label) chart.append(svg("text", { x: left + index * step + step / 2, y: height - 5, class: "tick", "text-anchor": "middle" }, entry.label));
  });
  return chart;
}

function entryTitle(label, item) {
  return t("reports_bar_title", { label, calls: formatNumber(item.calls), answered: formatNumber(item.answered), missed: formatNumber(item.missed) });
}

function charts(report) {
  const hours = report.hours.map((item) => {
    const label = `${String(item.hour).padStart(2, "0")}:00`;
    return { ...item, label: item.hour % 3 === 0 ? label : "", title: entryTitle(label, item) };
  });
  const busiest = report.busiest_hour === null ? t("reports_no_calls") : t("reports_busiest_hour", { hour: `${String(report.busiest_hour).padStart(2, "0")}:00` });
  document.getElementById("report-hours").replaceChildren(barChart(hours, busiest, 480));
  const names = new Intl.DateTimeFormat(language, { weekday: "short", timeZone: "UTC" });
  const weekdays = report.weekdays.map((item) => {
    const label = names.format(new Date(Date.UTC(2024, 0, item.weekday))); // 2024-01-01 was a Monday
    return { ...item, label, title: entryTitle(label, item) };
  });
  document.getElementById("report-weekdays").replaceChildren(barChart(weekdays, t("reports_weekdays"), 240));
}

async function ranking(params, chosen) {
  const section = document.getElementById("report-ranking");
  section.hidden = true;
  if (chosen.subject !== "team" && chosen.subject !== "company") return;
  const { body } = await api("/api/reports/employees", { params: { ...params, team_id: chosen.subject === "team" ? chosen.id : null } });
  const rows = body.items.map((row) =>
    el(
      "tr",
      {},
      el("td", {}, row.name || row.employee_id),
      el("td", {}, formatNumber(row.counts.calls)),
      el("td", {}, formatNumber(row.counts.answered)),
      el("td", {}, formatNumber(row.counts.missed)),
      el("td", {}, formatNumber(row.callbacks.called_back)),
      el("td", {}, duration(row.counts.talk_seconds)),
      el("td", {}, duration(row.counts.mean_talk_seconds)),
    ),
  );
  document.getElementById("report-ranking-body").replaceChildren(...rows);
  section.hidden = !rows.length;
}

let loading = 0;

async function show() {
  const chosen = chosenSubject();
  if (chosen.subject !== "company" && !chosen.id) {
    status(t("reports_choose_subject"));
    return;
  }
  const period = { from_date: form.elements.from_date.value, to_date: form.elements.to_date.value, tz: timeZone() };
  const params = { subject: chosen.subject, id: chosen.subject === "company" ? null : chosen.id, ...period };
  const ticket = ++loading;
  status(t("loading"));
  const result = document.getElementById("report-result");
  try {
    const { body: report } = await api("/api/reports", { params });
    if (ticket !== loading) return;
    const name = chosen.subject === "company" ? t("reports_subject_company") : report.subject.name || chosen.name;
    const dates = new Intl.DateTimeFormat(language, { dateStyle: "medium", timeZone: "UTC" });
    const range = dates.formatRange(new Date(`${period.from_date}T00:00:00Z`), new Date(`${period.to_date}T00:00:00Z`));
    document.getElementById("report-title").textContent = t("reports_title_of", { name, period: range });
    figures(report);
    charts(report);
    const chartUrl = `/api/reports/chart.svg?${queryString(params)}`;
    document.getElementById("report-chart").src = chartUrl;
    document.getElementById("report-chart-link").href = chartUrl;
    result.hidden = false;
    status("");
    await ranking(period, chosen);
  } catch (error) {
    if (ticket !== loading || error.status === 401) return;
    result.hidden = true;
    status(t("load_failed", { error: error.message }));
  }
}

if (form) {
  applyPeriod();
  restoreForm(form);
  form.elements.period.addEventListener("change", applyPeriod);
  for (const field of [form.elements.from_date, form.elements.to_date]) {
    field.addEventListener("input", () => {
      form.elements.period.value = "custom";
    });
  }
  form.elements.subject.addEventListener("change", showSubjectFields);
  document.getElementById("report-contact-find").addEventListener("click", findContacts);
  form.elements.contact_q.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      findContacts();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    show();
  });
  showSubjectFields();
  loadSubjects()
    .then(() => {
      if (form.elements.subject.value === "employee" || form.elements.subject.value === "company") show();
    })
    .catch((error) => {
      if (error.status !== 401) status(t("load_failed", { error: error.message }));
    });
}
