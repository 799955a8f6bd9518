// The live broadcast page (/live/{room}): plays the HLS programme and shows its banner.
//
// hls.js (vendored) over Media Source Extensions, else the browser's native HLS (iOS). The banner comes from programme.json, polled every 2 s: who is shown
// and has the floor, their venue, the agenda item, the gallery question on screen.
// A `token` broadcast's page was opened with ?token=…; the server answered with a cookie
// scoped to /live/{room}, so the playlist and segments need nothing more here.

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

applyI18n();
mountLangSwitch(document.getElementById("lang-switch"));
onLangChange(render);
poll();
