// Micro-suggestions (微建议) on the room page, under the agenda: each agenda item with the
// suggestions on it — every one for the host, co-hosts and moderators, one's own for a
// member — and the form members (and the host and co-hosts) submit with. The server decides
// who sees what; this only shows what the store holds.

import { h, replaceChildren } from "./util.js";
import { errorText, onLangChange, t } from "./i18n.js";

/** The fixed categories (server/rooms/suggestion_rules.py); labels are in i18n. */
export const CATEGORIES = ["economy", "environment", "urban", "livelihood", "education", "governance", "other"];
/** The roles that submit suggestions. */
const SUBMITTERS = new Set(["member", "cohost", "host"]);

function suggestionItem(store, s) {
  return h(
    "li",
    { class: "suggestion", "data-suggestion": s.id, "data-status": s.status },
    h(
      "div",
      { class: "suggestion-meta" },
      h("span", { class: "suggestion-category", "data-category": s.category, text: t(`suggestions.category_${s.category}`) }),
      h("span", { class: "suggestion-who", text: s.name }),
      h("span", { class: "suggestion-status", text: t(`suggestions.status_${s.status}`) }),
    ),
    h("div", { class: "suggestion-title", text: s.title }),
    h("div", { class: "suggestion-body", text: s.body }),
    s.department ? h("div", { class: "suggestion-department", text: t("suggestions.department_shown", { department: s.department }) }) : null,
    s.reply ? h("div", { class: "suggestion-reply", text: t("suggestions.reply_shown", { reply: s.reply }) }) : null,
  );
}

/** The suggestions the store holds, grouped under their agenda item. */
export function renderSuggestions(el, store) {
  const agenda = store.room?.agenda || [];
  const items = agenda.length ? agenda : [{ title: t("suggestions.no_agenda") }];
  const all = [...store.suggestions.values()];
  if (!all.length) {
    replaceChildren(el, h("p", { class: "empty", text: t(store.runsQueues ? "suggestions.empty" : "suggestions.empty_own") }));
    return;
  }
  const groups = items
    .map((item, index) => {
      const here = all.filter((s) => s.agenda_index === index);
      if (!here.length) return null;
      return h(
        "div",
        { class: "suggestion-group", "data-agenda-index": index },
        h("div", { class: "suggestion-group-title", text: t("suggestions.item_heading", { n: index + 1, title: item.title, count: here.length }) }),
        h("ol", { class: "suggestion-list" }, ...here.map((s) => suggestionItem(store, s))),
      );
    })
    .filter(Boolean);
  replaceChildren(el, ...groups);
}

/** Fill a form's agenda items (kept while the agenda is the same) and categories (per language). */
function fillChoices(form, titles, current) {
  const items = titles.length ? titles : [t("suggestions.no_agenda")];
  const select = form.elements.agenda_index;
  const key = items.join("\n");
  if (select.dataset.key !== key) {
    select.dataset.key = key;
    replaceChildren(select, ...items.map((title, index) => h("option", { value: String(index), text: `${index + 1}. ${title}` })));
    select.dataset.touched = "";
  }
  // Until the member picks one, the item is the current one.
  if (!select.dataset.touched) select.value = String(current);
  const category = form.elements.category;
  const lang = t("suggestions.category_other");
  if (category.dataset.lang !== lang) {
    const chosen = category.value;
    category.dataset.lang = lang;
    replaceChildren(category, ...CATEGORIES.map((c) => h("option", { value: c, text: t(`suggestions.category_${c}`) })));
    if (chosen) category.value = chosen;
  }
}

/** In the room: fill the form's choices and show it to those who submit. */
export function prepareSuggestionForm(form, store) {
  form.hidden = !SUBMITTERS.has(store.you?.role) || store.live?.status === "ended";
  fillChoices(form, (store.room?.agenda || []).map((item) => item.title), store.live?.agenda_index ?? 0);
}

/**
 * Before entering (the join page's first screen): a member may submit a suggestion with the
 * link's own token over REST (POST /api/rooms/{id}/suggestions), without joining — the
 * session need not have started. `info` is the join-link check's answer.
 */
export function setupPrejoinSuggestion(details, info, token) {
  if (!info || !SUBMITTERS.has(info.role) || info.status === "ended") return;
  const form = details.querySelector("form");
  const result = form.querySelector(".prejoin-suggestion-result");
  const fill = () => fillChoices(form, info.agenda || [], 0);
  fill();
  onLangChange(fill);
  details.hidden = false;
  bindSuggestionForm(form, async (fields) => {
    result.textContent = "";
    try {
      const response = await fetch(`/api/rooms/${encodeURIComponent(info.room_id)}/suggestions`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify(fields),
      });
      const body = await response.json().catch(() => null);
      if (response.ok) {
        result.dataset.state = "sent";
        result.textContent = t("suggestions.sent");
        return true;
      }
      result.dataset.state = "error";
      result.textContent = errorText(body?.error?.code || "unavailable", body?.error?.message || "");
    } catch {
      result.dataset.state = "error";
      result.textContent = errorText("unavailable", "");
    }
    return false;
  });
}

/** Submit through `submit(fields)` (true when the server took it), then clear the form. */
export function bindSuggestionForm(form, submit) {
  form.elements.agenda_index.addEventListener("change", (e) => {
    e.target.dataset.touched = "1";
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const title = form.elements.title.value.trim();
    const body = form.elements.body.value.trim();
    if (!title || !body) return;
    const fields = {
      agenda_index: Number(form.elements.agenda_index.value),
      category: form.elements.category.value,
      title,
      body,
    };
    // An empty department is left out (the server takes only non-empty ones).
    const department = form.elements.department.value.trim();
    if (department) fields.department = department;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const sent = await submit(fields);
    button.disabled = false;
    if (sent) {
      form.elements.title.value = "";
      form.elements.body.value = "";
      form.elements.department.value = "";
    }
  });
}
