"""The what-if report's page: one self-contained HTML file with inline CSS and script.

Nothing is fetched (no external scripts, styles or fonts), so the report opens from a mail
attachment or a ticket without a server. The script draws the timelines as inline SVG from the
JSON embedded in the page, then marks <body data-rendered="true"> so a headless browser test
can tell the charts were drawn. Kept as a Python string so it ships inside the package.
"""

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<style>
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
         color: #1d232b; background: #fff; max-width: 1100px; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  h2 { font-size: 16px; margin: 28px 0 8px; }
  .sub { color: #5b6570; margin: 0 0 16px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e6ea;
           vertical-align: top; }
  th { font-weight: 600; background: #f6f7f9; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .up { color: #b3261e; }
  .down { color: #1b7f3b; }
  tr.shadow td { color: #5b6570; }
  code { font: 12px ui-monospace, "SFMono-Regular", Menlo, monospace; }
  figure { margin: 8px 0 16px; }
  figcaption { font-weight: 600; margin-bottom: 4px; }
  svg.timeline { display: block; width: 100%; height: auto; background: #fbfbfc;
                 border: 1px solid #e3e6ea; }
  svg text { font: 11px system-ui, sans-serif; fill: #5b6570; }
  ul.legend { list-style: none; padding: 0; margin: 4px 0; display: flex; flex-wrap: wrap;
              gap: 6px 16px; }
  ul.legend li { display: flex; align-items: center; gap: 6px; }
  ul.legend .swatch { width: 12px; height: 12px; display: inline-block; border-radius: 2px; }
</style>
</head>
<body data-rendered="false">
<h1>{{title}}</h1>
<p class="sub">{{events}} events from <code>{{events_path}}</code>, replayed through the
worker's own pipeline under each policy.</p>

<table>
  <tr><th></th><th>policy</th><th>decisions</th><th>subjects acted on</th>
      <th>requests denied</th></tr>
  {{summary_rows}}
</table>

<h2>Decisions over time, per rule and action <small class="sub">(event time, UTC;
one bar per {{bin_s}} s)</small></h2>
<ul class="legend" id="legend"></ul>
<figure><figcaption>old: <code>{{old_tag}}</code></figcaption><div id="chart-old"></div></figure>
<figure><figcaption>new: <code>{{new_tag}}</code></figcaption><div id="chart-new"></div></figure>

<h2>Decisions by rule and action</h2>
<table>
  <tr><th>mode</th><th>rule</th><th>action</th><th>old</th><th>new</th><th>change</th></tr>
  {{count_rows}}
</table>

<h2>Subjects whose action changes ({{change_count}})</h2>
<table>
  <tr><th>subject</th><th>old</th><th>new</th><th>why: the decisions that differ</th></tr>
  {{change_rows}}
</table>
{{more}}

<script type="application/json" id="report-data">{{data}}</script>
<script>
"use strict";
(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var PALETTE = ["#d1495b", "#edae49", "#00798c", "#30638e", "#6a4c93", "#2a9d8f",
                 "#e76f51", "#8d99ae", "#3d405b", "#81b29a", "#f4a261", "#588157"];
  var W = 960, H = 240, LEFT = 44, RIGHT = 12, TOP = 10, BOTTOM = 26;

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function color(i) { return PALETTE[i % PALETTE.length]; }
  function clock(seconds) {
    return new Date(seconds * 1000).toISOString().slice(11, 19);
  }

  var legend = document.getElementById("legend");
  data.series.forEach(function (s, i) {
    var item = document.createElement("li");
    var swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = color(i);
    if (s.mode === "shadow") { swatch.style.opacity = "0.45"; }
    item.appendChild(swatch);
    item.appendChild(document.createTextNode(s.label));
    legend.appendChild(item);
  });

  var peak = 1;
  ["old", "new"].forEach(function (side) {
    data.bins[side].forEach(function (row) {
      var total = row.reduce(function (a, b) { return a + b; }, 0);
      if (total > peak) { peak = total; }
    });
  });

  var drawn = 0;
  ["old", "new"].forEach(function (side) {
    var rows = data.bins[side];
    var n = Math.max(rows.length, data.bins.old.length, data.bins.new.length, 1);
    var plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
    var svg = el("svg", {"class": "timeline", "data-side": side,
                         viewBox: "0 0 " + W + " " + H, role: "img",
                         "aria-label": side + " policy: decisions over time"});
    el("line", {x1: LEFT, y1: TOP + plotH, x2: W - RIGHT, y2: TOP + plotH,
                stroke: "#9aa3ad"}, svg);
    [0, 0.5, 1].forEach(function (f) {
      var y = TOP + plotH - f * plotH;
      el("line", {x1: LEFT, y1: y, x2: W - RIGHT, y2: y, stroke: "#e3e6ea"}, svg);
      el("text", {x: LEFT - 6, y: y + 4, "text-anchor": "end"}, svg).textContent =
        String(Number((f * peak).toFixed(1)));
    });
    for (var t = 0; t <= 4; t++) {
      var b = Math.round(t * (n - 1) / 4);
      var x = LEFT + (b + 0.5) * plotW / n;
      var anchor = t === 0 ? "start" : t === 4 ? "end" : "middle";
      el("text", {x: x, y: H - 8, "text-anchor": anchor}, svg).textContent =
        clock(data.start + b * data.bin_s);
    }
    var barW = Math.max(1, plotW / n - 1);
    var bars = 0;
    rows.forEach(function (row, b) {
      var y = TOP + plotH;
      row.forEach(function (count, i) {
        if (!count) { return; }
        var h = count / peak * plotH;
        y -= h;
        var s = data.series[i];
        var rect = el("rect", {"class": "bar", x: LEFT + b * plotW / n, y: y, width: barW,
                               height: Math.max(h, 0.5), fill: color(i),
                               "fill-opacity": s.mode === "shadow" ? 0.45 : 1,
                               "data-series": s.label, "data-count": count}, svg);
        el("title", {}, rect).textContent = clock(data.start + b * data.bin_s) + "  " +
          s.label + ": " + count;
        bars += 1;
      });
    });
    if (!bars) {
      el("text", {x: W / 2, y: TOP + plotH / 2, "text-anchor": "middle"}, svg).textContent =
        "no decisions";
    }
    svg.setAttribute("data-bars", String(bars));
    document.getElementById("chart-" + side).appendChild(svg);
    drawn += bars;
  });
  document.body.setAttribute("data-rendered", "true");
  console.info("enforcer-report: rendered " + drawn + " bars");
})();
</script>
</body>
</html>
"""
