// RoomConnection: the `/room` Socket.IO connection (docs/protocol.md).
//
// It joins after every (re)connect, buffers the server events that arrive before the join
// ack and replays them after the snapshot (the handlers are idempotent), and tells the page
// what is happening to the connection. A transport failure reconnects by itself — to the same
// node first, then to the other nodes the server listed in the snapshot — and so does a
// draining node's `reconnect`. A refusal that may pass (`unavailable`, `server_full`,
// `rate_limited`) is retried with backoff; a final one (bad token, removed, ended) or an
// ending event (removed, replaced, session_ended) ends the participation.

import { io } from "/static/vendor/socket.io.esm.min.js";
import { Emitter } from "./util.js";

/** Two unexplained server-side disconnects within this window end the participation. */
const SERVER_DISCONNECT_WINDOW_MS = 15000;
/** Failed attempts on one node before trying the next one the server listed. */
const ATTEMPTS_PER_NODE = 2;
/** Waiting before retrying a refusal that may pass (doubles, up to the maximum). */
const RETRY_DELAY_MS = 500;
const RETRY_DELAY_MAX_MS = 4000;

/** Server events that end this page's participation. */
const ENDING_EVENTS = new Set(["removed", "replaced", "session_ended"]);
/** Refusals (at connect or join) that are worth trying again. */
const RETRYABLE = new Set(["unavailable", "server_full", "rate_limited", "timeout"]);

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
 *   joined({snapshot, rejoin, offsetMs, iceServers, iceServersExpireAt})  after every successful
 *                           join (rejoin: not the first); iceServers carry TURN credentials
 *   event(name, payload)    every server event, after the snapshot it applies to
 *   fatal({code, message, event?, payload?})  the participation is over; no reconnect
 */
export class RoomConnection extends Emitter {
  constructor(token, { path = "/room", callTimeoutMs = 10000 } = {}) {
    super();
    this.token = token;
    this.path = path;
    this.callTimeoutMs = callTimeoutMs;
    this.socket = null;
    this.state = "closed";
    this.joinCount = 0;
    this.joined = false;
    this.ended = null;
    /** The node this page talks to ("" is the page's own origin) and the others it may use. */
    this.base = "";
    this.nodes = [];
    this._pending = null;
    this._retryTimer = null;
    this._retryDelay = RETRY_DELAY_MS;
    this._failures = 0;
    this._lastServerDisconnect = 0;
    this._movingOn = false;
    this._draining = false;
  }

  /** Whether the connection is up and joined (control events can be sent). */
  get ready() {
    return Boolean(this.socket && this.socket.connected && this.joined && !this.ended);
  }

  /** Open the connection; the join happens on connect. */
  start() {
    if (this.socket) return;
    this._setState("connecting");
    this._open(this.base);
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
    this._drop();
    this._setState("closed");
  }

  // --- internals ------------------------------------------------------------------------

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("status", state);
  }

  _open(base) {
    this._drop();
    this.base = base;
    const socket = io(base + this.path, {
      auth: { token: this.token },
      transports: ["websocket"],
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 4000,
      randomizationFactor: 0.3,
      timeout: 8000,
      // A manager of its own: an earlier, closed connection to this node is never reused.
      forceNew: true,
    });
    this.socket = socket;
    socket.on("connect", () => {
      this._failures = 0;
      this._join();
    });
    socket.on("connect_error", (err) => this._onConnectError(err));
    socket.on("disconnect", (reason) => this._onDisconnect(reason));
    socket.onAny((event, payload) => this._onEvent(event, payload));
    // The manager's own retries go to the same node; after a few, try another one.
    socket.io.on("reconnect_attempt", () => this._countFailure());
  }

  _drop() {
    const socket = this.socket;
    if (!socket) return;
    socket.offAny();
    socket.removeAllListeners();
    socket.io.removeAllListeners("reconnect_attempt");
    socket.io.reconnection(false);
    socket.disconnect();
  }

  /** The next node to try: the ones the server listed, in turn, then this page's own. */
  _nextBase() {
    const candidates = [...new Set(["", ...this.nodes.map((n) => n.url)])];
    const index = candidates.indexOf(this.base);
    return candidates[(index + 1) % candidates.length];
  }

  _countFailure() {
    this._failures += 1;
    if (this._failures >= ATTEMPTS_PER_NODE && this.nodes.length > 0) this._moveOn(0);
  }

  /** Connect again, to the next node, after `delayMs`. */
  _moveOn(delayMs) {
    if (this.ended || this._movingOn) return;
    this._movingOn = true;
    this._failures = 0;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      this._movingOn = false;
      if (!this.ended && this.state !== "closed") this._open(this._nextBase());
    }, delayMs);
  }

  /** A refusal that may pass: back off, then try again (on the same node, then others). */
  _retryLater() {
    const delay = this._retryDelay;
    this._retryDelay = Math.min(this._retryDelay * 2, RETRY_DELAY_MAX_MS);
    this._setState(this.joinCount > 0 ? "reconnecting" : "connecting");
    this._failures += 1;
    if (this._failures >= ATTEMPTS_PER_NODE && this.nodes.length > 0) {
      this._moveOn(delay);
      return;
    }
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      if (!this.ended && this.state !== "closed") this._open(this.base);
    }, delay);
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
      // No answer: drop this connection and try again.
      if (socket === this.socket) this._retryLater();
      return;
    }
    if (socket !== this.socket || this.ended) return;
    if (!ack || ack.ok === false) {
      const error = (ack && ack.error) || {};
      if (RETRYABLE.has(error.code)) {
        this._retryLater();
        return;
      }
      this._fatal({ code: error.code || "join_failed", message: error.message || "" });
      return;
    }
    const receivedAt = Date.now();
    const snapshot = ack.snapshot;
    // The server's clock at the midpoint of the round trip, against ours.
    const offsetMs = snapshot.server_time - (sentAt + receivedAt) / 2;
    this.nodes = snapshot.nodes || this.nodes;
    this._retryDelay = RETRY_DELAY_MS;
    const rejoin = this.joinCount > 0;
    this.joinCount += 1;
    this.joined = true;
    this._setState("connected");
    const iceServers = Array.isArray(ack.ice_servers) ? ack.ice_servers : [];
    this.emit("joined", { snapshot, rejoin, offsetMs, iceServers, iceServersExpireAt: ack.ice_servers_expire_at });
    const pending = this._pending || [];
    this._pending = null;
    for (const [event, payload] of pending) this._dispatch(event, payload);
  }

  _onEvent(event, payload) {
    if (event === "reconnect") {
      // This node is going away: the next disconnect is expected, go to another node.
      this.nodes = (payload && payload.nodes) || this.nodes;
      this._draining = true;
      return;
    }
    if (event === "resync" && payload && payload.snapshot && payload.snapshot.nodes) {
      this.nodes = payload.snapshot.nodes;
    }
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
    if (code && !RETRYABLE.has(code)) {
      // The server refused the token or the admission: reconnecting would not help.
      this._fatal({ code, message: err.message || "" });
      return;
    }
    if (code) {
      // A refusal that may pass: socket.io does not retry these by itself.
      this._retryLater();
      return;
    }
    this._setState(this.joinCount > 0 ? "reconnecting" : "connecting");
  }

  _onDisconnect(reason) {
    this.joined = false;
    if (this.ended || this.state === "closed") return;
    this._setState("reconnecting");
    if (this._draining) {
      // The node drained and said where to go: another node, at once.
      this._draining = false;
      this._moveOn(0);
      return;
    }
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
    this._drop();
    this._setState("closed");
    this.emit("fatal", info);
  }
}
