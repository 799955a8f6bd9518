// Connection quality per participant, for the tile and participant-list indicators: from the
// subscribe connection's getStats (packet loss, round-trip time, decoded frame rate), the
// server's view of each participant's peer connections (`media_connection`), and for
// ourselves the publish connection and the signaling connection.

import { t } from "./i18n.js";

/**
 * Classify a connection from its numbers: "good" | "fair" | "poor" | "unknown".
 * `expectVideo`: the sender's camera is on, so frames should be arriving.
 */
export function classifyQuality({ loss, rttMs, fps, sampled, packets, hasVideo }, { expectVideo = false } = {}) {
  if (!sampled) return "unknown";
  if (packets === 0) return "poor";
  const videoFps = hasVideo && expectVideo ? fps : null;
  if (loss > 0.1 || (rttMs ?? 0) > 800 || (videoFps !== null && videoFps < 2)) return "poor";
  if (loss > 0.03 || (rttMs ?? 0) > 300 || (videoFps !== null && videoFps < 10)) return "fair";
  return "good";
}

/** What the server's connection states say: failed → poor, connected → good, … */
function fromServerStates(entry) {
  if (!entry) return null;
  const states = Object.values(entry);
  if (states.includes("failed")) return "poor";
  if (states.includes("connected")) return "good";
  if (states.some((s) => s === "new" || s === "connecting")) return "fair";
  return null;
}

/**
 * Qualities for everyone present: Map(identity → quality) with `.self`, and a Map of
 * human-readable details (loss, RTT, fps) per identity.
 * @param stats      MediaClient.collectStats() result
 * @param store      SessionStore
 * @param signalingUp whether our signaling connection is joined
 */
export function computeQualities(stats, store, signalingUp) {
  const qualities = new Map();
  const details = new Map();
  for (const [identity, s] of stats.remote) {
    const p = store.participants.get(identity);
    qualities.set(identity, classifyQuality(s, { expectVideo: p ? !p.video_muted : false }));
    details.set(
      identity,
      t("quality.details", {
        loss: (s.loss * 100).toFixed(1),
        rtt: s.rttMs === null || s.rttMs === undefined ? "–" : Math.round(s.rttMs),
        fps: s.fps === null || s.fps === undefined ? "–" : Math.round(s.fps),
      }),
    );
  }
  for (const p of store.participants.values()) {
    if (p.identity === store.myIdentity) continue;
    const server = fromServerStates(store.mediaConnections.get(p.identity));
    // The server's word wins when it says the participant's connection failed.
    if (server === "poor" || (server && !qualities.has(p.identity))) qualities.set(p.identity, server);
  }
  const pub = stats.publish;
  if (!signalingUp) qualities.self = "offline";
  else if (pub && pub.state === "connected") {
    qualities.self = classifyQuality({ loss: pub.loss, rttMs: pub.rttMs, sampled: true, packets: 1 });
  } else if (pub && ["failed", "disconnected"].includes(pub.state)) qualities.self = "poor";
  else qualities.self = fromServerStates(store.mediaConnections.get(store.myIdentity)) || "good";
  return { qualities, details };
}
