// Click-to-call on every phone number, and the bar of my live calls (hang up, hold, resume, transfer
// blind or after consulting, tones for an IVR).
//
// A click asks the desktop's POST /api/calls/dial with an idempotency key of its own: the button is
// disabled while the dial is under way and a second click on the same number meanwhile does nothing,
// so a double click is one call (the gateway also keeps the key for a few seconds). The agent's phone
// rings first ("ringing your phone..."); the live calls bar then follows the call through the
// gateway's GET /api/calls/active, refreshed on every live event, after every button and every few
// seconds while a call is live.
import { api, el, formatDateTime, formatNumber, t } from "./common.js";

let enabled = null; // Promise<boolean>: whether this site has click-to-call (a gateway is set up)
const inFlight = new Set(); // numbers being dialled
let bar = null;
let status = null;
let refreshTimer = null;
let refreshing = null;
const REFRESH_MS = 3000;

function clickToCall() {
  enabled ??= api("/api/session")
    .then(({ body }) => Boolean(body.click_to_call))
    .catch(() => false);
  return enabled;
}

function ensureBar() {
  if (bar) return;
  status = el("p", { id: "dial-status", class: "dial-status", role: "status", "aria-live": "polite" });
  bar = el("ul", { id: "live-calls", class: "live-calls", "aria-label": t("live_calls_label") });
  const region = el("section", { class: "calling", "aria-label": t("live_calls_label") }, status, bar);
  const main = document.querySelector("main") || document.body;
  main.before(region);
}

function dialError(error) {
  const code = error.body?.detail?.code;
  if (code === "no_extension") return t("dial_no_extension");
  if (error.status === 403) return t("dial_forbidden");
  if (error.status === 503) return t("dial_not_available");
  if (error.status === 501) return t("dial_not_available");
  return t("dial_failed", { error: error.message });
}

/** Dial `number` (from a page's button); resolves when the gateway took the call. */
export async function dial(number, context = {}, button = null) {
  const key = number.replace(/\s+/g, "");
  if (inFlight.has(key)) return;
  inFlight.add(key);
  ensureBar();
  const buttons = [...document.querySelectorAll("button.call-button")].filter((b) => b.dataset.number === key);
  if (button && !buttons.includes(button)) buttons.push(button);
  for (const b of buttons) {
    b.disabled = true;
    b.setAttribute("aria-busy", "true");
  }
  status.className = "dial-status";
  status.textContent = t("dial_ringing_your_phone", { number });
  const idempotencyKey = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}:${key}`.slice(0, 100);
  try {
    const { body } = await api("/api/calls/dial", {
      method: "POST",
      body: { number, context },
      headers: { "Idempotency-Key": idempotencyKey },
    });
    status.dataset.callId = body.call_id;
    await refreshLiveCalls();
  } catch (error) {
    if (error.status === 401) return;
    status.className = "dial-status error";
    status.textContent = dialError(error);
  } finally {
    // A few seconds more: a double click that comes late is still the same number being rung.
    setTimeout(() => {
      inFlight.delete(key);
      for (const b of buttons) {
        b.disabled = false;
        b.removeAttribute("aria-busy");
      }
    }, 1500);
  }
}

/** A phone number with its "Call" button (only the number where click-to-call is not set up). */
export function phoneNumber(number, context = {}) {
  const wrap = el("span", { class: "phone" }, number);
  if (!number) return wrap;
  clickToCall().then((on) => {
    if (!on) return;
    const key = number.replace(/\s+/g, "");
    const button = el(
      "button",
      { type: "button", class: "call-button", dataset: { number: key }, title: t("call_number", { number }) },
      t("call"),
    );
    button.setAttribute("aria-label", t("call_number", { number }));
    if (inFlight.has(key)) button.disabled = true;
    button.addEventListener("click", () => dial(number, context, button));
    wrap.append(" ", button);
  });
  return wrap;
}

function stateText(call) {
  if (call.transfer_to && call.transfer_attended) return t("live_consulting", { extension: call.transfer_to });
  if (call.on_hold) return t("live_on_hold");
  if (call.transfer_to) return t("live_transferring", { extension: call.transfer_to });
  return t(`live_state_${call.state}`) || call.state;
}

async function control(call, action, body) {
  try {
    await api(`/api/calls/${encodeURIComponent(call.call_id)}/${action}`, { method: "POST", body });
    if (action === "hangup") status.textContent = t("live_hung_up");
  } catch (error) {
    if (error.status === 401) return;
    status.className = "dial-status error";
    status.textContent = error.status === 404 ? t("live_call_over") : t("dial_failed", { error: error.message });
  }
  await refreshLiveCalls();
}

function liveCallItem(call) {
  const other = call.direction === "inbound" ? call.caller : call.callee;
  const who = other?.display_name ? `${other.display_name} (${other.number})` : other?.number || "";
  const buttons = el("span", { class: "live-buttons" });
  const add = (label, action, handler) => {
    const button = el("button", { type: "button", dataset: { action } }, label);
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await handler();
      } finally {
        button.disabled = false;
      }
    });
    buttons.append(button);
  };
  add(t("hang_up"), "hangup", () => control(call, "hangup"));
  if (call.state === "answered" && call.transfer_to && call.transfer_attended) {
    // Consulting: the customer waits on hold while the agent talks to the other extension.
    add(t("transfer_complete"), "transfer-complete", () => control(call, "transfer/complete"));
    add(t("transfer_cancel"), "transfer-cancel", () => control(call, "transfer/cancel"));
  } else if (call.state === "answered" && !call.transfer_to) {
    if (call.on_hold) add(t("resume"), "resume", () => control(call, "resume"));
    else add(t("hold"), "hold", () => control(call, "hold"));
    const target = el("input", {
      type: "text",
      inputmode: "tel",
      maxlength: "32",
      size: "6",
      "aria-label": t("transfer_to"),
      placeholder: t("transfer_to"),
    });
    if (call.transferable !== false) buttons.append(target);
    const transfer = (attended) => async () => {
      const extension = target.value.trim();
      if (!extension) {
        target.focus();
        return;
      }
      await control(call, "transfer", { extension, attended });
    };
    if (call.transferable !== false) {
      add(t("transfer"), "transfer", transfer(false));
      add(t("consult"), "consult", transfer(true));
    }
    const tones = el("input", {
      type: "text",
      inputmode: "tel",
      maxlength: "32",
      size: "5",
      pattern: "[0-9*#A-Da-d]{1,32}",
      "aria-label": t("dtmf_label"),
      placeholder: t("dtmf_label"),
    });
    buttons.append(tones);
    add(t("dtmf_send"), "dtmf", async () => {
      const digits = tones.value.trim();
      if (!/^[0-9*#A-Da-d]{1,32}$/.test(digits)) {
        tones.focus();
        return;
      }
      await control(call, "dtmf", { digits });
      tones.value = "";
    });
  }
  return el(
    "li",
    { class: "live-call", dataset: { callId: call.call_id, state: call.state } },
    el("span", { class: "live-who" }, who),
    " · ",
    el("span", { class: "live-state" }, stateText(call)),
    " ",
    buttons,
  );
}

/** Ask the gateway for my live calls and redraw the bar (one request at a time). */
export function refreshLiveCalls() {
  refreshing ??= (async () => {
    try {
      if (!(await clickToCall())) return;
      ensureBar();
      const { body } = await api("/api/calls/active");
      const items = body.items || [];
      // Keep a half-typed transfer target: only redraw calls whose state changed.
      const shown = new Map([...bar.children].map((li) => [li.dataset.callId, li]));
      const next = items.map((call) => {
        const old = shown.get(call.call_id);
        const key = `${call.state}:${call.on_hold}:${call.transfer_to}:${call.transfer_attended}`;
        if (old && old.dataset.key === key) return old;
        const item = liveCallItem(call);
        item.dataset.key = key;
        return item;
      });
      bar.replaceChildren(...next);
      if (items.length && status.dataset.callId && items.some((c) => c.call_id === status.dataset.callId)) {
        const call = items.find((c) => c.call_id === status.dataset.callId);
        if (call.state === "answered") status.textContent = t("dial_connected");
      }
      clearTimeout(refreshTimer);
      if (items.length) refreshTimer = setTimeout(refreshLiveCalls, REFRESH_MS);
    } catch {
      // the gateway did not answer: try again later
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(refreshLiveCalls, REFRESH_MS * 3);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** A "Who is it?" box: a number -> crm's card of it and the calls with it. */
export function setUpWhoIsIt(renderCalls) {
  const form = document.getElementById("who-is-it");
  if (!form) return;
  const result = document.getElementById("who-result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const number = form.elements.number.value.trim();
    if (!number) return;
    result.replaceChildren(el("p", { class: "muted" }, t("loading")));
    const [lookup, calls] = await Promise.allSettled([
      api("/api/lookup", { params: { number } }),
      api("/api/calls", { params: { number, scope: "all", limit: 10 } }),
    ]);
    const parts = [el("p", { class: "who-number" }, phoneNumber(number))];
    if (lookup.status === "fulfilled" && lookup.value.body?.contact) {
      const c = lookup.value.body.contact;
      parts.push(el("p", { class: "who-contact" }, t("who_contact", { name: c.name })));
      if (c.company_name && c.kind !== "company") parts.push(el("p", {}, c.company_name));
    } else if (lookup.status === "fulfilled") {
      parts.push(el("p", { class: "who-contact muted" }, t("who_unknown")));
    } else {
      parts.push(el("p", { class: "error" }, t("load_failed", { error: lookup.reason.message })));
    }
    if (calls.status === "fulfilled") {
      const items = calls.value.body.items || [];
      parts.push(el("p", { class: "who-calls-total" }, t("who_calls", { total: calls.value.body.total ?? items.length })));
      if (items.length) parts.push(renderCalls(items));
    } else {
      parts.push(el("p", { class: "error" }, t("load_failed", { error: calls.reason.message })));
    }
    result.replaceChildren(...parts);
  });
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") refreshLiveCalls();
});
refreshLiveCalls();

/** A party of a call (name and number) with the number's "Call" button. */
export function partyCell(p, context = {}) {
  if (!p) return "";
  const number = p.number || p.e164 || "";
  const name = p.name || p.display_name || "";
  if (!number) return name;
  return el("span", { class: "party" }, name ? `${name} ` : "", phoneNumber(number, context));
}

/** "5 min ago" in the user's language. */
export function timeSince(iso, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  const format = new Intl.RelativeTimeFormat(document.documentElement.lang || "en", { numeric: "auto" });
  if (seconds < 60) return format.format(-seconds, "second");
  if (seconds < 3600) return format.format(-Math.floor(seconds / 60), "minute");
  if (seconds < 86400) return format.format(-Math.floor(seconds / 3600), "hour");
  return format.format(-Math.floor(seconds / 86400), "day");
}

/** Columns of a missed-calls list: the number with its call-back button, and the time since. */
export const missedColumns = [
  (item) => phoneNumber(item.number || item.e164 || "", { missed_call_id: item.id }),
  (item) => item.caller_name || "",
  (item) => formatNumber(item.missed_count),
  (item) =>
    el(
      "time",
      { datetime: item.last_missed_at, title: formatDateTime(item.last_missed_at) },
      timeSince(item.last_missed_at),
    ),
];

