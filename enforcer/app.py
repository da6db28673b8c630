"""The Faust worker: wiring only. Kafka in, Pipeline.process, Kafka out.

All logic lives in enforcer.pipeline and below; this module turns stream batches into Records,
hands them over, and publishes what comes back. Offsets are committed only after a batch's
decisions and dead letters were handed to the producer (take_events acks after the body runs),
so a crash redelivers the batch, and the window store's dedupe makes redelivery harmless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time

import faust

from enforcer import metrics
from enforcer.gc_tuning import tune_for_event_path
from enforcer.logs import worker_logging_config
from enforcer.pipeline import BatchResult, DeadLetter, Pipeline, PolicyHolder, Record, make_store
from enforcer.policy import Policy, load_policy
from enforcer.policy.watch import PolicyWatcher
from enforcer.settings import Settings
from enforcer.windows.store import StorageError

log = logging.getLogger("enforcer.worker")


def create_app(settings: Settings, policy: Policy | None = None) -> faust.App:
    policy = policy or load_policy(settings.policy_file)
    datadir = os.path.join(tempfile.gettempdir(), "enforcer-faust", settings.app_id)
    os.makedirs(datadir, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        # enforcer keeps no Faust tables; point Faust's data folder away from the work tree.
        datadir=datadir,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        # enforcer's topics are created by `enforcer topics apply`; Faust owns none of them,
        # and without tables or leader-only tasks it needs no internal topics either.
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=True,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        producer_acks=-1,
        producer_linger_ms=5,
        broker_commit_every=settings.batch_max,
        broker_commit_interval=1.0,
    )
    events_topic = app.topic(settings.events_topic, key_type=bytes, value_type=bytes)
    decisions_topic = app.topic(settings.decisions_topic, key_type=bytes, value_type=bytes)
    deadletter_topic = app.topic(settings.deadletter_topic, key_type=bytes, value_type=bytes)

    holder = PolicyHolder(policy)
    metrics.policy_loaded(policy)
    pipeline = Pipeline(make_store(settings, policy), holder, settings)
    app.enforcer_pipeline = pipeline  # type: ignore[attr-defined]

    # Hot reload: a good edit of the policy file is in force within about two seconds; a bad
    # one is refused (logged, counted) and the last good policy keeps running.
    watcher = PolicyWatcher(settings.policy_file, holder)

    @app.timer(interval=1.0)
    async def watch_policy() -> None:
        watcher.poll()

    async def publish(result: BatchResult) -> None:
        for dead in result.dead_letters:
            await deadletter_topic.send(
                key=dead.record.key, value=dead.record.value, headers=_deadletter_headers(dead)
            )
        for decision in result.decisions:
            await decisions_topic.send(key=decision.record_key, value=decision.to_json())
            # One JSON line per decision, reasons included (enforcer.logs formats it).
            log.info("decision", extra={"decision": decision.to_dict()})

    async def process_with_retry(records: list[Record]) -> BatchResult | None:
        delay = 0.1
        while True:
            try:
                started = time.perf_counter()
                result = await pipeline.process(records)
                metrics.BATCH_PROCESSING_SECONDS.observe(time.perf_counter() - started)
                return result
            except StorageError as exc:
                if settings.redis_failure == "skip":
                    log.error("redis failed, batch of %d skipped: %s", len(records), exc)
                    metrics.EVENTS_SKIPPED.inc(len(records))
                    return None
                log.error(
                    "redis failed, retrying batch of %d in %.1fs: %s", len(records), delay, exc
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    @app.agent(events_topic, name="enforce")
    async def enforce(stream: faust.StreamT) -> None:
        # take_events (not take): it yields the events themselves, so each batch is acked only
        # after its body ran. faust's StreamT protocol does not declare it.
        batches = stream.take_events(  # type: ignore[attr-defined]
            settings.batch_max, within=settings.batch_within_s
        )
        async for events in batches:
            records = [
                Record(
                    value=e.message.value or b"",
                    key=e.message.key,
                    topic=e.message.topic,
                    partition=e.message.partition,
                    offset=e.message.offset,
                )
                for e in events
            ]
            metrics.batch_taken(len(records))
            result = await process_with_retry(records)
            if result is not None:
                await publish(result)
                metrics.batch_published(result, time.time())

    lag = metrics.LagMeter()

    @app.timer(interval=metrics.REFRESH_INTERVAL_S)
    async def refresh_gauges() -> None:
        metrics.ACTIVE.refresh()
        try:
            await lag.measure(app.consumer)
        except Exception as exc:  # a rebalance or a slow broker; the next tick retries
            log.warning("consumer lag not measured: %r", exc)

    @app.page("/healthz")
    async def healthz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        redis_ok = await pipeline.store.ping()
        kafka_ok = app.consumer is not None and bool(app.consumer.assignment())
        ready = redis_ok and kafka_ok and holder.current is not None
        body = {
            "ready": ready,
            "redis": redis_ok,
            "kafka": kafka_ok,
            "policy": holder.current.version_tag,
        }
        return web.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.bytes(metrics.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE})

    return app


def _deadletter_headers(dead: DeadLetter) -> list[tuple[str, bytes]]:
    record = dead.record
    return [
        ("enforcer.reason", dead.reason.encode()),
        ("enforcer.detail", dead.detail.encode()),
        ("enforcer.source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ("enforcer.rejected_at", f"{time.time():.3f}".encode()),
    ]


def run_worker(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM. Faust's Worker owns the event loop and signal handling."""
    app = create_app(settings)
    tune_for_event_path()
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        redirect_stdouts=False,
        logging_config=worker_logging_config(settings.log_level),
    )
    worker.execute_from_commandline()
