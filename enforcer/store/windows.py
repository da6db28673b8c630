"""The window store: atomic, idempotent window updates and decision state in Redis.

Algorithms (what a signal means) live in enforcer.engine.detectors; this module only knows how to
count into buckets and read sums back. Each batch costs one pipelined round trip for the
windows and one for decision state, however many events it holds.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from hashlib import blake2b
from importlib import resources
from operator import attrgetter, itemgetter
from typing import Any, Generic, NamedTuple, TypeVar

import hiredis
import orjson
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import NoScriptError, RedisError, ResponseError

from enforcer.core.decisions import Subject
from enforcer.store import keys
from enforcer.worker import metrics


class HiredisPackConnection(Connection):
    """redis-py's asyncio connection packs commands in Python, argument by argument; a batch
    sends tens of thousands of keys, so this packs them with hiredis' C encoder instead, as the
    synchronous client already does."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):
            args = tuple(args[0].encode().split()) + args[1:]
        return [hiredis.pack_command(args)]


T = TypeVar("T")


class StorageError(RuntimeError):
    """Redis failed or was unreachable. Raised once, where the error enters enforcer."""


# Counters the window script adds to every bucket besides the per-request ones: gaps between a
# subject's requests, their sum and their sum of squares, in centiseconds.
CADENCE = ("ng", "gs", "gq")

# Buckets per window. The sum weights the oldest bucket by the share of it still inside the
# window (see update_windows.lua), so even few buckets track a sliding window closely; each
# bucket costs every subject's state `width` doubles that Lua unpacks and packs per batch.
BUCKETS_PER_WINDOW = 4


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    seconds: int
    bucket_s: int

    @classmethod
    def of(cls, name: str, seconds: int) -> Window:
        return cls(name, seconds, max(1, seconds // BUCKETS_PER_WINDOW))


class EventCounts(NamedTuple):
    event_id: str
    ts: float
    values: tuple[int, ...]  # one per counter, in the store's counter order
    fingerprint: str = ""  # template fingerprint, for subjects that track templates
    bands: tuple[str, ...] = ()  # near-duplicate band keys


class SubjectBatch(NamedTuple):
    subject: Subject
    events: list[EventCounts]
    templates: bool = False  # track this subject's template shares (keys do)
    windows: tuple[str, ...] | None = None  # names of the windows it keeps; None: all of them


class TemplateShares(NamedTuple):
    top_template: float  # share of requests under the subject's most used exact template
    top_near_duplicate: float  # same, for the most used near-duplicate band
    distinct_ratio: float  # distinct exact templates per request


class SumsLayout:
    """Where each window's sums sit in a subject's reply row: one per set of kept windows, so
    a batch's thousands of subjects share a few, and a row is read by index, not by dict."""

    __slots__ = ("names", "offsets", "_columns")

    def __init__(self, names: tuple[str, ...], windows: tuple[str, ...], first: int) -> None:
        self.names = names  # counters, in column order
        self.offsets = {w: first + i * len(names) for i, w in enumerate(windows)}
        self._columns: dict[tuple[str, ...], tuple[int, ...]] = {}

    def columns(self, counters: tuple[str, ...]) -> tuple[int, ...]:
        """Each counter's column within a window, -1 for a counter the store does not keep."""
        found = self._columns.get(counters)
        if found is None:
            index = {name: i for i, name in enumerate(self.names)}
            found = self._columns[counters] = tuple(index.get(c, -1) for c in counters)
        return found


class WindowStats(NamedTuple):
    subject: Subject
    watermark: float | None
    accepted: int
    duplicates: int
    too_late: int
    row: tuple[float, ...]  # the subject's reply (see update_windows.lua), read via `layout`
    layout: SumsLayout
    templates: TemplateShares | None = None

    @property
    def sums(self) -> dict[str, dict[str, float]]:
        """Window name -> counter -> sum, built on demand (tests, debugging)."""
        width = len(self.layout.names)
        return {
            window: dict(zip(self.layout.names, self.row[at : at + width], strict=True))
            for window, at in self.layout.offsets.items()
        }


class CampaignUse(NamedTuple):
    api_key: str
    network: str
    account: str


class CampaignBatch(NamedTuple):
    fingerprint: str
    ts: float
    uses: list[CampaignUse]


class CampaignStats(NamedTuple):
    fingerprint: str
    keys: int
    networks: int
    accounts: int


class LadderStep(NamedTuple):
    """An escalation step: used once the rule has `after` strikes for the subject."""

    after: int
    action: str
    rank: int
    expires_at: float | None


class StateProposal(NamedTuple):
    subject: Subject
    mode: str
    action: str
    rank: int
    expires_at: float | None
    ts: float
    rule: str
    # A strike is a decision this rule published for the subject (in this mode); the ladder,
    # weakest step first, replaces the action once enough strikes fall within strikes_within_s.
    ladder: tuple[LadderStep, ...] = ()
    strikes_within_s: float = 86400.0


class DecideOutcome(NamedTuple):
    publish: bool
    step: int  # 0: the proposal's own action; n: its ladder's nth step
    strikes: int  # the rule's earlier decisions for the subject within its horizon
    sequence: int = 0  # the publication's number in the subject's state (0: not published)


class Receipt(NamedTuple):
    """A publication decision state holds as pending until the producer has delivered it
    (see decide.lua and confirm.lua)."""

    subject: Subject
    mode: str
    sequence: int


# A subject's events go to the window script in event-time order (C-level key: per event).
_by_ts = attrgetter("ts")


_SUBJECT_KEYS_CACHED = 200_000

# The binary layout update_windows.lua reads: a head per subject, then its events.
# subject digest, window mask, templates, event count, epoch start
_SUBJECT_HEAD = struct.Struct("<8sIBId")
_SET_INDEX = struct.Struct("<H")  # an event's dedupe set (1-based), before its digest, ts...
_DOUBLES: dict[int, struct.Struct] = {}


def _doubles(n: int) -> struct.Struct:
    fmt = _DOUBLES.get(n)
    if fmt is None:
        fmt = _DOUBLES[n] = struct.Struct(f"<{n}d")
    return fmt


def _digest(text: str) -> bytes:
    """8 bytes standing for a subject or an event id in a dedupe member: short members keep
    the sets small and their lookups quick; a collision among the members one set holds (one
    slot group's lateness epoch) has a ~2**-64 chance per pair."""
    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()


class _Group(NamedTuple):
    """One slot group's share of a window update: one script call."""

    slot_group: str
    keys: list[str]
    payload: list[bytes]
    texts: list[list[list[str]]]  # template rows of the subjects that track templates
    members: list[int]  # indexes of its subjects in the batch
    sets: dict[int, bytes]  # lateness epoch -> its dedupe set's index in this call, packed


class _ColumnLayout(NamedTuple):
    """The counters one update keeps per bucket, and how an event's values are sent."""

    columns: tuple[str, ...]  # kept, in column order: per-request counters, then cadence
    counters: tuple[str, ...]  # the per-request counters among them (sent with each event)
    cadence: bool
    mask: int  # bit i: the store's i-th column is kept; the state records it (see the script)
    event_format: struct.Struct
    pick: Callable[[tuple[int, ...]], tuple[int, ...]]  # an event's values -> the kept ones


def _picker(picks: tuple[int, ...], n: int) -> Callable[[tuple[int, ...]], tuple[int, ...]]:
    if picks == tuple(range(n)):
        return _same
    if len(picks) == 1:
        only = picks[0]
        return lambda values: (values[only],)
    return itemgetter(*picks)


def _same(values: tuple[int, ...]) -> tuple[int, ...]:
    return values


class _UpdateRequest(NamedTuple):
    """A window update encoded as script calls, and what its replies are decoded against."""

    calls: list[tuple[Script, list[str], list[Any]]]
    batches: Sequence[SubjectBatch]
    windows: tuple[Window, ...]
    groups: list[_Group]
    campaigns: Sequence[CampaignBatch]
    campaign_members: list[list[int]]  # per campaign call, the indexes of its campaigns
    columns: tuple[str, ...]  # the counters kept per window bucket, in column order


class _InFlight(NamedTuple):
    """A pipeline on the wire whose replies are not read yet; it holds its connection."""

    calls: list[tuple[Script, list[str], list[Any]]]
    op: str
    connection: Connection
    started: float


def _outcomes(replies: list[Any]) -> list[DecideOutcome]:
    return [DecideOutcome(int(r[0]) == 1, int(r[1]), int(r[2]), int(r[3])) for r in replies]


@contextmanager
def _storage_errors(op: str) -> Iterator[None]:
    """Redis failures become StorageError here, where they enter enforcer, and are counted."""
    try:
        yield
    except ResponseError as exc:
        metrics.REDIS_ERRORS.labels(op, "script").inc()
        raise StorageError(f"redis script failed: {exc}") from exc
    except (TimeoutError, RedisError, OSError) as exc:
        metrics.REDIS_ERRORS.labels(op, "unavailable").inc()
        raise StorageError(f"redis unavailable: {exc}") from exc


class Script:
    """A Lua script shipped beside the code that calls it, called by SHA inside pipelines and
    loaded on NOSCRIPT.

    redis-py's own pipeline scripts check SCRIPT EXISTS before every execute, an extra round
    trip per batch on the hot path; this costs one only after a Redis restart."""

    def __init__(self, name: str, package: str = "enforcer.store.scripts") -> None:
        self.name = name.removesuffix(".lua")
        self.source = resources.files(package).joinpath(name).read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def load(self, client: aioredis.Redis) -> None:
        await client.script_load(self.source)


class WindowStore:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        windows: Sequence[Window],
        counters: Sequence[str],
        lateness_s: float,
        content_window_s: int = 600,
        n_bands: int = 0,
        template_field_cap: int = 128,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.windows = tuple(windows)
        self.counters = tuple(counters)
        self.lateness_s = lateness_s
        # Template shares and campaigns are read over a sliding content window built from two
        # fixed epochs of this length (see update_windows.lua).
        self.content_window_s = content_window_s
        self.n_bands = n_bands
        self.template_field_cap = template_field_cap
        # Pipelined round trips made so far: the hot path's cost in Redis, watched by tests
        # and metrics (a batch must cost a fixed number, not one per event).
        self.round_trips = 0
        self._update = Script("update_windows.lua")
        # Every column a bucket can hold: the per-request counters, then the cadence ones the
        # script computes; a call keeps some of them (see _layout).
        self.all_columns = (*self.counters, *CADENCE)
        self._layouts: dict[tuple[str, ...] | None, _ColumnLayout] = {}
        # Subject -> (slot group, window key, digest): subjects recur batch after batch.
        self._subject_keys: dict[Subject, tuple[str, str, bytes]] = {}
        self._decide = Script("decide.lua")
        self._campaign = Script("campaign.lua")
        self._confirm = Script("confirm.lua")
        self._loaded = False

    def _header(self, windows: tuple[Window, ...], layout: _ColumnLayout) -> bytes:
        return orjson.dumps(
            [
                self.lateness_s,
                [[w.seconds, w.bucket_s] for w in windows],
                len(layout.counters),
                self.content_window_s,
                self.template_field_cap,
                self.n_bands,
                1 if layout.cadence else 0,
                layout.mask,
            ]
        )

    def _layout(self, columns: tuple[str, ...] | None) -> _ColumnLayout:
        """Which columns a call keeps: `columns` (None: all), with "req" always and the three
        cadence counters together or not at all."""
        layout = self._layouts.get(columns)
        if layout is None:
            wanted = set(self.all_columns if columns is None else columns) | {"req"}
            if wanted & set(CADENCE):
                wanted |= set(CADENCE)
            kept = tuple(c for c in self.all_columns if c in wanted)
            unknown = sorted(set(columns or ()) - set(self.all_columns))
            if unknown:
                raise ValueError(f"the store keeps no counter named {', '.join(unknown)}")
            picks = tuple(i for i, c in enumerate(self.counters) if c in wanted)
            layout = self._layouts[columns] = _ColumnLayout(
                kept,
                tuple(self.counters[i] for i in picks),
                CADENCE[0] in wanted,
                sum(1 << i for i, c in enumerate(self.all_columns) if c in wanted),
                struct.Struct("<8sd" + "d" * len(picks)),
                _picker(picks, len(self.counters)),
            )
        return layout

    @classmethod
    def from_url(
        cls,
        url: str,
        timeout_s: float = 2.0,
        redis_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> WindowStore:
        """`redis_options`: credentials and TLS files (enforcer.core.connections)."""
        options: dict[str, Any] = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            **(redis_options or {}),
        }
        if url.startswith("redis://"):  # TLS and unix sockets keep redis-py's own classes
            options["connection_class"] = HiredisPackConnection
        client = aioredis.Redis.from_url(url, **options)
        return cls(client, **kwargs)

    def _epoch(self, ts: float) -> int:
        return int(ts // self.content_window_s)

    async def update(
        self,
        batches: Sequence[SubjectBatch],
        windows: Sequence[Window] | None = None,
        campaigns: Sequence[CampaignBatch] = (),
        columns: tuple[str, ...] | None = None,
    ) -> tuple[list[WindowStats], list[CampaignStats]]:
        """Count every subject's events and every template's users in one round trip, and
        return each subject's window sums and each template's campaign size afterwards.

        Subjects are sent one script call per slot group, so a batch of thousands of subjects
        costs at most SLOT_GROUPS calls. `windows` defaults to the store's own; the worker
        passes the policy's, so a reloaded policy with new windows takes effect at the next
        batch (a new window starts empty). `columns` names the counters to keep (default:
        all); the worker keeps those its policy reads. When a reload changes them, each
        subject's stored buckets keep the counters both sets hold, and new ones start at 0."""
        return await (await self.start_update(batches, windows, campaigns, columns)).result()

    async def start_update(
        self,
        batches: Sequence[SubjectBatch],
        windows: Sequence[Window] | None = None,
        campaigns: Sequence[CampaignBatch] = (),
        columns: tuple[str, ...] | None = None,
    ) -> PendingUpdate:
        """update(), with the request sent and its replies not yet read: the caller works
        while Redis counts (a replay prepares its next batch, or finishes its last one), then
        awaits result(). Read one update's replies before starting the next: each goes over
        its own connection, and calls on two connections may interleave in Redis, while one
        subject's windows must be counted batch by batch, in order."""
        request = self._encode_update(batches, windows, campaigns, columns)
        inflight = await self._send(request.calls) if request.calls else None
        return Pending(self, inflight, partial(self._decode_update, request))

    def _encode_update(
        self,
        batches: Sequence[SubjectBatch],
        windows: Sequence[Window] | None,
        campaigns: Sequence[CampaignBatch],
        columns: tuple[str, ...] | None = None,
    ) -> _UpdateRequest:
        layout = self._layout(columns)
        if not batches and not campaigns:
            return _UpdateRequest([], batches, (), [], campaigns, [], layout.columns)
        windows = tuple(windows) if windows is not None else self.windows
        header = self._header(windows, layout)
        position = {w.name: i for i, w in enumerate(windows)}
        every_mask = (1 << len(windows)) - 1
        event_format, pick = layout.event_format, layout.pick
        # Dedupe sets span a lateness each (at least a second, so that no lateness still
        # rotates them): a set's events are all refused as late once it is a span old.
        set_span = max(self.lateness_s, 1.0)
        # id(EventCounts) -> (its dedupe epoch, its bytes), shared by the event's subjects
        packed: dict[int, tuple[int, bytes]] = {}
        masks: dict[tuple[str, ...], int] = {}
        subject_keys = self._subject_keys
        groups: dict[str, _Group] = {}
        for index, batch in enumerate(batches):
            subject = batch.subject
            named = subject_keys.get(subject)
            if named is None:
                if len(subject_keys) >= _SUBJECT_KEYS_CACHED:
                    subject_keys.clear()
                named = subject_keys[subject] = (
                    keys.slot_group(subject),
                    keys.window_key(self.prefix, subject),
                    _digest(subject.key),
                )
            slot_group, window_key, subject_digest = named
            entry = groups.get(slot_group)
            if entry is None:
                entry = groups[slot_group] = _Group(slot_group, [], [], [], [], {})
            entry.members.append(index)
            entry.keys.append(window_key)
            # In event-time order, so inter-arrival gaps are measured between neighbours.
            events = batch.events if len(batch.events) < 2 else sorted(batch.events, key=_by_ts)
            epoch = self._epoch(events[-1].ts if events else 0.0)
            if batch.templates:
                entry.keys.extend(
                    (
                        keys.template_key(self.prefix, subject, epoch),
                        keys.template_key(self.prefix, subject, epoch - 1),
                        keys.template_hll_key(self.prefix, subject, epoch),
                        keys.template_hll_key(self.prefix, subject, epoch - 1),
                    )
                )
            if batch.windows is None:
                mask = every_mask
            else:
                mask = masks.get(batch.windows, -1)
                if mask < 0:
                    mask = masks[batch.windows] = sum(1 << position[n] for n in batch.windows)
            parts = entry.payload
            parts.append(
                _SUBJECT_HEAD.pack(
                    subject_digest,
                    mask,
                    1 if batch.templates else 0,
                    len(events),
                    epoch * self.content_window_s,
                )
            )
            sets = entry.sets
            for ev in events:
                known = packed.get(id(ev))
                if known is None:
                    known = packed[id(ev)] = (
                        int(ev.ts // set_span),
                        event_format.pack(_digest(ev.event_id), ev.ts, *pick(ev.values)),
                    )
                # Which dedupe set: the event's lateness epoch, numbered within this call.
                seen_epoch, data = known
                set_index = sets.get(seen_epoch)
                if set_index is None:
                    set_index = sets[seen_epoch] = _SET_INDEX.pack(len(sets) + 1)
                parts.append(set_index + data)
            if batch.templates:
                entry.texts.append([[ev.fingerprint, *ev.bands] for ev in events])
        calls: list[tuple[Script, list[str], list[Any]]] = [
            (
                self._update,
                group.keys
                + [keys.dedupe_set_key(self.prefix, group.slot_group, e) for e in group.sets],
                [header, b"".join(group.payload), len(group.sets)]
                + ([orjson.dumps(group.texts)] if group.texts else []),
            )
            for group in groups.values()
        ]
        campaign_groups: dict[str, tuple[list[str], list[Any], list[int]]] = {}
        for index, campaign in enumerate(campaigns):
            epoch = self._epoch(campaign.ts)
            template = Subject("template", campaign.fingerprint)
            key_list, args, members = campaign_groups.setdefault(
                keys.slot_group(template), ([], [self.content_window_s], [])
            )
            key_list += [
                keys.campaign_key(self.prefix, template, part, e)
                for part in ("keys", "networks", "accounts")
                for e in (epoch, epoch - 1)
            ]
            # Each distinct member once: a busy template repeats the same key all batch long.
            api_keys = list(dict.fromkeys(use.api_key for use in campaign.uses))
            networks = list(dict.fromkeys(use.network for use in campaign.uses))
            accounts = list(dict.fromkeys(use.account for use in campaign.uses if use.account))
            args += [len(api_keys), len(networks), len(accounts), *api_keys, *networks, *accounts]
            members.append(index)
        calls += [
            (self._campaign, key_list, args) for key_list, args, _ in campaign_groups.values()
        ]
        return _UpdateRequest(
            calls,
            batches,
            windows,
            list(groups.values()),
            campaigns,
            [members for _, _, members in campaign_groups.values()],
            layout.columns,
        )

    def _decode_update(
        self, request: _UpdateRequest, replies: list[Any]
    ) -> tuple[list[WindowStats], list[CampaignStats]]:
        batches, windows, campaigns = request.batches, request.windows, request.campaigns
        groups = request.groups
        names = request.columns
        width = len(names)
        all_names = tuple(w.name for w in windows)
        layouts: dict[tuple[str, ...], SumsLayout] = {}
        stats: list[WindowStats | None] = [None] * len(batches)
        for part, reply in zip(groups, replies, strict=False):
            at = 0
            for index in part.members:
                batch = batches[index]
                kept = all_names if batch.windows is None else batch.windows
                layout = layouts.get(kept)
                if layout is None:
                    layout = layouts[kept] = SumsLayout(names, kept, 4)
                sums_end = 4 + len(kept) * width
                count = sums_end + (3 if batch.templates else 0)
                row = _doubles(count).unpack_from(reply, at)
                at += count * 8
                watermark = row[3]
                stats[index] = WindowStats(
                    batch.subject,
                    watermark if watermark >= 0 else None,
                    int(row[0]),
                    int(row[1]),
                    int(row[2]),
                    row,
                    layout,
                    TemplateShares(*row[sums_end:count]) if batch.templates else None,
                )
            if at != len(reply):
                raise StorageError(f"window reply holds {len(reply)} bytes, expected {at}")
        campaign_stats: list[CampaignStats | None] = [None] * len(campaigns)
        for members, reply in zip(request.campaign_members, replies[len(groups) :], strict=True):
            for index, row in zip(members, reply, strict=True):
                campaign_stats[index] = CampaignStats(
                    campaigns[index].fingerprint, int(row[0]), int(row[1]), int(row[2])
                )
        return [s for s in stats if s is not None], [c for c in campaign_stats if c is not None]

    async def decide(
        self,
        proposals: Sequence[StateProposal],
        renew_before_s: float,
        awaits_delivery: bool = False,
    ) -> list[bool]:
        """For each proposal, whether it must be published (new, stronger, or due for renewal)."""
        return [
            o.publish
            for o in await self.decide_outcomes(proposals, renew_before_s, awaits_delivery)
        ]

    async def decide_outcomes(
        self,
        proposals: Sequence[StateProposal],
        renew_before_s: float,
        awaits_delivery: bool = False,
    ) -> list[DecideOutcome]:
        """decide(), plus the escalation step chosen from the rule's strikes, in the same
        single round trip: the strike count never leaves Redis before it is used."""
        return await (await self.start_decide(proposals, renew_before_s, awaits_delivery)).result()

    async def start_decide(
        self,
        proposals: Sequence[StateProposal],
        renew_before_s: float,
        awaits_delivery: bool = False,
    ) -> Pending[list[DecideOutcome]]:
        """decide_outcomes(), sent without reading the replies. The replies of one batch's
        decisions must be read before the next batch's are sent: both write the same state.

        With `awaits_delivery`, a publication stays pending until confirm() is called with
        its receipt, and a pending one is published again by the next verdict of its rule:
        the live worker, whose producer may die before Kafka has a decision, sets it. A replay
        writing to a file delivers as it decides and leaves it off."""
        if not proposals:
            return Pending(self, None, _outcomes)

        def expiry(expires_at: float | None, ts: float) -> tuple[str, int]:
            lifetime = 86400 if expires_at is None else max(60, int(expires_at - ts) + 3600)
            return ("" if expires_at is None else repr(expires_at)), lifetime

        calls = []
        for p in proposals:
            expires, lifetime = expiry(p.expires_at, p.ts)
            args: list[Any] = [p.action, p.rank, expires, repr(p.ts), renew_before_s, p.rule]
            args += [lifetime, p.strikes_within_s, len(p.ladder), 1 if awaits_delivery else 0]
            for step in p.ladder:
                args += [step.after, step.action, step.rank, *expiry(step.expires_at, p.ts)]
            calls.append(
                (
                    self._decide,
                    [
                        keys.state_key(self.prefix, p.subject, p.mode),
                        keys.strikes_key(self.prefix, p.subject, p.mode, p.rule),
                    ],
                    args,
                )
            )
        return Pending(self, await self._send(calls), _outcomes)

    async def confirm(self, receipts: Sequence[Receipt]) -> int:
        """Mark publications delivered, in one round trip; returns how many were still the
        subject's latest publication. Call once the producer has acknowledged them."""
        if not receipts:
            return 0
        calls: list[tuple[Script, list[str], list[Any]]] = [
            (self._confirm, [keys.state_key(self.prefix, r.subject, r.mode)], [r.sequence])
            for r in receipts
        ]
        return sum(int(r) for r in await self._receive(await self._send(calls)))

    async def _send(self, calls: list[tuple[Script, list[str], list[Any]]]) -> _InFlight:
        """Put the calls on the wire as one pipeline, sent by hand so that the replies can be
        read later (redis-py's pipeline sends and reads in one call)."""
        # Metrics name a round trip by its first script (an update carries campaign calls too).
        op = calls[0][0].name if calls else "none"
        with _storage_errors(op):
            if not self._loaded:
                # Loaded once up front: a pipeline whose first call ran and whose second met
                # NOSCRIPT could otherwise only be retried whole, counting the first one twice.
                for script in (self._update, self._decide, self._campaign, self._confirm):
                    await script.load(self.client)
                self._loaded = True
            pool = self.client.connection_pool
            conn = await pool.get_connection()
            try:
                packed = b"".join(
                    hiredis.pack_command(("EVALSHA", script.sha, len(key_list), *key_list, *args))
                    for script, key_list, args in calls
                )
                started = time.perf_counter()
                await conn.send_packed_command(packed)
            except BaseException:
                await conn.disconnect()
                await pool.release(conn)
                raise
        return _InFlight(calls, op, conn, started)

    async def _read(self, inflight: _InFlight) -> list[Any]:
        """The replies of a sent pipeline, errors in place (NOSCRIPT and script errors, as
        redis-py's pipeline gives them); the connection goes back to the pool either way."""
        conn = inflight.connection
        replies: list[Any] = []
        try:
            for _ in inflight.calls:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await self.client.connection_pool.release(conn)
        metrics.REDIS_CALL_SECONDS.labels(inflight.op).observe(
            time.perf_counter() - inflight.started
        )
        self.round_trips += 1
        return replies

    async def _receive(self, inflight: _InFlight) -> list[Any]:
        calls, op = inflight.calls, inflight.op
        with _storage_errors(op):
            replies = await self._read(inflight)
            # After a Redis restart or SCRIPT FLUSH: only calls refused with NOSCRIPT did not
            # run, so only they are sent again.
            missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if missing:
                for script in {id(calls[i][0]): calls[i][0] for i in missing}.values():
                    await script.load(self.client)
                retried = await self._read(await self._send([calls[i] for i in missing]))
                for i, reply in zip(missing, retried, strict=True):
                    replies[i] = reply
            for r in replies:
                if isinstance(r, Exception):
                    raise r
            return replies

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError):
            return False

    async def drop_namespace(self) -> int:
        """Delete every key under this store's prefix (backtests and tests clean up with it)."""
        removed = 0
        page: list[bytes] = []
        try:
            async for key in self.client.scan_iter(
                match=keys.namespace_pattern(self.prefix), count=5000
            ):
                page.append(key)
                if len(page) >= 1000:
                    removed += await self.client.unlink(*page)
                    page = []
            if page:
                removed += await self.client.unlink(*page)
        except (RedisError, OSError) as exc:
            raise StorageError(f"redis unavailable: {exc}") from exc
        return removed

    async def close(self) -> None:
        await self.client.aclose()


class Pending(Generic[T]):
    """Script calls sent to Redis whose replies are not read yet (see start_update and
    start_decide): the caller works meanwhile, then awaits result()."""

    def __init__(
        self,
        store: WindowStore,
        inflight: _InFlight | None,
        decode: Callable[[list[Any]], T],
    ) -> None:
        self._store = store
        self._inflight = inflight
        self._decode = decode

    async def result(self) -> T:
        """Read the replies (once) and decode them."""
        inflight, self._inflight = self._inflight, None
        replies = [] if inflight is None else await self._store._receive(inflight)
        return self._decode(replies)

    async def abandon(self) -> None:
        """Give up on the replies (the caller failed meanwhile): the connection is dropped,
        since unread replies would reach its next user."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight.connection.disconnect()
            await self._store.client.connection_pool.release(inflight.connection)


# What a window update returns: each subject's window stats and each template's campaign.
Counted = tuple[list[WindowStats], list[CampaignStats]]
PendingUpdate = Pending[Counted]
