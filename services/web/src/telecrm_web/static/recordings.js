// A call's recordings, played in the page: a "Play recording" button in a call's row opens an
// <audio> player per recording (the audio comes through /api/recordings/<id>/audio, which answers
// ranges, so the player can seek), a download link, and for administrators a delete button.
import { api, el, formatDuration, t } from "./common.js";

let administrator = null;

/** Whether the user may delete recordings (calls lets only administrators), asked once per page. */
function mayDelete() {
  administrator ??= api("/api/session")
    .then(({ body }) => Boolean(body.is_admin))
    .catch(() => false);
  return administrator;
}

/** The play button of a call with a recording (null without one): for a cell of a call log row. */
export function recordingControl(call) {
  if (!call.has_recording) return null;
  const holder = el("span", { class: "recording", dataset: { callId: call.call_id } });
  const button = el("button", { type: "button", class: "recording-play" }, t("recording_play"));
  button.addEventListener("click", () => openPlayers(call.call_id, holder, button));
  holder.append(button);
  return holder;
}

async function openPlayers(callId, holder, button) {
  button.disabled = true;
  holder.querySelector(".recording-error")?.remove();
  try {
    const [{ body }, deletable] = await Promise.all([
      api(`/api/calls/${encodeURIComponent(callId)}/recordings`),
      mayDelete(),
    ]);
    holder.replaceChildren(...body.items.map((recording) => player(recording, deletable)));
    const first = holder.querySelector("audio");
    if (first) {
      first.focus();
      first.play().catch(() => {}); // the user can still press the player's own play
    }
  } catch (error) {
    if (error.status === 401) return;
    button.disabled = false;
    const text = error.status === 404 ? t("recording_gone") : t("load_failed", { error: error.message });
    holder.append(el("span", { class: "recording-error error", role: "status" }, text));
  }
}

function player(recording, deletable) {
  const label =
    recording.duration_seconds === null || recording.duration_seconds === undefined
      ? t("recording_label")
      : t("recording_label_duration", { duration: formatDuration(recording.duration_seconds) });
  const audio = el("audio", { controls: true, preload: "metadata", src: recording.urls.audio, "aria-label": label });
  const download = el("a", { class: "recording-download", href: recording.urls.download, download: "" }, t("recording_download"));
  const box = el("span", { class: "player", dataset: { recordingId: recording.recording_id } }, audio, download);
  if (deletable) box.append(deleteButton(recording, box, audio));
  return box;
}

function deleteButton(recording, box, audio) {
  const button = el("button", { type: "button", class: "recording-delete" }, t("recording_delete"));
  button.addEventListener("click", async () => {
    if (!window.confirm(t("recording_delete_confirm"))) return;
    button.disabled = true;
    try {
      await api(`/api/recordings/${encodeURIComponent(recording.recording_id)}`, { method: "DELETE" });
      audio.pause();
      box.replaceChildren(el("span", { class: "muted", role: "status" }, t("recording_deleted")));
    } catch (error) {
      if (error.status === 401) return;
      button.disabled = false;
      box.append(el("span", { class: "error", role: "status" }, error.message));
    }
  });
  return button;
}
