"""Event to decision at a steady rate: the simulated stream produced into a running worker at
5,000 events/s, every event stamped with the wall clock as it is sent, and each decision timed
from its event's stamp (a decision's `ts` is the time of the event that triggered it) to its
arrival on the decisions topic. The broker answers the reading consumer's fetch as soon as a
decision is appended; it holds a fetch up to 100 ms only while there is nothing to read, rather
than answer 200 empty fetches a second. Redis' CPU over the same run is read from its own INFO
(its process, and apart from it the children it forked to rewrite its append-only file), per
event sent: the figure Redis is sized by.

The stream is the simulated mix replayed about fifty times faster than it was simulated, so
its attackers (and some of its busiest benign keys) trip rules throughout the run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from enforcer.core.connections import redis_client
from enforcer.core.settings import Settings
from enforcer.tools.bench.stack import WorkerProcess, topic_partitions

RATE = 5000.0
TICK_S = 0.01
WARMUP_S = 2.0  # decisions of events sent in the first seconds are not timed


class Latency(NamedTuple):
    p50_ms: float
    p99_ms: float
    decisions: int  # decisions timed
    sent: int
    achieved_rate: float  # events/s the producer kept up
    # Set by at_steady_rate around the measurement: Redis' own process (every client's work),
    # and the children it forked (append-only file rewrites).
    redis_cpu_us_per_event: float = 0.0
    redis_rewrite_cpu_us_per_event: float = 0.0


class _Sender:
    """A tick's events in one record batch per partition, keyed by api key as the gateway keys
    them. The load generator shares the machine with what it measures: sent one by one, each
    event cost it about 48 us of CPU (a quarter of a core at 5,000/s) taken from the worker,
    Redis and the broker."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitions: int) -> None:
        self.producer = producer
        self.topic = topic
        self.all = list(range(partitions))
        self.partitioner = DefaultPartitioner()
        self.partition_of: dict[bytes, int] = {}  # murmur2 in Python costs more than the rest
        self.batches: dict[int, BatchBuilder] = {}
        self.full: list[tuple[int, BatchBuilder]] = []  # filled this tick, in the order filled

    def add(self, doc: dict[str, Any]) -> None:
        key = doc["api_key"].encode()
        partition = self.partition_of.get(key)
        if partition is None:
            partition = self.partition_of[key] = self.partitioner(key, self.all, self.all)
        value = orjson.dumps(doc)
        batch = self.batches.get(partition)
        if batch is None:
            batch = self.batches[partition] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:
            # Full: the record goes into a fresh batch, sent after this one.
            self.full.append((partition, batch))
            batch = self.batches[partition] = self.producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)

    async def flush(self) -> None:
        """Hand the tick's batches to the producer, each partition's in the order its records
        were added (the producer sends them without waiting for their acknowledgement)."""
        batches = [*self.full, *self.batches.items()]
        self.full, self.batches = [], {}
        for partition, batch in batches:
            await self.producer.send_batch(batch, self.topic, partition=partition)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def at_steady_rate(
    settings: Settings, docs: list[dict[str, Any]], seconds: float, rate: float = RATE
) -> Latency:
    worker = WorkerProcess(settings)
    worker.start()
    try:
        await worker.wait_ready()
        before = await _redis_cpu(settings)
        measured = await _measure(settings, docs, seconds, rate)
        after = await _redis_cpu(settings)
    finally:
        worker.stop()
    sent = max(measured.sent, 1)
    return measured._replace(
        redis_cpu_us_per_event=(after[0] - before[0]) / sent * 1e6,
        redis_rewrite_cpu_us_per_event=(after[1] - before[1]) / sent * 1e6,
    )


async def _redis_cpu(settings: Settings) -> tuple[float, float]:
    """Seconds of CPU Redis has used: its own process, and its reaped children."""
    client = redis_client(settings)
    try:
        cpu = await client.info("cpu")
    finally:
        await client.aclose()
    return (
        float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        float(cpu["used_cpu_sys_children"]) + float(cpu["used_cpu_user_children"]),
    )


async def _measure(
    settings: Settings, docs: list[dict[str, Any]], seconds: float, rate: float
) -> Latency:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    partitions = topic_partitions(settings, "decisions")
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)  # resolve the end now, before anything is produced
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=2)
    await producer.start()
    latencies: list[float] = []
    started = time.time()
    timed_from = started + WARMUP_S
    stop_reading = asyncio.Event()

    async def read() -> None:
        while not stop_reading.is_set():
            fetched = await consumer.getmany(timeout_ms=50)
            now = time.time()
            for records in fetched.values():
                for record in records:
                    ts = float(orjson.loads(record.value)["ts"])
                    if ts >= timed_from:
                        latencies.append((now - ts) * 1000.0)

    reader = asyncio.create_task(read())
    send = _Sender(producer, settings.events_topic, len(topic_partitions(settings, "events")))
    sent = 0
    try:
        total = min(len(docs), int(rate * seconds))
        began = time.monotonic()
        while sent < total:
            due = min(total, int((time.monotonic() - began) * rate) + 1)
            for doc in docs[sent:due]:
                send.add(dict(doc, ts=time.time()))
            sent = due
            await send.flush()
            await asyncio.sleep(TICK_S)
        await producer.flush()
        elapsed = time.monotonic() - began
        await asyncio.sleep(1.0)  # the last decisions arrive
    finally:
        stop_reading.set()
        await reader
        await producer.stop()
        await consumer.stop()
    if not latencies:
        raise RuntimeError("no decision arrived: the stream had nothing the policy acts on")
    return Latency(
        _quantile(latencies, 0.5),
        _quantile(latencies, 0.99),
        len(latencies),
        sent,
        sent / max(elapsed, 1e-9),
    )
