"""DecisionCache: a gateway's in-memory copy of the decisions in force, read from Kafka.

The decisions topic is compacted and keyed by subject, so reading it from the start rebuilds
the state any gateway needs; there is no consumer group and no committed offset, every cache
reads every partition. A lookup never does I/O: it is a handful of dict probes, one per
subject a request belongs to, plus one per distinct network prefix length in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from ipaddress import ip_network
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition

from enforcer.core.connections import kafka_options
from enforcer.core.decisions import ACTION_RANK, Decision, Subject, tombstone_issued_at
from enforcer.core.keyhash import hasher_from_settings
from enforcer.core.settings import Settings
from enforcer.core.signing import DecisionSigner, SignatureCheck
from enforcer.core.subjects import MATCHED_KINDS
from enforcer.gateway.replay import ReplayGuard
from enforcer.gateway.verdicts import (
    ALLOW,
    Entry,
    IPAddress,
    Verdict,
    address_of,
    canonical_address,
    canonical_subject,
    combine,
)

log = logging.getLogger("enforcer.gateway.cache")


class CacheStats(NamedTuple):
    size: int  # live decisions held
    lag: int  # records on the topic not yet read (sum over partitions)
    ready: bool  # the topic was read up to its end as of start-up
    connected: bool  # a fetch response arrived within stale_after_s
    applied: int  # enforce-mode records applied
    shadow_ignored: int
    unmatched: int  # enforce-mode decisions on a kind no request carries (campaign)
    invalid: int  # records that are not decision.v1 or name an unparseable subject
    unsigned: int  # records without a signature, ignored because signatures are required
    forged: int  # records whose signature does not verify (or names an unknown key), ignored
    replayed: int  # signed records issued before the subject's newest, or undated tombstones
    expired: int  # decisions removed because their time ran out
    evicted: int  # live decisions dropped to stay under max_entries
    reconnects: int  # consumer restarts after a Kafka error


class TopicMissing(RuntimeError):
    """The decisions topic does not exist (yet); the cache retries."""


class DecisionCache:
    """The decisions in force for a gateway, kept current from the compacted decisions topic.

    Start it once (`await cache.start()`); it reads every partition from the beginning and then
    follows the topic. Until it has caught up with the end offsets seen at start-up,
    `ready` is False; a gateway that must not serve with partial state waits with
    `wait_ready()`. Kafka errors restart the consumer, which resumes where it was, so a broker
    restart costs nothing but the time it is away; `connected` tells whether fetches arrive.

    Memory is bounded by `max_entries`: expired decisions are removed as they lapse, and past
    the bound the decision that would expire soonest is dropped first. Shadow decisions and
    decisions on subjects a request cannot match are counted and not kept.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        max_entries: int = 500_000,
        stale_after_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        consumer_factory: Callable[[], AIOKafkaConsumer] | None = None,
        kafka_options: Mapping[str, Any] | None = None,
        signer: DecisionSigner | None = None,
        key_hasher: Callable[[str], str] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.max_entries = max_entries
        self.stale_after_s = stale_after_s
        self.clock = clock
        self._consumer_factory = consumer_factory or self._default_consumer
        # TLS and SASL options (enforcer.core.connections); the bootstrap above wins.
        self.kafka_options = dict(kafka_options or {})
        # With a signer, only records it verifies are applied; without one, any record is.
        self.signer = signer
        # With a keyed API key hash in force, decisions name hashed keys: lookups hash too.
        self.key_hasher = key_hasher
        # subject key ("kind:value", canonical) -> entry; the one home of every live decision
        self._entries: dict[str, Entry] = {}
        # (IP version, prefix length) -> network number (address >> host bits) -> entry
        self._networks: dict[tuple[int, int], dict[int, Entry]] = {}
        # (expires_at or inf, seq, key, entry): lapses and evictions in expiry order; a heap
        # item whose entry was since replaced is skipped when it surfaces
        self._expiry: list[tuple[float, int, str, Entry]] = []
        self._seq = itertools.count()
        self._positions: dict[TopicPartition, int] = {}
        self._targets: dict[TopicPartition, int] = {}  # end offsets seen at start-up
        self._ready = asyncio.Event()
        self._last_contact: float | None = None
        self._lag = 0
        self._replays = ReplayGuard(2 * max_entries)
        self._counts = dict.fromkeys(
            (
                "applied",
                "shadow_ignored",
                "unmatched",
                "invalid",
                "unsigned",
                "forged",
                "replayed",
                "expired",
                "evicted",
                "reconnects",
            ),
            0,
        )
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> DecisionCache:
        """A cache on the decisions topic the shared settings name."""
        kwargs.setdefault("kafka_options", kafka_options(settings))
        kwargs.setdefault("signer", DecisionSigner.from_settings(settings))
        kwargs.setdefault("key_hasher", hasher_from_settings(settings))
        return cls(settings.kafka_bootstrap, settings.decisions_topic, **kwargs)

    def _default_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **{**self.kafka_options, "bootstrap_servers": self.bootstrap},
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # The broker answers a fetch as soon as a record arrives; this only bounds how
            # long an empty fetch waits, and so how fresh `connected` is.
            fetch_max_wait_ms=200,
            metadata_max_age_ms=30_000,  # how soon partitions added to the topic are read
            client_id="enforcer-decision-cache",
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            if self.signer is None:
                log.warning(
                    "decision signatures are not checked (ENFORCER_DECISION_SIGNING_KEY is not "
                    "set): any record on %s is enforced",
                    self.topic,
                )
            else:
                log.info("decision records must be signed; unsigned and forged ones are ignored")
            self._task = asyncio.create_task(self._run(), name=f"decision-cache:{self.topic}")

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the topic was read to its start-up end; False if the time ran out."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self._ready.is_set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def connected(self) -> bool:
        # Wall time, not self.clock: aiokafka stamps fetch responses with time.time().
        last = self._last_contact
        return last is not None and time.time() - last < self.stale_after_s

    @property
    def healthy(self) -> bool:
        """Caught up once and still hearing from Kafka: its answers are current."""
        return self.ready and self.connected

    def stats(self) -> CacheStats:
        return CacheStats(
            size=len(self._entries),
            lag=self._lag,
            ready=self.ready,
            connected=self.connected,
            **self._counts,
        )

    # -- lookup ----------------------------------------------------------------------------

    def lookup(
        self,
        api_key: str | None,
        ip: str | IPAddress,
        account_id: str | None = None,
        asn: int | str | None = None,
        now: float | None = None,
    ) -> Verdict:
        """The strongest enforce-mode action in force for a request, and its throttles.

        Raises ValueError when `ip` is not an IP address."""
        if isinstance(ip, str):
            addr, addr_text = address_of(ip)
        else:
            addr = canonical_address(ip)
            addr_text = str(addr)
        entries = self._entries
        if not entries:
            return ALLOW
        found: list[Entry] = []
        candidates = [f"ip:{addr_text}"]
        if api_key:
            if self.key_hasher is not None:
                api_key = self.key_hasher(api_key)
            candidates.append(f"api_key:{api_key}")
        if account_id:
            candidates.append(f"account:{account_id}")
        if asn is not None and asn != "":
            candidates.append(f"asn:{int(asn)}")
        for key in candidates:
            entry = entries.get(key)
            if entry is not None:
                found.append(entry)
        if self._networks:
            number = int(addr)
            bits = addr.max_prefixlen
            for (version, prefix_len), table in self._networks.items():
                if version == addr.version:
                    entry = table.get(number >> (bits - prefix_len))
                    if entry is not None:
                        found.append(entry)
        if not found:
            return ALLOW
        now = self.clock() if now is None else now
        return combine(e for e in found if e.expires_at is None or e.expires_at > now)

    # -- applying records ------------------------------------------------------------------

    def apply_record(
        self,
        key: bytes | None,
        value: bytes | None,
        now: float | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Apply one record of the decisions topic: the latest record of a subject is its state.

        A tombstone (no value) or an `allow` lifts the subject's decision; shadow decisions
        leave the state alone. With a signer, a record (tombstones included) that is unsigned,
        does not verify, or is refused by the replay guard is counted and changes nothing."""
        now = self.clock() if now is None else now
        if self.signer is not None:
            check = self.signer.check(key, value, headers)
            if check is not SignatureCheck.VALID:
                self._rejected(check, key)
                return
        if value is None:
            subject = (
                canonical_subject(Subject.from_key(key.decode(errors="replace"))) if key else None
            )
            if subject is not None and not self._replayed(subject, tombstone_issued_at(headers)):
                self._remove(subject.key)
            return
        try:
            decision = Decision.from_json(value)
        except (ValueError, KeyError, TypeError) as exc:
            self._counts["invalid"] += 1
            log.warning("decision record is not decision.v1 (key %r): %s", key, exc)
            return
        if decision.mode != "enforce":
            self._counts["shadow_ignored"] += 1
            return
        if decision.action not in ACTION_RANK:
            self._counts["invalid"] += 1
            log.warning(
                "decision for %r has unknown action %r", decision.subject.key, decision.action
            )
            return
        if decision.subject.kind not in MATCHED_KINDS:
            # A request does not carry its campaign, so a campaign decision matches none:
            # counted as unmatched and not kept.
            self._counts["unmatched"] += 1
            return
        subject = canonical_subject(decision.subject)
        if subject is None:
            self._counts["invalid"] += 1
            log.warning("decision names an unparseable subject %r", decision.subject.key)
            return
        if self._replayed(subject, decision.issued_at):
            return
        self._counts["applied"] += 1
        expires_at = decision.expires_at
        if decision.action == "allow" or (expires_at is not None and expires_at <= now):
            self._remove(subject.key)
            return
        limit = None if decision.limit_rps is None else float(decision.limit_rps)
        entry = Entry(
            subject,
            decision.action,
            ACTION_RANK[decision.action],
            limit,
            expires_at,
            decision.rule,
            decision.decision_id,
        )
        self._put(entry)

    def _replayed(self, subject: Subject, issued_at: float | None) -> bool:
        """With a signer, whether a record is refused as a replay; counted and logged if so."""
        if self.signer is None or not self._replays.replayed(subject.key, issued_at):
            return False
        self._counts["replayed"] += 1
        why = "has no signed issue time" if issued_at is None else "was issued before the newest"
        log.warning("record for %r %s, ignored: a replayed record?", subject.key, why)
        return True

    def _rejected(self, check: SignatureCheck, key: bytes | None) -> None:
        count = "unsigned" if check is SignatureCheck.UNSIGNED else "forged"
        self._counts[count] += 1
        total = self._counts[count]
        # Whoever can write to the topic can write many: log the first and then rarely.
        if total in (1, 100) or total % 10_000 == 0:
            log.warning(
                "decision record ignored (%s signature, %d so far), key %r",
                check.value,
                total,
                (key or b"")[:80],
            )

    def expire(self, now: float | None = None) -> int:
        """Remove decisions whose time ran out; returns how many."""
        now = self.clock() if now is None else now
        removed = 0
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, _, key, entry = heapq.heappop(heap)
            if self._entries.get(key) is entry:
                self._remove(key)
                removed += 1
        self._counts["expired"] += removed
        return removed

    def _put(self, entry: Entry) -> None:
        key = entry.subject.key
        self._remove(key)
        self._entries[key] = entry
        if entry.subject.kind == "network":
            net = ip_network(entry.subject.value)
            table = self._networks.setdefault((net.version, net.prefixlen), {})
            table[int(net.network_address) >> (net.max_prefixlen - net.prefixlen)] = entry
        expires = math.inf if entry.expires_at is None else entry.expires_at
        heapq.heappush(self._expiry, (expires, next(self._seq), key, entry))
        while len(self._entries) > self.max_entries:
            self._evict_one()
        # Replaced entries leave stale heap items behind; rebuild before they outnumber the live.
        if len(self._expiry) > 2 * len(self._entries) + 1024:
            self._expiry = [item for item in self._expiry if self._entries.get(item[2]) is item[3]]
            heapq.heapify(self._expiry)

    def _evict_one(self) -> None:
        while self._expiry:
            _, _, key, entry = heapq.heappop(self._expiry)
            if self._entries.get(key) is entry:
                self._remove(key)
                self._counts["evicted"] += 1
                if self._counts["evicted"] in (1, 1000) or self._counts["evicted"] % 100_000 == 0:
                    log.warning(
                        "decision cache full (%d entries): %d decisions dropped so far",
                        self.max_entries,
                        self._counts["evicted"],
                    )
                return

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None or entry.subject.kind != "network":
            return
        net = ip_network(entry.subject.value)
        table_key = (net.version, net.prefixlen)
        table = self._networks.get(table_key)
        if table is not None:
            table.pop(int(net.network_address) >> (net.max_prefixlen - net.prefixlen), None)
            if not table:
                del self._networks[table_key]

    # -- following the topic ---------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            consumer = self._consumer_factory()
            try:
                await consumer.start()
                # Without a group, aiokafka assigns every partition of the topic, and new
                # partitions as metadata shows them.
                consumer.subscribe([self.topic])
                await self._follow(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the Kafka boundary: any failure restarts the consumer
                self._counts["reconnects"] += 1
                log.warning("decision consumer failed, restarting in %.1fs: %r", backoff, exc)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        assigned: frozenset[TopicPartition] = frozenset()
        waiting_since = time.monotonic()
        warned = False
        while True:
            # Short polls until caught up, so start-up is not held back by an idle topic.
            wait_ms = 500 if self.ready else 50
            batch = await consumer.getmany(timeout_ms=wait_ms, max_records=2000)
            now = self.clock()
            for tp, records in batch.items():
                position = self._positions.get(tp, 0)
                for record in records:
                    # A restarted consumer may fetch from before where this cache already is
                    # (until its seek lands); those records were applied once already.
                    if record.offset >= position:
                        self.apply_record(record.key, record.value, now, record.headers)
                        position = record.offset + 1
                self._positions[tp] = position
            self.expire(now)
            current = frozenset(consumer.assignment())
            if current != assigned:
                assigned = current
                await self._on_assigned(consumer, assigned)
            if not assigned:
                if not warned and time.monotonic() - waiting_since > 10:
                    warned = True
                    log.warning("decisions topic %r has no partitions (does it exist?)", self.topic)
                continue
            self._observe(consumer, assigned)

    async def _on_assigned(
        self, consumer: AIOKafkaConsumer, tps: frozenset[TopicPartition]
    ) -> None:
        for tp in tps:
            if tp in self._positions:
                consumer.seek(tp, self._positions[tp])
        if not self.ready:
            unknown = [tp for tp in tps if tp not in self._targets]
            if unknown:
                self._targets.update(await consumer.end_offsets(unknown))

    def _observe(self, consumer: AIOKafkaConsumer, tps: frozenset[TopicPartition]) -> None:
        """Lag, last contact and readiness after a fetch.

        Positions are the offset after the last record read. Compaction never cleans the
        active segment, so a partition's last record is always there to be read, and a cache
        that read it has reached the end offset it saw at start-up."""
        lag = 0
        contact: float | None = None
        caught_up = True
        for tp in tps:
            position = self._positions.get(tp, 0)
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag += max(0, highwater - position)
            polled = consumer.last_poll_timestamp(tp)
            if polled:
                contact = max(contact or 0.0, polled / 1000)
            if position < self._targets.get(tp, 0):
                caught_up = False
        self._lag = lag
        if contact is not None:
            self._last_contact = contact
        if caught_up and not self._ready.is_set():
            self._last_contact = self._last_contact or time.time()
            self._ready.set()
            log.info(
                "decision cache ready: %d live decisions from %s", len(self._entries), self.topic
            )
