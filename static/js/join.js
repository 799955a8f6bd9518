// The join page: pre-join device check, then the room. This module wires the parts together:
// RoomConnection (signaling) → SessionStore (model) → RoomView (screen), with MediaClient
// (WebRTC) on the side — signaling features work even when media does not.

import { applyI18n, errorText, mountLangSwitch, onLangChange, roleLabel, t } from "./i18n.js";
import { decodeJwtPayload, h, loadFlag, saveFlag, PUBLISHING_ROLES } from "./util.js";
import { RoomConnection } from "./signaling.js";
import { SessionStore } from "./state.js";
import { MediaClient } from "./media.js";
import { MediaRecovery } from "./recovery.js";
import { QualityNotice, VideoViewReporter } from "./quality-tiers.js";
import { LocalPin } from "./local-pin.js";
import { computeQualities } from "./quality.js";
import { DevicePreview } from "./devices.js";
import { RoomView, showEndedScreen } from "./room-view.js";
import { bindSuggestionForm, setupPrejoinSuggestion } from "./suggestions.js";
import { Banner, Toasts, confirmDialog, promptDialog } from "./notify.js";
import { ConnectionCheck } from "./precheck.js";
import { StageClient } from "./stage.js";

const STATS_INTERVAL_MS = 2000;
/** Identities per `admit`/`deny` event (the server takes at most 50). */
const LOBBY_BATCH = 50;

const token = new URLSearchParams(location.search).get("token");
/** Opened from the live broadcast page after accepting a host's invitation (连线): the
 * device check takes the camera and microphone, and the page takes the stage seat
 * waiting for it (the server decides all that; this only shapes the page). */
const callInPage = new URLSearchParams(location.search).get("call_in") === "1";
const claims = token ? decodeJwtPayload(token) : null;
const prefs = {
  autoUnmute: loadFlag("yitang.autoUnmute", true),
  enterMicMuted: loadFlag("yitang.enterMicMuted", claims?.role !== "host"),
  enterCamOff: loadFlag("yitang.enterCamOff", false),
  handSound: loadFlag("yitang.handSound", true),
};

const banner = new Banner(document.getElementById("banner"));
const toasts = new Toasts(document.getElementById("toasts"));
const connStatus = document.getElementById("conn-status");

applyI18n();
mountLangSwitch(document.getElementById("lang-switch"));
onLangChange(() => {
  banner.refresh();
  setConnStatus(connStatus.dataset.state);
});

function setConnStatus(state) {
  connStatus.dataset.state = state;
  connStatus.querySelector(".conn-text").textContent = t(`conn.${state}`);
}

// --- pre-join ---------------------------------------------------------------------------

let preview = null;
let previewReady = Promise.resolve(null);

/** How long the link check may take before the page goes on without it. */
const LINK_CHECK_TIMEOUT_MS = 5000;
/** Codes of a join-link check that mean the link will not work: said at once. */
const LINK_REFUSALS = new Set(["token_missing", "token_invalid", "token_expired", "token_replaced", "room_not_found", "session_ended", "removed"]);

/**
 * Ask the server about the link before the device check (POST /api/join/check): the
 * session's title and state when it is good, the reason when it is not. When the server
 * cannot answer now, the page goes on and the join itself will tell.
 */
async function checkLink() {
  try {
    const response = await fetch("/api/join/check", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
      // A server too busy to answer soon does not keep the device check waiting.
      signal: AbortSignal.timeout(LINK_CHECK_TIMEOUT_MS),
    });
    const body = await response.json().catch(() => null);
    if (response.ok) return { info: body };
    const error = body?.error || {};
    if (LINK_REFUSALS.has(error.code)) return { refused: { code: error.code, message: error.message || "" } };
    if (response.status === 422) return { refused: { code: "token_invalid", message: "" } };
  } catch {
    /* unreachable now: go on, the join will say */
  }
  return { info: null };
}

function setupPrejoin(info) {
  document.getElementById("prejoin-checking").hidden = true;
  document.getElementById("enter-button").disabled = false;
  const who = document.getElementById("prejoin-who");
  const session = document.getElementById("prejoin-session");
  const renderWho = () => {
    const name = info?.name || claims?.name || claims?.sub;
    const role = roleLabel(info?.role || claims?.role);
    who.textContent = claims ? t("prejoin.who", { name, role }) : "";
    if (info?.venue_name) who.textContent += ` · ${info.venue_name}`;
    who.title = who.textContent;
  };
  renderWho();
  onLangChange(renderWho);
  // The pre-session connection check: the venue's staff run it before entering.
  new ConnectionCheck(document.getElementById("precheck"), token);
  if (info?.title) {
    session.textContent = info.title;
    session.title = info.title;
    session.hidden = false;
  }
  // Everyone is told before entering that the session is being recorded.
  document.getElementById("prejoin-recording").hidden = !info?.recording;
  document.getElementById("prejoin-lobby").hidden = !info?.lobby;
  setupPrejoinSuggestion(document.getElementById("prejoin-suggestion"), info, token);
  if (claims?.exp && claims.exp * 1000 < Date.now()) {
    const warning = document.getElementById("prejoin-warning");
    warning.dataset.i18n = "prejoin.token_expired_local";
    warning.textContent = t("prejoin.token_expired_local");
    warning.hidden = false;
  }
  const canPublish = PUBLISHING_ROLES.has(claims?.role) || callInPage;
  document.body.dataset.role = claims?.role || "";
  if (!canPublish) {
    document.getElementById("observer-note").hidden = claims?.role !== "observer";
  } else {
    document.getElementById("device-setup").hidden = false;
    const micMuted = document.getElementById("enter-mic-muted");
    const camOff = document.getElementById("enter-cam-off");
    const autoUnmute = document.getElementById("prejoin-auto-unmute");
    micMuted.checked = prefs.enterMicMuted;
    camOff.checked = prefs.enterCamOff;
    autoUnmute.checked = prefs.autoUnmute;
    document.getElementById("prejoin-auto-unmute-label").hidden = claims?.role === "host";
    micMuted.addEventListener("change", () => saveFlag("yitang.enterMicMuted", (prefs.enterMicMuted = micMuted.checked)));
    camOff.addEventListener("change", () => {
      saveFlag("yitang.enterCamOff", (prefs.enterCamOff = camOff.checked));
      document.getElementById("preview-off").hidden = !camOff.checked;
    });
    document.getElementById("preview-off").hidden = !camOff.checked;
    autoUnmute.addEventListener("change", () => saveFlag("yitang.autoUnmute", (prefs.autoUnmute = autoUnmute.checked)));
    startPreview();
  }
  const enter = document.getElementById("enter-button");
  enter.addEventListener("click", async () => {
    enter.disabled = true;
    enter.dataset.i18n = "prejoin.entering";
    enter.textContent = t("prejoin.entering");
    await previewReady;
    enterRoom(preview ? preview.take() : null);
  });
}

function startPreview() {
  const cameraSelect = document.getElementById("camera-select");
  const micSelect = document.getElementById("mic-select");
  const errorEl = document.getElementById("device-error");
  preview = new DevicePreview({ videoEl: document.getElementById("preview-video"), meterEl: document.getElementById("mic-meter") });
  const fill = (select, devices, selected) => {
    const options = devices.map((d, i) =>
      h("option", { value: d.deviceId, selected: d.deviceId === selected, text: d.label || t("prejoin.device_unnamed", { n: i + 1 }) }),
    );
    select.replaceChildren(...(options.length ? options : [h("option", { value: "", text: t("prejoin.device_none") })]));
    select.disabled = !devices.length;
    if (selected) select.value = selected;
  };
  preview.on("devices", ({ cameras, microphones, cameraId, micId }) => {
    fill(cameraSelect, cameras, cameraId);
    fill(micSelect, microphones, micId);
  });
  preview.on("error", (err) => {
    errorEl.textContent = t("prejoin.device_error", { message: err?.message || err?.name || "" });
    errorEl.hidden = false;
  });
  preview.on("stream", (stream) => {
    if (stream) errorEl.hidden = true;
    else if (errorEl.hidden) {
      errorEl.textContent = t("prejoin.no_devices");
      errorEl.hidden = false;
    }
  });
  cameraSelect.addEventListener("change", () => (previewReady = preview.choose({ cameraId: cameraSelect.value })));
  micSelect.addEventListener("change", () => (previewReady = preview.choose({ micId: micSelect.value })));
  previewReady = preview.start().catch(() => null);
}

// --- the room ---------------------------------------------------------------------------

function enterRoom(stream) {
  document.getElementById("prejoin").hidden = true;
  document.body.dataset.phase = "room";
  const conn = new RoomConnection(token);
  const store = new SessionStore();
  const media = new MediaClient({ call: (event, payload) => conn.call(event, payload) });
  // Before the page's own "joined" handler publishes: new connections use the fresh servers.
  conn.on("joined", ({ iceServers, iceServersExpireAt }) => media.setIceServers(iceServers, iceServersExpireAt));
  // One who comes to speak on stage enters with both on (it publishes only on stage).
  if (stream && callInPage) media.setLocalStream(stream, { audioEnabled: true, videoEnabled: true });
  else if (stream) media.setLocalStream(stream, { audioEnabled: !prefs.enterMicMuted, videoEnabled: !prefs.enterCamOff });

  // Quality per receiver: our link's notice, whom we pinned and whether our tiles are on screen.
  const qualityNotice = new QualityNotice(document.querySelector("#room .stage-area"));
  const pin = new LocalPin();
  const tileAreas = [document.getElementById("tile-groups"), document.getElementById("host-slot")];
  const viewReporter = new VideoViewReporter(tileAreas, (payload) => (conn.ready ? conn.call("video_view", payload) : null));

  let view = null;
  let statsTimer = null;
  /** Times both connections were rebuilt while signaling stayed up (tests read it). */
  let mediaRestarts = 0;
  let myGrant = null; // grant_id of a floor we hold
  let autoOpened = false;
  let mediaOwner = null; // the room's owner our peer connections were made with
  const dialog = document.getElementById("confirm-dialog");
  const canPublish = () => PUBLISHING_ROLES.has(store.you?.role);
  // A guest sends media only while it holds the floor (stage.js publishes when it comes).
  const publishesNow = () => store.you?.role !== "guest" || store.live?.floor?.identity === store.myIdentity;

  /** Send an event; on refusal show why and resolve null. */
  async function run(event, payload = {}) {
    try {
      return await conn.call(event, payload);
    } catch (err) {
      // The session ended (or we left) while waiting: the final screen says it all.
      if (conn.ended || err.code === "ended") return null;
      toasts.show(errorText(err.code, err.serverMessage), { kind: "error", id: `error-${event}` });
      return null;
    }
  }

  async function syncMediaState() {
    if (!canPublish() || !conn.ready) return;
    const audioMuted = !(media.hasAudio && media.audioEnabled);
    const videoMuted = !(media.hasVideo && media.videoEnabled);
    const you = store.participants.get(store.myIdentity);
    if (you && you.audio_muted === audioMuted && you.video_muted === videoMuted) return;
    await run("media_state", { audio_muted: audioMuted, video_muted: videoMuted });
  }

  const actions = {
    toggleMic() {
      media.setAudioEnabled(!media.audioEnabled);
      autoOpened = false;
      syncMediaState();
      view.schedule();
    },
    toggleCam() {
      media.setVideoEnabled(!media.videoEnabled);
      syncMediaState();
      view.schedule();
    },
    async toggleHand() {
      const raised = (store.live?.queue || []).includes(store.myIdentity);
      const ack = await run(raised ? "lower_hand" : "raise_hand");
      if (ack?.live) store.apply("live_state", ack.live);
    },
    async yieldFloor() {
      const ack = await run("revoke_floor");
      if (ack?.live) store.apply("live_state", ack.live);
    },
    setAutoUnmute(value) {
      prefs.autoUnmute = value;
      saveFlag("yitang.autoUnmute", value);
    },
    async sendChat(text) {
      return Boolean(await run("chat", { text }));
    },
    /** Share a screen (or window), or stop sharing it. */
    async toggleShare() {
      if (media.screenTrack) {
        await media.stopScreen();
        await run("stop_screen_share");
        view.schedule();
        return;
      }
      let track;
      try {
        const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
        track = stream.getVideoTracks()[0];
      } catch {
        return; // the user chose nothing
      }
      if (!track) return;
      // The browser's own "stop sharing" ends it as well.
      track.addEventListener("ended", () => {
        if (media.screenTrack === track) actions.toggleShare();
      });
      try {
        await media.shareScreen(track);
      } catch (err) {
        await media.stopScreen();
        toasts.show(t("media.share_failed", { message: errorText(err.code, err.serverMessage) }), { kind: "error", id: "share-failed" });
        return;
      }
      if (!(await run("start_screen_share"))) await media.stopScreen();
      view.schedule();
    },
    floorWarning(floor) {
      const mine = floor.identity === store.myIdentity;
      const text = mine ? t("floor.warning_self") : t("floor.warning_host", { name: store.displayName(floor.identity) });
      toasts.show(text, { kind: "warn", id: "floor-warning", ms: 8000 });
    },
    async leave() {
      await conn.leave();
      stopEverything();
      view.showEnded({ titleKey: "ended.left_title", textKey: "ended.left_text", rejoin: true });
    },
    /** Micro-suggestions: members, co-hosts and the host submit; the server says who sees them. */
    suggestions: {
      async submit(fields) {
        const ack = await run("suggestion_submit", fields);
        if (ack?.suggestion) {
          store.apply("suggestion", { suggestion: ack.suggestion });
          toasts.show(t("suggestions.sent"), { kind: "ok", id: "suggestion-sent" });
        }
        return Boolean(ack);
      },
    },
    /** The public gallery: post (anyone), and moderate (hosts, co-hosts, moderators). */
    gallery: {
      async post(fields) {
        const ack = await run("gallery_post", fields);
        if (ack) toasts.show(t("gallery.sent"), { kind: "ok", id: "gallery-sent" });
        return Boolean(ack);
      },
      async approve(id) {
        const ack = await run("gallery_approve", { id });
        if (ack?.item) store.apply("gallery_queue", { item: ack.item });
      },
      async reject(id) {
        const ack = await run("gallery_reject", { id });
        if (ack?.item) store.apply("gallery_queue", { item: ack.item });
      },
      async answer(id) {
        const item = store.galleryQueue.get(id) || store.gallery.get(id);
        const text = await promptDialog(document.getElementById("prompt-dialog"), {
          title: t("gallery.answer_title"),
          text: item ? item.text : "",
          value: item?.answer || "",
          confirm: t("gallery.answer"),
          maxLength: 500,
        });
        if (!text) return;
        const ack = await run("gallery_answer", { id, text });
        if (ack?.item) store.apply("gallery_queue", { item: ack.item });
      },
      async show(id) {
        await run("gallery_show", { id });
      },
    },
    host: {
      async grant(identity, seconds) {
        const payload = seconds ? { identity, time_limit_seconds: seconds } : { identity };
        const ack = await run("grant_floor", payload);
        if (ack?.live) store.apply("live_state", ack.live);
      },
      async skip(identity) {
        const ack = await run("lower_hand", { identity });
        if (ack?.live) store.apply("live_state", ack.live);
      },
      async revoke() {
        const ack = await run("revoke_floor");
        if (ack?.live) store.apply("live_state", ack.live);
      },
      async next(seconds) {
        const ack = await run("next_speaker", seconds ? { time_limit_seconds: seconds } : {});
        if (ack?.live) store.apply("live_state", ack.live);
      },
      async advance(index) {
        const ack = await run("advance_agenda", index === null || index === undefined ? {} : { index });
        if (ack?.live) store.apply("live_state", ack.live);
      },
      async setLock(locked) {
        const ack = await run("set_lock", { locked });
        if (ack?.live) store.apply("live_state", ack.live);
      },
      // The live broadcast (rooms with broadcast public or token).
      async setBroadcastPaused(paused) {
        const ack = await run(paused ? "broadcast_pause" : "broadcast_resume");
        if (ack?.live) store.apply("live_state", ack.live);
      },
      async setRecording(on) {
        // Everyone will be told they are recorded: the host confirms first.
        if (on) {
          const ok = await confirmDialog(dialog, {
            title: t("host.record_confirm_title"),
            text: t("host.record_confirm_text"),
            confirm: t("host.record_start"),
          });
          if (!ok) return;
        }
        if (await run(on ? "start_recording" : "stop_recording")) {
          toasts.show(t(on ? "host.record_started" : "host.record_stopped"));
        }
      },
      async muteAll() {
        const ack = await run("mute_all");
        if (ack) toasts.show(t("host.muted_all", { n: ack.muted.length }), { id: "muted-all" });
      },
      async stopShare() {
        const ack = await run("stop_screen_share");
        if (ack?.live) store.apply("live_state", ack.live);
      },
      async pin(identity) {
        const ack = await run("pin", { identity });
        if (ack?.live) store.apply("live_state", ack.live);
      },
      async moveInQueue(identity, position) {
        const ack = await run("move_in_queue", { identity, position });
        if (ack?.live) store.apply("live_state", ack.live);
      },
      async extend(seconds) {
        const ack = await run("extend_floor", { seconds });
        if (ack?.live) store.apply("live_state", ack.live);
      },
      async rename(identity) {
        const current = store.displayName(identity);
        const name = await promptDialog(document.getElementById("prompt-dialog"), {
          title: t("host.rename_title"),
          text: t("host.rename_text", { name: current }),
          value: current,
          confirm: t("people.rename"),
        });
        if (name && name !== current) {
          const ack = await run("rename_participant", { identity, name });
          if (ack?.participant) store.apply("participant_updated", ack.participant);
        }
      },
      handSound: () => prefs.handSound,
      setHandSound(value) {
        prefs.handSound = value;
        saveFlag("yitang.handSound", value);
      },
      // At most 50 per event (the server's limit): a long lobby goes in several.
      async admit(identities) {
        for (let i = 0; i < identities.length; i += LOBBY_BATCH) await run("admit", { identities: identities.slice(i, i + LOBBY_BATCH) });
      },
      async deny(identities) {
        for (let i = 0; i < identities.length; i += LOBBY_BATCH) await run("deny", { identities: identities.slice(i, i + LOBBY_BATCH) });
      },
      async requestMute(identity, kind) {
        if (await run("request_mute", { identity, kind })) {
          toasts.show(t("host.mute_sent", { name: store.displayName(identity), kind: t(`kind.${kind}`) }));
        }
      },
      async remove(identity) {
        const name = store.displayName(identity);
        const ok = await confirmDialog(dialog, {
          title: t("host.remove_confirm_title"),
          text: t("host.remove_confirm_text", { name }),
          confirm: t("people.remove"),
          danger: true,
        });
        if (ok && (await run("remove_participant", { identity }))) {
          toasts.show(t("host.removed_done", { name }));
        }
      },
      async end() {
        const ok = await confirmDialog(dialog, {
          title: t("host.end_confirm_title"),
          text: t("host.end_confirm_text"),
          confirm: t("host.end"),
          danger: true,
        });
        if (ok) await run("end_session");
      },
    },
  };

  // The stage (连线): the invited observer's prompt, a guest's publishing, the host's buttons.
  const stage = new StageClient({ store, media, run, toasts, callIn: callInPage, onChange: () => view?.schedule() });
  actions.host.stage = stage;

  view = new RoomView({ store, media, actions, prefs, pin, videoView: viewReporter, toasts });
  view.mount();

  document.getElementById("chat-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = document.getElementById("chat-input");
    const text = input.value.trim();
    if (!text) return;
    input.disabled = true;
    const sent = await actions.sendChat(text);
    input.disabled = false;
    if (sent) input.value = "";
    input.focus();
  });

  bindSuggestionForm(document.getElementById("suggestion-form"), actions.suggestions.submit);

  document.getElementById("gallery-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const text = form.elements.text.value.trim();
    if (!text) return;
    const fields = { kind: form.elements.kind.value, text };
    // Empty name and district are left out (the server takes only non-empty ones).
    for (const key of ["name", "district"]) {
      const value = form.elements[key].value.trim();
      if (value) fields[key] = value;
    }
    form.elements.text.disabled = true;
    const sent = await actions.gallery.post(fields);
    form.elements.text.disabled = false;
    if (sent) form.elements.text.value = "";
  });

  // --- a shared screen ------------------------------------------------------------------------
  let sharingLive = false; // the session shows my screen
  store.on("change", (kind) => {
    if (kind !== "live" && kind !== "snapshot") return;
    const screen = store.live?.screen || null;
    media.setScreenTrack(screen && screen.identity !== store.myIdentity ? screen.track : null);
    const mine = Boolean(screen && screen.identity === store.myIdentity);
    if (sharingLive && !mine && media.screenTrack) {
      // A host stopped it, or my turn ended: stop sending it too.
      media.stopScreen();
      toasts.show(t("media.share_stopped"), { id: "share-stopped" });
    }
    sharingLive = mine;
  });
  media.on("screen-lost", () => {
    if (sharingLive) run("stop_screen_share");
    view.schedule();
  });

  // --- floor changes that concern me -------------------------------------------------------
  store.on("change", (kind) => {
    if (kind !== "live" && kind !== "snapshot") return;
    const floor = store.live?.floor;
    const mine = floor && floor.identity === store.myIdentity ? floor.grant_id : null;
    if (mine && mine !== myGrant) onFloorGained();
    if (!mine && myGrant) onFloorLost();
    myGrant = mine;
  });

  function onFloorGained() {
    if (store.isHost) return;
    let key = "floor.you_have";
    if (media.hasAudio && !media.audioEnabled) {
      if (prefs.autoUnmute) {
        media.setAudioEnabled(true);
        autoOpened = true;
        syncMediaState();
        key = "floor.you_have_mic";
      } else {
        key = "floor.you_have_hint";
      }
    }
    toasts.show(t(key), { kind: "ok", id: "floor-gained", ms: 6000 });
    view.schedule();
  }

  function onFloorLost() {
    if (store.isHost) return;
    if (autoOpened && media.audioEnabled) {
      media.setAudioEnabled(false);
      syncMediaState();
    }
    autoOpened = false;
    toasts.show(t("floor.ended"), { id: "floor-ended" });
    view.schedule();
  }

  // --- signaling ----------------------------------------------------------------------------
  conn.on("status", (state) => {
    setConnStatus(state);
    if (state === "reconnecting") banner.show("banner.reconnecting", "warn");
    // Our own indicator follows the signaling connection at once (stats come every 2 s).
    if (state !== "connected") view.qualities.self = "offline";
    else if (view.qualities.self === "offline") view.qualities.self = "unknown";
    view.schedule();
  });

  // Waiting in the lobby: a page of its own until a host lets us in (no reload needed).
  conn.on("lobby", () => {
    document.body.dataset.phase = "lobby";
    document.getElementById("room").hidden = true;
    const lobbyWho = document.getElementById("lobby-who");
    const title = document.getElementById("prejoin-session").textContent;
    const who = document.getElementById("prejoin-who").textContent;
    lobbyWho.textContent = title ? `${title} · ${who}` : who;
    document.getElementById("lobby-wait").hidden = false;
  });
  document.getElementById("lobby-leave").addEventListener("click", () => {
    stopEverything();
    view.showEnded({ titleKey: "ended.left_title", textKey: "ended.left_text", rejoin: true });
  });

  conn.on("joined", ({ snapshot, rejoin, offsetMs }) => {
    if (document.body.dataset.phase === "lobby") {
      document.body.dataset.phase = "room";
      document.getElementById("lobby-wait").hidden = true;
      document.getElementById("room").hidden = false;
      toasts.show(t("lobby.admitted"), { kind: "ok", id: "admitted" });
    }
    store.reset(snapshot, offsetMs);
    mediaOwner = snapshot.owner ? snapshot.owner.id : null;
    if (rejoin) banner.show("banner.reconnected", "ok", 4000);
    else banner.hide();
    if (!canPublish() && media.localStream) {
      for (const track of media.localStream.getTracks()) track.stop();
      media.localStream = null;
    }
    syncMediaState();
    startMedia(rejoin);
    startStats();
    qualityNotice.update({ level: "full", paused: 0 });
    // A (re)joined media session starts from the default view: send ours (our pin is kept
    // for the tab, unless whom we pinned is gone).
    pin.load(store.room.id, store.myIdentity);
    viewReporter.setPinned(view.pinnedView(), { send: false });
    viewReporter.resend();
  });

  conn.on("event", (name, payload) => {
    switch (name) {
      case "subscriber_offer":
        media.handleSubscriberOffer(payload);
        break;
      case "ice_candidate":
        media.handleIceCandidate(payload);
        break;
      case "mute_requested":
        onMuteRequested(payload);
        break;
      case "video_quality":
        qualityNotice.update(payload);
        break;
      case "publisher_hint":
        media.applyPublisherHint(payload);
        break;
      case "reconnect_media":
        // The control room saw trouble on our link: rebuild both peer connections now.
        restartMedia();
        break;
      case "lobby": {
        const before = new Set(store.lobby.map((w) => w.identity));
        store.apply(name, payload);
        const arrived = store.lobby.filter((w) => !before.has(w.identity));
        if (arrived.length) {
          toasts.show(t("lobby.arrived", { name: arrived.map((w) => w.name).join(t("list.separator")), n: store.lobby.length }), { kind: "info", id: "lobby-arrived", ms: 8000 });
          if (prefs.handSound) chime();
        }
        break;
      }
      case "timeline":
        store.apply(name, payload);
        if (payload.type === "hand_raised" && store.runsQueues && payload.data?.identity !== store.myIdentity) {
          onHandRaised(payload);
        }
        break;
      case "recording_error":
        toasts.show(t("host.record_failed", { error: payload.error || "" }));
        break;
      case "recording":
        if (payload.resumed && payload.state === "recording" && store.isHost) {
          toasts.show(t("host.record_resumed"), { kind: "warn", id: "record-resumed", ms: 10000 });
        }
        store.apply(name, payload);
        break;
      case "resync":
        // We may have missed events (a server changed or came back): take the whole state.
        store.reset(payload.snapshot, store.offsetMs, { keepHistory: true });
        if (payload.media_reset) mediaOwner = null; // the server set our media up anew
        followOwner(payload.snapshot.owner);
        break;
      case "media_moved":
        followOwner(payload.owner);
        break;
      default:
        store.apply(name, payload);
    }
  });

  conn.on("fatal", (info) => {
    stopEverything();
    view.showEnded(endingFor(info));
  });

  /** A hand went up: the host and co-hosts hear of it at once, not only on the tab badge. */
  function onHandRaised(entry) {
    const name = entry.data?.name || store.displayName(String(entry.data?.identity || ""));
    toasts.show(t("host.hand_raised", { name }), { kind: "info", id: "hand-raised", ms: 6000 });
    if (prefs.handSound) chime();
  }

  function onMuteRequested({ kind }) {
    if (kind === "video") media.setVideoEnabled(false);
    else {
      media.setAudioEnabled(false);
      autoOpened = false;
    }
    syncMediaState();
    toasts.show(t(kind === "video" ? "mute.requested_video" : "mute.requested_audio"), { kind: "warn", id: "mute-requested", ms: 8000 });
    view.schedule();
  }

  // --- media ----------------------------------------------------------------------------------
  /** The room has a new owner (the old one failed or handed over): rebuild media with it. */
  function followOwner(owner) {
    if (!owner || owner.id === mediaOwner) return;
    mediaOwner = owner.id;
    banner.show("banner.media_restarting", "warn");
    startMedia(true).finally(() => banner.hide("banner.media_restarting"));
  }

  async function startMedia(rejoin) {
    // After a rejoin the server has replaced our media session: drop the old connections
    // (before the buffered events replay, so a fresh subscriber offer gets a new one).
    if (rejoin) {
      recovery.reset();
      media.reset();
    }
    try {
      if (canPublish() && publishesNow() && media.localStream) await media.publish();
    } catch (err) {
      toasts.show(t("media.publish_failed", { message: errorText(err.code, err.serverMessage) }), {
        kind: "error",
        id: "publish-failed",
        ms: 10000,
      });
    }
    view.schedule();
  }

  // A connection that failed, or stayed disconnected, is rebuilt with backoff (recovery.js);
  // the control room's "reconnect" goes the same way.
  const recovery = new MediaRecovery({ media, canRun: () => conn.ready });
  recovery.on("recovering", () => {
    mediaRestarts += 1;
    banner.show("banner.media_restarting", "warn");
  });
  recovery.on("recovered", () => banner.show("banner.media_restored", "ok", 3000));
  recovery.on("gave-up", () => banner.show("banner.media_lost", "error"));

  /** Rebuild both peer connections while signaling still works (asked by the server). */
  function restartMedia() {
    recovery.rebuild("asked");
  }
  media.on("publish", () => view.schedule());

  function startStats() {
    if (statsTimer) return;
    statsTimer = setInterval(async () => {
      let stats;
      try {
        stats = await media.collectStats();
      } catch {
        return;
      }
      const { qualities, details } = computeQualities(stats, store, conn.ready);
      view.setQualities(qualities, details);
    }, STATS_INTERVAL_MS);
  }

  function stopEverything() {
    clearInterval(statsTimer);
    statsTimer = null;
    recovery.close();
    media.close();
    conn.close();
    banner.hide();
    setConnStatus("closed");
  }

  window.yitang = {
    conn,
    store,
    media,
    recovery,
    view,
    actions,
    get socket() {
      return conn.socket;
    },
    get mediaRestarts() {
      return mediaRestarts;
    },
    call: (event, payload) => conn.call(event, payload),
  };
  conn.start();
}

let audioContext = null;

/** A short, soft two-note chime (Web Audio; silent where audio may not play yet). */
function chime() {
  try {
    audioContext = audioContext || new AudioContext();
    const now = audioContext.currentTime;
    for (const [i, freq] of [660, 880].entries()) {
      const osc = audioContext.createOscillator();
      const gain = audioContext.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + i * 0.15);
      gain.gain.exponentialRampToValueAtTime(0.15, now + i * 0.15 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.15 + 0.3);
      osc.connect(gain).connect(audioContext.destination);
      osc.start(now + i * 0.15);
      osc.stop(now + i * 0.15 + 0.32);
    }
    document.body.dataset.chimes = String(Number(document.body.dataset.chimes || 0) + 1);
  } catch {
    /* no audio: the notice is enough */
  }
}

/** The final screen for a refusal or an ending event. */
function endingFor(info) {
  const code = info.code;
  const payload = info.payload || {};
  if (code === "removed") {
    const reason = payload.reason;
    return {
      titleKey: "ended.removed_title",
      textKey: "ended.removed_text",
      detail: reason ? () => t("ended.removed_reason", { reason }) : "",
    };
  }
  if (code === "denied") return { titleKey: "lobby.denied_title", textKey: "lobby.denied_text" };
  if (code === "replaced") return { titleKey: "ended.replaced_title", textKey: "ended.replaced_text", rejoin: true };
  if (code === "session_ended") {
    return { titleKey: "ended.session_title", textKey: payload.reason === "deleted" ? "ended.deleted_text" : "ended.session_text" };
  }
  if (code === "server_disconnect") {
    return { titleKey: "ended.disconnected_title", textKey: "ended.disconnected_text", rejoin: true };
  }
  return { titleKey: "ended.refused_title", textKey: null, detail: () => errorText(code, info.message) };
}

document.getElementById("rejoin-button").addEventListener("click", () => location.reload());

if (!token) {
  showEndedScreen({ titleKey: "ended.refused_title", textKey: null, detail: () => t("prejoin.token_missing") });
} else {
  checkLink().then(({ info, refused }) => {
    if (refused) {
      // Said at once: no device check for a link that cannot work.
      showEndedScreen(endingFor(refused));
    } else {
      setupPrejoin(info);
    }
  });
}
