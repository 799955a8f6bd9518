// The stage (连线): an observer the host brings on stage as a guest, in the browser.
//
// The seat is `live.stage` (docs/protocol.md, "The stage"). The invited observer sees a
// prompt; accepting asks for the camera and microphone, then sends `stage_accept`: the
// server makes them a guest with the floor. A guest publishes only while holding the floor
// (the server enforces it; this page follows it: it publishes when the floor becomes its
// own and drops its publish connection when the floor goes). When the connection ends the
// page stops its devices and is an observer again. Hosts and co-hosts get the invite and
// end buttons (host-console.js asks `stageButton` here) and a line saying who is on stage.
//
// Call-ins (连线申请): viewers of the live broadcast who asked to speak wait in a list for
// hosts, co-hosts and moderators (`call_in_queue`); a host invites one (`call_in_invite`)
// and the seat waits for the viewer. The viewer accepted on the broadcast page, so the
// room page it opens (`callIn`) takes the seat without asking again, and offers the way
// back to the broadcast once the connection ends.

import { t } from "./i18n.js";
import { h } from "./util.js";

export class StageClient {
  /**
   * @param {{store, media, run: (event: string, payload?: object) => Promise<object|null>,
   *          toasts, callIn?: boolean, onChange: () => void}} deps
   */
  constructor({ store, media, run, toasts, callIn = false, onChange }) {
    this.callIn = callIn;
    /** The call-in seat this page took by itself (once per invitation). */
    this.autoAcceptedFor = null;
    /** Whether this call-in page found its seat waiting when it joined (looked at once). */
    this.callInChecked = false;
    this.store = store;
    this.media = media;
    this.run = run;
    this.toasts = toasts;
    this.onChange = onChange;
    /** The floor grant we tried to publish for (one attempt per grant). */
    this.publishedFor = null;
    /** The devices in use were taken for the stage (they are let go when it ends). */
    this.ownsDevices = false;
    this.accepting = false;
    /** Getting the devices in a replacing page failed (not asked again until the next stage). */
    this.reacquireFailed = false;
    this.prompt = this._buildPrompt();
    this.badge = this._buildBadge();
    this.hostLine = h("div", { id: "stage-host-line", class: "stage-host-line", role: "status", hidden: true });
    this.callInList = h("section", { id: "call-in-queue", class: "call-in-queue", "aria-live": "polite", hidden: true });
    this.backToLive = h("a", { id: "stage-back-live", class: "btn primary stage-back-live", hidden: true });
    document.body.append(this.prompt, this.badge, this.backToLive);
    document.getElementById("host-console")?.insertAdjacentElement("afterend", this.hostLine);
    this.hostLine.insertAdjacentElement("afterend", this.callInList);
    store.on("change", () => this.sync());
  }

  // --- the invited observer's page ---------------------------------------------------------

  _buildPrompt() {
    this.promptTitle = h("h2", { id: "stage-prompt-title" });
    this.promptText = h("p", { class: "stage-prompt-text" });
    this.acceptButton = h("button", { type: "button", id: "stage-accept", class: "btn primary", onclick: () => this.accept() });
    this.declineButton = h("button", { type: "button", id: "stage-decline", class: "btn", onclick: () => this.decline() });
    return h(
      "div",
      { id: "stage-prompt", class: "stage-prompt", role: "alertdialog", "aria-labelledby": "stage-prompt-title", hidden: true },
      this.promptTitle,
      this.promptText,
      h("div", { class: "stage-prompt-buttons" }, this.acceptButton, this.declineButton),
    );
  }

  _buildBadge() {
    this.badgeText = h("span", { class: "stage-badge-text" });
    this.badgeEnd = h("button", { type: "button", id: "stage-leave", class: "btn small danger", onclick: () => this.end() });
    return h("div", { id: "stage-badge", class: "stage-badge", role: "status", hidden: true }, this.badgeText, this.badgeEnd);
  }

  /** Accept: the camera and microphone first (the browser asks), then the seat. */
  async accept() {
    if (this.accepting) return;
    this.accepting = true;
    this.acceptButton.disabled = true;
    try {
      // A call-in's page took the camera and microphone in its device check already.
      const live = (kind) => this.media.localStream?.getTracks().some((t) => t.kind === kind && t.readyState === "live");
      let stream = live("audio") && live("video") ? this.media.localStream : null;
      try {
        stream ||= await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
      } catch (err) {
        this.toasts.show(t("stage.devices_failed", { message: err?.message || err?.name || "" }), { kind: "error", id: "stage-devices" });
        await this.run("stage_decline");
        return;
      }
      this.media.setLocalStream(stream, { audioEnabled: true, videoEnabled: true });
      this.ownsDevices = true;
      const ack = await this.run("stage_accept");
      if (!ack) {
        this._dropDevices();
        return;
      }
      if (ack.participant) this.store.apply("participant_updated", ack.participant);
      if (ack.live) this.store.apply("live_state", ack.live);
    } finally {
      this.accepting = false;
      this.acceptButton.disabled = false;
      this.sync();
    }
  }

  async decline() {
    const ack = await this.run("stage_decline");
    if (ack?.live) this.store.apply("live_state", ack.live);
  }

  /** End the connection: the guest leaving the stage, or a host ending it. */
  async end() {
    const ack = await this.run("stage_end");
    if (ack?.live) this.store.apply("live_state", ack.live);
  }

  async _reacquire() {
    this.accepting = true;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
      this.media.setLocalStream(stream, { audioEnabled: true, videoEnabled: true });
      this.ownsDevices = true;
    } catch (err) {
      this.reacquireFailed = true; // asked once: no prompt loop
      this.toasts.show(t("stage.devices_failed", { message: err?.message || err?.name || "" }), { kind: "error", id: "stage-devices" });
      return; // stays off the air; the guest or the host can end the connection
    } finally {
      this.accepting = false;
    }
    this.sync();
  }

  _dropDevices() {
    this.ownsDevices = false;
    this.media.unpublish();
    for (const track of this.media.localStream?.getTracks() || []) track.stop();
    this.media.localStream = null;
  }

  // --- following the seat and the floor ----------------------------------------------------

  sync() {
    const { store } = this;
    if (!store.you || !store.live) return;
    const me = store.myIdentity;
    const seat = store.live.stage || null;
    const invited = Boolean(seat && seat.identity === me && seat.status === "invited");
    const onStage = Boolean(seat && seat.identity === me && seat.status === "on_stage");
    const floor = store.live.floor;
    const holds = Boolean(floor && floor.identity === me);
    document.body.dataset.stage = invited ? "invited" : onStage ? "on_stage" : "";

    this.promptTitle.textContent = t("stage.invited_title");
    this.promptText.textContent = t("stage.invited_text");
    this.acceptButton.textContent = t("stage.accept");
    this.declineButton.textContent = t("stage.decline");
    // A viewer who accepted on the broadcast page is not asked again: the page takes the seat.
    const callInSeat = Boolean(invited && seat.call_in && this.callIn);
    if (this.callIn && !this.callInChecked) {
      // The seat did not wait (withdrawn or lapsed): the camera the device check took goes.
      this.callInChecked = true;
      if (!invited && !onStage && store.you.role === "observer") {
        this._dropDevices();
        this.backToLive.hidden = false;
        this.toasts.show(t("live.call_in_withdrawn"), { id: "stage-ended" });
      }
    }
    if (callInSeat && this.autoAcceptedFor !== seat.invite_id && !this.accepting) {
      this.autoAcceptedFor = seat.invite_id;
      this.accept();
    }
    this.prompt.hidden = !invited || callInSeat;

    this.badge.hidden = !onStage;
    this.badge.dataset.onAir = holds ? "true" : "false";
    this.badgeText.textContent = `${t("stage.on_stage")} · ${t(holds ? "stage.on_air" : "stage.off_air")}`;
    this.badgeEnd.textContent = t("stage.end");

    // On stage in a page that replaced the one that went on stage (a second tab): the page
    // (an observer's) has no devices yet.
    if (onStage && !this.media.localStream && !this.accepting && !this.reacquireFailed) this._reacquire();
    if (!onStage) this.reacquireFailed = false;
    // A guest (on stage, or by its token) publishes only while it holds the floor.
    if (store.you.role === "guest") {
      // (Not while a publish is under way: the join itself publishes a guest holding the floor.)
      const busy = this.media.publishState === "publishing" || this.media.publishState === "published";
      if (holds && this.media.localStream && !busy && this.publishedFor !== floor.grant_id) {
        this.publishedFor = floor.grant_id;
        this.media.publish().catch((err) => {
          this.toasts.show(t("media.publish_failed", { message: err?.message || err?.code || "" }), { kind: "error", id: "publish-failed" });
        });
      } else if (!holds && this.media.pubPc) {
        this.media.unpublish();
      }
      if (!holds) this.publishedFor = null;
    }
    // The connection ended (the role comes back to observer): let the devices go.
    if (this.ownsDevices && !this.accepting && !invited && !onStage && store.you.role === "observer") {
      this._dropDevices();
      this.publishedFor = null;
      this.toasts.show(t("stage.ended"), { id: "stage-ended" });
      if (this.callIn) this.backToLive.hidden = false;
    }
    this.backToLive.href = `/live/${encodeURIComponent(store.room?.id || "")}`;
    this.backToLive.textContent = t("stage.back_to_live");
    if (onStage || invited) this.backToLive.hidden = true;
    this._syncHostLine(seat);
    this._syncCallIns();
    this.onChange();
  }

  // --- hosts and co-hosts --------------------------------------------------------------------

  _syncHostLine(seat) {
    if (!this.store.isModerator || !seat) {
      this.hostLine.hidden = true;
      return;
    }
    // A viewer's call-in seat waits for someone not in the room yet: named as they asked.
    const callIn = seat.call_in ? this.store.callIns.get(seat.call_in) : null;
    const name = callIn?.name || this.store.displayName(seat.identity);
    const text = seat.status === "invited" ? t("stage.waiting", { name }) : `${t("stage.on_stage")}: ${name}`;
    this.hostLine.replaceChildren(
      h("span", { class: "stage-host-text", text }),
      h("button", {
        type: "button",
        id: "stage-end",
        class: "btn small danger",
        onclick: () => this.end(),
        text: t(seat.status === "invited" ? "stage.withdraw" : "stage.end"),
      }),
    );
    this.hostLine.dataset.status = seat.status;
    this.hostLine.hidden = false;
  }

  /** Viewers of the broadcast who asked to speak: their requests, for those who run the
   * queues; hosts and co-hosts invite (the seat must be free), anyone of them dismisses. */
  _syncCallIns() {
    const { store } = this;
    const shown = [...store.callIns.values()].filter((c) => ["pending", "invited", "accepted"].includes(c.status));
    if (!store.runsQueues || !shown.length) {
      this.callInList.hidden = true;
      return;
    }
    const seatTaken = Boolean(store.live?.stage);
    const rows = shown.map((c) => {
      const who = c.district ? `${c.name} · ${c.district}` : c.name;
      const buttons =
        c.status === "pending"
          ? [
              store.isModerator
                ? h("button", { type: "button", class: "btn small primary call-in-invite", "data-call-in": c.id, disabled: seatTaken, onclick: () => this.inviteCallIn(c.id), text: t("stage.invite") })
                : null,
              h("button", { type: "button", class: "btn small call-in-dismiss", "data-call-in": c.id, onclick: () => this.dismissCallIn(c.id), text: t("call_in.dismiss") }),
            ]
          : [h("span", { class: "call-in-state", text: t(`call_in.${c.status}`) })];
      return h(
        "li",
        { class: "call-in-item", "data-call-in": c.id, "data-status": c.status },
        h("strong", { class: "call-in-who", text: who }),
        c.note ? h("span", { class: "call-in-note", text: c.note }) : null,
        h("span", { class: "row-actions" }, buttons),
      );
    });
    this.callInList.replaceChildren(h("h3", { id: "call-in-count", text: t("call_in.heading", { n: shown.filter((c) => c.status === "pending").length }) }), h("ul", { class: "call-in-list" }, rows));
    this.callInList.hidden = false;
  }

  async inviteCallIn(id) {
    const ack = await this.run("call_in_invite", { id });
    if (ack?.live) this.store.apply("live_state", ack.live);
    if (ack?.item) {
      this.store.apply("call_in_queue", { item: ack.item });
      this.toasts.show(t("stage.invite_sent", { name: ack.item.name }), { kind: "ok", id: "stage-invited" });
    }
  }

  async dismissCallIn(id) {
    const ack = await this.run("call_in_dismiss", { id });
    if (ack?.item) this.store.apply("call_in_queue", { item: ack.item });
  }

  async invite(identity) {
    const ack = await this.run("stage_invite", { identity });
    if (ack?.live) this.store.apply("live_state", ack.live);
    if (ack) this.toasts.show(t("stage.invite_sent", { name: this.store.displayName(identity) }), { kind: "ok", id: "stage-invited" });
  }

  /** For an observer's row (people, queue): invite on stage, or end the connection. */
  stageButton(identity) {
    if (!this.store.isModerator) return null;
    const seat = this.store.live?.stage;
    if (seat && seat.identity === identity) {
      return h("button", { type: "button", class: "btn small danger stage-end", "data-identity": identity, onclick: () => this.end(), text: t(seat.status === "invited" ? "stage.withdraw" : "stage.end") });
    }
    return h("button", { type: "button", class: "btn small primary stage-invite", "data-identity": identity, disabled: Boolean(seat), onclick: () => this.invite(identity), text: t("stage.invite") });
  }
}
