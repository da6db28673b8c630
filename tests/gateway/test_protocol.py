"""The sidecar's connections: its own answer to requests aiohttp cannot parse, deadlines for
half-sent requests and idle connections, and log lines that a flood cannot multiply."""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import pytest

from enforcer.gateway.protocol import ThrottledLog
from tests.gateway.conftest import RawConnection, SidecarFactory, raw_request

MARKER = "ECHO-ME"
CHECK = b"GET /v1/check HTTP/1.1\r\nHost: sidecar\r\n"


@pytest.mark.parametrize(
    ("case", "request_bytes"),
    [
        ("header over the size limit", CHECK + f"X-Pad: {MARKER}{'p' * 5000}\r\n\r\n".encode()),
        (
            "request line over the size limit",
            f"GET /v1/check?{MARKER}{'q' * 5000} HTTP/1.1\r\n\r\n".encode(),
        ),
        ("header line without a colon", CHECK + f"{MARKER} no colon here\r\n\r\n".encode()),
        (
            "header value with a NUL byte",
            CHECK + f"X-Enforcer-Ip: 192.0.2.1\r\nX-Pad: {MARKER}\x00\r\n\r\n".encode(),
        ),
        ("not HTTP at all", f"\x16\x03\x01\x00\xa5{MARKER}\r\n\r\n".encode("latin-1")),
        (
            "ASN written in superscript digits",
            CHECK + "X-Enforcer-Ip: 192.0.2.1\r\nX-Enforcer-Asn: AS²\r\n\r\n".encode(),
        ),
        (
            "key that is not UTF-8",
            CHECK
            + b"X-Enforcer-Ip: 192.0.2.1\r\nX-Enforcer-Key: k\xff\xfe"
            + MARKER.encode()
            + b"\r\n\r\n",
        ),
        (
            "key with a control character",
            CHECK + f"X-Enforcer-Ip: 192.0.2.1\r\nX-Enforcer-Key: k\x01{MARKER}\r\n\r\n".encode(),
        ),
        (
            "client IP given twice",
            CHECK + b"X-Enforcer-Ip: 192.0.2.1\r\nX-Enforcer-Ip: 203.0.113.9\r\n\r\n",
        ),
        (
            "IPv6 address with a zone id",
            CHECK + f"X-Enforcer-Ip: 2001:db8::5%{MARKER}\r\n\r\n".encode(),
        ),
        (
            "body over 64 KiB",
            CHECK + b"X-Enforcer-Ip: 192.0.2.1\r\nContent-Length: 70000\r\n\r\n" + b"b" * 70000,
        ),
    ],
)
async def test_every_malformed_request_gets_the_sidecars_400_quoting_nothing_of_it(
    sidecar_factory: SidecarFactory, case: str, request_bytes: bytes
) -> None:
    sidecar = await sidecar_factory()
    answer = await raw_request(sidecar.port, request_bytes)
    assert answer.status in (400, 413), case
    assert answer.headers["x-enforcer-action"] == "invalid", case
    assert answer.headers["content-type"] == "application/json", case
    assert orjson.loads(answer.body)["action"] == "invalid", case
    assert MARKER.encode() not in answer.body and MARKER.lower() not in str(answer.headers), case
    assert sidecar.metrics.answers[("invalid", answer.status)] == 1, case


async def test_malformed_requests_are_logged_once_per_interval_without_tracebacks(
    sidecar_factory: SidecarFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sidecar = await sidecar_factory(log_every_s=60)
    caplog.set_level(logging.DEBUG)
    for i in range(20):
        bad = CHECK + b"X-Pad: " + b"p" * 5000 if i % 2 else CHECK + b"no colon\r\n\r\n"
        assert (await raw_request(sidecar.port, bad + b"\r\n\r\n")).status == 400
    mentions = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(mentions) == 1, [r.getMessage() for r in mentions]
    assert "p" * 50 not in caplog.text and "no colon" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info], "a malformed request logged a traceback"


def test_throttled_log_writes_one_line_per_interval_counting_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    throttled = ThrottledLog(logging.getLogger("test.throttled"), 10.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="test.throttled")
    logged = [throttled.log("bad request from %s", "gateway") for _ in range(5)]
    now[0] += 9.9
    logged.append(throttled.log("bad request from %s", "gateway"))
    now[0] += 0.1
    logged.append(throttled.log("bad request from %s", "gateway"))
    assert logged == [True, False, False, False, False, False, True]
    assert [r.getMessage() for r in caplog.records] == [
        "bad request from gateway (0 more like it in the last 10 s not logged)",
        "bad request from gateway (5 more like it in the last 10 s not logged)",
    ]


async def test_fault_in_a_check_is_answered_500_with_its_action_and_logged_with_traceback(
    sidecar_factory: SidecarFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sidecar = await sidecar_factory()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("lookup exploded")

    sidecar.cache.lookup = broken  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="enforcer.gateway.sidecar")
    answer = await raw_request(sidecar.port, CHECK + b"X-Enforcer-Ip: 192.0.2.1\r\n\r\n")
    assert (answer.status, answer.headers["x-enforcer-action"]) == (500, "error")
    assert b"exploded" not in answer.body and b"Traceback" not in answer.body
    [record] = [r for r in caplog.records if r.name == "enforcer.gateway.sidecar"]
    assert record.exc_info is not None and "lookup exploded" in caplog.text


async def test_half_sent_request_is_closed_within_the_header_timeout(
    sidecar_factory: SidecarFactory,
) -> None:
    sidecar = await sidecar_factory(header_timeout_s=0.5)
    connection = await RawConnection.open(sidecar.port)
    started = time.monotonic()
    await connection.send(CHECK + b"X-Enforcer-Ip: 192.0")  # never finished
    assert await connection.closed_within(3.0)
    elapsed = time.monotonic() - started
    await connection.close()
    assert 0.45 <= elapsed < 1.0, elapsed
    assert sidecar.metrics.header_timeouts == 1


async def test_request_trickled_a_byte_at_a_time_is_closed_at_the_header_timeout(
    sidecar_factory: SidecarFactory,
) -> None:
    sidecar = await sidecar_factory(header_timeout_s=0.5)
    connection = await RawConnection.open(sidecar.port)
    started = time.monotonic()

    async def trickle() -> None:
        for byte in CHECK + b"X-Enforcer-Ip: 192.0.2.1\r\n" * 10:
            await connection.send(bytes([byte]))
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(trickle())
    try:
        assert await connection.closed_within(3.0)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await connection.close()
    assert 0.45 <= time.monotonic() - started < 1.0


async def test_connection_in_steady_use_outlives_the_header_timeout_and_idle_ones_close(
    sidecar_factory: SidecarFactory,
) -> None:
    sidecar = await sidecar_factory(header_timeout_s=0.5, idle_timeout_s=1.0)
    connection = await RawConnection.open(sidecar.port)
    request = CHECK + b"X-Enforcer-Ip: 192.0.2.1\r\n\r\n"
    with_body = CHECK + b"X-Enforcer-Ip: 192.0.2.1\r\nContent-Length: 5\r\n\r\n"
    started = time.monotonic()
    while True:  # three header timeouts long, each gap under one
        await connection.send(request)
        assert (await connection.answer()).status == 200
        # A body arriving after its headers is drained, and does not start the clock again.
        await connection.send(with_body)
        await asyncio.sleep(0.05)
        await connection.send(b"hello")
        assert (await connection.answer()).status == 200
        if time.monotonic() - started > 1.5:
            break
        await asyncio.sleep(0.3)
    idle_since = time.monotonic()
    assert await connection.closed_within(3.0)
    assert 0.9 <= time.monotonic() - idle_since < 2.0
    await connection.close()
    assert sidecar.metrics.header_timeouts == 0
