"""The what-if report's charts, laid out in Python and drawn as inline SVG by the template.

Every coordinate is computed here, so the page needs no script: it reads the same in a mail
client, a ticket preview or a browser with JavaScript off. Each rule has one colour, derived
from its name, so `reasoning-spend` is the same colour in every report anyone sends.
"""

from __future__ import annotations

import colorsys
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from enforcer.tools.policy_diff import PolicyDiff, Timeline

WIDTH = 960


def rule_colour(rule: str) -> str:
    """A colour of the rule's own: the hue from a hash of its name, saturation and lightness
    fixed so every rule reads on white and no two differ only in brightness."""
    digest = hashlib.sha256(rule.encode()).digest()
    hue = int.from_bytes(digest[:2], "big") / 65536
    lightness = 0.42 + (digest[2] % 3) * 0.06
    r, g, b = colorsys.hls_to_rgb(hue, lightness, 0.62)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str
    opacity: float = 1.0
    css: str = "bar"
    series: str = ""


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "start"
    css: str = ""


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    css: str = "grid"


@dataclass
class Chart:
    name: str
    label: str  # the aria-label: what the chart shows
    width: float
    height: float
    rects: list[Rect] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)

    @property
    def bars(self) -> int:
        return sum(1 for r in self.rects if r.css == "bar")


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts))


def timeline_charts(t: Timeline, height: float = 220) -> dict[str, Chart]:
    """One stacked bar chart per policy, on one time axis and one vertical scale."""
    left, right, top, bottom = 44.0, 12.0, 10.0, 26.0
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    n = max(len(t.old), len(t.new), 1)
    peak = max([sum(row) for row in (*t.old, *t.new)] + [1])
    charts = {}
    for side, rows in (("old", t.old), ("new", t.new)):
        chart = Chart(f"timeline-{side}", f"{side} policy: decisions over time", WIDTH, height)
        chart.lines.append(Line(left, top + plot_h, WIDTH - right, top + plot_h, "axis"))
        for share in (0.5, 1.0):
            y = top + plot_h - share * plot_h
            chart.lines.append(Line(left, y, WIDTH - right, y))
            chart.texts.append(Text(left - 6, y + 4, f"{share * peak:g}", "end"))
        chart.texts.append(Text(left - 6, top + plot_h + 4, "0", "end"))
        for tick in range(5):
            b = round(tick * (n - 1) / 4)
            anchor = "start" if tick == 0 else "end" if tick == 4 else "middle"
            x = left + (b + 0.5) * plot_w / n
            chart.texts.append(Text(x, height - 8, _clock(t.start + b * t.bin_s), anchor))
        bar_w = max(1.0, plot_w / n - 1)
        for b, row in enumerate(rows):
            y = top + plot_h
            for i, count in enumerate(row):
                if not count:
                    continue
                s = t.series[i]
                h = count / peak * plot_h
                y -= h
                chart.rects.append(
                    Rect(
                        round(left + b * plot_w / n, 2),
                        round(y, 2),
                        round(bar_w, 2),
                        round(max(h, 0.5), 2),
                        rule_colour(s.rule),
                        f"{_clock(t.start + b * t.bin_s)}  {s.label}: {count}",
                        0.45 if s.mode == "shadow" else 1.0,
                        series=s.label,
                    )
                )
        if not chart.rects:
            chart.texts.append(Text(WIDTH / 2, top + plot_h / 2, "no decisions", "middle"))
        charts[side] = chart
    return charts


def delta_chart(diff: PolicyDiff, rules: list[dict[str, Any]]) -> Chart:
    """Per rule, decisions and subjects under the old policy (pale) and the new (full colour),
    side by side on two panels; every rule of either policy has a row, firing or not."""
    label_w, gap, row_h, top = 230.0, 24.0, 34.0, 28.0
    panel_w = (WIDTH - label_w - gap - 60) / 2
    height = top + row_h * max(len(rules), 1) + 8
    chart = Chart("delta", "per rule: decisions and subjects, old against new", WIDTH, height)
    panels = (("decisions", label_w), ("subjects", label_w + panel_w + gap))
    for metric, x0 in panels:
        peak = max([max(r["old"][metric], r["new"][metric]) for r in rules] + [1])
        chart.texts.append(Text(x0, 16, f"{metric} (pale: old, full: new)", css="head"))
        chart.lines.append(Line(x0, top - 4, x0, height - 8, "axis"))
        for i, row in enumerate(rules):
            y = top + i * row_h
            for j, side in enumerate(("old", "new")):
                value = row[side][metric]
                w = value / peak * panel_w
                bar_y = y + 3 + j * 13
                title = f"{row['rule']} {metric} under the {side} policy: {value:,}"
                if value:
                    chart.rects.append(
                        Rect(
                            x0,
                            bar_y,
                            round(max(w, 1.0), 2),
                            11,
                            row["colour"],
                            title,
                            0.4 if side == "old" else 1.0,
                            series=f"{row['rule']} {side}",
                        )
                    )
                chart.texts.append(Text(round(x0 + w + 4, 2), bar_y + 9, f"{value:,}", css="n"))
    for i, row in enumerate(rules):
        y = top + i * row_h
        mark = f" ({row['edited']})" if row["edited"] else ""
        chart.texts.append(Text(label_w - 10, y + 18, row["rule"] + mark, "end", "rule"))
        chart.rects.append(Rect(label_w - 8, y + 9, 6, 12, row["colour"], row["rule"], css="key"))
    return chart
