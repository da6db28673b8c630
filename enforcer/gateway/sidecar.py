"""The check sidecar (`enforcer gateway serve`): one HTTP question per request for gateways.

`GET /v1/check` (any method, and any path below it, as Envoy's ext_authz sends) with the
request's API key, client IP, account and ASN in headers (names set by
ENFORCER_SIDECAR_*_HEADER) answers from the in-memory DecisionCache. Every answer to a check,
and every error answer, carries `X-Enforcer-Action`:

- 200 `allow`; 200 `degrade` with `X-Enforcer-Withhold-Reasoning: 1` (the gateway withholds or
  summarises reasoning output); 200 `throttle` when a throttled subject is still under its
  rate, with the RateLimit headers below.
- 429 `throttle` with `Retry-After` (whole seconds) and the RateLimit headers: a throttled
  subject is over its rate, kept in Redis and shared by every sidecar. `?throttle_status=403`
  answers 403 instead, for gateways such as NGINX `auth_request` that pass only 401 and 403 on.
- 403 `block`.
- 400 `invalid`: a header is missing, given twice, malformed or too long (IPv6 zone ids such as
  `2001:db8::5%0` included: they would make a blocked address look like another), or the
  request is not parseable HTTP; 413 for a body (a check takes none) over 64 KiB; 404 and 405
  for other paths and methods. The answer never quotes the request.
- 503 `unavailable`: Kafka or Redis is away and ENFORCER_SIDECAR_FAILURE is 'closed'.
- 500 `error`: a fault in the sidecar itself, logged with its traceback.

403 and 429 bodies are JSON naming the decision: `{"action", "rule", "decision_id",
"expires_at"}` (epoch seconds, null for no expiry), plus `retry_after_s` on a throttle. 400s
carry `{"action": "invalid", "error": ...}`. A gateway must treat any answer but 200, 403 and
429 (or the 403 it asked for) as a refusal: deploy/nginx/nginx.conf does.

Throttled answers carry the RateLimit-Policy and RateLimit fields of
draft-ietf-httpapi-ratelimit-headers-10 for the throttle that binds (the one that refused for
longest, else the one with the fewest requests left):
`RateLimit-Policy: "throttle";q=<burst>;w=<seconds to earn a burst back>` and
`RateLimit: "throttle";r=<requests left now>;t=<seconds until the burst is full>`. A zero-rate
throttle reads `"throttle";q=0` and `r=0;t=<seconds until it lapses>`.

Also served, GET only:
- /healthz: 200 while the process serves.
- /readyz: JSON `{ready, status, kafka, caught_up, redis, failure}`. 503 (`starting`) until
  the decisions topic was read to its end once. Afterwards, with Kafka or Redis away, it
  follows the failure mode: 'open' stays 200 with `status: degraded` (the sidecar answers from
  what it knows), 'closed' answers 503 (`unavailable`), as its checks do.
- /metrics: Prometheus text, `enforcer_sidecar_*` (enforcer.gateway.sidecar_metrics).
- /v1/stats: JSON: the cache's stats, answers by action, fail-open answers by dependency,
  header timeouts, and the failure mode.

Connections idle for ENFORCER_SIDECAR_IDLE_TIMEOUT_S, or whose request has not arrived whole
ENFORCER_SIDECAR_HEADER_TIMEOUT_S after its first byte, are closed (enforcer.gateway.protocol).
Malformed requests, fail-open answers and timeouts are logged at most once per
ENFORCER_SIDECAR_LOG_EVERY_S each, without tracebacks, with a count of those held back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from enforcer.core.connections import redis_options
from enforcer.core.ports import StorageError
from enforcer.core.settings import Settings
from enforcer.gateway.cache import DecisionCache
from enforcer.gateway.protocol import SidecarServer, ThrottledLog
from enforcer.gateway.settings import SidecarSettings
from enforcer.gateway.sidecar_metrics import CONTENT_TYPE, SidecarMetrics
from enforcer.gateway.throttle import ALLOWED, RateStanding, SharedThrottle, ThrottleResult
from enforcer.gateway.verdicts import Verdict, parse_ip

log = logging.getLogger("enforcer.gateway.sidecar")

ACTION_HEADER = "X-Enforcer-Action"
WITHHOLD_HEADER = "X-Enforcer-Withhold-Reasoning"
RATELIMIT_POLICY_HEADER = "RateLimit-Policy"
RATELIMIT_HEADER = "RateLimit"
RATELIMIT_POLICY_NAME = "throttle"
MAX_ID_CHARS = 256  # api_key and account_id, as in gateway_event.v1
MAX_ASN = 4294967295
MAX_BODY_BYTES = 65536
CHECK_PATH = "/v1/check"
# Control characters and lone surrogates (what undecodable header bytes become): no key or
# account id has them, and Redis keys and JSON logs cannot carry surrogates.
_BAD_ID_CHARS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_JSON = {"Content-Type": "application/json"}

_ALLOW_HEADERS = {ACTION_HEADER: "allow"}
_DEGRADE_HEADERS = {ACTION_HEADER: "degrade", WITHHOLD_HEADER: "1"}
_UNAVAILABLE_HEADERS = {ACTION_HEADER: "unavailable", "Retry-After": "1", **_JSON}


class BadRequest(ValueError):
    """A check request whose headers cannot be used; answered 400 with this message, which
    names the header and never quotes its value."""


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
        self.metrics = SidecarMetrics(cache)
        every = settings.log_every_s
        self._malformed_log = ThrottledLog(log, every)
        self._fail_open_logs = {
            dependency: ThrottledLog(log, every) for dependency in self.metrics.failed_open
        }
        self._timeout_log = ThrottledLog(log, every, level=logging.INFO)
        self._fault_log = ThrottledLog(log, every, level=logging.ERROR)
        self._pages: dict[str, Callable[[web.BaseRequest], Awaitable[web.Response]]] = {
            "/healthz": self.healthz,
            "/readyz": self.readyz,
            "/metrics": self.metrics_page,
            "/v1/stats": self.stats,
        }
        self._runner: web.ServerRunner | None = None
        self._server: SidecarServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.port: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings, sidecar: SidecarSettings) -> Sidecar:
        cache = DecisionCache.from_settings(
            settings, max_entries=sidecar.max_entries, stale_after_s=sidecar.stale_after_s
        )
        throttle = SharedThrottle.from_url(
            settings.redis_url,
            redis_options=redis_options(settings),
            cluster=settings.redis_cluster,
            timeout_s=sidecar.redis_timeout_s,
            prefix=settings.redis_prefix,
            burst_s=sidecar.throttle_burst_s,
            default_limit_rps=sidecar.default_limit_rps,
            retry_s=sidecar.redis_retry_s,
        )
        return cls(cache, throttle, sidecar)

    async def start(self) -> int:
        """Start the cache and bind the HTTP endpoint; returns the bound port."""
        await self.cache.start()
        s = self.settings
        self._server = SidecarServer(
            self.route,
            on_error=self.error_answer,
            header_timeout_s=s.header_timeout_s,
            max_body_bytes=MAX_BODY_BYTES,
            access_log=None,
            max_line_size=s.max_header_bytes,
            max_field_size=s.max_header_bytes,
            keepalive_timeout=s.idle_timeout_s,
            # After an answer, how long an unread request body may take to be discarded.
            lingering_time=s.header_timeout_s,
        )
        self._runner = web.ServerRunner(self._server)
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.host, s.port, backlog=1024)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._sweeper = asyncio.create_task(self._sweep(), name="sidecar-header-timeouts")
        return self.port

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.cache.stop()
        await self.throttle.close()

    async def _sweep(self) -> None:
        timeout = self.settings.header_timeout_s
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            if self._server is None:
                continue
            closed = self._server.sweep()
            if closed:
                self.metrics.header_timeouts += closed
                self._timeout_log.log(
                    "closed %d connection(s) whose request did not arrive whole within %g s",
                    closed,
                    timeout,
                )

    async def route(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path == CHECK_PATH or path.startswith(CHECK_PATH + "/"):
            return await self.check(request)
        page = self._pages.get(path)
        if page is None:
            return self._invalid(404, "no such path")
        if request.method not in ("GET", "HEAD"):
            return self._invalid(405, "only GET is served here")
        return await page(request)

    # -- the check ---------------------------------------------------------------------------

    async def check(self, request: web.BaseRequest) -> web.Response:
        started = time.perf_counter()
        source = "memory"
        try:
            try:
                key, addr, account, asn, throttle_status = self._read(request)
            except BadRequest as exc:
                self._malformed_log.log("check request answered 400: %s", exc)
                return self._invalid(400, str(exc))
            if not self.cache.healthy:
                if self.fail_closed:
                    return self._answer("unavailable", 503, _UNAVAILABLE_HEADERS, _unavailable())
                self._failed_open("kafka", "decisions are not current (Kafka away or catching up)")
            verdict = self.cache.lookup(key, addr, account, asn)
            if verdict.action == "block":
                body = _decision_body(
                    "block", verdict.rule, verdict.decision_id, verdict.expires_at
                )
                return self._answer("block", 403, {ACTION_HEADER: "block", **_JSON}, body)
            result: ThrottleResult = ALLOWED
            if verdict.throttles:
                source = "redis"
                try:
                    result = await self.throttle.check(verdict.throttles)
                except StorageError as exc:
                    if self.fail_closed:
                        log.debug("throttle check failed, answering 503: %s", exc)
                        return self._answer(
                            "unavailable", 503, _UNAVAILABLE_HEADERS, _unavailable()
                        )
                    self._failed_open("redis", f"throttle check failed ({exc})")
            if not result.allowed:
                return self._throttled(result, throttle_status)
            return self._allowed(verdict, result.standing)
        finally:
            self.metrics.check_seconds[source].observe(time.perf_counter() - started)

    def _throttled(self, result: ThrottleResult, status: int) -> web.Response:
        standing = result.standing
        assert standing is not None  # a refusal always names the throttle that refused
        retry_after = max(1, math.ceil(result.retry_after_s))
        headers = {
            ACTION_HEADER: "throttle",
            "Retry-After": str(retry_after),
            **_ratelimit_headers(standing),
            **_JSON,
        }
        limit = standing.limit
        body = _decision_body(
            "throttle", limit.rule, limit.decision_id, limit.expires_at, retry_after_s=retry_after
        )
        return self._answer("throttle", status, headers, body)

    def _allowed(self, verdict: Verdict, standing: RateStanding | None) -> web.Response:
        if standing is None:
            if verdict.action == "degrade":
                return self._answer("degrade", 200, _DEGRADE_HEADERS)
            if verdict.action == "allow":
                return self._answer("allow", 200, _ALLOW_HEADERS)
            # Throttled, but the throttle could not be counted (Redis away, failing open).
            return self._answer(verdict.action, 200, {ACTION_HEADER: verdict.action})
        headers = _DEGRADE_HEADERS if verdict.action == "degrade" else {ACTION_HEADER: "throttle"}
        return self._answer(
            headers[ACTION_HEADER], 200, {**headers, **_ratelimit_headers(standing)}
        )

    def _read(
        self, request: web.BaseRequest
    ) -> tuple[str | None, str, str | None, int | None, int]:
        headers = request.headers
        s = self.settings
        for name in (s.ip_header, s.key_header, s.account_header, s.asn_header):
            if len(headers.getall(name, ())) > 1:
                raise BadRequest(f"{name} is given more than once")
        raw_ip = headers.get(s.ip_header)
        if not raw_ip:
            raise BadRequest(f"missing {s.ip_header}")
        try:
            parse_ip(raw_ip)  # validated here; the cache's lookup reuses the parsed address
        except ValueError:
            raise BadRequest(
                f"{s.ip_header} is not an IPv4 or IPv6 address (without a zone id)"
            ) from None
        key = _identifier(headers.get(s.key_header), s.key_header)
        account = _identifier(headers.get(s.account_header), s.account_header)
        asn: int | None = None
        raw_asn = headers.get(s.asn_header)
        if raw_asn:
            digits = raw_asn.strip().upper().removeprefix("AS")
            # isdigit() alone accepts digits int() refuses ('²') and other scripts' digits.
            if not (digits.isascii() and digits.isdigit()) or int(digits) > MAX_ASN:
                raise BadRequest(f"{s.asn_header} is not an AS number")
            asn = int(digits)
        throttle_status = 429
        # Only the gateway's own check URL carries options; below it (Envoy) the query string
        # is the client's and must not change the answer.
        if request.query_string and request.path == CHECK_PATH:
            wanted = request.query.get("throttle_status", "429")
            if wanted not in ("429", "403"):
                raise BadRequest("throttle_status must be 429 or 403")
            throttle_status = int(wanted)
        return key, raw_ip, account, asn, throttle_status

    # -- answers -----------------------------------------------------------------------------

    def _answer(
        self, action: str, status: int, headers: dict[str, str], body: bytes | None = None
    ) -> web.Response:
        self.metrics.answered(action, status)
        return web.Response(status=status, headers=headers, body=body)

    def _invalid(self, status: int, error: str) -> web.Response:
        body = orjson.dumps({"action": "invalid", "error": error})
        return self._answer("invalid", status, {ACTION_HEADER: "invalid", **_JSON}, body)

    def _failed_open(self, dependency: str, why: str) -> None:
        self.metrics.failed_open[dependency] += 1
        self._fail_open_logs[dependency].log("failing open: %s", why)

    def error_answer(self, status: int, exc: BaseException | None) -> web.Response:
        """The answer to a request aiohttp could not parse (4xx), or whose handling raised
        (5xx): the sidecar's own, with X-Enforcer-Action, quoting nothing of the request."""
        if status < 500:
            reason = type(exc).__name__ if exc is not None else f"status {status}"
            self._malformed_log.log("malformed request answered %d (%s)", status, reason)
            return self._invalid(status, "malformed request")
        self._fault_log.log("check answered %d: fault in the sidecar", status, exc_info=exc)
        body = orjson.dumps({"action": "error", "error": "internal error"})
        return self._answer("error", status, {ACTION_HEADER: "error", **_JSON}, body)

    # -- operations --------------------------------------------------------------------------

    def stats_doc(self) -> dict[str, Any]:
        return {
            "cache": self.cache.stats()._asdict(),
            "responses": self.metrics.by_action(),
            "failed_open": dict(self.metrics.failed_open),
            "header_timeouts": self.metrics.header_timeouts,
            "failure": self.settings.failure,
        }

    async def stats(self, request: web.BaseRequest) -> web.Response:
        return web.Response(body=orjson.dumps(self.stats_doc()), headers=_JSON)

    async def metrics_page(self, request: web.BaseRequest) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(self, request: web.BaseRequest) -> web.Response:
        return web.Response(text="alive\n")

    async def readyz(self, request: web.BaseRequest) -> web.Response:
        redis_ok = await self.throttle.ping()
        cache = self.cache.stats()
        if not cache.ready:
            status = "starting"
        elif cache.connected and redis_ok:
            status = "ok"
        else:
            status = "unavailable" if self.fail_closed else "degraded"
        ready = status in ("ok", "degraded")
        doc = {
            "ready": ready,
            "status": status,
            "kafka": cache.connected,
            "caught_up": cache.ready,
            "redis": redis_ok,
            "failure": self.settings.failure,
        }
        return web.Response(body=orjson.dumps(doc), status=200 if ready else 503, headers=_JSON)


def _identifier(value: str | None, header: str) -> str | None:
    """An API key or account id as a header carries it; None when absent or empty."""
    if not value:
        return None
    if len(value) > MAX_ID_CHARS:
        raise BadRequest(f"{header} is longer than {MAX_ID_CHARS} characters")
    if _BAD_ID_CHARS.search(value):
        raise BadRequest(f"{header} has control characters or bytes that are not UTF-8")
    return value


def _decision_body(
    action: str,
    rule: str | None,
    decision_id: str | None,
    expires_at: float | None,
    **extra: Any,
) -> bytes:
    return orjson.dumps(
        {
            "action": action,
            "rule": rule,
            "decision_id": decision_id,
            "expires_at": expires_at,
            **extra,
        }
    )


def _unavailable() -> bytes:
    return orjson.dumps({"action": "unavailable", "error": "decisions unavailable"})


def _ratelimit_headers(standing: RateStanding) -> dict[str, str]:
    policy = f'"{RATELIMIT_POLICY_NAME}";q={standing.quota}'
    if standing.window_s is not None:
        policy += f";w={standing.window_s}"
    return {
        RATELIMIT_POLICY_HEADER: policy,
        RATELIMIT_HEADER: (
            f'"{RATELIMIT_POLICY_NAME}";r={standing.remaining};t={standing.reset_s}'
        ),
    }


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
    from enforcer.core.logs import JsonFormatter

    # One JSON object per line, like the worker's enforcer.* logs (secrets redacted).
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    asyncio.run(serve(settings, sidecar_settings))
    return 0
