// RoomView: the consultation room on screen. The floor holder (or the host when the floor is
// free) is spotlighted on the stage, unless this receiver pinned someone into its own
// spotlight (local-pin.js); the host is always visible; everyone else who publishes is a tile
// grouped by venue level (the tile area can be collapsed: stage only); side panels are tabs
// (agenda, floor queue, people, chat), with the host console on top for the host; the control
// bar is at the bottom.

import { h, replaceChildren, loadFlag, saveFlag, LEVELS, PUBLISHING_ROLES, formatCountdown } from "./util.js";
import { icon } from "./icons.js";
import { t, onLangChange } from "./i18n.js";
import { Tile, attachVideo } from "./tiles.js";
import { HostConsole } from "./host-console.js";
import { renderAgenda, renderChat, renderGallery, renderGalleryBanner, renderPeople, renderQueue } from "./panels.js";
import { prepareSuggestionForm, renderSuggestions } from "./suggestions.js";

const TABS = ["agenda", "queue", "people", "chat", "gallery"];
/** Countdown warnings (ms left): amber, red, and the one-time notice. */
const AMBER_MS = 60000;
const RED_MS = 15000;
const NOTICE_MS = 30000;
/** Changes that never require rebuilding the side panels. */
const LIGHT_CHANGES = new Set(["speaker", "quality", "media"]);
/** Where the "stage only" choice (tile area collapsed) is remembered. */
const COLLAPSED_KEY = "yitang.tilesCollapsed";

/**
 * Show a control button's icon and label, touching the DOM only when they change. Every
 * render passes here; a button whose children were replaced between a press and its
 * release gets no click (the press landed on a node that is gone), so on a busy machine
 * a render in the middle of a click lost it ("raise hand" did nothing).
 */
function setFace(button, iconName, label) {
  const face = `${iconName}|${label}`;
  if (button.dataset.face === face) return;
  button.dataset.face = face;
  replaceChildren(button, icon(iconName), h("span", { class: "ctl-label", text: label }));
}

export class RoomView {
  /**
   * @param store    SessionStore
   * @param media    MediaClient
   * @param actions  controller actions (see join.js)
   * @param prefs    {autoUnmute}
   * @param pin      LocalPin: whom this receiver pinned into its own spotlight
   * @param videoView VideoViewReporter: tells the server our pin and whether tiles show
   */
  constructor({ store, media, actions, prefs, pin, videoView, toasts }) {
    this.store = store;
    this.media = media;
    this.actions = actions;
    this.prefs = prefs;
    this.pin = pin;
    this.videoView = videoView;
    this.toasts = toasts;
    /** The room's pin (live.pinned) last seen: a host pinning someone new clears ours. */
    this._roomPinSeen = undefined;
    /** After a pin or unpin, where the keyboard focus goes once the tiles moved. */
    this._focusAfterRender = null;
    this.tilesCollapsed = loadFlag(COLLAPSED_KEY, false);
    this.root = document.getElementById("room");
    this.tiles = new Map();
    this.spotlight = new Tile(null, { variant: "spotlight" });
    this.spotlight.el.id = "spotlight";
    this.spotlight.pinButton.id = "spotlight-unpin";
    this.spotlight.onPin = () => this.setPin(null);
    this.qualities = new Map();
    this.qualities.self = "unknown";
    this.qualityDetails = new Map();
    this.activeTab = "people";
    this.unreadChat = 0;
    this.seenChat = null;
    this.hostConsole = null;
    this.controlsBuiltFor = null;
    this.recNoticeClosed = false;
    this._warnedFor = null;
    this._renderQueued = false;
    this._dirty = new Set();
    this._selfStream = null;
    this._selfStreamSource = null;
  }

  /** Build the static parts and start listening. */
  mount() {
    document.getElementById("spotlight-slot").append(this.spotlight.el);
    this._buildTilesToggle();
    this._buildLevelGroups();
    this._buildTabs();
    this.store.on("change", (kind) => this.schedule(kind));
    this.media.on("remote", () => this.schedule("media"));
    onLangChange(() => {
      this._renderTilesToggle();
      this._buildLevelGroups(true);
      this._buildTabs();
      this.hostConsole?.build();
      this.controlsBuiltFor = null;
      this.schedule("lang");
    });
    this._countdownTimer = setInterval(() => this.tick(), 250);
    document.getElementById("rec-notice-close").addEventListener("click", () => {
      this.recNoticeClosed = true;
      document.getElementById("rec-notice").hidden = true;
    });
    this.root.hidden = false;
  }

  /** Render on the next task (batches bursts of events); `kind` says what changed. */
  schedule(kind = "all") {
    this._dirty.add(kind);
    if (this._renderQueued) return;
    this._renderQueued = true;
    setTimeout(() => {
      this._renderQueued = false;
      const dirty = this._dirty;
      this._dirty = new Set();
      this.render(dirty);
    }, 0);
  }

  /**
   * Bring the screen up to date. The side panels are rebuilt only when something they show
   * changed: active-speaker and quality updates come often, and rebuilding a panel under the
   * host's pointer would swallow a click.
   */
  render(dirty = new Set(["all"])) {
    const store = this.store;
    if (!store.you || !store.live) return;
    const role = store.you.role;
    document.body.dataset.role = role;
    document.body.dataset.locked = store.live.locked ? "true" : "false";
    if (store.runsQueues && !this.hostConsole) {
      const el = document.getElementById("host-console");
      el.hidden = false;
      this.hostConsole = new HostConsole({ el, store, actions: this.actions.host });
    }
    if (this.controlsBuiltFor !== role) this._buildControls(role);
    this._renderHeader();
    this._followRoomPin();
    this._renderStage();
    this._renderTiles();
    this.videoView?.setPinned(this.pinnedView());
    this._moveFocus();
    this._renderAudio();
    if ([...dirty].some((kind) => !LIGHT_CHANGES.has(kind))) this._renderPanels();
    else this._updatePanelQualities();
    this._renderControls();
    this.hostConsole?.render();
    this.tick();
  }

  // --- header ---------------------------------------------------------------------------

  _renderHeader() {
    const room = this.store.room;
    const title = document.getElementById("session-title");
    title.textContent = room.title;
    title.title = room.title;
    const item = room.agenda[this.store.live.agenda_index];
    const agendaEl = document.getElementById("session-agenda");
    agendaEl.textContent = item ? item.title : "";
    agendaEl.hidden = !item;
    document.title = `${room.title} · ${t("app.name")}`;
    document.getElementById("rec-indicator").hidden = !this.store.live.recording;
    // A clear notice, not only the badge: shown to everyone while recording, until closed.
    const recording = this.store.live.recording;
    if (!recording) this.recNoticeClosed = false;
    document.getElementById("rec-notice").hidden = !recording || this.recNoticeClosed;
  }

  // --- stage ----------------------------------------------------------------------------

  _streamFor(identity) {
    if (identity && identity === this.store.myIdentity) {
      const source = this.media.localStream;
      if (this._selfStreamSource !== source) {
        this._selfStreamSource = source;
        this._selfStream = this.media.localVideoStream();
      }
      return this._selfStream;
    }
    return this.media.remote(identity)?.videoStream || null;
  }

  _venueOf(p) {
    return p ? this.store.venue(p.venue) : null;
  }

  /** The shared screen's stream: ours from the local track, anyone else's as received. */
  _screenStreamFor(identity) {
    if (identity === this.store.myIdentity) {
      const track = this.media.screenTrack;
      if (this._ownScreenSource !== track) {
        this._ownScreenSource = track;
        this._ownScreen = track ? new MediaStream([track]) : null;
      }
      return this._ownScreen;
    }
    return this.media.remote(identity)?.screenStream || null;
  }

  // --- our own pin ------------------------------------------------------------------------

  /** Whose screen is shown on the stage (it comes before any pin), or null. */
  _screenSharer() {
    const screen = this.store.live?.screen;
    return screen && this.store.participants.has(screen.identity) ? screen.identity : null;
  }

  /** Whom we pinned, while they are here with a picture to show (the pin is dropped when
   * they leave, or when a guest's connection ends and they only watch again). */
  _myPin() {
    const id = this.pin?.identity;
    if (id && !PUBLISHING_ROLES.has(this.store.participants.get(id)?.role)) {
      this.pin.set(null);
      return null;
    }
    return id || null;
  }

  /** Who is on our stage: a shared screen, else whom we pinned, else the room's stage. */
  _spotlightId() {
    return this._screenSharer() || this._myPin() || this.store.spotlightIdentity();
  }

  /**
   * Whom the server should send us in the high encoding (`video_view.pinned`): our pin,
   * except while a shared screen holds the stage (then the sharer's camera, as for everyone;
   * our pin is kept and comes back when the sharing ends). Null: the room's stage.
   */
  pinnedView() {
    if (!this.store.live || this._screenSharer()) return null;
    return this._myPin();
  }

  /** Pin a participant into our own spotlight (null: back to the room's stage). */
  setPin(identity) {
    const before = this.pin.identity;
    if (!this.pin.set(identity)) return;
    // The pinned tile moves to the stage (and back): keep the keyboard where the user is.
    this._focusAfterRender = identity ? { spotlight: true } : { identity: before };
    this.schedule("pin");
  }

  /** A host pinning someone for everyone takes the stage back from our own pin. */
  _followRoomPin() {
    const roomPin = this.store.live.pinned || null;
    const seen = this._roomPinSeen;
    this._roomPinSeen = roomPin;
    if (seen === undefined || !roomPin || roomPin === seen || !this.pin.identity) return;
    if (this.pin.identity === roomPin) return;
    this.pin.set(null);
    this.toasts?.show(t("stage.room_pin_took_over", { name: this.store.displayName(roomPin) }), { id: "room-pin" });
  }

  _moveFocus() {
    const target = this._focusAfterRender;
    if (!target) return;
    this._focusAfterRender = null;
    const button = target.spotlight ? this.spotlight.pinButton : this.tiles.get(target.identity)?.pinButton;
    if (button && !button.hidden && button.isConnected) button.focus();
  }

  /** The pin button of a remote participant's tile (none on our own). */
  _pinControl(tile, p) {
    const self = p.identity === this.store.myIdentity;
    const pinned = !self && this.pin.identity === p.identity;
    const name = this.store.displayName(p.identity);
    tile.setPin({
      shown: !self,
      pressed: pinned,
      label: t(pinned ? "tile.unpin_label" : "tile.pin_label", { name }),
    });
    tile.onPin = () => this.setPin(this.pin.identity === p.identity ? null : p.identity);
  }

  // --- collapsing the tile area ("stage only") ---------------------------------------------

  _buildTilesToggle() {
    this.tilesToggle = h("button", {
      type: "button",
      id: "tiles-toggle",
      class: "btn small tiles-toggle",
      "aria-controls": "tile-groups host-slot",
      onclick: () => this.setTilesCollapsed(!this.tilesCollapsed),
    });
    document.getElementById("tile-groups").insertAdjacentElement("beforebegin", this.tilesToggle);
    this._renderTilesToggle();
  }

  /** Hide (or show again) the small pictures, the host's beside the stage included. */
  setTilesCollapsed(collapsed) {
    this.tilesCollapsed = Boolean(collapsed);
    saveFlag(COLLAPSED_KEY, this.tilesCollapsed);
    this._renderTilesToggle();
  }

  _renderTilesToggle() {
    const collapsed = this.tilesCollapsed;
    document.body.dataset.tiles = collapsed ? "collapsed" : "shown";
    this.tilesToggle.textContent = t(collapsed ? "tiles.show" : "tiles.hide");
    this.tilesToggle.setAttribute("aria-expanded", collapsed ? "false" : "true");
    this.tilesToggle.dataset.collapsed = collapsed ? "true" : "false";
    this.videoView?.setCollapsed(collapsed);
  }

  _renderStage() {
    const store = this.store;
    const id = this._spotlightId();
    const p = id ? store.participants.get(id) : null;
    const floor = store.live.floor;
    const isFloor = Boolean(floor && p && floor.identity === id);
    const isPinned = Boolean(p && store.live.pinned === id);
    const isScreen = Boolean(p && store.live.screen?.identity === id);
    const isMine = Boolean(p && !isScreen && this.pin.identity === id);
    let status = "";
    if (p) {
      status = isScreen
        ? t("stage.sharing")
        : isMine
          ? t("stage.my_pin")
          : isPinned
            ? t("stage.pinned")
            : isFloor
              ? t("stage.speaking")
              : t("stage.host");
    }
    this.spotlight.update(p, this._venueOf(p), {
      self: id === store.myIdentity && !isScreen,
      inQueue: false,
      speaking: Boolean(id) && store.activeSpeaker === id,
      stream: isScreen ? this._screenStreamFor(id) : this._streamFor(id),
      status,
      emptyText: t("stage.waiting_host"),
    });
    this.spotlight.el.dataset.screen = isScreen ? "true" : "false";
    // While a screen is shown, the sharer's camera goes to a corner of the stage.
    const pip = document.getElementById("screen-pip");
    const pipVideo = pip.querySelector("video");
    if (isScreen) {
      attachVideo(pipVideo, this._streamFor(id));
      pipVideo.dataset.identity = id;
      pip.hidden = false;
    } else if (!pip.hidden) {
      pip.hidden = true;
      pipVideo.srcObject = null;
    }
    this.spotlight.el.dataset.floor = isFloor ? "true" : "false";
    this.spotlight.el.dataset.pinned = isPinned ? "true" : "false";
    // On our own pin, the spotlight offers the way back to the room's stage.
    this.spotlight.setPin({ shown: isMine, pressed: true, label: t("stage.unpin_mine"), text: t("stage.unpin_mine") });
    this.spotlight.setQuality(this._qualityOf(id));

    // The host is always visible: a small tile beside the stage unless spotlighted.
    const host = store.host();
    const hostSlot = document.getElementById("host-slot");
    if (host && host.identity !== id) {
      const tile = this._tile(host.identity, "host");
      this._updateTile(tile, host);
      if (tile.el.parentNode !== hostSlot) {
        hostSlot.replaceChildren(tile.el);
        tile.resume();
      }
      hostSlot.hidden = false;
    } else {
      hostSlot.replaceChildren();
      hostSlot.hidden = true;
    }

    const notice = document.getElementById("floor-notice");
    const mine = Boolean(floor && floor.identity === store.myIdentity && !store.isHost);
    notice.hidden = !mine;
    document.body.dataset.hasFloor = mine ? "true" : "false";
  }

  // --- tiles ----------------------------------------------------------------------------

  _tile(identity, variant = "tile") {
    let tile = this.tiles.get(identity);
    if (!tile) {
      tile = new Tile(identity, { variant });
      this.tiles.set(identity, tile);
    }
    tile.el.classList.toggle("tile-host", variant === "host");
    tile.el.classList.toggle("tile-tile", variant !== "host");
    return tile;
  }

  _updateTile(tile, p) {
    const store = this.store;
    tile.update(p, this._venueOf(p), {
      self: p.identity === store.myIdentity,
      inQueue: (store.live.queue || []).includes(p.identity),
      speaking: store.activeSpeaker === p.identity,
      stream: this._streamFor(p.identity),
      status: p.role === "host" ? t("stage.host") : "",
    });
    this._pinControl(tile, p);
    tile.setQuality(this._qualityOf(p.identity), this.qualityDetails.get(p.identity) || "");
  }

  _buildLevelGroups(relabel = false) {
    const container = document.getElementById("tile-groups");
    if (relabel) {
      for (const level of LEVELS) {
        const heading = container.querySelector(`[data-level-group="${level}"] > h3`);
        if (heading) heading.textContent = t(`level_group.${level}`);
      }
      return;
    }
    replaceChildren(
      container,
      LEVELS.map((level) =>
        h(
          "section",
          { class: "level-group", "data-level-group": level, hidden: true },
          h("h3", { text: t(`level_group.${level}`) }),
          h("div", { class: "tiles" }),
        ),
      ),
    );
  }

  _renderTiles() {
    const store = this.store;
    const spotlightId = this._spotlightId();
    const hostId = store.host()?.identity;
    const wanted = new Set();
    const byLevel = new Map(LEVELS.map((level) => [level, []]));
    for (const venue of store.venuesByLevel()) {
      for (const p of store.participantsAt(venue.id)) {
        if (p.identity === spotlightId || p.identity === hostId) continue;
        if (!PUBLISHING_ROLES.has(p.role)) continue; // observers only watch: listed, no tile
        wanted.add(p.identity);
        byLevel.get(venue.level)?.push(p);
      }
    }
    for (const [identity, tile] of this.tiles) {
      if (identity === hostId && identity !== spotlightId) continue;
      if (!wanted.has(identity)) {
        tile.el.remove();
        if (!store.participants.has(identity)) this.tiles.delete(identity);
      }
    }
    let any = false;
    for (const level of LEVELS) {
      const section = document.querySelector(`#tile-groups [data-level-group="${level}"]`);
      const box = section.querySelector(".tiles");
      const people = byLevel.get(level);
      section.hidden = people.length === 0;
      any = any || people.length > 0;
      const tiles = people.map((p) => {
        const tile = this._tile(p.identity);
        this._updateTile(tile, p);
        return tile;
      });
      const current = [...box.children];
      if (current.length !== tiles.length || tiles.some((tile, i) => current[i] !== tile.el)) {
        box.replaceChildren(...tiles.map((tile) => tile.el));
        for (const tile of tiles) tile.resume();
      }
    }
    // "Nobody else yet" only when nobody else is here: the host on the stage counts.
    const others = [...store.participants.keys()].some((identity) => identity !== store.myIdentity);
    document.getElementById("tiles-empty").hidden = any || others;
  }

  _renderAudio() {
    const sink = document.getElementById("audio-sink");
    const wanted = new Map();
    for (const identity of this.media.remoteIdentities()) {
      const stream = this.media.remote(identity)?.audioStream;
      if (stream && identity !== this.store.myIdentity) wanted.set(identity, stream);
    }
    for (const el of [...sink.children]) {
      if (!wanted.has(el.dataset.identity)) {
        el.srcObject = null;
        el.remove();
      }
    }
    for (const [identity, stream] of wanted) {
      let el = sink.querySelector(`audio[data-identity="${CSS.escape(identity)}"]`);
      if (!el) {
        el = h("audio", { autoplay: true, "data-identity": identity });
        sink.append(el);
      }
      if (el.srcObject !== stream) el.srcObject = stream;
      if (el.paused) el.play().catch(() => {});
    }
  }

  // --- quality --------------------------------------------------------------------------

  _qualityOf(identity) {
    if (!identity) return "unknown";
    if (identity === this.store.myIdentity) return this.qualities.self;
    return this.qualities.get(identity) || "unknown";
  }

  /** New connection qualities: Map(identity → quality) plus .self; details per identity. */
  setQualities(qualities, details) {
    this.qualities = qualities;
    this.qualityDetails = details;
    this.schedule("quality");
  }

  // --- panels ---------------------------------------------------------------------------

  _buildTabs() {
    const bar = document.getElementById("tabs");
    bar.setAttribute("aria-label", t("tabs.label"));
    replaceChildren(
      bar,
      TABS.map((tab) =>
        h(
          "button",
          {
            type: "button",
            role: "tab",
            id: `tab-${tab}`,
            class: "tab",
            "data-tab": tab,
            "aria-controls": `panel-${tab}`,
            "aria-selected": tab === this.activeTab ? "true" : "false",
            onclick: () => this.selectTab(tab),
          },
          h("span", { text: t(`tabs.${tab}`) }),
          h("span", { class: "tab-count", "data-count-for": tab, hidden: true }),
        ),
      ),
    );
    this._showTab();
  }

  selectTab(tab) {
    this.activeTab = tab;
    if (tab === "chat") this.unreadChat = 0;
    this._showTab();
    this.schedule("tab");
  }

  _showTab() {
    for (const button of document.querySelectorAll("#tabs .tab")) {
      button.setAttribute("aria-selected", button.dataset.tab === this.activeTab ? "true" : "false");
    }
    for (const tab of TABS) document.getElementById(`panel-${tab}`).hidden = tab !== this.activeTab;
  }

  _renderPanels() {
    const store = this.store;
    const host = this.hostConsole;
    renderAgenda(document.getElementById("agenda-body"), store, host);
    renderQueue(document.getElementById("queue-body"), store, host);
    renderPeople(document.getElementById("people-body"), store, host, this.qualities);
    renderChat(document.getElementById("chat-list"), store);
    renderGallery(document.getElementById("gallery-list"), document.getElementById("gallery-queue"), store, this.actions.gallery);
    renderGalleryBanner(document.getElementById("gallery-banner"), store);
    renderSuggestions(document.getElementById("suggestions-list"), store);
    prepareSuggestionForm(document.getElementById("suggestion-form"), store);
    // Counts on the tabs: the queue length, and chat messages not seen yet.
    const chats = store.timeline.filter((e) => e.type === "chat").length;
    if (this.seenChat === null || this.activeTab === "chat") this.seenChat = chats;
    this.unreadChat = Math.max(0, chats - this.seenChat);
    this._setTabCount("queue", (store.live.queue || []).length);
    this._setTabCount("chat", this.unreadChat);
    this._setTabCount("people", store.participants.size);
    // Those who run the gallery see how many items wait for them.
    this._setTabCount("gallery", store.runsQueues ? [...store.galleryQueue.values()].filter((i) => i.status === "pending").length : 0);
    const form = document.getElementById("chat-form");
    const readonly = document.getElementById("chat-readonly");
    const canChat = store.you.role !== "observer";
    if (!canChat && form) form.remove();
    readonly.hidden = canChat;
  }

  /** Only the connection dots of the participant list, in place. */
  _updatePanelQualities() {
    for (const row of document.querySelectorAll('#people-body .person[data-present="true"]')) {
      const quality = this._qualityOf(row.dataset.participant);
      row.dataset.connection = quality;
      const dot = row.querySelector(".quality");
      if (dot && dot.dataset.quality !== quality) {
        dot.dataset.quality = quality;
        dot.title = t(`quality.${quality}`);
        dot.setAttribute("aria-label", t(`quality.${quality}`));
      }
    }
  }

  _setTabCount(tab, n) {
    const el = document.querySelector(`[data-count-for="${tab}"]`);
    if (!el) return;
    el.hidden = !n;
    el.textContent = String(n);
  }

  // --- controls -------------------------------------------------------------------------

  _buildControls(role) {
    this.controlsBuiltFor = role;
    const bar = document.getElementById("controls");
    bar.setAttribute("aria-label", t("controls.label"));
    const items = [];
    if (PUBLISHING_ROLES.has(role)) {
      items.push(
        h("button", { type: "button", id: "mic-button", class: "ctl", onclick: () => this.actions.toggleMic() }),
        h("button", { type: "button", id: "cam-button", class: "ctl", onclick: () => this.actions.toggleCam() }),
      );
    }
    if (role === "member" || role === "guest" || role === "cohost") {
      items.push(
        h("button", { type: "button", id: "hand-button", class: "ctl", onclick: () => this.actions.toggleHand() }),
        h("button", { type: "button", id: "yield-button", class: "ctl", hidden: true, onclick: () => this.actions.yieldFloor() }, icon("yield"), h("span", { class: "ctl-label", text: t("controls.yield") })),
        h(
          "label",
          { class: "ctl-check", id: "auto-unmute-label" },
          h("input", {
            type: "checkbox",
            id: "auto-unmute",
            checked: this.prefs.autoUnmute,
            onchange: (e) => this.actions.setAutoUnmute(e.target.checked),
          }),
          h("span", { text: t("controls.auto_unmute") }),
        ),
      );
    }
    if (PUBLISHING_ROLES.has(role)) {
      items.push(h("button", { type: "button", id: "share-button", class: "ctl", hidden: true, onclick: () => this.actions.toggleShare() }));
    }
    if (role === "observer") {
      // An observer's raised hand asks to be connected (连线: the host may invite them on stage).
      items.push(h("button", { type: "button", id: "hand-button", class: "ctl", onclick: () => this.actions.toggleHand() }));
      items.push(h("span", { class: "observer-tag", id: "observer-tag", text: t("controls.observer") }));
    }
    items.push(
      h("span", { class: "ctl-spacer" }),
      h("button", { type: "button", id: "leave-button", class: "ctl danger", onclick: () => this.actions.leave() }, icon("leave"), h("span", { class: "ctl-label", text: t("controls.leave") })),
    );
    replaceChildren(bar, items);
  }

  _renderControls() {
    const store = this.store;
    const media = this.media;
    const mic = document.getElementById("mic-button");
    if (mic) {
      const on = media.hasAudio && media.audioEnabled;
      mic.dataset.state = on ? "on" : "off";
      mic.disabled = !media.hasAudio;
      setFace(mic, on ? "mic" : "mic-off", t(on ? "controls.mic_on" : "controls.mic_off"));
      mic.setAttribute("aria-pressed", on ? "false" : "true");
    }
    const cam = document.getElementById("cam-button");
    if (cam) {
      const on = media.hasVideo && media.videoEnabled;
      cam.dataset.state = on ? "on" : "off";
      cam.disabled = !media.hasVideo;
      setFace(cam, on ? "camera" : "camera-off", t(on ? "controls.cam_on" : "controls.cam_off"));
      cam.setAttribute("aria-pressed", on ? "false" : "true");
    }
    const hand = document.getElementById("hand-button");
    const mine = store.live.floor?.identity === store.myIdentity;
    if (hand) {
      const raised = (store.live.queue || []).includes(store.myIdentity);
      hand.dataset.state = raised ? "raised" : "down";
      hand.hidden = mine;
      hand.setAttribute("aria-pressed", raised ? "true" : "false");
      const ask = store.you.role === "observer" ? "stage.asks" : "controls.raise_hand";
      setFace(hand, "hand", t(raised ? "controls.lower_hand" : ask));
    }
    const share = document.getElementById("share-button");
    if (share) {
      // The host may always share; anyone else while holding the floor.
      const sharing = Boolean(media.screenTrack);
      share.hidden = !(sharing || store.isHost || mine) || typeof navigator.mediaDevices?.getDisplayMedia !== "function";
      share.dataset.state = sharing ? "on" : "off";
      setFace(share, "screen", t(sharing ? "controls.share_stop" : "controls.share"));
    }
    const yieldButton = document.getElementById("yield-button");
    if (yieldButton) yieldButton.hidden = !mine;
    const auto = document.getElementById("auto-unmute");
    if (auto) auto.checked = this.prefs.autoUnmute;
  }

  // --- countdowns -----------------------------------------------------------------------

  /** Update every floor countdown (4× a second). */
  tick() {
    const store = this.store;
    if (!store.live) return;
    const remaining = store.floorRemainingMs();
    const text = remaining === null ? "" : formatCountdown(remaining);
    const floor = store.live.floor;
    const floorId = floor?.identity;
    // Amber from a minute left, red from 15 s.
    const warn = remaining === null ? "" : remaining <= RED_MS ? "red" : remaining <= AMBER_MS ? "amber" : "";
    this.spotlight.setCountdown(floorId && floorId === this.spotlight.identity && text ? t("stage.countdown", { time: text }) : "");
    this.spotlight.countdown.dataset.warn = warn;
    for (const el of document.querySelectorAll('[data-countdown="floor"]')) {
      el.textContent = remaining === null ? t("queue.untimed") : text;
      el.dataset.warn = warn;
    }
    const noticeTime = document.getElementById("floor-notice-time");
    if (noticeTime) noticeTime.textContent = remaining === null ? t("floor.untimed") : t("floor.countdown", { time: text });
    document.getElementById("floor-notice").dataset.warn = warn;
    document.body.dataset.countdown = text;
    document.body.dataset.floorWarn = warn;
    // Half a minute left: the speaker and the hosts are told once (again after an extension).
    if (remaining !== null && remaining > 0 && remaining <= NOTICE_MS) {
      const key = `${floor.grant_id}:${floor.deadline}`;
      if (this._warnedFor !== key) {
        this._warnedFor = key;
        if (floorId === store.myIdentity || store.runsQueues) this.actions.floorWarning?.(floor);
      }
    }
  }

  // --- the end ---------------------------------------------------------------------------

  /** Replace the room with a final message. */
  showEnded({ titleKey, textKey, detail = "", rejoin = false }) {
    clearInterval(this._countdownTimer);
    for (const tile of [...this.tiles.values(), this.spotlight]) tile.video.srcObject = null;
    for (const el of document.querySelectorAll("#audio-sink audio")) el.srcObject = null;
    showEndedScreen({ titleKey, textKey, detail, rejoin });
  }
}

/** The final screen (also used when the connection is refused before the room exists). */
export function showEndedScreen({ titleKey, textKey, detail = "", rejoin = false }) {
  const room = document.getElementById("room");
  if (room) room.hidden = true;
  document.getElementById("prejoin").hidden = true;
  const ended = document.getElementById("ended");
  ended.hidden = false;
  ended.dataset.reason = titleKey;
  const render = () => {
    document.getElementById("ended-title").textContent = t(titleKey);
    document.getElementById("ended-text").textContent = textKey ? t(textKey) : "";
    document.getElementById("ended-detail").textContent = typeof detail === "function" ? detail() : detail;
    const button = document.getElementById("rejoin-button");
    button.hidden = !rejoin;
    button.textContent = t("ended.rejoin");
  };
  render();
  onLangChange(render);
  document.body.dataset.ended = titleKey;
}

