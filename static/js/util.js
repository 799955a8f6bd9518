// Small DOM and formatting helpers shared by every page. No user-visible strings here.

/** The administrative levels, from the top down (the order tiles and groups are shown in). */
export const LEVELS = ["national", "provincial", "city", "county"];

/** Roles that may publish camera and microphone (observers only watch). */
export const PUBLISHING_ROLES = new Set(["host", "cohost", "moderator", "member", "guest"]);

/**
 * Build an element: h("div", {class: "x", "data-id": "1", onclick: fn}, child, "text", [more]).
 * Props starting with "on" become listeners; `hidden`/`disabled`/`checked`/`value` are set as
 * properties; everything else is an attribute. Children may be nodes, strings, arrays or null.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (["hidden", "disabled", "checked", "value", "selected", "muted", "autoplay"].includes(key)) {
      el[key] = value;
    } else if (key === "text") {
      el.textContent = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** The payload of a JWT, decoded without verification (display only; the server decides). */
export function decodeJwtPayload(token) {
  try {
    const part = String(token).split(".")[1];
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/** "m:ss" for a duration in milliseconds (never negative). */
export function formatCountdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const minutes = Math.floor(total / 60);
  const seconds = total % 60;
  return `${minutes}:${String(seconds).padStart(2, "0")}`;
}

/** "HH:MM" in local time for a timestamp in milliseconds. */
export function formatClock(ms) {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

/** One or two characters standing for a person in an avatar. */
export function initials(name) {
  const text = String(name || "?").trim();
  if (!text) return "?";
  // CJK names: the surname (first character); Latin: initials of the first two words.
  if (/[\u3400-\u9fff]/.test(text)) return text.slice(0, 1);
  return text
    .split(/\s+/)
    .slice(0, 2)
    .map((w) => w[0].toUpperCase())
    .join("");
}

/** Read a boolean preference from localStorage. */
export function loadFlag(key, fallback) {
  try {
    const v = localStorage.getItem(key);
    return v === null ? fallback : v === "1";
  } catch {
    return fallback;
  }
}

/** Store a boolean preference in localStorage. */
export function saveFlag(key, value) {
  try {
    localStorage.setItem(key, value ? "1" : "0");
  } catch {
    /* storage may be disabled; the preference just is not remembered */
  }
}

/** A tiny event emitter: on(name, fn) returns an unsubscribe function. */
export class Emitter {
  constructor() {
    this._handlers = new Map();
  }
  on(name, fn) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(fn);
    return () => this._handlers.get(name)?.delete(fn);
  }
  emit(name, ...args) {
    for (const fn of [...(this._handlers.get(name) || [])]) {
      try {
        fn(...args);
      } catch (err) {
        console.error(`handler for ${name} failed`, err);
      }
    }
  }
}
