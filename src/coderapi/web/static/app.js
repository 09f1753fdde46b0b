// coderapi dashboard: small progressive enhancements (the pages work without them).
(function () {
  "use strict";
  const PLAYGROUND_KEYS = "coderapi.playgroundKeys"; // sessionStorage: this tab only

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } finally { area.remove(); }
    return Promise.resolve();
  }

  function copySource(button) {
    const spec = button.getAttribute("data-copy-from");
    if (spec === "next") return button.nextElementSibling;
    return document.querySelector(spec);
  }

  function flashLabel(button, text) {
    const label = button.querySelector("span") || button;
    const before = label.textContent;
    label.textContent = text;
    button.classList.add("copied");
    setTimeout(() => { label.textContent = before; button.classList.remove("copied"); }, 1600);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy-from]");
    if (!button) return;
    const source = copySource(button);
    if (!source) return;
    copyText(source.textContent.trim()).then(() => flashLabel(button, "Copied!"), () => flashLabel(button, "Press Ctrl+C"));
  });

  // Confirmation dialog for destructive forms (delete a key).
  const dialog = document.getElementById("confirm-dialog");
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const question = form.getAttribute("data-confirm");
    if (!question || form.dataset.confirmed === "yes") return;
    event.preventDefault();
    if (!dialog || typeof dialog.showModal !== "function") {
      if (window.confirm(question)) { form.dataset.confirmed = "yes"; form.requestSubmit(); }
      return;
    }
    dialog.querySelector(".dialog-text").textContent = question;
    dialog.returnValue = "";
    dialog.onclose = () => {
      if (dialog.returnValue === "confirm") { form.dataset.confirmed = "yes"; form.requestSubmit(); }
    };
    dialog.showModal();
  });

  // Tabs.
  document.querySelectorAll("[data-tabs]").forEach((tabs) => {
    tabs.addEventListener("click", (event) => {
      const tab = event.target.closest("[data-tab]");
      if (!tab || !tabs.contains(tab)) return;
      const name = tab.getAttribute("data-tab");
      tabs.querySelectorAll(":scope > .tab-list > [data-tab]").forEach((t) => t.classList.toggle("active", t === tab));
      tabs.querySelectorAll(":scope > [data-panel]").forEach((p) => p.classList.toggle("active", p.getAttribute("data-panel") === name));
    });
  });

  // Key creation: show the scopes of the chosen kind only.
  const createForm = document.getElementById("create-key-form");
  if (createForm) {
    const sync = () => {
      const kind = (createForm.querySelector("input[name=kind]:checked") || {}).value || "inference";
      createForm.querySelectorAll(".scopes").forEach((set) => {
        const shown = set.getAttribute("data-kind") === kind;
        set.hidden = !shown;
        set.disabled = !shown;
      });
    };
    createForm.addEventListener("change", sync);
    sync();
  }

  // "Use in the Playground": keep the new secret in this tab's sessionStorage, never on the server.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-remember-key]");
    if (!button) return;
    const secret = document.querySelector(button.getAttribute("data-remember-key")).textContent.trim();
    const prefix = button.getAttribute("data-prefix");
    let saved = [];
    try { saved = JSON.parse(sessionStorage.getItem(PLAYGROUND_KEYS) || "[]"); } catch (e) { saved = []; }
    saved = saved.filter((k) => k.prefix !== prefix);
    saved.unshift({ prefix: prefix, name: button.getAttribute("data-name") || "", secret: secret });
    sessionStorage.setItem(PLAYGROUND_KEYS, JSON.stringify(saved));
    window.location.href = "/playground?key=" + encodeURIComponent(prefix);
  });

  // Rename: one editor open at a time, focused.
  document.querySelectorAll("details.inline-edit").forEach((details) => {
    details.addEventListener("toggle", () => {
      if (!details.open) return;
      document.querySelectorAll("details.inline-edit[open]").forEach((d) => { if (d !== details) d.open = false; });
      const input = details.querySelector("input[name=name]");
      if (input) { input.focus(); input.select(); }
    });
  });

  // Dismiss a flash message by clicking it.
  document.querySelectorAll(".alert[data-autohide]").forEach((alert) => {
    alert.addEventListener("click", () => alert.remove());
  });

  // Period picker "custom": show the date inputs.
  document.querySelectorAll("[data-period-form]").forEach((form) => {
    const select = form.querySelector("select[name=period]");
    const custom = form.querySelector(".custom-range");
    if (!select || !custom) return;
    const sync = () => { custom.hidden = select.value !== "custom"; };
    select.addEventListener("change", () => { sync(); if (select.value !== "custom") form.requestSubmit(); });
    sync();
  });
})();
