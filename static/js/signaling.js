// RoomConnection: the `/room` Socket.IO connection (docs/protocol.md).
//
// It joins after every (re)connect, buffers the server events that arrive before the join
// ack and replays them after the snapshot (the handlers are idempotent), and tells the page
// what is happening to the connection. A transport failure reconnects by itself; a refusal
// (bad token, removed, ended) or an ending event (removed, replaced, session_ended) is final.

import { io } from "/static/vendor/socket.io.esm.min.js";
import { Emitter } from "./util.js";

/** Two server-side disconnects within this window end the participation (no retry loop). */
const SERVER_DISCONNECT_WINDOW_MS = 15000;

/** Server events that end this page's participation. */
const ENDING_EVENTS = new Set(["removed", "replaced", "session_ended"]);

/** An event the server refused, or a call that could not be made. */
export class SignalingError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.serverMessage = message;
  }
}

/**
 * Events emitted:
 *   status(state)           "connecting" | "connected" | "reconnecting" | "closed"
 *   joined({snapshot, rejoin, offsetMs})  after every successful join (rejoin: not the first)
 *   event(name, payload)    every server event, after the snapshot it applies to
 *   fatal({code, message, event?, payload?})  the participation is over; no reconnect
 */
export class RoomConnection extends Emitter {
  constructor(token, { url = "/room", callTimeoutMs = 10000 } = {}) {
    super();
    this.token = token;
    this.url = url;
    this.callTimeoutMs = callTimeoutMs;
    this.socket = null;
    this.state = "closed";
    this.joinCount = 0;
    this.joined = false;
    this.ended = null;
    this._pending = null;
    this._retryTimer = null;
    this._lastServerDisconnect = 0;
  }

  /** Whether the connection is up and joined (control events can be sent). */
  get ready() {
    return Boolean(this.socket && this.socket.connected && this.joined && !this.ended);
  }

  /** Open the connection; the join happens on connect. */
  start() {
    if (this.socket) return;
    this._setState("connecting");
    this.socket = io(this.url, {
      auth: { token: this.token },
      transports: ["websocket"],
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 4000,
      randomizationFactor: 0.3,
      timeout: 8000,
    });
    this.socket.on("connect", () => this._join());
    this.socket.on("connect_error", (err) => this._onConnectError(err));
    this.socket.on("disconnect", (reason) => this._onDisconnect(reason));
    this.socket.onAny((event, payload) => this._onEvent(event, payload));
  }

  /**
   * Send a client event and resolve with its ack data; reject with SignalingError when the
   * server refuses it, when offline (`offline`) or when no ack comes (`timeout`).
   */
  async call(event, payload = {}, { timeoutMs = this.callTimeoutMs } = {}) {
    if (!this.socket || !this.socket.connected || !this.joined) {
      throw new SignalingError("offline", "not connected");
    }
    let ack;
    try {
      ack = await this.socket.timeout(timeoutMs).emitWithAck(event, payload);
    } catch {
      throw new SignalingError("timeout", `no answer to ${event}`);
    }
    if (ack && ack.ok === false) {
      const error = ack.error || {};
      throw new SignalingError(error.code || "error", error.message || "");
    }
    return ack || {};
  }

  /** Leave on purpose (the room hears `left`) and close; idempotent. */
  async leave() {
    if (this.ready) {
      try {
        await this.call("leave", {}, { timeoutMs: 2000 });
      } catch {
        /* closing anyway */
      }
    }
    this.close();
  }

  /** Close without leaving; no reconnect. */
  close() {
    clearTimeout(this._retryTimer);
    this.joined = false;
    if (this.socket) {
      this.socket.io.reconnection(false);
      this.socket.disconnect();
    }
    this._setState("closed");
  }

  // --- internals ------------------------------------------------------------------------

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("status", state);
  }

  async _join() {
    if (this.ended) return;
    this.joined = false;
    this._pending = [];
    const socket = this.socket;
    const sentAt = Date.now();
    let ack;
    try {
      ack = await socket.timeout(this.callTimeoutMs).emitWithAck("join", {});
    } catch {
      // No answer: drop this transport; the manager reconnects and we join again.
      if (socket.connected) socket.io.engine?.close();
      return;
    }
    if (socket !== this.socket || this.ended) return;
    if (!ack || ack.ok === false) {
      const error = (ack && ack.error) || {};
      this._fatal({ code: error.code || "join_failed", message: error.message || "" });
      return;
    }
    const receivedAt = Date.now();
    const snapshot = ack.snapshot;
    // The server's clock at the midpoint of the round trip, against ours.
    const offsetMs = snapshot.server_time - (sentAt + receivedAt) / 2;
    const rejoin = this.joinCount > 0;
    this.joinCount += 1;
    this.joined = true;
    this._setState("connected");
    this.emit("joined", { snapshot, rejoin, offsetMs });
    const pending = this._pending || [];
    this._pending = null;
    for (const [event, payload] of pending) this._dispatch(event, payload);
  }

  _onEvent(event, payload) {
    if (this._pending) this._pending.push([event, payload]);
    else this._dispatch(event, payload);
  }

  _dispatch(event, payload) {
    if (this.ended) return;
    this.emit("event", event, payload);
    if (ENDING_EVENTS.has(event)) {
      // The host's own connection stays open after session_ended; close it ourselves.
      this._fatal({ code: event, message: (payload && payload.reason) || "", event, payload });
    }
  }

  _onConnectError(err) {
    if (this.ended) return;
    const code = err && err.data && err.data.code;
    if (code) {
      // The server refused the token or the admission: reconnecting would not help.
      this._fatal({ code, message: err.message || "" });
      return;
    }
    this._setState(this.joinCount > 0 ? "reconnecting" : "connecting");
  }

  _onDisconnect(reason) {
    this.joined = false;
    if (this.ended || this.state === "closed") return;
    this._setState("reconnecting");
    if (reason === "io server disconnect") {
      // The server closed us without an ending event (a restart, or a stale connection):
      // socket.io does not retry this case by itself, so try again shortly — but not in a
      // loop: twice within a short time means the server does not want this connection.
      const now = Date.now();
      if (now - this._lastServerDisconnect < SERVER_DISCONNECT_WINDOW_MS) {
        this._fatal({ code: "server_disconnect", message: "" });
        return;
      }
      this._lastServerDisconnect = now;
      clearTimeout(this._retryTimer);
      this._retryTimer = setTimeout(() => {
        if (!this.ended && this.socket && !this.socket.connected) this.socket.connect();
      }, 1000);
    }
  }

  _fatal(info) {
    if (this.ended) return;
    this.ended = info;
    this.joined = false;
    clearTimeout(this._retryTimer);
    if (this.socket) {
      this.socket.io.reconnection(false);
      this.socket.disconnect();
    }
    this._setState("closed");
    this.emit("fatal", info);
  }
}
