// Quality per receiver, the browser's part (docs/protocol.md, "Quality per receiver").
//
// - Publishing: the camera goes out twice, as two tracks (aiortc cannot receive simulcast):
//   as captured (high, e.g. 640×360) and scaled down to ~320×180 at ≤ 150 kbit/s (low). The
//   publish offer names the low one (`low_video: {lowMid: cameraMid}`); the server sends each
//   receiver the high one for its stage and the low one for tiles.
// - `publisher_hint {max_bitrate}`: the server sees our uplink lose packets; cap the camera's
//   high encoding (RTCRtpSender.setParameters), or lift the cap (null).
// - `video_view {pinned, tiles_visible}`: tell the server whom we pinned into our own
//   spotlight (it sends that camera high, the room's stage low) and when our tile area is
//   collapsed or off screen (no tile video is sent then).
// - `video_quality {level, paused, capped}`: our own link is weak, or (`capped`) the control
//   room lowered our venue's quality; say so on screen.

import { t, onLangChange } from "./i18n.js";

/** The low encoding's size and bitrate. */
const LOW_HEIGHT = 180;
const LOW_MAX_BITRATE = 150_000;

/**
 * Add the low encoding of the camera to a publish connection: the same camera track on a
 * second transceiver, scaled down by the browser. Returns {camera, low} transceivers, or
 * null when there is no camera transceiver.
 */
export function addLowEncoding(pc, cameraTransceiver) {
  const track = cameraTransceiver?.sender?.track;
  if (!track || track.kind !== "video") return null;
  const height = track.getSettings?.().height || 360;
  const low = pc.addTransceiver(track, {
    direction: "sendonly",
    sendEncodings: [{ scaleResolutionDownBy: Math.max(1, height / LOW_HEIGHT), maxBitrate: LOW_MAX_BITRATE }],
  });
  return { camera: cameraTransceiver, low };
}

/** The publish offer's `low_video` ({lowMid: cameraMid}) once the offer is set, or null. */
export function lowVideoMids(pair) {
  if (!pair || !pair.low.mid || !pair.camera.mid) return null;
  return { [pair.low.mid]: pair.camera.mid };
}

/** Cap (or uncap, with null) the camera's high encoding, as the server hints. */
export async function applyBitrateCap(transceiver, maxBitrate) {
  const sender = transceiver?.sender;
  if (!sender) return;
  const params = sender.getParameters();
  if (!params.encodings || params.encodings.length === 0) params.encodings = [{}];
  for (const encoding of params.encodings) {
    if (Number.isInteger(maxBitrate) && maxBitrate > 0) encoding.maxBitrate = maxBitrate;
    else delete encoding.maxBitrate;
  }
  try {
    await sender.setParameters(params);
  } catch (err) {
    console.warn("could not apply the bitrate cap", err);
  }
}

/**
 * Reports `video_view {pinned, tiles_visible}`: whom we pinned into our own spotlight
 * (local-pin.js; null while the room's stage or a shared screen is shown), and whether any
 * of our tile areas is on screen. The tile areas are the level groups and the host's tile
 * beside the stage: they count as hidden when the user collapsed them (`setCollapsed`) or
 * when none of them intersects the viewport (a phone's page scrolled past them).
 * `send(payload)` sends the event; nothing is sent while nothing changed.
 */
export class VideoViewReporter {
  constructor(tileAreas, send) {
    this._send = send;
    this._pinned = null;
    this._collapsed = false;
    /** element => whether it intersects the viewport (until the observer says: yes). */
    this._intersecting = new Map();
    this._sent = null;
    this._observer = null;
    const areas = (tileAreas || []).filter(Boolean);
    for (const area of areas) this._intersecting.set(area, true);
    if (areas.length && typeof IntersectionObserver === "function") {
      this._observer = new IntersectionObserver((entries) => {
        for (const entry of entries) this._intersecting.set(entry.target, entry.isIntersecting);
        this._maybeSend();
      });
      for (const area of areas) this._observer.observe(area);
    }
  }

  /** Whether our tiles are on screen, as last reported (or about to be). */
  get tilesVisible() {
    if (this._collapsed) return false;
    if (this._intersecting.size === 0) return true;
    return [...this._intersecting.values()].some(Boolean);
  }

  /** Whom the server should send us in the high encoding (null: the room's stage);
   * `send: false` only records it (the caller resends the whole view itself). */
  setPinned(identity, { send = true } = {}) {
    this._pinned = identity || null;
    if (send) this._maybeSend();
  }

  /** The user collapsed (true) or showed (false) the tile area. */
  setCollapsed(collapsed) {
    this._collapsed = Boolean(collapsed);
    this._maybeSend();
  }

  _payload() {
    return { pinned: this._pinned, tiles_visible: this.tilesVisible };
  }

  _maybeSend() {
    const payload = this._payload();
    if (this._sent && this._sent.pinned === payload.pinned && this._sent.tiles_visible === payload.tiles_visible) return;
    this.resend();
  }

  /** Send the current view again (after a (re)join the server starts from the default). */
  resend() {
    const payload = this._payload();
    this._sent = payload;
    Promise.resolve(this._send(payload)).catch(() => {});
  }

  close() {
    this._observer?.disconnect();
    this._observer = null;
  }
}

/** The on-screen notice of our own link's quality ("video paused for N venues"). */
export class QualityNotice {
  constructor(parent) {
    this.el = document.createElement("div");
    this.el.id = "bandwidth-notice";
    this.el.className = "bandwidth-notice";
    this.el.setAttribute("role", "status");
    this.el.hidden = true;
    parent?.prepend(this.el);
    this.level = "full";
    this.paused = 0;
    this.capped = false;
    onLangChange(() => this._render());
  }

  /** Apply a `video_quality` event. */
  update({ level, paused, capped } = {}) {
    this.level = ["full", "reduced", "audio_only"].includes(level) ? level : "full";
    this.paused = Number.isInteger(paused) && paused > 0 ? paused : 0;
    // The control room, not our link, set the level (会控 lowered this venue's quality).
    this.capped = capped === true && this.level !== "full";
    this._render();
  }

  _render() {
    let text = "";
    if (this.capped) text = t(`quality.capped_${this.level}`);
    else if (this.paused > 0) text = t("quality.video_paused", { n: this.paused });
    else if (this.level === "reduced") text = t("quality.reduced");
    this.el.textContent = text;
    this.el.hidden = !text;
    this.el.dataset.level = this.level;
    this.el.dataset.capped = this.capped ? "true" : "false";
  }
}
