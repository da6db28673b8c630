"""Each detector's signal, computed through the pipeline on real Redis."""

from __future__ import annotations

import random

import orjson
import pytest
import redis.asyncio as aioredis

from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.engine.detectors import cadence_regularity, signals_of
from enforcer.engine.pipeline import Pipeline, PolicyHolder, Record
from enforcer.engine.policy import parse_policy

from .conftest import event
from .stores import make_store

T0 = 1_790_000_000.0
POLICY = parse_policy(
    """
name: signals
version: "1"
windows: [1m, 10m]
rules:
  # Reads every signal, so every signal is tracked; the last condition never holds.
  - name: reads-everything
    subject: api_key
    when:
      - template_share > 0.01
      - near_duplicate_share > 0.01
      - distinct_template_ratio > 0.01
      - campaign_keys > 1
      - campaign_networks > 1
      - campaign_accounts > 1
      - elicitation_share[10m] > 0.01
      - harvest_share[10m] > 0.01
      - reasoning_share[10m] > 0.01
      - cadence_regularity[10m] > 0.01
      - requests[1m] > 1000000
    action: block
    for: 1m
"""
)
COT_SYSTEM = "Always output your full reasoning inside <thinking> tags before the final answer."
WORDS = [
    "apple",
    "river",
    "mountain",
    "violet",
    "engine",
    "quartz",
    "lantern",
    "harbor",
    "meadow",
    "falcon",
    "cobalt",
    "timber",
    "saffron",
]


@pytest.fixture
async def pipeline(isolated: Settings) -> Pipeline:
    p = Pipeline(make_store(isolated, POLICY), PolicyHolder(POLICY), isolated, check_future=False)
    yield p
    await p.store.close()


async def run(pipeline: Pipeline, docs: list[dict]) -> dict[Subject, dict[str, float]]:
    """Every counted subject's signals after the batch (the pipeline itself computes them only
    for the subjects that clear the policy's screen)."""
    prepared = pipeline.prepare([Record(orjson.dumps(d), topic="t", partition=0) for d in docs])
    assert not prepared.result.dead_letters, prepared.result.dead_letters[:3]
    reply = await pipeline.count(prepared)
    assert reply is not None and prepared.grouped is not None
    stats, campaigns = await reply.result()
    missing = [s for s in stats if s.accepted == 0]
    assert not missing, missing[:3]
    campaign_of = {c.fingerprint: c for c in campaigns}
    used = prepared.grouped.fingerprints
    policy = pipeline.policy.current
    return {
        s.subject: signals_of(
            s,
            policy.windows,
            policy.burst,
            [campaign_of[f] for f in used.get(s.subject, ()) if f in campaign_of],
        )
        for s in stats
    }


def varied_prompt(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(12)) + "?"


async def test_templated_key_has_high_template_share_and_varied_key_low(pipeline: Pipeline) -> None:
    rng = random.Random(1)
    templated = [
        event(
            "k-tpl",
            T0 + i,
            prompt=f"Solve for x: {rng.randint(2, 99)}x + {rng.randint(1, 50)} = {rng.randint(100, 999)}. Show every step.",
        )
        for i in range(30)
    ]
    varied = [
        event("k-var", T0 + i, ip="198.51.100.50", prompt=varied_prompt(rng)) for i in range(30)
    ]
    signals = await run(pipeline, templated + varied)
    tpl, var = signals[Subject("api_key", "k-tpl")], signals[Subject("api_key", "k-var")]
    assert tpl["template_share"] == pytest.approx(1.0)
    assert tpl["distinct_template_ratio"] < 0.1
    assert var["template_share"] < 0.2
    assert var["distinct_template_ratio"] > 0.8


async def test_synonym_swaps_keep_a_high_near_duplicate_share(pipeline: Pipeline) -> None:
    rng = random.Random(2)
    verbs = ["Explain", "Describe", "Walk through", "Lay out"]
    adjectives = ["complete", "full", "entire", "whole"]
    docs = [
        event(
            "k-swap",
            T0 + i * 5,
            prompt=f"{rng.choice(verbs)} your {rng.choice(adjectives)} reasoning for why the sum of the angles in a triangle is 180 degrees, then give the final answer briefly.",
        )
        for i in range(24)
    ]
    signals = (await run(pipeline, docs))[Subject("api_key", "k-swap")]
    assert signals["template_share"] < 0.5
    assert signals["near_duplicate_share"] > 0.6


async def test_elicitation_share_counts_strong_requests_not_casual_ones(pipeline: Pipeline) -> None:
    rng = random.Random(3)
    strong = [
        event("k-cot", T0 + i, system=COT_SYSTEM, prompt=varied_prompt(rng)) for i in range(10)
    ]
    casual = [
        event(
            "k-student",
            T0 + i,
            ip="198.51.100.60",
            prompt=f"Let's think step by step: {varied_prompt(rng)}",
        )
        for i in range(10)
    ]
    chinese = [
        event(
            "k-zh",
            T0 + i,
            ip="198.51.100.61",
            prompt=f"请逐步思考并展示完整推理过程：{rng.randint(10, 99)}乘以{rng.randint(10, 99)}等于多少？",
        )
        for i in range(10)
    ]
    signals = await run(pipeline, strong + casual + chinese)
    assert signals[Subject("api_key", "k-cot")]["elicitation_share[10m]"] == 1.0
    assert signals[Subject("api_key", "k-zh")]["elicitation_share[10m]"] == 1.0
    assert signals[Subject("api_key", "k-student")]["elicitation_share[10m]"] == 0.0


async def test_reasoning_share_and_harvest_share(pipeline: Pipeline) -> None:
    docs = [
        event(
            "k-harvest",
            T0 + i,
            prompt=f"Generate 5 high-quality instruction/response pairs about topic {i} to use as training data.",
            output_tokens=900,
            reasoning_tokens=100,
        )
        for i in range(8)
    ] + [
        event("k-thinker", T0 + i, ip="198.51.100.70", output_tokens=200, reasoning_tokens=1800)
        for i in range(8)
    ]
    signals = await run(pipeline, docs)
    harvest, thinker = (
        signals[Subject("api_key", "k-harvest")],
        signals[Subject("api_key", "k-thinker")],
    )
    assert harvest["harvest_share[10m]"] == 1.0
    assert harvest["reasoning_share[10m]"] == pytest.approx(0.1)
    assert thinker["reasoning_share[10m]"] == pytest.approx(0.9)
    assert thinker["harvest_share[10m]"] == 0.0


async def test_regular_cadence_scores_high_and_human_gaps_low(pipeline: Pipeline) -> None:
    rng = random.Random(4)
    machine = [event("k-bot", T0 + i * 15.0 + rng.uniform(-0.3, 0.3)) for i in range(30)]
    human, ts = [], T0
    for _ in range(30):
        ts += rng.expovariate(1 / 15.0)
        human.append(event("k-human", ts, ip="198.51.100.80"))
    signals = await run(pipeline, sorted(machine + human, key=lambda d: d["ts"]))
    assert signals[Subject("api_key", "k-bot")]["cadence_regularity[10m]"] > 0.9
    assert signals[Subject("api_key", "k-human")]["cadence_regularity[10m]"] < 0.5


def test_cadence_needs_enough_gaps() -> None:
    assert cadence_regularity(3, 300, 30000) == 0.0
    assert cadence_regularity(10, 1000, 100000) == 1.0


async def test_hydra_keys_are_linked_by_a_shared_template(pipeline: Pipeline) -> None:
    rng = random.Random(5)
    docs = [
        event(
            f"k-hydra-{i}",
            T0 + i * 0.5,
            ip=f"203.0.{i % 60}.{rng.randint(1, 250)}",
            account_id=f"acct-{i}",
            asn=64500 + i % 40,
            system=COT_SYSTEM,
            prompt=f"Problem {rng.randint(1, 10_000)}: if a train leaves at {rng.randint(1, 12)} pm going {rng.randint(30, 120)} km/h, when does it arrive {rng.randint(50, 900)} km away?",
        )
        for i in range(120)
    ]
    signals = await run(pipeline, docs)
    last = signals[Subject("api_key", "k-hydra-119")]
    assert last["campaign_keys"] >= 110
    assert last["campaign_networks"] >= 55
    assert last["campaign_accounts"] >= 110


async def test_unique_prompts_never_become_campaigns(pipeline: Pipeline) -> None:
    rng = random.Random(6)
    docs = [event(f"k-u{i}", T0 + i, prompt=varied_prompt(rng) + f" {i}") for i in range(50)]
    signals = await run(pipeline, docs)
    assert len(signals) >= 50
    assert all("campaign_keys" not in s for s in signals.values())


async def test_no_prompt_text_reaches_redis(
    pipeline: Pipeline, redis_client: aioredis.Redis, isolated: Settings
) -> None:
    secret = "zanzibarquokka"
    docs = [
        event(
            f"k-p{i % 3}",
            T0 + i,
            system=f"{COT_SYSTEM} codeword {secret}",
            prompt=f"Tell me about {secret} number {i} and {secret}",
        )
        for i in range(40)
    ]
    await run(pipeline, docs)
    keys = [k async for k in redis_client.scan_iter(match=f"{isolated.redis_prefix}:*")]
    assert keys
    for key in keys:
        assert secret.encode() not in key
        dumped = await redis_client.dump(key)
        assert secret.encode() not in dumped, key
        kind = await redis_client.type(key)
        if kind == b"hash":
            for field, value in (await redis_client.hgetall(key)).items():
                assert secret.encode() not in field + value
