"""End to end with real nginx: deploy/nginx/nginx.conf in front of an upstream API, asking
`enforcer gateway serve` (a child process) about each request, with decisions from Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest_asyncio
from aiohttp import web

from enforcer.core.settings import Settings
from enforcer.gateway.settings import SidecarSettings
from enforcer.gateway.sidecar import ACTION_HEADER, WITHHOLD_HEADER
from tests.conftest import free_port
from tests.gateway.conftest import Nginx, Publish, SidecarProcess, make_decision, wait_until


@dataclass
class Upstream:
    port: int
    hits: list[str] = field(default_factory=list)  # the API keys of requests that reached it


async def serve(handler: Callable[[web.Request], object]) -> tuple[int, web.AppRunner]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return port, runner


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """A stand-in for the LLM API: echoes what nginx forwarded to it, and notes each call."""
    calls: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        calls.append(request.headers.get("X-Api-Key", ""))
        return web.json_response(
            {"path": request.path, "withhold_reasoning": request.headers.get(WITHHOLD_HEADER)}
        )

    port, runner = await serve(answer)
    yield Upstream(port, calls)
    await runner.cleanup()


async def test_decisions_take_effect_through_nginx(
    kafka_settings: Settings,
    publish: Publish,
    upstream: Upstream,
    http: aiohttp.ClientSession,
    sidecar_process_factory: Callable[[Settings, SidecarSettings], SidecarProcess],
    nginx_factory: Callable[[int, int], Nginx],
) -> None:
    await publish(
        make_decision("api_key", "k-block", "block"),
        make_decision("api_key", "k-throttle", "throttle", limit_rps=1),
        make_decision("api_key", "k-degrade", "degrade"),
    )
    sidecar = sidecar_process_factory(kafka_settings, SidecarSettings(port=free_port()))
    await sidecar.wait_ready(http)
    nginx = nginx_factory(sidecar.sidecar.port, upstream.port)
    await nginx.wait_listening()
    url = f"http://127.0.0.1:{nginx.port}/v1/messages"

    async def call(key: str, **extra: str) -> tuple[int, dict[str, str], bytes]:
        async with http.post(url, headers={"X-Api-Key": key, **extra}, data=b"{}") as resp:
            return resp.status, dict(resp.headers), await resp.read()

    status, _, body = await call("k-block")
    assert status == 403, f"{status} {body!r}\n{nginx.logs()}"

    status, _, body = await call("k-degrade")
    assert status == 200 and b'"withhold_reasoning": "1"' in body, body

    # A client cannot ask for (or forge) the degrade header itself.
    status, _, body = await call("k-other", **{WITHHOLD_HEADER: "1"})
    assert status == 200 and b'"withhold_reasoning": null' in body, body

    first, first_headers, _ = await call("k-throttle")
    second, second_headers, _ = await call("k-throttle")
    assert (first, second) == (200, 429)
    assert second_headers["Retry-After"] == "1"
    # The sidecar's RateLimit fields reach the client, let through or not.
    for h in (first_headers, second_headers):
        assert (h["RateLimit-Policy"], h["RateLimit"]) == (
            '"throttle";q=1;w=1',
            '"throttle";r=0;t=1',
        )
    assert "RateLimit" not in (await call("k-other"))[1]
    await asyncio.sleep(1.05)
    assert (await call("k-throttle"))[0] == 200

    # Refused by the sidecar and answered 400 by nginx: over the sidecar's 256-character key
    # limit, and over its 4,096-byte header limit (which aiohttp itself used to answer).
    reached = len(upstream.hits)
    assert (await call("k" * 300))[0] == 400
    status, _, body = await call("k" * 5000)
    assert (status, body) == (400, b"bad request\n")
    assert len(upstream.hits) == reached, "a refused request reached the API"

    # Propagation: from producing a decision to nginx enforcing it.
    figures = []
    for i in range(5):
        key = f"k-late-{i}"
        assert (await call(key))[0] == 200
        started = time.monotonic()
        await publish(make_decision("api_key", key, "block"))

        async def blocked(key: str = key) -> bool:
            return (await call(key))[0] == 403

        await wait_until(blocked, timeout_s=5.0, step_s=0.005)
        figures.append(time.monotonic() - started)
    print(f"\ndecision -> nginx propagation, s: {', '.join(f'{f:.3f}' for f in figures)}")
    assert max(figures) < 1.0, figures


@dataclass
class StubSidecar:
    """Answers every check with `status` and, when set, an X-Enforcer-Action; or stalls."""

    port: int = 0
    status: int = 200
    action: str | None = "allow"
    stall_s: float = 0.0


async def test_nginx_denies_every_sidecar_answer_but_allow_block_and_throttle(
    upstream: Upstream,
    http: aiohttp.ClientSession,
    nginx_factory: Callable[[int, int], Nginx],
) -> None:
    stub = StubSidecar()

    async def answer(request: web.Request) -> web.Response:
        if stub.stall_s:
            await asyncio.sleep(stub.stall_s)
        headers = {ACTION_HEADER: stub.action} if stub.action else {}
        return web.Response(status=stub.status, headers=headers, text="sidecar says\n")

    stub.port, runner = await serve(answer)
    nginx = nginx_factory(stub.port, upstream.port)
    unreachable = nginx_factory(free_port(), upstream.port)
    await nginx.wait_listening()
    await unreachable.wait_listening()

    async def call(server: Nginx) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{server.port}/v1/messages"
        async with http.post(url, headers={"X-Api-Key": "k-1"}, data=b"{}") as resp:
            return resp.status, await resp.read()

    try:
        assert (await call(nginx))[0] == 200  # the stub and the API are wired up
        assert upstream.hits == ["k-1"]
        outcomes = {}
        for status, action in [
            (400, None),  # an error page from whatever answers on the sidecar's port
            (400, "invalid"),
            (404, None),
            (405, "invalid"),
            (413, "invalid"),
            (429, "throttle"),  # asked for 403, answered 429: not a throttle nginx knows
            (500, None),
            (500, "error"),
            (502, None),
            (503, "unavailable"),
            (504, "error"),
        ]:
            stub.status, stub.action = status, action
            outcomes[(status, action)] = await call(nginx)
        stub.status, stub.action, stub.stall_s = 200, "allow", 1.0  # past the 250 ms timeout
        outcomes[("slow", "allow")] = await call(nginx)
        outcomes[("unreachable", None)] = await call(unreachable)
    finally:
        await runner.cleanup()
    assert upstream.hits == ["k-1"], "an error answer from the sidecar let a request through"
    expected = {
        case: (400, b"bad request\n")
        if case[1] == "invalid" and case[0] != "slow"
        else (503, b"enforcement unavailable\n")
        for case in outcomes
    }
    assert outcomes == expected
