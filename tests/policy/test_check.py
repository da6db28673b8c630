"""`enforcer policy check`: every error class is reported where the author typed it.

Each file under tests/policy/bad/ holds exactly one kind of mistake; the table below says the
line, column and field the checker must name and a phrase of what it must say is allowed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from enforcer.engine.policy import PolicyError, load_policy, parse_policy

from ..conftest import DEFAULT_POLICY, ROOT

BAD = Path(__file__).parent / "bad"
EXAMPLES = ROOT / "deploy" / "policies" / "examples"

# fixture -> (line, column, field, a phrase of the message)
EXPECTED = {
    "misspelled_key.yaml": (6, 5, "rules[0].descripton", "did you mean 'description'?"),
    "wrong_type.yaml": (10, 16, "rules.key-flood.limit_rps", "expected a number > 0, got 'fast'"),
    # ip is a decision subject (operators allow or block one address) but no event counts it
    "uncounted_subject.yaml": (
        6,
        14,
        "rules.address-flood.subject",
        "'ip' is not counted per event, so a rule on it could never fire;"
        " rules count one of api_key, account, network, asn",
    ),
    "unknown_signal.yaml": (
        8,
        9,
        "rules.key-flood.when[0]",
        "unknown signal 'rsp'; did you mean 'rps'?",
    ),
    "unknown_window.yaml": (
        8,
        9,
        "rules.key-flood.when[0]",
        "window '5m' is not listed under windows (listed: 10s, 1m, 10m)",
    ),
    "same_length_windows.yaml": (
        3,
        20,
        "windows[2]",
        "window 60s is as long as 1m, listed already",
    ),
    "impossible_threshold.yaml": (
        8,
        9,
        "rules.key-quiet.when[0]",
        "'rps[1m] < 0' can never be true",
    ),
    "contradictory_conditions.yaml": (10, 9, "rules.key-flood.when[2]", "no value meets both"),
    "duplicate_rule.yaml": (
        12,
        11,
        "rules[1].name",
        "duplicate rule name 'key-flood' (first defined on line 5)",
    ),
    "unknown_tier_override.yaml": (
        15,
        11,
        "overrides[0].tier",
        "unknown tier 'enterprize'; did you mean 'enterprise'? (tiers: enterprise)",
    ),
    "bad_duration.yaml": (
        10,
        10,
        "rules.key-flood.for",
        "expected a duration such as 30s, 10m, 1h or 1d, got '30 minutes'",
    ),
    "throttle_without_rate.yaml": (5, 5, "rules.key-flood.limit_rps", "a throttle needs limit_rps"),
    "invalid_yaml.yaml": (7, 20, "(yaml)", "not valid YAML"),
    "unknown_rule_override.yaml": (
        14,
        7,
        "overrides[api_key=k-benchmark-harness].rules.key-flod",
        "did you mean 'key-flood'?",
    ),
    "missing_required.yaml": (5, 5, "rules[0].action", "is required"),
    "bad_escalation.yaml": (
        13,
        17,
        "rules.key-flood.escalate[0].action",
        "throttle is weaker than degrade",
    ),
    "duplicate_override.yaml": (
        14,
        14,
        "overrides[1].api_key",
        "a second override for api_key k-benchmark-harness (first on line 12)",
    ),
    "conflicting_tier_scale.yaml": (
        16,
        12,
        "overrides[tier=enterprise].scale",
        "tiers.enterprise.scale already sets this tier's scale (line 6)",
    ),
    "override_wrong_subject.yaml": (
        13,
        15,
        "overrides[api_key=k-benchmark-harness].disable[0]",
        "acts on network subjects",
    ),
    "override_without_selector.yaml": (
        12,
        5,
        "overrides[0]",
        "say who the override is for: one of tier: <value>, api_key: <value>",
    ),
    "bad_choice.yaml": (
        3,
        7,
        "mode",
        "'enforcing' is not one of enforce, shadow; did you mean 'enforce'?",
    ),
    "bad_network.yaml": (7, 7, "allow.networks[1]", "'10.300.0.0/16' is not a CIDR"),
    "empty.yaml": (1, 1, "(file)", "the policy file is empty"),
    "window_on_unwindowed_signal.yaml": (8, 9, "rules.key-burst.when[0]", "'burst' has no window"),
    "bad_rule_name.yaml": (5, 11, "rules[0].name", "use lower-case letters, digits"),
}


def test_every_bad_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_each_error_class_is_reported_with_its_line_column_and_field(fixture: str) -> None:
    line, column, field, phrase = EXPECTED[fixture]
    with pytest.raises(PolicyError) as info:
        load_policy(BAD / fixture)
    [issue] = info.value.issues  # one mistake per file, reported once
    assert (issue.line, issue.column, issue.field) == (line, column, field)
    assert phrase in issue.message
    assert str(issue).startswith(f"{BAD / fixture}:{line}:{column}: {field}: ")


def test_every_error_of_a_file_is_reported_not_just_the_first() -> None:
    text = """\
name: many
version: "1"
mdoe: shadow
windows: [10s, 1m]
rules:
  - name: key-flood
    subject: api_key
    when: ["rps[5m] > 6"]
    action: throttle
    for: 30m
  - name: key-burst
    subject: apikey
    when: ["burst > 4"]
    action: block
    for: soon
"""
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "many.yaml")
    found = {(i.line, i.field) for i in info.value.issues}
    assert found == {
        (3, "mdoe"),
        (6, "rules.key-flood.limit_rps"),
        (8, "rules.key-flood.when[0]"),
        (12, "rules.key-burst.subject"),
        (15, "rules.key-burst.for"),
    }
    subject_issue = next(i for i in info.value.issues if i.field == "rules.key-burst.subject")
    assert "did you mean 'api_key'?" in subject_issue.message


def test_default_policy_passes_the_checker() -> None:
    policy = load_policy(DEFAULT_POLICY)
    assert policy.rules


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_in_the_authors_guide_passes_the_checker(example: str) -> None:
    assert load_policy(EXAMPLES / example).rules


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enforcer", "policy", "check", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_command_exits_zero_for_the_default_policy() -> None:
    done = run_cli("deploy/policies/default.yaml")
    assert done.returncode == 0, done.stderr
    assert "deploy/policies/default.yaml: ok (default@" in done.stdout


def test_check_command_exits_non_zero_and_names_the_line_of_a_misspelled_key() -> None:
    done = run_cli("deploy/policies/default.yaml", "tests/policy/bad/misspelled_key.yaml")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "tests/policy/bad/misspelled_key.yaml:6:5: rules[0].descripton: unknown key; did you mean"
        " 'description'? (allowed: name, description, subject, when, action, limit_rps, for,"
        " shadow, escalate, strikes_within)"
    ]
    assert "default.yaml: ok" in done.stdout
