"""What each report draws, in the page's script: the node report (charts on the shared time
axis, relists, top errors, probes, the slowest calls, pods and their waterfalls) and the
replay report (differences first, the fields that differ, matched and skipped calls
summarised). `SCRIPT` is the whole inline script: assets.py's shared part, then these."""

from cri_proxy.report.assets import COMMON_SCRIPT

NODE_SCRIPT = r"""
function nodeReport() {
  const W = D.window, A = D.axis;
  document.getElementById("meta").textContent = D.source + ": " + num(W.calls) + " calls" +
    (W.calls ? " from " + when(W.first) + " to " + when(W.last) + " UTC (" + secs(W.last - W.first) + "), in buckets of " + secs(A.width) : "") +
    "; sessions " + D.sessions.map(s => s[0]).join(", ") + (D.selection ? "; " + D.selection : "");
  if (!W.calls) { main.append(note("No calls in the selection.")); return; }
  const top = D.methods.slice(0, 8), rest = D.methods.slice(8);
  const rate = top.map(m => ({name: m.method, values: m.counts.map(c => c / A.width)}));
  if (rest.length) rate.push({name: "other (" + rest.length + " methods)", color: "#aaa",
    values: rest.reduce((acc, m) => acc.map((v, i) => v + m.counts[i] / A.width), new Array(A.count).fill(0))});
  section("rates", "Calls per second", chart(rate, {legend: true, bars: true}),
    table([col("method", r => r.method), col("calls", r => r.calls, num, true), col("p50", r => r.total_p50, ms, true),
           col("p99", r => r.total_p99, ms, true), col("max", r => r.max_ms, ms, true)], D.methods));
  const lat = section("latency", "Latency per method (p50, p99)");
  for (const m of D.methods.slice(0, 16)) lat.append(el("div", {cls: "small"}, chart(
    [{name: "p99", values: m.p99, color: "#ff7f0e"}, {name: "p50", values: m.p50, color: "#1f77b4"}],
    {title: m.method + ": p50 " + ms(m.total_p50) + ", p99 " + ms(m.total_p99) + ", max " + ms(m.max_ms), height: 120, yfmt: ms})));
  if (D.methods.length > 16) lat.append(note(D.methods.length - 16 + " more methods: see the table above"));
  problems();
  relists();
  const slow = D.slowest;
  section("slowest", "Slowest calls", slow.length ? table([col("call", r => r[0], v => callLink(v), true), col("started", r => r[1], when),
    col("duration", r => r[2], ms, true), col("method", r => r[3]), col("status", r => r[4]), col("pod", r => r[5]),
    col("container", r => r[6], v => v ? v.slice(0, 13) : "")], slow) : note("no finished calls"));
  pods();
}
function problems() {
  const P = D.problems, Lo = D.losses, B = P.per_bucket;
  const series = [{name: "gRPC errors", values: B.grpc_error, color: "#d62728"}, {name: "unfinished calls", values: B.unfinished, color: "#9467bd"},
    {name: "non-zero exec exits", values: B.nonzero_exit, color: "#ff7f0e"}, {name: "calls lost by the recorder", values: Lo.per_bucket, color: "#222"}];
  section("problems", "Errors and losses",
    note(num(P.total) + " calls went wrong (the problems view: gRPC errors, calls that never finished, exec probes that exited non-zero); " +
         num(Lo.lost) + " calls were relayed but not recorded, in " + num(Lo.episode_count) + " loss episodes (shaded)."),
    chart(series, {bars: true, legend: true, spans: Lo.episodes.map(e => ({start: e.start, end: e.end,
      title: "session " + e.session + ": " + e.lost + " calls lost (" + e.reason + ") " + when(e.start) + " to " + when(e.end)}))}));
  const groups = P.groups;
  section("errors", "Top errors", groups.length ? table([col("calls", g => g.count, num, true), col("method", g => g.method),
    col("kind", g => g.kind), col("status", g => g.status), col("message", g => g.message), col("pods", g => g.pods, num, true),
    col("first", g => g.first, when), col("last", g => g.last, when),
    col("examples", g => g.examples[0], (v, g) => el("span", {}, ...g.examples.map(i => [callLink(i), " "]).flat()))],
    groups, {rowClass: () => "bad"}) : note("nothing went wrong"),
    P.group_count > groups.length ? note(P.group_count - groups.length + " rarer kinds of error are left out") : null);
  const probes = D.probes;
  section("probes", "Failing exec probes", probes.length ? table([col("failures", p => p.count, num, true), col("pod", p => p.pod),
    col("container", p => p.container_id, v => v ? v.slice(0, 13) : ""), col("command", p => JSON.stringify(p.cmd)),
    col("exit codes", p => p.exit_codes.join(", ")), col("last stderr", p => p.last_stderr), col("first", p => p.first, when),
    col("last", p => p.last, when), col("calls", p => p.last_call, (v, p) => el("span", {}, ...p.examples.map(i => [callLink(i), " "]).flat()))],
    probes) : note("no exec probe exited non-zero"));
}
function relists() {
  const R = D.relists;
  section("relists", "Relist rhythm",
    note("A gap is the time from one List call to the next of the same method (per session). The kubelet relists pods and containers every second; relists that stop for 3 minutes mark the node NotReady (PLEG is not healthy)."),
    R.length ? table([col("method", r => r.method), col("calls", r => r.calls, num, true), col("gap p50", r => r.gap_p50, secs, true),
      col("gap p99", r => r.gap_p99, secs, true), col("longest gap", r => r.max_gap, secs, true), col("ended at", r => r.max_gap_at, when),
      col("gaps over 3 min", r => r.over_limit, num, true), col("slowest call", r => r.slowest_ms, ms, true)], R,
      {rowClass: r => r.over_limit ? "bad" : ""}) : note("no List calls in the selection"),
    R.length ? chart(R.map(r => ({name: r.method + " (longest gap per bucket)", values: r.bucket_max_gap})),
      {yfmt: secs, threshold: 180, thresholdLabel: "PLEG limit: 3 min", legend: true}) : null);
}
function pods() {
  const P = D.pods, wf = {};
  P.waterfalls.forEach(w => { wf[w.key] = w; });
  const holders = {};
  const link = (key, text) => {
    if (!wf[key]) return text;
    const a = el("a", {cls: "call", href: "#pod-" + key, text: text});
    a.addEventListener("click", ev => { ev.preventDefault(); const d = holders[key]; d.open = true; d.scrollIntoView(); });
    return a;
  };
  const s = section("pods", "Pods",
    note(num(P.count) + " pods" + (P.count > P.waterfalls.length ? "; waterfalls for " + P.waterfalls.length + " (those with problems first, then the latest)" : "") +
         ". In a waterfall each bar is a call (click it for its request and response); grey bars summarise repeated polls and probes (from the first to the last)."),
    P.index.length ? table([col("pod", r => r[1], (v, r) => link(r[0], v)), col("first seen", r => r[2], when),
      col("wall time", r => r[3], secs, true), col("calls", r => r[4], num, true), col("problems", r => r[5], num, true),
      col("containers", r => r[6], num, true)], P.index, {rowClass: r => r[5] ? "bad" : ""}) : note("no calls about pods"));
  let opened = false;
  for (const w of P.waterfalls) {
    const d = el("details", {id: "pod-" + w.key}, el("summary", {text: w.label + ": " + secs(w.wall) + ", " + (w.rows.length + w.cut) + " calls" + (w.polls.length ? " and " + w.polls.length + " kinds of poll" : "")}));
    d.addEventListener("toggle", () => { if (d.open && !d.drawn) { d.drawn = true; d.append(waterfall(w)); } });
    holders[w.key] = d; s.append(d);
    if (!opened && w.rows.length > 1) { d.open = true; opened = true; }
  }
}
function waterfall(w) {
  const rows = w.rows.map(r => ({id: r[0], label: r[1] + (r[5] ? " " + r[5] : ""), start: r[2], ms: r[3], status: r[4], kind: r[6]}));
  for (const p of w.polls) rows.push({id: p[7], label: p[0] + (p[1] ? " " + p[1] : "") + " \u00d7" + p[2], start: p[3] - w.first, span: p[4], ms: p[6], status: "max", poll: true});
  rows.sort((a, b) => a.start - b.start);
  const wall = Math.max(w.wall, 0.001), Wd = 1000, L = 290, R = 76, RH = 15, T = 20, H = T + rows.length * RH + 4;
  const x = s => L + (Wd - L - R) * s / wall;
  const svg = sv("svg", {"class": "chart", viewBox: "0 0 " + Wd + " " + H, role: "img"});
  for (let k = 0; k <= 4; k++) svg.append(sv("line", {x1: x(wall * k / 4), x2: x(wall * k / 4), y1: T - 4, y2: H, stroke: "#eee"}),
    sv("text", {x: x(wall * k / 4), y: 12, "text-anchor": k ? (k === 4 ? "end" : "middle") : "start"}, "+" + secs(wall * k / 4)));
  rows.forEach((r, i) => {
    const yy = T + i * RH, x0 = x(r.start);
    const width = Math.max(r.poll ? x(r.start + r.span) - x0 : (Wd - L - R) * r.ms / 1000 / wall, 1.5);
    const color = r.kind ? "#d62728" : r.poll ? "#bbb" : "#2c7fb8";
    const g = sv("g", {"class": "bar"});
    g.append(sv("text", {x: 4, y: yy + 11}, r.label.length > 44 ? r.label.slice(0, 43) + "\u2026" : r.label),
      sv("rect", {x: x0, y: yy + 2, width: Math.min(width, Wd - R - x0), height: RH - 4, fill: color}),
      sv("text", {x: Wd - R + 4, y: yy + 11}, (r.poll ? "max " : "") + ms(r.ms)),
      sv("title", {}, r.label + "\n+" + secs(r.start) + (r.poll ? " for " + secs(r.span) : "") + ", " + ms(r.ms) + " " + (r.kind || r.status)));
    if (r.id != null) g.addEventListener("click", () => showCall(r.id, r.label));
    svg.append(g);
  });
  return el("div", {}, svg, w.cut ? note(w.cut + " more calls of this pod are not drawn") : null);
}
"""

REPLAY_SCRIPT = r"""
function replayReport() {
  const S = D.summary;
  document.getElementById("meta").textContent = "Replayed " + D.source + " (sessions " + D.sessions.join(", ") + ") against " + D.target +
    " in " + secs(D.elapsed_s) + ": " + num(S.calls) + " calls, " + num(S.matched) + " matched, " + num(S.differed) + " differed, " +
    num(S.failed) + " failed, " + num(S.skipped) + " skipped; " + num(S.redacted_sent) + " sent with redacted secrets. Replay " + D.recorded_where + ".";
  const rows = D.differing;
  section("differences", "Calls that differed or failed (" + num(D.differing_count) + ")",
    rows.length ? table([col("call", r => r[0], null, true), col("method", r => r[1]), col("result", r => r[2]), col("why", r => r[3]),
      col("recorded", r => r[4]), col("replayed", r => r[5]), col("differences", r => r[6].length, (v, r) => diffs(r[6]))],
      rows, {rowClass: r => r[2]}) : note("Every replayed call matched the recording."),
    D.differing_count > rows.length ? note(D.differing_count - rows.length + " more are summarised below (fields that differ) and listed in the JSON report (--report FILE.json)") : null);
  if (D.fields.length) section("fields", "Fields that differ", table([col("method", r => r[0]), col("field", r => r[1]),
    col("calls", r => r[2], num, true), col("example calls", r => r[3].join(" "))], D.fields));
  section("methods", "Per method", table([col("method", r => r[0]), col("calls", r => r[1], num, true), col("matched", r => r[2], num, true),
    col("differed", r => r[3], num, true), col("failed", r => r[4], num, true), col("skipped", r => r[5], num, true)], D.methods,
    {rowClass: r => r[4] ? "failed" : r[3] ? "differed" : ""}));
  section("matched", "Matched calls", D.matched.length ? table([col("method", r => r[0]), col("calls", r => r[1], num, true),
    col("p50", r => r[2], ms, true), col("max", r => r[3], ms, true)], D.matched) : note("none matched"));
  if (D.skipped.length) section("skipped", "Skipped calls", table([col("method", r => r[0]), col("why", r => r[1]),
    col("calls", r => r[2], num, true), col("example call", r => r[3], null, true)], D.skipped));
}
function diffs(list) {
  const lines = list.map(d => (d[0] || "(message)") + ":\n  recorded " + d[1] + "\n  replayed " + d[2]);
  if (list.length <= 2) return el("pre", {text: lines.join("\n")});
  return el("details", {}, el("summary", {text: list.length + " fields: " + list.slice(0, 3).map(d => d[0]).join(", ")}), el("pre", {text: lines.join("\n")}));
}
"""

SCRIPT = COMMON_SCRIPT + NODE_SCRIPT + REPLAY_SCRIPT + """
if (D.kind === "replay") replayReport(); else nodeReport();
"""
