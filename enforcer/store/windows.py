"""The window store: atomic, idempotent window updates and decision state in Redis.

Algorithms (what a signal means) live in enforcer.engine.detectors; this module only knows how to
count into buckets and read sums back. Each batch costs one pipelined round trip for the
windows and one for decision state, however many events it holds. It implements
enforcer.core.ports.WindowStorage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Generic, TypeVar

import hiredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    MovedError,
    NoScriptError,
    RedisError,
    ResponseError,
    TryAgainError,
)

from enforcer.core.connections import redis_options
from enforcer.core.counts import (
    CampaignBatch,
    CampaignStats,
    Counted,
    DecideOutcome,
    Receipt,
    StateProposal,
    SubjectBatch,
    Window,
    WindowStats,
)
from enforcer.core.decisions import Subject
from enforcer.core.ports import StorageError
from enforcer.core.settings import Settings
from enforcer.store import keys
from enforcer.store.client import (
    AnyRedis,
    Script,
    StoreObserver,
    Unobserved,
    redis_client,
    storage_errors,
)
from enforcer.store.codec import SUBJECTS_PER_CALL, UPDATE_CONSTANTS, UpdateCodec
from enforcer.store.routing import Call, InFlight, router_for

T = TypeVar("T")

# A call refused with one of these did not run, and is sent again.
_NOT_RUN = (NoScriptError, AskError, TryAgainError)  # MovedError is an AskError
# How many times calls refused unrun are sent again before the error is raised: a slot's
# migration redirects a call (ASK, then MOVED once it completes), and a call that creates
# keys in a migrating slot meets TRYAGAIN until the hand-over, backed off for ~2 s in all.
_REDIRECTS = 8
_ASKING = hiredis.pack_command(("ASKING",))


_NO_OUTCOME = DecideOutcome(False, 0, 0, 0)  # a placeholder, every slot is filled


def _outcomes(order: list[list[int]], replies: list[Any]) -> list[DecideOutcome]:
    """Each call's replies (four integers per proposal) back in the proposals' order."""
    out: list[DecideOutcome] = [_NO_OUTCOME] * sum(len(members) for members in order)
    for members, reply in zip(order, replies, strict=True):
        for at, index in enumerate(members):
            r = reply[4 * at : 4 * at + 4]
            out[index] = DecideOutcome(int(r[0]) == 1, int(r[1]), int(r[2]), int(r[3]))
    return out


class WindowStore:
    def __init__(
        self,
        client: AnyRedis,
        prefix: str,
        windows: Sequence[Window],
        counters: Sequence[str],
        lateness_s: float,
        content_window_s: int = 600,
        n_bands: int = 0,
        template_field_cap: int = 128,
        observer: StoreObserver | None = None,
    ) -> None:
        self.client = client
        self._router = router_for(client)
        self.observer: StoreObserver = observer or Unobserved()
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
        # The same, counted per server: on a Redis Cluster a pipeline goes to each node that
        # owns some of its slots, in parallel.
        self.node_round_trips = 0
        self._update = Script("update_windows.lua", constants=UPDATE_CONSTANTS)
        self._decide = Script("decide.lua")
        self._campaign = Script("campaign.lua")
        self._codec = UpdateCodec(
            prefix,
            self.windows,
            self.counters,
            lateness_s,
            content_window_s,
            n_bands,
            template_field_cap,
            self._update,
            self._campaign,
            None if isinstance(client, RedisCluster) else SUBJECTS_PER_CALL,
        )
        self._confirm = Script("confirm.lua")
        self._loaded = False

    @classmethod
    def from_url(
        cls,
        url: str,
        timeout_s: float = 2.0,
        redis_options: dict[str, Any] | None = None,
        cluster: bool = False,
        **kwargs: Any,
    ) -> WindowStore:
        """`redis_options`: credentials and TLS files (enforcer.core.connections);
        `cluster`: the URL names a node of a Redis Cluster."""
        return cls(redis_client(url, timeout_s, redis_options, cluster), **kwargs)

    async def update(
        self,
        batches: Sequence[SubjectBatch],
        windows: Sequence[Window] | None = None,
        campaigns: Sequence[CampaignBatch] = (),
        columns: tuple[str, ...] | None = None,
        window_columns: Mapping[str, tuple[str, ...]] | None = None,
    ) -> tuple[list[WindowStats], list[CampaignStats]]:
        """Count every subject's events and every template's users in one round trip, and
        return each subject's window sums and each template's campaign size afterwards.

        Subjects are sent SUBJECTS_PER_CALL to a script call (one call per slot group on a
        Redis Cluster, at most SLOT_GROUPS), whatever the batch's size. `windows` defaults to
        the store's own; the worker passes the policy's, so a reloaded policy with new windows
        takes effect at the next batch (a new window starts empty). `columns` names the
        counters to keep (default: all); the worker keeps those its policy reads. When a reload
        changes them, each subject's stored buckets keep the counters both sets hold, and new
        ones start at 0.
        `window_columns` narrows that per window name (a window it does not name keeps all of
        `columns`): a window reads as 0 the counters it does not keep."""
        return await (
            await self.start_update(batches, windows, campaigns, columns, window_columns)
        ).result()

    async def start_update(
        self,
        batches: Sequence[SubjectBatch],
        windows: Sequence[Window] | None = None,
        campaigns: Sequence[CampaignBatch] = (),
        columns: tuple[str, ...] | None = None,
        window_columns: Mapping[str, tuple[str, ...]] | None = None,
    ) -> PendingUpdate:
        """update(), with the request sent and its replies not yet read: the caller works
        while Redis counts (a replay prepares its next batch, or finishes its last one), then
        awaits result(). Read one update's replies before starting the next: each goes over
        its own connection, and calls on two connections may interleave in Redis, while one
        subject's windows must be counted batch by batch, in order."""
        request = self._codec.encode(batches, windows, campaigns, columns, window_columns)
        inflight = await self._send(request.calls) if request.calls else None
        return Pending(self, inflight, partial(self._codec.decode, request))

    async def decide(
        self,
        proposals: Sequence[StateProposal],
        renew_before_s: float,
        delivered_by: str = "",
    ) -> list[bool]:
        """For each proposal, whether it must be published (new, stronger, or due for renewal)."""
        return [
            o.publish for o in await self.decide_outcomes(proposals, renew_before_s, delivered_by)
        ]

    async def decide_outcomes(
        self,
        proposals: Sequence[StateProposal],
        renew_before_s: float,
        delivered_by: str = "",
    ) -> list[DecideOutcome]:
        """decide(), plus the escalation step chosen from the rule's strikes, in the same
        single round trip: the strike count never leaves Redis before it is used."""
        return await (await self.start_decide(proposals, renew_before_s, delivered_by)).result()

    async def start_decide(
        self,
        proposals: Sequence[StateProposal],
        renew_before_s: float,
        delivered_by: str = "",
    ) -> Pending[list[DecideOutcome]]:
        """decide_outcomes(), sent without reading the replies. The replies of one batch's
        decisions must be read before the next batch's are sent: both write the same state.

        With `delivered_by` (a token naming the caller's producer, new for each worker process)
        a publication stays pending until confirm() is called with its receipt. A verdict that
        meets a pending publication of its rule from another token publishes it again: that
        producer may have died before Kafka had it. One from the same token is on its way (the
        live worker delivers batches in order). A replay writing to a file delivers as it
        decides and passes no token."""
        if not proposals:
            return Pending(self, None, partial(_outcomes, []))

        def expiry(expires_at: float | None, ts: float) -> tuple[str, int]:
            lifetime = 86400 if expires_at is None else max(60, int(expires_at - ts) + 3600)
            return ("" if expires_at is None else repr(expires_at)), lifetime

        order = self._calls_of([p.subject for p in proposals])
        calls: list[Call] = []
        for members in order:
            key_list: list[str] = []
            args: list[Any] = []
            for p in (proposals[i] for i in members):
                expires, lifetime = expiry(p.expires_at, p.ts)
                key_list += [
                    keys.state_key(self.prefix, p.subject, p.mode),
                    keys.strikes_key(self.prefix, p.subject, p.mode, p.rule),
                ]
                args += [p.action, p.rank, expires, repr(p.ts), renew_before_s, p.rule]
                args += [lifetime, p.strikes_within_s, len(p.ladder), delivered_by]
                for step in p.ladder:
                    args += [step.after, step.action, step.rank, *expiry(step.expires_at, p.ts)]
            calls.append((self._decide, key_list, args))
        return Pending(self, await self._send(calls), partial(_outcomes, order))

    async def confirm(self, receipts: Sequence[Receipt]) -> int:
        """Mark publications delivered, in one call (one per slot group on a Cluster) and one
        round trip; returns how many were still the subject's latest publication. Call once the
        producer has acknowledged them."""
        if not receipts:
            return 0
        calls: list[Call] = []
        for members in self._calls_of([r.subject for r in receipts]):
            picked = [receipts[i] for i in members]
            state_keys = [keys.state_key(self.prefix, r.subject, r.mode) for r in picked]
            calls.append((self._confirm, state_keys, [r.sequence for r in picked]))
        return sum(int(r) for r in await self._receive(await self._send(calls)))

    def _calls_of(self, subjects: Sequence[Subject]) -> list[list[int]]:
        """Which of a batch's subjects (by index, in order) share a script call: up to
        SUBJECTS_PER_CALL to a call on one Redis, one slot group to a call on a Cluster (all
        of a subject's keys share its slot). Decision state and confirmations are sent so: a
        live batch of 50 events carried about 17 proposals, each once its own call."""
        per_call = self._codec.subjects_per_call
        groups: dict[str | int, list[int]] = {}
        for index, subject in enumerate(subjects):
            group = keys.slot_group(subject) if per_call is None else index // per_call
            groups.setdefault(group, []).append(index)
        return list(groups.values())

    async def _send(
        self,
        calls: list[Call],
        indexes: Sequence[int] | None = None,
        asked: dict[int, AskError] | None = None,
    ) -> InFlight:
        """Put the calls (those at `indexes`, default all) on the wire as one pipeline per
        server, sent by hand so that the replies can be read later (redis-py's pipelines send
        and read in one call)."""
        # Metrics name a round trip by its first script (an update carries campaign calls too).
        op = calls[0][0].name if calls else "none"
        with storage_errors(op, self.observer):
            if not self._loaded:
                # Loaded once up front: a pipeline whose first call ran and whose second met
                # NOSCRIPT could otherwise only be retried whole, counting the first one twice.
                for script in (self._update, self._decide, self._campaign, self._confirm):
                    await script.load(self.client)
                self._loaded = True
            lanes = await self._router.lanes(
                calls, range(len(calls)) if indexes is None else indexes, asked or {}
            )
            started = time.perf_counter()
            for at, lane in enumerate(lanes):
                try:
                    packed = b"".join(
                        (_ASKING if lane.asking else b"")
                        + hiredis.pack_command(
                            ("EVALSHA", script.sha, len(key_list), *key_list, *args)
                        )
                        for script, key_list, args in (calls[i] for i in lane.indexes)
                    )
                    await lane.connection.send_packed_command(packed)
                except BaseException:
                    for unsent in lanes[at:]:
                        await self._router.release(unsent, broken=True)
                    for sent in lanes[:at]:
                        await self._router.release(sent, broken=True)
                    raise
        return InFlight(calls, op, lanes, started)

    async def _read(self, inflight: InFlight) -> dict[int, Any]:
        """The replies of a sent pipeline by call index, errors in place (NOSCRIPT, MOVED and
        script errors, as redis-py's pipeline gives them); the connections go back either
        way."""
        replies: dict[int, Any] = {}
        lanes = list(inflight.lanes)
        try:
            while lanes:
                lane = lanes[0]
                for index in lane.indexes:
                    if lane.asking:
                        await lane.connection.read_response()  # ASKING's OK
                    try:
                        replies[index] = await lane.connection.read_response()
                    except ResponseError as exc:
                        replies[index] = exc
                await self._router.release(lanes.pop(0), broken=False)
        except BaseException:
            for lane in lanes:
                await self._router.release(lane, broken=True)
            raise
        self.observer.call_finished(inflight.op, time.perf_counter() - inflight.started)
        self.round_trips += 1
        self.node_round_trips += len(inflight.lanes)
        return replies

    async def _receive(self, inflight: InFlight) -> list[Any]:
        calls, op = inflight.calls, inflight.op
        with storage_errors(op, self.observer):
            replies = await self._read(inflight)
            # Calls refused with NOSCRIPT (after a Redis restart or SCRIPT FLUSH), MOVED or
            # ASK (a cluster slot changed owner or is migrating) or TRYAGAIN (a migrating
            # slot holds some of a call's keys on each side) did not run: only they are sent
            # again, so nothing is counted twice.
            for attempt in range(_REDIRECTS):
                again = [i for i, r in replies.items() if isinstance(r, _NOT_RUN)]
                if not again:
                    break
                asked = await self._prepare_retry(calls, replies, again, attempt)
                replies.update(await self._read(await self._send(calls, again, asked)))
            ordered = [replies[i] for i in range(len(calls))]
            for r in ordered:
                if isinstance(r, Exception):
                    raise r
            return ordered

    async def _prepare_retry(
        self, calls: list[Call], replies: dict[int, Any], again: list[int], attempt: int
    ) -> dict[int, AskError]:
        """What must change before calls refused unrun are sent again; the ASK redirects."""
        asked: dict[int, AskError] = {}
        scripts: dict[int, Script] = {}
        for i in again:
            reply = replies[i]
            if isinstance(reply, NoScriptError):
                scripts[id(calls[i][0])] = calls[i][0]
            elif isinstance(reply, MovedError):
                await self._router.moved(reply)
            elif isinstance(reply, AskError):
                asked[i] = reply
        for script in scripts.values():
            await script.load(self.client)
        if any(isinstance(replies[i], TryAgainError) for i in again):
            await asyncio.sleep(0.05 * (attempt + 1))
        return asked

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
        inflight: InFlight | None,
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
            for lane in inflight.lanes:
                await self._store._router.release(lane, broken=True)


PendingUpdate = Pending[Counted]


def open_store(
    settings: Settings,
    windows: Sequence[Window],
    counters: Sequence[str],
    n_bands: int,
    prefix: str | None = None,
    observer: StoreObserver | None = None,
) -> WindowStore:
    """The store the settings describe, counting the engine's `counters` over `windows`."""
    return WindowStore.from_url(
        settings.redis_url,
        timeout_s=settings.redis_timeout_s,
        redis_options=redis_options(settings),
        cluster=settings.redis_cluster,
        prefix=prefix or settings.redis_prefix,
        windows=windows,
        counters=counters,
        lateness_s=settings.allowed_lateness_s,
        content_window_s=settings.content_window_s,
        n_bands=n_bands,
        observer=observer,
    )
