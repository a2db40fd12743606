// The console's own script: Monitoring charts (uPlot) and following a log live (EventSource).
// Every value from the server is set as text, never as HTML.
"use strict";

const COLORS = ["#2f5bd3", "#e4572e", "#17a398", "#f3a712", "#8e44ad", "#33658a", "#a23b72"];

const CHARTS = [
  { title: "Request rate (requests/s)", series: [["requests_per_second", "", 1]] },
  { title: "Success rate (%)", series: [["success_rate", "", 100]], range: [0, 100] },
  {
    title: "Latency (ms)",
    series: [["latency_p50_seconds", " p50", 1000], ["latency_p95_seconds", " p95", 1000], ["latency_p99_seconds", " p99", 1000]],
  },
  { title: "In progress", series: [["in_progress", "", 1]] },
  { title: "CPU (%)", series: [["cpu_percent", "", 1]] },
  { title: "Memory (MiB)", series: [["memory_rss_bytes", "", 1 / 1048576]] },
  { title: "GPU utilisation (%)", series: [["gpu_utilization_percent", "", 1]], absent: "No GPU readings: none is present." },
  { title: "GPU memory (MiB)", series: [["gpu_memory_bytes", "", 1 / 1048576]], absent: "No GPU readings: none is present." },
];

function element(tag, attributes, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function scaled(values, factor) {
  return values.map((v) => (v === null || v === undefined ? null : v * factor));
}

function format(value, digits) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
}

function startMonitoring(root) {
  const chartsBox = document.getElementById("charts");
  const range = document.getElementById("metrics-range");
  const updated = document.getElementById("metrics-updated");
  const plots = new Map();

  function totalsTable(totals) {
    const table = element("table", { id: "metrics-totals", class: "list" });
    const head = element("tr");
    for (const name of ["Revision", "Requests", "2xx", "5xx", "Success", "p50 ms", "p95 ms", "p99 ms"]) {
      head.appendChild(element("th", {}, name));
    }
    table.appendChild(element("thead")).appendChild(head);
    const body = table.appendChild(element("tbody"));
    for (const [revision, t] of Object.entries(totals)) {
      const row = element("tr", { "data-revision": revision });
      row.appendChild(element("td", {}, revision));
      row.appendChild(element("td", { "data-metric": "requests" }, String(t.requests)));
      row.appendChild(element("td", {}, String(t["2xx"])));
      row.appendChild(element("td", {}, String(t["5xx"])));
      row.appendChild(element("td", {}, t.success_rate === null ? "—" : format(t.success_rate * 100, 2) + "%"));
      for (const q of ["p50", "p95", "p99"]) {
        const seconds = t["latency_" + q + "_seconds"];
        row.appendChild(element("td", {}, seconds === null ? "—" : format(seconds * 1000, 1)));
      }
      body.appendChild(row);
    }
    return table;
  }

  function draw(answer) {
    const revisions = Object.keys(answer.revisions);
    const old = document.getElementById("metrics-totals");
    const totals = totalsTable(answer.totals);
    if (old) old.replaceWith(totals);
    else root.insertBefore(totals, chartsBox);
    const width = Math.max(chartsBox.clientWidth / (chartsBox.clientWidth > 1200 ? 2 : 1) - 30, 400);
    for (const chart of CHARTS) {
      const series = [{}];
      const data = [answer.t];
      revisions.forEach((revision, i) => {
        for (const [key, suffix, factor] of chart.series) {
          const values = answer.revisions[revision][key];
          if (!values) continue;
          series.push({ label: revision + suffix, stroke: COLORS[i % COLORS.length], width: suffix === " p99" ? 2 : 1.5, dash: suffix === " p95" ? [6, 4] : suffix === " p50" ? [2, 3] : undefined, spanGaps: false });
          data.push(scaled(values, factor));
        }
      });
      let box = plots.get(chart.title);
      const signature = series.map((s) => s.label || "").join("|");
      if (!box) {
        box = { node: element("div", { class: "chart", "data-chart": chart.title }), plot: null, signature: "" };
        box.node.appendChild(element("h3", {}, chart.title));
        chartsBox.appendChild(box.node);
        plots.set(chart.title, box);
      }
      if (series.length === 1) {
        if (box.plot) { box.plot.destroy(); box.plot = null; }
        if (!box.node.querySelector(".none")) box.node.appendChild(element("div", { class: "none" }, chart.absent || "No data in this range yet."));
        box.signature = "";
        continue;
      }
      const none = box.node.querySelector(".none");
      if (none) none.remove();
      if (box.plot && box.signature === signature) {
        box.plot.setData(data);
        continue;
      }
      if (box.plot) box.plot.destroy();
      const scales = { x: { time: true } };
      if (chart.range) scales.y = { range: chart.range };
      box.plot = new uPlot({ width: width, height: 220, series: series, scales: scales, axes: [{}, { size: 60 }] }, data, box.node);
      box.signature = signature;
    }
    updated.textContent = "Updated " + new Date().toLocaleTimeString();
  }

  async function refresh() {
    const url = root.dataset.metricsUrl + "?since=" + encodeURIComponent(range.value) + "&step=" + (range.value === "24h" ? 60 : 10);
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || response.statusText);
      draw(answer);
    } catch (error) {
      updated.textContent = "Could not load metrics: " + error.message;
    }
  }

  range.addEventListener("change", refresh);
  refresh();
  setInterval(refresh, 10000);
}

function startFollowing(button) {
  let source = null;
  button.addEventListener("click", () => {
    if (source) {
      source.close();
      source = null;
      button.textContent = "Follow";
      button.classList.remove("following");
      return;
    }
    const form = button.form;
    const params = new URLSearchParams({ follow: "true", since: (Date.now() / 1000).toFixed(3) });
    for (const name of ["pattern", "revision"]) {
      const value = form.elements[name].value.trim();
      if (value) params.set(name, value);
    }
    source = new EventSource(button.dataset.followUrl + "?" + params.toString());
    button.textContent = "Stop following";
    button.classList.add("following");
    source.addEventListener("log", (event) => {
      const line = JSON.parse(event.data);
      const body = document.getElementById("log-body");
      if (!body) return;
      const empty = body.querySelector("tr.none");
      if (empty) empty.remove();
      const row = element("tr", { class: "followed" });
      row.appendChild(element("td", { class: "time" }, line.time));
      row.appendChild(element("td", {}, line.revision));
      row.appendChild(element("td", {}, line.stream));
      row.appendChild(element("td", { class: "line" }, line.line));
      body.appendChild(row);
      row.scrollIntoView({ block: "nearest" });
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const monitoring = document.getElementById("monitoring");
  if (monitoring && window.uPlot) startMonitoring(monitoring);
  const follow = document.getElementById("follow");
  if (follow) startFollowing(follow);
});
