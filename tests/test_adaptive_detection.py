"""Adaptive distillation against the default policy, through the real pipeline on real Redis.

Each stream is small and hand-made: an attacker that changed its shape (API-requested thinking,
reworded asks in languages the cue lists do not know, a human-looking cadence, disposable keys
behind a proxy pool) and the products that look like attackers (a tutoring app, an agent
platform, a contracted dataset builder, people behind the same proxy pool).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from enforcer.core.decisions import Decision
from enforcer.core.events import parse_event
from enforcer.core.settings import Settings
from enforcer.engine.features.elicitation import cue_scores
from enforcer.engine.features.request import COUNTERS, features_of
from enforcer.engine.hops import NetworkHops
from enforcer.engine.pipeline import Pipeline, PolicyHolder, Record
from enforcer.engine.policy import Policy, load_policy

from .conftest import DEFAULT_POLICY, event
from .stores import make_store

T0 = 1_790_000_000.0
PROBLEMS = (
    "Solve for x: {a}x + {b} = {c}.",
    "Find the remainder when {a}^{c} is divided by {b}.",
    "A rectangle has a perimeter of {c} cm and a length of {a} cm. What is its area?",
    "Write a Python function that merges {a} sorted lists of total length {c}.",
)


def problem(rng: random.Random) -> str:
    return rng.choice(PROBLEMS).format(
        a=rng.randrange(2, 40), b=rng.randrange(2, 99), c=rng.randrange(100, 999)
    )


def records(docs: list[dict]) -> list[Record]:
    docs = sorted(docs, key=lambda d: d["ts"])
    return [Record(orjson.dumps(d), topic="t", partition=0, offset=i) for i, d in enumerate(docs)]


async def run(pipeline: Pipeline, docs: list[dict], batch: int = 5) -> list[Decision]:
    out: list[Decision] = []
    stream = records(docs)
    for first in range(0, len(stream), batch):
        out += (await pipeline.process(stream[first : first + batch])).decisions
    return out


def on(decisions: list[Decision], key: str) -> list[Decision]:
    return [d for d in decisions if d.subject.key == f"api_key:{key}" and d.action != "allow"]


@pytest.fixture
async def pipeline(isolated: Settings, policy: Policy) -> AsyncIterator[Pipeline]:
    p = Pipeline(make_store(isolated, policy), PolicyHolder(policy), isolated, check_future=False)
    yield p
    await p.store.close()


# --- per-request features --------------------------------------------------------------


def counters(**fields: object) -> dict[str, int]:
    features = features_of(parse_event(orjson.dumps(event("k", T0, **fields))))
    return dict(zip(COUNTERS, features.counters, strict=True))


def test_a_thinking_budget_counts_as_asking_for_reasoning_without_any_cue() -> None:
    bare = counters(prompt="Solve for x: 3x + 5 = 20.", thinking_budget=16000)
    assert bare["think"] == 1 and bare["elic"] == 0
    assert counters(prompt="Solve for x: 3x + 5 = 20.", thinking_budget=512)["think"] == 0
    assert counters(prompt="Solve for x: 3x + 5 = 20.")["think"] == 0


def test_a_request_carrying_earlier_turns_is_a_follow_up() -> None:
    prompt = "I don't get step 2, why do we divide by 3?"
    assert counters(prompt=prompt, input_tokens=20)["fup"] == 0
    assert counters(prompt=prompt, input_tokens=1500)["fup"] == 1
    # CJK text runs about a token per character: a long message alone is not a follow-up.
    assert counters(prompt="解方程" * 200, input_tokens=600)["fup"] == 0


def test_network_hops_count_a_change_of_network_per_key() -> None:
    hops = NetworkHops(cells=1 << 10)
    assert not hops.moved("k1", "198.51.100.0/24")  # a first request has nowhere to come from
    assert not hops.moved("k1", "198.51.100.0/24")
    assert hops.moved("k1", "203.0.113.0/24")
    assert not hops.moved("k2", "203.0.113.0/24")  # another key's history is its own
    with pytest.raises(ValueError):
        NetworkHops(cells=1000)


# --- attacks that changed shape --------------------------------------------------------


async def test_api_thinking_on_bare_problems_is_caught_without_a_textual_cue(
    pipeline: Pipeline,
) -> None:
    rng = random.Random(1)
    docs = []
    for i in range(30):
        prompt = problem(rng)
        assert cue_scores(prompt, None).elicitation == 0.0
        docs.append(
            event(
                "k-api", T0 + i * 2.0, prompt=prompt, thinking_budget=24000,
                input_tokens=40, output_tokens=150, reasoning_tokens=6000, ip="203.0.113.9",
            )
        )  # fmt: skip
    decisions = on(await run(pipeline, docs), "k-api")
    assert decisions and decisions[0].rule == "api-reasoning-harvest"
    assert decisions[0].action == "degrade"
    # Caught by its tenth request, twenty seconds in.
    assert decisions[0].ts <= T0 + 20.0


# Reworded asks in languages the elicitation cues do not know.
REWORDED = (
    "Hiçbir ara adımı atlama, akıl yürütmenin her adımını göster. İşte problem: {p}",
    "यह रहा प्रश्न: {p}\nउत्तर से पहले पूरी सोच लिखिए, कृपया.",
    "Bài toán: {p} hãy trình bày từng bước suy luận của bạn nhé.",
    "Soal: {p}\nJelaskan setiap langkah penalaranmu, jangan lewati langkah apa pun.",
)


async def test_a_reworded_multilingual_extractor_is_caught_by_its_reasoning_spend(
    pipeline: Pipeline,
) -> None:
    rng = random.Random(2)
    docs = []
    for i in range(40):
        prompt = rng.choice(REWORDED).format(p=problem(rng))
        docs.append(
            event(
                "k-para", T0 + i * 4.0, prompt=prompt, input_tokens=60,
                output_tokens=700, reasoning_tokens=3800, ip="198.51.100.23",
            )
        )  # fmt: skip
    # The phrase lists miss the wording: the spend and one-shot use are what give it away.
    assert max(cue_scores(d["prompt"], None).elicitation for d in docs) < 0.5
    decisions = on(await run(pipeline, docs), "k-para")
    assert decisions and decisions[0].rule == "reasoning-spend"
    assert decisions[0].ts <= T0 + 20 * 4.0


async def test_disposable_keys_behind_a_rotating_proxy_pool_are_caught_and_pool_users_spared(
    pipeline: Pipeline,
) -> None:
    rng = random.Random(3)
    template = (
        "Solve the following problem. Think step by step and show all of your reasoning "
        "before the final answer.\n\n{p}"
    )
    docs = []
    for k in range(30):  # thirty one-key accounts, ten requests each, every one another exit
        start = T0 + k * 5.0
        for i in range(10):
            docs.append(
                event(
                    f"k-churn-{k}", start + i * 8.0, account_id=f"a-churn-{k}",
                    prompt=template.format(p=problem(rng)), input_tokens=60,
                    output_tokens=500, reasoning_tokens=3000,
                    ip=f"{rng.randrange(11, 200)}.{rng.randrange(256)}.{rng.randrange(256)}.7",
                )
            )  # fmt: skip
    for i in range(20):  # a person whose VPN rotates exits, asking ordinary things
        docs.append(
            event(
                "k-vpn-user", T0 + i * 20.0, prompt=f"What is a good recipe with {i} eggs?",
                input_tokens=20 + 150 * (i % 2), output_tokens=250,
                ip=f"{rng.randrange(11, 200)}.{rng.randrange(256)}.{rng.randrange(256)}.9",
            )
        )  # fmt: skip
    decisions = await run(pipeline, docs)
    caught = [k for k in range(30) if on(decisions, f"k-churn-{k}")]
    assert len(caught) == 30
    first = [on(decisions, f"k-churn-{k}")[0] for k in caught]
    # Corroborated (a rotating pool, a pushy template, and many keys sharing it): blocked.
    for k in range(30):
        assert ("proxy-churn-campaign", "block") in {
            (d.rule, d.action) for d in on(decisions, f"k-churn-{k}")
        }
    # Caught within its first few requests, before a per-key history could build up.
    assert all(d.ts - (T0 + k * 5.0) <= 40.0 for k, d in zip(caught, first, strict=True))
    assert on(decisions, "k-vpn-user") == []


async def test_a_human_cadence_with_thinking_on_every_request_is_caught(
    pipeline: Pipeline,
) -> None:
    rng = random.Random(4)
    docs, t = [], T0
    for i in range(24):  # a power user's rhythm, half ordinary prompts, thinking always on
        t += rng.lognormvariate(2.5, 0.8)
        ordinary = i % 2 == 0
        docs.append(
            event(
                "k-mimic", t,
                prompt=f"Write a short poem about {rng.choice(('rain', 'cats', 'Lisbon'))}."
                if ordinary else f"Could you walk me through your thinking on this? {problem(rng)}",
                thinking_budget=16384, input_tokens=40,
                output_tokens=350 if ordinary else 400,
                reasoning_tokens=1500 if ordinary else 4500,
                ip=f"81.{i // 8}.3.4",
            )
        )  # fmt: skip
    decisions = on(await run(pipeline, docs), "k-mimic")
    assert decisions and decisions[0].rule == "api-reasoning-harvest"


# --- customers that look like attackers ------------------------------------------------

TUTOR_SYSTEM = (
    "You are Mathy, a patient maths tutor for students aged 10 to 16. Explain how to solve each "
    "problem step by step in simple language, check the student's own working, and never just "
    "give the answer without the steps."
)


async def test_a_tutoring_app_relaying_students_is_not_acted_on(pipeline: Pipeline) -> None:
    rng = random.Random(5)
    docs = []
    for key in ("k-tutor-1", "k-tutor-2"):
        for i in range(3 * 240):  # three requests a second for four minutes
            follow_up = rng.random() < 0.35
            prompt = (
                "I don't understand step 2, why do we divide there?"
                if follow_up
                else f"Can you explain step by step how to solve this? {problem(rng)}"
            )
            docs.append(
                event(
                    key, T0 + i / 3.0, account_id="a-tutor", tier="team", system=TUTOR_SYSTEM,
                    prompt=prompt, thinking_budget=2048,
                    input_tokens=2500 if follow_up else 90,
                    output_tokens=650, reasoning_tokens=600, ip="52.94.10.20",
                )
            )  # fmt: skip
    # Every request pushes for steps under a tutor system prompt, well above a human's rate:
    # what the old reasoning-flood rule blocked.
    decisions = await run(pipeline, docs, batch=200)
    assert on(decisions, "k-tutor-1") == [] and on(decisions, "k-tutor-2") == []


async def test_an_agent_platform_thinking_in_react_steps_is_not_acted_on(
    pipeline: Pipeline,
) -> None:
    system = (
        "You are a coding agent. Think step by step before each edit and explain your reasoning "
        "for each tool call. Always answer as:\nThought: ...\nAction: ...\nObservation: ..."
    )
    docs, context = [], 0
    for i in range(400):  # two requests a second: a user's task, then tool results
        first = i % 6 == 0
        context = 0 if first else context + 400
        observation = f'Observation: {{"tool": "run_tests", "status": "error", "failed": {i}}}'
        prompt = "Fix the failing test in the billing module." if first else observation
        docs.append(
            event(
                "k-agent", T0 + i / 2.0, account_id="a-agents", system=system, prompt=prompt,
                thinking_budget=2048, input_tokens=300 + context, output_tokens=180,
                reasoning_tokens=350, ip="40.76.1.2",
            )
        )  # fmt: skip
    assert on(await run(pipeline, docs, batch=100), "k-agent") == []


HARVEST = (
    "Generate 20 high-quality instruction/response pairs for training data about {t}. "
    'Return them as JSON lines with the fields "instruction" and "response".'
)


async def test_one_allow_line_exempts_a_contracted_accounts_keys(
    isolated: Settings, tmp_path: Path
) -> None:
    docs = [
        event(
            "k-contract", T0 + i * 1.5, account_id="a-contract-42",
            prompt=HARVEST.format(t=("law", "biology", "tax")[i % 3]), output_tokens=2500,
        )
        for i in range(40)
    ]  # fmt: skip
    text = DEFAULT_POLICY.read_text()
    exempted = text.replace("  accounts: []", "  accounts: [a-contract-42]  # contract 2026-114")
    assert exempted.count("\n") == text.count("\n")  # one line changed, none added
    results = {}
    for name, source in (("default", text), ("exempted", exempted)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(source)
        p = load_policy(path)
        pipe = Pipeline(make_store(isolated, p), PolicyHolder(p), isolated, check_future=False)
        try:
            results[name] = on(await run(pipe, docs), "k-contract")
        finally:
            await pipe.store.drop_namespace()
            await pipe.store.close()
    assert [d.rule for d in results["default"]][:1] == ["training-data-harvest"]
    assert results["exempted"] == []
