// Overview (监管总览): the quarter selector and the ECharts charts. Read-only: this script only draws what the
// page was rendered with (the #charts element's data-chart, already named in the page's language).
"use strict";
(function () {
  const select = document.getElementById("quarter-select");
  if (select) {
    select.addEventListener("change", () => {
      const url = new URL(window.location.href);
      url.searchParams.set("quarter", select.value);
      window.location.assign(url.toString());
    });
  }
  const holder = document.getElementById("charts");
  if (!holder || !window.echarts) return;
  const data = JSON.parse(holder.dataset.chart);
  const empty = holder.dataset.empty;
  const palette = ["#1f6feb", "#b26b00", "#1a7f37", "#8250df", "#0a7ea4", "#d4490f", "#5c6370"];
  // Life-safety alarms red, other alarms orange, device faults and availability slate, environment green.
  const typeColor = (code) => /^alarm\.(panic|smoke|gas)$/.test(code) ? "#c0262d" : code.startsWith("alarm.") ? "#d4490f"
    : code.startsWith("env.") ? "#1a7f37" : code === "test" ? "#0a7ea4" : "#5c7080";
  const closureColor = {open: "#b26b00", real: "#c0262d", false_alarm: "#8c959f", test: "#0a7ea4", drill: "#d4a72c",
    device_fault: "#8250df"};
  const charts = [];
  const phone = () => window.matchMedia("(max-width: 640px)").matches;

  function draw(id, option) {
    const el = document.getElementById(id);
    if (!el) return;
    const chart = echarts.init(el, null, {renderer: "canvas"});
    chart.setOption(Object.assign({color: palette, animation: false}, option));
    charts.push(chart);
  }
  function none(pairs) {
    return pairs.length === 0 ? {title: {text: empty, left: "center", top: "middle",
      textStyle: {color: "#5c6370", fontSize: 14, fontWeight: "normal"}}} : {};
  }

  // By type: horizontal bars, longest first (the API orders them), names readable on a phone.
  const types = data.types.slice().reverse();
  draw("chart-types", Object.assign({
    grid: {left: 8, right: 40, top: 8, bottom: 8, containLabel: true},
    tooltip: {trigger: "item"},
    xAxis: {type: "value", minInterval: 1, show: types.length > 0},
    yAxis: {type: "category", data: types.map((p) => p[1]), axisLabel: {width: phone() ? 90 : 160, overflow: "truncate"},
      show: types.length > 0},
    series: [{type: "bar", label: {show: true, position: "right"}, barMaxWidth: 28,
      data: types.map((p) => ({value: p[2], itemStyle: {color: typeColor(p[0])}}))}],
  }, none(types)));

  // By closure code: a ring with its counts on it, the names in the legend (outer labels get cut on phones).
  draw("chart-closures", Object.assign({
    tooltip: {trigger: "item", formatter: "{b}: {c} ({d}%)"},
    legend: {bottom: 0, type: "scroll"},
    series: [{type: "pie", radius: ["40%", "72%"], center: ["50%", "45%"],
      label: {position: "inside", formatter: "{c}", color: "#fff", fontWeight: "bold", fontSize: 14},
      data: data.closures.map((p) => ({name: p[1], value: p[2], itemStyle: {color: closureColor[p[0]]}}))}],
  }, none(data.closures)));

  // Per institution: real alarms, drill alarms and incidents open now, side by side.
  const inst = data.institutions;
  const rotate = !phone() && inst.names.length > 8 ? 30 : 0;
  draw("chart-institutions", Object.assign({
    tooltip: {trigger: "axis", axisPointer: {type: "shadow"}},
    legend: {top: 0},
    grid: {left: 8, right: 16, top: 36, bottom: 8, containLabel: true},
    xAxis: {type: "category", data: inst.names, axisLabel: {interval: 0, rotate: rotate, width: phone() ? 70 : 140,
      overflow: "truncate"}},
    yAxis: {type: "value", minInterval: 1},
    series: ["alarms", "drill_alarms", "open"].map((key, n) => ({
      name: data.series[key], type: "bar", data: inst[key], barMaxWidth: 36,
      itemStyle: {color: ["#1f6feb", "#d4a72c", "#c0262d"][n]}})),
  }, none(inst.names)));

  let pending = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => charts.forEach((c) => c.resize()));
  });
})();
