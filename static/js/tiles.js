// Video tiles: one participant's picture (or avatar), name, venue, level, mute/hand icons, a
// connection-quality indicator and a pin button (show them large on my screen only). The
// spotlight on the stage is a Tile too, whose identity changes (its pin button unpins).

import { h, initials } from "./util.js";
import { icon } from "./icons.js";
import { levelLabel, t } from "./i18n.js";

/**
 * Set a <video>'s stream (only when it changed) and keep it playing. data-playing tells
 * whether frames are showing, so a tile keeps its avatar until the picture arrives.
 */
export function attachVideo(video, stream) {
  if (!video._yitangWatched) {
    video._yitangWatched = true;
    const playing = () => (video.dataset.playing = video.videoWidth > 0 ? "true" : "false");
    for (const name of ["playing", "loadeddata", "resize"]) video.addEventListener(name, playing);
    video.addEventListener("emptied", () => (video.dataset.playing = "false"));
  }
  if (video.srcObject !== stream) {
    video.srcObject = stream || null;
    video.dataset.playing = "false";
  }
  if (stream && video.paused) video.play().catch(() => {});
  countFrames(video);
}

/** Count presented frames in data-frames (requestVideoFrameCallback), to show video plays. */
function countFrames(video) {
  if (video._yitangCounting || typeof video.requestVideoFrameCallback !== "function") return;
  video._yitangCounting = true;
  let frames = 0;
  const step = () => {
    frames += 1;
    video.dataset.frames = String(frames);
    video.requestVideoFrameCallback(step);
  };
  video.dataset.frames = "0";
  video.requestVideoFrameCallback(step);
}

export class Tile {
  /** @param variant "tile" | "host" | "spotlight" */
  constructor(identity, { variant = "tile" } = {}) {
    this.identity = null;
    this.variant = variant;
    this.video = h("video", { autoplay: true, muted: true, playsinline: true, class: "tile-video" });
    this.video.muted = true; // audio plays from the audio sink, never from tiles
    this.avatar = h("div", { class: "tile-avatar", "aria-hidden": "true" });
    this.levelBadge = h("span", { class: "level-badge tile-level" });
    this.name = h("span", { class: "tile-name" });
    this.venue = h("span", { class: "tile-venue" });
    this.status = h("span", { class: "tile-status" });
    this.micIcon = icon("mic-off", "tile-mic-off");
    this.camIcon = icon("camera-off", "tile-cam-off");
    this.handIcon = icon("hand", "tile-hand");
    this.quality = h("span", { class: "quality", "data-quality": "unknown", role: "img" },
      h("i"), h("i"), h("i"));
    this.countdown = h("div", { class: "countdown", hidden: true, "aria-live": "off" });
    /** Shown while the participant's connection is being waited for (not a leave). */
    this.reconnecting = h("div", { class: "tile-reconnecting", hidden: true, role: "status" });
    /** Called when the pin button is pressed (the owner sets it). */
    this.onPin = null;
    this.pinText = h("span", { class: "tile-pin-text" });
    this.pinButton = h(
      "button",
      { type: "button", class: "tile-pin", hidden: true, "aria-pressed": "false", onclick: () => this.onPin?.() },
      icon("pin"),
      this.pinText,
    );
    this.el = h(
      "div",
      { class: `tile tile-${variant}`, "data-quality": "unknown" },
      this.video,
      this.avatar,
      h("div", { class: "tile-topline" }, this.status, h("span", { class: "tile-icons" }, this.handIcon, this.micIcon, this.camIcon, this.quality)),
      h("div", { class: "tile-label" }, this.levelBadge, h("span", { class: "tile-text" }, this.name, this.venue)),
      this.countdown,
      this.reconnecting,
      this.pinButton,
    );
    this.setIdentity(identity);
  }

  setIdentity(identity) {
    if (this.identity === identity) return;
    this.identity = identity;
    if (identity) {
      this.el.dataset.identity = identity;
      this.video.dataset.identity = identity;
    } else {
      delete this.el.dataset.identity;
      delete this.video.dataset.identity;
    }
  }

  /**
   * Show a participant.
   * @param p          Participant (or null for an empty spotlight)
   * @param venue      {name, level, main} or null
   * @param opts       {self, inQueue, speaking, stream, status}
   */
  update(p, venue, { self = false, inQueue = false, speaking = false, stream = null, status = "", emptyText = "" } = {}) {
    this.setIdentity(p ? p.identity : null);
    this.el.classList.toggle("is-empty", !p);
    this.el.classList.toggle("is-self", self);
    this.el.classList.toggle("speaking", Boolean(speaking));
    this.el.dataset.speaking = speaking ? "true" : "false";
    this.el.dataset.level = venue?.level || "";
    this.el.dataset.venue = p?.venue || "";
    this.el.dataset.role = p?.role || "";
    const videoOn = Boolean(stream && p && !p.video_muted && stream.getVideoTracks().length);
    this.el.classList.toggle("has-video", videoOn);
    attachVideo(this.video, stream);
    this.video.classList.toggle("mirrored", self);
    this.video.dataset.kind = self ? "local" : "remote";
    this.avatar.textContent = p ? initials(p.name) : "";
    this.name.textContent = p ? p.name + (self ? t("stage.you") : "") : emptyText;
    this.venue.textContent = venue ? venue.name : "";
    // Cut with an ellipsis when long: the whole text is a tooltip away.
    this.name.title = this.name.textContent;
    this.venue.title = this.venue.textContent;
    this.levelBadge.textContent = venue ? levelLabel(venue.level) : "";
    this.levelBadge.hidden = !venue;
    this.levelBadge.dataset.level = venue?.level || "";
    this.status.textContent = status;
    this.status.hidden = !status;
    this.micIcon.hidden = !p || !p.audio_muted;
    this.micIcon.title = t("tile.mic_off");
    this.camIcon.hidden = !p || !p.video_muted;
    this.camIcon.title = t("tile.camera_off");
    this.handIcon.hidden = !inQueue;
    this.handIcon.title = t("tile.hand_raised");
    this.el.dataset.hand = inQueue ? "raised" : "down";
    this.el.dataset.audioMuted = p?.audio_muted ? "true" : "false";
    this.el.dataset.videoMuted = p?.video_muted ? "true" : "false";
    const reconnecting = Boolean(p?.reconnecting) && !self;
    this.el.dataset.reconnecting = reconnecting ? "true" : "false";
    this.reconnecting.hidden = !reconnecting;
    this.reconnecting.textContent = reconnecting ? t("tile.reconnecting") : "";
  }

  /** Show the connection quality ("good" | "fair" | "poor" | "unknown" | "offline"). */
  setQuality(quality, details = "") {
    this.el.dataset.quality = quality;
    this.quality.dataset.quality = quality;
    const label = t(`quality.${quality}`);
    this.quality.title = details ? `${label} · ${details}` : label;
    this.quality.setAttribute("aria-label", label);
  }

  /**
   * Show the pin button (or hide it). `label` names the action for screen readers and as a
   * tooltip; `text` is shown beside the icon (the spotlight's "back to the room's stage").
   */
  setPin({ shown, pressed = false, label = "", text = "" }) {
    this.pinButton.hidden = !shown;
    this.pinButton.setAttribute("aria-pressed", pressed ? "true" : "false");
    this.pinButton.setAttribute("aria-label", label);
    this.pinButton.title = label;
    this.pinText.textContent = text;
    this.pinText.hidden = !text;
    this.el.dataset.myPin = shown && pressed ? "true" : "false";
  }

  /** Show or hide the floor countdown. */
  setCountdown(text) {
    this.countdown.hidden = !text;
    this.countdown.textContent = text || "";
  }

  /** Resume a video paused by being moved in the document. */
  resume() {
    if (this.video.srcObject && this.video.paused) this.video.play().catch(() => {});
  }
}
