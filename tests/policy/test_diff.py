"""What-if: both policies backtested on the same events, the differences named with their
reasons, and a self-contained HTML report whose charts render in headless Chromium."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from enforcer.core.settings import Settings
from enforcer.engine.policy import load_policy
from enforcer.tools.policy_diff import PolicyDiff, diff_policies, render_html

from ..conftest import ROOT
from .traffic import MIXED, write_events

GOOD = Path(__file__).parent / "good"
OLD, NEW = GOOD / "whatif_old.yaml", GOOD / "whatif_new.yaml"
BAR_RED = (0xD1, 0x49, 0x5B)  # the report palette's first colour: the first series' bars


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
    assert "new: block by key-flood: rps[1m]" in out
    page = report.read_text()
    # Nothing to fetch: no external scripts, styles, fonts or images.
    assert not re.search(r"<link|<img|@import|url\(|\bsrc=", page)
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


# -- the HTML report in a real browser -------------------------------------------------------


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail(
            "chromium is not installed: `make deps` installs it (deploy/local/packages.txt)"
        )
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


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


async def test_html_report_renders_its_charts_in_headless_chromium_without_console_errors(
    diff: PolicyDiff, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(diff))

    dumped = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert '<body data-rendered="true">' in dom
    chart = re.compile(r'<svg class="timeline" data-side="(old|new)".*?</svg>', re.S)
    charts = {m.group(1): m.group(0) for m in chart.finditer(dom)}
    assert sorted(charts) == ["new", "old"]
    for side in ("old", "new"):
        expected = diff.timeline.bars(side)
        assert expected > 0
        assert charts[side].count('class="bar"') == expected, side
        assert f'data-bars="{expected}"' in charts[side]
    assert dom.count('<span class="swatch"') == len(diff.timeline.series) == 2
    # The page's only console message is its own report that it drew every bar.
    total = diff.timeline.bars("old") + diff.timeline.bars("new")
    [message] = console_lines(dumped.stderr)
    assert ":INFO:CONSOLE" in message and f'"enforcer-report: rendered {total} bars"' in message

    shot = tmp_path / "report.png"
    done = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1000", page.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    width, channels, rows = png_pixels(shot.read_bytes())
    red = sum(
        1
        for row in rows
        for x in range(0, width * channels, channels)
        if all(abs(row[x + i] - BAR_RED[i]) <= 8 for i in range(3))
    )
    assert red > 200, "no bar of the first series was painted"
