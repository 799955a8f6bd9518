// HostConsole: the host's controls — floor (grant with a time limit, skip, revoke, next
// speaker), agenda (next / choose item), per-participant mute request and removal,
// lock/unlock, starting and stopping the recording, and ending the session. Only built when the snapshot says role == host.

import { h, replaceChildren } from "./util.js";
import { icon } from "./icons.js";
import { t } from "./i18n.js";

/** Time-limit choices in seconds (0: none). */
export const TIME_LIMITS = [0, 60, 120, 180, 300];

export class HostConsole {
  /**
   * @param el       container for the console strip
   * @param store    SessionStore
   * @param actions  {grant, skip, revoke, next, advance, setLock, setRecording, requestMute, remove, end}
   */
  constructor({ el, store, actions }) {
    this.el = el;
    this.store = store;
    this.actions = actions;
    this.limit = 0;
    this.build();
  }

  /** Seconds for the next grant, or null for an untimed floor. */
  get timeLimitSeconds() {
    return this.limit > 0 ? this.limit : null;
  }

  /** (Re)create the console's elements (after a language change too). */
  build() {
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
    this.nextItemButton = h("button", { type: "button", id: "host-next-item", class: "btn", onclick: () => this.actions.advance(null) }, h("span", { text: t("host.next_item") }));
    this.lockButton = h("button", { type: "button", id: "host-lock", class: "btn", onclick: () => this.actions.setLock(!this.store.live?.locked) });
    this.recordButton = h("button", { type: "button", id: "host-record", class: "btn", onclick: () => this.actions.setRecording(!this.store.live?.recording) });
    this.endButton = h("button", { type: "button", id: "host-end", class: "btn danger", onclick: () => this.actions.end() }, h("span", { text: t("host.end") }));
    this.lockNote = h("div", { class: "host-lock-note", text: t("host.locked_note") });
    replaceChildren(
      this.el,
      h("h2", { class: "host-title", text: t("host.console") }),
      h("div", { class: "host-row host-floor-row" }, this.floorStatus, this.revokeMain),
      h(
        "div",
        { class: "host-row" },
        h("label", { class: "time-limit-label" }, h("span", { text: t("host.time_limit") }), this.select),
        this.nextButton,
      ),
      h("div", { class: "host-row" }, this.nextItemButton, this.lockButton, this.recordButton, this.endButton),
      this.lockNote,
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
    this.nextButton.disabled = !(live.queue || []).length;
    const agenda = this.store.room?.agenda || [];
    this.nextItemButton.disabled = live.agenda_index >= agenda.length - 1;
    replaceChildren(this.lockButton, icon(live.locked ? "unlock" : "lock"), h("span", { text: t(live.locked ? "host.unlock" : "host.lock") }));
    this.lockButton.dataset.locked = live.locked ? "true" : "false";
    this.lockNote.hidden = !live.locked;
    replaceChildren(this.recordButton, h("span", { class: "rec-dot", "aria-hidden": "true" }), h("span", { text: t(live.recording ? "host.record_stop" : "host.record_start") }));
    this.recordButton.dataset.recording = live.recording ? "true" : "false";
  }

  // --- per-row buttons for the panels ----------------------------------------------------

  agendaButton(index) {
    return h("button", { type: "button", class: "btn small agenda-go", "data-index": index, onclick: () => this.actions.advance(index), text: t("agenda.go") });
  }

  revokeButton() {
    return h("button", { type: "button", class: "btn small revoke", onclick: () => this.actions.revoke(), text: t("host.revoke") });
  }

  grantButton(identity) {
    return h("button", { type: "button", class: "btn small primary grant", "data-identity": identity, onclick: () => this.actions.grant(identity, this.timeLimitSeconds), text: t("queue.grant") });
  }

  skipButton(identity) {
    return h("button", { type: "button", class: "btn small skip", "data-identity": identity, onclick: () => this.actions.skip(identity), text: t("queue.skip") });
  }

  /** Mute requests, give floor and remove for one participant row. */
  personActions(p) {
    const buttons = [];
    if (p.role !== "observer") {
      buttons.push(
        h("button", { type: "button", class: "btn icon-btn small mute-audio", title: t("people.mute_audio"), "aria-label": t("people.mute_audio"), disabled: p.audio_muted, onclick: () => this.actions.requestMute(p.identity, "audio") }, icon("mic-off")),
        h("button", { type: "button", class: "btn icon-btn small mute-video", title: t("people.mute_video"), "aria-label": t("people.mute_video"), disabled: p.video_muted, onclick: () => this.actions.requestMute(p.identity, "video") }, icon("camera-off")),
      );
      if (this.store.live?.floor?.identity !== p.identity) {
        buttons.push(h("button", { type: "button", class: "btn icon-btn small give-floor", title: t("people.grant"), "aria-label": t("people.grant"), onclick: () => this.actions.grant(p.identity, this.timeLimitSeconds) }, icon("star")));
      }
    }
    buttons.push(h("button", { type: "button", class: "btn small danger remove", "data-identity": p.identity, onclick: () => this.actions.remove(p.identity), text: t("people.remove") }));
    return h("span", { class: "row-actions" }, buttons);
  }
}
