// My institution page: fills the frame from the summary API, keeps it current from the live feed,
// acknowledges an open alarm in two taps, registers drill windows and device test presses.
"use strict";
(function () {
  const root = document.getElementById("inst");
  if (!root || !root.dataset.institution) return;
  const {t, send, local, feed} = window.Anxin;
  const inst = root.dataset.institution;
  const types = JSON.parse(root.dataset.types);
  const states = JSON.parse(root.dataset.states);
  const canAct = root.dataset.canAct === "yes";
  const $ = (id) => document.getElementById(id);
  const METRIC = {co2: ["二氧化碳", "CO₂"], hcho: ["甲醛", "Formaldehyde"], pm25: ["PM2.5", "PM2.5"],
    temperature: ["温度", "Temperature"], humidity: ["湿度", "Humidity"], battery: ["电量", "Battery"]};
  const STATUS = {online: ["在线", "online", "ok"], offline: ["离线", "offline", "alarm"],
    quiet: ["超 24 小时未上报", "silent 24 h+", "warn"], never: ["未上线", "never seen", "warn"]};
  let summary = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v);
      else if (k === "text") node.textContent = v; else node[k] = v;
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  const tr2 = (pair) => (pair ? t(pair[0], pair[1]) : "");
  const typeName = (type) => tr2(types[type] || [type, type]);
  const stateName = (state) => tr2(states[state] || [state, state]);
  const metricName = (env) => (env.metric === "temperature" && env.limit && env.limit.rule === "fridge")
    ? t("冰箱温度", "Fridge temperature") : tr2(METRIC[env.metric] || [env.metric, env.metric]);
  const short = (iso) => local(iso).slice(5, 16);  // MM-DD HH:MM, Beijing
  const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : String(+v.toFixed(3)));

  // Two taps: the first turns the button into "confirm / cancel", the second does it. While a
  // confirmation waits, live updates wait too (re-rendering would take the button from under the finger).
  let armed = 0;
  function twoTap(label, confirmLabel, testid, action, style = "danger", warning = "") {
    const box = el("span", {class: "two-tap"});
    const first = el("button", {type: "button", class: style, text: label, "data-testid": testid});
    first.addEventListener("click", () => {
      armed = Date.now();
      const yes = el("button", {type: "button", class: "danger", text: confirmLabel, "data-testid": testid + "-confirm"});
      const no = el("button", {type: "button", text: t("取消", "Cancel")});
      const msg = el("span", {class: "small", text: warning});
      yes.addEventListener("click", async () => {
        yes.disabled = true;
        try { await action(); armed = 0; await refresh(); } catch (e) { msg.textContent = e.message; yes.disabled = false; }
      });
      no.addEventListener("click", () => { armed = 0; box.replaceChildren(first); });
      box.replaceChildren(yes, no, msg);
    });
    box.append(first);
    return box;
  }

  function incidentItem(i, open) {
    const head = el("div", {class: "inc-head"},
      el("a", {href: `/console/incidents/${i.id}`, class: "inc-type", text: typeName(i.type)}),
      i.drill ? el("span", {class: "badge drill", text: t("演练", "drill")}) : null,
      el("span", {class: `badge ${i.state === "triggered" ? "alarm" : open ? "warn" : "ok"}`, text: stateName(i.state)}));
    const meta = el("div", {class: "small muted"},
      `${i.room || "-"} · ${i.device_id} · ${local(i.opened_at)} · #${i.id}`);
    const item = el("li", {class: `inc ${i.type.startsWith("alarm.") ? "is-alarm" : ""}`, "data-incident": String(i.id)},
      head, meta);
    if (open && canAct && i.state === "triggered") {
      item.append(twoTap(t("确认 acknowledge", "Acknowledge"), t("确定确认", "Yes, acknowledge"), "ack",
        () => send("POST", `/api/v1/incidents/${i.id}/transition`, {to: "acknowledged"})));
    }
    return item;
  }

  function renderIncidents() {
    const open = summary.open_incidents;
    $("open-list").className = open.length ? "" : "muted";
    $("open-list").replaceChildren(open.length ? el("ul", {class: "inc-list"}, open.map((i) => incidentItem(i, true)))
      : t("没有待处理事件。", "No open incidents."));
    const past = summary.recent_incidents;
    $("past-list").className = past.length ? "" : "muted";
    $("past-list").replaceChildren(past.length ? el("ul", {class: "inc-list"}, past.map((i) => incidentItem(i, false)))
      : t("暂无历史事件。", "No past incidents."));
  }

  function renderEnvironment() {
    const env = summary.environment;
    if (!env.length) {
      $("env-list").className = "muted";
      $("env-list").replaceChildren(t("近 7 天没有读数。", "No readings in the last 7 days."));
      return;
    }
    $("env-list").className = "";
    const rows = env.map((e) => el("tr", {class: e.above_limit ? "over" : ""},
      el("td", {text: e.room || e.device_id}),
      el("td", {}, metricName(e), Date.now() - Date.parse(e.at) > 2 * 3600000  // old: say when, phones too
        ? el("div", {class: "small muted", text: `${t("读数于", "as of")} ${short(e.at)}`}) : null),
      el("td", {class: "num"}, el("strong", {text: fmt(e.value)}), ` ${e.unit}`),
      el("td", {class: "num", text: e.limit ? `≤ ${fmt(e.limit.above)}` : t("无规则", "no rule")}),
      el("td", {}, e.above_limit ? el("span", {class: "badge alarm", text: t("超限", "above")})
        : e.limit ? el("span", {class: "badge ok", text: t("正常", "ok")}) : null),
      el("td", {class: "small muted hide-phone", text: short(e.at)})));
    $("env-list").replaceChildren(el("div", {class: "table-wrap"}, el("table", {class: "env-table"},
      el("thead", {}, el("tr", {}, [t("房间", "Room"), t("指标", "Metric"), t("当前", "Now"), t("限值", "Limit"), "",
        t("时间", "Time")].map((h, n) => el("th", {text: h, class: n === 5 ? "hide-phone" : ""})))),
      el("tbody", {}, rows))));
  }

  function renderDevices() {
    const list = summary.devices.map((d) => {
      const st = STATUS[d.status] || [d.status, d.status, ""];
      const verified = d.verification === "verified";
      // The drill banner that appears says what happens meanwhile and offers to end the window.
      const actions = canAct ? twoTap(t("测试", "Test"), t("开始 10 分钟测试", "Start 10-min test"), "test",
        () => send("POST", "/api/v1/device-tests", {device_id: d.id, minutes: 10}), "",
        t("10 分钟内本园所有报警只发给演练接收人。", "For 10 minutes every alarm here goes to the drill receivers only.")) : null;
      return el("li", {class: "dev", "data-device": d.id},
        el("div", {class: "dev-head"}, el("strong", {text: d.name || d.id}), el("span", {class: "muted", text: d.room}),
          el("span", {class: `badge ${st[2]}`, text: t(st[0], st[1])}),
          el("span", {class: `badge ${verified ? "ok" : "warn"}`, text: verified ? t("已验证", "verified") : t("未验证", "unverified")})),
        el("div", {class: "small muted"},
          `${d.id} · ${t("电量", "battery")} ${d.battery === null ? "-" : Math.round(d.battery) + "%"} · ` +
          `${t("最后上报", "last seen")} ${d.last_seen ? local(d.last_seen) : "-"}` +
          (verified ? ` · ${t("验证于", "verified")} ${local(d.verified_at)}` : "")),
        actions);
    });
    $("device-list").className = "";
    $("device-list").replaceChildren(list.length ? el("ul", {class: "dev-list"}, list) : t("没有登记设备。", "No devices registered."));
  }

  function renderDrills() {
    const banner = $("drill-banner");
    const active = summary.active_drill;
    if (active) {
      banner.hidden = false;
      banner.replaceChildren(
        el("strong", {text: t("演练进行中：本园报警只发给演练接收人，不通知公安和消防。",
          "Drill in progress: this institution's alarms go to the drill receivers only, not to police or fire.")}),
        el("div", {class: "small", text: `${local(active.starts_at)} – ${local(active.ends_at)} ${active.note}`}),
        canAct ? twoTap(t("结束演练", "End drill"), t("确定结束", "Yes, end it"), "end-drill",
          () => send("POST", `/api/v1/drill-windows/${active.id}/end`)) : null);
    } else banner.hidden = true;
    const label = {upcoming: t("待开始", "upcoming"), active: t("进行中", "active"), past: t("已结束", "past")};
    const items = summary.drill_windows.map((w) => el("li", {"data-window": String(w.id)},
      el("span", {class: `badge ${w.state === "active" ? "drill" : w.state === "upcoming" ? "warn" : ""}`, text: label[w.state] || w.state}),
      ` ${local(w.starts_at).slice(0, 16)} – ${local(w.ends_at).slice(11, 16)} `,
      el("span", {class: "muted", text: w.note}),
      canAct && w.state === "upcoming" ? twoTap(t("取消", "Cancel"), t("确定取消", "Yes, cancel"), "cancel-drill",
        () => send("POST", `/api/v1/drill-windows/${w.id}/end`), "") : null));
    $("drill-list").replaceChildren(items.length ? el("ul", {class: "drill-list"}, items)
      : el("p", {class: "muted small", text: t("近 90 天没有演练时段。", "No drill windows in the last 90 days.")}));
    $("receivers-note").textContent = summary.drill_receivers ? t(`本园有 ${summary.drill_receivers} 个演练接收人。`,
      `${summary.drill_receivers} drill receiver(s) serve this institution.`)
      : t("注意：本园没有演练接收人，测试按键无法验证设备（请管理员添加 drill 角色联系人）。",
        "Note: no drill receiver serves this institution, so a test press cannot verify a device (ask the administrator for a contact with the drill role).");
    $("receivers-note").className = summary.drill_receivers ? "small" : "small note bad";
  }

  // Charts ------------------------------------------------------------------------------------------
  let chart = null;
  function renderSeriesChoice() {
    const select = $("chart-series");
    const before = select.value;
    const options = summary.environment.map((e) => el("option", {value: `${e.device_id}|${e.metric}`,
      text: `${e.room || e.device_id} · ${metricName(e)}`}));
    select.replaceChildren(...options);
    if (before && options.some((o) => o.value === before)) select.value = before;
    if (!options.length) {
      $("chart-note").textContent = t("没有可画的读数。", "No readings to draw.");
    }
  }
  async function drawChart() {
    const choice = $("chart-series").value;
    if (!choice || !window.echarts) return;
    const [device, metric] = choice.split("|");
    const hours = $("chart-hours").value;
    const [data] = await send("GET", `/api/v1/readings/${encodeURIComponent(device)}?metric=${metric}&hours=${hours}`);
    chart = chart || window.echarts.init($("chart"));
    const limit = data.limit;
    chart.setOption({
      animation: false, grid: {left: 48, right: 16, top: 24, bottom: 32},
      tooltip: {trigger: "axis", formatter: (ps) => `${local(new Date(ps[0].value[0]).toISOString())}<br>` +
        `${fmt(ps[0].value[1])} ${data.unit}`},
      xAxis: {type: "time", axisLabel: {hideOverlap: true,
        formatter: (v) => local(new Date(v).toISOString()).slice(hours > 24 ? 5 : 11, 16)}},
      yAxis: {type: "value", name: data.unit, scale: true,
        max: limit ? (v) => Math.max(v.max, limit.above * 1.1) : null},
      series: [{type: "line", showSymbol: false, data: data.points.map((p) => [Date.parse(p.at), p.value]),
        markLine: limit ? {symbol: "none", lineStyle: {color: "#c0262d", type: "dashed"},
          label: {formatter: `${t("限值", "limit")} ${fmt(limit.above)}`, position: "insideEndTop"},
          data: [{yAxis: limit.above}]} : undefined}],
    }, true);
    $("chart").dataset.points = String(data.points.length);
    $("chart-note").textContent = (data.points.length ? "" : t("此范围内没有读数。", "No readings in this range.") + " ") +
      (limit ? t(`红线：规则 ${limit.rule} 的限值（${limit.statistic}，${Math.round(limit.window_s / 60)} 分钟窗口）。北京时间。`,
        `Red line: limit of rule ${limit.rule} (${limit.statistic} over ${Math.round(limit.window_s / 60)} min). Beijing time.`)
        : t("该指标没有阈值规则。北京时间。", "No threshold rule for this metric. Beijing time."));
  }
  $("chart-series").addEventListener("change", () => drawChart().catch(showError));
  $("chart-hours").addEventListener("change", () => drawChart().catch(showError));
  window.addEventListener("resize", () => chart && chart.resize());

  // Drill form ----------------------------------------------------------------------------------------
  const form = $("drill-form");
  const beijingInput = (d) => local(d.toISOString()).replace(" ", "T").slice(0, 16);
  if (form) {
    const start = new Date(Math.ceil((Date.now() + 10 * 60000) / 900000) * 900000);
    form.starts_at.value = beijingInput(start);
    form.ends_at.value = beijingInput(new Date(start.getTime() + 3600000));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const msg = $("drill-msg");
      msg.className = "small";
      try {
        const w = await send("POST", "/api/v1/drill-windows", {institution_id: inst, starts_at: form.starts_at.value,
          ends_at: form.ends_at.value, note: form.note.value});
        msg.textContent = t(`已登记：${local(w.starts_at)} – ${local(w.ends_at)}`, `Registered: ${local(w.starts_at)} – ${local(w.ends_at)}`);
        msg.classList.add("note");
        await refresh();
      } catch (e) { msg.textContent = e.message; msg.classList.add("note", "bad"); }
    });
  }

  function showError(e) { $("live").textContent = e.message; $("live").className = "badge alarm"; }

  async function refresh() {
    summary = await send("GET", `/api/v1/institution-summary/${encodeURIComponent(inst)}`);
    $("inst-name").textContent = t(summary.name, summary.name_en || summary.name);
    renderIncidents(); renderEnvironment(); renderDevices(); renderDrills(); renderSeriesChoice();
    await drawChart();
  }
  let pending = null;
  function soon() {
    clearTimeout(pending);
    const waiting = armed && Date.now() - armed < 60000;
    pending = setTimeout(() => (waiting ? soon() : refresh().catch(showError)), waiting ? 1000 : 300);
  }

  refresh().catch(showError).finally(() => {
    feed(root.dataset.cursor, {incident: soon, device: soon}, (up) => {
      $("live").textContent = up ? t("实时", "live") : t("重连中", "reconnecting");
      $("live").className = `badge ${up ? "ok" : "warn"}`;
    });
    setInterval(soon, 60000);  // readings have no feed event
  });
})();
