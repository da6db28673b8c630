"""No record stops enforcement: oversize and hostile records are dead-lettered (bounded) or
counted, and the worker keeps counting the events behind them, on the real broker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from enforcer.core.events import OPTIONAL_FIELDS, REQUIRED_FIELDS
from enforcer.core.settings import Settings
from enforcer.core.topics import connect_admin

from ..conftest import DEFAULT_POLICY, read_topic
from .conftest import processed, readyz, scrape, total, wait_for

BIG_REQUEST_BYTES = 8 * 1_048_576


def valid_event(now: float, key: str = "k-fuzz", **fields: object) -> dict:
    doc: dict = {"event_id": uuid.uuid4().hex, "ts": now, "api_key": key, "ip": "198.51.100.7"}
    doc.update(fields)
    return doc


async def allow_big_records(settings: Settings) -> None:
    """Raise the events topic's record limit, as a careless operator might: the worker must
    cope with whatever the broker lets through."""
    admin = await connect_admin(settings)
    try:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    settings.events_topic,
                    configs={"max.message.bytes": str(BIG_REQUEST_BYTES)},
                )
            ]
        )
    finally:
        await admin.close()


async def produce(settings: Settings, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, max_request_size=BIG_REQUEST_BYTES
    )
    await producer.start()
    try:
        for key, value in records:
            await producer.send(settings.events_topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def test_megabyte_records_are_dead_lettered_as_excerpts_and_counting_goes_on(
    kafka_settings: Settings, worker_factory
) -> None:
    await allow_big_records(kafka_settings)
    # The operator's opt-in: dead letters keep the record's bytes (up to the event limit).
    worker = worker_factory(
        kafka_settings.with_(policy_file=str(DEFAULT_POLICY), deadletter_include_record=True)
    )
    now = time.time()
    one_mb = orjson.dumps(valid_event(now, prompt="x" * 1_019_950))
    five_mb = orjson.dumps(valid_event(now, prompt="y" * 5_000_000))
    assert 1_000_000 < len(one_mb) < 1_048_576
    after = [
        (f"k{i % 10}".encode(), orjson.dumps(valid_event(now + i * 0.001, f"k{i % 10}")))
        for i in range(1000)
    ]
    await produce(kafka_settings, [(b"k-huge", one_mb), (b"k-huge", five_mb), *after])

    waited = wait_for(lambda: processed(worker) >= 1002, 30, "all records handled", worker)
    samples = scrape(worker)
    assert total(samples, "enforcer_events_processed_total", result="counted") == 1000
    assert total(samples, "enforcer_events_rejected_total", reason="oversize") == 2
    assert total(samples, "enforcer_deadletter_failures_total") == 0
    assert readyz(worker)[0] == 200
    print(f"1 MB and 5 MB records handled, 1000 events behind them counted in {waited:.1f}s")

    dead = await read_topic(kafka_settings, kafka_settings.deadletter_topic, lambda m: len(m) >= 2)
    assert len(dead) == 2
    for message, original in zip(dead, (one_mb, five_mb), strict=True):
        headers = {k: v.decode() for k, v in message.headers}
        assert headers["enforcer.reason"] == "oversize"
        assert headers["enforcer.truncated"] == "1"
        assert int(headers["enforcer.size"]) == len(original)
        assert headers["enforcer.sha256"] == hashlib.sha256(original).hexdigest()
        assert message.value == original[: kafka_settings.max_event_bytes]


# -- fuzz: hostile records of every shape through the real broker --------------------------


@pytest.fixture
def fuzz_worker(kafka_settings: Settings, worker_factory) -> tuple:
    """One worker for every example: state carries over, as it would in production."""
    return worker_factory(kafka_settings.with_(policy_file=str(DEFAULT_POLICY))), kafka_settings


_TRICKY = st.sampled_from(
    [
        "\u202e",  # right-to-left override
        "\u200b",  # zero-width space
        "\x00",
        "\ufeff",
        "e\u0301",  # combining accent
        "\U0001f600",
        "\uff21\uff33\uff12",  # fullwidth "AS2"
        "\u00b2",  # superscript two: a digit to str.isdigit, not to int()
        "\ud800",  # lone surrogate (not valid UTF-8 once encoded with surrogatepass)
    ]
)
_TEXT = st.text(max_size=40) | st.lists(_TRICKY, max_size=6).map("".join)
_NUMBERS = st.sampled_from(
    [
        "1e999",
        "-1e999",
        "NaN",
        "Infinity",
        "1" * 400,
        "-0",
        "0.0000001",
        "2e-308",
        "18446744073709551616",
    ]
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=10,
)
_FIELDS = sorted({*REQUIRED_FIELDS, *OPTIONAL_FIELDS})


@st.composite
def hostile_record(draw: st.DrawFn) -> bytes:
    now = time.time()
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return draw(st.binary(max_size=3000))
    if kind == 1:  # an event with fields replaced by any JSON value or a tricky string
        doc = valid_event(now, key=draw(_TEXT) or "k")
        doc.update(draw(st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=4)))
        return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if kind == 2:  # a raw number token no JSON library agrees on
        number = draw(_NUMBERS)
        field = draw(st.sampled_from(["ts", "asn", "input_tokens", "reasoning_tokens", "status"]))
        doc = valid_event(now)
        text = json.dumps(doc)[:-1] + f', "{field}": {number}}}'
        return text.replace(f'"{field}": {json.dumps(doc.get(field))}, ', "", 1).encode()
    if kind == 3:  # nesting deeper than any parser's recursion limit
        depth = draw(st.integers(1, 20_000))
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == 4:  # another encoding than UTF-8
        encoding = draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"]))
        doc = valid_event(now, prompt=draw(st.text(max_size=30)))
        return json.dumps(doc, ensure_ascii=False).encode(encoding, "replace")
    if kind == 5:  # big, up to the broker's limit
        size = draw(st.integers(60_000, 1_040_000))
        return orjson.dumps(valid_event(now, prompt="z" * size))
    if kind == 6:  # duplicate keys, trailing garbage, a JSON array or scalar
        return draw(
            st.sampled_from(
                [
                    b'{"event_id":"a","event_id":"b","ts":1,"api_key":"k","ip":"1.2.3.4"}',
                    orjson.dumps(valid_event(now)) + b"garbage",
                    b"[]",
                    b'"just a string"',
                    b"null",
                    b"",
                ]
            )
        )
    # kind 7: a valid event with tricky but legal text in every string field
    return json.dumps(
        valid_event(now, key=draw(_TEXT) or "k", prompt=draw(_TEXT), account_id=draw(_TEXT)),
        ensure_ascii=False,
    ).encode("utf-8", "surrogatepass")


@hypothesis_settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=st.lists(hostile_record(), min_size=30, max_size=60))
def test_hostile_records_are_each_counted_or_dead_lettered_and_never_stop_the_worker(
    fuzz_worker, records: list[bytes]
) -> None:
    worker, settings = fuzz_worker
    before = scrape(worker)
    consumed = total(before, "enforcer_events_consumed_total")
    counted = total(before, "enforcer_events_processed_total", result="counted")
    now = time.time()
    sentinels = [
        (b"k-after", orjson.dumps(valid_event(now + i * 0.001, "k-after"))) for i in range(50)
    ]
    asyncio.run(produce(settings, [(b"fuzz", r) for r in records] + sentinels))
    expected = consumed + len(records) + len(sentinels)

    wait_for(
        lambda: total(scrape(worker), "enforcer_events_consumed_total") >= expected,
        30,
        "every record consumed",
        worker,
    )
    wait_for(lambda: processed(worker) >= expected, 10, "every record handled", worker)
    after = scrape(worker)
    assert processed(worker) == expected  # each record counted or dead-lettered, once
    assert total(after, "enforcer_deadletter_failures_total") == 0
    assert total(after, "enforcer_events_processed_total", result="counted") >= counted + 50
    assert readyz(worker)[0] == 200
