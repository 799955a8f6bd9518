// SessionStore: this page's model of the consultation session, kept from the snapshot and the
// server's events. Every apply is idempotent (upserts by identity, live state by version,
// timeline by id), so events replayed after a (re)join are harmless.

import { Emitter, LEVELS } from "./util.js";

const TIMELINE_LIMIT = 500;

/** Timeline ids are `<ms>-<n>`: compare them as numbers. */
function entryOrder(a, b) {
  const [am, an] = a.split("-").map(Number);
  const [bm, bn] = b.split("-").map(Number);
  return am - bm || (an || 0) - (bn || 0);
}

export class SessionStore extends Emitter {
  constructor() {
    super();
    this.room = null;
    this.you = null;
    this.participants = new Map();
    this.roster = [];
    this.live = null;
    this.timeline = [];
    this.activeSpeaker = null;
    /** Who waits in the lobby (hosts and co-hosts only). */
    this.lobby = [];
    /** The gallery's approved questions and opinions (id → item) and the one on screen. */
    this.gallery = new Map();
    this.galleryOnScreen = null;
    /** The gallery's moderation queue, id → item (hosts, co-hosts and moderators only). */
    this.galleryQueue = new Map();
    /** Micro-suggestions, id → suggestion: all (hosts, co-hosts, moderators) or one's own. */
    this.suggestions = new Map();
    /** Broadcast viewers' requests to speak, id → request (hosts, co-hosts, moderators). */
    this.callIns = new Map();
    /** identity → {publish, subscribe}: the server side's peer-connection states. */
    this.mediaConnections = new Map();
    /** Server clock minus local clock, in ms (from the snapshot's server_time). */
    this.offsetMs = 0;
  }

  /**
   * Replace everything with a (fresh) snapshot. `keepHistory` (a resync): timeline entries
   * seen before stay, since a snapshot carries only the last 200.
   */
  reset(snapshot, offsetMs, { keepHistory = false } = {}) {
    const earlier = keepHistory ? this.timeline : [];
    this.room = snapshot.room;
    this.you = snapshot.you;
    this.participants = new Map(snapshot.participants.map((p) => [p.identity, p]));
    this.participants.set(snapshot.you.identity, snapshot.you);
    this.roster = snapshot.roster || [];
    this.live = snapshot.live;
    const known = new Set(earlier.map((e) => e.id));
    this.timeline = [...earlier, ...snapshot.timeline.filter((e) => !known.has(e.id))];
    if (keepHistory) this.timeline.sort((a, b) => entryOrder(a.id, b.id));
    if (this.timeline.length > TIMELINE_LIMIT) this.timeline.splice(0, this.timeline.length - TIMELINE_LIMIT);
    this.mediaConnections = new Map();
    this.activeSpeaker = snapshot.active_speaker ?? null;
    this.lobby = snapshot.lobby || [];
    this.gallery = new Map((snapshot.gallery || []).map((i) => [i.id, i]));
    this.galleryOnScreen = snapshot.gallery_on_screen ?? null;
    this.galleryQueue = new Map((snapshot.gallery_queue || []).map((i) => [i.id, i]));
    this.suggestions = new Map((snapshot.suggestions || []).map((s) => [s.id, s]));
    this.callIns = new Map((snapshot.call_ins || []).map((c) => [c.id, c]));
    this.offsetMs = offsetMs || 0;
    this.emit("change", "snapshot");
  }

  /** Apply one server event; emits change(kind) when it changed something. */
  apply(event, payload) {
    switch (event) {
      case "participant_joined":
      case "participant_updated":
      case "participant_reconnecting":
      case "participant_reconnected": {
        this.participants.set(payload.identity, payload);
        if (this.you && payload.identity === this.you.identity && payload.session === this.you.session) {
          this.you = payload;
        }
        this.emit("change", "participants");
        break;
      }
      case "participant_left": {
        this.mediaConnections.delete(payload.identity);
        if (this.participants.delete(payload.identity)) this.emit("change", "participants");
        if (this.activeSpeaker === payload.identity) this.setActiveSpeaker(null);
        break;
      }
      case "live_state": {
        if (!this.live || payload.version > this.live.version) {
          this.live = payload;
          this.emit("change", "live");
        }
        break;
      }
      case "timeline": {
        if (!this.timeline.some((e) => e.id === payload.id)) {
          this.timeline.push(payload);
          if (this.timeline.length > TIMELINE_LIMIT) this.timeline.splice(0, this.timeline.length - TIMELINE_LIMIT);
          this.emit("change", "timeline");
        }
        break;
      }
      case "media_connection": {
        const entry = { ...(this.mediaConnections.get(payload.identity) || {}) };
        entry[payload.connection] = payload.state;
        this.mediaConnections.set(payload.identity, entry);
        this.emit("change", "media");
        break;
      }
      case "lobby": {
        this.lobby = payload.waiting || [];
        this.emit("change", "lobby");
        break;
      }
      case "gallery_item": {
        this.gallery.set(payload.item.id, payload.item);
        this.emit("change", "gallery");
        break;
      }
      case "gallery_on_screen": {
        if (payload.item) this.gallery.set(payload.item.id, payload.item);
        this.galleryOnScreen = payload.item ? payload.item.id : null;
        this.emit("change", "gallery");
        break;
      }
      case "gallery_queue": {
        this.galleryQueue.set(payload.item.id, payload.item);
        this.emit("change", "gallery");
        break;
      }
      case "call_in_queue": {
        this.callIns.set(payload.item.id, payload.item);
        this.emit("change", "call_ins");
        break;
      }
      case "suggestion": {
        this.suggestions.set(payload.suggestion.id, payload.suggestion);
        this.emit("change", "suggestions");
        break;
      }
      case "active_speaker": {
        this.setActiveSpeaker(payload ? payload.identity || null : null);
        break;
      }
      default:
        break;
    }
  }

  setActiveSpeaker(identity) {
    if (this.activeSpeaker === identity) return;
    this.activeSpeaker = identity;
    this.emit("change", "speaker");
  }

  /** The server's clock now, in ms. */
  serverNow() {
    return Date.now() + this.offsetMs;
  }

  get isHost() {
    return this.you?.role === "host";
  }

  /** Host or co-host: runs the floor, the lobby and moderation. */
  get isModerator() {
    return this.you?.role === "host" || this.you?.role === "cohost";
  }

  /** Host, co-host or moderator: runs the speaking queue and the gallery's moderation queue. */
  get runsQueues() {
    return this.isModerator || this.you?.role === "moderator";
  }

  get myIdentity() {
    return this.you?.identity || null;
  }

  /** The present host (the first one, if the roster has several). */
  host() {
    for (const p of this.participants.values()) if (p.role === "host") return p;
    return null;
  }

  /** Who the stage shows: a shared screen's owner, else whom a host pinned, else the floor
   * holder, else the host. */
  spotlightIdentity() {
    const screen = this.live?.screen;
    if (screen && this.participants.has(screen.identity)) return screen.identity;
    const pinned = this.live?.pinned;
    if (pinned && this.participants.has(pinned)) return pinned;
    const floor = this.live?.floor;
    if (floor && this.participants.has(floor.identity)) return floor.identity;
    return this.host()?.identity || null;
  }

  /** Milliseconds left on a timed floor, or null when untimed or nobody speaks. */
  floorRemainingMs() {
    const floor = this.live?.floor;
    if (!floor || floor.deadline == null) return null;
    return floor.deadline - this.serverNow();
  }

  venue(id) {
    return this.room?.venues.find((v) => v.id === id) || null;
  }

  /** Name from presence, else from the roster, else the identity itself. */
  displayName(identity) {
    return (
      this.participants.get(identity)?.name ||
      this.roster.find((r) => r.identity === identity)?.name ||
      identity
    );
  }

  /** Venues sorted by level (national first), the main venue first within its level. */
  venuesByLevel() {
    const venues = [...(this.room?.venues || [])];
    venues.sort(
      (a, b) => LEVELS.indexOf(a.level) - LEVELS.indexOf(b.level) || Number(b.main) - Number(a.main),
    );
    return venues;
  }

  /** Present participants at a venue, host first then by name. */
  participantsAt(venueId) {
    return [...this.participants.values()]
      .filter((p) => p.venue === venueId)
      .sort((a, b) => Number(b.role === "host") - Number(a.role === "host") || a.name.localeCompare(b.name));
  }
}
