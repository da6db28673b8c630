"""Labeled synthetic gateway traffic: benign populations and distillation attacks.

Detectors and policies are judged on traffic where the truth is known. This package
produces ``gateway_event.v1`` dicts for a mix of benign users (including the ones
that look like attackers on one axis: students who write "think step by step",
high-volume batch jobs, templated benchmark harnesses, neighbours on an attacker's
network) and the attacks described in ``DOMAIN.md`` (a loud bulk scraper, a hydra
proxy network of hundreds of low-rate keys, a slow synonym-swapping extractor,
and a training-data harvester). Beside them, attackers who adapted to those detectors
(``adaptive``: mimic, paraphraser, api_thinking, key_churn) and products that look like
attackers on several axes at once (``customers``: a tutoring app, research evaluations,
an agent platform, a contracted dataset builder; ``adaptive`` adds people behind the
proxy pool key_churn uses).

Modules: ``config`` (populations and sizes), ``networks`` (address plan, clients),
``text`` and ``paraphrase`` (what people and paraphrasers write), ``problems`` (what
distillers ask), ``timing`` (arrival processes), ``actors`` (keys and events),
``populations``, ``adaptive`` and ``customers`` (who does what).

Honesty rules: events carry only fields a real gateway would log. API keys and
account ids are random-looking, nothing in an event names its population, and
attack traffic differs only in its behaviour (content, timing, networks, token
counts). The truth lives in the separate labels mapping.

Determinism: every population draws from its own ``random.Random`` seeded from
``(seed, population)`` and every key from its own generator, so a run is a pure
function of its config and choosing a subset of populations does not change the
others' traffic. IP addresses are synthetic, drawn inside ASNs of real-world kinds;
they are not real allocations.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from enforcer.tools.simulate.actors import _Actor, _build_world, _World
from enforcer.tools.simulate.config import (
    AGENT_PLATFORM,
    ALL_POPULATIONS,
    API_THINKING,
    ATTACK_POPULATIONS,
    BENIGN_POPULATIONS,
    BULK_SCRAPER,
    CASUAL,
    DATASET_BUILDER,
    ENTERPRISE_BATCH,
    EVAL_HARNESS,
    HARVESTER,
    HYDRA,
    KEY_CHURN,
    MIMIC,
    NAT_NEIGHBOUR,
    PARAPHRASER,
    POWER_USER,
    PROXY_USER,
    RESEARCH_EVAL,
    SLOW_EXTRACTOR,
    TUTOR_APP,
    SimulationConfig,
)
from enforcer.tools.simulate.populations import _RUNNERS, _make_actors

__all__ = [
    "KEY_CHURN",
    "API_THINKING",
    "PARAPHRASER",
    "MIMIC",
    "PROXY_USER",
    "DATASET_BUILDER",
    "AGENT_PLATFORM",
    "RESEARCH_EVAL",
    "TUTOR_APP",
    "ALL_POPULATIONS",
    "ATTACK_POPULATIONS",
    "BENIGN_POPULATIONS",
    "BULK_SCRAPER",
    "CASUAL",
    "ENTERPRISE_BATCH",
    "EVAL_HARNESS",
    "HARVESTER",
    "HYDRA",
    "NAT_NEIGHBOUR",
    "POWER_USER",
    "SLOW_EXTRACTOR",
    "SimulationConfig",
    "generate",
    "iter_events",
    "labels_for",
    "write",
]


# --- public API ---------------------------------------------------------------------------


def _actors(config: SimulationConfig) -> tuple[_World, list[_Actor]]:
    world = _build_world(config)
    actors: list[_Actor] = []
    for population in ALL_POPULATIONS:  # fixed order, whatever order the config lists
        if population in config.populations:
            actors.extend(_make_actors(population, world))
    return world, actors


def _label(actor: _Actor) -> dict[str, Any]:
    return {
        "population": actor.population,
        "attack": actor.attack,
        "account_id": actor.account_id,
        "tier": actor.tier,
        "campaign": actor.campaign,
    }


def labels_for(config: SimulationConfig) -> dict[str, dict[str, Any]]:
    """Ground truth per API key, without generating any events."""
    _, actors = _actors(config)
    return {a.api_key: _label(a) for a in actors}


_BY_TS = itemgetter("ts")


def _merged(world: _World, actors: list[_Actor]) -> Iterator[dict[str, Any]]:
    streams: list[Iterable[dict[str, Any]]] = [_RUNNERS[a.population](a, world) for a in actors]
    return heapq.merge(*streams, key=_BY_TS)


def iter_events(config: SimulationConfig) -> Iterator[dict[str, Any]]:
    """Events in timestamp order, produced lazily (one pending event per key)."""
    return _merged(*_actors(config))


def generate(config: SimulationConfig) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Events sorted by ts, and labels: api_key -> population, attack flag, account, campaign.

    Labels also carry ``events``, the number of events of that key in this run.
    """
    world, actors = _actors(config)
    events = list(_merged(world, actors))
    labels = {a.api_key: _label(a) for a in actors}
    counts = Counter(map(_BY_KEY, events))
    for key, label in labels.items():
        label["events"] = counts.get(key, 0)
    return events, labels


_BY_KEY = itemgetter("api_key")


def write(
    events: Iterable[dict[str, Any]],
    labels: dict[str, dict[str, Any]],
    events_path: str | Path,
    labels_path: str | Path,
) -> None:
    """Events as JSON lines, labels as one JSON object (both via orjson)."""
    with open(events_path, "wb") as out:
        for event in events:
            out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
    Path(labels_path).write_bytes(
        orjson.dumps(labels, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
