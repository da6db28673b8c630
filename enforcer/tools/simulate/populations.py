"""The populations that existed before adaptive attacks: who they are and how they behave."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from enforcer.tools.simulate.actors import (
    _Actor,
    _event,
    _human_actor,
    _new_actor,
    _reasoning_for,
    _weighted_country,
    _World,
    model_thinks,
)
from enforcer.tools.simulate.adaptive import ADAPTIVE_RUNNERS, make_adaptive_actors
from enforcer.tools.simulate.config import (
    _BASE_KEYS,
    BULK_SCRAPER,
    CASUAL,
    ENTERPRISE_BATCH,
    EVAL_HARNESS,
    HARVESTER,
    HYDRA,
    NAT_NEIGHBOUR,
    POWER_USER,
    SLOW_EXTRACTOR,
)
from enforcer.tools.simulate.customers import CUSTOMER_RUNNERS, make_customer_actors
from enforcer.tools.simulate.networks import (
    _CLOUD_FOR_BATCH,
    _CLOUD_FOR_SCRAPER,
    _CLOUDS_FOR_HARVESTER,
    _MODEL_CHAT,
    _MODEL_MINI,
    _MODEL_NEW,
    _MODEL_REASONING,
    _Endpoint,
    _random_hex_id,
    _user_agent,
)
from enforcer.tools.simulate.problems import (
    _HARVEST_TEMPLATES,
    _HYDRA_SUFFIXES_EN,
    _HYDRA_SUFFIXES_ZH,
    _HYDRA_SYSTEMS_EN,
    _HYDRA_SYSTEMS_ZH,
    _SCRAPER_TEMPLATE,
    _SLOW_TEMPLATES,
    _approx_tokens,
    _lognormal_int,
    _problem,
    _synonym_swap,
)
from enforcer.tools.simulate.text import (
    _ADJECTIVES,
    _ALL_COT_SUFFIXES,
    _CITIES,
    _NOUNS,
    _fill,
    _human_prompt,
    _payload,
    _phrases,
    _sentence,
)
from enforcer.tools.simulate.timing import (
    _burst_times,
    _human_times,
    _poisson_times,
    _regular_times,
)


def _make_actors(population: str, world: _World) -> list[_Actor]:
    config = world.config
    rng = random.Random(f"{config.seed}:{population}")
    n = max(1, round(_BASE_KEYS[population] * config.scale))
    if population in ADAPTIVE_RUNNERS:
        return make_adaptive_actors(population, world, rng, n)
    if population in CUSTOMER_RUNNERS:
        return make_customer_actors(population, world, rng, n)
    nets = world.networks
    actors: list[_Actor] = []
    if population in (CASUAL, POWER_USER):
        actors = [_human_actor(rng, world, population, population == POWER_USER) for _ in range(n)]
    elif population == ENTERPRISE_BATCH:
        account = _random_hex_id(rng, "a_")
        gateways = [nets.ipv4(rng, nets.by_asn[_CLOUD_FOR_BATCH]) for _ in range(3)]
        for i in range(n):
            a = _new_actor(rng, population, False, "enterprise", account)
            a.home = gateways[i % len(gateways)]
            a.user_agent = rng.choice(("openai-python/1.35.3", "Go-http-client/2.0"))
            a.rate = rng.uniform(4.0, 8.0)
            a.job = i % len(_BATCH_JOBS)
            a.model = rng.choice((_MODEL_MINI, _MODEL_CHAT))
            actors.append(a)
    elif population == EVAL_HARNESS:
        account = _random_hex_id(rng, "a_")
        runner = nets.ipv4(rng, nets.by_asn[15169])
        for i in range(n):
            a = _new_actor(rng, population, False, "enterprise", account)
            a.home = runner
            a.user_agent = "python-httpx/0.27.0"
            a.job = i % 3
            a.rate = rng.uniform(10.0, 25.0)
            a.model = rng.choice((_MODEL_CHAT, _MODEL_REASONING, _MODEL_MINI))
            actors.append(a)
    elif population == NAT_NEIGHBOUR:
        for i in range(n):
            on_campus = i % 2 == 0
            a = _human_actor(rng, world, population, power=on_campus)
            if on_campus:
                # Students behind the campus NAT: a couple of public IPs for everyone.
                a.home = nets.in_24(nets.campus_24, rng.choice((7, 8, 9)), 64500)
                a.country = "US"
                a.language = "en" if rng.random() < 0.8 else "zh"
                a.cot_habit = 0.4 if rng.random() < 0.5 else 0.0
            else:
                # Small apps rented on the same cloud /24 as the bulk scraper.
                a.home = nets.in_24(nets.scraper_24, rng.randrange(20, 250), _CLOUD_FOR_SCRAPER)
                a.user_agent = _user_agent(rng, 0.0)
                a.language = "en"
            actors.append(a)
    elif population == BULK_SCRAPER:
        account = _random_hex_id(rng, "a_")
        for i in range(n):
            a = _new_actor(rng, population, True, "pro", account)
            a.campaign = "bulk-1"
            a.extra["ips"] = [
                nets.in_24(nets.scraper_24, 10 + i * 3 + j, _CLOUD_FOR_SCRAPER) for j in range(3)
            ]
            a.user_agent = "python-requests/2.31.0"
            a.rate = rng.uniform(3.5, 4.5)
            a.model = _MODEL_REASONING
            actors.append(a)
    elif population == HYDRA:
        accounts = [_random_hex_id(rng, "a_") for _ in range(max(1, round(n * 0.6)))]
        for i in range(n):
            account = accounts[i] if i < len(accounts) else rng.choice(accounts)
            a = _new_actor(rng, population, True, rng.choice(("free", "free", "pro")), account)
            a.campaign = "hydra-1"
            a.rate = 1.0 / rng.uniform(20.0, 60.0)
            a.endpoint = "/v1/chat/completions"
            a.model = _MODEL_REASONING
            actors.append(a)
    elif population == SLOW_EXTRACTOR:
        for _ in range(n):
            a = _new_actor(rng, population, True, "pro")
            a.campaign = "slow-1"
            a.country = _weighted_country(rng)
            a.home = nets.ipv4(rng, nets.home_network(rng, a.country))
            a.user_agent = _user_agent(rng, 0.5)
            a.rate = 1.0 / rng.uniform(60.0, 180.0)
            a.model = _MODEL_REASONING
            actors.append(a)
    elif population == HARVESTER:
        accounts = [_random_hex_id(rng, "a_") for _ in range(max(1, n // 2))]
        for i in range(n):
            a = _new_actor(rng, population, True, "pro", accounts[i % len(accounts)])
            a.campaign = "harvest-1"
            cloud = nets.by_asn[_CLOUDS_FOR_HARVESTER[i % len(_CLOUDS_FOR_HARVESTER)]]
            a.extra["ips"] = [nets.ipv4(rng, cloud) for _ in range(2)]
            a.user_agent = rng.choice(("python-httpx/0.27.0", "aiohttp/3.9.5"))
            a.rate = 1.0 / rng.uniform(3.0, 5.0)
            a.model = _MODEL_CHAT
            actors.append(a)
    return actors


def _run_human(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    power = actor.population == POWER_USER or (
        actor.population == NAT_NEIGHBOUR and actor.cot_habit > 0
    )
    nets = world.networks
    mobile = nets.mobile_network(rng, actor.country) if actor.population != NAT_NEIGHBOUR else None
    adopts_new_model = rng.random() < 0.1
    assert actor.home is not None
    # Some power users on the reasoning model set an extended-thinking budget in their client.
    budget = 0
    if power and model_thinks(actor.model) and rng.random() < 0.3:
        budget = rng.choice((2048, 4096, 8192))
    context, last_ts = 0, None
    for ts in _human_times(rng, world, actor.country, power):
        where = actor.home
        if mobile is not None and rng.random() < 0.1:
            where = nets.ipv4(rng, mobile)
        model = actor.model
        if adopts_new_model and ts >= world.release_ts:
            model = _MODEL_NEW
        # People chat: within a session most requests continue the conversation, and the
        # gateway's input count carries its earlier turns.
        if last_ts is None or ts - last_ts > 300 or rng.random() < 0.45:
            context = 0
        last_ts = ts
        prompt = _human_prompt(rng, actor.language, power, actor.cot_habit)
        asks_reasoning = actor.cot_habit > 0 and prompt.endswith(_ALL_COT_SUFFIXES)
        output = _lognormal_int(rng, 450 if power else 220, 0.8, 8000)
        thinking = budget if model_thinks(model) else 0
        reasoning = _reasoning_for(
            rng, model, (900 if asks_reasoning else 350) * (2 if thinking else 1)
        )
        yield _event(
            rng,
            actor,
            ts,
            where,
            actor.user_agent,
            model,
            prompt,
            None,
            output,
            reasoning,
            thinking,
            context,
        )
        context = min(context + _approx_tokens(prompt) + output, 60_000)


# Enterprise batch jobs: a fixed instruction around a varied payload, short outputs.
_BATCH_JOBS: tuple[tuple[str, str, int], ...] = (
    (
        "You label customer support tickets.",
        "Classify the sentiment of this ticket as positive, negative or neutral. "
        "Reply with one word.\n\nTicket #{id}: {payload}",
        3,
    ),
    (
        "You extract structured data.",
        "Extract the vendor, amount and due date from this invoice as JSON.\n\n"
        "Invoice {id}: {payload}",
        60,
    ),
    (
        "You write product copy for an online shop.",
        "Write a two-sentence product description for a {adj} {noun} "
        "for {city} customers. Notes: {payload}",
        90,
    ),
    (
        "You summarise internal documents.",
        "Summarise the following meeting notes in three bullet points.\n\n{payload}",
        120,
    ),
)


def _run_enterprise(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    system, template, out_median = _BATCH_JOBS[actor.job]
    assert actor.home is not None
    for ts in _poisson_times(rng, world.config.start_ts, world.end_ts, actor.rate):
        c = rng.choice
        prompt = template.format(
            id=rng.randrange(10_000, 999_999),
            payload=_payload(rng, rng.randrange(2, 6)),
            adj=c(_ADJECTIVES),
            noun=c(_NOUNS),
            city=c(_CITIES),
        )
        output = _lognormal_int(rng, out_median, 0.5, 2000)
        yield _event(
            rng, actor, ts, actor.home, actor.user_agent, actor.model, prompt, system, output, 0
        )


_EVAL_SUBJECTS = _phrases(
    "biology|law|economics|chemistry|history|computer science|philosophy|medicine"
)


def _eval_prompt(rng: random.Random, kind: int) -> tuple[str, int]:
    c = rng.choice
    if kind == 0:
        options = rng.sample(_NOUNS, 4)
        return (
            f"The following is a multiple choice question about {c(_EVAL_SUBJECTS)}.\n\n"
            f"Question: Which of the following best describes the role of the {c(_NOUNS)} in a "
            f"{c(_ADJECTIVES)} "
            f"{c(_NOUNS)}?\nA. {options[0]}\nB. {options[1]}\nC. {options[2]}\nD. {options[3]}\n"
            "Answer with only the letter.",
            1,
        )
    if kind == 1:
        a, b = rng.randrange(10, 9999), rng.randrange(10, 9999)
        return f"Q: What is {a} + {b}?\nA:", 3
    return (
        f"Statement: {_sentence(rng)}\nIs the statement above grammatical? Answer True or False.",
        1,
    )


def _run_eval(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    assert actor.home is not None
    for ts in _burst_times(rng, world.config.start_ts, world.end_ts, actor.rate):
        prompt, answer_tokens = _eval_prompt(rng, actor.job)
        reasoning = _lognormal_int(rng, 20, 0.5, 200) if actor.model == _MODEL_REASONING else 0
        yield _event(
            rng,
            actor,
            ts,
            actor.home,
            actor.user_agent,
            actor.model,
            prompt,
            None,
            answer_tokens,
            reasoning,
        )


def _attack_model(rng: random.Random, ts: float, switch_ts: float) -> str:
    return _MODEL_NEW if ts >= switch_ts and rng.random() < 0.9 else _MODEL_REASONING


def _run_bulk_scraper(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    ips: list[_Endpoint] = actor.extra["ips"]
    switch_ts = world.release_ts + rng.expovariate(1.0 / 120.0)
    for ts in _regular_times(rng, world.config.start_ts, world.end_ts, actor.rate, 0.25):
        prompt = _SCRAPER_TEMPLATE.format(problem=_problem(rng, chinese=False))
        model = _attack_model(rng, ts, switch_ts)
        output = _lognormal_int(rng, 700, 0.4, 4000)
        reasoning = _lognormal_int(rng, 4000, 0.5, 32_000)
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
        )


def _run_hydra(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    pool = world.proxy_pool
    switch_ts = world.release_ts + rng.expovariate(1.0 / 180.0)
    for ts in _regular_times(rng, world.config.start_ts, world.end_ts, actor.rate, 0.08):
        where = rng.choice(pool)
        user_agent = _user_agent(rng, 0.2)
        model = _attack_model(rng, ts, switch_ts)
        if rng.random() < 0.2:
            # Ordinary-looking requests mixed in to dilute the key's profile.
            prompt = _human_prompt(rng, "en", power=False, cot_habit=0.0)
            output = _lognormal_int(rng, 220, 0.8, 8000)
            reasoning = _reasoning_for(rng, model, 300)
            yield _event(rng, actor, ts, where, user_agent, model, prompt, None, output, reasoning)
            continue
        chinese = rng.random() < 0.3
        problem = _problem(rng, chinese)
        suffixes = _HYDRA_SUFFIXES_ZH if chinese else _HYDRA_SUFFIXES_EN
        prompt = problem + rng.choice(suffixes)
        system: str | None = None
        if rng.random() < 0.7:
            system = rng.choice(_HYDRA_SYSTEMS_ZH if chinese else _HYDRA_SYSTEMS_EN)
        output = _lognormal_int(rng, 600, 0.5, 4000)
        reasoning = _lognormal_int(rng, 3000, 0.6, 32_000)
        yield _event(rng, actor, ts, where, user_agent, model, prompt, system, output, reasoning)


def _run_slow_extractor(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    template = _SLOW_TEMPLATES[actor.seed % len(_SLOW_TEMPLATES)]
    assert actor.home is not None
    for ts in _poisson_times(rng, world.config.start_ts, world.end_ts, actor.rate):
        prompt = _synonym_swap(template, rng, _problem(rng, chinese=False))
        output = _lognormal_int(rng, 600, 0.5, 4000)
        reasoning = _lognormal_int(rng, 3500, 0.5, 32_000)
        yield _event(
            rng,
            actor,
            ts,
            actor.home,
            actor.user_agent,
            actor.model,
            prompt,
            None,
            output,
            reasoning,
        )


def _run_harvester(actor: _Actor, world: _World) -> Iterator[dict[str, Any]]:
    rng = random.Random(actor.seed)
    ips: list[_Endpoint] = actor.extra["ips"]
    for ts in _poisson_times(rng, world.config.start_ts, world.end_ts, actor.rate):
        prompt = _fill(rng.choice(_HARVEST_TEMPLATES), rng)
        output = _lognormal_int(rng, 2500, 0.35, 8000)
        reasoning = _lognormal_int(rng, 30, 0.8, 300) if rng.random() < 0.3 else 0
        yield _event(
            rng,
            actor,
            ts,
            rng.choice(ips),
            actor.user_agent,
            actor.model,
            prompt,
            None,
            output,
            reasoning,
        )


_RUNNERS: dict[str, Callable[[_Actor, _World], Iterator[dict[str, Any]]]] = {
    CASUAL: _run_human,
    POWER_USER: _run_human,
    NAT_NEIGHBOUR: _run_human,
    ENTERPRISE_BATCH: _run_enterprise,
    EVAL_HARNESS: _run_eval,
    BULK_SCRAPER: _run_bulk_scraper,
    HYDRA: _run_hydra,
    SLOW_EXTRACTOR: _run_slow_extractor,
    HARVESTER: _run_harvester,
    **ADAPTIVE_RUNNERS,
    **CUSTOMER_RUNNERS,
}
