// The live broadcast page (/live/{room}): plays the HLS programme and shows its banner.
//
// hls.js (vendored) over Media Source Extensions, else the browser's native HLS (iOS). The banner comes from programme.json, polled every 2 s: who is shown
// and has the floor, their venue, the agenda item, the gallery question on screen.
// A `token` broadcast's page was opened with ?token=…; the server answered with a cookie
// scoped to /live/{room}, so the playlist and segments need nothing more here.
// A viewer may also ask to speak (连线申请, below): invited by a host, the page enters the
// room and goes on stage.

import { applyI18n, errorText, mountLangSwitch, t, onLangChange } from "./i18n.js";

const room = decodeURIComponent(location.pathname.split("/")[2] || "");
const base = `/live/${encodeURIComponent(room)}`;
const video = document.getElementById("live-video");
const statusLine = document.getElementById("live-status");
let lastProgramme = null;
let playerStarted = false;

/** Decoded frames so far (what a test or a curious viewer can read). */
export function decodedFrames() {
  const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
  return quality ? quality.totalVideoFrames : 0;
}
window.yitangLive = { decodedFrames, programme: () => lastProgramme };

async function startPlayer() {
  if (playerStarted) return;
  const playlist = `${base}/index.m3u8`;
  // The worker needs a few seconds for its first segment: start once the playlist exists
  // (the next poll asks again), so the player never gives up on a 404.
  const probe = await fetch(playlist, { method: "HEAD", cache: "no-cache" });
  if (!probe.ok || playerStarted) return;
  playerStarted = true;
  // hls.js over Media Source Extensions wherever MSE exists (recent Chromium also says
  // "maybe" to HLS natively, but does not play this playlist); native HLS elsewhere (iOS).
  const { default: Hls } = await import("/static/vendor/hls.light.min.mjs");
  if (Hls.isSupported()) {
    // No web worker: the page's CSP allows scripts from 'self' only, not blob: workers.
    const hls = new Hls({ enableWorker: false, liveSyncDurationCount: 2 });
    hls.loadSource(playlist);
    hls.attachMedia(video);
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else {
        // The playlist went away (the broadcast restarted or moved): start over at the
        // next poll.
        hls.destroy();
        playerStarted = false;
      }
    });
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = playlist;
  } else {
    statusLine.textContent = t("live.no_player");
    return;
  }
  video.play().catch(() => {});
}

function render() {
  const p = lastProgramme;
  const speaker = document.getElementById("live-speaker");
  const venue = document.getElementById("live-venue");
  if (!p) return;
  document.getElementById("live-title").textContent = p.title || t("live.heading");
  speaker.textContent = p.speaker ? p.speaker.name : "";
  venue.textContent = p.speaker && p.speaker.venue ? p.speaker.venue : "";
  document.getElementById("live-agenda").textContent = p.agenda || "";
  const galleryRow = document.getElementById("live-gallery-row");
  galleryRow.hidden = !p.gallery;
  document.getElementById("live-gallery").textContent = p.gallery || "";
  const states = { ended: "live.ended", failed: "live.failed" };
  statusLine.textContent = states[p.state] ? t(states[p.state]) : p.paused ? t("live.paused") : "";
}

async function poll() {
  try {
    const response = await fetch(`${base}/programme.json`, { cache: "no-cache" });
    if (response.ok) {
      lastProgramme = await response.json();
      render();
      if (lastProgramme.state === "live") await startPlayer();
    }
  } catch {
    /* the next poll tries again */
  }
  setTimeout(poll, 2000);
}

// A question or opinion for the moderators (shown only once they approve it).
document.getElementById("live-ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = document.getElementById("live-ask-status");
  const text = document.getElementById("live-ask-text");
  const body = { text: text.value };
  for (const [field, id] of [["name", "live-ask-name"], ["district", "live-ask-district"]]) {
    const value = document.getElementById(id).value.trim();
    if (value) body[field] = value;
  }
  try {
    const response = await fetch(`${base}/questions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (response.ok) {
      text.value = "";
      status.textContent = t("live.ask_sent");
    } else {
      const error = (await response.json()).error || {};
      status.textContent = errorText(error.code, error.message);
    }
  } catch {
    status.textContent = t("live.ask_failed");
  }
});

// --- asking to speak (连线申请) -------------------------------------------------------------
//
// The request goes to the hosts; the answer says a handle that only this page knows (kept
// in sessionStorage, so a reload keeps following it). The page asks how it stands every
// 2 s; when the host invites, the viewer accepts here and the page enters the room with
// the credential the server gives for that handle (once), where it takes the stage seat.

const CALL_IN_POLL_MS = 2000;
const callInKey = `yitang.callIn.${room}`;
const callIn = {
  form: document.getElementById("live-call-in-form"),
  invited: document.getElementById("live-call-in-invited"),
  status: document.getElementById("live-call-in-status"),
  cancel: document.getElementById("live-call-in-cancel"),
  accept: document.getElementById("live-call-in-accept"),
  decline: document.getElementById("live-call-in-decline"),
  enter: document.getElementById("live-call-in-enter"),
  handle: sessionStorage.getItem(callInKey),
  state: null,
  timer: null,
};
/** What the page shows for each state of its request (the open ones keep polling). */
const CALL_IN_TEXT = {
  pending: "live.call_in_pending",
  invited: null, // the invitation's own box says it
  accepted: "live.call_in_entering",
  on_stage: "live.call_in_entering",
  ended: "live.call_in_ended",
  declined: "live.call_in_declined",
  dismissed: "live.call_in_dismissed",
  expired: "live.call_in_expired",
  withdrawn: "live.call_in_withdrawn",
};
const CALL_IN_OPEN = new Set(["pending", "invited", "accepted", "on_stage"]);
window.yitangLive.callIn = () => callIn.state;

async function callInPost(path, body) {
  const response = await fetch(`${base}/call-ins${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    cache: "no-store",
  });
  const data = await response.json().catch(() => ({}));
  return { ok: response.ok, status: response.status, data };
}

function renderCallIn(errorMessage = "") {
  const state = callIn.state;
  const open = Boolean(callIn.handle) && CALL_IN_OPEN.has(state);
  callIn.form.hidden = open;
  callIn.invited.hidden = state !== "invited";
  callIn.cancel.hidden = !open || state === "invited" || state === "on_stage";
  document.body.dataset.callIn = state || "";
  callIn.status.textContent = errorMessage || (CALL_IN_TEXT[state] ? t(CALL_IN_TEXT[state]) : "");
  // Accepted, but back here before entering (the Back button): the way in again.
  const joinUrl = state === "accepted" ? sessionStorage.getItem(`${callInKey}.join`) : null;
  callIn.enter.hidden = !joinUrl;
  if (joinUrl) callIn.enter.href = joinUrl;
}

function forgetCallIn() {
  callIn.handle = null;
  sessionStorage.removeItem(callInKey);
  sessionStorage.removeItem(`${callInKey}.join`);
  clearTimeout(callIn.timer);
}

async function pollCallIn() {
  clearTimeout(callIn.timer);
  if (!callIn.handle) return;
  if (lastProgramme?.state === "ended") {
    // The session is over: so is the request (the banner says so).
    forgetCallIn();
    callIn.state = null;
    renderCallIn(t("live.ended"));
    return;
  }
  try {
    const { ok, status, data } = await callInPost("/status", { handle: callIn.handle });
    if (ok) {
      callIn.state = data.status;
      renderCallIn();
      if (!CALL_IN_OPEN.has(data.status)) {
        forgetCallIn();
        return;
      }
    } else if (status === 404 && data.error?.code === "call_in_not_found") {
      forgetCallIn(); // another session's, or gone with the session
      callIn.state = null;
      renderCallIn();
      return;
    }
  } catch {
    /* the next poll asks again */
  }
  callIn.timer = setTimeout(pollCallIn, CALL_IN_POLL_MS);
}

callIn.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { name: document.getElementById("live-call-in-name").value.trim() };
  const district = document.getElementById("live-call-in-district").value.trim();
  const note = document.getElementById("live-call-in-note").value.trim();
  if (district) body.district = district;
  if (note) body.note = note;
  try {
    const { ok, data } = await callInPost("", body);
    if (!ok) {
      renderCallIn(errorText(data.error?.code, data.error?.message));
      return;
    }
    callIn.handle = data.handle;
    sessionStorage.setItem(callInKey, data.handle);
    callIn.state = data.status;
    renderCallIn();
    callIn.timer = setTimeout(pollCallIn, CALL_IN_POLL_MS);
  } catch {
    renderCallIn(t("live.ask_failed"));
  }
});

callIn.accept.addEventListener("click", async () => {
  callIn.accept.disabled = true;
  try {
    const { ok, data } = await callInPost("/accept", { handle: callIn.handle });
    if (!ok) {
      renderCallIn(errorText(data.error?.code, data.error?.message));
      pollCallIn();
      return;
    }
    callIn.state = "accepted";
    sessionStorage.setItem(`${callInKey}.join`, data.join_url);
    renderCallIn();
    // The room, with the device check (camera and microphone); the seat waits there.
    location.assign(data.join_url);
  } finally {
    callIn.accept.disabled = false;
  }
});

async function withdrawCallIn() {
  const { ok, data } = await callInPost("/decline", { handle: callIn.handle });
  if (ok) {
    callIn.state = data.status;
    forgetCallIn();
  }
  renderCallIn(ok ? "" : errorText(data.error?.code, data.error?.message));
}
callIn.decline.addEventListener("click", withdrawCallIn);
callIn.cancel.addEventListener("click", withdrawCallIn);

applyI18n();
mountLangSwitch(document.getElementById("lang-switch"));
onLangChange(() => {
  render();
  renderCallIn();
});
poll();
pollCallIn();
