"""Parsing gateway_event.v1: every way a record can be wrong has its own dead-letter reason."""

from __future__ import annotations

import orjson
import pytest

from enforcer.core.events import InvalidEvent, network_of, parse_event

GOOD = {"event_id": "e1", "ts": 1790000000.5, "api_key": "k1", "ip": "203.0.113.9"}


def raw(**changes: object) -> bytes:
    doc = dict(GOOD)
    doc.update(changes)
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


def reason_of(data: bytes, max_bytes: int = 65536) -> str:
    with pytest.raises(InvalidEvent) as info:
        parse_event(data, max_bytes)
    return info.value.reason


def test_minimal_event_parses_with_derived_network() -> None:
    ev = parse_event(raw())
    assert (ev.event_id, ev.ts, ev.api_key, ev.network) == (
        "e1",
        1790000000.5,
        "k1",
        "203.0.113.0/24",
    )
    assert ev.input_tokens == ev.output_tokens == ev.reasoning_tokens == 0


def test_rfc3339_ts_is_accepted_as_unix_seconds() -> None:
    assert parse_event(raw(ts="2026-09-21T12:00:00Z")).ts == 1789992000.0
    assert parse_event(raw(ts="2026-09-21T14:00:00+02:00")).ts == 1789992000.0


def test_unknown_fields_are_ignored() -> None:
    assert parse_event(raw(something_new={"nested": True})).api_key == "k1"


def test_optional_fields_are_typed() -> None:
    ev = parse_event(
        raw(
            account_id="a1",
            asn=64500,
            input_tokens=10,
            output_tokens=20,
            reasoning_tokens=30,
            tier="pro",
        )
    )
    assert (
        ev.account_id,
        ev.asn,
        ev.input_tokens,
        ev.output_tokens,
        ev.reasoning_tokens,
        ev.tier,
    ) == (
        "a1",
        64500,
        10,
        20,
        30,
        "pro",
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"", "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (raw(event_id=...), "missing_field"),
        (raw(api_key=None), "missing_field"),
        (raw(ip=...), "missing_field"),
        (raw(ts=...), "missing_field"),
        (raw(ts=True), "wrong_type"),
        (raw(ts=[1]), "wrong_type"),
        (raw(api_key=12), "wrong_type"),
        (raw(output_tokens="12"), "wrong_type"),
        (raw(output_tokens=True), "wrong_type"),
        (raw(output_tokens=1.5), "wrong_type"),
        (raw(asn="AS64500"), "wrong_type"),
        (raw(ip="not-an-ip"), "invalid_value"),
        (raw(ip="300.1.1.1"), "invalid_value"),
        (raw(ts="yesterday"), "invalid_value"),
        (raw(ts="2026-09-21T12:00:00"), "invalid_value"),
        (raw(ts=-5), "invalid_value"),
        (raw(api_key=""), "invalid_value"),
        (raw(reasoning_tokens=-1), "invalid_value"),
        (raw(asn=2**33), "invalid_value"),
        (raw(api_key="k" * 300), "invalid_value"),
    ],
)
def test_bad_records_are_refused_with_their_reason(data: bytes, reason: str) -> None:
    assert reason_of(data) == reason


def test_oversize_record_is_refused_before_decoding() -> None:
    assert reason_of(raw(prompt="x" * 5000), max_bytes=1024) == "oversize"


def test_networks_are_slash24_for_ipv4_and_slash48_for_ipv6() -> None:
    assert network_of("192.0.2.77") == "192.0.2.0/24"
    assert network_of("2001:db8:abcd:12::1") == "2001:db8:abcd::/48"
    assert network_of("::ffff:192.0.2.77") == "192.0.2.0/24"
    assert network_of("nope") is None


def test_fast_and_checked_paths_build_the_same_event_or_the_fast_one_defers() -> None:
    """The well-formed fast path repeats the checked path's rules: they must agree."""
    from enforcer.core.events import _checked_event, _well_formed_event

    docs = [
        dict(GOOD),
        dict(
            GOOD,
            ts=1790000000,
            account_id="a",
            asn=64500,
            country="DE",
            user_agent="ua",
            endpoint="/v1",
            model="m",
            prompt="p",
            system="s",
            input_tokens=1,
            output_tokens=2,
            reasoning_tokens=3,
            status=200,
            tier="pro",
        ),
        dict(GOOD, ip="2001:db8::1"),
        dict(GOOD, ip="::ffff:192.0.2.7"),
        dict(GOOD, ts="2026-09-21T12:00:00Z"),
        dict(GOOD, output_tokens=True),
        dict(GOOD, output_tokens=-1),
        dict(GOOD, asn=2**33),
        dict(GOOD, api_key=""),
        dict(GOOD, country="x" * 9),
        dict(GOOD, ts=float("nan")),
        dict(GOOD, ip="300.1.1.1"),
    ]
    assert _well_formed_event(docs[1]) == _checked_event(docs[1])  # the fast path is taken
    for doc in docs:
        fast = _well_formed_event(doc)
        try:
            checked = _checked_event(doc)
        except InvalidEvent:
            assert fast is None, doc
            continue
        assert fast is None or fast == checked, doc


def test_thinking_budget_is_optional_and_defaults_to_none_asked() -> None:
    assert parse_event(raw()).thinking_budget == 0
    assert parse_event(raw(thinking_budget=16000)).thinking_budget == 16000
    assert parse_event(raw(thinking_budget=None)).thinking_budget == 0
    assert reason_of(raw(thinking_budget=-1)) == "invalid_value"
    assert reason_of(raw(thinking_budget="lots")) == "wrong_type"
