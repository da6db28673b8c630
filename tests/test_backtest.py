"""The backtest on real Redis: the helper process changes its speed, never its decisions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from enforcer.core.settings import Settings
from enforcer.engine.policy.model import Policy
from enforcer.tools import backtest
from enforcer.tools.backtest import run_backtest
from enforcer.tools.simulate import SimulationConfig, generate, write

from .processes import ROOT, enforcer_env


def _events_with_bad_lines(tmp_path: Path) -> Path:
    events, labels = generate(SimulationConfig(duration_s=240, seed=11))
    path = tmp_path / "events.jsonl"
    write(events, labels, path, tmp_path / "labels.json")
    lines = path.read_bytes().splitlines()
    lines[100:100] = [b"{not json", b'{"event_id": "x"}', b"[]"]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


async def test_helper_process_and_inline_replay_make_the_same_decisions(
    isolated: Settings, policy: Policy, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    path = _events_with_bad_lines(tmp_path)
    helped = await run_backtest(isolated, policy, path, batch_size=500, helper_process=True)
    inline = await run_backtest(isolated, policy, path, batch_size=500, helper_process=False)

    def decisions(report):  # type: ignore[no-untyped-def]
        return [(d.subject, d.action, d.rule, d.mode, d.ts, d.expires_at) for d in report.decisions]

    assert helped.decisions, "the stream holds attacks: some decision is expected"
    assert decisions(helped) == decisions(inline)
    assert (helped.lines, helped.events, helped.duplicates) == (
        inline.lines,
        inline.events,
        inline.duplicates,
    )
    # Bad lines are counted by reason, never fatal, whichever process parsed them.
    assert helped.bad_lines == inline.bad_lines
    assert sum(helped.bad_lines.values()) == 3
    # Each replay removed its namespace.
    assert not [k async for k in redis_client.scan_iter(match=f"{isolated.redis_prefix}-*")]


async def test_a_failing_helper_process_stops_the_replay_with_its_traceback(
    isolated: Settings,
    policy: Policy,
    tmp_path: Path,
    redis_client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _events_with_bad_lines(tmp_path)

    def broken(values: list[bytes], max_bytes: int, bands: bool) -> list[tuple]:
        raise ValueError("features broke")

    # The helper is forked, so it runs the patched function.
    monkeypatch.setattr(backtest, "featurize_rows", broken)
    with pytest.raises(RuntimeError, match="(?s)helper process failed.*features broke"):
        await run_backtest(isolated, policy, path, batch_size=500, helper_process=True)
    assert not [k async for k in redis_client.scan_iter(match=f"{isolated.redis_prefix}-*")]


def test_scores_give_each_population_its_keys_requests_denied_and_time_to_detect() -> None:
    report = backtest.BacktestReport()
    for key, requests, denied, first, detected in (
        ("k-a1", 10, 8, 100.0, 120.0),
        ("k-a2", 10, 0, 100.0, None),
        ("k-t1", 50, 0, 100.0, None),
    ):
        report.requests[key] = requests
        report.denied[key] = denied
        report.first_seen[key] = first
        if detected is not None:
            report.first_detected[key] = detected
    labels = {
        "k-a1": {"population": "paraphraser", "attack": True},
        "k-a2": {"population": "paraphraser", "attack": True},
        "k-t1": {"population": "tutor_app", "attack": False},
    }
    scores = backtest.score(report, labels)
    para, tutor = scores["populations"]["paraphraser"], scores["populations"]["tutor_app"]
    assert (para["keys"], para["affected"], para["key_share"]) == (2, 1, 0.5)
    assert (para["requests"], para["denied"], para["request_share"]) == (20, 8, 0.4)
    assert para["ttd_p50_s"] == 20.0
    assert tutor["request_share"] == 0.0 and tutor["ttd_p50_s"] is None
    table = backtest.format_report(report, scores)
    assert "paraphraser" in table and "tutor_app" in table and "requests denied" in table


def test_a_replay_decides_the_same_whatever_the_interpreters_hash_seed(
    isolated: Settings, tmp_path: Path
) -> None:
    """Python salts str hashes per process; nothing in the event path may depend on them, or a
    policy diff's two replays, and two workers, would disagree by chance (the network-hop
    table once did: campaign decisions moved between runs)."""
    events, labels = generate(SimulationConfig(duration_s=240, seed=11))
    path = tmp_path / "events.jsonl"
    write(events, labels, path, tmp_path / "labels.json")
    outputs = []
    for seed in ("7", "8"):
        out = tmp_path / f"decisions-{seed}.jsonl"
        env = {**enforcer_env(isolated), "PYTHONHASHSEED": seed}
        argv = [sys.executable, "-m", "enforcer", "backtest", "--events", str(path)]
        done = subprocess.run(
            [*argv, "--out", str(out)], cwd=ROOT, env=env, capture_output=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(sorted(_without_identity(line) for line in out.read_bytes().splitlines()))
    assert outputs[0], "the stream holds attacks: some decision is expected"
    assert outputs[0] == outputs[1]


def _without_identity(line: bytes) -> bytes:
    doc = orjson.loads(line)
    for field in ("decision_id", "issued_at"):
        doc.pop(field, None)
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
