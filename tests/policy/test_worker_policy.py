"""A running `enforcer worker` (real Kafka, real Redis) and its policy file: hot reload within
5 s without a rebalance, the last good policy kept on a bad edit, shadow decisions on the
decisions topic marked `mode: shadow` and never enforced."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from enforcer.core.settings import Settings
from enforcer.engine.policy import parse_policy

from ..conftest import event, read_topic

ROLLOUT = """\
name: live
version: "{version}"
mode: {mode}
windows: [10s, 1m]
rules:
  - name: key-flood
    subject: api_key
    when: ["rps[10s] > {threshold}"]
    action: {action}
    {limit}for: 10m
"""
TRIAL = ROLLOUT.format(
    version="1", mode="shadow", threshold=4, action="throttle", limit="limit_rps: 1\n    "
)
STRICT = ROLLOUT.format(version="2", mode="enforce", threshold=2, action="block", limit="")
BROKEN = STRICT.replace('version: "2"', 'version: "3"').replace("action: block", "actoin: block")
# Faust logs this each time the consumer group hands the worker its partitions.
ASSIGNED = "Setting newly assigned partitions"


async def flood(producer: AIOKafkaProducer, topic: str, key: str, rps: float) -> None:
    """Six seconds of requests from one key at `rps`, ending now: rps[10s] reads 0.6 * rps."""
    now = time.time()
    n = int(rps * 6)
    for i in range(n):
        doc = event(key, now - 6 + i / rps)
        await producer.send(topic, key=key.encode(), value=orjson.dumps(doc))
    await producer.flush()


def decisions(messages: list) -> list[dict]:
    return [orjson.loads(m.value) for m in messages]


async def wait_for_log(worker, text: str, timeout_s: float = 10.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in worker.log():
            return time.time()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} not in the worker log:\n{worker.log()[-3000:]}")


async def test_worker_applies_a_valid_edit_within_5s_and_keeps_the_last_good_policy_on_a_bad_edit(
    kafka_settings: Settings, worker_factory, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(TRIAL)
    settings = kafka_settings.with_(policy_file=str(policy_file), batch_within_s=0.05)
    trial_tag, strict_tag = parse_policy(TRIAL).version_tag, parse_policy(STRICT).version_tag
    worker = worker_factory(settings)
    pid = worker.proc.pid
    topic, out = settings.events_topic, settings.decisions_topic

    # Version 1 runs in shadow: its decisions are watched, never enforced.
    await flood(producer, topic, "k-trial", rps=10)
    seen = decisions(await read_topic(settings, out, lambda ms: len(ms) >= 1))
    assert [(d["subject"]["value"], d["mode"], d["policy_version"]) for d in seen] == [
        ("k-trial", "shadow", trial_tag)
    ]
    assigned_at_start = worker.log().count(ASSIGNED)
    assert assigned_at_start >= 1

    # Roll out a stricter, enforcing version 2 by editing the file in place. Probe keys read
    # rps[10s] = 3: only version 2 (> 2) acts on them, so their decisions show the switch.
    policy_file.write_text(STRICT)
    edited_at = time.time()
    stop = asyncio.Event()

    async def probe() -> None:
        n = 0
        while not stop.is_set():
            await flood(producer, topic, f"k-probe-{n}", rps=5)
            n += 1
            await asyncio.sleep(0.25)

    prober = asyncio.create_task(probe())
    try:
        messages = await read_topic(
            settings,
            out,
            lambda ms: any(strict_tag in d["policy_version"] for d in decisions(ms)),
            15,
        )
    finally:
        stop.set()
        await prober
    probes = [d for d in decisions(messages) if d["subject"]["value"].startswith("k-probe-")]
    assert probes, f"no decision for a probe key:\n{worker.log()[-5000:]}"
    assert {(d["policy_version"], d["mode"], d["action"]) for d in probes} == {
        (strict_tag, "enforce", "block")
    }
    latency = min(d["issued_at"] for d in probes) - edited_at
    assert latency < 5.0, f"the new policy took {latency:.1f} s"
    assert f"policy reloaded: {strict_tag} (was {trial_tag})" in worker.log()
    print(f"reload latency (edit -> first decision under the new version): {latency:.2f} s")

    # A bad edit is refused with its file:line:column; version 2 keeps deciding.
    policy_file.write_text(BROKEN)
    await wait_for_log(worker, "policy reload refused")
    refusal = orjson.loads(
        next(ln for ln in worker.log().splitlines() if "policy reload refused" in ln)
    )
    assert refusal["level"] == "error"
    assert refusal["message"].startswith(f"policy reload refused, keeping {strict_tag}: ")
    assert [i.split(": ")[0:2] for i in refusal["issues"]] == [
        [f"{policy_file}:6:5", "rules[0].action"],  # is required
        [f"{policy_file}:9:5", "rules[0].actoin"],  # unknown key; did you mean 'action'?
    ]
    assert "did you mean 'action'?" in refusal["issues"][1]
    # Still ready (version 2 runs), and /readyz names the refused file.
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.settings.web_port}/readyz") as resp:
        ready = orjson.loads(resp.read())
    assert ready["ready"] is True
    assert ready["policy_rejected"]["file"] == str(policy_file)
    assert len(ready["policy_rejected"]["issues"]) == 2
    await flood(producer, topic, "k-after-bad-edit", rps=5)
    after = await read_topic(
        settings,
        out,
        lambda ms: any(d["subject"]["value"] == "k-after-bad-edit" for d in decisions(ms)),
    )
    [last] = [d for d in decisions(after) if d["subject"]["value"] == "k-after-bad-edit"]
    assert (last["policy_version"], last["mode"], last["action"]) == (
        strict_tag,
        "enforce",
        "block",
    )

    # All of it without a restart or a consumer-group rebalance.
    assert worker.proc.poll() is None and worker.proc.pid == pid
    assert worker.log().count(ASSIGNED) == assigned_at_start


PER_RULE_SHADOW = """\
name: per-rule-shadow
version: "1"
windows: [10s, 1m]
rules:
  - name: key-flood
    subject: api_key
    when: ["rps[10s] > 4"]
    action: throttle
    limit_rps: 1
    for: 10m
  - name: key-flood-trial
    description: A stricter block, watched before anyone is blocked by it.
    subject: api_key
    when: ["rps[10s] > 2"]
    action: block
    for: 10m
    shadow: true
"""


async def test_shadow_rule_decisions_reach_the_topic_as_shadow_and_never_as_enforce(
    kafka_settings: Settings, worker_factory, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(PER_RULE_SHADOW)
    settings = kafka_settings.with_(policy_file=str(policy_file), batch_within_s=0.05)
    worker_factory(settings)
    await flood(producer, settings.events_topic, "k-both", rps=10)  # both rules match
    await flood(producer, settings.events_topic, "k-trial-only", rps=5)  # only the shadow rule
    messages = await read_topic(settings, settings.decisions_topic, lambda ms: len(ms) >= 3)
    await asyncio.sleep(1.0)  # anything else the worker would publish shows up now
    messages = await read_topic(settings, settings.decisions_topic, lambda ms: False, timeout_s=2)
    seen = sorted(
        (d["subject"]["value"], d["rule"], d["action"], d["mode"]) for d in decisions(messages)
    )
    assert seen == [
        ("k-both", "key-flood", "throttle", "enforce"),
        ("k-both", "key-flood-trial", "block", "shadow"),
        ("k-trial-only", "key-flood-trial", "block", "shadow"),
    ]
