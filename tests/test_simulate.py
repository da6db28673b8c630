"""The simulator produces honest, labeled, reproducible gateway traffic at the needed scale."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from enforcer.tools.simulate import (
    AGENT_PLATFORM,
    ALL_POPULATIONS,
    API_THINKING,
    ATTACK_POPULATIONS,
    BENIGN_POPULATIONS,
    DATASET_BUILDER,
    HYDRA,
    KEY_CHURN,
    MIMIC,
    PARAPHRASER,
    PROXY_USER,
    RESEARCH_EVAL,
    TUTOR_APP,
    SimulationConfig,
    generate,
    iter_events,
    labels_for,
    write,
)

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "topics" / "schemas" / "gateway_event.v1.json"
INT_FIELDS = (
    "asn",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "status",
    "thinking_budget",
)
STR_FIELDS = (
    "account_id",
    "country",
    "user_agent",
    "endpoint",
    "model",
    "prompt",
    "system",
    "tier",
)
ALLOWED_FIELDS = {"event_id", "ts", "api_key", "ip", *INT_FIELDS, *STR_FIELDS}
IPV4 = re.compile(r"^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$")
IPV6 = re.compile(r"^[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){7}$")


@pytest.fixture(scope="module")
def full_run() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The default config: 30 minutes at scale 1.0 (a few seconds to generate)."""
    return generate(SimulationConfig())


def test_default_run_has_at_least_150k_events(full_run: Any) -> None:
    events, _ = full_run
    assert len(events) >= 150_000


def test_events_are_sorted_by_time_and_inside_the_run(full_run: Any) -> None:
    events, _ = full_run
    config = SimulationConfig()
    stamps = [e["ts"] for e in events]
    assert stamps == sorted(stamps)
    assert config.start_ts <= stamps[0] and stamps[-1] <= config.start_ts + config.duration_s


def test_every_event_has_valid_required_and_optional_fields(full_run: Any) -> None:
    events, _ = full_run
    ids = set()
    for e in events:
        assert set(e) <= ALLOWED_FIELDS
        assert isinstance(e["event_id"], str) and e["event_id"]
        assert isinstance(e["ts"], float)
        assert isinstance(e["api_key"], str) and e["api_key"]
        assert IPV4.match(e["ip"]) or IPV6.match(e["ip"]), e["ip"]
        for name in INT_FIELDS:
            if name in e:
                assert isinstance(e[name], int) and e[name] >= 0, (name, e)
        for name in STR_FIELDS:
            if name in e:
                assert isinstance(e[name], str), (name, e)
        ids.add(e["event_id"])
    assert len(ids) == len(events)


def test_events_validate_against_the_gateway_event_schema(full_run: Any) -> None:
    events, _ = full_run
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for e in events[:: max(1, len(events) // 3000)]:
        validator.validate(e)


def test_no_event_field_reveals_population_or_attack(full_run: Any) -> None:
    events, labels = full_run
    text = "\n".join(v for e in events for v in e.values() if isinstance(v, str)).lower()
    for tell in (*ALL_POPULATIONS, "attack", "campaign", "distill"):
        at = text.find(tell)
        assert at < 0, text[max(0, at - 80) : at + 80]
    assert all(re.fullmatch(r"k_[0-9a-f]{16}", key) for key in labels)
    assert all(re.fullmatch(r"a_[0-9a-f]{16}", label["account_id"]) for label in labels.values())


def test_labels_cover_every_key_and_mark_attacks(full_run: Any) -> None:
    events, labels = full_run
    keys_in_events = {e["api_key"] for e in events}
    assert keys_in_events <= set(labels)
    for label in labels.values():
        assert label["population"] in ALL_POPULATIONS
        assert label["attack"] == (label["population"] in ATTACK_POPULATIONS)
    assert sum(label["events"] for label in labels.values()) == len(events)
    for e in events[:1000]:
        assert labels[e["api_key"]]["account_id"] == e["account_id"]


def test_attacks_are_a_minority_of_events_but_hydra_keys_are_many(full_run: Any) -> None:
    events, labels = full_run
    by_population = Counter(labels[e["api_key"]]["population"] for e in events)
    attack_events = sum(by_population[p] for p in ATTACK_POPULATIONS)
    assert 0.05 < attack_events / len(events) < 0.5
    assert all(by_population[p] > 0 for p in ALL_POPULATIONS)


def test_hydra_spreads_hundreds_of_keys_over_many_networks(full_run: Any) -> None:
    events, labels = full_run
    hydra = [e for e in events if labels[e["api_key"]]["population"] == HYDRA]
    keys = {e["api_key"] for e in hydra}
    assert len(keys) >= 200
    assert len({e["asn"] for e in hydra}) >= 30
    assert len({e["country"] for e in hydra}) >= 15
    assert len({labels[k]["account_id"] for k in keys}) >= 100
    # Low rate per key: no hydra key comes near a human power user's hourly volume.
    per_key = Counter(e["api_key"] for e in hydra)
    assert max(per_key.values()) <= 1800 / 15


def test_reasoning_tokens_follow_the_kind_of_request(full_run: Any) -> None:
    events, labels = full_run

    def median_reasoning(population: str) -> int:
        values = sorted(
            e["reasoning_tokens"]
            for e in events
            if labels[e["api_key"]]["population"] == population and e["status"] == 200
        )
        return values[len(values) // 2]

    assert median_reasoning("casual") == 0
    assert median_reasoning("eval_harness") < 50
    assert median_reasoning("bulk_scraper") > 1000
    assert median_reasoning(HYDRA) > 1000


def test_same_seed_gives_the_same_events_and_another_seed_does_not() -> None:
    config = SimulationConfig(duration_s=60.0, scale=0.2)
    first, first_labels = generate(config)
    second, second_labels = generate(config)
    assert first == second and first_labels == second_labels
    other, _ = generate(SimulationConfig(duration_s=60.0, scale=0.2, seed=8))
    assert other != first


def test_iter_events_streams_exactly_what_generate_returns() -> None:
    config = SimulationConfig(duration_s=60.0, scale=0.2)
    events, labels = generate(config)
    assert list(iter_events(config)) == events
    assert set(labels_for(config)) == set(labels)


def test_choosing_populations_leaves_their_traffic_unchanged() -> None:
    everything, labels = generate(SimulationConfig(duration_s=90.0, scale=0.3))
    hydra_only, hydra_labels = generate(
        SimulationConfig(duration_s=90.0, scale=0.3, populations=(HYDRA,))
    )
    assert {label["population"] for label in hydra_labels.values()} == {HYDRA}
    assert hydra_only == [e for e in everything if labels[e["api_key"]]["population"] == HYDRA]


def test_benign_and_attack_population_lists_partition_all() -> None:
    assert set(BENIGN_POPULATIONS) | set(ATTACK_POPULATIONS) == set(ALL_POPULATIONS)
    assert not set(BENIGN_POPULATIONS) & set(ATTACK_POPULATIONS)
    with pytest.raises(ValueError):
        SimulationConfig(populations=("hydra", "martians"))


def test_write_round_trips_events_and_labels(tmp_path: Path) -> None:
    events, labels = generate(SimulationConfig(duration_s=30.0, scale=0.1))
    events_path, labels_path = tmp_path / "events.jsonl", tmp_path / "labels.json"
    write(events, labels, events_path, labels_path)
    lines = events_path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == events
    assert orjson.loads(labels_path.read_bytes()) == labels


def test_adaptive_attacks_and_lookalike_customers_are_simulated_and_labeled(
    full_run: Any,
) -> None:
    events, labels = full_run
    populations = {label["population"]: label["attack"] for label in labels.values()}
    for attack in (MIMIC, PARAPHRASER, API_THINKING, KEY_CHURN):
        assert populations[attack] is True
    for customer in (TUTOR_APP, RESEARCH_EVAL, AGENT_PLATFORM, DATASET_BUILDER, PROXY_USER):
        assert populations[customer] is False
    by_key: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_key.setdefault(e["api_key"], []).append(e)

    def of(population: str) -> list[list[dict[str, Any]]]:
        return [
            by_key[k] for k, v in labels.items() if v["population"] == population and k in by_key
        ]

    # api_thinking asks for reasoning only through the API: big budgets, bare problems.
    api = [e for key in of(API_THINKING) for e in key]
    assert all(e["thinking_budget"] >= 16_000 and "system" not in e for e in api)
    # key_churn: one-key accounts of a few dozen requests, each from another exit.
    churn = of(KEY_CHURN)
    assert len({key[0]["account_id"] for key in churn}) == len(churn)
    assert all(len(key) <= 25 for key in churn)
    assert sum(len({e["ip"] for e in key}) for key in churn) > 0.9 * sum(map(len, churn))
    # The paraphraser (almost) never repeats a prompt, and no bracket of its synonyms leaks.
    prompts = [e["prompt"] for key in of(PARAPHRASER) for e in key]
    assert len(set(prompts)) > 0.999 * len(prompts)
    assert not any("[" in p or "|" in p for p in prompts)
    # Tutor students follow up: their requests carry earlier turns in the input count.
    tutor = [e for key in of(TUTOR_APP) for e in key]
    follow_ups = sum(e["input_tokens"] > len(e["prompt"]) + len(e["system"]) + 64 for e in tutor)
    assert 0.2 < follow_ups / len(tutor) < 0.5
