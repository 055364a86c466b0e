// The operations dashboard: polls /ui/api/dashboard and renders it. Read-only.
// Every text goes through textContent (never innerHTML): file names and reasons are untrusted.
"use strict";

(function () {
  const API = "/ui/api/dashboard";
  const POLL_MS = 1000;
  const RETRY_MS = 2000;
  const STALE_MS = 6000;
  const OPEN_STATES = new Set(["open", "half_open", "forced_open"]);
  const COLORS = ["#b3261e", "#7d5700", "#0b57d0", "#6b3fa0", "#146c2e", "#9c4146", "#00677d"];

  const state = {
    samplerId: null,
    since: null,
    span: 3600,
    hist: emptyHistory(),
    charts: {},
    errorClasses: "",
    lastOk: 0,
  };

  function emptyHistory() {
    return {t: [], spool_size: [], spool_oldest_age: [], circuit: [], delivered_per_s: [], p50_ms: [], p99_ms: [],
            failed_per_min: {}};
  }

  // ---------------------------------------------------------------- DOM helpers (text only)

  function $(id) { return document.getElementById(id); }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function setText(id, text) {
    const node = $(id);
    const value = text === null || text === undefined ? "–" : String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function facts(id, rows) {
    const dl = $(id);
    const frag = document.createDocumentFragment();
    for (const [key, value, testid] of rows) {
      frag.appendChild(el("dt", key));
      const dd = el("dd", value === null || value === undefined ? "–" : value);
      if (testid) dd.id = testid;
      frag.appendChild(dd);
    }
    dl.replaceChildren(frag);
  }

  function tableRows(tableId, rows, empty) {
    const body = $(tableId).tBodies[0];
    const frag = document.createDocumentFragment();
    if (!rows.length) {
      const tr = el("tr");
      const td = el("td", empty, "empty");
      td.colSpan = $(tableId).tHead.rows[0].cells.length;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    for (const cells of rows) {
      const tr = el("tr");
      for (const cell of cells) tr.appendChild(el("td", cell === null || cell === undefined ? "–" : cell));
      frag.appendChild(tr);
    }
    body.replaceChildren(frag);
  }

  function commands(id, list, title) {
    const box = $(id);
    if (box.dataset.rendered === "1") return;  // the commands never change
    box.dataset.rendered = "1";
    box.appendChild(el("p", title || "From the CLI:", "cli-title"));
    const ul = el("ul");
    for (const c of list) {
      const li = el("li");
      li.appendChild(el("code", c.command));
      li.appendChild(el("span", " — " + c.does, "does"));
      ul.appendChild(li);
    }
    box.appendChild(ul);
  }

  // ---------------------------------------------------------------- formatting

  function num(v, digits) {
    if (v === null || v === undefined) return "–";
    return digits === undefined ? String(v) : Number(v).toFixed(digits);
  }

  function ms(v) {
    if (v === null || v === undefined) return "–";
    return v < 1000 ? `${Number(v).toFixed(v < 10 ? 1 : 0)} ms` : `${(v / 1000).toFixed(2)} s`;
  }

  function secs(v) {
    if (v === null || v === undefined) return "–";
    if (v < 60) return `${Number(v).toFixed(v < 10 ? 1 : 0)} s`;
    if (v < 3600) return `${Math.floor(v / 60)} min ${Math.round(v % 60)} s`;
    return `${Math.floor(v / 3600)} h ${Math.round((v % 3600) / 60)} min`;
  }

  function clock(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d.getTime()) ? iso : d.toLocaleTimeString();
  }

  function pct(v) { return v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)} %`; }

  function words(s) { return s ? String(s).replace(/_/g, " ") : "–"; }

  // ---------------------------------------------------------------- history

  function mergeHistory(doc) {
    if (doc.sampler.id !== state.samplerId) {  // another process or a restart: its own history
      state.samplerId = doc.sampler.id;
      state.hist = emptyHistory();
      state.errorClasses = "";
    }
    state.span = doc.sampler.span_seconds;
    const h = state.hist;
    const add = doc.history;
    const before = h.t.length;
    for (const key of ["t", "spool_size", "spool_oldest_age", "circuit", "delivered_per_s", "p50_ms", "p99_ms"]) {
      h[key].push(...add[key]);
    }
    for (const cls of Object.keys(add.failed_per_min)) {
      if (!h.failed_per_min[cls]) h.failed_per_min[cls] = new Array(before).fill(null);
    }
    for (const cls of Object.keys(h.failed_per_min)) {
      h.failed_per_min[cls].push(...(add.failed_per_min[cls] || new Array(add.t.length).fill(null)));
    }
    if (h.t.length) {
      state.since = h.t[h.t.length - 1];
      const horizon = state.since - state.span;
      let drop = 0;
      while (drop < h.t.length && h.t[drop] < horizon) drop++;
      if (drop) {
        for (const key of Object.keys(h)) {
          if (key === "failed_per_min") for (const cls of Object.keys(h.failed_per_min)) h.failed_per_min[cls].splice(0, drop);
          else h[key].splice(0, drop);
        }
      }
    }
  }

  function maxOf(values) {
    let m = null;
    for (const v of values) if (v !== null && v !== undefined && (m === null || v > m)) m = v;
    return m;
  }

  // ---------------------------------------------------------------- charts (uPlot)

  function chartWidth(node) { return Math.max(280, node.clientWidth || 600); }

  // Shade the periods when the circuit was open behind a chart's lines.
  function circuitBands(u) {
    const t = state.hist.t, c = state.hist.circuit;
    const ctx = u.ctx;
    const {top, height} = u.bbox;
    ctx.save();
    ctx.fillStyle = "rgba(179, 38, 30, 0.10)";
    let start = null;
    for (let i = 0; i <= t.length; i++) {
      const open = i < t.length && OPEN_STATES.has(c[i]);
      if (open && start === null) start = t[i];
      if (!open && start !== null) {
        const end = i < t.length ? t[i] : t[t.length - 1];
        const x0 = u.valToPos(start, "x", true), x1 = u.valToPos(end, "x", true);
        ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
        start = null;
      }
    }
    ctx.restore();
  }

  // The spool's depth exists only from this process's first look (the store keeps no past gauge):
  // its chart starts there (at least the last minute), the others show the whole hour.
  function liveRange(u, min, max) {
    const h = state.hist;
    let first = null;
    for (let i = 0; i < h.t.length; i++) if (h.spool_size[i] !== null) { first = h.t[i]; break; }
    if (first === null || max === null) return [min, max];
    return [Math.min(first, max - 60), max];
  }

  function makeChart(id, series, axes, data, scales, live) {
    const node = $(id);
    const opts = {
      width: chartWidth(node),
      height: 170,
      series: [{}, ...series],
      axes: [{}, ...axes],
      scales: Object.assign({x: live ? {time: true, range: liveRange} : {time: true}}, scales || {}),
      legend: {show: true},
      cursor: {drag: {x: false, y: false}},
      hooks: {drawClear: [circuitBands]},
    };
    node.replaceChildren();
    return new uPlot(opts, data, node);
  }

  function line(label, color, scale, dash) {
    const s = {label, stroke: color, width: 2, scale, spanGaps: false, points: {show: false}};
    if (dash) s.dash = dash;
    return s;
  }

  function drawCharts() {
    if (typeof uPlot === "undefined") return;  // loads in parallel; the next poll draws
    const h = state.hist;
    const spoolData = [h.t, h.spool_size, h.spool_oldest_age];
    const rateData = [h.t, h.delivered_per_s];
    const latencyData = [h.t, h.p50_ms, h.p99_ms];
    const classes = Object.keys(h.failed_per_min).sort();
    const errorData = [h.t, ...classes.map((c) => h.failed_per_min[c])];
    const ch = state.charts;
    if (!ch.spool) {
      ch.spool = makeChart("chart-spool",
        [line("depth (events)", "#0b57d0", "n"), line("oldest age (s)", "#7d5700", "s", [6, 4])],
        [{scale: "n", label: "events"}, {scale: "s", side: 1, label: "seconds", grid: {show: false}}],
        spoolData, {n: {range: (u, min, max) => [0, Math.max(5, max)]}, s: {range: (u, min, max) => [0, Math.max(10, max)]}},
        true);
      ch.rate = makeChart("chart-rate", [line("delivered/s", "#146c2e", "r")],
        [{scale: "r", label: "events/s"}], rateData, {r: {range: (u, min, max) => [0, Math.max(1, max)]}});
      ch.latency = makeChart("chart-latency",
        [line("p50 (ms)", "#0b57d0", "ms"), line("p99 (ms)", "#b3261e", "ms", [6, 4])],
        [{scale: "ms", label: "ms"}], latencyData, {ms: {range: (u, min, max) => [0, Math.max(10, max)]}});
    } else {
      ch.spool.setData(spoolData);
      ch.rate.setData(rateData);
      ch.latency.setData(latencyData);
    }
    const key = classes.join("\u0000");
    if (!ch.errors || key !== state.errorClasses) {  // a new class: a new series
      if (ch.errors) ch.errors.destroy();
      state.errorClasses = key;
      ch.errors = makeChart("chart-errors",
        classes.map((c, i) => line(c, COLORS[i % COLORS.length], "f")),
        [{scale: "f", label: "failed/min"}], errorData, {f: {range: (u, min, max) => [0, Math.max(1, max)]}});
    } else {
      ch.errors.setData(errorData);
    }
  }

  function caption(id, chartId, text) {
    setText(id, text);
    $(chartId).setAttribute("aria-label", text);
  }

  // ---------------------------------------------------------------- panels

  function renderHealth(doc) {
    const h = doc.health;
    const badge = $("health-status");
    badge.dataset.status = h.status;
    setText("health-status", h.status);
    const ul = $("health-reasons");
    const items = h.reasons.map((r) => {
      const li = el("li");
      li.appendChild(el("span", r.severity, "sev sev-" + r.severity));
      li.appendChild(el("span", " " + r.message));
      return li;
    });
    if (!items.length) items.push(el("li", "No reason for concern.", "ok"));
    ul.replaceChildren(...items);
    const svc = h.service;
    facts("health-facts", [
      ["Service", svc === null ? "checking…" : `${svc.available ? "available" : "unavailable"} (${svc.status}${svc.detail ? ": " + svc.detail : ""}), checked ${clock(svc.checked_at)}`, "health-service"],
      ["Success rate", h.requests ? `${pct(h.success_rate)} of ${h.requests} call(s) in the last ${secs(h.window_seconds)}` : `no delivery call in the last ${secs(h.window_seconds)}`],
      ["Last delivery", h.last_delivery || "never"],
    ]);
    commands("health-cli", h.commands);
  }

  function renderCircuit(doc) {
    const c = doc.circuit;
    $("circuit-state").dataset.status = c.state;
    setText("circuit-state", c.state);
    facts("circuit-facts", [
      ["Failures", `${c.failure_count} (it opens after ${c.opens_when})`, "circuit-failures"],
      ["Next trial", c.next_trial, "circuit-next"],
      ["Opened", c.opened_at ? clock(c.opened_at) : "–"],
      ["Trips", c.trip_count],
      ["Calls held", c.calls_not_permitted],
      ["Recovery timeout", secs(c.recovery_timeout)],
    ]);
    commands("circuit-cli", c.commands, "Operate it from the CLI:");
  }

  function renderSpool(doc) {
    const s = doc.spool;
    setText("spool-size", s.size);
    facts("spool-facts", [
      ["Bound", `${s.bound} events (${pct(s.fill)} full, overflow policy ${s.overflow_policy})`],
      ["Oldest event waits", s.oldest_age_seconds === null ? "nothing waits" : secs(s.oldest_age_seconds), "spool-oldest"],
    ]);
    const peak = maxOf(state.hist.spool_size);
    caption("cap-spool", "chart-spool", `Spool depth now ${s.size} event(s), at most ${peak === null ? "–" : peak} in the chart; ` +
      `oldest event waits ${s.oldest_age_seconds === null ? "nothing" : secs(s.oldest_age_seconds)}. Shaded: circuit open.`);
    commands("spool-cli", s.commands);
  }

  function renderDelivery(doc) {
    const d = doc.delivery, hour = d.last_hour, ev = hour.events;
    facts("delivery-facts", [
      ["Delivered now", d.delivered_per_s === null ? "–" : `${num(d.delivered_per_s, 2)} events/s`, "delivery-rate"],
      ["Latency now", d.p50_ms === null ? "no call in the last seconds" : `p50 ≤ ${ms(d.p50_ms)}, p99 ≤ ${ms(d.p99_ms)}`, "delivery-latency"],
    ]);
    caption("cap-rate", "chart-rate", `Delivered now ${d.delivered_per_s === null ? "–" : num(d.delivered_per_s, 2)} events/s; ` +
      `at most ${num(maxOf(state.hist.delivered_per_s), 2)} over the charted hour.`);
    caption("cap-latency", "chart-latency", d.p50_ms === null ? "Delivery-call latency: no call in the last seconds."
      : `Delivery-call latency now: p50 ≤ ${ms(d.p50_ms)}, p99 ≤ ${ms(d.p99_ms)}.`);
    const rt = hour.response_time_ms;
    facts("delivery-hour", [
      ["Events", `${ev.delivered} delivered, ${ev.already_existed} already there, ${ev.dead_lettered} dead-lettered`, "hour-events"],
      ["Delivery calls", `${hour.total_requests} (${hour.successful_requests} ok, ${hour.failed_requests} failed), success rate ${pct(hour.success_rate)}`, "hour-requests"],
      ["Response time", rt.count ? `avg ${ms(rt.mean_ms)}, p50 ≤ ${ms(rt.p50_ms)}, p99 ≤ ${ms(rt.p99_ms)}` : "–"],
      ["Retries", hour.retry_attempts, "hour-retries"],
      ["Hook runs", hour.hook_invocations, "hour-hooks"],
    ]);
    commands("delivery-cli", d.commands);
  }

  function renderErrors(doc) {
    const e = doc.errors;
    setText("errors-last-h", `Last ${e.trend_minutes} min`);
    setText("errors-prev-h", `${e.trend_minutes} min before`);
    const rows = Object.keys(e.classes).sort().map((cls) => {
      const x = e.classes[cls];
      return [cls, x.count, x.last, x.previous, x.trend];
    });
    tableRows("errors-table", rows, "No failed delivery call in the last hour.");
    const classes = Object.keys(state.hist.failed_per_min).sort();
    const now = classes.map((c) => {
      const v = state.hist.failed_per_min[c];
      return `${c} ${num(v[v.length - 1], 1)}/min`;
    });
    caption("cap-errors", "chart-errors", now.length ? `Failed calls per minute now: ${now.join(", ")}.` : "No failed call over the charted hour.");
  }

  function renderAlerts(doc) {
    const a = doc.alerts;
    setText("alerts-note", a.enabled
      ? `Evaluated every ${secs(a.interval_seconds)} by the alerter of a running run or watch, and kept in the store.`
      : "Alerting is off (monitoring.alerting.enabled).");
    tableRows("alerts-open", a.open.map((i) => [i.alert, i.severity, i.started, i.message]), "No open incident.");
    tableRows("alerts-resolved", a.resolved.map((r) => [r.alert, r.severity, r.resolved, secs(r.lasted_seconds), r.message]),
      "No resolved incident kept.");
  }

  function renderDead(doc) {
    const d = doc.dead_letters, q = doc.quarantine;
    facts("dead-facts", [
      ["Dead letters", `${d.count} (${d.entered_last_hour} entered in the last hour)`, "dead-count"],
      ["Quarantined entries", q.count, "quarantine-count"],
    ]);
    tableRows("dead-table", d.recent.map((r) => [r.seq, clock(r.failed_at), r.error_class, r.file_path, r.reason]),
      "The dead letter is empty.");
    commands("dead-cli", d.commands, "Dead letters, from the CLI:");
    commands("quarantine-cli", q.commands, "Quarantine, from the CLI:");
  }

  function render(doc) {
    mergeHistory(doc);
    setText("where", `Data directory ${doc.data_dir} → ${doc.target}`);
    renderHealth(doc);
    renderCircuit(doc);
    renderSpool(doc);
    renderDelivery(doc);
    renderErrors(doc);
    renderAlerts(doc);
    renderDead(doc);
    drawCharts();
  }

  // ---------------------------------------------------------------- polling

  function live(text, mode) {
    const node = $("live");
    node.dataset.state = mode;
    setText("live", text);
  }

  async function poll() {
    let next = POLL_MS;
    try {
      const url = state.since === null ? API : `${API}?since=${encodeURIComponent(state.since)}`;
      const resp = await fetch(url, {cache: "no-store", headers: {"Accept": "application/json"}});
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const doc = await resp.json();
      render(doc);
      state.lastOk = Date.now();
      live(`live · updated ${clock(doc.now_iso)} · a sample every ${doc.sampler.period_seconds} s`, "live");
    } catch (err) {
      next = RETRY_MS;
      const since = state.lastOk ? `since ${new Date(state.lastOk).toLocaleTimeString()}` : "yet";
      live(`no answer from the status server ${since}; retrying`, Date.now() - state.lastOk > STALE_MS ? "lost" : "retrying");
    }
    window.setTimeout(poll, next);
  }

  window.addEventListener("resize", () => {
    for (const id of Object.keys(state.charts)) {
      const u = state.charts[id];
      u.setSize({width: chartWidth(u.root.parentNode), height: 170});
    }
  });

  poll();
})();
