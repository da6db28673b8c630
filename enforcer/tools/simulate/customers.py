"""Legitimate products that look like distillers on several axes at once.

- tutor app: a few keys relaying many students, 2-6 requests/s, step-by-step school maths in
  several languages under fixed tutor system prompts; students follow up on an answer;
- research evaluations: chain-of-thought benchmarks in bursts of 3-10 requests/s from cloud
  IPs, the same items across keys;
- agent platform: long ReAct and coding-agent system prompts, JSON tool results that continue
  the agent's loop, 1-3 requests/s;
- contracted dataset builder: instruction/response pairs generated under contract, which an
  operator exempts by account.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from enforcer.tools.simulate.actors import _Actor, _event, _new_actor, _World
from enforcer.tools.simulate.config import (
    AGENT_PLATFORM,
    DATASET_BUILDER,
    RESEARCH_EVAL,
    TUTOR_APP,
)
from enforcer.tools.simulate.networks import (
    _MODEL_CHAT,
    _MODEL_REASONING,
    _random_hex_id,
)
from enforcer.tools.simulate.problems import (
    _HARVEST_TEMPLATES,
    _approx_tokens,
    _code_problem,
    _lognormal_int,
    _math_problem,
    _math_problem_zh,
)
from enforcer.tools.simulate.text import _CITIES, _NOUNS, _fill
from enforcer.tools.simulate.timing import _poisson_times

_TUTOR_SYSTEMS = (
    "You are Mathy, a patient maths tutor for students aged 10 to 16. Explain how to solve each "
    "problem step by step in simple language, check the student's own working, and never just "
    "give the answer without the steps.",
    "You are a friendly homework helper. Break every solution into small numbered steps a "
    "student can follow, think step by step, and end with a similar practice exercise.",
)
_TUTOR_ASKS = {
    "en": "[Can you|Please|Could you] explain [how to solve|this] step by step? {problem}",
    "es": "¿Me explicas paso a paso cómo resolver esto? {problem}",
    "de": "Kannst du mir Schritt für Schritt erklären, wie man das löst? {problem}",
    "fr": "Tu peux m'expliquer étape par étape comment résoudre ça ? {problem}",
    "pt": "Pode me explicar passo a passo como resolver isso? {problem}",
}
_TUTOR_FOLLOW_UPS = (
    "[I don't get|I don't understand|Why do we do] step {n}[?|, can you explain again?]",
    "[I got|My answer is|Is it] {n}[, is that right?|? where did I go wrong?]",
    "[Can you give me|Give me] [another|a similar] [exercise|problem] to practise?",
    "[ok|thanks|got it]! [what about|and] if the numbers were different?",
    "why [do we divide|can't we multiply|do we subtract] there?",
)


def make_customer_actors(
    population: str, world: _World, rng: random.Random, n: int
) -> list[_Actor]:
    nets = world.networks
    account = _random_hex_id(rng, "a_")
    actors: list[_Actor] = []
    for i in range(n):
        a = _new_actor(rng, population, False, "enterprise", account)
        if population == TUTOR_APP:
            a.tier = "team"
            a.rate = rng.uniform(2.0, 6.0)
            a.home = nets.ipv4(rng, nets.by_asn[16509])
            a.user_agent = "tutor-backend/3.2 python-httpx/0.27.0"
            a.model = _MODEL_REASONING
        elif population == RESEARCH_EVAL:
            a.home = nets.ipv4(rng, nets.by_asn[15169])
            a.rate = rng.uniform(3.0, 10.0)
            a.user_agent = "lm-eval-harness/0.4 python-httpx/0.27.0"
            a.model = _MODEL_REASONING if i % 3 == 0 else _MODEL_CHAT
        elif population == AGENT_PLATFORM:
            a.rate = rng.uniform(1.0, 3.0)
            a.home = nets.ipv4(rng, nets.by_asn[8075])
            a.user_agent = "agentkit/1.8 node-fetch/1.0"
            a.job = i % len(_AGENT_SYSTEMS)
            a.model = _MODEL_REASONING if i % 2 == 0 else _MODEL_CHAT
        elif population == DATASET_BUILDER:
            a.rate = rng.uniform(0.5, 1.0)
            a.home = nets.ipv4(rng, nets.by_asn[16509])
            a.user_agent = "datagen-pipeline/2.0 openai-python/1.35.3"
            a.model = _MODEL_CHAT
        actors.append(a)
    return actors


def _school_problem(rng: random.Random, language: str) -> str:
    text = _math_problem_zh(rng) if language == "zh" else _math_problem(rng)
    return text.replace("{", "(").replace("}", ")")


def _run_tutor(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    assert actor.home is not None
    # Homework sets: students of one class ask the same exercises.
    homework = [_school_problem(rng, "en") for _ in range(40)]
    context = 0
    for ts in _poisson_times(rng, world.config.start_ts, world.end_ts, actor.rate):
        system = _TUTOR_SYSTEMS[0] if rng.random() < 0.7 else _TUTOR_SYSTEMS[1]
        roll = rng.random()
        if roll < 0.35:  # a student follows up on the tutor's last answer
            prompt = _fill(rng.choice(_TUTOR_FOLLOW_UPS), rng)
            context = rng.randrange(600, 4000)
        else:
            language = rng.choice(("en", "en", "en", "es", "de", "fr", "pt", "zh"))
            problem = rng.choice(homework) if roll < 0.5 else _school_problem(rng, language)
            ask = _TUTOR_ASKS.get(language, "{problem} 请一步一步地讲解。")
            prompt = _fill(ask.replace("{problem}", problem), rng)
            context = 0
        output = _lognormal_int(rng, 650, 0.4, 4000)  # the steps are the answer a student reads
        reasoning = _lognormal_int(rng, 600, 0.5, 4000)
        yield _event(
            rng, actor, ts, actor.home, actor.user_agent, actor.model, prompt, system,
            output, reasoning, 2048, context,
        )  # fmt: skip


_COT_ITEMS = 300


def _run_research(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    items_rng = random.Random(f"{world.config.seed}:research-items")  # the same items for all
    items = [
        f"Q: {_math_problem(items_rng) if k % 2 else _code_problem(items_rng)}\n"
        "A: Let's think step by step."
        for k in range(_COT_ITEMS)
    ]
    assert actor.home is not None
    start, end = world.config.start_ts, world.end_ts
    t = start + rng.uniform(0.0, 300.0)
    thinks = actor.model == _MODEL_REASONING
    while t < end:
        run_end = min(end, t + rng.uniform(600.0, 1200.0))  # a benchmark run of 10-20 minutes
        order = rng.sample(range(_COT_ITEMS), _COT_ITEMS)
        for k, ts in enumerate(_poisson_times(rng, t, run_end, actor.rate)):
            prompt = items[order[k % _COT_ITEMS]]
            output = _lognormal_int(rng, 260, 0.4, 2000)  # the chain of thought is graded
            reasoning = _lognormal_int(rng, 250, 0.5, 2000) if thinks else 0
            yield _event(
                rng, actor, ts, actor.home, actor.user_agent, actor.model, prompt, None,
                output, reasoning, 1024 if thinks else 0,
            )  # fmt: skip
        t = run_end + rng.uniform(120.0, 600.0)


_AGENT_SYSTEMS = (
    "You are an autonomous research agent. Use the tools below. Always answer in this format:\n"
    "Thought: reason about what to do next\nAction: the tool to call\nAction Input: its JSON "
    "arguments\nObservation: the tool result\n... (repeat Thought/Action/Observation)\n"
    "Thought: I now know the final answer\nFinal Answer: the answer.\nTools: search(query), "
    "fetch(url), calculator(expression), sql(query).",
    "You are a coding agent working in a user's repository. Think step by step before each "
    "edit: read the relevant files, plan the change, make the smallest edit, run the tests, "
    "and explain your reasoning for each tool call. Tools: read_file, write_file, run_tests, "
    "grep. Reply with one tool call as JSON per turn.",
    "You are a customer-support agent for an online shop. Look up orders with get_order, "
    "refunds with create_refund, and answer politely. Reason about the policy before acting "
    "and reply with a tool call in JSON or a final message.",
)


def _tool_result(rng: random.Random) -> str:
    doc = {
        "tool": rng.choice(("search", "fetch", "read_file", "run_tests", "get_order", "sql")),
        "status": rng.choice(("ok", "ok", "ok", "error")),
        "result": {
            "items": [
                {
                    "id": rng.randrange(10**6),
                    "name": rng.choice(_NOUNS),
                    "city": rng.choice(_CITIES),
                }
                for _ in range(rng.randrange(1, 5))
            ],
            "elapsed_ms": rng.randrange(5, 900),
        },
    }
    return "Observation: " + orjson.dumps(doc).decode()


def _run_agent(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    system = _AGENT_SYSTEMS[actor.job]
    thinks = actor.model == _MODEL_REASONING
    assert actor.home is not None
    context, steps_left = 0, 0
    for ts in _poisson_times(rng, world.config.start_ts, world.end_ts, actor.rate):
        if steps_left <= 0:  # a new task from an end user starts a new loop
            prompt = _fill(
                "[Find|Look up|Work out] the {noun} [numbers|status|details] for {city} and "
                "[summarise|fix|report] [them|it] [for the team|in a table|before Friday].",
                rng,
            )
            context, steps_left = 0, rng.randrange(3, 12)
        else:
            prompt = _tool_result(rng)
        steps_left -= 1
        output = _lognormal_int(rng, 180, 0.5, 2000)
        reasoning = _lognormal_int(rng, 350, 0.5, 4000) if thinks else 0
        yield _event(
            rng, actor, ts, actor.home, actor.user_agent, actor.model, prompt, system,
            output, reasoning, 2048 if thinks else 0, context,
        )  # fmt: skip
        context = min(context + _approx_tokens(prompt) + output + 200, 100_000)


def _run_dataset_builder(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    assert actor.home is not None
    for ts in _poisson_times(rng, world.config.start_ts, world.end_ts, actor.rate):
        prompt = _fill(rng.choice(_HARVEST_TEMPLATES[:4]), rng)
        output = _lognormal_int(rng, 2500, 0.3, 8000)
        yield _event(
            rng, actor, ts, actor.home, actor.user_agent, actor.model, prompt, None, output, 0
        )


CUSTOMER_RUNNERS: dict[str, Callable[[_Actor, _World], Iterator[dict[str, Any]]]] = {
    TUTOR_APP: _run_tutor,
    RESEARCH_EVAL: _run_research,
    AGENT_PLATFORM: _run_agent,
    DATASET_BUILDER: _run_dataset_builder,
}
