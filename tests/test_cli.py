"""The `enforcer` command as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_worker_refuses_to_start_on_a_bad_policy_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        'name: x\nversion: "1"\nwindows: [1m]\nrules:\n  - name: a\n    subject: api_key\n'
        '    whn: ["rps[1m] > 1"]\n    action: block\n    for: 1m\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENFORCER_")}
    env["ENFORCER_POLICY_FILE"] = str(bad)
    done = subprocess.run(
        [sys.executable, "-m", "enforcer", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{bad}:7:5: rules[0].whn: unknown key; did you mean 'when'?" in done.stderr


def run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ENFORCER_")}
    return subprocess.run(
        [sys.executable, "-m", "enforcer", *argv],
        env={**clean, **env},
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version_is_printed() -> None:
    from enforcer import __version__

    done = run("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"enforcer {__version__}")


def test_service_help_points_to_the_settings() -> None:
    for argv in (("worker",), ("gateway", "serve"), ("topics", "apply")):
        assert "`enforcer settings`" in run(*argv, "--help").stdout, argv


def test_a_missing_file_is_one_line_and_exit_2_not_a_traceback(tmp_path: Path) -> None:
    done = run("backtest", "--events", str(tmp_path / "nope.jsonl"))
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"enforcer: backtest: --events {tmp_path / 'nope.jsonl'}: no such file"
    )


def test_a_file_of_only_bad_lines_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('not json\n{"ts": "x"}\n')
    done = run("backtest", "--events", str(bad), "--json")
    assert done.returncode == 2, done.stderr
    assert "no good event" in done.stderr and "Traceback" not in done.stderr


def test_a_misspelt_setting_suggests_the_right_name() -> None:
    done = run("settings", ENFORCER_REDIS_PREFXI="x")
    assert done.returncode == 2
    assert "ENFORCER_REDIS_PREFXI (did you mean ENFORCER_REDIS_PREFIX?)" in done.stderr
    sidecar = run("gateway", "serve", ENFORCER_SIDECAR_PROT="1")
    assert sidecar.returncode == 2
    assert "did you mean ENFORCER_SIDECAR_PORT?" in sidecar.stderr


def test_reporting_commands_answer_json() -> None:
    import orjson

    for argv in (
        ("settings", "--json"),
        ("metrics", "--json"),
        ("policy", "check", "deploy/policies/default.yaml", "--json"),
    ):
        done = run(*argv)
        assert done.returncode == 0, (argv, done.stderr)
        assert isinstance(orjson.loads(done.stdout), dict), argv


def test_a_bad_subject_is_a_usage_error() -> None:
    done = run("decisions", "lift", "user:bob", "--reason", "x")
    assert done.returncode == 2
    assert "kind must be one of" in done.stderr and "Traceback" not in done.stderr
