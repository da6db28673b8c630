"""End to end with real nginx: deploy/nginx/nginx.conf in front of an upstream API, asking
`enforcer gateway serve` (a child process) about each request, with decisions from Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest_asyncio
from aiohttp import web

from enforcer.gateway.settings import SidecarSettings
from enforcer.gateway.sidecar import WITHHOLD_HEADER
from enforcer.settings import Settings
from tests.conftest import free_port
from tests.gateway.conftest import Nginx, Publish, SidecarProcess, make_decision, wait_until


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[int]:
    """A stand-in for the LLM API: echoes what nginx forwarded to it."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(
            {"path": request.path, "withhold_reasoning": request.headers.get(WITHHOLD_HEADER)}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def test_decisions_take_effect_through_nginx(
    kafka_settings: Settings,
    publish: Publish,
    upstream: int,
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
    nginx = nginx_factory(sidecar.sidecar.port, upstream)
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

    first, _, _ = await call("k-throttle")
    second, second_headers, _ = await call("k-throttle")
    assert (first, second) == (200, 429)
    assert second_headers["Retry-After"] == "1"
    await asyncio.sleep(1.05)
    assert (await call("k-throttle"))[0] == 200

    assert (await call("k" * 300))[0] == 400  # refused by the sidecar, answered 400 by nginx

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
