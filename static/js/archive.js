// The archive page: search recordings and inside them, play the combined video by chapter
// or by speech, the session record (attendance, speaking record), the minutes and the whole
// record for download, the render job's progress, the original per-track files.
//
// REST: GET /api/recordings (q, from, to, venue, speaker), GET /api/moments (q),
// GET /api/recordings/{id}, GET /api/recordings/{id}/record, POST .../render, DELETE
// /api/recordings/{id}, downloads (.../minutes, .../attendance?format=csv, .../export)
// fetched with the key and saved from a blob, and file URLs carrying the detail's
// short-lived `access` token (a <video> element cannot send an Authorization header).
// Every string is in i18n.js; server errors are translated by their code.
// Testing hooks: data-* attributes on rows, chapters, speeches, moments, the player.

import { applyI18n, errorText, levelLabel, mountLangSwitch, onLangChange, roleLabel, t } from "./i18n.js";
import { confirmDialog } from "./notify.js";

const KEY_STORAGE = "yitang.apiKey"; // shared with the organizer page
const POLL_MS = 1000;

let apiKey = sessionStorage.getItem(KEY_STORAGE) || "";
let current = null; // RecordingDetail shown
let currentRecord = null; // its SessionRecord (null while recording or not loaded)
let lastList = null; // {recordings, render} last listed
let lastMoments = null; // MomentHits of the last content search (null: none asked)
let pendingSeek = null; // seconds to seek to once the player has loaded
let pollTimer = null;

const $ = (id) => document.getElementById(id);

/** Create an element with attributes (data-*, class, text) and children. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function apiUrl(path, params) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params || {})) if (value) url.searchParams.set(key, value);
  return url;
}

/** Call the REST API; resolves with the Response, or throws {code, message}. */
async function request(method, path, params) {
  if (!apiKey) throw { code: "api_key_missing", message: "" };
  let response;
  try {
    response = await fetch(apiUrl(path, params), { method, headers: { Authorization: `Bearer ${apiKey}` } });
  } catch {
    throw { code: "network", message: "" };
  }
  if (!response.ok) {
    let error = {};
    if ((response.headers.get("content-type") || "").includes("application/json")) {
      error = ((await response.json()) || {}).error || {};
    }
    throw { code: error.code || `http_${response.status}`, message: error.message || response.statusText };
  }
  return response;
}

/** Call the REST API; resolves with the parsed JSON body (or null). */
async function api(method, path, params) {
  const response = await request(method, path, params);
  return (response.headers.get("content-type") || "").includes("application/json") ? response.json() : null;
}

function showError(id, err) {
  const box = $(id);
  if (!err) {
    box.hidden = true;
    box.dataset.code = "";
    return;
  }
  box.textContent = errorText(err.code, err.message);
  box.dataset.code = err.code || "";
  box.hidden = false;
}

const pad = (n) => String(n).padStart(2, "0");

function formatDate(epochSeconds) {
  const d = new Date(epochSeconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function formatClock(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return "—";
  const d = new Date(epochSeconds * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = pad(s % 60);
  return h ? `${h}:${pad(m)}:${rest}` : `${m}:${rest}`;
}

function formatSize(bytes) {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1e3))} kB`;
}

const stateText = (state) => t(`archive.state.${state}`);
const renderStateText = (state) => t(`archive.render_state.${state}`);

function renderText(render) {
  const label = renderStateText(render.state);
  if (render.state === "running") return `${label} ${Math.floor(render.progress)}%`;
  return label;
}

/** A combined video made outside the queue (or before its status expired) counts as ready. */
function effectiveRender(render, hasCombined) {
  const status = render || { state: "none", progress: 0, message: "" };
  return status.state === "none" && hasCombined ? { ...status, state: "done", progress: 100 } : status;
}

function venueTags(venues) {
  return venues.map((v) => el("span", { class: "venue-tag", "data-level": v.level, title: levelLabel(v.level), text: v.name }));
}

// --- API key and language -----------------------------------------------------------------------

applyI18n();
mountLangSwitch($("lang-switch"));
onLangChange(() => {
  if (lastList) showList(lastList);
  showMoments(lastMoments);
  if (current) showDetail(current, false);
});

$("api-key").value = apiKey;
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey = $("api-key").value.trim();
  if (apiKey) sessionStorage.setItem(KEY_STORAGE, apiKey);
  else sessionStorage.removeItem(KEY_STORAGE);
  loadList();
});

// --- list and search ----------------------------------------------------------------------------

function searchParams() {
  return {
    q: $("q").value.trim(),
    from: $("from").value,
    to: $("to").value,
    venue: $("venue").value.trim(),
    speaker: $("speaker").value.trim(),
  };
}

async function loadList() {
  showError("list-error", null);
  const params = searchParams();
  try {
    // The title search and the search inside sessions answer the same box.
    const [list, moments] = await Promise.all([
      api("GET", "/api/recordings", params),
      params.q ? api("GET", "/api/moments", { q: params.q }) : Promise.resolve(null),
    ]);
    lastList = list;
    lastMoments = moments;
  } catch (err) {
    showError("list-error", err);
    return;
  }
  showList(lastList);
  showMoments(lastMoments);
}

function showList(body) {
  const rows = body.recordings.map((r) => {
    const render = effectiveRender(body.render[r.id], r.has_combined);
    return el(
      "tr",
      {
        "data-recording-id": r.id,
        "data-state": r.state,
        "data-render-state": render.state,
        "aria-selected": current && current.summary.id === r.id ? "true" : "false",
        tabindex: "0",
        onclick: () => openRecording(r.id),
        onkeydown: (e) => e.key === "Enter" && openRecording(r.id),
      },
      el("td", {}, el("strong", { text: r.title }), el("div", { class: "en", text: r.id })),
      el("td", { text: formatDate(r.started_at) }),
      el("td", {}, ...venueTags(r.venues)),
      el("td", { text: String(r.participants) }),
      el("td", { text: formatDuration(r.duration) }),
      el("td", {}, el("span", { class: "state-tag", "data-state": r.state, text: stateText(r.state) })),
      el("td", { "data-role": "render-cell", text: renderText(render) }),
    );
  });
  $("recordings-body").replaceChildren(...rows);
  $("recordings").dataset.count = String(rows.length);
  $("recordings-empty").hidden = rows.length > 0;
}

function showMoments(hits) {
  $("moments-box").hidden = !hits;
  if (!hits) return;
  const items = hits.moments.map((m) =>
    el(
      "li",
      { "data-recording-id": m.recording_id, "data-kind": m.kind, "data-offset": m.offset },
      el(
        "button",
        { type: "button", onclick: () => openRecording(m.recording_id, m.offset) },
        el("span", { class: "kind", text: t(`archive.moment_kind.${m.kind}`) }),
        el("span", { class: "time", text: formatDuration(m.offset) }),
        el("strong", { text: m.kind === "chat" ? `${m.name}：${m.text}` : m.text }),
        el("span", { class: "en", text: ` ${m.title}${m.agenda_title ? ` · ${m.agenda_title}` : ""}` }),
      ),
    ),
  );
  if (!items.length) items.push(el("li", { class: "empty", text: t("archive.no_moments") }));
  $("moments").replaceChildren(...items);
  $("moments").dataset.count = String(hits.moments.length);
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadList();
});
$("search-form").addEventListener("reset", () => setTimeout(loadList, 0));

// --- one recording --------------------------------------------------------------------------------

function fileUrl(detail, name, download) {
  const params = new URLSearchParams({ access: detail.access });
  if (download) params.set("download", "1");
  return `/api/recordings/${encodeURIComponent(detail.summary.id)}/files/${encodeURIComponent(name)}?${params}`;
}

/** Show a recording; with `seekTo` (seconds), play from there once the video is loaded. */
async function openRecording(id, seekTo = null) {
  showError("detail-error", null);
  let detail;
  let record = null;
  try {
    detail = await api("GET", `/api/recordings/${encodeURIComponent(id)}`);
    if (detail.summary.state !== "recording" && detail.manifest && detail.manifest.stopped_at) {
      record = await api("GET", `/api/recordings/${encodeURIComponent(id)}/record`);
    }
  } catch (err) {
    $("detail-card").hidden = false;
    showError("detail-error", err);
    return;
  }
  detail.render = effectiveRender(detail.render, Boolean(detail.manifest && detail.manifest.combined));
  const changed = !current || current.summary.id !== id;
  current = detail;
  currentRecord = record;
  if (location.hash !== `#${id}`) history.replaceState(null, "", `#${id}`);
  showDetail(detail, changed);
  for (const row of $("recordings-body").children) {
    row.setAttribute("aria-selected", row.dataset.recordingId === id ? "true" : "false");
  }
  if (seekTo !== null) seek(seekTo);
  schedulePoll(detail);
}

function showDetail(detail, changed) {
  const { summary, manifest, render } = detail;
  const card = $("detail-card");
  card.hidden = false;
  card.dataset.recordingId = summary.id;
  card.dataset.state = summary.state;
  $("detail-title").textContent = summary.title;
  // A recording resumed on another node: where nothing was recorded between its parts.
  const gaps = (summary.gaps || []).map((g) => `${formatDuration(g.start)} (${(g.end - g.start).toFixed(1)} s)`);
  $("detail-meta").textContent =
    t("archive.meta", {
      date: formatDate(summary.started_at),
      duration: formatDuration(summary.duration),
      state: stateText(summary.state),
      files: summary.files,
    }) + (gaps.length ? ` · ${t("archive.meta_gaps", { gaps: gaps.join(", ") })}` : "");
  const incomplete = $("detail-incomplete");
  incomplete.hidden = summary.complete || summary.state === "recording";
  incomplete.textContent = summary.complete ? "" : t("archive.incomplete", { reason: summary.error || stateText(summary.state) });
  showRender(detail);
  if (changed || !$("player").getAttribute("src")) showPlayer(detail);
  showChapters(manifest ? manifest.chapters : []);
  showRecord(currentRecord);
  showParticipants(manifest ? manifest.participants : []);
  showFiles(detail);
  $("render-button").disabled = summary.state === "recording" || ["queued", "running"].includes(render.state);
  $("delete-button").disabled = summary.state === "recording";
  for (const button of $("record-downloads").querySelectorAll("button")) button.disabled = !currentRecord;
}

function showRender(detail) {
  const { render } = detail;
  const status = $("render-status");
  status.dataset.renderState = render.state;
  status.dataset.progress = String(render.progress);
  $("render-label").textContent = t("archive.render_label", { state: renderStateText(render.state) });
  const progress = $("render-progress");
  progress.value = render.progress;
  progress.dataset.progress = String(render.progress);
  $("render-percent").textContent = ["queued", "running"].includes(render.state)
    ? `${render.progress.toFixed(0)}%`
    : render.state === "failed" ? render.message : "";
  const row = document.querySelector(`tr[data-recording-id="${CSS.escape(detail.summary.id)}"]`);
  if (row) {
    row.dataset.renderState = render.state;
    const cell = row.querySelector('[data-role="render-cell"]');
    if (cell) cell.textContent = renderText(render);
  }
}

function showPlayer(detail) {
  const player = $("player");
  const ready = detail.manifest && detail.manifest.combined && detail.render.state !== "running";
  player.dataset.ready = "false";
  if (ready) {
    player.src = fileUrl(detail, detail.manifest.combined.name, false);
    player.hidden = false;
    $("player-empty").hidden = true;
  } else {
    player.removeAttribute("src");
    player.load();
    player.hidden = true;
    $("player-empty").hidden = false;
  }
}

/** Move the player to `seconds` (now, or once its metadata is in) and play from there. */
function seek(seconds) {
  const player = $("player");
  if (!player.getAttribute("src")) return;
  player.dataset.seekTarget = String(seconds);
  if (player.readyState < 1) {
    pendingSeek = seconds;
    return;
  }
  pendingSeek = null;
  player.currentTime = seconds;
  player.play().catch(() => {});
}

$("player").addEventListener("loadedmetadata", () => {
  const player = $("player");
  player.dataset.ready = "true";
  player.dataset.duration = String(player.duration);
  if (pendingSeek !== null) seek(pendingSeek);
});
$("player").addEventListener("timeupdate", () => {
  const t0 = $("player").currentTime;
  for (const item of $("chapters").children) {
    const active = Number(item.dataset.start) <= t0 && t0 < Number(item.dataset.end);
    item.dataset.active = active ? "true" : "false";
  }
});

function showChapters(chapters) {
  const items = chapters.map((c, index) =>
    el(
      "li",
      { "data-chapter-index": index, "data-kind": c.kind, "data-start": c.start, "data-end": c.end, "data-active": "false" },
      el(
        "button",
        { type: "button", onclick: () => seek(c.start) },
        el("span", { class: "time", text: formatDuration(c.start) }),
        el("span", { class: "kind", text: t(c.kind === "agenda" ? "archive.chapter_agenda" : "archive.chapter_speaker") }),
        el("span", { class: "title", text: c.title }),
      ),
    ),
  );
  $("chapters").replaceChildren(...items);
}

// --- the session record ---------------------------------------------------------------------------

function showRecord(record) {
  const pending = !record;
  $("record-empty").hidden = !pending;
  $("record-empty").textContent = pending ? t("archive.record_pending") : "";
  $("attendance").hidden = pending;
  $("attendance-summary").textContent = pending ? "" : t("archive.att_summary", record.attendance);
  $("attendance-body").replaceChildren(...(pending ? [] : attendanceRows(record.attendance)));
  $("speaking").replaceChildren(...(pending ? [] : speakingBlocks(record.speaking, record.questions || [], record.suggestions || [])));
}

function attendanceRows(attendance) {
  const rows = [];
  for (const level of attendance.levels) {
    const label = level.level ? levelLabel(level.level) : "—";
    rows.push(
      el(
        "tr",
        { class: "level-row", "data-level": level.level || "" },
        el("th", { colspan: 7, text: t("archive.att_level", { ...level, level: label }) }),
      ),
    );
    for (const venue of level.venues) {
      for (const p of venue.participants) {
        const status = p.absent ? "absent" : p.present_at_end ? "present" : "left";
        rows.push(
          el(
            "tr",
            { "data-identity": p.identity, "data-status": status, "data-venue": venue.id },
            el("td", {}, el("strong", { text: p.name }), el("span", { class: "en", text: ` ${roleLabel(p.role)}` })),
            el("td", {}, el("span", { class: "venue-tag", "data-level": venue.level || "", text: venue.name })),
            el("td", { class: `att-${status}`, text: t(`archive.att_status.${status}`) }),
            el("td", { "data-field": "first-join", text: formatClock(p.first_join) }),
            el("td", { "data-field": "last-leave", text: formatClock(p.last_leave) }),
            el("td", { "data-field": "present", text: p.absent ? "—" : formatDuration(p.present_seconds) }),
            el("td", { "data-field": "reconnections", text: String(p.reconnections) }),
          ),
        );
      }
    }
  }
  return rows;
}

/** The approved public questions and opinions of one agenda item; each seeks the player. */
function questionList(questions) {
  if (!questions.length) return null;
  return el(
    "ul",
    { class: "question-list", "data-field": "questions" },
    ...questions.map((q) =>
      el(
        "li",
        { "data-question": q.id, "data-offset": q.offset },
        el(
          "button",
          { type: "button", class: "speech", onclick: () => seek(q.offset) },
          el("span", { class: "time", text: formatClock(q.at) }),
          el("strong", { text: t(`gallery.kind_${q.kind}`) }),
          el("span", { text: q.text }),
          el("span", { class: "facts", text: [q.name, q.district].filter(Boolean).join("、") || t("gallery.anonymous") }),
        ),
        q.answer ? el("p", { class: "question-answer", text: t("gallery.answer_shown", { answer: q.answer }) }) : null,
      ),
    ),
  );
}

/** Members' micro-suggestions on one agenda item, with their status and reply. */
function suggestionList(suggestions) {
  if (!suggestions.length) return null;
  return el(
    "ul",
    { class: "suggestion-list", "data-field": "suggestions" },
    ...suggestions.map((s) =>
      el(
        "li",
        { "data-suggestion": s.id, "data-status": s.status },
        el("strong", { text: `[${t(`suggestions.category_${s.category}`)}] ${s.title}` }),
        el("span", { class: "facts", text: [s.name, s.before_session ? t("suggestions.before_session") : formatClock(s.at)].join(" · ") }),
        el("span", { class: "suggestion-status", text: t(`suggestions.status_${s.status}`) }),
        el("p", { class: "suggestion-body", text: s.body }),
        s.department ? el("p", { class: "facts", text: t("suggestions.department_shown", { department: s.department }) }) : null,
        s.reply ? el("p", { class: "question-answer", text: t("suggestions.reply_shown", { reply: s.reply }) }) : null,
      ),
    ),
  );
}

function speakingBlocks(speaking, questions = [], suggestions = []) {
  const blocks = speaking.items.map((item) => {
    const when = [
      item.start === null
        ? t("archive.item_not_reached")
        : t("archive.item_time", { start: formatClock(item.start), end: formatClock(item.end), duration: formatDuration(item.seconds) }),
    ];
    if (item.planned_minutes) when.push(t("archive.item_planned", { minutes: item.planned_minutes }));
    if (item.overrun_seconds >= 0.5) when.push(t("archive.item_overrun", { overrun: formatDuration(item.overrun_seconds) }));
    const speeches = item.speeches.map((s) => {
      const facts = [formatDuration(s.duration)];
      if (s.time_limit_seconds) facts.push(t("archive.speech_limit", { limit: formatDuration(s.time_limit_seconds) }));
      if (s.overrun_seconds >= 0.5) facts.push(t("archive.speech_overrun", { overrun: formatDuration(s.overrun_seconds) }));
      facts.push(t(`archive.ended_by.${s.ended_by}`));
      // A member of the public the host brought on stage (连线).
      if (s.on_stage) facts.unshift(t("stage.on_stage_record"));
      return el(
        "li",
        { "data-identity": s.identity, "data-offset": s.offset, "data-overrun": s.overrun_seconds >= 0.5 ? "true" : "false", "data-on-stage": s.on_stage ? "true" : "false" },
        el(
          "button",
          { type: "button", class: "speech", onclick: () => seek(s.offset) },
          el("span", { class: "time", text: formatClock(s.start) }),
          el("strong", { text: s.name }),
          el("span", { class: "venue-tag", "data-level": s.level || "", text: s.venue_name }),
          el("span", { class: "facts", text: facts.join(" · ") }),
        ),
      );
    });
    const missing = item.not_spoken.map((p) => p.name).join("、");
    return el(
      "section",
      { class: "agenda-record", "data-agenda-index": item.index },
      el("h4", { text: t("archive.item_title", { n: item.index + 1, title: item.title }) }),
      el("p", { class: "detail-meta", text: when.join(" · ") }),
      speeches.length ? el("ol", { class: "speech-list" }, ...speeches) : el("p", { class: "empty", text: t("archive.no_speeches") }),
      missing ? el("p", { class: "not-spoken", text: t("archive.not_spoken", { names: missing }) }) : null,
      questionList(questions.filter((q) => q.agenda_index === item.index)),
      suggestionList(suggestions.filter((s) => s.agenda_index === item.index)),
    );
  });
  if (speaking.speakers.length) {
    blocks.push(
      el(
        "section",
        { class: "speaker-totals" },
        el("h4", { text: t("archive.speaker_totals") }),
        el(
          "ul",
          {},
          ...speaking.speakers.map((s) =>
            el("li", { "data-identity": s.identity, text: t("archive.speaker_total", { name: s.name, count: s.speeches, duration: formatDuration(s.seconds) }) }),
          ),
        ),
      ),
    );
  }
  return blocks;
}

function showParticipants(participants) {
  const items = participants.map((p) =>
    el(
      "li",
      { "data-identity": p.identity },
      el("strong", { text: p.name }),
      " ",
      el("span", { class: "venue-tag", "data-level": p.level || "", text: p.venue_name }),
      el("span", { class: "en", text: ` ${p.level ? levelLabel(p.level) : ""} · ${roleLabel(p.role)}` }),
    ),
  );
  $("participants").replaceChildren(...items);
}

function showFiles(detail) {
  const files = detail.manifest ? detail.manifest.files : [];
  const names = Object.fromEntries((detail.manifest ? detail.manifest.participants : []).map((p) => [p.identity, p.name]));
  const rows = files.map((f) =>
    el(
      "tr",
      { "data-file": f.name, "data-kind": f.kind },
      el("td", { text: f.name }),
      el("td", { text: names[f.participant] || f.participant }),
      el("td", { text: `${t(`archive.kind.${f.kind}`)} · ${f.codec}${f.recovered ? ` · ${t("archive.recovered")}` : ""}` }),
      el("td", { text: formatDuration(f.start_offset) }),
      el("td", { text: formatDuration(f.duration) }),
      el("td", { text: f.size ? formatSize(f.size) : "—" }),
      el("td", { class: "hash", title: f.sha256, text: f.sha256 ? `${f.sha256.slice(0, 12)}…` : "" }),
      el(
        "td",
        {},
        f.error
          ? el("span", { class: "en", text: f.error })
          : el("a", { class: "btn small", href: fileUrl(detail, f.name, true), download: f.name, "data-download": f.name, text: t("archive.download") }),
      ),
    ),
  );
  $("files-body").replaceChildren(...rows);
}

function schedulePoll(detail) {
  clearTimeout(pollTimer);
  const busy = ["queued", "running"].includes(detail.render.state) || detail.summary.state === "recording";
  if (busy) pollTimer = setTimeout(() => openRecording(detail.summary.id), POLL_MS);
}

// --- downloads of the record ------------------------------------------------------------------------

const EXPORTS = {
  "minutes.docx": ["minutes", { format: "docx" }, "minutes.docx"],
  "minutes.md": ["minutes", { format: "md" }, "minutes.md"],
  "attendance.csv": ["attendance", { format: "csv" }, "attendance.csv"],
  "export.zip": ["export", {}, "zip"],
};

$("record-downloads").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-export]");
  if (!button || !current) return;
  const [endpoint, params, suffix] = EXPORTS[button.dataset.export];
  const id = current.summary.id;
  showError("detail-error", null);
  try {
    const response = await request("GET", `/api/recordings/${encodeURIComponent(id)}/${endpoint}`, params);
    const link = el("a", { href: URL.createObjectURL(await response.blob()), download: `${id}-${suffix}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  } catch (err) {
    showError("detail-error", err);
  }
});

$("render-button").addEventListener("click", async () => {
  if (!current) return;
  showError("detail-error", null);
  try {
    await api("POST", `/api/recordings/${encodeURIComponent(current.summary.id)}/render`);
  } catch (err) {
    showError("detail-error", err);
    return;
  }
  openRecording(current.summary.id);
});

$("delete-button").addEventListener("click", async () => {
  if (!current) return;
  const confirmed = await confirmDialog($("confirm-dialog"), {
    title: t("archive.delete_title"),
    text: t("archive.delete_text", { title: current.summary.title }),
    confirm: t("archive.delete"),
    danger: true,
  });
  if (!confirmed) return;
  try {
    await api("DELETE", `/api/recordings/${encodeURIComponent(current.summary.id)}`);
  } catch (err) {
    showError("detail-error", err);
    return;
  }
  clearTimeout(pollTimer);
  current = null;
  currentRecord = null;
  history.replaceState(null, "", location.pathname);
  $("detail-card").hidden = true;
  $("player").removeAttribute("src");
  loadList();
});

// --- start ------------------------------------------------------------------------------------------

if (apiKey) {
  loadList().then(() => {
    const id = decodeURIComponent(location.hash.slice(1));
    if (id) openRecording(id);
  });
}
