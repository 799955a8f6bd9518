// The landing page: only translation and the language switch.
import { applyI18n, mountLangSwitch } from "./i18n.js";

applyI18n();
mountLangSwitch(document.getElementById("lang-switch"));
