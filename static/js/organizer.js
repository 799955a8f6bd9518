// The organizer page: API key (sessionStorage only), session list, creating a multi-level
// session (venues by level, agenda with planned speakers), and invitation links per participant.
// REST errors come as {"error": {"code", "message"}}; the message is shown.

import { applyI18n, errorText, has, levelLabel, mountLangSwitch, onLangChange, roleLabel, t } from "./i18n.js";
import { h, LEVELS, replaceChildren } from "./util.js";

const KEY_STORAGE = "yitang.apiKey";
const ROLES = ["member", "host", "cohost", "moderator", "guest", "observer"];

let apiKey = sessionStorage.getItem(KEY_STORAGE) || "";
/** Whether the server took the key: "unknown" until asked, then "ok" or "invalid". */
let keyState = "unknown";
let rooms = [];
let selected = null; // RoomDetail of the managed room

applyI18n();
mountLangSwitch(document.getElementById("lang-switch"));

/** Call the REST API; resolves with the parsed body or throws {code, message}. */
async function api(method, path, body) {
  if (!apiKey) throw { code: "api_key_missing", message: t("org.need_key") };
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${apiKey}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw { code: "network", message: t("error.network") };
  }
  let data = null;
  if ((response.headers.get("content-type") || "").includes("application/json")) data = await response.json();
  if (!response.ok) {
    const error = data?.error || {};
    throw { code: error.code || `http_${response.status}`, message: error.message || response.statusText };
  }
  return data;
}

function showError(id, err) {
  const el = document.getElementById(id);
  if (!err) {
    el.hidden = true;
    return;
  }
  // Codes we have words for are translated; otherwise the server's message is shown as it is.
  el.textContent = has(`error.${err.code}`) ? errorText(err.code, err.message) : err.message || errorText(err.code, "");
  el.dataset.code = err.code || "";
  el.hidden = false;
}

// --- API key ------------------------------------------------------------------------------

const keyInput = document.getElementById("api-key");
keyInput.value = apiKey;
document.getElementById("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  apiKey = keyInput.value.trim();
  if (apiKey) sessionStorage.setItem(KEY_STORAGE, apiKey);
  else sessionStorage.removeItem(KEY_STORAGE);
  loadRooms();
});

// --- room list ----------------------------------------------------------------------------

async function loadRooms() {
  showError("key-error", null);
  showError("rooms-error", null);
  try {
    rooms = (await api("GET", "/api/rooms")).rooms;
    keyState = "ok";
  } catch (err) {
    rooms = [];
    const keyProblem = ["api_key_missing", "api_key_invalid", "too_many_attempts"].includes(err.code);
    if (keyProblem) keyState = "invalid";
    showError(keyProblem ? "key-error" : "rooms-error", err);
  }
  document.body.dataset.key = keyState;
  renderRooms();
}

/**
 * A scheduled time as the organizer wrote it, with its zone: "2026-12-01 09:00 (UTC+08:00)".
 * Never converted to this browser's zone — 09:00 in Changsha must not read 1:00 AM elsewhere.
 */
function formatStart(iso) {
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.exec(String(iso));
  if (!match) return String(iso);
  const zone = match[3] === "Z" ? "+00:00" : match[3];
  return `${match[1]} ${match[2]} (UTC${zone})`;
}

/** A moment (seconds since the epoch) in this browser's zone, with the zone named. */
function formatMoment(seconds) {
  const d = new Date(seconds * 1000);
  const offset = -d.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  const abs = Math.abs(offset);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())} (UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)})`;
}

function renderRooms() {
  const body = document.getElementById("rooms-body");
  replaceChildren(
    body,
    rooms.map(({ room, live, participant_count: count }) =>
      h(
        "tr",
        { "data-room": room.id },
        h("td", { class: "title-cell", text: room.title }),
        h("td", { class: "start-cell", text: formatStart(room.scheduled_start) }),
        h("td", {}, h("span", { class: "status-badge", "data-status": live.status, text: t(`org.status.${live.status}`) })),
        h("td", { text: String(count) }),
        h("td", {}, h("button", { type: "button", class: "btn small open-room", onclick: () => openRoom(room.id), text: t("org.open") })),
      ),
    ),
  );
  // "No sessions yet" only when the server said so: a wrong key is said in the key card.
  document.getElementById("rooms-empty").hidden = rooms.length > 0 || keyState !== "ok";
}

document.getElementById("refresh-rooms").addEventListener("click", loadRooms);

// --- creating a session ---------------------------------------------------------------------

const venueRows = document.getElementById("venue-rows");
const agendaRows = document.getElementById("agenda-rows");

function levelSelect(value) {
  return h(
    "select",
    { class: "venue-level" },
    LEVELS.map((level) => h("option", { value: level, selected: level === value, text: levelLabel(level) })),
  );
}

function addVenueRow({ id = "", name = "", level = "city", main = false } = {}) {
  const row = h(
    "div",
    { class: "row-line venue-row" },
    h("label", { class: "field narrow" }, h("span", { "data-i18n": "org.venue_id", text: t("org.venue_id") }),
      h("input", { class: "venue-id", value: id, maxlength: 48, pattern: "[a-z0-9][a-z0-9\\-]{0,47}", "data-i18n-title": "org.venue_id_hint", title: t("org.venue_id_hint") })),
    h("label", { class: "field" }, h("span", { "data-i18n": "org.venue_name", text: t("org.venue_name") }), h("input", { class: "venue-name-input", value: name, maxlength: 64 })),
    h("label", { class: "field narrow" }, h("span", { "data-i18n": "org.venue_level", text: t("org.venue_level") }), levelSelect(level)),
    h("label", { class: "main-radio" }, h("input", { type: "radio", name: "main-venue", class: "venue-main", checked: main }), h("span", { "data-i18n": "org.venue_main", text: t("org.venue_main") })),
    h("button", { type: "button", class: "btn small danger", "data-i18n": "org.remove_row", text: t("org.remove_row"), onclick: () => row.remove() }),
  );
  venueRows.append(row);
}

function addAgendaRow({ title = "", speakers = "", minutes = "" } = {}) {
  const row = h(
    "div",
    { class: "row-line agenda-row" },
    h("label", { class: "field" }, h("span", { "data-i18n": "org.item_title", text: t("org.item_title") }), h("input", { class: "item-title", value: title, maxlength: 200 })),
    h("label", { class: "field" }, h("span", { "data-i18n": "org.item_speakers", text: t("org.item_speakers") }), h("input", { class: "item-speakers", value: speakers })),
    h("label", { class: "field narrow" }, h("span", { "data-i18n": "org.item_minutes", text: t("org.item_minutes") }), h("input", { class: "item-minutes", type: "number", min: 1, max: 1440, value: minutes })),
    h("button", { type: "button", class: "btn small danger", "data-i18n": "org.remove_row", text: t("org.remove_row"), onclick: () => row.remove() }),
  );
  agendaRows.append(row);
}

document.getElementById("add-venue").addEventListener("click", () => addVenueRow({ id: `venue-${venueRows.children.length + 1}` }));
document.getElementById("add-item").addEventListener("click", () => addAgendaRow());

/** "+08:00" for an offset in minutes east of UTC. */
function offsetText(minutes) {
  const sign = minutes >= 0 ? "+" : "-";
  const abs = Math.abs(minutes);
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}

/** The zone choices: every half hour from UTC-12 to UTC+14, this browser's own selected. */
function fillZones() {
  const select = document.getElementById("room-tz");
  const own = -new Date().getTimezoneOffset();
  const choices = [];
  for (let minutes = -12 * 60; minutes <= 14 * 60; minutes += 30) choices.push(minutes);
  if (!choices.includes(own)) choices.push(own);
  choices.sort((a, b) => a - b);
  replaceChildren(select, choices.map((m) => h("option", { value: offsetText(m), selected: m === own, text: `UTC${offsetText(m)}` })));
}

/** A datetime-local value with the chosen zone's offset (the API requires one). */
function withOffset(local) {
  return `${local.length === 16 ? `${local}:00` : local}${document.getElementById("room-tz").value}`;
}

function collectSpec() {
  const venues = [...venueRows.querySelectorAll(".venue-row")]
    .map((row) => ({
      id: row.querySelector(".venue-id").value.trim(),
      name: row.querySelector(".venue-name-input").value.trim(),
      level: row.querySelector(".venue-level").value,
      main: row.querySelector(".venue-main").checked,
    }))
    .filter((v) => v.name);
  const agenda = [...agendaRows.querySelectorAll(".agenda-row")]
    .map((row) => {
      const item = {
        title: row.querySelector(".item-title").value.trim(),
        // Names may contain spaces ("Wang Li"): only commas, semicolons and new lines separate.
        planned_speakers: row.querySelector(".item-speakers").value.split(/[,，、;；\n]+/).map((s) => s.trim()).filter(Boolean),
      };
      const minutes = Number(row.querySelector(".item-minutes").value);
      if (minutes > 0) item.duration_minutes = minutes;
      return item;
    })
    .filter((item) => item.title);
  return {
    title: document.getElementById("room-title").value.trim(),
    topic: document.getElementById("room-topic").value.trim(),
    scheduled_start: withOffset(document.getElementById("room-start").value),
    lobby: document.getElementById("room-lobby").checked,
    venues,
    agenda,
  };
}

document.getElementById("create-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  showError("create-error", null);
  document.getElementById("create-ok").hidden = true;
  const submit = document.getElementById("create-submit");
  submit.disabled = true;
  try {
    const room = await api("POST", "/api/rooms", collectSpec());
    const ok = document.getElementById("create-ok");
    ok.textContent = t("org.created", { title: room.title });
    ok.hidden = false;
    resetCreateForm();
    await loadRooms();
    await openRoom(room.id);
  } catch (err) {
    showError("create-error", err);
  } finally {
    submit.disabled = false;
  }
});

// --- participants and links -------------------------------------------------------------------

async function openRoom(roomId) {
  showError("participant-error", null);
  try {
    selected = await api("GET", `/api/rooms/${encodeURIComponent(roomId)}`);
  } catch (err) {
    showError("rooms-error", err);
    return;
  }
  renderRoomCard();
  document.getElementById("room-card").scrollIntoView({ behavior: "smooth", block: "start" });
}

function renderRoomCard() {
  const card = document.getElementById("room-card");
  if (!selected) {
    card.hidden = true;
    return;
  }
  card.hidden = false;
  card.dataset.room = selected.room.id;
  document.getElementById("room-card-title").textContent = t("org.room", { title: selected.room.title });
  const role = document.getElementById("p-role");
  const roleValue = role.value || "member";
  replaceChildren(role, ROLES.map((r) => h("option", { value: r, selected: r === roleValue, text: roleLabel(r) })));
  const venue = document.getElementById("p-venue");
  const venueValue = venue.value;
  replaceChildren(
    venue,
    selected.room.venues.map((v) =>
      h("option", { value: v.id, selected: v.id === venueValue, text: `${levelLabel(v.level)} · ${v.name}${v.main ? ` (${t("venue.main")})` : ""}` }),
    ),
  );
  renderLinks();
}

document.getElementById("p-role").addEventListener("change", (e) => {
  // The host sits at the main venue; choose it for them.
  if (e.target.value === "host" && selected) {
    const main = selected.room.venues.find((v) => v.main);
    if (main) document.getElementById("p-venue").value = main.id;
  }
});

/** Venue name by id, in the managed room. */
function venueName(id) {
  return selected.room.venues.find((v) => v.id === id)?.name || id;
}

/** One invitee's row: who, and their latest link with its expiry (or a button to make one). */
function linkRow(invitee, invitation) {
  const expired = invitation ? invitation.expires_at * 1000 <= Date.now() : false;
  const who = h(
    "span",
    { class: "who" },
    h("span", { class: "who-name", text: invitee.name, title: invitee.name }),
    h("span", { class: "role-badge", text: roleLabel(invitee.role) }),
    h("span", { class: "who-venue", text: venueName(invitee.venue), title: venueName(invitee.venue) }),
  );
  if (!invitation) {
    return h(
      "li",
      { class: "link-row", "data-identity": invitee.identity, "data-link": "none" },
      who,
      h("button", { type: "button", class: "btn small issue-again", onclick: () => issue(invitee), text: t("org.issue") }),
    );
  }
  return h(
    "li",
    { class: "link-row", "data-identity": invitee.identity, "data-link": expired ? "expired" : "valid" },
    who,
    h("input", { class: "link", readonly: true, value: invitation.url, "aria-label": t("org.link") }),
    h("span", {
      class: `link-expiry${expired ? " expired" : ""}`,
      text: expired ? t("org.link_expired", { time: formatMoment(invitation.expires_at) }) : t("org.link_expires", { time: formatMoment(invitation.expires_at) }),
    }),
    h("button", { type: "button", class: "btn small copy-link", disabled: expired, onclick: (e) => copyLink(invitation.url, e.currentTarget), text: t("org.copy") }),
    expired
      ? h("button", { type: "button", class: "btn small issue-again", onclick: () => issue(invitee), text: t("org.new_link") })
      : h("a", { class: "btn small", href: invitation.url, target: "_blank", rel: "noopener noreferrer", text: t("org.open_link") }),
  );
}

function renderLinks() {
  const list = document.getElementById("links");
  const invitations = new Map((selected.invitations || []).map((i) => [i.identity, i]));
  // The latest issued first, then everyone else invited (a link the server does not keep: one click makes one).
  const roster = [...(selected.roster || [])].sort(
    (a, b) => (invitations.get(b.identity)?.issued_at || 0) - (invitations.get(a.identity)?.issued_at || 0),
  );
  const rows = roster.map((invitee) => linkRow(invitee, invitations.get(invitee.identity)));
  replaceChildren(list, rows);
  document.getElementById("links-empty").hidden = rows.length > 0;
}

/** Issue a link; a clash with an earlier invitation of the identity asks before replacing it. */
async function issue({ identity, name, role, venue }, { replace = false } = {}) {
  showError("participant-error", null);
  const body = { identity, name, role, venue, ...(replace ? { replace: true } : {}) };
  try {
    const response = await api("POST", `/api/rooms/${encodeURIComponent(selected.room.id)}/tokens`, body);
    const invitee = { identity, name, role, venue };
    selected.roster = [...(selected.roster || []).filter((r) => r.identity !== identity), invitee];
    const invitation = { identity, url: response.url, expires_at: response.expires_at, issued_at: Math.floor(Date.now() / 1000) };
    selected.invitations = [...(selected.invitations || []).filter((i) => i.identity !== identity), invitation];
    renderLinks();
    return true;
  } catch (err) {
    if (err.code === "identity_taken") showClash({ identity, name, role, venue });
    else showError("participant-error", err);
    return false;
  }
}

/** Say who the identity already is, and offer to change them to the new role and venue. */
function showClash(wanted) {
  const box = document.getElementById("participant-error");
  const before = (selected.roster || []).find((r) => r.identity === wanted.identity);
  const text = before
    ? t("org.identity_taken", {
        identity: wanted.identity,
        name: before.name,
        role: roleLabel(before.role),
        venue: venueName(before.venue),
        new_role: roleLabel(wanted.role),
        new_venue: venueName(wanted.venue),
      })
    : t("error.identity_taken");
  replaceChildren(
    box,
    h("span", { text }),
    " ",
    h("button", {
      type: "button",
      class: "btn small danger",
      id: "replace-invitee",
      text: t("org.replace"),
      onclick: async () => {
        if (await issue(wanted, { replace: true })) clearParticipantForm();
      },
    }),
  );
  box.dataset.code = "identity_taken";
  box.hidden = false;
}

function clearParticipantForm() {
  document.getElementById("p-identity").value = "";
  document.getElementById("p-name").value = "";
  document.getElementById("p-identity").focus();
}

document.getElementById("participant-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const ok = await issue({
    identity: document.getElementById("p-identity").value.trim(),
    name: document.getElementById("p-name").value.trim(),
    role: document.getElementById("p-role").value,
    venue: document.getElementById("p-venue").value,
  });
  if (ok) clearParticipantForm();
});

async function copyLink(url, button) {
  let copied = false;
  try {
    await navigator.clipboard.writeText(url);
    copied = true;
  } catch {
    const input = button.parentElement.querySelector("input.link");
    input.select();
    copied = document.execCommand?.("copy") || false;
  }
  button.textContent = t(copied ? "org.copied" : "org.copy_failed");
  button.dataset.copied = copied ? "true" : "false";
  setTimeout(() => (button.textContent = t("org.copy")), 2000);
}

// --- start ---------------------------------------------------------------------------------------

function defaultStart() {
  const d = new Date(Date.now() + 24 * 3600 * 1000);
  d.setHours(9, 0, 0, 0);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T09:00`;
}

/** The create form as a new page shows it (also after a session was created from it). */
function resetCreateForm() {
  document.getElementById("room-title").value = "";
  document.getElementById("room-topic").value = "";
  document.getElementById("room-lobby").checked = false;
  document.getElementById("room-start").value = defaultStart();
  fillZones();
  venueRows.replaceChildren();
  agendaRows.replaceChildren();
  addVenueRow({ id: "national", level: "national" });
  addVenueRow({ id: "provincial", level: "provincial", main: true });
  addVenueRow({ id: "city", level: "city" });
  addVenueRow({ id: "county", level: "county" });
  addAgendaRow();
}

resetCreateForm();

onLangChange(() => {
  applyI18n();
  for (const select of document.querySelectorAll(".venue-level")) {
    for (const option of select.options) option.textContent = levelLabel(option.value);
  }
  renderRooms();
  if (selected) renderRoomCard();
});

if (apiKey) loadRooms();
else renderRooms();
