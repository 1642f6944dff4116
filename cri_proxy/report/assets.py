"""The report pages' inline style and script, our own small code (no library): the script
reads the page's JSON block and draws the charts (line and stacked-bar SVG on one time
axis), the pods' waterfalls, sortable and filterable tables, and a call's details on demand.
Both reports share this part; scripts.py adds what each draws. page.py allows exactly the
style and the script by hash in the page's Content-Security-Policy."""

STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em;color:#222;background:#fff}
h1{font-size:1.5em;margin:.6em 0 .2em}h2{font-size:1.2em;margin:1.6em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:.8em 0 .2em}#meta{color:#555;margin:.2em 0}nav a{margin-right:1em}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4;cursor:pointer;user-select:none}th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}tr.bad td{background:#fff0f0}
tr.differed td{background:#fff6e6}tr.failed td{background:#fff0f0}
.tablewrap{max-height:32em;overflow:auto;display:inline-block;max-width:100%}
input.filter{display:block;margin:.3em 0;padding:2px 4px;width:20em}.note{color:#666;font-size:.9em}
svg.chart{width:100%;max-width:1000px;display:block}svg text{font:11px system-ui,sans-serif;fill:#444}
.legend{font-size:.85em;margin:0 0 .6em}.legend span{margin-right:1em;white-space:nowrap}
.small{display:inline-block;width:49%;min-width:420px;vertical-align:top}
a.call{cursor:pointer;color:#0645ad}details{margin:.2em 0}summary{cursor:pointer}
#detail{position:fixed;top:0;right:0;width:min(46em,60%);height:100%;overflow:auto;background:#fdfdfd;
border-left:2px solid #888;padding:0 1em 2em;box-shadow:-4px 0 12px #0002}
pre{background:#f6f6f6;padding:.4em;white-space:pre-wrap;word-break:break-all;font-size:12px;margin:.2em 0}
button{cursor:pointer}.bad{color:#b00}.ok{color:#080}.warn{color:#b60}.grey{color:#888}"""

COMMON_SCRIPT = r"""
"use strict";
const D = JSON.parse(document.getElementById("report-data").textContent);
const SVGNS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#7f7f7f","#bcbd22","#17becf"];
const main = document.getElementById("main");
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) {
    if (k === "text") e.textContent = attrs[k]; else if (k === "cls") e.className = attrs[k]; else e.setAttribute(k, attrs[k]);
  }
  for (const c of kids) if (c !== null && c !== undefined) e.append(c);
  return e;
}
function sv(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function when(t) { return t == null ? "" : new Date(t * 1000).toISOString().replace("T", " ").slice(0, 23); }
function ms(v) {
  if (v == null) return "";
  if (v < 10) return v.toFixed(2) + " ms";
  if (v < 10000) return v.toFixed(0) + " ms";
  return secs(v / 1000);
}
function secs(s) {
  if (s == null) return "";
  if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 0) + " ms";
  if (s < 120) return s.toFixed(s < 10 ? 2 : 1) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function num(v) { return v == null ? "" : v.toLocaleString("en"); }
function section(id, title, ...kids) {
  const s = el("section", {id: id}, el("h2", {text: title}), ...kids);
  main.append(s);
  document.getElementById("nav").append(el("a", {href: "#" + id, text: title}));
  return s;
}
function note(text) { return el("p", {cls: "note", text: text}); }
// A table whose header cells sort (click again: the other way) and whose rows a filter box hides.
function table(columns, rows, opts) {
  opts = opts || {};
  const body = el("tbody");
  const trs = rows.map(r => {
    const tr = el("tr", {cls: opts.rowClass ? opts.rowClass(r) : ""});
    for (const c of columns) {
      const v = c.get(r), shown = c.fmt ? c.fmt(v, r) : (v == null ? "" : String(v));
      tr.append(el("td", {cls: c.num ? "num" : ""}, shown));
    }
    tr.row = r; tr.search = tr.textContent.toLowerCase(); body.append(tr);
    return tr;
  });
  const head = el("tr");
  columns.forEach(c => {
    const th = el("th", {cls: c.num ? "num" : "", text: c.name});
    th.addEventListener("click", () => {
      const up = !th.classList.contains("asc");
      head.querySelectorAll("th").forEach(h => h.classList.remove("asc", "desc"));
      th.classList.add(up ? "asc" : "desc");
      trs.sort((a, b) => {
        const x = c.get(a.row), y = c.get(b.row);
        if (x == null || y == null) return (x == null) - (y == null);
        return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
      });
      body.append(...trs);
    });
    head.append(th);
  });
  const filter = el("input", {type: "search", cls: "filter", placeholder: "filter these " + rows.length + " rows"});
  filter.addEventListener("input", () => {
    const q = filter.value.toLowerCase();
    for (const tr of trs) tr.hidden = q !== "" && !tr.search.includes(q);
  });
  return el("div", {}, rows.length > 8 ? filter : null,
            el("div", {cls: "tablewrap"}, el("table", {}, el("thead", {}, head), body)));
}
function col(name, get, fmt, isNum) { return {name: name, get: get, fmt: fmt, num: !!isNum}; }
function callLink(id, text) {
  if (id == null) return "";
  const a = el("a", {cls: "call", href: "#call-" + id, text: text || "#" + id});
  a.addEventListener("click", ev => { ev.preventDefault(); showCall(id); });
  return a;
}
function pretty(text) {
  if (text == null) return "(over the page's budget: see below)";
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
}
function showCall(id, known) {
  const box = document.getElementById("detail");
  const c = (D.calls || {})[id];
  const close = el("button", {text: "close"});
  close.addEventListener("click", () => { box.hidden = true; });
  box.replaceChildren(el("p", {}, close), el("h2", {text: "call " + id + (c ? " " + c.m : known ? " " + known : "")}));
  const ask = "cri-proxy query --db " + (D.source || "calls.db") +
      " \"SELECT direction, idx, json FROM call_messages WHERE call_id = " + id + "\"";
  if (!c) { box.append(note("This call's details are not embedded (the page's budget); ask the recording:"), el("pre", {text: ask})); box.hidden = false; return; }
  const facts = [["started", when(c.t)], ["duration", ms(c.ms)], ["status", c.st + (c.msg ? ": " + c.msg : "")],
    ["exit code", c.ex], ["path", c.path], ["session", c.s], ["pod", c.pod], ["sandbox", c.sb], ["container", c.ct],
    ["image", c.img], ["api", (c.api || "") + (c.up && c.up !== c.api ? " -> " + c.up : "")],
    ["redacted", c.redacted ? "yes: secrets were blanked before storing" : null], ["notes", (c.notes || []).join("; ")]];
  box.append(el("table", {}, el("tbody", {}, ...facts.filter(f => f[1] != null && f[1] !== "")
    .map(f => el("tr", {}, el("th", {text: f[0]}), el("td", {text: String(f[1])}))))));
  for (const [side, ids, more] of [["request", c.req, c.more_request], ["response", c.resp, c.more_response]]) {
    box.append(el("h3", {text: side + (ids.length > 1 ? "s (" + ids.length + ")" : "")}));
    if (!ids.length) box.append(note("no " + side + " message"));
    for (const p of ids) box.append(el("pre", {text: pretty(p == null ? null : D.texts[p])}));
    if (more || ids.includes(null)) box.append(note("more in the recording:"), el("pre", {text: ask}));
  }
  for (const [name, pairs] of [["request metadata", c.md], ["trailers", c.tr]]) {
    if (pairs && pairs.length) box.append(el("h3", {text: name}), el("pre", {text: pairs.map(p => p[0] + ": " + p[1]).join("\n")}));
  }
  box.hidden = false;
}
// A chart over the report's time axis: lines (null breaks a line) or stacked bars, one series each.
function chart(series, opts) {
  const A = D.axis, W = 1000, H = opts.height || 170, L = 62, R = 8, T = 8, B = 20, n = A.count;
  const x = i => L + (W - L - R) * i / n, xt = t => L + (W - L - R) * (t - A.start) / (A.width * n);
  let top = 0;
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (const s of series) { const v = s.values[i] || 0; if (opts.bars) sum += v; else top = Math.max(top, v); }
    top = Math.max(top, sum);
  }
  if (opts.threshold && opts.threshold <= top * 1.5) top = Math.max(top, opts.threshold);
  top = niceTop(top || 1);
  const y = v => T + (H - T - B) * (1 - v / top);
  const svg = sv("svg", {"class": "chart", viewBox: "0 0 " + W + " " + H, role: "img"});
  for (let k = 0; k <= 4; k++) {
    const v = top * k / 4;
    svg.append(sv("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#eee"}),
               sv("text", {x: L - 4, y: y(v) + 4, "text-anchor": "end"}, (opts.yfmt || fmtNum)(v)));
  }
  for (let k = 0; k <= 5; k++) {
    const t = A.start + A.width * n * k / 5;
    svg.append(sv("text", {x: L + (W - L - R) * k / 5, y: H - 5, "text-anchor": k ? (k === 5 ? "end" : "middle") : "start"}, axisTime(t)));
  }
  for (const sp of opts.spans || []) {
    const x0 = xt(sp.start), x1 = Math.max(xt(sp.end == null ? sp.start : sp.end), x0 + 2);
    const r = sv("rect", {x: x0, y: T, width: x1 - x0, height: H - T - B, fill: "#d62728", "fill-opacity": 0.15});
    r.append(sv("title", {}, sp.title)); svg.append(r);
  }
  if (opts.threshold && opts.threshold <= top)
    svg.append(sv("line", {x1: L, x2: W - R, y1: y(opts.threshold), y2: y(opts.threshold), stroke: "#d62728", "stroke-dasharray": "5 4"}),
               sv("text", {x: W - R - 2, y: y(opts.threshold) - 3, "text-anchor": "end", fill: "#d62728"}, opts.thresholdLabel || ""));
  const base = new Array(n).fill(0);
  series.forEach((s, k) => {
    const color = s.color || COLORS[k % COLORS.length];
    if (opts.bars) {
      for (let i = 0; i < n; i++) {
        const v = s.values[i]; if (!v) continue;
        svg.append(sv("rect", {x: x(i), width: Math.max(x(i + 1) - x(i) - 0.5, 0.8), y: y(base[i] + v), height: y(base[i]) - y(base[i] + v), fill: color}));
        base[i] += v;
      }
      return;
    }
    let d = "", pen = false;
    for (let i = 0; i < n; i++) {
      const v = s.values[i];
      if (v == null) { pen = false; continue; }
      const cx = ((x(i) + x(i + 1)) / 2).toFixed(1), cy = y(v).toFixed(1);
      d += (pen ? "L" : "M") + cx + "," + cy; pen = true;
      if ((i === 0 || s.values[i - 1] == null) && (i === n - 1 || s.values[i + 1] == null))
        svg.append(sv("circle", {cx: cx, cy: cy, r: 2.5, fill: color}));  // a lone point: no line to draw
    }
    if (d) svg.append(sv("path", {d: d, fill: "none", stroke: color, "stroke-width": s.width || 1.5, "stroke-dasharray": s.dash || ""}));
  });
  for (let i = 0; i < n; i++) {  // hover: the bucket's time and every series' value
    const parts = series.map(s => s.values[i] == null ? null : s.name + ": " + (opts.yfmt || fmtNum)(s.values[i])).filter(p => p);
    if (!parts.length) continue;
    const r = sv("rect", {x: x(i), y: T, width: x(i + 1) - x(i), height: H - T - B, fill: "transparent"});
    r.append(sv("title", {}, when(A.start + i * A.width) + "\n" + parts.join("\n"))); svg.append(r);
  }
  const legend = el("div", {cls: "legend"}, ...series.map((s, k) => el("span", {},
    swatch(s.color || COLORS[k % COLORS.length]), " " + s.name)));
  return el("div", {}, opts.title ? el("h3", {text: opts.title}) : null, svg, series.length > 1 || opts.legend ? legend : null);
}
function swatch(color) {
  const s = sv("svg", {width: 10, height: 10}); s.append(sv("rect", {width: 10, height: 10, fill: color})); return s;
}
function niceTop(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v))), f = v / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}
function fmtNum(v) { return v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 1) + "k" : String(+v.toFixed(v < 10 ? 2 : 0)); }
function axisTime(t) {
  const s = new Date(t * 1000).toISOString(), span = D.axis.width * D.axis.count;
  return span < 120 ? s.slice(11, 23) : span < 172800 ? s.slice(11, 19) : s.slice(5, 16).replace("T", " ");
}
"""
