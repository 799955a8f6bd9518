// The control room (会控): every live session's venues and their media as the server measures
// them, pushed over the `/control` Socket.IO namespace (admin key, kept in sessionStorage like
// the organizer page's); alerts; and the operator's actions: reconnect a participant, move the
// spotlight, lower a venue's quality (and restore it).

import { io } from "/static/vendor/socket.io.esm.min.js";
import { applyI18n, errorText, has, mountLangSwitch, onLangChange, roleLabel, t } from "./i18n.js";
import { h, replaceChildren } from "./util.js";
import { legText, verdictText } from "./precheck.js";

const KEY_STORAGE = "yitang.apiKey";
// "Lower a venue's quality" presets for a venue on a thin link: what it receives, and the cap
// on its camera's high encoding (bit/s), which frees its uplink too. "full" lifts both.
const VENUE_PRESETS = {
  full: { receive: "full", send_max_bitrate: null },
  reduced: { receive: "reduced", send_max_bitrate: 500_000 },
  audio_only: { receive: "audio_only", send_max_bitrate: 200_000 },
};

let apiKey = sessionStorage.getItem(KEY_STORAGE) || "";
// An operator link of one session (`/control?token=…`, role operator) instead of the key.
const operatorToken = new URLSearchParams(location.search).get("token") || "";
let socket = null;
let last = null;

applyI18n();
mountLangSwitch(document.getElementById("lang-switch"));
onLangChange(() => last && render(last));

const keyInput = document.getElementById("api-key");
keyInput.value = apiKey;
document.getElementById("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  apiKey = keyInput.value.trim();
  if (apiKey) sessionStorage.setItem(KEY_STORAGE, apiKey);
  else sessionStorage.removeItem(KEY_STORAGE);
  connect();
});
if (operatorToken) document.getElementById("key-form").hidden = true;
if (apiKey || operatorToken) connect();

function setStatus(state) {
  document.body.dataset.feed = state;
  document.getElementById("feed-status").textContent = t(`ctl.status_${state}`);
}

function showError(err) {
  const el = document.getElementById("key-error");
  if (!err) {
    el.hidden = true;
    return;
  }
  el.textContent = has(`error.${err.code}`) ? errorText(err.code, err.message) : err.message || err.code;
  el.dataset.code = err.code || "";
  el.hidden = false;
}

function connect() {
  if (socket) socket.disconnect();
  showError(null);
  if (!apiKey && !operatorToken) return;
  setStatus("connecting");
  socket = io(`${location.origin}/control`, {
    auth: operatorToken ? { token: operatorToken } : { key: apiKey },
    transports: ["websocket"],
    reconnectionDelay: 1000,
    reconnectionDelayMax: 5000,
    forceNew: true,
  });
  socket.on("connect", () => setStatus("live"));
  socket.on("disconnect", () => setStatus("connecting"));
  socket.on("connect_error", (err) => {
    const code = err?.data?.code;
    if (code) {
      // A refused key: stop retrying until the operator enters another.
      socket.disconnect();
      setStatus("off");
      showError({ code, message: err.message });
    }
  });
  socket.on("control_snapshot", (snapshot) => {
    last = snapshot;
    render(snapshot);
  });
  // A venue's connection check just ended (on the node we are connected to): show it now.
  socket.on("precheck_result", ({ room, check }) => {
    if (!last) return;
    const prechecks = (last.prechecks ||= []);
    let entry = prechecks.find((p) => p.room === room);
    if (!entry) prechecks.unshift((entry = { room, title: room, venues: [], checks: [] }));
    entry.checks = [...entry.checks.filter((c) => c.identity !== check.identity), check];
    renderPrechecks(prechecks);
  });
}

// --- rendering ----------------------------------------------------------------------------

const fmt = {
  kbps: (v) => (v == null ? "–" : v >= 1000 ? `${(v / 1000).toFixed(1)} Mb/s` : `${Math.round(v)} kb/s`),
  pct: (v) => (v == null ? "–" : `${(v * 100).toFixed(1)}%`),
  ms: (v) => (v == null ? "–" : `${Math.round(v)} ms`),
  res: (p) => (p.width ? `${p.width}×${p.height}` : "–"),
  fps: (v) => (v == null ? "–" : v.toFixed(0)),
  db: (v) => (v == null ? "–" : `${Math.round(v)} dB`),
};

function alertText(a, names, venues) {
  const who = names.get(`${a.room}/${a.identity}`) || a.identity;
  const venue = venues.get(`${a.room}/${a.venue}`) || a.venue;
  if (a.kind === "loss") return t("ctl.alert_loss", { who, venue, loss: fmt.pct(a.value) });
  if (a.kind === "silent_floor") return t("ctl.alert_silent", { who, venue });
  if (a.kind === "precheck") {
    const reasons = (a.reasons || []).map((r) => t(`precheck.reason_${r}`)).join(t("list.separator"));
    return t("ctl.alert_precheck", { who, venue, reasons: reasons || t("precheck.verdict_poor") });
  }
  return t(a.what === "rooms" ? "ctl.alert_node_rooms" : "ctl.alert_node_connections", { node: a.node });
}

function render(snapshot) {
  const names = new Map();
  const venues = new Map();
  for (const room of snapshot.rooms) {
    for (const p of room.participants || []) names.set(`${room.id}/${p.identity}`, p.name);
    for (const v of room.venues || []) venues.set(`${room.id}/${v.id}`, v.name);
  }
  // Pre-session check alerts may name sessions that have not started yet.
  for (const entry of snapshot.prechecks || []) {
    for (const c of entry.checks || []) if (!names.has(`${entry.room}/${c.identity}`)) names.set(`${entry.room}/${c.identity}`, c.name);
    for (const v of entry.venues || []) venues.set(`${entry.room}/${v.id}`, v.name);
  }
  const alerts = snapshot.alerts || [];
  replaceChildren(
    document.getElementById("alerts"),
    alerts.map((a) =>
      h(
        "li",
        { class: "ctl-alert", "data-kind": a.kind, "data-room": a.room, "data-identity": a.identity, "data-venue": a.venue },
        alertText(a, names, venues),
      ),
    ),
  );
  document.getElementById("alerts-empty").hidden = alerts.length > 0;
  replaceChildren(
    document.getElementById("nodes-body"),
    snapshot.nodes.map((n) =>
      h(
        "tr",
        { "data-node": n.id },
        h("td", {}, n.id),
        h("td", {}, n.rooms == null ? "–" : n.max_rooms ? `${n.rooms} / ${n.max_rooms}` : String(n.rooms)),
        h("td", {}, n.connections == null ? "–" : `${n.connections} / ${n.connection_limit}`),
      ),
    ),
  );
  replaceChildren(document.getElementById("rooms"), snapshot.rooms.map((room) => roomCard(room, alerts)));
  document.getElementById("rooms-empty").hidden = snapshot.rooms.length > 0;
  renderPrechecks(snapshot.prechecks || []);
}

// --- pre-session connection checks -------------------------------------------------------------

/** Each checked session (started or not): per venue, who checked, the verdict, both legs. */
function renderPrechecks(prechecks) {
  replaceChildren(
    document.getElementById("prechecks"),
    prechecks.map((entry) => {
      const venueNames = new Map(entry.venues.map((v) => [v.id, v.name]));
      const checks = [...entry.checks].sort((a, b) => (a.venue + a.identity).localeCompare(b.venue + b.identity));
      return h(
        "div",
        { class: "table-wrap ctl-prechecks", "data-precheck-room": entry.room },
        h("h3", {}, entry.title),
        h(
          "table",
          { class: "rooms ctl-table" },
          h(
            "thead",
            {},
            h("tr", {}, ["venue", "name", "verdict", "direct", "relay", "checked_at"].map((c) => h("th", {}, t(`ctl.col_${c}`)))),
          ),
          h(
            "tbody",
            {},
            checks.map((c) =>
              h(
                "tr",
                { "data-identity": c.identity, "data-venue": c.venue },
                h("td", { "data-field": "venue" }, venueNames.get(c.venue) || c.venue),
                h("td", { "data-field": "name" }, `${c.name} (${roleLabel(c.role)})`),
                h("td", { class: "precheck-cell", "data-field": "verdict", "data-verdict": c.overall.verdict }, verdictText(c.overall)),
                legCell("direct", c.legs.direct),
                legCell("relay", c.legs.relay),
                h("td", { "data-field": "checked_at" }, new Date(c.at * 1000).toLocaleTimeString()),
              ),
            ),
          ),
        ),
      );
    }),
  );
  document.getElementById("prechecks-empty").hidden = prechecks.length > 0;
}

function legCell(leg, result) {
  const text = result ? `${legText(result)}${result.candidate ? ` · ${result.candidate}` : ""}` : "–";
  return h("td", { "data-field": leg, "data-verdict": result?.verdict || "", "data-loss": result?.loss ?? "" }, text);
}

function roomCard(room, alerts) {
  // Rows are flagged for what their media does now (a poor pre-session check is its own alert).
  const flagged = new Set(alerts.filter((a) => a.room === room.id && a.identity && a.kind !== "precheck").map((a) => a.identity));
  const byVenue = new Map(room.venues.map((v) => [v.id, []]));
  for (const p of room.participants || []) {
    if (!byVenue.has(p.venue)) byVenue.set(p.venue, []);
    byVenue.get(p.venue).push(p);
  }
  const rows = [];
  for (const venue of room.venues) {
    const people = byVenue.get(venue.id) || [];
    // A capped venue stays listed while nobody is in it: its cap holds for who joins.
    if (!people.length && !(room.venue_quality || {})[venue.id]) continue;
    rows.push(venueRow(room, venue));
    for (const p of people) rows.push(participantRow(room, p, flagged.has(p.identity)));
  }
  const floor = room.floor ? ` · ${t("ctl.floor", { name: (room.participants || []).find((p) => p.identity === room.floor)?.name || room.floor })}` : "";
  return h(
    "section",
    { class: "card ctl-room", "data-room": room.id },
    h("div", { class: "card-head" }, h("h2", {}, room.title), h("span", { class: "note" }, `${t("ctl.owner")}: ${room.owner}${floor}`)),
    room.unavailable ? h("p", { class: "error-box" }, t("ctl.unavailable")) : null,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "rooms ctl-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["name", "state", "candidate", "send", "receive", "loss", "downstream_loss", "rtt", "resolution", "fps", "level", "paused", "", ""].map((c) =>
              h("th", {}, c ? t(`ctl.col_${c}`) : ""),
            ),
          ),
        ),
        h("tbody", {}, rows),
      ),
    ),
  );
}

/** A venue's heading row: its name, the control room's cap on it, and the quality actions. */
function venueRow(room, venue) {
  const cap = (room.venue_quality || {})[venue.id] || null;
  const current = cap ? cap.receive : "full";
  const capText = cap
    ? [cap.receive !== "full" ? t(`ctl.venue_capped_${cap.receive}`) : "", cap.send_max_bitrate ? t("ctl.venue_capped_send", { kbps: cap.send_max_bitrate / 1000 }) : ""]
        .filter(Boolean)
        .join(" · ")
    : "";
  const buttons = Object.keys(VENUE_PRESETS).map((level) => {
    const preset = VENUE_PRESETS[level];
    const active = level === current && (level !== "full" || !cap);
    return h(
      "button",
      {
        class: active ? "btn small primary" : "btn small",
        type: "button",
        "data-action": "venue-quality",
        "data-level": level,
        "aria-pressed": active ? "true" : "false",
        title: level === "full" ? "" : t(`ctl.venue_quality_title_${level}`, { kbps: preset.send_max_bitrate / 1000 }),
        disabled: level === "full" && !cap,
        onclick: () => setVenueQuality(room.id, venue, preset),
      },
      t(`ctl.venue_quality_${level}`),
    );
  });
  return h(
    "tr",
    { class: "ctl-venue", "data-venue": venue.id, "data-cap": current },
    h(
      "th",
      { colspan: 14 },
      venue.name,
      venue.main ? ` · ${t("venue.main")}` : "",
      h("span", { class: "ctl-venue-cap", "data-field": "venue-cap" }, capText ? ` · ${capText}` : ""),
      h("span", { class: "ctl-venue-actions" }, " ", ...buttons.flatMap((b) => [b, " "])),
      h("span", { class: "ctl-result", "data-venue-result": venue.id }),
    ),
  );
}

async function setVenueQuality(room, venue, preset) {
  if (!socket) return;
  let ack;
  try {
    ack = await socket.timeout(10000).emitWithAck("venue_quality", { room, venue: venue.id, ...preset });
  } catch {
    ack = { ok: false, error: { code: "timeout", message: t("error.network") } };
  }
  if (ack.ok && last) {
    // Show the new cap now rather than at the next snapshot.
    const entry = last.rooms.find((r) => r.id === room);
    if (entry) {
      const caps = { ...(entry.venue_quality || {}) };
      if (preset.receive === "full" && preset.send_max_bitrate == null) delete caps[venue.id];
      else caps[venue.id] = { ...preset };
      entry.venue_quality = caps;
      render(last);
    }
  }
  const result = document.querySelector(`[data-venue-result="${CSS.escape(venue.id)}"]`);
  if (result && !ack.ok) result.textContent = errorText(ack.error.code, ack.error.message);
}

function participantRow(room, p, flagged) {
  const cell = (field, text) => h("td", { "data-field": field }, text);
  const state = p.publish_state ? `${p.publish_state} / ${p.subscribe_state}` : t("ctl.no_media");
  const button = h(
    "button",
    {
      class: "btn small",
      type: "button",
      "data-action": "reconnect",
      onclick: () => reconnect(room.id, p, button),
    },
    t("ctl.reconnect"),
  );
  const pinned = room.pinned === p.identity;
  const spotlight = h(
    "button",
    {
      class: pinned ? "btn small primary" : "btn small",
      type: "button",
      "data-action": "pin",
      disabled: p.role === "observer",
      onclick: () => pin(room.id, pinned ? null : p.identity, p),
    },
    t(pinned ? "ctl.unpin" : "ctl.pin"),
  );
  return h(
    "tr",
    { class: flagged ? "ctl-row flagged" : "ctl-row", "data-identity": p.identity, "data-room": room.id },
    cell("name", `${p.name} (${roleLabel(p.role)})`),
    cell("state", state),
    h("td", { "data-field": "candidate", "data-candidate": p.candidate || "", title: t("ctl.candidate_title") }, p.candidate || "–"),
    cell("send_kbps", fmt.kbps(p.send_kbps)),
    cell("receive_kbps", fmt.kbps(p.receive_kbps)),
    h("td", { "data-field": "loss", "data-value": p.loss ?? "" }, fmt.pct(p.loss)),
    h("td", { "data-field": "downstream_loss", "data-value": p.downstream_loss ?? "" }, fmt.pct(p.downstream_loss)),
    cell("rtt_ms", fmt.ms(p.rtt_ms)),
    cell("resolution", fmt.res(p)),
    cell("fps", fmt.fps(p.fps)),
    cell("audio_level", p.audio_muted ? t("ctl.muted") : fmt.db(p.audio_level)),
    h(
      "td",
      {
        "data-field": "paused_videos",
        "data-level": p.video_level || "",
        "data-receive-cap": p.receive_cap || "full",
        title: p.video_level ? t(`ctl.level_${p.video_level}`) : "",
      },
      String(p.paused_videos ?? 0),
    ),
    h("td", {}, button, " ", spotlight),
    h("td", { class: "ctl-result", "data-result": p.identity }),
  );
}

async function pin(room, identity, p) {
  if (!socket) return;
  let ack;
  try {
    ack = await socket.timeout(10000).emitWithAck("pin", { room, identity });
  } catch {
    ack = { ok: false, error: { code: "timeout", message: t("error.network") } };
  }
  const result = document.querySelector(`[data-result="${CSS.escape(p.identity)}"]`);
  if (result && !ack.ok) result.textContent = errorText(ack.error.code, ack.error.message);
}

async function reconnect(room, p, button) {
  if (!socket) return;
  button.disabled = true;
  let ack;
  try {
    ack = await socket.timeout(10000).emitWithAck("reconnect_participant", { room, identity: p.identity });
  } catch {
    ack = { ok: false, error: { code: "timeout", message: t("error.network") } };
  }
  button.disabled = false;
  const result = document.querySelector(`[data-result="${CSS.escape(p.identity)}"]`);
  if (result) result.textContent = ack.ok ? t("ctl.reconnect_sent", { name: p.name }) : errorText(ack.error.code, ack.error.message);
}
