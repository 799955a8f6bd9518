// HostConsole: the controls of the host and co-hosts — floor (grant with a time limit, skip,
// revoke, next speaker, +1/+3 minutes, queue order), spotlight pin, mute all, agenda,
// per-participant mute request, rename and removal, lock/unlock, the lobby; the host alone
// starts and stops the recording and ends the session. Built when the snapshot says the role
// is host or cohost — or moderator, who gets the speaking queue's controls only (grant,
// next, revoke, extend, order, skip) — and the server checks every action again.

import { h, replaceChildren } from "./util.js";
import { icon } from "./icons.js";
import { t } from "./i18n.js";

/** Time-limit choices in seconds (0: none). */
export const TIME_LIMITS = [0, 60, 120, 180, 300];
/** Extensions of a running turn, in seconds. */
export const EXTENSIONS = [60, 180];

export class HostConsole {
  /**
   * @param el       container for the console strip
   * @param store    SessionStore
   * @param actions  {grant, skip, revoke, next, advance, setLock, setRecording, requestMute, remove, end,
   *                  muteAll, pin, moveInQueue, extend, rename, setHandSound, admit, deny,
   *                  setBroadcastPaused}
   */
  constructor({ el, store, actions }) {
    this.el = el;
    this.store = store;
    this.actions = actions;
    this.limit = 0;
    /** Host or co-host: the whole console; a moderator runs the speaking queue only. */
    this.full = store.isModerator;
    this.build();
  }

  /** Seconds for the next grant, or null for an untimed floor. */
  get timeLimitSeconds() {
    return this.limit > 0 ? this.limit : null;
  }

  /** (Re)create the console's elements (after a language change too). */
  build() {
    const isHost = this.store.isHost;
    this.select = h(
      "select",
      {
        id: "host-time-limit",
        class: "time-limit",
        onchange: (e) => {
          this.limit = Number(e.target.value);
        },
      },
      TIME_LIMITS.map((seconds) =>
        h("option", { value: String(seconds), selected: seconds === this.limit, text: seconds ? t("host.limit_minutes", { n: seconds / 60 }) : t("host.limit_none") }),
      ),
    );
    this.select.value = String(this.limit);
    this.floorStatus = h("div", { class: "host-floor-status", id: "host-floor-status" });
    this.nextButton = h("button", { type: "button", id: "host-next-speaker", class: "btn", onclick: () => this.actions.next(this.timeLimitSeconds) }, icon("next"), h("span", { text: t("host.next_speaker") }));
    this.revokeMain = h("button", { type: "button", id: "host-revoke", class: "btn", onclick: () => this.actions.revoke() }, icon("stop"), h("span", { text: t("host.revoke") }));
    this.extendButtons = EXTENSIONS.map((seconds) =>
      h("button", { type: "button", id: `host-extend-${seconds}`, class: "btn small extend", "data-seconds": seconds, onclick: () => this.actions.extend(seconds), text: t("host.extend", { n: seconds / 60 }) }),
    );
    this.stopShareButton = h("button", { type: "button", id: "host-stop-share", class: "btn small danger", onclick: () => this.actions.stopShare(), text: t("host.stop_share") });
    this.unpinButton = h("button", { type: "button", id: "host-unpin", class: "btn small", onclick: () => this.actions.pin(null), text: t("host.unpin") });
    this.pinStatus = h("div", { class: "host-floor-status", id: "host-pin-status" });
    this.muteAllButton = h("button", { type: "button", id: "host-mute-all", class: "btn", onclick: () => this.actions.muteAll() }, icon("mic-off"), h("span", { text: t("host.mute_all") }));
    this.handSound = h("input", { type: "checkbox", id: "host-hand-sound", checked: this.actions.handSound?.(), onchange: (e) => this.actions.setHandSound(e.target.checked) });
    this.nextItemButton = h("button", { type: "button", id: "host-next-item", class: "btn", onclick: () => this.actions.advance(null) }, h("span", { text: t("host.next_item") }));
    this.lockButton = h("button", { type: "button", id: "host-lock", class: "btn", onclick: () => this.actions.setLock(!this.store.live?.locked) });
    this.recordButton = isHost ? h("button", { type: "button", id: "host-record", class: "btn", onclick: () => this.actions.setRecording(!this.store.live?.recording) }) : null;
    // The live broadcast's pause/resume (only for a broadcast room).
    const broadcast = this.store.room?.broadcast;
    this.broadcastButton = broadcast && broadcast !== "off" ? h("button", { type: "button", id: "host-broadcast", class: "btn", onclick: () => this.actions.setBroadcastPaused(!this.store.live?.broadcast_paused) }) : null;
    this.endButton = isHost ? h("button", { type: "button", id: "host-end", class: "btn danger", onclick: () => this.actions.end() }, h("span", { text: t("host.end") })) : null;
    this.lockNote = h("div", { class: "host-lock-note", text: t("host.locked_note") });
    this.lobbyBox = h("div", { class: "lobby-box", id: "lobby-box", hidden: true });
    if (!this.full) {
      replaceChildren(
        this.el,
        h("h2", { class: "host-title", text: t("host.console_moderator") }),
        h("div", { class: "host-row host-floor-row" }, this.floorStatus, this.extendButtons, this.revokeMain),
        h(
          "div",
          { class: "host-row" },
          h("label", { class: "time-limit-label" }, h("span", { text: t("host.time_limit") }), this.select),
          this.nextButton,
        ),
        h("div", { class: "host-row" }, h("label", { class: "ctl-check" }, this.handSound, h("span", { text: t("host.hand_sound") }))),
      );
      this.render();
      return;
    }
    replaceChildren(
      this.el,
      h("h2", { class: "host-title", text: t(isHost ? "host.console" : "host.console_cohost") }),
      h("div", { class: "host-row host-floor-row" }, this.floorStatus, this.extendButtons, this.revokeMain),
      h("div", { class: "host-row host-pin-row", id: "host-pin-row" }, this.pinStatus, this.unpinButton),
      h("div", { class: "host-row", id: "host-share-row" }, h("div", { class: "host-floor-status", id: "host-share-status" }), this.stopShareButton),
      h(
        "div",
        { class: "host-row" },
        h("label", { class: "time-limit-label" }, h("span", { text: t("host.time_limit") }), this.select),
        this.nextButton,
      ),
      h(
        "div",
        { class: "host-row" },
        this.muteAllButton,
        h("label", { class: "ctl-check" }, this.handSound, h("span", { text: t("host.hand_sound") })),
      ),
      h("div", { class: "host-row" }, this.nextItemButton, this.lockButton, this.recordButton, this.broadcastButton, this.endButton),
      this.lockNote,
      this.lobbyBox,
    );
    this.render();
  }

  /** Update states (enabled buttons, lock label, floor line) from the store. */
  render() {
    const live = this.store.live;
    if (!live) return;
    const floor = live.floor;
    this.floorStatus.textContent = floor
      ? t("host.floor_status", { name: this.store.displayName(floor.identity) })
      : t("host.floor_none");
    this.revokeMain.disabled = !floor;
    for (const button of this.extendButtons) button.hidden = !(floor && floor.deadline);
    const pinned = live.pinned && this.store.participants.has(live.pinned) ? live.pinned : null;
    document.getElementById("host-pin-row")?.toggleAttribute("hidden", !pinned);
    this.pinStatus.textContent = pinned ? t("host.pinned_status", { name: this.store.displayName(pinned) }) : "";
    const screen = live.screen && this.store.participants.has(live.screen.identity) ? live.screen : null;
    document.getElementById("host-share-row")?.toggleAttribute("hidden", !screen);
    const shareStatus = document.getElementById("host-share-status");
    if (shareStatus) shareStatus.textContent = screen ? t("host.share_status", { name: this.store.displayName(screen.identity) }) : "";
    this.nextButton.disabled = !(live.queue || []).length;
    const agenda = this.store.room?.agenda || [];
    this.nextItemButton.disabled = live.agenda_index >= agenda.length - 1;
    replaceChildren(this.lockButton, icon(live.locked ? "unlock" : "lock"), h("span", { text: t(live.locked ? "host.unlock" : "host.lock") }));
    this.lockButton.dataset.locked = live.locked ? "true" : "false";
    this.lockNote.hidden = !live.locked;
    if (this.broadcastButton) {
      this.broadcastButton.textContent = t(live.broadcast_paused ? "live.resume" : "live.pause");
      this.broadcastButton.dataset.paused = live.broadcast_paused ? "true" : "false";
    }
    if (this.recordButton) {
      replaceChildren(this.recordButton, h("span", { class: "rec-dot", "aria-hidden": "true" }), h("span", { text: t(live.recording ? "host.record_stop" : "host.record_start") }));
      this.recordButton.dataset.recording = live.recording ? "true" : "false";
    }
    this.renderLobby();
  }

  /** Who waits in the lobby, with admit/deny for each and for all (`store.lobby`). */
  renderLobby() {
    const waiting = this.store.lobby || [];
    this.lobbyBox.hidden = waiting.length === 0;
    this.lobbyBox.dataset.count = String(waiting.length);
    if (!waiting.length) {
      this.lobbyBox.replaceChildren();
      return;
    }
    const rows = waiting.map((w) =>
      h(
        "li",
        { class: "lobby-row", "data-lobby": w.identity },
        h("span", { class: "who" }, h("span", { class: "who-name", text: w.name, title: w.name }), h("span", { class: "who-venue", text: this.store.venue(w.venue)?.name || w.venue })),
        h("button", { type: "button", class: "btn small primary lobby-admit", onclick: () => this.actions.admit([w.identity]), text: t("lobby.admit") }),
        h("button", { type: "button", class: "btn small lobby-deny", onclick: () => this.actions.deny([w.identity]), text: t("lobby.deny") }),
      ),
    );
    replaceChildren(
      this.lobbyBox,
      h("h3", { id: "lobby-count", text: t("lobby.waiting", { n: waiting.length }) }),
      h("ul", { class: "lobby-list" }, rows),
      h(
        "div",
        { class: "host-row" },
        h("button", { type: "button", id: "lobby-admit-all", class: "btn small primary", onclick: () => this.actions.admit(waiting.map((w) => w.identity)), text: t("lobby.admit_all") }),
        h("button", { type: "button", id: "lobby-deny-all", class: "btn small", onclick: () => this.actions.deny(waiting.map((w) => w.identity)), text: t("lobby.deny_all") }),
      ),
    );
  }

  // --- per-row buttons for the panels ----------------------------------------------------

  agendaButton(index) {
    if (!this.full) return null;
    return h("button", { type: "button", class: "btn small agenda-go", "data-index": index, onclick: () => this.actions.advance(index), text: t("agenda.go") });
  }

  revokeButton() {
    return h("button", { type: "button", class: "btn small revoke", onclick: () => this.actions.revoke(), text: t("host.revoke") });
  }

  grantButton(identity) {
    // An observer's raised hand asks to be connected: it is answered with an invitation.
    if (this.store.participants.get(identity)?.role === "observer" && this.actions.stage) return this.actions.stage.stageButton(identity);
    return h("button", { type: "button", class: "btn small primary grant", "data-identity": identity, onclick: () => this.actions.grant(identity, this.timeLimitSeconds), text: t("queue.grant") });
  }

  skipButton(identity) {
    return h("button", { type: "button", class: "btn small skip", "data-identity": identity, onclick: () => this.actions.skip(identity), text: t("queue.skip") });
  }

  /** Move a raised hand up or down one place. */
  orderButtons(identity, index, length) {
    return [
      h("button", { type: "button", class: "btn icon-btn small queue-up", title: t("queue.up"), "aria-label": t("queue.up"), disabled: index === 0, onclick: () => this.actions.moveInQueue(identity, index - 1), text: "↑" }),
      h("button", { type: "button", class: "btn icon-btn small queue-down", title: t("queue.down"), "aria-label": t("queue.down"), disabled: index >= length - 1, onclick: () => this.actions.moveInQueue(identity, index + 1), text: "↓" }),
    ];
  }

  /** Mute requests, give floor, pin, rename and remove for one participant row. */
  personActions(p) {
    const buttons = [];
    if (!this.full) {
      // A moderator: give the floor, nothing else.
      if (p.role !== "observer" && this.store.live?.floor?.identity !== p.identity) {
        buttons.push(h("button", { type: "button", class: "btn icon-btn small give-floor", title: t("people.grant"), "aria-label": t("people.grant"), onclick: () => this.actions.grant(p.identity, this.timeLimitSeconds) }, icon("star")));
      }
      return h("span", { class: "row-actions" }, buttons);
    }
    if (p.role !== "observer") {
      buttons.push(
        h("button", { type: "button", class: "btn icon-btn small mute-audio", title: t("people.mute_audio"), "aria-label": t("people.mute_audio"), disabled: p.audio_muted, onclick: () => this.actions.requestMute(p.identity, "audio") }, icon("mic-off")),
        h("button", { type: "button", class: "btn icon-btn small mute-video", title: t("people.mute_video"), "aria-label": t("people.mute_video"), disabled: p.video_muted, onclick: () => this.actions.requestMute(p.identity, "video") }, icon("camera-off")),
      );
      if (this.store.live?.floor?.identity !== p.identity) {
        buttons.push(h("button", { type: "button", class: "btn icon-btn small give-floor", title: t("people.grant"), "aria-label": t("people.grant"), onclick: () => this.actions.grant(p.identity, this.timeLimitSeconds) }, icon("star")));
      }
      const pinned = this.store.live?.pinned === p.identity;
      buttons.push(h("button", { type: "button", class: "btn small pin", "data-identity": p.identity, "data-pinned": pinned ? "true" : "false", onclick: () => this.actions.pin(pinned ? null : p.identity), text: t(pinned ? "people.unpin" : "people.pin") }));
    }
    // The stage (连线): invite an observer, or end the connection of the one on stage.
    if ((p.role === "observer" || this.store.live?.stage?.identity === p.identity) && this.actions.stage) {
      buttons.push(this.actions.stage.stageButton(p.identity));
    }
    buttons.push(h("button", { type: "button", class: "btn small rename", "data-identity": p.identity, onclick: () => this.actions.rename(p.identity), text: t("people.rename") }));
    // A co-host cannot remove the host (the server refuses it too).
    if (this.store.isHost || p.role !== "host") {
      buttons.push(h("button", { type: "button", class: "btn small danger remove", "data-identity": p.identity, onclick: () => this.actions.remove(p.identity), text: t("people.remove") }));
    }
    return h("span", { class: "row-actions" }, buttons);
  }
}
