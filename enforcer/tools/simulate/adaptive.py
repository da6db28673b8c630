"""Attackers who changed shape once detection existed, and the ordinary users they hide among.

- mimic: power-user cadence with sessions and pauses, half ordinary prompts, extended thinking
  on every request, a fresh residential exit per session;
- paraphraser: every extraction ask reworded, in fifteen languages, from sticky residential
  proxies at 0.1-0.5 requests/s;
- api_thinking: bare hard problems with a large thinking budget and no textual cue at all;
- key_churn: hundreds of one-key accounts that make a few dozen requests each and vanish, every
  request from another exit of a rotating residential pool that proxy users share.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from typing import Any

from enforcer.tools.simulate.actors import _Actor, _event, _human_actor, _new_actor, _World
from enforcer.tools.simulate.config import API_THINKING, KEY_CHURN, MIMIC, PARAPHRASER, PROXY_USER
from enforcer.tools.simulate.networks import (
    _MODEL_NEW,
    _MODEL_REASONING,
    _Endpoint,
    _random_hex_id,
    _user_agent,
)
from enforcer.tools.simulate.paraphrase import paraphrased_ask
from enforcer.tools.simulate.problems import _lognormal_int, _problem
from enforcer.tools.simulate.text import _fill, _human_prompt
from enforcer.tools.simulate.timing import _human_times, _poisson_times

# A mimic's extraction asks, worded as a curious person would word them.
_MIMIC_ASKS = (
    "[hey|ok|so], [can you|could you|would you] [go through|work through|do] this [one|problem] "
    "[really carefully|slowly|properly] and [show me|give me|write out] [all|every bit of] your "
    "[thinking|reasoning|working]? {problem}",
    "{problem} [I'm stuck|I don't get it|My answer differs from the book]. "
    "[Explain|Walk me through] [how you'd|how to] [reason about|think about|approach] it, "
    "[every step|step by step|in full detail].",
    "[For my notes|For my study group|Trying to learn this]: {problem} "
    "[What's your full thought process|How do you reason through it from start to finish]?",
)

# key_churn's few shared chain-of-thought templates; every slot varies per request.
_CHURN_TEMPLATES = (
    "[Solve|Work out|Answer] [this|the following] [problem|question]. [Reason step by step|Think "
    "it through step by step] and [show|write out] [all|every one of] your [steps|reasoning] "
    "[before|prior to] the final answer.\n\n{problem}",
    "{problem}\n\n[Please|Kindly] [think step by step|reason carefully, step by step], "
    "[showing|displaying] your [full|complete] chain of thought, then [give|state] the answer.",
    "[Task|Problem|Exercise]: {problem}\n[Show your complete reasoning|Explain all of your "
    "reasoning] [step by step|one step at a time] and [put|write] the final answer "
    "[last|at the end].",
)


_POOLS: dict[int, tuple[_Endpoint, ...]] = {}


def _pool(world: _World) -> tuple[_Endpoint, ...]:
    """The rotating residential pool behind key_churn, which some ordinary people also use.
    A pure function of the seed, as the world's address plan is."""
    seed = world.config.seed
    found = _POOLS.get(seed)
    if found is None:
        rng = random.Random(f"{seed}:churn-pool")
        nets = world.networks
        found = _POOLS[seed] = tuple(
            nets.ipv4(rng, rng.choice(nets.residential))
            if rng.random() < 0.8
            else nets.ipv6(rng, rng.choice(nets.residential))
            for _ in range(2500)
        )
    return found


def make_adaptive_actors(
    population: str, world: _World, rng: random.Random, n: int
) -> list[_Actor]:
    nets = world.networks
    actors: list[_Actor] = []
    if population == MIMIC:
        accounts = [_random_hex_id(rng, "a_") for _ in range(max(1, n // 2))]
        for i in range(n):
            a = _human_actor(rng, world, population, power=True)
            a.attack, a.account_id, a.campaign = True, accounts[i % len(accounts)], "mimic-1"
            a.model = _MODEL_REASONING
            a.extra["budget"] = rng.choice((8192, 12288, 16384, 24576))
            actors.append(a)
    elif population == PARAPHRASER:
        accounts = [_random_hex_id(rng, "a_") for _ in range(max(1, n // 3))]
        for i in range(n):
            a = _new_actor(
                rng, population, True, rng.choice(("free", "pro")), accounts[i % len(accounts)]
            )
            a.campaign = "paraphrase-1"
            a.rate = rng.uniform(0.1, 0.5)
            a.user_agent = _user_agent(rng, 0.3)
            a.model = _MODEL_REASONING
            actors.append(a)
    elif population == API_THINKING:
        accounts = [_random_hex_id(rng, "a_") for _ in range(max(1, n // 3))]
        for i in range(n):
            a = _new_actor(rng, population, True, "pro", accounts[i % len(accounts)])
            a.campaign = "api-thinking-1"
            a.rate = rng.uniform(0.2, 1.0)
            cloud = rng.choice(nets.clouds)
            a.extra["ips"] = [nets.ipv4(rng, cloud) for _ in range(2)]
            a.user_agent = rng.choice(("anthropic-sdk-python/0.40.0", "python-httpx/0.27.0"))
            a.model = _MODEL_REASONING
            actors.append(a)
    elif population == KEY_CHURN:
        start, span = world.config.start_ts, world.config.duration_s
        for _ in range(n):
            a = _new_actor(rng, population, True, "free")  # a fresh account per key
            a.campaign = "churn-1"
            a.extra["start"] = start + rng.uniform(0.0, span * 0.95)
            a.extra["requests"] = rng.randrange(8, 26)
            a.extra["template"] = rng.randrange(len(_CHURN_TEMPLATES))
            a.user_agent = _user_agent(rng, 0.2)
            a.model = _MODEL_REASONING
            actors.append(a)
    elif population == PROXY_USER:
        for _ in range(n):
            a = _human_actor(rng, world, population, power=rng.random() < 0.3)
            a.language = "en"
            actors.append(a)
    return actors


def _heavy_sessions(rng: random.Random, world: _World) -> Iterator[float]:
    """A power user's rhythm at the top of its range: long sessions of lognormal think time,
    minutes of pause between them."""
    t = world.config.start_ts + rng.uniform(0.0, 300.0)
    while t < world.end_ts:
        for _ in range(1 + int(rng.expovariate(1.0 / 30.0))):
            if t >= world.end_ts:
                return
            yield t
            t += max(2.0, rng.lognormvariate(math.log(12.0), 0.8))
        t += rng.expovariate(1.0 / 240.0)


def _run_mimic(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    nets = world.networks
    budget: int = actor.extra["budget"]
    where = nets.ipv4(rng, rng.choice(nets.residential))
    last = None
    for ts in _heavy_sessions(rng, world):
        if last is None or ts - last > 120:  # a new session leaves from a new exit
            where = nets.ipv4(rng, rng.choice(nets.residential))
        last = ts
        model = _MODEL_NEW if ts >= world.release_ts and rng.random() < 0.8 else actor.model
        if rng.random() < 0.5:
            prompt = _human_prompt(rng, "en", power=True, cot_habit=0.0)
            output, reasoning = (
                _lognormal_int(rng, 350, 0.7, 6000),
                _lognormal_int(rng, 1500, 0.6, 32_000),
            )
        else:
            prompt = _fill(
                rng.choice(_MIMIC_ASKS).replace(
                    "{problem}", _problem(rng, False).replace("{", "(").replace("}", ")")
                ),
                rng,
            )
            output, reasoning = (
                _lognormal_int(rng, 400, 0.6, 6000),
                _lognormal_int(rng, 4500, 0.5, 32_000),
            )
        yield _event(
            rng, actor, ts, where, actor.user_agent, model, prompt, None, output, reasoning, budget
        )


def _run_paraphraser(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    nets = world.networks
    where, sticky_until = None, 0.0
    for ts in _poisson_times(rng, world.config.start_ts, world.end_ts, actor.rate):
        if where is None or ts >= sticky_until:  # sticky sessions of a residential proxy
            where = nets.ipv4(rng, rng.choice(nets.residential))
            sticky_until = ts + rng.uniform(300.0, 900.0)
        prompt = paraphrased_ask(rng, _problem(rng, chinese=rng.random() < 0.1))
        output = _lognormal_int(rng, 700, 0.5, 6000)
        reasoning = _lognormal_int(rng, 3800, 0.5, 32_000)
        yield _event(
            rng, actor, ts, where, actor.user_agent, actor.model, prompt, None, output, reasoning
        )


def _run_api_thinking(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    ips: list[_Endpoint] = actor.extra["ips"]
    for ts in _poisson_times(rng, world.config.start_ts, world.end_ts, actor.rate):
        model = _MODEL_NEW if ts >= world.release_ts and rng.random() < 0.9 else actor.model
        budget = rng.choice((16_000, 24_000, 32_000))
        output = _lognormal_int(rng, 150, 0.5, 2000)
        reasoning = _lognormal_int(rng, 6000, 0.5, budget)
        prompt = _problem(rng, chinese=rng.random() < 0.2)
        yield _event(
            rng,
            actor,
            ts,
            rng.choice(ips),
            actor.user_agent,
            model,
            prompt,
            None,
            output,
            reasoning,
            budget,
        )


def _run_key_churn(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    pool = _pool(world)
    template = _CHURN_TEMPLATES[actor.extra["template"]]
    ts = actor.extra["start"]
    for _ in range(actor.extra["requests"]):
        if ts >= world.end_ts:
            return
        problem = _problem(rng, chinese=False).replace("{", "(").replace("}", ")")
        prompt = _fill(template.replace("{problem}", problem), rng)
        output = _lognormal_int(rng, 550, 0.5, 4000)
        reasoning = _lognormal_int(rng, 3200, 0.5, 32_000)
        yield _event(
            rng,
            actor,
            ts,
            rng.choice(pool),
            actor.user_agent,
            actor.model,
            prompt,
            None,
            output,
            reasoning,
        )
        ts += max(2.0, rng.lognormvariate(math.log(10.0), 0.6))


def _run_proxy_user(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    """A person whose VPN app rotates exits: every request from another pool address."""
    rng = random.Random(actor.seed)
    pool = _pool(world)
    context, last = 0, None
    for ts in _human_times(rng, world, actor.country, power=False):
        if last is None or ts - last > 300 or rng.random() < 0.45:
            context = 0
        last = ts
        prompt = _human_prompt(rng, "en", power=False, cot_habit=0.2)
        output = _lognormal_int(rng, 250, 0.8, 8000)
        yield _event(
            rng,
            actor,
            ts,
            rng.choice(pool),
            actor.user_agent,
            actor.model,
            prompt,
            None,
            output,
            0,
            0,
            context,
        )
        context = min(context + len(prompt) // 4 + output, 60_000)


ADAPTIVE_RUNNERS: dict[str, Callable[[_Actor, _World], Iterator[dict[str, Any]]]] = {
    MIMIC: _run_mimic,
    PARAPHRASER: _run_paraphraser,
    API_THINKING: _run_api_thinking,
    KEY_CHURN: _run_key_churn,
    PROXY_USER: _run_proxy_user,
}
