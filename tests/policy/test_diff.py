"""What-if: both policies backtested on the same events, the differences named with their
reasons, the edit summarised, and a self-contained HTML report whose SVG charts render in
headless Chromium with JavaScript off."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from enforcer.core.settings import Settings
from enforcer.engine.policy import load_policy
from enforcer.tools.policy_charts import rule_colour
from enforcer.tools.policy_diff import PolicyDiff, diff_policies
from enforcer.tools.policy_doc import diff_doc, format_text
from enforcer.tools.policy_report import render_html

from ..conftest import ROOT
from .browser import Browser
from .traffic import MIXED, write_events

GOOD = Path(__file__).parent / "good"
OLD, NEW = GOOD / "whatif_old.yaml", GOOD / "whatif_new.yaml"


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_events(tmp_path_factory.mktemp("whatif") / "events.jsonl", MIXED)


@pytest.fixture(scope="module")
async def diff(settings: Settings, events: Path) -> PolicyDiff:
    # Each backtest runs in a Redis namespace of its own and removes it afterwards.
    return await diff_policies(settings, load_policy(OLD), load_policy(NEW), events)


async def test_diff_names_the_subjects_whose_action_changes_with_their_reasons(
    diff: PolicyDiff,
) -> None:
    changes = {
        c.subject: (c.old.enforce, c.old.shadow, c.new.enforce, c.new.shadow) for c in diff.changes
    }
    assert changes == {
        # Between the old threshold (6 rps) and the new (4 rps): newly blocked.
        **{f"api_key:k-medium-{i}": ("none", "none", "block", "throttle") for i in range(3)},
        # Blocked either way; the new shadow rule would also have throttled them.
        **{f"api_key:k-flood-{i}": ("block", "none", "block", "throttle") for i in range(3)},
    }
    assert [c.direction for c in diff.changes[:3]] == [1, 1, 1]  # biggest moves listed first
    medium = diff.changes[0]
    [(label, decision), (shadow_label, shadow_decision)] = medium.evidence()
    assert (label, decision.rule, decision.mode) == ("new", "key-flood", "enforce")
    assert [(r.signal, r.window, r.threshold) for r in decision.reasons] == [("rps", "1m", 4.0)]
    assert 4.0 < decision.reasons[0].value <= 6.0
    assert (shadow_label, shadow_decision.rule, shadow_decision.mode) == (
        "new (shadow)",
        "key-steady",
        "shadow",
    )


async def test_diff_counts_decisions_by_rule_and_action_for_both_policies(diff: PolicyDiff) -> None:
    assert dict(diff.old.counts) == {("enforce", "key-flood", "block"): 3}
    assert dict(diff.new.counts) == {
        ("enforce", "key-flood", "block"): 6,
        ("shadow", "key-steady", "throttle"): 6,
    }
    assert diff.old.events == diff.new.events == 7350
    assert (len(diff.old.affected), len(diff.new.affected)) == (3, 6)
    assert (diff.old.subjects_enforced, diff.new.subjects_enforced) == (3, 6)
    assert diff.new.requests_denied > diff.old.requests_denied > 0
    # The timeline holds every decision of each policy, on one shared time axis.
    assert sum(map(sum, diff.timeline.old)) == 3
    assert sum(map(sum, diff.timeline.new)) == 12
    assert len(diff.timeline.old) == len(diff.timeline.new)


def test_diff_command_prints_the_changes_and_writes_a_self_contained_report(
    isolated: Settings, events: Path, tmp_path: Path
) -> None:
    report = tmp_path / "whatif.html"
    env = {"PATH": "/usr/bin:/bin", **isolated.to_env()}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "enforcer",
            "policy",
            "diff",
            "--events",
            str(events),
            str(OLD),
            str(NEW),
            "--html",
            str(report),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "7,350 events replayed under each policy" in out
    assert re.search(r"enforce\s+key-flood\s+block\s+3\s+6\s+\+3", out)
    assert re.search(r"shadow\s+key-steady\s+throttle\s+0\s+6\s+\+6", out)
    assert "subjects whose action changes: 6 (3 stricter, 0 lighter, 3 in shadow only)" in out
    assert re.search(r"api_key:k-medium-0\s+none -> block \(shadow throttle\)", out)
    assert "new: block by key-flood: rps[1m]" in out and ", threshold > 4" in out
    # The edit itself: the moved threshold, the new rule, and a rule that fires under neither.
    assert "rule key-flood: changed\n      when: rps[1m] > 6 -> rps[1m] > 4" in out
    assert "rule key-steady: added" in out
    assert "rule key-night: changed\n      when: rps[10m] > 1000 -> rps[10m] > 500" in out
    assert re.search(r"key-night \(changed\)\s+0\s+0\s+\+0\s+0\s+0\s+\+0", out)
    page = report.read_text()
    # Nothing to fetch and nothing to run: no scripts, external styles, fonts or images.
    assert not re.search(r"<script|<link|<img|@import|url\(|\bsrc=", page)
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}


def test_diff_command_refuses_a_bad_policy_with_its_line(isolated: Settings, events: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", **isolated.to_env()}
    bad = Path(__file__).parent / "bad" / "misspelled_key.yaml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "enforcer",
            "policy",
            "diff",
            "--events",
            str(events),
            str(OLD),
            str(bad),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{bad}:6:5: rules[0].descripton: unknown key" in done.stderr


def test_diff_json_holds_every_figure_the_text_prints(diff: PolicyDiff) -> None:
    doc = diff_doc(diff)
    text = format_text(doc)
    assert doc["subjects"] | {"items": []} == {
        "changed": 6,
        "stricter": 3,
        "lighter": 0,
        "shadow_only": 3,
        "listed": 6,
        "items": [],
    }
    rules = {r["rule"]: r for r in doc["rules"]}
    assert list(rules) == ["key-flood", "key-night", "key-steady"]
    assert rules["key-night"]["edited"] == "changed"
    assert rules["key-night"]["old"] == rules["key-night"]["new"] == {"decisions": 0, "subjects": 0}
    assert rules["key-flood"]["old"] == {"decisions": 3, "subjects": 3}
    assert rules["key-flood"]["new"] == {"decisions": 6, "subjects": 6}
    # Every number the text prints is in the document, as a figure or in a text it holds.
    numbers = {
        int(n.replace(",", "")) for n in re.findall(r"(?<![\w.\[])[+-]?\d[\d,]*(?![\w.\]])", text)
    }
    flat = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):  # thresholds in conditions, versions, reasons
            flat.update(int(n) for n in re.findall(r"\d+", node))
        elif isinstance(node, bool):
            return
        elif isinstance(node, int):
            flat.update((node, abs(node)))

    walk(doc)
    assert numbers - flat <= {0}, sorted(numbers - flat)


def test_rule_colours_depend_on_the_rule_name_alone() -> None:
    assert (
        rule_colour("key-flood") == rule_colour("key-flood") == "#" + rule_colour("key-flood")[1:]
    )
    colours = {
        rule_colour(name) for name in ("key-flood", "key-steady", "key-night", "reasoning-spend")
    }
    assert len(colours) == 4
    assert re.fullmatch(r"#[0-9a-f]{6}", rule_colour("reasoning-spend"))


# -- the HTML report in a real browser, with JavaScript off ----------------------------------


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit PNG (what Chromium writes), unfiltered."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * channels, [], bytes(width * channels)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b, c = prev[x], prev[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = bytes(line)
    return width, channels, rows


def painted(shot: Path, rgb: str) -> int:
    """How many pixels of the screenshot have the colour (within a little rounding)."""
    width, channels, rows = png_pixels(shot.read_bytes())
    colour = bytes.fromhex(rgb.lstrip("#"))
    return sum(
        1
        for row in rows
        for x in range(0, width * channels, channels)
        if all(abs(row[x + i] - colour[i]) <= 8 for i in range(3))
    )


def without_scripts(tmp_path: Path, page: Path, height: int) -> tuple[str, Path]:
    """The DOM and a screenshot of the page as Chromium shows it with JavaScript off."""
    browser = Browser(tmp_path / "chromium")
    try:
        browser.open_without_scripts(page.as_uri(), 1200, height)
        dom = browser.dom()
        shot = tmp_path / f"{page.stem}.png"
        shot.write_bytes(browser.screenshot())
    finally:
        browser.close()
    return dom, shot


def test_chromium_runs_no_script_when_told_so(tmp_path: Path) -> None:
    canary = tmp_path / "canary.html"
    canary.write_text(
        '<!doctype html><body style="margin:0">'
        '<div style="width:300px;height:300px;background:#0000ff"></div>'
        '<div id="js" style="width:300px;height:300px"></div>'
        '<script>document.getElementById("js").style.background = "#ff0000"</script></body>'
    )
    dom, shot = without_scripts(tmp_path, canary, 700)
    assert '<div id="js" style="width:300px;height:300px">' in dom
    assert painted(shot, "#0000ff") > 50_000  # the page was drawn
    assert painted(shot, "#ff0000") == 0  # and its script did not run


async def test_html_report_shows_its_svg_charts_in_headless_chromium_with_javascript_off(
    diff: PolicyDiff, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(diff, diff_doc(diff)))

    assert "<script" not in page.read_text()  # nothing to run: the page is what it shows
    dom, shot = without_scripts(tmp_path, page, 2400)
    chart = re.compile(r'<svg class="chart" id="([a-z-]+)" data-bars="(\d+)".*?</svg>', re.S)
    charts = {m.group(1): (int(m.group(2)), m.group(0)) for m in chart.finditer(dom)}
    assert sorted(charts) == ["delta", "timeline-new", "timeline-old"]
    for side in ("old", "new"):
        bars, svg = charts[f"timeline-{side}"]
        assert bars == diff.timeline.bars(side) > 0
        assert svg.count('class="bar"') == bars
    # The delta chart: per rule that decided, a bar per policy and metric (key-flood 4,
    # key-steady only under the new policy 2); key-night has a row and no bar.
    bars, svg = charts["delta"]
    assert bars == svg.count('class="bar"') == 6
    assert ">key-night (changed)</text>" in svg

    # With scripts off the browser paints the charts: key-flood's colour fills its bars.
    assert painted(shot, rule_colour("key-flood")) > 500, "key-flood's bars were not painted"
