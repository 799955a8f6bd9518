// MediaRecovery: rebuilds both peer connections when the network failed under them.
//
// aiortc has no ICE restart, so a connection whose path died cannot be repaired in place:
// the client makes both anew (`MediaClient.restart()`: `media_restart`, then a new publish
// connection and a fresh subscriber offer). This watches the publish and subscribe
// connections' states: `failed` starts a rebuild at once; `disconnected` for longer than
// DISCONNECTED_GRACE_MS does too (a short blip heals by itself, and Chromium may take many
// seconds to give up on a dead path). A rebuild that does not reach `connected` within
// ATTEMPT_TIMEOUT_MS is tried again after a backoff (doubling, with jitter, bounded), at most
// MAX_ATTEMPTS times. The server tells the other participants that this one is
// reconnecting meanwhile (`participant_reconnecting`, docs/protocol.md).
//
// While signaling itself is down nothing is rebuilt here: the rejoin that follows rebuilds
// both connections anyway (join.js), and then this starts afresh.

import { Emitter } from "./util.js";

/** How long a connection may stay `disconnected` before it is rebuilt. */
export const DISCONNECTED_GRACE_MS = 2500;
/** A rebuild that is not connected within this long is tried again. */
export const ATTEMPT_TIMEOUT_MS = 6000;
/** Waiting before the next attempt: doubles from the first to the last, ±20 %. */
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 3000;
const JITTER = 0.2;
/** Attempts in a row before giving up (the banner then says so; a reload may help). */
const MAX_ATTEMPTS = 12;

/**
 * Events:
 *   recovering({attempt, why})   a rebuild starts (attempt 1, 2, ...)
 *   recovered()                  the rebuilt connections are connected
 *   gave-up()                    MAX_ATTEMPTS rebuilds did not connect
 */
export class MediaRecovery extends Emitter {
  /**
   * @param media     MediaClient
   * @param canRun    () → whether a rebuild may start now (signaling up and joined)
   */
  constructor({ media, canRun }) {
    super();
    this.media = media;
    this.canRun = canRun;
    /** Rebuilds started (each attempt counts). */
    this.rebuilds = 0;
    this.attempt = 0;
    this.active = false;
    this._disconnectedTimer = null;
    this._attemptTimer = null;
    this._retryTimer = null;
    media.on("connection", ({ state }) => this._onState(state));
  }

  /** Rebuild now (asked by the server, or a connection failed); `asked` skips nothing. */
  rebuild(why = "asked") {
    if (!this.canRun()) return;
    clearTimeout(this._retryTimer);
    clearTimeout(this._disconnectedTimer);
    this._disconnectedTimer = null;
    this.active = true;
    this.attempt += 1;
    this.rebuilds += 1;
    this.emit("recovering", { attempt: this.attempt, why });
    const started = this.rebuilds;
    clearTimeout(this._attemptTimer);
    this._attemptTimer = setTimeout(() => this._attemptFailed(started), ATTEMPT_TIMEOUT_MS);
    this.media.restart().catch((err) => {
      console.warn("media rebuild failed", err);
      this._attemptFailed(started);
    });
  }

  /** Signaling rejoined (the page rebuilt both connections itself): start afresh. */
  reset() {
    clearTimeout(this._retryTimer);
    clearTimeout(this._attemptTimer);
    clearTimeout(this._disconnectedTimer);
    this._disconnectedTimer = null;
    this.attempt = 0;
    this.active = false;
  }

  /** Stop for good (the page is leaving). */
  close() {
    this.reset();
    this.canRun = () => false;
  }

  _pcs() {
    return [this.media.pubPc, this.media.subPc].filter(Boolean);
  }

  _healthy() {
    const pcs = this._pcs();
    return pcs.length > 0 && pcs.every((pc) => pc.connectionState === "connected");
  }

  _onState(state) {
    if (state === "failed") {
      // A rebuilt connection that fails is tried again without waiting for its timeout.
      if (this.active) this._attemptFailed(this.rebuilds);
      else this.rebuild("failed");
      return;
    }
    if (state === "disconnected") {
      if (this.active || this._disconnectedTimer) return;
      this._disconnectedTimer = setTimeout(() => {
        this._disconnectedTimer = null;
        if (this._pcs().some((pc) => pc.connectionState === "disconnected" || pc.connectionState === "failed")) {
          this.rebuild("disconnected");
        }
      }, DISCONNECTED_GRACE_MS);
      return;
    }
    if (state === "connected" && this._healthy()) {
      clearTimeout(this._disconnectedTimer);
      this._disconnectedTimer = null;
      if (this.active) {
        clearTimeout(this._attemptTimer);
        this.active = false;
        this.attempt = 0;
        this.emit("recovered");
      }
    }
  }

  _attemptFailed(attempt) {
    if (attempt !== this.rebuilds || !this.active || this._healthy()) return;
    clearTimeout(this._attemptTimer);
    if (this.attempt >= MAX_ATTEMPTS) {
      this.active = false;
      this.attempt = 0;
      this.emit("gave-up");
      return;
    }
    const base = Math.min(BACKOFF_FIRST_MS * 2 ** (this.attempt - 1), BACKOFF_MAX_MS);
    const delay = base * (1 - JITTER + Math.random() * 2 * JITTER);
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      if (this.active && !this._healthy()) this.rebuild("retry");
    }, delay);
  }
}
