"""The stateless half of a batch, parse and features, in a form another process can run.

Parsing and per-request features are pure and cost more CPU than anything else a batch does in
Python; everything after them (lateness, the repeat gate, grouping, Redis, policy) is stateful
and stays in the process that owns the pipeline. A replay runs this half in a helper process, a
batch or two ahead of the pipeline, so the two halves use both cores.

Rows cross the process boundary as plain tuples, events and features in two flat lists:
pickling a slotted dataclass costs several times more than the tuple of its fields, and the
pipeline's process turns the tuples back into named tuples with C-level calls only.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, cast

from enforcer.core.events import GatewayEvent, InvalidEvent, parse_event
from enforcer.engine.features.request import RequestFeatures, features_of

# Fields that never leave the helper process, because the pipeline reads none of them once the
# features exist: the texts, and what only a gateway or an analyst reads. Each string crossing
# is pickled, memoised and rebuilt; these were a third of a row's.
_DROPPED = ("prompt", "system", "user_agent", "ip", "country", "endpoint", "model")
_DROPPED_AT = tuple(GatewayEvent._fields.index(f) for f in _DROPPED)
# tuple.__new__ on a named tuple class builds it from a row without a Python-level call (the
# rows come from featurize_rows, so their lengths are right).
_event_of = partial(tuple.__new__, GatewayEvent)
_features_of = partial(tuple.__new__, RequestFeatures)


# One record after parse and features: its event and features, or why it is invalid.
Featured = tuple[GatewayEvent, RequestFeatures] | InvalidEvent


class FeaturedRows(NamedTuple):
    """A batch after parse and features, as plain data another process can unpickle cheaply."""

    events: list[tuple[Any, ...]]  # the valid records' events, as tuples, in order
    features: list[tuple[Any, ...]]  # their features, one per event
    invalid: list[tuple[int, str, str]]  # (position in the batch, reason, detail), in order


def featurize_rows(values: list[bytes], max_bytes: int, sketches: int) -> FeaturedRows:
    """Parse and featurize raw records into picklable rows (runs in the helper process)."""
    rows = FeaturedRows([], [], [])
    events, features, invalid = rows
    for position, raw in enumerate(values):
        try:
            event = parse_event(raw, max_bytes)
        except InvalidEvent as exc:
            invalid.append((position, exc.reason, exc.detail))
            continue
        features.append(tuple(features_of(event, sketches)))
        row = list(event)
        for at in _DROPPED_AT:
            row[at] = None
        events.append(tuple(row))
    return rows


def from_rows(rows: FeaturedRows) -> list[Featured]:
    """The rows of featurize_rows as events and features again, one per record (runs in the
    pipeline's process)."""
    out = cast(
        list[Featured],
        list(zip(map(_event_of, rows.events), map(_features_of, rows.features), strict=True)),
    )
    for position, reason, detail in rows.invalid:  # rare: the events around them shift up
        out.insert(position, InvalidEvent(reason, detail))
    return out
