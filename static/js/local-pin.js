// The receiver's own pin: one participant shown large on MY screen only.
//
// Distinct from the room's pin (`live.pinned`, set by a host for everyone). The page sends it
// to the server as `video_view {pinned}` (quality-tiers.js), so the pinned camera arrives in
// the high encoding and the room's stage in the low one. What wins on the stage
// (RoomView._spotlightId): a shared screen, then this pin, then the room's stage.
//
// It is kept for the tab (sessionStorage, per session and identity), so a reload (the
// "rejoin" button) or a reconnect shows the same picture; the page clears it when the
// pinned participant leaves, when a host pins someone for everyone, or when the user unpins.

const STORAGE_PREFIX = "yitang.pin.";
/** An identity is at most this long (docs/protocol.md): anything else in storage is junk. */
const MAX_IDENTITY = 64;

export class LocalPin {
  constructor() {
    /** Whom we pinned, or null (the room's stage). */
    this.identity = null;
    this._key = null;
  }

  /** Take the pin kept for this session and identity (after a join: rooms differ per tab). */
  load(roomId, myIdentity) {
    const key = `${STORAGE_PREFIX}${roomId}/${myIdentity}`;
    if (key === this._key) return;
    this._key = key;
    let stored = null;
    try {
      stored = sessionStorage.getItem(key);
    } catch {
      /* storage disabled: the pin lasts as long as the page */
    }
    this.identity = typeof stored === "string" && stored && stored.length <= MAX_IDENTITY ? stored : null;
  }

  /** Pin `identity` (null: unpin). Returns whether it changed. */
  set(identity) {
    const next = identity || null;
    if (next === this.identity) return false;
    this.identity = next;
    if (this._key) {
      try {
        if (next) sessionStorage.setItem(this._key, next);
        else sessionStorage.removeItem(this._key);
      } catch {
        /* storage disabled: not remembered across a reload */
      }
    }
    return true;
  }
}
