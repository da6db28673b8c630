"""`enforcer worker` and `enforcer backtest`, unchanged but for ENFORCER_REDIS_CLUSTER, against
the three-master cluster: the same windows and decisions as against the single Redis."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from enforcer.core.counts import SubjectBatch, Window
from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.core.topics import apply_topics
from enforcer.engine.features.request import COUNTERS
from enforcer.store.windows import WindowStore
from enforcer.tools.simulate import SimulationConfig, generate, write
from tests.conftest import event, read_topic
from tests.processes import ROOT, enforcer_env

POLICY = """
name: cluster
version: "1"
windows: [10s, 1m, 10m]
burst: {short: 10s, baseline: 10m, floor_rps: 0.5}
rules:
  - name: key-burst
    subject: api_key
    when: ["rps[10s] > 4", "burst > 4"]
    action: throttle
    limit_rps: 1
    for: 5m
"""
LOUD = [f"k-loud-{i}" for i in range(6)]
QUIET = [f"k-quiet-{i}" for i in range(30)]


def _decision_rows(records: list[dict]) -> list[tuple]:
    return sorted(
        (r["subject"]["kind"], r["subject"]["value"], r["action"], r["rule"], r["mode"])
        for r in records
    )


async def test_enforcer_backtest_on_the_cluster_decides_as_on_the_single_redis(
    cluster_settings: Settings, isolated: Settings, tmp_path: Path
) -> None:
    events, labels = generate(SimulationConfig(duration_s=240, seed=11))
    path = tmp_path / "events.jsonl"
    write(events, labels, path, tmp_path / "labels.json")

    def backtest(settings: Settings, out: Path) -> list[dict]:
        argv = [sys.executable, "-m", "enforcer", "backtest", "--events", str(path)]
        done = subprocess.run(
            [*argv, "--out", str(out)],
            cwd=ROOT,
            env=enforcer_env(settings),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return [orjson.loads(line) for line in out.read_bytes().splitlines()]

    on_cluster = backtest(cluster_settings, tmp_path / "cluster.jsonl")
    on_single = backtest(isolated, tmp_path / "single.jsonl")
    assert on_cluster, "the stream holds attacks: some decision is expected"
    assert _decision_rows(on_cluster) == _decision_rows(on_single)
    assert sorted(r["expires_at"] for r in on_cluster) == sorted(r["expires_at"] for r in on_single)


async def _window_counts(settings: Settings, names: list[str]) -> dict[str, float]:
    store = WindowStore.from_url(
        settings.redis_url,
        cluster=settings.redis_cluster,
        prefix=settings.redis_prefix,
        windows=(Window.of("10m", 600),),
        counters=COUNTERS,
        lateness_s=settings.allowed_lateness_s,
    )
    try:
        stats, _ = await store.update([SubjectBatch(Subject("api_key", n), []) for n in names])
        return {s.subject.value: s.sums["10m"]["req"] for s in stats}
    finally:
        await store.close()


async def test_enforcer_worker_on_the_cluster_counts_and_decides_as_on_the_single_redis(
    kafka_settings: Settings,
    cluster_settings: Settings,
    worker_factory,
    producer: AIOKafkaProducer,
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    single = kafka_settings.with_(policy_file=str(policy), batch_within_s=0.05)
    # The same events topic, read by a second consumer group whose worker uses the cluster.
    cluster = single.with_(
        redis_url=cluster_settings.redis_url,
        redis_cluster=True,
        redis_prefix=cluster_settings.redis_prefix,
        app_id=f"{single.app_id}-cluster",
        decisions_topic=f"{single.decisions_topic}-cluster",
    )
    await apply_topics(cluster)
    worker_factory(single)
    worker_factory(cluster)
    now = time.time()
    docs = [event(k, now - 8 + i * 0.1) for k in LOUD for i in range(60)]
    docs += [event(k, now - 30 + i * 3) for k in QUIET for i in range(5)]
    for doc in docs:
        await producer.send(
            single.events_topic, key=doc["api_key"].encode(), value=orjson.dumps(doc)
        )
    await producer.flush()

    def all_loud(messages: list) -> bool:
        return {m.key for m in messages} >= {f"api_key:{k}".encode() for k in LOUD}

    decided = {}
    for s in (single, cluster):
        messages = await read_topic(s, s.decisions_topic, all_loud, timeout_s=60)
        decided[s.redis_cluster] = _decision_rows(
            [orjson.loads(m.value) for m in messages if m.value]
        )
    assert decided[True] == decided[False]
    assert [row[1] for row in decided[True]] == sorted(LOUD)

    names = LOUD + QUIET
    deadline = time.monotonic() + 30
    while True:
        counts = [await _window_counts(s, names) for s in (single, cluster)]
        if all(sum(c.values()) >= len(docs) for c in counts) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert counts[1] == counts[0]
    assert sum(counts[1].values()) == len(docs)
