"""The Faust worker: wiring only. Kafka in, the pipeline, Kafka out.

Faust runs the worker's lifecycle, signals, timers and web endpoints; the events themselves are
read in batches by enforcer.worker.stream (not by a Faust agent, whose per-event stream costs more
CPU than the whole pipeline) and written by enforcer.worker.sink. All logic lives in
enforcer.engine.pipeline and below.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

import faust
import mode
from faust.app.base import BootStrategy

from enforcer.core.connections import kafka_ssl_context
from enforcer.core.logs import worker_logging_config
from enforcer.core.settings import Settings
from enforcer.engine.features.request import COUNTERS, N_BANDS
from enforcer.engine.gc_tuning import tune_for_event_path
from enforcer.engine.pipeline import Pipeline, PolicyHolder
from enforcer.engine.policy import Policy, load_policy
from enforcer.store.windows import WindowStore, open_store
from enforcer.worker import metrics
from enforcer.worker.lifts import AllowListLifter
from enforcer.worker.policy_watch import PolicyWatcher
from enforcer.worker.sink import KafkaSink
from enforcer.worker.stream import EventStream

log = logging.getLogger("enforcer.worker")


class _BootStrategy(BootStrategy):
    # enforcer.worker.stream and enforcer.worker.sink own the worker's Kafka clients.
    enable_kafka_consumer = False
    enable_kafka_producer = False


class _App(faust.App):
    BootStrategy = _BootStrategy


def _broker_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Faust's own view of the broker, for whatever it connects to itself (enforcer's clients
    take theirs from enforcer.core.connections too)."""
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            ssl_context=kafka_ssl_context(settings),
            mechanism=settings.kafka_sasl_mechanism,
        )
    context = kafka_ssl_context(settings)
    return None if context is None else faust.SSLCredentials(context)


def create_app(settings: Settings, policy: Policy | None = None) -> faust.App:
    policy = policy or load_policy(settings.policy_file)
    datadir = os.path.join(tempfile.gettempdir(), "enforcer-faust", settings.app_id)
    os.makedirs(datadir, exist_ok=True)
    app = _App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        # enforcer keeps no Faust tables; point Faust's data folder away from the work tree.
        datadir=datadir,
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=True,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        broker_credentials=_broker_credentials(settings),
    )

    holder = PolicyHolder(policy)
    metrics.policy_loaded(policy)
    metrics.POLICY_LAST_RELOAD_SUCCESSFUL.set(1)
    metrics.POLICY_LAST_RELOAD_TIMESTAMP.set(time.time())
    store = open_store(settings, policy.windows, COUNTERS, N_BANDS, observer=metrics.StoreMetrics())
    pipeline = Pipeline(store, holder, settings, awaits_delivery=True)
    sink = KafkaSink(settings)
    stream = EventStream(settings, pipeline, sink, store)
    app.enforcer_pipeline = pipeline  # type: ignore[attr-defined]
    app.enforcer_stream = stream  # type: ignore[attr-defined]

    class EventService(mode.Service):
        """Starts the producer before the consumer and stops them the other way round."""

        async def on_start(self) -> None:
            _announce_security(settings)
            await sink.start()
            await stream.start()
            self.add_future(self._run())
            log.info(
                "worker started",
                extra={
                    "policy_file": settings.policy_file,
                    "policy_version": holder.current.version_tag,
                    "topics": {
                        "events": settings.events_topic,
                        "decisions": settings.decisions_topic,
                        "deadletter": settings.deadletter_topic,
                    },
                    "consumer_group": settings.app_id,
                    "kafka": settings.kafka_bootstrap,
                    "redis": settings.redis_url,
                    "redis_prefix": settings.redis_prefix,
                    "web": f"{settings.web_host}:{settings.web_port}",
                },
            )

        async def _run(self) -> None:
            try:
                await stream.run()
            except Exception as exc:
                # Only the Kafka clients themselves can get here (the stream contains every
                # failure of a batch); a worker that cannot read must exit to be restarted.
                log.critical("event stream failed: %r", exc, exc_info=exc)
                await self.crash(exc)

        async def on_stop(self) -> None:
            await stream.stop()
            await sink.stop()
            await store.close()

    app.service(EventService)

    # Hot reload: a good edit of the policy file is in force within about two seconds; a bad
    # one is refused (logged, counted) and the last good policy keeps running.
    # A reload whose allow list covers subjects with decisions in force lifts them.
    watcher = PolicyWatcher(settings.policy_file, holder)
    lifter = AllowListLifter(settings, store)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]  # faust is untyped
    async def watch_policy() -> None:
        before = holder.current
        outcome = watcher.poll()
        if outcome is not None and outcome.result == "applied":
            lifter.reloaded(before, holder.current)

    @app.timer(interval=metrics.REFRESH_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def refresh_gauges() -> None:
        metrics.ACTIVE.refresh()
        try:
            await stream.measure_lag()
        except Exception as exc:  # a rebalance or a slow broker; the next tick retries
            log.warning("consumer lag not measured: %r", exc)

    _add_pages(app, store, stream, holder, watcher)
    return app


def _add_pages(
    app: faust.App,
    store: WindowStore,
    stream: EventStream,
    holder: PolicyHolder,
    watcher: PolicyWatcher,
) -> None:
    """/healthz, /readyz (Redis, Kafka assignment, stalled partitions, a refused policy file)
    and /metrics."""

    @app.page("/healthz")
    async def healthz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        redis_ok = await store.ping()
        kafka_ok = stream.assigned()
        stalled = [f"{tp.topic}/{tp.partition}" for tp in stream.stalled()]
        ready = redis_ok and kafka_ok and not stalled and holder.current is not None
        body = {
            "ready": ready,
            "redis": redis_ok,
            "kafka": kafka_ok,
            "stalled": stalled,
            "policy": holder.current.version_tag,
        }
        if watcher.rejected is not None:
            # Still ready: the last good policy runs. The body says the file on disk is not it.
            rejected_file, issues = watcher.rejected
            body["policy_rejected"] = {"file": rejected_file, "issues": list(issues)}
        return web.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.bytes(metrics.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE})


def run_worker(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM. Faust's Worker owns the event loop and signal handling."""
    app = create_app(settings)
    tune_for_event_path()
    # quiet: no start-up banner (an ASCII table on stdout); the "worker started" line says it.
    worker = _ServiceWorker(
        app,
        quiet=True,
        loglevel=settings.log_level,
        redirect_stdouts=False,
        logging_config=worker_logging_config(settings.log_level),
    )
    worker.execute_from_commandline()


class _ServiceWorker(faust.Worker):
    """Faust's worker without its terminal spinner. At a log level of warning or above, Faust
    hooks the spinner to every record by setting the root logger to DEBUG, so every library's
    debug call (aiokafka's fetcher makes several per fetch) built a record that the handlers
    then dropped: measured at 2-3% of the worker's CPU at 5,000 events/s. The worker logs JSON
    lines for machines; nothing spins."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


def _announce_security(settings: Settings) -> None:
    """Say at start-up what protects the worker's output, so an unsigned deployment is a
    choice someone can see, not an accident."""
    if settings.decision_signing_key:
        log.info(
            "decision records are signed (HMAC-SHA256, key id %s)",
            settings.decision_signing_key_id,
        )
    else:
        log.warning(
            "decision records are NOT signed: ENFORCER_DECISION_SIGNING_KEY is not set, and "
            "gateways cannot tell the worker's records from anyone else's"
        )
    if settings.api_key_hash_key:
        log.info("API keys are replaced by their keyed hash (ENFORCER_API_KEY_HASH_KEY)")
    log.info("Kafka security protocol: %s", settings.kafka_security_protocol)
