// Telling the user things: a status banner (connection trouble), short toasts, and a
// translated confirm dialog (window.confirm cannot be translated or styled).

import { h } from "./util.js";
import { t } from "./i18n.js";

/** The banner under the top bar: show(key, kind) / hide(); `autoHideMs` for good news. */
export class Banner {
  constructor(el) {
    this.el = el;
    this.key = null;
    this._timer = null;
  }
  show(key, kind = "warn", autoHideMs = 0) {
    clearTimeout(this._timer);
    this.key = key;
    this.el.dataset.kind = kind;
    this.el.dataset.key = key;
    this.el.textContent = t(key);
    this.el.hidden = false;
    if (autoHideMs) this._timer = setTimeout(() => this.hide(key), autoHideMs);
  }
  /** Hide; with `key`, only if that message is still the one shown. */
  hide(key = null) {
    if (key && this.key !== key) return;
    clearTimeout(this._timer);
    this.key = null;
    this.el.hidden = true;
    delete this.el.dataset.key;
  }
  /** Re-translate after a language switch. */
  refresh() {
    if (this.key) this.el.textContent = t(this.key);
  }
}

/** Short messages in a corner; text is already translated by the caller. */
export class Toasts {
  constructor(el) {
    this.el = el;
  }
  show(text, { kind = "info", ms = 5000, id = null } = {}) {
    const toast = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status", "data-toast": id || kind, text });
    this.el.append(toast);
    while (this.el.children.length > 4) this.el.firstElementChild.remove();
    setTimeout(() => toast.remove(), ms);
    return toast;
  }
}

/** A modal confirm with translated texts; resolves true when confirmed. */
export function confirmDialog(dialog, { title, text, confirm = t("dialog.confirm"), danger = false }) {
  return new Promise((resolve) => {
    dialog.querySelector(".dialog-title").textContent = title;
    dialog.querySelector(".dialog-text").textContent = text;
    const ok = dialog.querySelector(".dialog-confirm");
    const cancel = dialog.querySelector(".dialog-cancel");
    ok.textContent = confirm;
    ok.classList.toggle("danger", danger);
    cancel.textContent = t("dialog.cancel");
    const finish = (value) => {
      ok.removeEventListener("click", onOk);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onOk = () => finish(true);
    const onCancel = (e) => {
      e?.preventDefault?.();
      finish(false);
    };
    ok.addEventListener("click", onOk);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    cancel.focus();
  });
}

/** A modal asking for one line of text (a new display name); resolves the text or null. */
export function promptDialog(dialog, { title, text = "", value = "", confirm = t("dialog.confirm"), maxLength = 64 }) {
  return new Promise((resolve) => {
    dialog.querySelector(".dialog-title").textContent = title;
    dialog.querySelector(".dialog-text").textContent = text;
    const input = dialog.querySelector(".dialog-input");
    const form = dialog.querySelector("form");
    const cancel = dialog.querySelector(".dialog-cancel");
    dialog.querySelector(".dialog-confirm").textContent = confirm;
    cancel.textContent = t("dialog.cancel");
    input.maxLength = maxLength;
    input.value = value;
    const finish = (result) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      resolve(result);
    };
    const onSubmit = (e) => {
      e.preventDefault();
      const entered = input.value.trim();
      if (entered) finish(entered);
    };
    const onCancel = (e) => {
      e?.preventDefault?.();
      finish(null);
    };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    input.select();
  });
}
