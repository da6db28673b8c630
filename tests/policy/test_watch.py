"""Hot reload in-process: a good edit replaces the policy whole, a bad one is refused and counted
while the last good policy stays in force."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from enforcer.engine.pipeline import PolicyHolder
from enforcer.engine.policy import load_policy
from enforcer.worker.policy_watch import PolicyWatcher

GOOD = """\
name: watched
version: "{version}"
windows: [10s, 1m]
rules:
  - name: key-flood
    subject: api_key
    when: ["rps[1m] > {threshold}"]
    action: block
    for: 10m
"""
BAD = GOOD.format(version="2", threshold=3).replace("action: block", "acton: block")


def reloads(result: str) -> float:
    return REGISTRY.get_sample_value("enforcer_policy_reloads_total", {"result": result}) or 0.0


def policy_info() -> dict[str, str]:
    for metric in REGISTRY.collect():
        if metric.name == "enforcer_policy":
            return dict(metric.samples[0].labels)
    return {}


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD.format(version="1", threshold=6))
    return path


def write(path: Path, text: str) -> None:
    path.write_text(text)
    # Make sure the stat changes even on a file system with coarse timestamps.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_unchanged_file_is_never_reloaded(policy_file: Path) -> None:
    holder = PolicyHolder(load_policy(policy_file))
    watcher = PolicyWatcher(policy_file, holder)
    running = holder.current
    assert [watcher.poll() for _ in range(25)] == [None] * 25
    assert holder.current is running


def test_valid_edit_is_applied_once_it_reads_the_same_twice_and_is_counted(
    policy_file: Path,
) -> None:
    holder = PolicyHolder(load_policy(policy_file))
    watcher = PolicyWatcher(policy_file, holder)
    before = reloads("success")
    write(policy_file, GOOD.format(version="2", threshold=3))
    assert watcher.poll() is None  # seen once: it may still be being written
    outcome = watcher.poll()
    assert outcome is not None and outcome.result == "applied"
    assert holder.current.version == "2"
    assert holder.current.rules[0].when[0].threshold == 3
    assert outcome.version_tag == holder.current.version_tag
    assert reloads("success") == before + 1
    assert policy_info() == {
        "name": "watched",
        "version": "2",
        "content_hash": holder.current.content_hash,
    }
    assert watcher.poll() is None


def test_bad_edit_is_refused_with_file_line_and_field_and_the_last_good_policy_stays(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = PolicyHolder(load_policy(policy_file))
    good = holder.current
    watcher = PolicyWatcher(policy_file, holder)
    before = reloads("failure")
    write(policy_file, BAD)
    with caplog.at_level(logging.ERROR, logger="enforcer.policy"):
        watcher.poll()
        outcome = watcher.poll()
    assert outcome is not None and outcome.result == "refused"
    assert holder.current is good
    assert reloads("failure") == before + 1
    [record] = [r for r in caplog.records if r.name == "enforcer.policy"]
    assert record.getMessage() == (
        f"policy reload refused, keeping {good.version_tag}: {policy_file}:5:5: rules[0].action:"
        f" is required; {policy_file}:8:5: rules[0].acton: unknown key; did you mean 'action'?"
        " (allowed: name, description, subject, when, action, limit_rps, for, shadow, escalate,"
        " strikes_within)"
    )
    # The same bad text is refused once, not once a second.
    assert [watcher.poll() for _ in range(12)] == [None] * 12
    assert reloads("failure") == before + 1
    # The gauge the alert reads stays down while the bad file is on disk, however long.
    assert REGISTRY.get_sample_value("enforcer_policy_last_reload_successful") == 0
    assert watcher.rejected is not None and watcher.rejected[0] == str(policy_file)


def test_a_fixed_file_after_a_refusal_is_applied(policy_file: Path) -> None:
    holder = PolicyHolder(load_policy(policy_file))
    watcher = PolicyWatcher(policy_file, holder)
    write(policy_file, BAD)
    watcher.poll(), watcher.poll()
    write(policy_file, GOOD.format(version="3", threshold=4))
    watcher.poll()
    outcome = watcher.poll()
    assert outcome is not None and outcome.result == "applied"
    assert holder.current.version == "3"
    assert REGISTRY.get_sample_value("enforcer_policy_last_reload_successful") == 1
    assert watcher.rejected is None


def test_a_half_written_file_is_not_judged_before_it_settles(policy_file: Path) -> None:
    holder = PolicyHolder(load_policy(policy_file))
    watcher = PolicyWatcher(policy_file, holder)
    failures = reloads("failure")
    full = GOOD.format(version="4", threshold=5)
    write(policy_file, full[: len(full) // 2])  # an editor caught mid-save
    assert watcher.poll() is None
    write(policy_file, full)
    assert watcher.poll() is None
    outcome = watcher.poll()
    assert outcome is not None and outcome.result == "applied"
    assert reloads("failure") == failures


def test_an_edit_that_keeps_mtime_and_size_is_still_found(policy_file: Path) -> None:
    holder = PolicyHolder(load_policy(policy_file))
    watcher = PolicyWatcher(policy_file, holder, recheck_every=5)
    stat = policy_file.stat()
    policy_file.write_text(GOOD.format(version="9", threshold=6))  # same length as version 1
    os.utime(policy_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    outcomes = [watcher.poll() for _ in range(10)]
    assert [o.result for o in outcomes if o] == ["applied"]
    assert holder.current.version == "9"


def test_a_deleted_file_is_refused_and_the_policy_keeps_running(policy_file: Path) -> None:
    holder = PolicyHolder(load_policy(policy_file))
    good = holder.current
    watcher = PolicyWatcher(policy_file, holder)
    policy_file.unlink()
    watcher.poll()
    outcome = watcher.poll()
    assert outcome is not None and outcome.result == "refused"
    assert "cannot read" in outcome.issues[0].message
    assert holder.current is good
