"""How a window update is encoded for update_windows.lua and campaign.lua, and how their
replies are decoded: the binary layouts both sides read, kept in one place."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from hashlib import blake2b
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

import orjson

from enforcer.core.counts import (
    GAP_COUNTERS,
    CampaignBatch,
    CampaignStats,
    SubjectBatch,
    SumsLayout,
    TemplateShares,
    Window,
    WindowStats,
)
from enforcer.core.decisions import Subject
from enforcer.core.ports import StorageError
from enforcer.store import keys
from enforcer.store.client import Script

# A subject's events go to the window script in event-time order (C-level key: per event).
_by_ts = attrgetter("ts")


_SUBJECT_KEYS_CACHED = 200_000
# Shapes of reply row remembered: one per set of columns, windows kept and template tracking,
# a handful per policy.
_SHAPES_KEPT = 64

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


# Against one Redis, a window update's subjects go in calls of at most this many, whatever their
# slot groups. A call costs Redis a fixed part (the script's header, its tables, its reply)
# beside its subjects: one call per slot group made a live batch of 60 events about 80 calls,
# while a call of thousands of subjects would hold Redis, and the gateway's checks behind it, for
# tens of milliseconds. A Redis Cluster refuses a call whose keys span slots: one per group.
SUBJECTS_PER_CALL = 256


class _Group(NamedTuple):
    """One script call's share of a window update."""

    keys: list[str]
    payload: list[bytes]
    texts: list[list[list[str]]]  # template rows of the subjects that track templates
    members: list[int]  # indexes of its subjects in the batch
    # (slot group, lateness epoch) -> its dedupe set's index in this call, packed
    sets: dict[tuple[str, int], bytes]


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


# The reply of update_windows.lua, per subject, described once: decode() reads it by these,
# and the script gets the numbers as constants (see Script), checking its own against them.
REPLY_HEAD = ("accepted", "duplicates", "too_late", "watermark")  # then the window sums
TEMPLATE_SHARES = TemplateShares._fields  # last, for subjects that track templates
# KEYS per subject that tracks templates, after its window state: this and the previous
# content epoch's template hash and fingerprint HyperLogLog.
TEMPLATE_KEYS = 4
UPDATE_CONSTANTS = {
    "REPLY_HEAD": len(REPLY_HEAD),
    "TEMPLATE_SHARES": len(TEMPLATE_SHARES),
    "TEMPLATE_KEYS": TEMPLATE_KEYS,
}


class UpdateCodec:
    """A window update as script calls, and their replies as window stats."""

    def __init__(
        self,
        prefix: str,
        windows: tuple[Window, ...],
        counters: tuple[str, ...],
        lateness_s: float,
        content_window_s: int,
        n_bands: int,
        template_field_cap: int,
        update: Script,
        campaign: Script,
        subjects_per_call: int | None = SUBJECTS_PER_CALL,
    ) -> None:
        self.prefix = prefix
        # None: one call per slot group (a Redis Cluster); else calls packed up to this many.
        self.subjects_per_call = subjects_per_call
        self.windows = windows
        self.counters = counters
        self.lateness_s = lateness_s
        self.content_window_s = content_window_s
        self.n_bands = n_bands
        self.template_field_cap = template_field_cap
        self._update = update
        self._campaign = campaign
        # Every column a bucket can hold: the per-request counters, then the gap counters the
        # script computes; a call keeps some of them (see _layout).
        self.all_columns = (*counters, *GAP_COUNTERS)
        self._layouts: dict[tuple[str, ...] | None, _ColumnLayout] = {}
        # Subject -> (slot group, window key, digest): subjects recur batch after batch.
        self._subject_keys: dict[Subject, tuple[str, str, bytes]] = {}
        # (fingerprint, epoch) -> its slot group and six campaign keys: a busy template recurs
        # in every batch of its epoch (about 35 templates per 60-event live batch).
        self._campaign_keys: dict[tuple[str, int], tuple[str, list[str]]] = {}
        # Per shape of reply row: its sums' layout, length, where its sums end, and unpacker.
        # Kept across batches, so that what is worked out per layout (a screen's compiled
        # checks, a layout's columns) is worked out once, not once per batch.
        self._shapes: dict[
            tuple[tuple[str, ...], tuple[str, ...], bool], tuple[SumsLayout, int, int, Any]
        ] = {}

    def _header(
        self,
        windows: tuple[Window, ...],
        layout: _ColumnLayout,
        window_columns: Mapping[str, tuple[str, ...]] | None,
    ) -> bytes:
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
                [self._window_mask(layout, window_columns, w.name) for w in windows],
            ]
        )

    def _window_mask(
        self,
        layout: _ColumnLayout,
        window_columns: Mapping[str, tuple[str, ...]] | None,
        window: str,
    ) -> int:
        """The columns one window's buckets keep: those `window_columns` names for it (all of
        the call's when it names none), within the call's, with "req" always and the cadence
        counters together. A window no rule reads a counter in does not store it: every bucket
        of every active subject would carry it."""
        wanted = window_columns.get(window) if window_columns is not None else None
        if wanted is None:
            return layout.mask
        return self._layout(wanted).mask & layout.mask

    def _layout(self, columns: tuple[str, ...] | None) -> _ColumnLayout:
        """Which columns a call keeps: `columns` (None: all), with "req" always and the three
        cadence counters together or not at all."""
        layout = self._layouts.get(columns)
        if layout is None:
            wanted = set(self.all_columns if columns is None else columns) | {"req"}
            if wanted & set(GAP_COUNTERS):
                wanted |= set(GAP_COUNTERS)
            kept = tuple(c for c in self.all_columns if c in wanted)
            unknown = sorted(set(columns or ()) - set(self.all_columns))
            if unknown:
                raise ValueError(f"the store keeps no counter named {', '.join(unknown)}")
            picks = tuple(i for i, c in enumerate(self.counters) if c in wanted)
            layout = self._layouts[columns] = _ColumnLayout(
                kept,
                tuple(self.counters[i] for i in picks),
                GAP_COUNTERS[0] in wanted,
                sum(1 << i for i, c in enumerate(self.all_columns) if c in wanted),
                struct.Struct("<8sd" + "d" * len(picks)),
                _picker(picks, len(self.counters)),
            )
        return layout

    def _epoch(self, ts: float) -> int:
        return int(ts // self.content_window_s)

    def encode(
        self,
        batches: Sequence[SubjectBatch],
        windows: Sequence[Window] | None,
        campaigns: Sequence[CampaignBatch],
        columns: tuple[str, ...] | None = None,
        window_columns: Mapping[str, tuple[str, ...]] | None = None,
    ) -> _UpdateRequest:
        layout = self._layout(columns)
        if not batches and not campaigns:
            return _UpdateRequest([], batches, (), [], campaigns, [], layout.columns)
        windows = tuple(windows) if windows is not None else self.windows
        header = self._header(windows, layout, window_columns)
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
        per_call = self.subjects_per_call
        groups: dict[str | int, _Group] = {}
        named_all = [subject_keys.get(b.subject) or self._name(b.subject) for b in batches]
        # Packed calls take their subjects in slot-group order: a call asks and adds to one
        # dedupe set per slot group and lateness epoch it holds, so 256 subjects of a few
        # groups cost a few set calls where 256 in batch order touched most of the 128.
        order: Sequence[int] = range(len(batches))
        if per_call is not None and len(batches) > per_call:
            order = sorted(order, key=lambda i: named_all[i][0])
        # Run per subject: what the loop reads is bound to locals first.
        pack_head, content_window_s = _SUBJECT_HEAD.pack, self.content_window_s
        for placed, index in enumerate(order):
            batch = batches[index]
            subject, events = batch.subject, batch.events
            slot_group, window_key, subject_digest = named_all[index]
            call: str | int = slot_group if per_call is None else placed // per_call
            entry = groups.get(call)
            if entry is None:
                entry = groups[call] = _Group([], [], [], [], {})
            entry.members.append(index)
            entry.keys.append(window_key)
            # In event-time order, so inter-arrival gaps are measured between neighbours.
            events = events if len(events) < 2 else sorted(events, key=_by_ts)
            epoch = int((events[-1].ts if events else 0.0) // content_window_s)
            if batch.templates:
                entry.keys.extend(keys.template_keys(self.prefix, slot_group, subject, epoch))
            if batch.windows is None:
                mask = every_mask
            else:
                mask = masks.get(batch.windows, -1)
                if mask < 0:
                    mask = masks[batch.windows] = sum(1 << position[n] for n in batch.windows)
            parts = entry.payload
            parts.append(
                pack_head(
                    subject_digest,
                    mask,
                    1 if batch.templates else 0,
                    len(events),
                    epoch * content_window_s,
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
                set_index = sets.get((slot_group, seen_epoch))
                if set_index is None:
                    set_index = sets[slot_group, seen_epoch] = _SET_INDEX.pack(len(sets) + 1)
                parts.append(set_index + data)
            if batch.templates:
                entry.texts.append([[ev.fingerprint, *ev.bands] for ev in events])
        calls: list[tuple[Script, list[str], list[Any]]] = [
            (
                self._update,
                group.keys + [keys.dedupe_set_key(self.prefix, g, e) for g, e in group.sets],
                [header, b"".join(group.payload), len(group.sets)]
                + ([orjson.dumps(group.texts)] if group.texts else []),
            )
            for group in groups.values()
        ]
        campaign_calls, campaign_members = self._encode_campaigns(campaigns)
        calls += campaign_calls
        return _UpdateRequest(
            calls,
            batches,
            windows,
            list(groups.values()),
            campaigns,
            campaign_members,
            layout.columns,
        )

    def _name(self, subject: Subject) -> tuple[str, str, bytes]:
        """A subject's slot group, window key and digest, remembered: subjects recur."""
        if len(self._subject_keys) >= _SUBJECT_KEYS_CACHED:
            self._subject_keys.clear()
        group = keys.slot_group(subject)
        named = self._subject_keys[subject] = (
            group,
            keys.window_key(self.prefix, subject, group),
            _digest(subject.key),
        )
        return named

    def _campaign_named(self, fingerprint: str, ts: float) -> tuple[str, list[str]]:
        """A template's slot group and the campaign keys of its epoch and the one before
        (see campaign.lua), remembered."""
        epoch = self._epoch(ts)
        named = self._campaign_keys.get((fingerprint, epoch))
        if named is None:
            if len(self._campaign_keys) >= _SUBJECT_KEYS_CACHED:
                self._campaign_keys.clear()
            template = Subject("template", fingerprint)
            named = self._campaign_keys[fingerprint, epoch] = (
                keys.slot_group(template),
                [
                    keys.campaign_key(self.prefix, template, part, e)
                    for part in ("keys", "networks", "accounts")
                    for e in (epoch, epoch - 1)
                ],
            )
        return named

    def _encode_campaigns(
        self, campaigns: Sequence[CampaignBatch]
    ) -> tuple[list[tuple[Script, list[str], list[Any]]], list[list[int]]]:
        """campaign.lua calls, grouped as the window update's are, and per call the indexes of
        its campaigns."""
        per_call = self.subjects_per_call
        campaign_groups: dict[str | int, tuple[list[str], list[Any], list[int]]] = {}
        for index, campaign in enumerate(campaigns):
            slot_group, campaign_keys = self._campaign_named(campaign.fingerprint, campaign.ts)
            key_list, args, members = campaign_groups.setdefault(
                slot_group if per_call is None else index // per_call,
                ([], [self.content_window_s], []),
            )
            key_list += campaign_keys
            # Each distinct member once: a busy template repeats the same key all batch long.
            api_keys = list(dict.fromkeys(use.api_key for use in campaign.uses if use.api_key))
            networks = list(dict.fromkeys(use.network for use in campaign.uses))
            accounts = list(dict.fromkeys(use.account for use in campaign.uses if use.account))
            args += [len(api_keys), len(networks), len(accounts), *api_keys, *networks, *accounts]
            members.append(index)
        return (
            [(self._campaign, key_list, args) for key_list, args, _ in campaign_groups.values()],
            [members for _, _, members in campaign_groups.values()],
        )

    def _shape(
        self, names: tuple[str, ...], kept: tuple[str, ...], templates: bool
    ) -> tuple[SumsLayout, int, int, Any]:
        """A reply row's sums layout, length, where its sums end, and unpacker, remembered."""
        shape = self._shapes.get((names, kept, templates))
        if shape is None:
            if len(self._shapes) >= _SHAPES_KEPT:
                self._shapes.clear()
            sums_end = len(REPLY_HEAD) + len(kept) * len(names)
            count = sums_end + (len(TEMPLATE_SHARES) if templates else 0)
            shape = self._shapes[names, kept, templates] = (
                SumsLayout(names, kept, len(REPLY_HEAD)),
                count,
                sums_end,
                _doubles(count).unpack_from,
            )
        return shape

    def decode(
        self, request: _UpdateRequest, replies: list[Any]
    ) -> tuple[list[WindowStats], list[CampaignStats]]:
        batches, windows, campaigns = request.batches, request.windows, request.campaigns
        groups = request.groups
        names = request.columns
        all_names = tuple(w.name for w in windows)
        # Run per subject: WindowStats is built with tuple.__new__, skipping the NamedTuple's
        # Python-level __new__.
        shapes: dict[tuple[tuple[str, ...], bool], tuple[SumsLayout, int, int, Any]] = {}
        new = tuple.__new__
        stats: list[WindowStats | None] = [None] * len(batches)
        for part, reply in zip(groups, replies, strict=False):
            at = 0
            for index in part.members:
                batch = batches[index]
                kept = all_names if batch.windows is None else batch.windows
                templates = batch.templates
                shape = shapes.get((kept, templates))
                if shape is None:
                    shape = shapes[kept, templates] = self._shape(names, kept, templates)
                layout, count, sums_end, unpack_row = shape
                row = unpack_row(reply, at)
                at += count * 8
                watermark = row[3]
                stats[index] = new(
                    WindowStats,
                    (
                        batch.subject,
                        watermark if watermark >= 0 else None,
                        int(row[0]),
                        int(row[1]),
                        int(row[2]),
                        row,
                        layout,
                        TemplateShares(*row[sums_end:count]) if templates else None,
                    ),
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
