// The console's own script: Monitoring and Quality charts (uPlot), and following a log live
// (EventSource) with its lines' trace ids linked.
// Every value from the server is set as text, never as HTML.
"use strict";

const COLORS = ["#2f5bd3", "#e4572e", "#17a398", "#f3a712", "#8e44ad", "#33658a", "#a23b72"];

const CHARTS = [
  { title: "Request rate (requests/s)", series: [["requests_per_second", "", 1]] },
  { title: "Success rate (%)", series: [["success_rate", "", 100]], range: [0, 100] },
  {
    title: "Latency (ms)",
    series: [["latency_p50_seconds", " p50", 1000], ["latency_p95_seconds", " p95", 1000], ["latency_p99_seconds", " p99", 1000]],
    traces: true,
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

function lonePoints(u, seriesIdx, show) {
  // A value with no neighbour draws no line: uPlot's own points show only when the points are
  // sparse, so each such value (a lone bucket) is drawn as a point.
  if (show) return null;
  const values = u.data[seriesIdx];
  const empty = (i) => i < 0 || i >= values.length || values[i] === null || values[i] === undefined;
  const lone = [];
  values.forEach((v, i) => {
    if (!empty(i) && empty(i - 1) && empty(i + 1)) lone.push(i);
  });
  return lone.length ? lone : null;
}

function nearestP99(u, box, event) {
  // The p99 point (of any revision) within 12 px of the pointer, nearest first; null if none.
  const rect = u.over.getBoundingClientRect();
  const left = event.clientX - rect.left;
  const top = event.clientY - rect.top;
  let best = null;
  box.meta.forEach((meta, si) => {
    if (!meta || meta.key !== "latency_p99_seconds" || !u.series[si].show) return;
    u.data[si].forEach((value, idx) => {
      if (value === null || value === undefined) return;
      const distance = Math.hypot(u.valToPos(u.data[0][idx], "x") - left, u.valToPos(value, "y") - top);
      if (distance <= 12 && (best === null || distance < best.distance)) {
        best = { distance: distance, start: u.data[0][idx], value: value, revision: meta.revision };
      }
    });
  });
  return best;
}

function slowestTraces(u, box, event) {
  // The Traces tab for the clicked p99 point: that bucket's [start, end), traces at least 0.8
  // of its p99 long (the latency buckets are 25% apart, so the request at the p99 rank took at
  // least that), of that revision, the slowest first.
  const point = nearestP99(u, box, event);
  if (point === null) return;
  const params = new URLSearchParams({
    tab: "traces",
    since: String(point.start),
    until: String(point.start + box.step),
    min_duration: String(Number((point.value * 0.8).toPrecision(3))),
    revision: point.revision,
    sort: "slowest",
  });
  window.location.assign("?" + params.toString());
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
      const meta = [null];
      revisions.forEach((revision, i) => {
        for (const [key, suffix, factor] of chart.series) {
          const values = answer.revisions[revision][key];
          if (!values) continue;
          const color = COLORS[i % COLORS.length];
          series.push({ label: revision + suffix, stroke: color, width: suffix === " p99" ? 2 : 1.5, dash: suffix === " p95" ? [6, 4] : suffix === " p50" ? [2, 3] : undefined, spanGaps: false, points: { size: 7, fill: color, filter: lonePoints } });
          data.push(scaled(values, factor));
          meta.push({ revision: revision, key: key });
        }
      });
      let box = plots.get(chart.title);
      const signature = series.map((s) => s.label || "").join("|");
      if (!box) {
        box = { node: element("div", { class: "chart", "data-chart": chart.title }), plot: null, signature: "" };
        box.node.appendChild(element("h3", {}, chart.title));
        if (chart.traces) box.node.appendChild(element("p", { class: "muted chart-hint" }, "Click a p99 point for that bucket's slowest traces."));
        chartsBox.appendChild(box.node);
        plots.set(chart.title, box);
      }
      box.meta = meta;
      box.step = answer.step;
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
      box.node.uplot = box.plot;
      box.signature = signature;
      if (chart.traces) {
        const plot = box.plot;
        plot.over.addEventListener("click", (event) => slowestTraces(plot, box, event));
        plot.over.addEventListener("mousemove", (event) => plot.over.classList.toggle("on-p99", nearestP99(plot, box, event) !== null));
      }
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

function whiskers(intervals) {
  // Draws each point's interval as a vertical bar with caps (a band alone hides one point's).
  return (u) => {
    const ctx = u.ctx;
    const cap = 4 * devicePixelRatio;
    ctx.save();
    ctx.lineWidth = 1.5 * devicePixelRatio;
    for (const { low, high, color } of intervals) {
      ctx.strokeStyle = color;
      ctx.beginPath();
      u.data[0].forEach((x, i) => {
        if (low[i] === null || high[i] === null) return;
        const px = u.valToPos(x, "x", true);
        const top = u.valToPos(high[i], "y", true);
        const bottom = u.valToPos(low[i], "y", true);
        ctx.moveTo(px, top);
        ctx.lineTo(px, bottom);
        ctx.moveTo(px - cap, top);
        ctx.lineTo(px + cap, top);
        ctx.moveTo(px - cap, bottom);
        ctx.lineTo(px + cap, bottom);
      });
      ctx.stroke();
    }
    ctx.restore();
  };
}

function startQuality(root) {
  const chart = JSON.parse(root.dataset.chart);
  const x = { time: true, range: () => [chart.since, chart.until] };
  const metricBox = root.querySelector("[data-plot=metric]");
  const coverageBox = root.querySelector("[data-plot=coverage]");
  const width = (box) => Math.max(box.clientWidth - 20, 300);
  const unit = chart.percent ? "%" : "";
  const shown = (digits) => (u, v) => (v === null || v === undefined ? "—" : format(v, digits) + unit);

  const series = [{ label: "bucket from" }];
  const data = [chart.x];
  const bands = [];
  const intervals = [];
  chart.revisions.forEach((rev, i) => {
    const color = COLORS[i % COLORS.length];
    const at = series.length;
    series.push({ label: rev.revision, stroke: color, width: 2, value: shown(chart.percent ? 1 : 4), points: { show: true, size: 6, fill: color } });
    series.push({ label: rev.revision + " 95% low", stroke: color + "55", width: 1, value: shown(chart.percent ? 1 : 4), points: { show: false } });
    series.push({ label: rev.revision + " 95% high", stroke: color + "55", width: 1, value: shown(chart.percent ? 1 : 4), points: { show: false } });
    data.push(rev.value, rev.low, rev.high);
    bands.push({ series: [at + 2, at + 1], fill: color + "22" });
    intervals.push({ low: rev.low, high: rev.high, color: color + "aa" });
  });
  const y = chart.percent
    ? { range: (u, min, max) => [Math.max(0, Math.floor((min === null ? 0 : min) - 2)), Math.min(100, Math.ceil((max === null ? 100 : max) + 2))] }
    : {};
  new uPlot({
    width: width(metricBox), height: 240, series: series, bands: bands, scales: { x: x, y: y },
    axes: [{}, { size: 60 }], hooks: { draw: [whiskers(intervals)] },
  }, data, metricBox);

  const coverage = [{ label: "bucket from" }];
  const covered = [chart.x];
  chart.revisions.forEach((rev, i) => {
    const color = COLORS[i % COLORS.length];
    coverage.push({ label: rev.revision, stroke: color, width: 2, value: shown(1), points: { show: true, size: 6, fill: color } });
    covered.push(rev.coverage);
  });
  new uPlot({
    width: width(coverageBox), height: 240, series: coverage,
    scales: { x: x, y: { range: [0, 100] } }, axes: [{}, { size: 60 }],
  }, covered, coverageBox);
}

function startQualityControls(form) {
  // A changed window takes its own default step; either change shows the new figures.
  const step = form.elements.step;
  form.elements.window.addEventListener("change", () => { step.value = ""; form.requestSubmit(); });
  step.addEventListener("change", () => form.requestSubmit());
}

const TRACE_IN_LOG = /(^|[^0-9A-Za-z_])(trace=([0-9a-f]{32}))(?![0-9A-Za-z])/g;

function linkedLine(text) {
  // A log line's cell, each trace=<32 hex> a link to that trace's waterfall (as on the server).
  const cell = element("td", { class: "line" });
  let at = 0;
  for (const found of text.matchAll(TRACE_IN_LOG)) {
    const id = found[3];
    if (/^0+$/.test(id)) continue;
    const start = found.index + found[1].length;
    cell.appendChild(document.createTextNode(text.slice(at, start)));
    cell.appendChild(element("a", { class: "trace-link", href: "?tab=traces&trace=" + id, "data-trace": id, title: "Open trace " + id }, found[2]));
    at = start + found[2].length;
  }
  cell.appendChild(document.createTextNode(text.slice(at)));
  return cell;
}

function startFollowing(button) {
  // New lines go on top, as the page shows them (newest first); the table keeps one page of
  // lines, and its "Older lines" link pages back from the oldest line it still shows. The
  // table is looked up for each line: a search replaces it.
  let source = null;
  const count = (live) => {
    const box = document.getElementById("log-lines");
    const body = document.getElementById("log-body");
    const shown = document.getElementById("log-shown");
    if (!box || !body || !shown) return;
    const rows = body.querySelectorAll("tr[data-seq]").length;
    shown.textContent = "The newest lines first" + (live ? ", live: " : ": ") + rows + " shown, " + box.dataset.pageSize + " a page.";
  };
  button.addEventListener("click", () => {
    if (source) {
      source.close();
      source = null;
      button.textContent = "Follow";
      button.classList.remove("following");
      count(false);
      return;
    }
    const box = document.getElementById("log-lines");
    const body = document.getElementById("log-body");
    if (!box || !body) return;
    let newest = 0;
    let since = Date.now() / 1000;
    if (box.dataset.before) {
      body.replaceChildren();  // an older page: the live lines do not follow on from it
      delete box.dataset.before;
    } else {
      const top = body.querySelector("tr[data-seq]");
      if (top) {
        newest = Number(top.dataset.seq);
        since = Number(top.dataset.t);
      }
    }
    const form = button.form;
    const params = new URLSearchParams({ follow: "true", since: since.toFixed(6) });
    for (const name of ["pattern", "revision"]) {
      const value = form.elements[name].value.trim();
      if (value) params.set(name, value);
    }
    source = new EventSource(button.dataset.followUrl + "?" + params.toString());
    button.textContent = "Stop following";
    button.classList.add("following");
    source.addEventListener("log", (event) => {
      const line = JSON.parse(event.data);
      const box = document.getElementById("log-lines");
      const body = document.getElementById("log-body");
      if (!box || !body || line.seq <= newest) return;
      newest = line.seq;
      const empty = body.querySelector("tr.none");
      if (empty) empty.remove();
      const row = element("tr", { class: "followed", "data-seq": String(line.seq), "data-t": String(line.t) });
      row.appendChild(element("td", { class: "time" }, line.time));
      row.appendChild(element("td", {}, line.revision));
      row.appendChild(element("td", {}, line.stream));
      row.appendChild(linkedLine(line.line));
      body.insertBefore(row, body.firstChild);
      const pageSize = Number(box.dataset.pageSize) || 500;
      if (body.rows.length > pageSize) {
        while (body.rows.length > pageSize) body.lastElementChild.remove();
        const older = document.getElementById("log-older");
        if (older) {
          older.href = "?" + box.dataset.paged + "&before=" + body.lastElementChild.dataset.seq;
          older.hidden = false;
        }
      }
      count(true);
    });
    count(true);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const monitoring = document.getElementById("monitoring");
  if (monitoring && window.uPlot) startMonitoring(monitoring);
  const quality = document.getElementById("quality-charts");
  if (quality && window.uPlot) startQuality(quality);
  const controls = document.getElementById("quality-controls");
  if (controls) startQualityControls(controls);
  const follow = document.getElementById("follow");
  if (follow) startFollowing(follow);
});
