// MediaClient: the WebRTC side of the client, two peer connections per participant.
//
//  - publish PC (we offer): camera and microphone as sendonly transceivers, VP8 and Opus
//    preferred; full ICE gathering before `publish_offer` {sdp} → ack {ok, sdp: answer}.
//  - subscribe PC (the server offers): `subscriber_offer` {sdp, tracks: [{mid, identity, kind}]}
//    → we answer with `subscriber_answer` {sdp}. Incoming tracks are mapped to participants by
//    transceiver mid through `tracks` (falling back to the msid's stream id, which the server
//    sets to the publisher's identity).
//  - `media_restart` {} drops both server-side connections; we then publish again and receive
//    a fresh subscriber offer.
//
// ICE servers come from the join ack (`ice_servers`: TURN with short-lived credentials, none on
// a deployment without a relay) and are renewed with `refresh_ice_servers` before they expire.
// A page opened with `?ice=relay` uses the relay only (iceTransportPolicy "relay"): how a venue
// whose UDP is blocked gets through, and how the tests prove the relay works. `?ice=direct` never
// uses it (no ICE servers): a diagnostic for a venue whose relay path is suspect.
// The rest of the UI never depends on this module working.

import { Emitter } from "./util.js";
import { addLowEncoding, applyBitrateCap, lowVideoMids } from "./quality-tiers.js";

const GATHER_TIMEOUT_MS = 4000;
/** Renew TURN credentials this long before they expire. */
const ICE_REFRESH_MARGIN_MS = 10 * 60 * 1000;
const ICE_MODE = new URLSearchParams(globalThis.location?.search || "").get("ice");
const RELAY_ONLY = ICE_MODE === "relay";
const DIRECT_ONLY = ICE_MODE === "direct";
const PREFERRED_CODEC = { audio: "audio/opus", video: "video/VP8" };

/** Wait until ICE gathering is complete (or give up after a while; what we have is sent). */
function waitIceGathering(pc, timeoutMs = GATHER_TIMEOUT_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/** Put the preferred codec first on a transceiver (keeping rtx/red/fec entries). */
function preferCodec(transceiver, kind) {
  if (typeof transceiver.setCodecPreferences !== "function") return;
  const wanted = PREFERRED_CODEC[kind];
  for (const source of [RTCRtpReceiver, RTCRtpSender]) {
    const codecs = source.getCapabilities?.(kind)?.codecs;
    if (!codecs || !codecs.some((c) => c.mimeType.toLowerCase() === wanted.toLowerCase())) continue;
    const first = codecs.filter((c) => c.mimeType.toLowerCase() === wanted.toLowerCase());
    const rest = codecs.filter((c) => c.mimeType.toLowerCase() !== wanted.toLowerCase());
    try {
      transceiver.setCodecPreferences([...first, ...rest]);
      return;
    } catch {
      /* try the other capability list */
    }
  }
}

/** The DTLS fingerprint of an SDP: a new one means a new server-side connection. */
function sdpFingerprint(sdp) {
  const match = /^a=fingerprint:(.+)$/m.exec(sdp || "");
  return match ? match[1].trim() : null;
}

/** mid → {identity, kind} from the SDP's msid lines (fallback when `tracks` is missing). */
function msidMap(sdp) {
  const map = new Map();
  for (const section of String(sdp || "").split(/\r?\nm=/).slice(1)) {
    const kind = section.split(" ", 1)[0];
    const mid = /\r?\na=mid:(\S+)/.exec(section)?.[1];
    const stream = /\r?\na=msid:(\S+)/.exec(section)?.[1];
    if (mid && stream && stream !== "-") map.set(mid, { identity: stream, kind });
  }
  return map;
}

/** A media error with a code (from the server's ack, or local). */
export class MediaError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.serverMessage = message;
  }
}

/**
 * Events:
 *   remote(identity)                 the tracks received for this participant changed
 *   publish({state, error?})         "idle" | "publishing" | "published" | "failed"
 *   connection({pc, state})          a peer connection's connectionState changed
 *   failed(pcName)                   a peer connection failed (the app may restart media)
 *   screen-lost()                    our shared screen stopped with its connection
 */
export class MediaClient extends Emitter {
  /** @param call (event, payload) → Promise<ack data>, rejecting with {code, serverMessage}. */
  constructor({ call }) {
    super();
    this.call = call;
    this.localStream = null;
    this.audioEnabled = true;
    this.videoEnabled = true;
    this.pubPc = null;
    this.subPc = null;
    this.publishState = "idle";
    this.publishError = null;
    this._subFingerprint = null;
    this._midInfo = new Map();
    this._remote = new Map(); // identity → {audio, video, screen, stream, videoStream, screenStream}
    /** The publisher track id of the screen being shared (live.screen.track), if any. */
    this._screenTrackId = null;
    /** Our own shared screen: its track and the transceiver that sends it. */
    this.screenTrack = null;
    this._screenTransceiver = null;
    /** The camera's two encodings on the publish PC: {camera, low} transceivers (or null). */
    this._cameraEncodings = null;
    this._offerChain = Promise.resolve();
    this._prevStats = new Map();
    this._closed = false;
    this.iceServers = [];
    this._iceRefresh = null;
  }

  /** Use these ICE servers (from a join or a refresh) for new and current connections. */
  setIceServers(servers, expiresAt) {
    this.iceServers = Array.isArray(servers) ? servers : [];
    for (const pc of [this.pubPc, this.subPc]) {
      if (!pc || pc.connectionState === "closed") continue;
      try {
        pc.setConfiguration(this._rtcConfiguration());
      } catch (err) {
        console.warn("could not update ICE servers", err);
      }
    }
    clearTimeout(this._iceRefresh);
    if (!expiresAt || this._closed) return;
    const inMs = Math.max(30_000, expiresAt * 1000 - Date.now() - ICE_REFRESH_MARGIN_MS);
    this._iceRefresh = setTimeout(() => this._refreshIceServers(), inMs);
  }

  async _refreshIceServers() {
    try {
      const ack = await this.call("refresh_ice_servers", {});
      this.setIceServers(ack.ice_servers, ack.ice_servers_expire_at);
    } catch (err) {
      // Not joined right now: the next join brings fresh servers.
      console.warn("refreshing ICE servers failed", err);
    }
  }

  _rtcConfiguration() {
    return { iceServers: DIRECT_ONLY ? [] : this.iceServers, iceTransportPolicy: RELAY_ONLY ? "relay" : "all" };
  }

  // --- local media ------------------------------------------------------------------------

  /** Use `stream` (from the pre-join preview) as what we publish. */
  setLocalStream(stream, { audioEnabled = true, videoEnabled = true } = {}) {
    this.localStream = stream;
    this.setAudioEnabled(audioEnabled);
    this.setVideoEnabled(videoEnabled);
  }

  get hasAudio() {
    return Boolean(this.localStream?.getAudioTracks().length);
  }

  get hasVideo() {
    return Boolean(this.localStream?.getVideoTracks().length);
  }

  /** Mute or unmute the microphone (the track keeps flowing silence; no renegotiation). */
  setAudioEnabled(enabled) {
    this.audioEnabled = Boolean(enabled);
    for (const track of this.localStream?.getAudioTracks() || []) track.enabled = this.audioEnabled;
  }

  /** Turn the camera off or on. */
  setVideoEnabled(enabled) {
    this.videoEnabled = Boolean(enabled);
    for (const track of this.localStream?.getVideoTracks() || []) track.enabled = this.videoEnabled;
  }

  /** A video-only stream of our own camera, for the self view. */
  localVideoStream() {
    const track = this.localStream?.getVideoTracks()[0];
    return track ? new MediaStream([track]) : null;
  }

  // --- publishing -------------------------------------------------------------------------

  /** Offer our camera and microphone to the server; resolves when the answer is applied. */
  async publish() {
    if (this._closed) return;
    const stream = this.localStream;
    if (!stream || stream.getTracks().length === 0) {
      this._setPublish("idle");
      return;
    }
    this._closePub();
    const pc = new RTCPeerConnection(this._rtcConfiguration());
    this.pubPc = pc;
    pc.addEventListener("connectionstatechange", () => this._onPcState("publish", pc));
    let camera = null;
    for (const track of stream.getTracks()) {
      const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      preferCodec(transceiver, track.kind);
      if (track.kind === "video" && !camera) camera = transceiver;
    }
    // The camera's low encoding (quality-tiers.js): a second track for receivers' tiles.
    this._cameraEncodings = addLowEncoding(pc, camera);
    if (this._cameraEncodings) preferCodec(this._cameraEncodings.low, "video");
    this._setPublish("publishing");
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitIceGathering(pc);
      if (pc !== this.pubPc) return;
      let ack;
      try {
        const lowVideo = lowVideoMids(this._cameraEncodings);
        ack = await this.call("publish_offer", { sdp: pc.localDescription.sdp, ...(lowVideo ? { low_video: lowVideo } : {}) });
      } catch (err) {
        throw new MediaError(err.code || "publish_failed", err.serverMessage || err.message || "");
      }
      if (pc !== this.pubPc) return;
      if (!ack || typeof ack.sdp !== "string") throw new MediaError("bad_sdp", "no answer in the ack");
      await pc.setRemoteDescription({ type: "answer", sdp: ack.sdp });
      this._setPublish("published");
    } catch (err) {
      if (pc !== this.pubPc) return;
      const error = err instanceof MediaError ? err : new MediaError("publish_failed", String(err?.message || err));
      this._closePub();
      this._setPublish("failed", error);
      throw error;
    }
  }

  /** Stop sending (a guest whose turn ended): the server has closed its side already. */
  unpublish() {
    this._closePub();
    this._setPublish("idle");
  }

  /** `publisher_hint`: cap our camera's high encoding at `max_bitrate` bit/s (null: no cap). */
  applyPublisherHint({ max_bitrate: maxBitrate } = {}) {
    const camera = this._cameraEncodings?.camera;
    if (camera && this.pubPc && this.pubPc.getTransceivers().includes(camera)) {
      return applyBitrateCap(camera, maxBitrate ?? null);
    }
    return Promise.resolve();
  }

  /**
   * Share a screen (or window) as one more video track of the publish connection: added
   * and renegotiated the first time, swapped in place afterwards (same server track).
   */
  async shareScreen(track) {
    const pc = this.pubPc;
    if (!pc || this.publishState !== "published") throw new MediaError("not_published", "publish first");
    this.screenTrack = track;
    if (this._screenTransceiver && pc.getTransceivers().includes(this._screenTransceiver)) {
      await this._screenTransceiver.sender.replaceTrack(track);
      this._screenTransceiver.direction = "sendonly";
      return;
    }
    const transceiver = pc.addTransceiver(track, { direction: "sendonly" });
    preferCodec(transceiver, "video");
    this._screenTransceiver = transceiver;
    await pc.setLocalDescription(await pc.createOffer());
    await waitIceGathering(pc);
    let ack;
    try {
      ack = await this.call("publish_offer", { sdp: pc.localDescription.sdp });
    } catch (err) {
      throw new MediaError(err.code || "publish_failed", err.serverMessage || err.message || "");
    }
    if (pc !== this.pubPc) throw new MediaError("publish_failed", "the connection was replaced");
    await pc.setRemoteDescription({ type: "answer", sdp: ack.sdp });
  }

  /** Stop sending our screen (the m-line stays, silent, for the next share). */
  async stopScreen() {
    const track = this.screenTrack;
    this.screenTrack = null;
    if (track) track.stop();
    const transceiver = this._screenTransceiver;
    if (transceiver && this.pubPc && this.pubPc.getTransceivers().includes(transceiver)) {
      await transceiver.sender.replaceTrack(null).catch(() => {});
    }
  }

  /** Which received track is a shared screen (from live.screen.track); re-maps tracks. */
  setScreenTrack(trackId) {
    if (this._screenTrackId === (trackId || null)) return;
    this._screenTrackId = trackId || null;
    this._syncRemote(this.subPc, true);
  }

  _setPublish(state, error = null) {
    this.publishState = state;
    this.publishError = error;
    this.emit("publish", { state, error });
  }

  // --- subscribing ------------------------------------------------------------------------

  /** Handle a `subscriber_offer`; offers are answered one at a time, in order. */
  handleSubscriberOffer(payload) {
    const run = () => this._answer(payload);
    this._offerChain = this._offerChain.then(run, run).catch((err) => {
      console.warn("subscriber offer failed", err);
      this.emit("connection", { pc: "subscribe", state: "failed" });
    });
    return this._offerChain;
  }

  async _answer({ sdp, tracks, offer_id: offerId }) {
    if (this._closed || typeof sdp !== "string") return;
    const fingerprint = sdpFingerprint(sdp);
    let pc = this.subPc;
    const stale =
      pc &&
      (pc.connectionState === "closed" ||
        pc.connectionState === "failed" ||
        (fingerprint && this._subFingerprint && fingerprint !== this._subFingerprint));
    if (stale) {
      this._closeSub();
      pc = null;
    }
    if (!pc) {
      pc = new RTCPeerConnection(this._rtcConfiguration());
      this.subPc = pc;
      this._subFingerprint = fingerprint;
      pc.addEventListener("connectionstatechange", () => this._onPcState("subscribe", pc));
    }
    const fromSdp = msidMap(sdp);
    const info = new Map();
    if (Array.isArray(tracks)) {
      for (const t of tracks) {
        if (t && t.mid != null && t.identity) info.set(String(t.mid), { identity: t.identity, kind: t.kind, track: t.track || "" });
      }
    } else {
      for (const [mid, value] of fromSdp) info.set(mid, value);
    }
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    if (pc !== this.subPc) return;
    this._midInfo = info;
    this._syncRemote(pc);
    await waitIceGathering(pc);
    if (pc !== this.subPc) return;
    // Naming the offer: an answer to one the server has since replaced is refused, never
    // applied to the new connection's offer.
    await this.call("subscriber_answer", offerId ? { sdp: pc.localDescription.sdp, offer_id: offerId } : { sdp: pc.localDescription.sdp });
  }

  /** Rebuild the identity → tracks map from the subscribe PC's live transceivers. */
  _syncRemote(pc, force = false) {
    const next = new Map();
    if (pc) {
      for (const transceiver of pc.getTransceivers()) {
        const { mid, receiver } = transceiver;
        const direction = transceiver.currentDirection;
        if (!mid || transceiver.stopped || !receiver?.track) continue;
        if (direction && !["recvonly", "sendrecv"].includes(direction)) continue;
        const info = this._midInfo.get(mid);
        if (!info) continue;
        const isScreen = Boolean(this._screenTrackId && info.track === this._screenTrackId);
        const kind = isScreen ? "screen" : receiver.track.kind;
        const entry = next.get(info.identity) || { audio: null, video: null, screen: null };
        if (!entry[kind]) entry[kind] = receiver.track;
        next.set(info.identity, entry);
      }
    }
    const changed = new Set([...this._remote.keys(), ...next.keys()]);
    for (const identity of [...changed]) {
      const before = this._remote.get(identity);
      const after = next.get(identity);
      if (!force && before && after && before.audio === after.audio && before.video === after.video && before.screen === after.screen) {
        changed.delete(identity);
        continue;
      }
      if (after) {
        after.stream = new MediaStream([after.audio, after.video].filter(Boolean));
        after.videoStream = after.video ? new MediaStream([after.video]) : null;
        after.audioStream = after.audio ? new MediaStream([after.audio]) : null;
        after.screenStream = after.screen ? new MediaStream([after.screen]) : null;
        this._remote.set(identity, after);
      } else {
        this._remote.delete(identity);
      }
    }
    for (const identity of changed) this.emit("remote", identity);
  }

  /** {audio, video, stream, videoStream, audioStream} received for a participant, or null. */
  remote(identity) {
    return this._remote.get(identity) || null;
  }

  /** Identities we currently receive media from. */
  remoteIdentities() {
    return [...this._remote.keys()];
  }

  /** Apply a trickled candidate from the server. */
  async handleIceCandidate({ pc, candidate } = {}) {
    const target = pc === "publish" ? this.pubPc : pc === "subscribe" ? this.subPc : null;
    if (!target || !candidate) return;
    try {
      await target.addIceCandidate(candidate);
    } catch (err) {
      console.warn("addIceCandidate failed", err);
    }
  }

  // --- recovery ---------------------------------------------------------------------------

  /**
   * Rebuild both connections while signaling stays up (a peer connection failed): tell the
   * server (`media_restart`: it drops our subscribe connection and offers a fresh one), then
   * publish again on a new publish connection.
   */
  async restart() {
    if (this._closed) return;
    this.reset();
    try {
      await this.call("media_restart", {});
    } catch (err) {
      if (err?.code !== "unknown_event") console.warn("media_restart refused", err);
    }
    await this.publish();
  }

  /**
   * Forget both connections without telling the server: after a rejoin the server has
   * already dropped them (a join replaces the participant's media) and offers afresh.
   */
  reset() {
    this._closePub();
    this._closeSub();
  }

  _onPcState(name, pc) {
    if ((name === "publish" && pc !== this.pubPc) || (name === "subscribe" && pc !== this.subPc)) return;
    const state = pc.connectionState;
    this.emit("connection", { pc: name, state });
    if (state === "failed") this.emit("failed", name);
  }

  _closePub() {
    const pc = this.pubPc;
    this.pubPc = null;
    this._screenTransceiver = null;
    if (this.screenTrack) {
      // The screen went with the connection that sent it.
      this.screenTrack.stop();
      this.screenTrack = null;
      this.emit("screen-lost");
    }
    if (pc) pc.close();
  }

  _closeSub() {
    const pc = this.subPc;
    this.subPc = null;
    this._subFingerprint = null;
    this._midInfo = new Map();
    if (pc) pc.close();
    this._syncRemote(null);
  }

  /** Stop everything: local devices and both connections (idempotent). */
  close() {
    this._closed = true;
    clearTimeout(this._iceRefresh);
    this._closePub();
    this._closeSub();
    for (const track of this.localStream?.getTracks() || []) track.stop();
    this.localStream = null;
  }

  // --- statistics -------------------------------------------------------------------------

  /**
   * Sample getStats on both connections. Returns
   *   {remote: Map(identity → {loss, rttMs, fps, framesDecoded, packets, hasVideo}),
   *    publish: {loss, rttMs, state} | null, subscribeState, rttMs}
   * Rates are over the time since the previous call.
   */
  async collectStats() {
    const result = { remote: new Map(), publish: null, subscribeState: this.subPc?.connectionState || null, rttMs: null };
    const sub = this.subPc;
    if (sub) {
      const report = await sub.getStats();
      const trackToIdentity = new Map();
      for (const transceiver of sub.getTransceivers()) {
        const info = transceiver.mid && this._midInfo.get(transceiver.mid);
        if (info && transceiver.receiver?.track) trackToIdentity.set(transceiver.receiver.track.id, info.identity);
      }
      result.rttMs = candidatePairRtt(report);
      const now = performance.now();
      report.forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        const identity =
          (s.mid != null && this._midInfo.get(String(s.mid))?.identity) || trackToIdentity.get(s.trackIdentifier);
        if (!identity) return;
        const key = `${identity}/${s.kind}/${s.ssrc}`;
        const prev = this._prevStats.get(key);
        this._prevStats.set(key, { at: now, lost: s.packetsLost || 0, received: s.packetsReceived || 0, frames: s.framesDecoded || 0 });
        const entry = result.remote.get(identity) || { lost: 0, received: 0, fps: null, framesDecoded: 0, hasVideo: false, rttMs: result.rttMs };
        if (s.kind === "video") {
          entry.hasVideo = true;
          entry.framesDecoded += s.framesDecoded || 0;
        }
        if (prev) {
          const seconds = Math.max(0.001, (now - prev.at) / 1000);
          entry.lost += Math.max(0, (s.packetsLost || 0) - prev.lost);
          entry.received += Math.max(0, (s.packetsReceived || 0) - prev.received);
          if (s.kind === "video") entry.fps = ((s.framesDecoded || 0) - prev.frames) / seconds;
          entry.sampled = true;
        }
        result.remote.set(identity, entry);
      });
      for (const entry of result.remote.values()) {
        const total = entry.lost + entry.received;
        entry.loss = total > 0 ? entry.lost / total : 0;
        entry.packets = entry.received;
      }
    }
    const pub = this.pubPc;
    if (pub) {
      const report = await pub.getStats();
      let lossSum = 0;
      let lossCount = 0;
      let rtt = null;
      report.forEach((s) => {
        if (s.type === "remote-inbound-rtp") {
          if (typeof s.fractionLost === "number") {
            lossSum += s.fractionLost;
            lossCount += 1;
          }
          if (typeof s.roundTripTime === "number") rtt = Math.max(rtt ?? 0, s.roundTripTime * 1000);
        }
      });
      result.publish = {
        loss: lossCount ? lossSum / lossCount : 0,
        rttMs: rtt ?? candidatePairRtt(report),
        state: pub.connectionState,
      };
    }
    return result;
  }

  /** Total video frames decoded from `identity` (for tests and diagnostics). */
  async framesDecoded(identity) {
    const sub = this.subPc;
    if (!sub) return 0;
    const entry = this._remote.get(identity);
    if (!entry?.video) return 0;
    const report = await sub.getStats(entry.video);
    let frames = 0;
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
    });
    return frames;
  }
}

function candidatePairRtt(report) {
  let rtt = null;
  report.forEach((s) => {
    if (s.type === "candidate-pair" && s.state === "succeeded" && s.nominated && typeof s.currentRoundTripTime === "number") {
      rtt = s.currentRoundTripTime * 1000;
    }
  });
  return rtt;
}
