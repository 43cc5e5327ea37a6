// Administration pages: every form and button sends JSON to the API (Anxin.send adds the CSRF header),
// shows the API's answer where it was asked, and reloads the page after a change.
"use strict";
(function () {
  const t = Anxin.t;
  const status = document.getElementById("admin-status");

  // The API's 422 detail is a list of {loc, msg}: one line per field, without pydantic's prefixes.
  function readable(err) {
    let detail;
    try { detail = JSON.parse(err.message); } catch (e) { return err.message; }
    if (!Array.isArray(detail)) return String(detail);
    return detail.map((d) => {
      const field = (d.loc || []).filter((x) => x !== "body").join(".");
      const msg = String(d.msg || "").replace(/^Value error, /, "");
      return field ? `${field}: ${msg}` : msg;
    }).join("\n");
  }

  function done(message) {
    sessionStorage.setItem("anxin-admin-status", message);
    window.location.reload();
  }
  // Phones stack table rows into cards (console.css table.stack): each cell gets its column's name.
  for (const table of document.querySelectorAll("table.stack")) {
    const names = Array.from(table.querySelectorAll("thead th")).map((th) => th.textContent.trim());
    for (const tr of table.querySelectorAll("tbody tr")) {
      Array.from(tr.children).forEach((td, i) => { if (names[i] && td.colSpan === 1) td.dataset.label = names[i]; });
    }
  }

  const saved = sessionStorage.getItem("anxin-admin-status");
  if (saved && status) {
    status.textContent = saved;
    status.hidden = false;
    sessionStorage.removeItem("anxin-admin-status");
  }

  function fieldsOf(form) {
    return Array.from(form.elements).filter((el) => el.name && !el.disabled && !("notSent" in el.dataset));
  }

  function bodyOf(form) {
    const body = {};
    for (const el of fieldsOf(form)) {
      if (el.type === "checkbox") { body[el.name] = el.checked; continue; }
      if (el.tagName === "SELECT" && el.multiple) {
        body[el.name] = Array.from(el.selectedOptions).map((o) => o.value);
        continue;
      }
      const value = el.value.trim();
      if (value === "" && "skipEmpty" in el.dataset) continue; // write-only secret left empty: kept
      if (value === "" && "nullEmpty" in el.dataset) { body[el.name] = null; continue; }
      if (value === "" && form.dataset.method === "POST" && !el.required) continue; // the API's default
      body[el.name] = value;
    }
    return body;
  }

  function showError(form, message) {
    const box = form.querySelector(".form-error");
    box.textContent = message;
    box.hidden = !message;
  }

  for (const form of document.querySelectorAll("form[data-api], form[data-card]")) {
    form.dataset.createApi = form.dataset.api || "";
    form.dataset.createMethod = form.dataset.method || "POST";
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      showError(form, "");
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const result = await Anxin.send(form.dataset.method, form.dataset.api, bodyOf(form));
        if (form.dataset.show && result && result[form.dataset.show]) { // a key shown once: no reload
          const box = form.querySelector(".shown-once");
          box.querySelector(".secret").textContent = result[form.dataset.show];
          box.hidden = false;
          form.reset();
          return;
        }
        done(t("已保存", "Saved"));
      } catch (err) {
        showError(form, readable(err));
      } finally {
        button.disabled = false;
      }
    });
    const cancel = form.querySelector(".cancel-edit");
    if (cancel) cancel.addEventListener("click", () => toCreate(form));
  }

  function title(form) {
    return form.closest("section") && form.closest("section").querySelector(".form-title");
  }

  function toCreate(form) {
    form.reset();
    form.dataset.api = form.dataset.createApi;
    form.dataset.method = form.dataset.createMethod;
    for (const el of form.querySelectorAll("[data-create-only]")) {
      el.disabled = false;
      const label = el.closest("label");
      if (label) label.hidden = false;
    }
    form.querySelector(".cancel-edit").hidden = true;
    const h = title(form);
    if (h) h.textContent = h.dataset.create;
    if (form.dataset.card) document.getElementById(form.dataset.card).hidden = true;
    showError(form, "");
  }

  // "Edit" fills the form with the row and points it at the row's URL.
  for (const button of document.querySelectorAll("button[data-edit]")) {
    button.addEventListener("click", () => {
      const form = document.getElementById(button.dataset.edit);
      const row = JSON.parse(button.dataset.row);
      form.reset();
      form.dataset.api = button.dataset.url;
      form.dataset.method = button.dataset.method || "PATCH";
      for (const el of fieldsOf(form).concat(Array.from(form.querySelectorAll("[data-create-only]")))) {
        const value = row[el.name];
        if (el.tagName === "SELECT" && el.multiple) {
          const chosen = new Set(value || []);
          for (const o of el.options) o.selected = chosen.has(o.value);
        } else if (value !== undefined) {
          el.value = value === null ? "" : value;
        }
      }
      for (const el of form.querySelectorAll("[data-create-only]")) {
        el.disabled = true; // ids and initial passwords are not changed here
        const label = el.closest("label");
        if (label && el.type !== "text") label.hidden = true;
      }
      const cancel = form.querySelector(".cancel-edit");
      if (cancel) cancel.hidden = false;
      const h = title(form);
      if (h) h.textContent = `${h.dataset.edit}: ${row.id || row.username || row.name || ""}`;
      if (form.dataset.card) document.getElementById(form.dataset.card).hidden = false;
      showError(form, "");
      form.scrollIntoView({behavior: "smooth", block: "start"});
      const first = fieldsOf(form).find((el) => !el.readOnly && el.type !== "hidden");
      if (first) first.focus({preventScroll: true});
    });
  }

  // Delete, disable, revoke, replay: one request, after a confirmation when the button asks for one.
  for (const button of document.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", async () => {
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      button.disabled = true;
      try {
        const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
        const result = await Anxin.send(button.dataset.method, button.dataset.action, body);
        done(result && result.message ? result.message : t("已完成", "Done"));
      } catch (err) {
        status.textContent = readable(err);
        status.hidden = false;
        status.classList.add("bad");
        status.scrollIntoView({behavior: "smooth", block: "start"});
        button.disabled = false;
      }
    });
  }
})();
