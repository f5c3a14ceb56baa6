// The dashboard: polls /dashboard/data and draws each panel with uPlot (vendored, no network).
"use strict";
const PANELS = [
  ["j_per_1k", "Energy per 1,000 requests (model/variant@pool)"],
  ["g_per_1k", "Carbon per 1,000 requests (model/variant@pool)"],
  ["intensity", "Grid intensity per region (live)"],
  ["intensity_forecast", "Grid intensity forecast per region"],
  ["traffic_share", "Traffic share by pool"],
  ["route_reasons", "Requests by route reason"],
  ["cache_hit_rate", "Cache hit rate"],
  ["energy_avoided", "Energy avoided by the cache"],
  ["slo_attainment", "SLO attainment"],
  ["p99_ms", "p99 latency"],
  ["budget_use", "Carbon budget use (models and tenants)"],
  ["tenant_j_per_1k", "Energy per 1,000 requests by tenant"],
  ["pool_replicas_idle", "Pool replicas and idle power (autoscaled pools)"],
];
const COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];
const charts = {};
window.wattgateCharts = charts;
const KEY = "wattgate-dashboard-key";
// A key in the fragment (/dashboard#key=...) moves to this tab's sessionStorage and off the address bar.
const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
if (fromHash) {
  sessionStorage.setItem(KEY, fromHash);
  history.replaceState(null, "", location.pathname + location.search);
}

let generation = 0;  // bumped when the key changes: an answer to the old key is dropped

function resetCharts() {
  generation += 1;
  for (const id of Object.keys(charts)) { charts[id].plot.destroy(); delete charts[id]; }
  document.getElementById("panels").replaceChildren();
}

document.getElementById("key-form").addEventListener("submit", ev => {
  ev.preventDefault();
  const input = document.getElementById("key");
  if (input.value) sessionStorage.setItem(KEY, input.value.trim());
  input.value = "";
  resetCharts();  // another key may see other series
  poll();
});
document.getElementById("key-forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  resetCharts();
  poll();
});

function section(id, title) {
  const s = document.createElement("section");
  s.id = "panel-" + id;
  s.setAttribute("aria-labelledby", id + "-h");
  s.innerHTML = `<h2 id="${id}-h">${title}</h2><div class="chart" role="img" aria-label="${title}: chart"></div>` +
    `<p class="latest" aria-live="off">no data yet</p>`;
  document.getElementById("panels").appendChild(s);
  return s;
}

function fmt(v) {
  return v == null ? "–" : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3);
}

function pending(id, title, reason) {
  let s = document.getElementById("panel-" + id);
  if (s && !s.dataset.pending) {
    if (charts[id]) { charts[id].plot.destroy(); delete charts[id]; }
    s.remove();
    s = null;
  }
  if (!s) {
    s = document.createElement("section");
    s.id = "panel-" + id;
    s.dataset.pending = "true";
    s.setAttribute("aria-labelledby", id + "-h");
    s.innerHTML = `<h2 id="${id}-h"></h2><p class="pending"></p>`;
    s.querySelector("h2").textContent = title;
    document.getElementById("panels").appendChild(s);
  }
  s.querySelector(".pending").textContent = reason;
}

function draw(id, title, unit, xs, series) {
  let s = document.getElementById("panel-" + id);
  if (s && s.dataset.pending) { s.remove(); s = null; }
  s = s || section(id, title);
  const names = Object.keys(series).sort();
  const data = [xs, ...names.map(n => series[n])];
  const sig = names.join("|");
  let c = charts[id];
  if (!c || c.sig !== sig) {
    if (c) c.plot.destroy();
    const el = s.querySelector(".chart");
    const width = Math.max(380, el.clientWidth || 420);
    const plot = new uPlot({
      width, height: 200,
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))],
      axes: [{ stroke: "#111" }, { stroke: "#111", label: unit, size: 60, values: (u, vals) => vals.map(fmt) }],
      scales: { x: { time: true } },
    }, data, el);
    c = charts[id] = { plot, sig };
  } else {
    c.plot.setData(data);
  }
  const last = names.map(n => `${n}: ${fmt([...series[n]].reverse().find(v => v != null))} ${unit}`);
  s.querySelector(".latest").textContent = last.length ? last.join("; ") : "no data yet";
  const nonzero = names.some(n => series[n].some(v => v != null && v > 0));
  s.dataset.nonzero = String(nonzero);
  s.dataset.points = String(names.reduce((k, n) => k + series[n].filter(v => v != null).length, 0));
}

async function poll() {
  const w = document.getElementById("window").value;
  const status = document.getElementById("status");
  try {
    const asked = generation;
    const key = sessionStorage.getItem(KEY);
    const r = await fetch(`/dashboard/data?window=${w}`, { headers: key ? { authorization: "Bearer " + key } : {} });
    if (!r.ok) throw new Error(`${r.status} ${(await r.json()).error || ""}`);
    const doc = await r.json();
    if (asked !== generation) return;
    for (const [id, title] of PANELS) {
      if (id === "intensity_forecast") {
        const fc = doc.panels.intensity.forecast || {};
        const regions = Object.keys(fc).sort();
        const xs = [...new Set(regions.flatMap(reg => fc[reg].map(p => p[0])))].sort((a, b) => a - b);
        const series = {};
        for (const reg of regions) series[reg] = xs.map(x => { const p = fc[reg].find(q => q[0] === x); return p ? p[1] : null; });
        draw(id, title, "gCO2e/kWh", xs, series);
      } else if (doc.panels[id].pending) {
        pending(id, title, doc.panels[id].pending);
      } else {
        draw(id, title, doc.panels[id].unit, doc.t, doc.panels[id].series);
      }
    }
    const list = document.getElementById("anomalies-list");
    list.textContent = doc.tenant ? "shared by every tenant: in the operators' view only"
      : doc.anomalies.length ? doc.anomalies.join(", ") : "none";
    list.className = doc.anomalies.length ? "alert" : "";
    document.getElementById("view").textContent = doc.tenant ? `tenant ${doc.tenant}: its own data` : "operators' view: every tenant";
    status.textContent = `policy ${doc.policy || "single pool"} · ${doc.t.length} intervals · updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    status.textContent = "data unavailable: " + e.message;
  }
}

poll();
setInterval(poll, 2000);
