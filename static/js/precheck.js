// The pre-session connection check on the join page: a venue's staff test their link to the
// server before the session. Each leg (direct UDP, then through the TURN relay) opens a short
// peer connection with two data channels to a probe peer on the server (POST /api/precheck):
// the server pings over an unordered, never-retransmitted channel and we echo; then we send
// uplink chunks at the rate it asks for. Everything shown is what the server measured; the
// verdict is the server's, stored for the control room.

import { errorText, onLangChange, t } from "./i18n.js";

const DATA_LABEL = "yitang-probe-data";
const CONTROL_LABEL = "yitang-probe-control";
/** How long ICE gathering may take before the offer goes with what it has. */
const GATHER_TIMEOUT_MS = 8000;
/** Upload pacing tick, and the send buffer above which we wait (a congested link). */
const UPLOAD_TICK_MS = 10;
const UPLOAD_MAX_BUFFERED = 256 * 1024;

class CheckError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

async function post(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15000),
    });
  } catch {
    throw new CheckError("network", "");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new CheckError(data?.error?.code || "http_error", data?.error?.message || String(response.status));
  return data;
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/** Send `kbps` for `seconds` in chunks, paced by the clock; then say we are done. */
function upload(data, control, order) {
  const chunk = new Uint8Array(order.chunk);
  const perMs = (order.kbps * 1000) / 8 / 1000;
  const started = performance.now();
  let sent = 0;
  const timer = setInterval(() => {
    const elapsed = performance.now() - started;
    if (elapsed >= order.seconds * 1000 || data.readyState !== "open") {
      clearInterval(timer);
      if (control.readyState === "open") control.send(JSON.stringify({ type: "upload_done" }));
      return;
    }
    while (sent + chunk.length <= perMs * elapsed && data.bufferedAmount < UPLOAD_MAX_BUFFERED) {
      data.send(chunk);
      sent += chunk.length;
    }
  }, UPLOAD_TICK_MS);
  return () => clearInterval(timer);
}

/** One leg: resolves with the server's result message, or a local failure when it never connects. */
async function runLeg(token, leg, config) {
  const pc = new RTCPeerConnection({
    iceServers: leg === "relay" ? config.ice_servers : [],
    iceTransportPolicy: leg === "relay" ? "relay" : "all",
  });
  const control = pc.createDataChannel(CONTROL_LABEL);
  const data = pc.createDataChannel(DATA_LABEL, { ordered: false, maxRetransmits: 0 });
  let stopUpload = () => {};
  try {
    const result = new Promise((resolve) => {
      data.onmessage = (e) => {
        if (typeof e.data === "string" && e.data.startsWith("p:") && data.readyState === "open") data.send(e.data);
      };
      control.onmessage = (e) => {
        let message;
        try {
          message = JSON.parse(e.data);
        } catch {
          return;
        }
        if (message.type === "upload") stopUpload = upload(data, control, message);
        else if (message.type === "result") resolve(message);
      };
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const answer = await post("/api/precheck", { token, leg, sdp: pc.localDescription.sdp });
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    // The server gives up on a leg that has not connected after `connect_timeout`; so do we
    // (a little later, so its record of the failure is there when we ask for the verdict).
    const connected = new Promise((resolve) => {
      const check = () => {
        if (control.readyState === "open") resolve(true);
      };
      control.addEventListener("open", check);
      setTimeout(() => resolve(false), (config.connect_timeout + 2) * 1000);
      check();
    });
    if (!(await connected)) return { result: { leg, connected: false, verdict: "poor", reasons: ["no_connection"] } };
    const timeout = new Promise((resolve) => setTimeout(() => resolve(null), 60000));
    return (await Promise.race([result, timeout])) || { result: { leg, connected: false, verdict: "poor", reasons: ["no_connection"] } };
  } finally {
    stopUpload();
    pc.close();
  }
}

const fmt = {
  ms: (v) => (v == null ? "–" : `${Math.round(v)} ms`),
  pct: (v) => (v == null ? "–" : `${(v * 100).toFixed(1)}%`),
  kbps: (v) => (v == null ? "–" : v >= 1000 ? `${(v / 1000).toFixed(1)} Mb/s` : `${Math.round(v)} kb/s`),
};

/** A leg's measurements in words ("" when it did not connect). */
export function legText(result) {
  if (!result) return t("precheck.state_idle");
  if (!result.connected) return t("precheck.state_failed");
  return t("precheck.measured", {
    rtt: fmt.ms(result.rtt_ms_median),
    p95: fmt.ms(result.rtt_ms_p95),
    loss: fmt.pct(result.loss),
    kbps: fmt.kbps(result.uplink_kbps),
  });
}

/** The verdict in plain words: "Usable: UDP blocked: will use TURN". */
export function verdictText(overall) {
  const verdict = t(`precheck.verdict_${overall.verdict}`);
  if (!overall.reasons?.length) return verdict;
  return t("precheck.verdict_line", { verdict, reasons: overall.reasons.map((r) => t(`precheck.reason_${r}`)).join(t("list.separator")) });
}

/**
 * The check's panel on the join page (#precheck). `run()` runs both legs; the panel shows
 * each leg as it ends and the server's verdict at the end. State is on data attributes
 * (`data-state` per leg, `data-verdict`) for tests and styles.
 */
export class ConnectionCheck {
  constructor(root, token) {
    this.root = root;
    this.token = token;
    this.legs = { direct: null, relay: null };
    this.overall = null;
    this.error = null;
    this.running = false;
    this.button = root.querySelector("#precheck-run");
    this.button.addEventListener("click", () => this.run());
    onLangChange(() => this.render());
    root.hidden = false;
  }

  async run() {
    if (this.running) return;
    this.running = true;
    this.error = null;
    this.overall = null;
    this.legs = { direct: null, relay: null };
    this.states = { direct: "running", relay: "idle" };
    this.render();
    try {
      const config = await post("/api/precheck/config", { token: this.token });
      this.config = config;
      const direct = await runLeg(this.token, "direct", config);
      this.legs.direct = direct.result;
      this.states.direct = direct.result.connected ? "done" : "failed";
      this.overall = direct.overall || null;
      if (config.relay) {
        this.states.relay = "running";
        this.render();
        const relay = await runLeg(this.token, "relay", config);
        this.legs.relay = relay.result;
        this.states.relay = relay.result.connected ? "done" : "failed";
        this.overall = relay.overall || this.overall;
      } else {
        this.states.relay = "skipped";
      }
      // The stored verdict combines both legs (and a leg the server saw fail).
      const stored = await post("/api/precheck/config", { token: this.token }).catch(() => null);
      if (stored?.last?.overall) this.overall = stored.last.overall;
    } catch (err) {
      this.error = err;
      for (const leg of ["direct", "relay"]) if (this.states[leg] === "running") this.states[leg] = "idle";
    } finally {
      this.running = false;
      this.render();
    }
  }

  render() {
    const states = this.states || { direct: "idle", relay: "idle" };
    for (const leg of ["direct", "relay"]) {
      const row = this.root.querySelector(`[data-leg="${leg}"]`);
      const result = this.legs[leg];
      row.dataset.state = states[leg];
      row.dataset.verdict = result?.verdict || "";
      row.dataset.candidate = result?.candidate || "";
      const text = row.querySelector(".precheck-leg-result");
      if (states[leg] === "running") text.textContent = t("precheck.state_running");
      else if (states[leg] === "skipped") text.textContent = t("precheck.state_skipped");
      else text.textContent = legText(result);
    }
    const verdict = this.root.querySelector("#precheck-verdict");
    if (this.error) {
      verdict.dataset.verdict = "error";
      verdict.dataset.code = this.error.code;
      verdict.textContent = t("precheck.failed", { message: errorText(this.error.code, this.error.message) });
      verdict.hidden = false;
    } else if (this.overall && !this.running) {
      verdict.dataset.verdict = this.overall.verdict;
      verdict.dataset.reasons = (this.overall.reasons || []).join(" ");
      verdict.textContent = verdictText(this.overall);
      verdict.hidden = false;
    } else {
      verdict.hidden = true;
    }
    this.root.querySelector("#precheck-by-server").hidden = !(this.legs.direct?.connected || this.legs.relay?.connected);
    this.button.disabled = this.running;
    this.button.textContent = t(this.overall || this.error ? "precheck.again" : "precheck.run");
    this.root.dataset.running = String(this.running);
  }
}
