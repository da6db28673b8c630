"""The code's models and the JSON Schemas in topics/ describe the same contracts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from enforcer.core.decisions import ACTIONS, MODES, Decision, Lift, Reason, Subject
from enforcer.core.events import OPTIONAL_FIELDS, REQUIRED_FIELDS, InvalidEvent, parse_event
from enforcer.core.subjects import SUBJECT_KINDS

SCHEMAS = Path(__file__).resolve().parent.parent / "topics" / "schemas"
JSON_TYPES = {str: "string", int: "integer", float: "number"}


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        schema(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_gateway_event_fields_match_the_schema() -> None:
    s = schema("gateway_event.v1")
    assert set(s["required"]) == set(REQUIRED_FIELDS)
    assert set(s["properties"]) == set(REQUIRED_FIELDS) | set(OPTIONAL_FIELDS)
    for name, kind in OPTIONAL_FIELDS.items():
        assert s["properties"][name]["type"] == JSON_TYPES[kind], name


SAMPLES = [
    {"event_id": "a", "ts": 1790000000, "api_key": "k", "ip": "192.0.2.1"},
    {"event_id": "a", "ts": "2026-09-21T12:00:00Z", "api_key": "k", "ip": "2001:db8::1"},
    {
        "event_id": "a",
        "ts": 1790000000,
        "api_key": "k",
        "ip": "192.0.2.1",
        "asn": 64500,
        "output_tokens": 3,
    },
    {"event_id": "a", "ts": 1790000000, "api_key": "k"},
    {"event_id": "a", "ts": 1790000000, "api_key": "k", "ip": "nope"},
    {"event_id": "a", "ts": 1790000000, "api_key": "k", "ip": "192.0.2.1", "output_tokens": -1},
    {"event_id": "a", "ts": 1790000000, "api_key": "k", "ip": "192.0.2.1", "output_tokens": "3"},
    {"event_id": "a", "ts": [1], "api_key": "k", "ip": "192.0.2.1"},
    {"event_id": "", "ts": 1790000000, "api_key": "k", "ip": "192.0.2.1"},
    {"event_id": "a", "ts": 1790000000, "api_key": 5, "ip": "192.0.2.1"},
]


@pytest.mark.parametrize("doc", SAMPLES)
def test_parser_accepts_exactly_what_the_schema_accepts(doc: dict) -> None:
    schema_ok = validator("gateway_event.v1").is_valid(doc)
    try:
        parse_event(orjson.dumps(doc))
        parser_ok = True
    except InvalidEvent:
        parser_ok = False
    assert parser_ok == schema_ok


def test_decision_serialisation_matches_the_schema() -> None:
    s = schema("decision.v1")
    assert tuple(s["properties"]["action"]["enum"]) == ACTIONS
    assert tuple(s["properties"]["mode"]["enum"]) == MODES
    assert tuple(s["properties"]["subject"]["properties"]["kind"]["enum"]) == SUBJECT_KINDS
    decision = Decision(
        subject=Subject("network", "203.0.113.0/24"),
        action="throttle",
        ts=1790000000.0,
        issued_at=1790000001.0,
        expires_at=1790000300.0,
        rule="network-flood",
        policy_version="default@1#abc",
        mode="enforce",
        limit_rps=10.0,
        reasons=(Reason("volume", "rps", 55.0, 40.0, "1m"),),
    )
    doc = orjson.loads(decision.to_json())
    validator("decision.v1").validate(doc)
    assert set(doc) == set(s["properties"])
    assert Decision.from_dict(doc) == decision


def test_a_lift_carries_who_and_why_on_the_wire() -> None:
    lift = Decision(
        subject=Subject("api_key", "k-1"),
        action="allow",
        ts=1790000000.0,
        issued_at=1790000000.0,
        expires_at=1790003600.0,
        rule="lift",
        policy_version="operator",
        mode="enforce",
        lift=Lift("alice", "false positive: tutoring app"),
    )
    doc = orjson.loads(lift.to_json())
    validator("decision.v1").validate(doc)
    assert doc["lift"] == {"by": "alice", "reason": "false positive: tutoring app"}
    assert Decision.from_dict(doc) == lift


def test_shadow_decisions_never_share_a_compaction_key_with_enforce_ones() -> None:
    base = dict(
        subject=Subject("api_key", "k1"),
        action="block",
        ts=1.0,
        issued_at=1.0,
        expires_at=2.0,
        rule="r",
        policy_version="p",
        limit_rps=None,
    )
    enforce, shadow = Decision(mode="enforce", **base), Decision(mode="shadow", **base)
    assert enforce.record_key == b"api_key:k1"
    assert shadow.record_key == b"shadow/api_key:k1"
