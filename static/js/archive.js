// The archive page: search recordings, play the combined video by chapter, watch the render
// job's progress, download the original per-track files.
//
// REST: GET /api/recordings (q, from, to, venue, speaker), GET /api/recordings/{id},
// POST /api/recordings/{id}/render, DELETE /api/recordings/{id}, and file URLs carrying the
// detail's short-lived `access` token (a <video> element cannot send an Authorization header).
// Errors come as {"error": {"code", "message"}}; the message is shown. Strings are inline
// Chinese first, English second. Testing hooks: data-* attributes on rows, chapters, the
// player and the render status.

const KEY_STORAGE = "yitang.apiKey"; // shared with the organizer page
const POLL_MS = 1000;
const LEVELS = {
  national: "全国 National",
  provincial: "省级 Provincial",
  city: "市级 City",
  county: "区县 County",
};
const STATES = {
  recording: "录制中 Recording",
  stopped: "已完成 Complete",
  failed: "失败 Failed",
  interrupted: "已中断 Interrupted",
};
const RENDER = {
  none: "未生成 Not rendered",
  queued: "排队中 Queued",
  running: "生成中 Rendering",
  done: "已生成 Ready",
  failed: "生成失败 Failed",
};

let apiKey = sessionStorage.getItem(KEY_STORAGE) || "";
let current = null; // RecordingDetail shown
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

/** Call the REST API; resolves with the parsed body (or null) or throws {code, message}. */
async function api(method, path, params) {
  if (!apiKey) throw { code: "api_key_missing", message: "请先输入 API 密钥 · Enter the API key first" };
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params || {})) if (value) url.searchParams.set(key, value);
  let response;
  try {
    response = await fetch(url, { method, headers: { Authorization: `Bearer ${apiKey}` } });
  } catch {
    throw { code: "network", message: "网络错误 · Network error" };
  }
  let data = null;
  if ((response.headers.get("content-type") || "").includes("application/json")) data = await response.json();
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw { code: error.code || `http_${response.status}`, message: error.message || response.statusText };
  }
  return data;
}

function showError(id, err) {
  const box = $(id);
  if (!err) {
    box.hidden = true;
    box.dataset.code = "";
    return;
  }
  box.textContent = err.message || err.code;
  box.dataset.code = err.code || "";
  box.hidden = false;
}

function formatDate(epochSeconds) {
  const d = new Date(epochSeconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

function formatSize(bytes) {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1e3))} kB`;
}

function renderText(render) {
  const label = RENDER[render.state] || render.state;
  if (render.state === "running") return `${label} ${Math.floor(render.progress)}%`;
  return label;
}

/** A combined video made outside the queue (or before its status expired) counts as ready. */
function effectiveRender(render, hasCombined) {
  const status = render || { state: "none", progress: 0, message: "" };
  return status.state === "none" && hasCombined ? { ...status, state: "done", progress: 100 } : status;
}

function venueTags(venues) {
  return venues.map((v) => el("span", { class: "venue-tag", "data-level": v.level, title: LEVELS[v.level] || v.level, text: v.name }));
}

// --- API key ----------------------------------------------------------------------------------

$("api-key").value = apiKey;
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey = $("api-key").value.trim();
  if (apiKey) sessionStorage.setItem(KEY_STORAGE, apiKey);
  else sessionStorage.removeItem(KEY_STORAGE);
  loadList();
});

// --- list and search --------------------------------------------------------------------------

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
  let body;
  try {
    body = await api("GET", "/api/recordings", searchParams());
  } catch (err) {
    showError("list-error", err);
    return;
  }
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
      el("td", {}, el("span", { class: "state-tag", "data-state": r.state, text: STATES[r.state] || r.state })),
      el("td", { "data-role": "render-cell", text: renderText(render) }),
    );
  });
  $("recordings-body").replaceChildren(...rows);
  $("recordings").dataset.count = String(rows.length);
  $("recordings-empty").hidden = rows.length > 0;
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadList();
});
$("search-form").addEventListener("reset", () => setTimeout(loadList, 0));

// --- one recording ------------------------------------------------------------------------------

function fileUrl(detail, name, download) {
  const params = new URLSearchParams({ access: detail.access });
  if (download) params.set("download", "1");
  return `/api/recordings/${encodeURIComponent(detail.summary.id)}/files/${encodeURIComponent(name)}?${params}`;
}

async function openRecording(id) {
  showError("detail-error", null);
  let detail;
  try {
    detail = await api("GET", `/api/recordings/${encodeURIComponent(id)}`);
  } catch (err) {
    $("detail-card").hidden = false;
    showError("detail-error", err);
    return;
  }
  detail.render = effectiveRender(detail.render, Boolean(detail.manifest && detail.manifest.combined));
  const changed = !current || current.summary.id !== id;
  current = detail;
  if (location.hash !== `#${id}`) history.replaceState(null, "", `#${id}`);
  showDetail(detail, changed);
  for (const row of $("recordings-body").children) {
    row.setAttribute("aria-selected", row.dataset.recordingId === id ? "true" : "false");
  }
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
  const gaps = (summary.gaps || []).map(
    (g) => `${formatDuration(g.start)} (${(g.end - g.start).toFixed(1)} s)`,
  );
  $("detail-meta").textContent =
    `${formatDate(summary.started_at)} · 时长 ${formatDuration(summary.duration)} · ` +
    `${STATES[summary.state] || summary.state} · ${summary.files} 个文件 files` +
    (gaps.length ? ` · 中断 gaps: ${gaps.join(", ")}` : "");
  const incomplete = $("detail-incomplete");
  incomplete.hidden = summary.complete || summary.state === "recording";
  incomplete.textContent = summary.complete
    ? ""
    : `录像不完整 · Incomplete: ${summary.error || summary.state}`;
  showRender(detail);
  if (changed || !$("player").getAttribute("src")) showPlayer(detail);
  showChapters(manifest ? manifest.chapters : []);
  showParticipants(manifest ? manifest.participants : []);
  showFiles(detail);
  $("render-button").disabled = summary.state === "recording" || ["queued", "running"].includes(render.state);
  $("delete-button").disabled = summary.state === "recording";
}

function showRender(detail) {
  const { render } = detail;
  const status = $("render-status");
  status.dataset.renderState = render.state;
  status.dataset.progress = String(render.progress);
  $("render-label").textContent = `合成视频 Combined video: ${RENDER[render.state] || render.state}`;
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

$("player").addEventListener("loadedmetadata", () => {
  const player = $("player");
  player.dataset.ready = "true";
  player.dataset.duration = String(player.duration);
});
$("player").addEventListener("timeupdate", () => {
  const t = $("player").currentTime;
  for (const item of $("chapters").children) {
    const active = Number(item.dataset.start) <= t && t < Number(item.dataset.end);
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
        {
          type: "button",
          onclick: () => {
            const player = $("player");
            if (!player.getAttribute("src")) return;
            player.currentTime = c.start;
            player.play().catch(() => {});
          },
        },
        el("span", { class: "time", text: formatDuration(c.start) }),
        el("span", { class: "kind", text: c.kind === "agenda" ? "议程 Agenda" : "发言 Speaker" }),
        el("span", { class: "title", text: c.title }),
      ),
    ),
  );
  $("chapters").replaceChildren(...items);
}

function showParticipants(participants) {
  const items = participants.map((p) =>
    el(
      "li",
      { "data-identity": p.identity },
      el("strong", { text: p.name }),
      " ",
      el("span", { class: "venue-tag", "data-level": p.level || "", text: p.venue_name }),
      el("span", { class: "en", text: ` ${LEVELS[p.level] || ""} · ${p.role}` }),
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
      el("td", { text: `${f.kind === "video" ? "视频 video" : "音频 audio"} · ${f.codec}${f.recovered ? " · 已恢复 recovered" : ""}` }),
      el("td", { text: formatDuration(f.start_offset) }),
      el("td", { text: formatDuration(f.duration) }),
      el("td", { text: f.size ? formatSize(f.size) : "—" }),
      el("td", { class: "hash", title: f.sha256, text: f.sha256 ? `${f.sha256.slice(0, 12)}…` : "" }),
      el(
        "td",
        {},
        f.error
          ? el("span", { class: "en", text: f.error })
          : el("a", { class: "btn small", href: fileUrl(detail, f.name, true), download: f.name, "data-download": f.name, text: "下载 Download" }),
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
  if (!confirm(`删除录像「${current.summary.title}」？ Delete this recording?`)) return;
  try {
    await api("DELETE", `/api/recordings/${encodeURIComponent(current.summary.id)}`);
  } catch (err) {
    showError("detail-error", err);
    return;
  }
  clearTimeout(pollTimer);
  current = null;
  history.replaceState(null, "", location.pathname);
  $("detail-card").hidden = true;
  $("player").removeAttribute("src");
  loadList();
});

// --- start ------------------------------------------------------------------------------------

if (apiKey) {
  loadList().then(() => {
    const id = decodeURIComponent(location.hash.slice(1));
    if (id) openRecording(id);
  });
}
