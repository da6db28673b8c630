"""What-if against ground truth: a change that hurts customers is reported as benign harm,
and the report escapes whatever a policy file or the traffic puts in its names."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from enforcer.core.decisions import Decision, Reason, Subject
from enforcer.core.settings import Settings
from enforcer.engine.policy import load_policy
from enforcer.tools.backtest import BacktestReport
from enforcer.tools.policy_diff import compare
from enforcer.tools.policy_doc import diff_doc
from enforcer.tools.policy_report import render_html
from enforcer.tools.simulate import SimulationConfig, generate, write

from ..conftest import DEFAULT_POLICY, ROOT

# key-flood, the default's volume safety net, loosened from 30 rps to 0.5 with any burst: the
# tutoring app, the eval harness and (at ten times the threshold) the enterprise batch job trip.
LOOSER = ("rps[1m] > 30\n      - burst > 3", "rps[1m] > 0.5\n      - burst > 0")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("labelled")
    events, labels = generate(SimulationConfig(duration_s=600, scale=0.1, seed=7))
    write(events, labels, folder / "events.jsonl", folder / "labels.json")
    text = DEFAULT_POLICY.read_text()
    assert LOOSER[0] in text, "the default's key-flood changed: update LOOSER"
    candidate = folder / "looser.yaml"
    candidate.write_text(text.replace(LOOSER[0], LOOSER[1]))
    return folder / "events.jsonl", folder / "labels.json", candidate


def test_diff_with_labels_reports_a_loosened_threshold_as_benign_harm(
    isolated: Settings, sample: tuple[Path, Path, Path]
) -> None:
    events, labels, candidate = sample
    done = subprocess.run(
        [sys.executable, "-m", "enforcer", "policy", "diff", "--events", str(events),
         "--labels", str(labels), "--json", str(DEFAULT_POLICY), str(candidate)],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", **isolated.to_env()},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    lab = doc["labels"]
    truth = json.loads(labels.read_text())
    # Harm: benign keys the candidate newly touches, none it spares; no attacker gained.
    assert lab["benign"]["newly_affected"] >= 2 and lab["benign"]["spared"] == 0
    assert lab["benign"]["denied"]["new"] > lab["benign"]["denied"]["old"]
    assert (lab["attack"]["newly_caught"], lab["attack"]["lost"]) == (0, 0)
    harmed = {k["api_key"]: k["population"] for k in lab["benign_newly_affected"]}
    assert len(harmed) == lab["benign"]["newly_affected"]
    assert {truth[k]["population"] for k in harmed} == set(harmed.values())
    assert {"tutor_app", "eval_harness"} <= set(harmed.values())
    assert not any(truth[k]["attack"] for k in harmed)
    by_population = {p["population"]: p for p in lab["populations"]}
    assert by_population["tutor_app"]["affected"] == {"old": 0, "new": 1}
    assert lab["changed_subjects"]["benign"]["stricter"] >= 2
    # Each changed subject is marked, and the harmed ones are marked benign.
    items = {i["subject"]: i for i in doc["subjects"]["items"]}
    for key in harmed:
        assert items[f"api_key:{key}"]["label"] == "benign"
        assert items[f"api_key:{key}"]["new"] == "throttle"
    # The enterprise key's threshold is shown with its tier's scale.
    enterprise = [i for i in items.values() if i["population"] == "enterprise_batch"]
    [reason] = [r for r in enterprise[0]["evidence"][0]["reasons"] if r["signal"] == "rps"]
    assert (reason["written"], reason["scale"], reason["threshold"]) == (0.5, 10.0, 5.0)
    assert reason["scale_from"] == "tier enterprise"
    assert "threshold > 0.5 x10 (tier enterprise) = 5" in reason["text"]
    # The edit: key-flood changed, its two conditions named.
    [rule] = doc["policy_changes"]["rules"]
    assert rule["name"] == "key-flood" and rule["change"] == "changed"
    assert {(f["old"], f["new"]) for f in rule["fields"]} == {
        ("rps[1m] > 30", "rps[1m] > 0.5"),
        ("burst > 3", "burst > 0"),
    }


def test_html_report_escapes_names_from_policy_files_and_traffic() -> None:
    hostile = '<img src=x onerror="alert(1)">'
    policy = replace(load_policy(DEFAULT_POLICY), version=f"1{hostile}")
    decision = Decision(
        Subject("api_key", f"k{hostile}"), "block", 100.0, 100.0, 3700.0,
        f"rule{hostile}", policy.version_tag, "enforce", None,
        (Reason("volume", "rps", 9.0, 6.0, "1m"),),
    )  # fmt: skip
    report = BacktestReport(events=1, decisions=[decision], requests=Counter({"x": 1}))
    diff = compare("events<b>.jsonl", policy, BacktestReport(events=1), policy, report)
    page = render_html(diff, diff_doc(diff, {f"k{hostile}": {"attack": False}}))
    assert hostile not in page and "<b>" not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
    assert "api_key:k&lt;img" in page and "rule&lt;img" in page
