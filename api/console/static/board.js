// The contractor's live board: open incidents from /api/v1/board, then the live feed from the cursor the
// page was rendered at. A new life-safety alarm flashes a red banner and changes the title at once, and
// beeps when sound is enabled (browsers allow audio only after a click: the "enable sound" toggle).
"use strict";
(function () {
  const {t, local} = Anxin;
  const root = document.getElementById("board");
  const TYPES = JSON.parse(root.dataset.types || "{}");
  const LIFE = new Set(JSON.parse(root.dataset.lifeSafety || "[]"));
  const OPEN = new Set(["triggered", "acknowledged", "dispatched"]);
  const STATES = {triggered: ["待处理", "triggered"], acknowledged: ["已确认", "acknowledged"],
    dispatched: ["已派警", "dispatched"], resolved: ["已结案", "resolved"], reviewed: ["已复核", "reviewed"]};
  const DELIVERY = {delivered: ["已送达", "delivered"], sending: ["发送中", "sending"], unknown: ["未知", "unknown"],
    failed: ["未送达", "failed"], permanent: ["无法送达", "refused"]};
  const ROLES = {police: ["公安", "police"], fire: ["消防", "fire"], contractor: ["安保", "contractor"],
    institution: ["机构", "institution"], duty: ["值班台", "duty desk"], drill: ["演练接收", "drill"]};
  const incidents = new Map();
  const baseTitle = document.title;
  let audio = null;
  let beepTimer = null;
  let cues = 0;

  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const pair = (m, key) => (m[key] ? t(m[key][0], m[key][1]) : key);
  function age(iso) {
    const s = Math.max(0, Math.floor((Date.now() - new Date(iso).getTime()) / 1000));
    if (s < 60) return t(`${s} 秒`, `${s} s`);
    const m = Math.floor(s / 60);
    if (m < 60) return t(`${m} 分 ${s % 60} 秒`, `${m} min ${s % 60} s`);
    const h = Math.floor(m / 60);
    if (h < 48) return t(`${h} 小时 ${m % 60} 分`, `${h} h ${m % 60} min`);
    return t(`${Math.floor(h / 24)} 天`, `${Math.floor(h / 24)} d`);
  }

  function order(a, b) {
    if (a.life_safety !== b.life_safety) return a.life_safety ? -1 : 1;
    return new Date(a.opened_at) - new Date(b.opened_at) || a.id - b.id;
  }

  function card(inc) {
    const c = el("article", "inc" + (inc.life_safety ? " life" : "") + (inc.drill ? " drill" : "") +
      (inc.state === "triggered" ? " fresh" : ""));
    c.dataset.id = inc.id;
    c.dataset.testid = "incident";
    c.setAttribute("data-testid", "incident");
    c.setAttribute("data-state", inc.state);
    c.setAttribute("data-institution", inc.institution_id || "");
    const head = el("div", "inc-head");
    const link = el("a", "inc-type");
    link.href = `/console/incidents/${inc.id}`;
    link.append(el("span", "zh", inc.type_zh), " ", el("span", "en", inc.type_en));
    head.append(link);
    if (inc.drill) head.append(el("span", "badge drill", t("演练", "drill")));
    head.append(el("span", `badge state-${inc.state}`, pair(STATES, inc.state)));
    c.append(head);
    const where = el("div", "inc-where");
    where.append(el("strong", "", inc.institution || inc.institution_id || t("未知机构", "unknown institution")),
      el("span", "", ` · ${inc.room || "-"} · `), el("span", "muted", inc.device_id));
    c.append(where);
    const when = el("div", "inc-when small");
    when.append(el("span", "", `${t("发生", "Opened")} ${local(inc.opened_at)}`), " · ",
      el("span", "age", age(inc.opened_at)), " · ", el("span", "muted", `#${inc.id}`));
    when.querySelector(".age").dataset.opened = inc.opened_at;
    c.append(when);
    if (inc.guard) c.append(el("div", "inc-guard small", `${t("派警", "Guard")}: ${inc.guard}`));
    const who = el("ul", "inc-notified");
    const alarm = (inc.notifications || []).filter((n) => n.purpose === "alarm");  // not notices, feedback
    if (!alarm.length) who.append(el("li", "muted small", t("尚无通知记录", "no notifications yet")));
    for (const n of alarm) {
      const li = el("li", `chip ${n.status}`);
      li.title = `${n.channels.join(", ")} · ${pair(DELIVERY, n.status)}${n.last_error ? " · " + n.last_error : ""}`;
      li.append(el("span", "mark", n.delivered ? "✓" : (n.status === "sending" ? "…" : "✗")), " ",
        el("span", "", n.name), el("span", "muted", ` ${pair(ROLES, n.role)}`));
      li.setAttribute("data-delivered", String(n.delivered));
      who.append(li);
    }
    c.append(who);
    return c;
  }

  function render() {
    const list = [...incidents.values()].filter((i) => OPEN.has(i.state)).sort(order);
    root.replaceChildren();
    if (!list.length) root.append(el("p", "empty muted", t("没有未处理的事件", "No open incidents")));
    for (const inc of list) root.append(card(inc));
    const life = list.filter((i) => i.life_safety).length;
    document.getElementById("board-counts").textContent =
      t(`未处理 ${list.length} 起，其中紧急 ${life} 起`, `${list.length} open, ${life} life-safety`);
  }

  // -- the cue -------------------------------------------------------------------------------------
  function beep() {
    if (!audio || audio.state !== "running") return;
    const now = audio.currentTime;
    for (let i = 0; i < 3; i++) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = "square";
      osc.frequency.value = i % 2 ? 660 : 880;
      gain.gain.setValueAtTime(0.25, now + i * 0.25);
      gain.gain.setValueAtTime(0, now + i * 0.25 + 0.2);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + i * 0.25);
      osc.stop(now + i * 0.25 + 0.22);
    }
  }
  function cue(inc) {
    cues += 1;
    const banner = document.getElementById("alarm-banner");
    const place = `${inc.institution || inc.institution_id || ""} ${inc.room || inc.device_id}`;
    banner.querySelector(".alarm-text").textContent =
      `${t("新的紧急报警", "NEW LIFE-SAFETY ALARM")}：${inc.type_zh} ${inc.type_en} · ${place} · ${local(inc.opened_at)}`;
    banner.hidden = false;
    banner.classList.remove("flash");
    void banner.offsetWidth;  // restart the animation for a second alarm
    banner.classList.add("flash");
    document.title = `🔴 ${t("紧急报警", "ALARM")} · ${inc.type_zh} · ${place}`;
    document.body.dataset.alarmCues = String(cues);
    beep();
    if (beepTimer === null) beepTimer = setInterval(beep, 4000);  // until someone dismisses the banner
  }
  document.querySelector(".alarm-dismiss").addEventListener("click", () => {
    document.getElementById("alarm-banner").hidden = true;
    document.title = baseTitle;
    clearInterval(beepTimer);
    beepTimer = null;
  });
  const toggle = document.getElementById("sound-toggle");
  toggle.addEventListener("click", async () => {
    const on = toggle.getAttribute("aria-pressed") === "true";
    if (on) {
      if (audio) await audio.suspend();
      toggle.setAttribute("aria-pressed", "false");
      toggle.textContent = t("启用声音", "Enable sound");
      return;
    }
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    await audio.resume();
    toggle.setAttribute("aria-pressed", "true");
    toggle.textContent = t("声音已启用", "Sound on");
    beep();  // so the operator hears what an alarm sounds like
  });

  // -- data ----------------------------------------------------------------------------------------
  const pending = new Map();
  function refreshNotifications(id) {  // after a delivery round: who was reached (debounced per incident)
    clearTimeout(pending.get(id));
    pending.set(id, setTimeout(async () => {
      pending.delete(id);
      try {
        const list = await Anxin.send("GET", `/api/v1/incidents/${id}/notifications`);
        const inc = incidents.get(id);
        if (inc) { inc.notifications = list; render(); }
      } catch (e) { /* gone out of scope or resolved: the feed says so */ }
    }, 300));
  }

  const cued = new Set();
  function onIncident(data) {
    const inc = data.incident;
    const entry = data.entry;
    const known = incidents.get(inc.id);
    const names = TYPES[inc.type] || [inc.type, inc.type];
    let row = known;
    if (!known || entry.id > known.last_entry_id) {  // else a repeat after a reconnect, or older than the load
      row = Object.assign(known || {notifications: [], guard: ""}, inc, {
        type_zh: names[0], type_en: names[1], life_safety: LIFE.has(inc.type), last_entry_id: entry.id});
      if (entry.action === "dispatched" && entry.detail && entry.detail.guard) row.guard = entry.detail.guard;
      incidents.set(inc.id, row);
      render();
      refreshNotifications(inc.id);
    }
    // The feed starts where the page was rendered, so every alarm opened since comes with its "opened"
    // entry, even one the board's first load already showed: that is the one cue per alarm.
    if (entry.action === "opened" && LIFE.has(inc.type) && OPEN.has(row.state) && !cued.has(inc.id)) {
      cued.add(inc.id);
      cue(row);
    }
  }

  function feedState(ok) {
    const badge = document.getElementById("feed-state");
    badge.dataset.state = ok ? "connected" : "reconnecting";
    badge.className = `feed-state badge ${ok ? "ok" : "warn"}`;
    badge.textContent = ok ? t("实时连接", "connected") : t("重新连接中", "reconnecting");
  }

  // Every 30 s the board is read again and merged: a safety net for anything the feed did not bring (a
  // row committed out of id order on PostgreSQL, say). An open life-safety alarm seen only then still
  // gets its cue.
  async function reconcile(first) {
    const before = new Set(incidents.keys());
    const data = await Anxin.send("GET", "/api/v1/board");
    const fresh = new Set();
    for (const inc of data.incidents) {
      fresh.add(inc.id);
      const known = incidents.get(inc.id);
      if (!known || inc.last_entry_id >= known.last_entry_id) incidents.set(inc.id, inc);
      if (!first && !known && inc.life_safety && inc.state === "triggered" && !cued.has(inc.id)) {
        cued.add(inc.id);
        cue(inc);
      }
    }
    for (const id of before) if (!fresh.has(id)) incidents.delete(id);  // closed meanwhile
    render();
  }

  async function start() {
    try {
      await reconcile(true);
    } catch (e) {
      root.replaceChildren(el("p", "note bad", `${t("看板加载失败", "Could not load the board")}: ${e.message}`));
    }
    Anxin.feed(root.dataset.cursor, {incident: onIncident}, feedState);
    setInterval(() => reconcile(false).catch(() => {}), 30000);
  }
  setInterval(() => {
    for (const a of root.querySelectorAll(".age")) a.textContent = age(a.dataset.opened);
  }, 1000);
  start();
})();
