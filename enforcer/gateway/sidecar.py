"""The check sidecar (`enforcer gateway serve`): one HTTP question per request for gateways.

`GET /v1/check` (any method, and any path below it, as Envoy's ext_authz sends) with the
request's API key, client IP, account and ASN in headers (names set by
ENFORCER_SIDECAR_*_HEADER) answers from the in-memory DecisionCache:

- 200: allowed. `X-Enforcer-Withhold-Reasoning: 1` when the action is degrade; the gateway
  withholds or summarises reasoning output.
- 429 with `Retry-After` (whole seconds): a throttled subject is over its rate, kept in Redis
  and shared by every sidecar. `?throttle_status=403` answers 403 instead, for gateways such
  as NGINX `auth_request` that pass only 401 and 403 through (X-Enforcer-Action says which).
- 403: blocked.
- 400: a header is missing, malformed or too long.
- 503: Kafka or Redis is away and ENFORCER_SIDECAR_FAILURE is 'closed'.

Every answer carries `X-Enforcer-Action`. Also served: /healthz, /readyz and /v1/stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
from collections import Counter
from typing import Any

import orjson
from aiohttp import web

from enforcer.gateway.cache import DecisionCache, parse_ip
from enforcer.gateway.settings import SidecarSettings
from enforcer.gateway.throttle import ALLOWED, SharedThrottle, ThrottleResult
from enforcer.settings import Settings
from enforcer.windows.store import StorageError

log = logging.getLogger("enforcer.gateway.sidecar")

ACTION_HEADER = "X-Enforcer-Action"
WITHHOLD_HEADER = "X-Enforcer-Withhold-Reasoning"
MAX_ID_CHARS = 256  # api_key and account_id, as in gateway_event.v1
MAX_ASN = 4294967295

_ALLOW_HEADERS = {ACTION_HEADER: "allow"}
_DEGRADE_HEADERS = {ACTION_HEADER: "degrade", WITHHOLD_HEADER: "1"}
_BLOCK_HEADERS = {ACTION_HEADER: "block"}
_UNAVAILABLE_HEADERS = {ACTION_HEADER: "unavailable", "Retry-After": "1"}


class BadRequest(ValueError):
    """A check request whose headers cannot be used; answered 400 with this message."""


class Sidecar:
    """The check endpoint over a DecisionCache and a SharedThrottle. start() starts the cache
    and binds the endpoint; stop() unbinds it and stops the cache and the Redis client."""

    def __init__(
        self, cache: DecisionCache, throttle: SharedThrottle, settings: SidecarSettings
    ) -> None:
        self.cache = cache
        self.throttle = throttle
        self.settings = settings
        self.fail_closed = settings.failure == "closed"
        self.outcomes: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings, sidecar: SidecarSettings) -> Sidecar:
        cache = DecisionCache.from_settings(
            settings, max_entries=sidecar.max_entries, stale_after_s=sidecar.stale_after_s
        )
        throttle = SharedThrottle.from_url(
            settings.redis_url,
            timeout_s=sidecar.redis_timeout_s,
            prefix=settings.redis_prefix,
            burst_s=sidecar.throttle_burst_s,
            default_limit_rps=sidecar.default_limit_rps,
            retry_s=sidecar.redis_retry_s,
        )
        return cls(cache, throttle, sidecar)

    def app(self) -> web.Application:
        app = web.Application()
        # Any method, and any path below /v1/check: Envoy's HTTP ext_authz asks with the
        # original request's method and appends its path to the configured prefix.
        app.router.add_route("*", "/v1/check", self.check)
        app.router.add_route("*", "/v1/check/{tail:.*}", self.check)
        app.router.add_get("/v1/stats", self.stats)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app

    async def start(self) -> int:
        """Start the cache and bind the HTTP endpoint; returns the bound port."""
        await self.cache.start()
        limit = self.settings.max_header_bytes
        self._runner = web.AppRunner(
            self.app(), access_log=None, max_line_size=limit, max_field_size=limit
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port, backlog=1024)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.cache.stop()
        await self.throttle.close()

    # -- the check ---------------------------------------------------------------------------

    async def check(self, request: web.Request) -> web.Response:
        try:
            key, addr, account, asn, throttle_status = self._read(request)
        except BadRequest as exc:
            self.outcomes["bad_request"] += 1
            return web.Response(status=400, text=f"{exc}\n", headers={ACTION_HEADER: "invalid"})
        if self.fail_closed and not self.cache.healthy:
            self.outcomes["unavailable"] += 1
            return web.Response(
                status=503, text="decisions unavailable\n", headers=_UNAVAILABLE_HEADERS
            )
        verdict = self.cache.lookup(key, addr, account, asn)
        if verdict.action == "block":
            self.outcomes["block"] += 1
            return web.Response(status=403, text="blocked\n", headers=_BLOCK_HEADERS)
        result: ThrottleResult = ALLOWED
        if verdict.throttles:
            try:
                result = await self.throttle.check(verdict.throttles)
            except StorageError as exc:
                if self.fail_closed:
                    self.outcomes["unavailable"] += 1
                    log.debug("throttle check failed, answering 503: %s", exc)
                    return web.Response(
                        status=503, text="throttle unavailable\n", headers=_UNAVAILABLE_HEADERS
                    )
                self.outcomes["failed_open"] += 1
                log.debug("throttle check failed, allowing: %s", exc)
        if not result.allowed:
            self.outcomes["throttled"] += 1
            headers = {
                ACTION_HEADER: "throttle",
                "Retry-After": str(max(1, math.ceil(result.retry_after_s))),
            }
            return web.Response(status=throttle_status, text="rate limited\n", headers=headers)
        if verdict.action == "degrade":
            self.outcomes["degrade"] += 1
            return web.Response(status=200, headers=_DEGRADE_HEADERS)
        self.outcomes["allow"] += 1
        return web.Response(status=200, headers=_ALLOW_HEADERS)

    def _read(self, request: web.Request) -> tuple[str | None, str, str | None, int | None, int]:
        headers = request.headers
        s = self.settings
        raw_ip = headers.get(s.ip_header)
        if not raw_ip:
            raise BadRequest(f"missing {s.ip_header}")
        try:
            parse_ip(raw_ip)  # validated here; the cache's lookup reuses the parsed address
        except ValueError:
            raise BadRequest(f"{s.ip_header} is not an IP address") from None
        key = headers.get(s.key_header) or None
        if key is not None and len(key) > MAX_ID_CHARS:
            raise BadRequest(f"{s.key_header} is longer than {MAX_ID_CHARS} characters")
        account = headers.get(s.account_header) or None
        if account is not None and len(account) > MAX_ID_CHARS:
            raise BadRequest(f"{s.account_header} is longer than {MAX_ID_CHARS} characters")
        asn: int | None = None
        raw_asn = headers.get(s.asn_header)
        if raw_asn:
            digits = raw_asn.strip().upper().removeprefix("AS")
            if not digits.isdigit() or int(digits) > MAX_ASN:
                raise BadRequest(f"{s.asn_header} is not an AS number")
            asn = int(digits)
        throttle_status = 429
        # Only the gateway's own check URL carries options; below it (Envoy) the query string
        # is the client's and must not change the answer.
        if request.query_string and request.path == "/v1/check":
            wanted = request.query.get("throttle_status", "429")
            if wanted not in ("429", "403"):
                raise BadRequest("throttle_status must be 429 or 403")
            throttle_status = int(wanted)
        return key, raw_ip, account, asn, throttle_status

    # -- operations --------------------------------------------------------------------------

    def stats_doc(self) -> dict[str, Any]:
        return {
            "cache": self.cache.stats()._asdict(),
            "responses": dict(self.outcomes),
            "failure": self.settings.failure,
        }

    async def stats(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.stats_doc()), content_type="application/json")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="alive\n")

    async def readyz(self, request: web.Request) -> web.Response:
        redis_ok = await self.throttle.ping()
        cache = self.cache.stats()
        ready = cache.ready and cache.connected and redis_ok
        doc = {
            "ready": ready,
            "kafka": cache.connected,
            "caught_up": cache.ready,
            "redis": redis_ok,
        }
        return web.Response(
            body=orjson.dumps(doc), status=200 if ready else 503, content_type="application/json"
        )


async def serve(settings: Settings, sidecar_settings: SidecarSettings) -> None:
    """Run the sidecar until SIGINT or SIGTERM."""
    sidecar = Sidecar.from_settings(settings, sidecar_settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    port = await sidecar.start()
    log.info(
        "check sidecar on http://%s:%d/v1/check (decisions %s, failure %s)",
        sidecar_settings.host,
        port,
        settings.decisions_topic,
        sidecar_settings.failure,
    )
    try:
        await stop.wait()
    finally:
        await sidecar.stop()


def run_sidecar(settings: Settings, sidecar_settings: SidecarSettings) -> int:
    from enforcer.logs import JsonFormatter

    # One JSON object per line, like the worker's enforcer.* logs (secrets redacted).
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    asyncio.run(serve(settings, sidecar_settings))
    return 0
