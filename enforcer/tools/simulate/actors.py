"""An actor is one API key and the behaviour behind it; the world is what actors share."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from enforcer.tools.simulate.config import SimulationConfig
from enforcer.tools.simulate.networks import (
    _COUNTRY_LANGUAGE,
    _MODEL_CHAT,
    _MODEL_MINI,
    _MODEL_NEW,
    _MODEL_REASONING,
    _NEW_MODEL_RELEASE_FRACTION,
    _USER_COUNTRIES,
    _Endpoint,
    _Networks,
    _random_hex_id,
    _user_agent,
)
from enforcer.tools.simulate.problems import _approx_tokens, _lognormal_int

# --- actors -----------------------------------------------------------------------------


@dataclass
class _Actor:
    """One API key and the behaviour behind it (never serialised into events)."""

    api_key: str
    account_id: str
    population: str
    attack: bool
    tier: str
    seed: int
    campaign: str | None = None
    country: str = "US"
    language: str = "en"
    home: _Endpoint | None = None
    user_agent: str = ""
    endpoint: str = "/v1/chat/completions"
    model: str = _MODEL_CHAT
    cot_habit: float = 0.0
    rate: float = 0.0  # requests per second, for machine-paced actors
    job: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _World:
    config: SimulationConfig
    networks: _Networks
    proxy_pool: tuple[_Endpoint, ...]
    release_ts: float

    @property
    def end_ts(self) -> float:
        return self.config.start_ts + self.config.duration_s


def _build_world(config: SimulationConfig) -> _World:
    rng = random.Random(f"{config.seed}:networks")
    networks = _Networks(rng)
    pool: list[_Endpoint] = []
    for _ in range(1500):
        roll = rng.random()
        if roll < 0.88:
            net = rng.choice(networks.residential)
            pool.append(networks.ipv4(rng, net) if rng.random() < 0.85 else networks.ipv6(rng, net))
        else:
            pool.append(networks.ipv4(rng, rng.choice(networks.clouds)))
    # A handful of the proxies exit through the campus NAT.
    pool.extend(networks.in_24(networks.campus_24, host, 64500) for host in (7, 8, 9, 10, 11))
    return _World(
        config=config,
        networks=networks,
        proxy_pool=tuple(pool),
        release_ts=config.start_ts + _NEW_MODEL_RELEASE_FRACTION * config.duration_s,
    )


_COUNTRIES = tuple(c for c, _ in _USER_COUNTRIES)
_COUNTRY_CUM_WEIGHTS = tuple(accumulate(w for _, w in _USER_COUNTRIES))


def _weighted_country(rng: random.Random) -> str:
    return rng.choices(_COUNTRIES, cum_weights=_COUNTRY_CUM_WEIGHTS)[0]


def _new_actor(
    rng: random.Random, population: str, attack: bool, tier: str, account_id: str | None = None
) -> _Actor:
    return _Actor(
        api_key=_random_hex_id(rng, "k_"),
        account_id=account_id or _random_hex_id(rng, "a_"),
        population=population,
        attack=attack,
        tier=tier,
        seed=rng.getrandbits(64),
    )


def _human_actor(rng: random.Random, world: _World, population: str, power: bool) -> _Actor:
    actor = _new_actor(
        rng,
        population,
        False,
        rng.choice(("pro", "pro", "team")) if power else rng.choice(("free", "free", "pro")),
    )
    actor.country = _weighted_country(rng)
    local = _COUNTRY_LANGUAGE.get(actor.country)
    actor.language = local if local and rng.random() < 0.7 else "en"
    net = world.networks.home_network(rng, actor.country)
    actor.home = (
        world.networks.ipv6(rng, net) if rng.random() < 0.25 else world.networks.ipv4(rng, net)
    )
    actor.user_agent = _user_agent(rng, 0.3 if power else 0.6)
    actor.endpoint = "/v1/responses" if rng.random() < 0.2 else "/v1/chat/completions"
    actor.model = rng.choices(
        (_MODEL_CHAT, _MODEL_MINI, _MODEL_REASONING), (0.6, 0.3, 0.35 if power else 0.05)
    )[0]
    if power:
        actor.cot_habit = 0.4 if rng.random() < 0.3 else 0.0
    return actor


# --- event construction -----------------------------------------------------------------


def _event(
    rng: random.Random,
    actor: _Actor,
    ts: float,
    where: _Endpoint,
    user_agent: str,
    model: str,
    prompt: str,
    system: str | None,
    output_tokens: int,
    reasoning_tokens: int,
    thinking_budget: int = 0,
    context_tokens: int = 0,
) -> dict[str, Any]:
    """One gateway record. `context_tokens` are the earlier turns of a conversation the request
    carries (the gateway's input count includes them; `prompt` is the newest message only);
    `thinking_budget` is the reasoning the request asked for through the API."""
    roll = rng.random()
    status = 200 if roll < 0.975 else 429 if roll < 0.985 else 400 if roll < 0.995 else 503
    if status != 200:
        output_tokens = reasoning_tokens = 0
    event: dict[str, Any] = {
        "event_id": f"{rng.getrandbits(128):032x}",
        "ts": round(ts, 3),
        "api_key": actor.api_key,
        "account_id": actor.account_id,
        "ip": where.ip,
        "asn": where.asn,
        "country": where.country,
        "user_agent": user_agent,
        "endpoint": actor.endpoint,
        "model": model,
        "tier": actor.tier,
        "prompt": prompt,
    }
    if system:
        event["system"] = system
    event["input_tokens"] = _approx_tokens(prompt) + _approx_tokens(system) + 8 + context_tokens
    event["output_tokens"] = output_tokens
    event["reasoning_tokens"] = reasoning_tokens
    event["status"] = status
    if thinking_budget:
        event["thinking_budget"] = thinking_budget
    return event


def model_thinks(model: str) -> bool:
    return model in (_MODEL_REASONING, _MODEL_NEW)


def _reasoning_for(rng: random.Random, model: str, median: float) -> int:
    if model in (_MODEL_REASONING, _MODEL_NEW):
        return _lognormal_int(rng, median, 0.7, 32_000)
    return 0
