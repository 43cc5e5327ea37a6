// One incident: facts, timeline and deliveries from the API, re-read whenever the live feed says the
// incident changed; actions are POSTs to the JSON API (CSRF header by Anxin.send).
"use strict";
(function () {
  const {t, local} = Anxin;
  const root = document.getElementById("incident");
  const id = Number(root.dataset.id);
  const TYPES = JSON.parse(root.dataset.types || "{}");
  const CLOSURES = JSON.parse(root.dataset.closures || "{}");
  const OPEN = new Set(["triggered", "acknowledged", "dispatched"]);
  const STATES = {triggered: ["待处理", "triggered"], acknowledged: ["已确认", "acknowledged"],
    dispatched: ["已派警", "dispatched"], resolved: ["已结案", "resolved"], reviewed: ["已复核", "reviewed"]};
  const ACTIONS = {opened: ["事件开启", "opened"], event: ["再次触发", "event again"], notified: ["已通知", "notified"],
    unrouted: ["无匹配路由", "no route"], silenced: ["静默中", "silenced"], silence_bypassed: ["紧急报警不静默", "silence bypassed"],
    postponed: ["推迟", "postponed"], rate_limited: ["限流", "rate limited"], delivery_failed: ["无人送达", "nobody reached"],
    fallback: ["转值班台", "to the duty desk"], unroutable: ["无法派送", "unroutable"],
    channel_failing: ["通道故障", "channel failing"], taken_over: ["接管发送", "sending taken over"],
    device_verified: ["设备已验收", "device verified"], acknowledged: ["确认收到", "acknowledged"],
    dispatched: ["派警", "dispatched"], resolved: ["结案", "resolved"], reviewed: ["复核", "reviewed"],
    note: ["备注", "note"]};
  const DELIVERY = {delivered: ["已送达", "delivered"], sending: ["发送中", "sending"], unknown: ["未知", "unknown"],
    failed: ["未送达", "failed"], permanent: ["无法送达", "refused"]};
  const ROLES = {police: ["公安", "police"], fire: ["消防", "fire"], contractor: ["安保", "contractor"],
    institution: ["机构", "institution"], duty: ["值班台", "duty desk"], drill: ["演练接收", "drill"]};
  const PURPOSES = {notice: ["通道故障提醒", "unreachable-contact notice"],
    "feedback:acknowledged": ["已确认回执", "told: acknowledged"], "feedback:dispatched": ["已派警回执", "told: dispatched"]};
  const pair = (m, key) => (m[key] ? t(m[key][0], m[key][1]) : key);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  };

  function detailText(entry) {
    const d = entry.detail || {};
    const parts = [];
    if (d.guard) parts.push(`${t("保安", "guard")}: ${d.guard}`);
    if (d.closure_code) parts.push(`${t("结案类型", "closure")}: ${pair(CLOSURES, d.closure_code)}`);
    for (const key of ["note", "text"]) if (d[key]) parts.push(String(d[key]));
    if (entry.action === "notified") {
      const roles = (d.roles || []).map((r) => pair(ROLES, r)).join(t("、", ", "));
      const what = d.feedback ? pair(PURPOSES, `feedback:${d.feedback}`)
        : d.notice_for ? `${pair(PURPOSES, "notice")} (${d.notice_for})`
          : t(`第 ${(d.step || 0) + 1} 步`, `step ${(d.step || 0) + 1}`);
      parts.push(t(`${what} ${roles}：送达 ${d.delivered}/${d.targets}`,
        `${what} ${roles}: delivered ${d.delivered}/${d.targets}`));
      if (d.unreached && d.unreached.length) parts.push(`${t("未送达", "not reached")}: ${d.unreached.join(", ")}`);
    }
    if (entry.action === "opened" && d.receivers) {
      parts.push(`${t("接收方", "receivers")}: ${d.receivers.map((r) => pair(ROLES, r)).join(t("、", ", "))}`);
    }
    if (entry.action === "channel_failing" && d.contact) parts.push(d.contact);
    return parts.join(" · ");
  }

  function renderFacts(inc) {
    const sent = inc.timeline.filter((e) => e.action === "dispatched" && e.detail && e.detail.guard);
    const guard = sent.length ? sent[sent.length - 1].detail.guard : "";
    const names = TYPES[inc.type] || [inc.type, inc.type];
    document.getElementById("inc-type").textContent = `#${inc.id} ${names[0]} ${names[1]}`;
    const badges = document.getElementById("inc-badges");
    badges.replaceChildren(el("span", `badge state-${inc.state}`, pair(STATES, inc.state)));
    badges.firstChild.setAttribute("data-testid", "state");
    badges.firstChild.dataset.state = inc.state;
    if (inc.drill) badges.append(" ", el("span", "badge drill", t("演练", "drill")));
    const facts = [
      [t("机构", "Institution"), inc.institution || inc.institution_id || "-"],
      [t("位置", "Room"), inc.room || "-"], [t("设备", "Device"), inc.device_id],
      [t("发生时间", "Opened"), `${local(inc.opened_at)}（${t("北京时间", "Beijing")}）`],
      [t("确认", "Acknowledged"), local(inc.acknowledged_at)],
      [t("派警", "Dispatched"), inc.dispatched_at ? `${local(inc.dispatched_at)}${guard ? " · " + guard : ""}` : "-"],
      [t("结案", "Resolved"), inc.resolved_at ? `${local(inc.resolved_at)} · ${pair(CLOSURES, inc.closure_code)}` : "-"],
      [t("次数", "Events"), String(inc.event_count)]];
    const dl = document.getElementById("inc-facts");
    dl.replaceChildren();
    for (const [k, v] of facts) dl.append(el("dt", "", k), el("dd", "", v));
  }

  function renderTimeline(entries) {
    const ol = document.getElementById("timeline");
    ol.replaceChildren();
    for (const e of entries) {
      const li = el("li", `tl tl-${e.action}`);
      li.setAttribute("data-action", e.action);
      li.append(el("time", "small", local(e.at)), el("strong", "", pair(ACTIONS, e.action)),
        el("span", "muted small", [e.actor, e.channel].filter(Boolean).join(" · ")));
      const text = detailText(e);
      if (text) li.append(el("div", "tl-detail small", text));
      ol.append(li);
    }
  }

  function renderNotifications(list) {
    const body = document.getElementById("notifications");
    body.replaceChildren();
    if (!list.length) {
      const tr = el("tr");
      const td = el("td", "muted", t("尚无通知记录", "No notifications yet"));
      td.colSpan = 6;
      tr.append(td);
      body.append(tr);
    }
    for (const n of list) {
      const tr = el("tr");
      tr.setAttribute("data-contact", n.contact_id);
      tr.setAttribute("data-delivered", String(n.delivered));
      const who = el("td");
      who.append(el("strong", "", n.name), el("span", "muted small", ` ${pair(ROLES, n.role)}`));
      if (n.purpose !== "alarm") who.append(el("div", "small muted", pair(PURPOSES, n.purpose)));
      const status = el("td");
      status.append(el("span", `badge ${n.delivered ? "ok" : (n.status === "sending" ? "warn" : "alarm")}`,
        pair(DELIVERY, n.status)));
      if (n.last_error && !n.delivered) status.append(el("div", "small muted", n.last_error));
      const cells = [who, el("td", "small", n.channels.join(", ")), status, el("td", "", String(n.attempts)),
        el("td", "small", local(n.first_at)), el("td", "small", local(n.delivered_at))];
      const labels = [null, t("渠道", "Channel"), null, t("尝试次数", "Attempts"), t("首次发送", "First sent"),
        t("送达", "Delivered")];
      cells.forEach((c, i) => { if (labels[i]) c.dataset.label = labels[i]; });
      tr.append(...cells);
      body.append(tr);
    }
  }

  function showActions(state) {
    const box = document.getElementById("actions");
    if (!box) return;  // read-only viewer
    const open = OPEN.has(state);
    box.hidden = !open && state !== "resolved";
    document.getElementById("btn-ack").hidden = state !== "triggered";
    document.getElementById("form-dispatch").hidden = !(state === "triggered" || state === "acknowledged");
    document.getElementById("form-resolve").hidden = !open;
  }

  let loading = null;
  async function load() {
    const [inc, notes] = await Promise.all([Anxin.send("GET", `/api/v1/incidents/${id}`),
      Anxin.send("GET", `/api/v1/incidents/${id}/notifications`)]);
    renderFacts(inc);
    renderTimeline(inc.timeline);
    renderNotifications(notes);
    showActions(inc.state);
    root.dataset.state = inc.state;
  }
  function reload() {  // debounced: a burst of feed messages reads once
    clearTimeout(loading);
    loading = setTimeout(() => load().catch(() => {}), 150);
  }

  function fail(e) {
    const box = document.getElementById("action-error");
    box.textContent = e.message;
    box.hidden = false;
  }
  async function act(url, body, form) {
    const box = document.getElementById("action-error");
    box.hidden = true;
    const buttons = form ? form.querySelectorAll("button") : [];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await Anxin.send("POST", url, body);
      if (form) form.reset();
      await load();
    } catch (e) { fail(e); } finally { buttons.forEach((b) => { b.disabled = false; }); }
  }
  const on = (sel, ev, fn) => { const n = document.getElementById(sel); if (n) n.addEventListener(ev, fn); };
  on("btn-ack", "click", () => act(`/api/v1/incidents/${id}/transition`, {to: "acknowledged"}));
  on("form-dispatch", "submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    act(`/api/v1/incidents/${id}/transition`, {to: "dispatched", guard: String(f.get("guard") || "").trim(),
      note: String(f.get("note") || "")}, ev.target);
  });
  on("form-resolve", "submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    act(`/api/v1/incidents/${id}/transition`, {to: "resolved", closure_code: f.get("closure_code"),
      note: String(f.get("note") || "")}, ev.target);
  });
  on("form-note", "submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    act(`/api/v1/incidents/${id}/notes`, {text: String(f.get("text") || "")}, ev.target);
  });

  function feedState(ok) {
    const badge = document.getElementById("feed-state");
    badge.dataset.state = ok ? "connected" : "reconnecting";
    badge.className = `feed-state badge ${ok ? "ok" : "warn"}`;
    badge.textContent = ok ? t("实时连接", "connected") : t("重新连接中", "reconnecting");
  }
  load().catch(fail).finally(() => {
    Anxin.feed(root.dataset.cursor, {incident: (data) => { if (data.incident.id === id) reload(); }}, feedState);
  });
})();
