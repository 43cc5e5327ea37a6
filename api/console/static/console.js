// Anxin console helpers: CSRF-carrying requests, Beijing time, a live feed that catches up after a drop.
"use strict";
window.Anxin = (function () {
  const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
  const lang = meta("lang") || "zh";
  const t = (zh, en) => (lang === "en" ? en : zh);
  const fmt = new Intl.DateTimeFormat("zh-CN", {timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false});
  function local(iso) {
    if (!iso) return "-";
    const parts = Object.fromEntries(fmt.formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
    return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
  }
  async function send(method, url, body) {
    const headers = {"X-CSRF-Token": meta("csrf-token")};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(url, {method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body)});
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) throw new Error((data && data.detail && (typeof data.detail === "string" ? data.detail :
      JSON.stringify(data.detail))) || `HTTP ${r.status}`);
    return data;
  }
  // The browser's EventSource reconnects by itself and sends Last-Event-ID, so nothing is missed after a
  // drop; `after` is the cursor the page was rendered at, so nothing between render and connect is missed.
  function feed(after, handlers, onState) {
    const url = "/api/v1/feed" + (after ? `?after=${encodeURIComponent(after)}` : "");
    const source = new EventSource(url, {withCredentials: true});
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (ev) => fn(JSON.parse(ev.data), ev.lastEventId));
    }
    source.onopen = () => onState && onState(true);
    source.onerror = () => onState && onState(false);
    return source;
  }
  return {t, lang, local, send, feed, csrf: () => meta("csrf-token")};
})();
