// The side panels: agenda, speaking queue, participants by venue, chat. Each render function
// rebuilds one panel from the store; host-only buttons come from the HostConsole when given.

import { h, replaceChildren, formatClock, formatCountdown } from "./util.js";
import { icon } from "./icons.js";
import { levelLabel, roleLabel, t } from "./i18n.js";

function who(store, identity) {
  const p = store.participants.get(identity);
  const venue = store.venue(p?.venue || store.roster.find((r) => r.identity === identity)?.venue);
  return h(
    "span",
    { class: "who" },
    venue ? h("span", { class: "level-badge", "data-level": venue.level, text: levelLabel(venue.level) }) : null,
    h("span", { class: "who-name", text: store.displayName(identity), title: store.displayName(identity) }),
    venue ? h("span", { class: "who-venue", text: venue.name, title: venue.name }) : null,
  );
}

/** Agenda items, the current one marked; the host can jump to any item. */
export function renderAgenda(el, store, host) {
  const items = store.room?.agenda || [];
  const current = store.live?.agenda_index ?? 0;
  if (!items.length) {
    replaceChildren(el, h("p", { class: "empty", text: t("agenda.empty") }));
    return;
  }
  const list = h("ol", { class: "agenda-list" });
  items.forEach((item, index) => {
    const isCurrent = index === current;
    const planned = (item.planned_speakers || []).map((id) => store.displayName(id));
    list.append(
      h(
        "li",
        {
          class: `agenda-item${isCurrent ? " current" : ""}`,
          "data-index": index,
          "data-current": isCurrent ? "true" : "false",
          "aria-current": isCurrent ? "step" : null,
        },
        h("span", { class: "agenda-num", text: String(index + 1) }),
        h(
          "div",
          { class: "agenda-body" },
          h("div", { class: "agenda-title", text: item.title }),
          isCurrent ? h("div", { class: "agenda-current-tag", text: t("agenda.current") }) : null,
          planned.length ? h("div", { class: "agenda-planned", text: t("agenda.planned", { names: planned.join(t("list.separator")) }) }) : null,
          item.duration_minutes ? h("div", { class: "agenda-duration", text: t("agenda.duration", { minutes: item.duration_minutes }) }) : null,
        ),
        host && !isCurrent ? host.agendaButton(index) : null,
      ),
    );
  });
  replaceChildren(el, list);
}

/** Who has the floor (with the countdown) and the queue in order; host buttons per row. */
export function renderQueue(el, store, host) {
  const live = store.live;
  const floor = live?.floor;
  const floorBox = h(
    "section",
    { class: "floor-now", "data-floor": floor ? floor.identity : "" },
    h("h3", { text: t("queue.floor") }),
    floor
      ? h(
          "div",
          { class: "floor-row" },
          icon("star"),
          who(store, floor.identity),
          h("span", { class: "floor-countdown", "data-countdown": "floor", text: floor.deadline ? formatCountdown(store.floorRemainingMs()) : t("queue.untimed") }),
          host ? host.revokeButton() : null,
        )
      : h("p", { class: "empty", text: t("queue.nobody") }),
  );
  const queue = live?.queue || [];
  const list = h("ol", { class: "queue-list" });
  queue.forEach((identity, index) => {
    list.append(
      h(
        "li",
        { class: "queue-item", "data-identity": identity },
        h("span", { class: "queue-pos", text: t("queue.position", { n: index + 1 }) }),
        icon("hand"),
        who(store, identity),
        host ? h("span", { class: "row-actions" }, host.orderButtons(identity, index, queue.length), host.grantButton(identity), host.skipButton(identity)) : null,
      ),
    );
  });
  replaceChildren(
    el,
    floorBox,
    h("h3", { text: t("queue.heading") }),
    queue.length ? list : h("p", { class: "empty", text: t("queue.empty") }),
  );
}

/** Participants grouped by venue (venues by level), present first, invited-but-absent after. */
export function renderPeople(el, store, host, qualities) {
  const queue = new Set(store.live?.queue || []);
  const floorId = store.live?.floor?.identity;
  const me = store.myIdentity;
  const groups = [];
  for (const venue of store.venuesByLevel()) {
    const present = store.participantsAt(venue.id);
    const presentIds = new Set(present.map((p) => p.identity));
    const absent = store.roster.filter((r) => r.venue === venue.id && !presentIds.has(r.identity));
    const rows = present.map((p) => {
      const quality = p.identity === me ? qualities.self : qualities.get(p.identity) || "unknown";
      return h(
        "li",
        {
          class: `person${p.identity === me ? " is-self" : ""}`,
          "data-participant": p.identity,
          "data-present": "true",
          "data-role": p.role,
          "data-hand": queue.has(p.identity) ? "raised" : "down",
          "data-audio-muted": p.audio_muted ? "true" : "false",
          "data-video-muted": p.video_muted ? "true" : "false",
          "data-connection": quality,
        },
        h("span", { class: "quality dot", "data-quality": quality, title: t(`quality.${quality}`), role: "img", "aria-label": t(`quality.${quality}`) }),
        h(
          "span",
          { class: "person-main" },
          h("span", { class: "person-name", text: p.name + (p.identity === me ? t("people.you") : ""), title: p.name }),
          h("span", { class: "role-badge", "data-role": p.role, text: roleLabel(p.role) }),
        ),
        h(
          "span",
          { class: "person-icons" },
          p.identity === floorId ? icon("star", "is-floor") : null,
          queue.has(p.identity) ? icon("hand", "is-hand") : null,
          p.role !== "observer" && p.audio_muted ? icon("mic-off", "is-muted") : null,
          p.role !== "observer" && p.video_muted ? icon("camera-off", "is-muted") : null,
        ),
        host && p.identity !== me ? host.personActions(p) : null,
        host?.full && p.identity === me ? h("span", { class: "row-actions" }, h("button", { type: "button", class: "btn small rename", "data-identity": p.identity, onclick: () => host.actions.rename(p.identity), text: t("people.rename") })) : null,
      );
    });
    for (const r of absent) {
      rows.push(
        h(
          "li",
          { class: "person absent", "data-participant": r.identity, "data-present": "false", "data-role": r.role },
          h("span", { class: "quality dot", "data-quality": "offline" }),
          h(
            "span",
            { class: "person-main" },
            h("span", { class: "person-name", text: r.name, title: r.name }),
            h("span", { class: "role-badge", "data-role": r.role, text: roleLabel(r.role) }),
          ),
          h("span", { class: "absent-tag", text: t("people.absent") }),
        ),
      );
    }
    groups.push(
      h(
        "section",
        { class: "venue-group", "data-venue-group": venue.id, "data-level": venue.level },
        h(
          "h3",
          {},
          h("span", { class: "level-badge", "data-level": venue.level, text: levelLabel(venue.level) }),
          h("span", { class: "venue-name", text: venue.name, title: venue.name }),
          venue.main ? h("span", { class: "main-tag", text: t("venue.main") }) : null,
          h("span", { class: "venue-count", text: String(present.length) }),
        ),
        rows.length ? h("ul", { class: "people-list" }, rows) : null,
      ),
    );
  }
  replaceChildren(
    el,
    h("p", { class: "people-count", text: t("people.count", { n: store.participants.size }) }),
    groups,
  );
}

const SYSTEM_EVENTS = new Set([
  "stage_started",
  "stage_ended",
  "recording_started",
  "recording_stopped",
  "recording_failed",
  "floor_granted",
  "floor_revoked",
  "floor_expired",
  "agenda_advanced",
  "locked",
  "unlocked",
  "session_ended",
  "muted_all",
  "pinned",
  "unpinned",
  "floor_extended",
  "renamed",
  "screen_share_started",
  "screen_share_stopped",
]);

/** Chat messages and the session's notable events, oldest first. */
export function renderChat(el, store) {
  const stick = el.scrollTop + el.clientHeight >= el.scrollHeight - 24;
  const rows = [];
  for (const entry of store.timeline) {
    if (entry.type === "chat") {
      const venue = store.venue(entry.data.venue);
      rows.push(
        h(
          "li",
          { class: `chat-msg${entry.data.identity === store.myIdentity ? " mine" : ""}`, "data-entry": entry.id },
          h(
            "div",
            { class: "chat-meta" },
            h("span", { class: "chat-name", text: String(entry.data.name || entry.data.identity) }),
            venue ? h("span", { class: "chat-venue", text: venue.name }) : null,
            h("time", { class: "chat-time", text: formatClock(entry.ts) }),
          ),
          h("div", { class: "chat-text", text: String(entry.data.text || "") }),
        ),
      );
    } else if (SYSTEM_EVENTS.has(entry.type)) {
      const name = entry.data.name || store.displayName(String(entry.data.identity || ""));
      rows.push(
        h(
          "li",
          { class: "chat-event", "data-entry": entry.id, "data-type": entry.type },
          h("time", { class: "chat-time", text: formatClock(entry.ts) }),
          h("span", {
            text: t(`event.${entry.type}`, {
              name,
              title: entry.data.title || "",
              previous: entry.data.previous || "",
              minutes: Math.round((Number(entry.data.seconds) || 0) / 60),
              count: entry.data.count ?? "",
            }),
          }),
        ),
      );
    }
  }
  replaceChildren(el, rows.length ? rows : h("li", { class: "empty", text: t("chat.empty") }));
  if (stick) el.scrollTop = el.scrollHeight;
}

function galleryWho(item) {
  return [item.name, item.district].filter(Boolean).join(t("list.separator")) || t("gallery.anonymous");
}

function galleryBody(item) {
  return [
    h(
      "div",
      { class: "gallery-meta" },
      h("span", { class: "gallery-kind", "data-kind": item.kind, text: t(`gallery.kind_${item.kind}`) }),
      h("span", { class: "gallery-who", text: galleryWho(item) }),
    ),
    h("div", { class: "gallery-text", text: item.text }),
    item.answer ? h("div", { class: "gallery-answer", text: t("gallery.answer_shown", { answer: item.answer }) }) : null,
  ];
}

/**
 * The gallery: approved questions and opinions (the one on screen marked) for everyone, and
 * for hosts, co-hosts and moderators the moderation queue with approve / answer / show /
 * reject. Only the server's approved items ever reach `store.gallery`.
 */
export function renderGallery(listEl, queueEl, store, actions) {
  const items = [...store.gallery.values()];
  replaceChildren(
    listEl,
    items.length
      ? items.map((item) =>
          h(
            "li",
            { class: `gallery-item${store.galleryOnScreen === item.id ? " on-screen" : ""}`, "data-gallery": item.id, "data-on-screen": store.galleryOnScreen === item.id ? "true" : "false" },
            ...galleryBody(item),
            store.runsQueues
              ? h(
                  "div",
                  { class: "gallery-actions" },
                  store.galleryOnScreen === item.id
                    ? h("button", { type: "button", class: "btn small gallery-hide", onclick: () => actions.show(null), text: t("gallery.hide") })
                    : h("button", { type: "button", class: "btn small gallery-show", onclick: () => actions.show(item.id), text: t("gallery.show") }),
                  h("button", { type: "button", class: "btn small gallery-answer-button", onclick: () => actions.answer(item.id), text: t("gallery.answer") }),
                )
              : null,
          ),
        )
      : h("li", { class: "empty", text: t("gallery.empty") }),
  );
  if (!store.runsQueues) {
    queueEl.hidden = true;
    return;
  }
  const pending = [...store.galleryQueue.values()].filter((i) => i.status === "pending");
  queueEl.hidden = false;
  const agenda = store.room?.agenda || [];
  replaceChildren(
    queueEl,
    h("h3", { id: "gallery-pending-count", text: t("gallery.pending", { n: pending.length }) }),
    pending.length
      ? h(
          "ul",
          { class: "gallery-pending" },
          pending.map((item) =>
            h(
              "li",
              { class: "gallery-item pending", "data-pending": item.id },
              ...galleryBody(item),
              agenda[item.agenda_index] ? h("div", { class: "gallery-agenda", text: agenda[item.agenda_index].title }) : null,
              h(
                "div",
                { class: "gallery-actions" },
                h("button", { type: "button", class: "btn small primary gallery-approve", onclick: () => actions.approve(item.id), text: t("gallery.approve") }),
                h("button", { type: "button", class: "btn small gallery-answer-button", onclick: () => actions.answer(item.id), text: t("gallery.answer") }),
                h("button", { type: "button", class: "btn small gallery-show", onclick: () => actions.show(item.id), text: t("gallery.show") }),
                h("button", { type: "button", class: "btn small gallery-reject", onclick: () => actions.reject(item.id), text: t("gallery.reject") }),
              ),
            ),
          ),
        )
      : h("p", { class: "empty", text: t("gallery.none_pending") }),
  );
}

/** The item on screen, highlighted over the stage for everyone (hidden when none). */
export function renderGalleryBanner(el, store) {
  const item = store.galleryOnScreen ? store.gallery.get(store.galleryOnScreen) : null;
  el.hidden = !item;
  el.dataset.gallery = item ? item.id : "";
  if (!item) return;
  el.querySelector(".gallery-banner-kind").textContent = t(`gallery.kind_${item.kind}`);
  el.querySelector(".gallery-banner-text").textContent = item.text;
  el.querySelector(".gallery-banner-who").textContent = galleryWho(item);
  el.querySelector(".gallery-banner-answer").textContent = item.answer ? t("gallery.answer_shown", { answer: item.answer }) : "";
}
