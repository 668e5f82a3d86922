"use strict";
// The status page's script: reads this store's /status and /status/history
// every second and redraws. Everything a report from below carries (ids,
// addresses, subjects) is untrusted text: it goes into the DOM through
// textContent and attributes only, never as markup.

const REFRESH_MS = 1000;
const TIMEOUT_MS = 3000; // a store that does not answer in time counts as unreachable
const RATE_WINDOW = 5;   // throughput is averaged over this many samples
const MIN_SPAN_MS = 60 * 1000;

let samples = [];        // oldest first, as /status/history serves them
let everyMS = 1000;      // the store's sampling interval
let spanMS = 10 * 60 * 1000;
let lastOK = null;       // browser time of the last good refresh

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) e.setAttribute(k, String(v));
  }
  for (const c of kids) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

const num = (n) => (n === null || n === undefined) ? "—" : Number(n).toLocaleString("en-US");

function ago(ms) {
  const s = Math.max(0, ms) / 1000;
  if (s < 10) return s.toFixed(1) + " s";
  if (s < 120) return Math.round(s) + " s";
  return Math.round(s / 60) + " min";
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
}

async function getJSON(url) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  try {
    const r = await fetch(url, { signal: ctl.signal, cache: "no-store" });
    if (!r.ok) {
      const body = (await r.text()).split("\n")[0].slice(0, 200);
      throw new Error(url + ": HTTP " + r.status + (body ? ": " + body : ""));
    }
    return await r.json();
  } catch (e) {
    if (e.name === "AbortError") throw new Error(url + ": no answer within " + TIMEOUT_MS / 1000 + " s");
    if (e instanceof TypeError) throw new Error(url + ": " + e.message);
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

async function refresh() {
  try {
    const since = samples.length ? samples[samples.length - 1].t : 0;
    const [st, h] = await Promise.all([
      getJSON("/status"),
      getJSON("/status/history" + (since ? "?since=" + since : "")),
    ]);
    everyMS = h.every_ms || 1000;
    spanMS = everyMS * (h.keep || 600);
    samples = samples.concat(h.samples || []);
    const newest = samples.length ? samples[samples.length - 1].t : 0;
    samples = samples.filter((s) => s.t > newest - spanMS);
    render(st);
    lastOK = Date.now();
  } catch (e) {
    unreachable(e);
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

function unreachable(e) {
  document.body.dataset.reachable = "false";
  const conn = $("conn");
  conn.dataset.state = "unreachable";
  conn.dataset.error = String(e.message || e);
  conn.textContent = "Unreachable: " + (e.message || e) +
    (lastOK ? ". The numbers below are from " + clock(lastOK) + " and are not current." : ".");
  // Readiness is not shown stale: this page cannot tell it now.
  $("self").dataset.ready = "unknown";
  $("ready").textContent = "unknown";
  $("reason").textContent = "this page cannot reach the store";
  $("ready-card").className = "card bad";
  document.title = "unreachable · storesync";
}

function render(st) {
  document.body.dataset.reachable = "true";
  const updated = Date.parse(st.updated);
  const conn = $("conn");
  conn.dataset.state = "live";
  delete conn.dataset.error;
  conn.textContent = "Live · updated " + clock(updated);

  const self = $("self");
  self.dataset.storeId = st.store_id || "";
  self.dataset.role = st.role;
  self.dataset.ready = String(!!st.ready);
  self.dataset.lagKnown = String(!!st.lag_known);
  self.dataset.lag = st.lag_known ? String(st.lag) : "";
  self.dataset.committed = String(st.committed_tip);

  $("role").textContent = st.role === "primary" ? "Primary" : "Follower";
  $("store-id").textContent = st.store_id || "";
  $("ready").textContent = st.ready ? "ready" : "not ready";
  $("ready-card").className = "card " + (st.ready ? "ok" : "bad");
  $("reason").textContent = st.health || "";
  $("lag").textContent = st.lag_known ? num(st.lag) + (st.lag === 1 ? " block" : " blocks") : "unknown";
  $("chain-tip").textContent = st.lag_known ? "chain tip " + num(st.chain_tip) + (st.chain_tip_from ? " from " + st.chain_tip_from : "") : "no source heard from recently";
  $("committed").textContent = num(st.committed_tip);
  $("chain").textContent = "chain " + st.chain;
  $("proven").textContent = num(st.proven_tip);
  const gap = st.committed_tip - st.proven_tip;
  $("proof-gap").textContent = gap > 0 ? num(gap) + " committed blocks await their proof" : "every committed block is proven";
  document.title = (st.ready ? "ready" : "NOT READY") + " · " + st.role + " " + (st.store_id || "") + " · storesync";

  renderUpstreams(st, updated);
  renderWatermarks(st);
  renderTree(st, updated);
  maxLag = typeof st.max_lag === "number" ? st.max_lag : null;
  renderCharts();
  renderFooter(st);
}

function renderUpstreams(st, now) {
  const ups = st.upstreams || {}, probs = st.source_problems || {}, notes = st.upstream_problems || {};
  const names = [...new Set([...Object.keys(ups), ...Object.keys(probs), ...Object.keys(notes)])].sort();
  const body = $("upstreams").tBodies[0];
  body.replaceChildren();
  for (const name of names) {
    const n = notes[name];
    const engine = [];
    if (n) {
      if (n.problem) engine.push(el("div", { class: "problem" }, n.problem));
      if (n.backed_off_until) {
        const left = Date.parse(n.backed_off_until) - now;
        if (left > 0) engine.push(el("div", {}, el("span", { class: "tag warn" }, "backed off"), " for " + ago(left)));
      }
      if (n.suspect) {
        const left = Date.parse(n.suspect_until) - now;
        engine.push(el("div", {}, el("span", { class: "tag warn" }, "suspect"), " " + n.suspect + (left > 0 ? " (for " + ago(left) + ")" : "")));
      }
    }
    const ok = !probs[name] && !(n && (n.problem || n.suspect));
    body.append(el("tr", { "data-upstream": name, "data-ok": String(ok) },
      el("td", { class: "mono" }, name),
      el("td", { class: "num" }, name in ups ? num(ups[name]) : "—"),
      el("td", {}, probs[name] ? el("span", { class: "problem" }, probs[name]) : el("span", { class: "tag ok" }, "ok")),
      el("td", {}, ...(engine.length ? engine : [el("span", { class: "muted" }, "no problem")]))));
  }
  const empty = $("upstreams-empty");
  $("upstreams").hidden = names.length === 0;
  empty.hidden = names.length !== 0;
  empty.textContent = st.role === "primary" ? "None: the primary is the source of the chain." : "No upstream or peer has answered yet.";
}

function renderWatermarks(st) {
  const wm = st.replicated_watermark || {};
  const box = $("watermarks");
  box.replaceChildren();
  for (const k of Object.keys(wm).sort()) {
    const v = wm[k];
    const note = v === null
      ? (k === "1" ? "no counted store below" : "fewer than " + k + " counted stores below")
      : (st.committed_tip > v ? num(st.committed_tip - v) + " behind this store's tip" : "at this store's tip");
    box.append(el("div", { class: "card", "data-k": k, "data-value": v === null ? "" : v },
      el("div", { class: "label" }, "≥ " + k + (k === "1" ? " copy" : " copies")),
      el("div", { class: "value" }, v === null ? "none" : num(v)),
      el("div", { class: "note" }, note)));
  }
}

// treeOrder puts each store right after the one it reports to, so the
// table reads as the tree; a row whose parent is not in the table (it has
// just left) comes last, by depth.
function treeOrder(rows, root) {
  const kids = new Map();
  for (const r of rows) {
    if (!kids.has(r.parent)) kids.set(r.parent, []);
    kids.get(r.parent).push(r);
  }
  for (const list of kids.values()) list.sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  const out = [], seen = new Set();
  const walk = (id, level) => {
    for (const r of kids.get(id) || []) {
      if (seen.has(r.id)) continue;
      seen.add(r.id);
      out.push([r, level]);
      walk(r.id, level + 1);
    }
  };
  walk(root, 1);
  const rest = rows.filter((r) => !seen.has(r.id)).sort((a, b) => a.depth - b.depth);
  for (const r of rest) out.push([r, r.depth]);
  return out;
}

function renderTree(st, now) {
  const rows = st.followers || [];
  const body = $("tree").tBodies[0];
  body.replaceChildren();
  body.append(el("tr", { class: "self", "data-store-id": st.store_id || "", "data-depth": "0" },
    el("td", { class: "tree-id mono" }, st.store_id || "", el("span", { class: "tag ok" }, "this store")),
    el("td", {}, ""),
    el("td", { class: "num" }, "0"),
    el("td", { class: "num" }, num(st.committed_tip)),
    el("td", { class: "num" }, num(st.proven_tip)),
    el("td", { class: "num" }, ""),
    el("td", { class: "num" }, ""),
    el("td", {}, "")));
  for (const [r, level] of treeOrder(rows, st.store_id)) {
    const behind = st.committed_tip - r.committed_tip;
    body.append(el("tr", {
      "data-store-id": r.id, "data-parent": r.parent, "data-depth": r.depth,
      "data-verified": String(!!r.verified), "data-committed": r.committed_tip,
    },
      el("td", { class: "tree-id mono" }, el("span", { class: "indent" }, "\u00a0\u00a0".repeat(level - 1) + "└ "), r.id),
      el("td", { class: "mono" }, r.addr || "—"),
      el("td", { class: "num" }, r.depth),
      el("td", { class: "num" }, num(r.committed_tip), r.clamped ? el("span", { class: "tag warn", title: "it claimed more than this store holds" }, "clamped") : null),
      el("td", { class: "num" }, num(r.proven_tip)),
      el("td", { class: "num" }, behind > 0 ? num(behind) : "0"),
      el("td", { class: "num" }, ago(now - Date.parse(r.last_heard)) + " ago"),
      el("td", {}, r.verified
        ? el("span", { class: "tag ok", title: r.subject || "" }, "counts")
        : el("span", { class: "tag bad" }, "unverified"),
        r.verified && r.subject ? el("span", { class: "muted" }, " " + r.subject) : null)));
  }
  const counted = rows.filter((r) => r.verified).length;
  let summary = rows.length === 0 ? "no store reports to this one"
    : rows.length + (rows.length === 1 ? " store, " : " stores, ") + counted + " counted";
  if (st.followers_left_out) summary += "; " + st.followers_left_out + " more left out of the reports (over their bounds)";
  $("tree-summary").textContent = summary;
  $("tree").dataset.rows = String(rows.length);
}

function renderFooter(st) {
  const parts = [];
  if (st.fetched_bytes) parts.push("fetched " + num(st.fetched_bytes) + " bytes" + (st.fetched_per_useful ? " (" + st.fetched_per_useful.toFixed(2) + "× the useful)" : ""));
  if (st.rejected_blocks) parts.push(num(st.rejected_blocks) + " blocks rejected");
  const restarts = Object.entries(st.actor_restarts || {}).map(([a, n]) => a + " " + n);
  if (restarts.length) parts.push("actor restarts: " + restarts.join(", "));
  parts.push("refreshes every " + REFRESH_MS / 1000 + " s from /status; JSON at /status and /status/history");
  $("footer").textContent = parts.join(" · ");
}

// --- charts ---

const W = 560, H = 170, ML = 48, MR = 12, MT = 10, MB = 24;

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtAxis(v) {
  return Math.abs(v) >= 1000 ? (v / 1000).toLocaleString("en-US", { maximumFractionDigits: 1 }) + "k"
    : v.toLocaleString("en-US", { maximumFractionDigits: 1 });
}

function relLabel(ms) {
  if (ms <= 0) return "now";
  const s = Math.round(ms / 1000);
  return s < 120 ? "−" + s + " s" : "−" + Math.round(s / 60) + " min";
}

// maxLag is the follower's --max-lag from its last /status (null: a
// primary, or not said): the lag chart draws it as the line a lag must not
// cross for the store to stay ready.
let maxLag = null;

// chart draws series (points {t, v}, v null: unknown) into svg over the
// time domain [t0, t1]; unknown stretches are shaded; limit (null: none)
// is drawn as a dashed line, labelled.
function chart(svg, points, cls, t0, t1, limit) {
  svg.replaceChildren();
  svg.dataset.points = String(points.filter((p) => p.v !== null).length);
  const known = points.filter((p) => p.v !== null).map((p) => p.v);
  const ymax = niceMax(Math.max(0, limit === null ? 0 : limit * 1.25, ...known));
  const x = (t) => ML + (W - ML - MR) * (t1 === t0 ? 1 : (t - t0) / (t1 - t0));
  const y = (v) => MT + (H - MT - MB) * (1 - v / ymax);
  for (const f of [0, 0.5, 1]) {
    const v = ymax * f;
    svg.append(svgEl("line", { class: "grid", x1: ML, x2: W - MR, y1: y(v), y2: y(v) }));
    const lab = svgEl("text", { class: "axis", x: ML - 6, y: y(v) + 4, "text-anchor": "end" });
    lab.textContent = fmtAxis(v);
    svg.append(lab);
  }
  if (limit !== null) {
    svg.dataset.limit = String(limit);
    svg.append(svgEl("line", { class: "limit", x1: ML, x2: W - MR, y1: y(limit), y2: y(limit) }));
    const lab = svgEl("text", { class: "axis limit-label", x: W - MR, y: y(limit) - 4, "text-anchor": "end" });
    lab.textContent = "max lag " + limit;
    svg.append(lab);
  }
  if (points.length === 0) {
    const e = svgEl("text", { class: "empty", x: (ML + W - MR) / 2, y: H / 2, "text-anchor": "middle" });
    e.textContent = "no samples yet";
    svg.append(e);
    return;
  }
  for (const [f, anchor] of [[0, "start"], [0.5, "middle"], [1, "end"]]) {
    const t = t0 + (t1 - t0) * f;
    const lab = svgEl("text", { class: "axis", x: x(t), y: H - 6, "text-anchor": anchor });
    lab.textContent = relLabel(t1 - t);
    svg.append(lab);
  }
  // Unknown stretches first, under the line.
  for (let i = 0; i < points.length; i++) {
    if (points[i].v !== null) continue;
    const a = i > 0 ? points[i - 1].t : points[i].t;
    const b = i + 1 < points.length ? points[i + 1].t : points[i].t;
    svg.append(svgEl("rect", { class: "unknown", x: x(a), y: MT, width: Math.max(1, x(b) - x(a)), height: H - MT - MB }));
  }
  let d = "", pen = false;
  for (const p of points) {
    if (p.v === null) { pen = false; continue; }
    d += (pen ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p.v).toFixed(1);
    pen = true;
  }
  if (d) svg.append(svgEl("path", { class: cls, d }));
}

function renderCharts() {
  const n = samples.length;
  const t1 = n ? samples[n - 1].t : 0;
  const t0 = n ? Math.min(samples[0].t, t1 - MIN_SPAN_MS) : 0;
  const lag = samples.map((s) => ({ t: s.t, v: s.lag_known ? s.lag : null }));
  const rate = [];
  for (let i = 1; i < n; i++) {
    const j = Math.max(0, i - RATE_WINDOW);
    const dt = (samples[i].t - samples[j].t) / 1000;
    const dc = samples[i].committed - samples[j].committed;
    // A tip that went down (a restored store) is not negative throughput.
    rate.push({ t: samples[i].t, v: dt > 0 && dc >= 0 ? dc / dt : null });
  }
  chart($("chart-lag"), lag, "lag", t0, t1, maxLag);
  chart($("chart-rate"), rate, "rate", t0, t1, null);
  const last = n ? samples[n - 1] : null;
  $("lag-now").textContent = last ? (last.lag_known ? "latest sample " + num(last.lag) : "latest sample: unknown (shaded)") : "";
  const r = rate.length ? rate[rate.length - 1].v : null;
  $("rate-now").textContent = r === null ? "" : "latest " + r.toFixed(1) + " (mean over " + ago(RATE_WINDOW * everyMS) + ")";
  $("span").textContent = n ? "last " + ago(t1 - t0) + ", a sample every " + ago(everyMS) + ", " + ago(spanMS) + " kept" : "";
}

refresh();
