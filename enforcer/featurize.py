"""The stateless half of a batch, parse and features, in a form another process can run.

Parsing and per-request features are pure and cost more CPU than anything else a batch does in
Python; everything after them (lateness, the repeat gate, grouping, Redis, policy) is stateful
and stays in the process that owns the pipeline. A replay runs this half in a helper process, a
batch or two ahead of the pipeline, so the two halves use both cores.

Rows cross the process boundary as plain tuples: pickling a slotted dataclass costs several
times more than the tuple of its fields.
"""

from __future__ import annotations

from typing import Any

from enforcer.events import GatewayEvent, InvalidEvent, parse_event
from enforcer.features.request import RequestFeatures, features_of

# Fields that never leave the helper process, because the pipeline reads none of them once the
# features exist: the texts, and what only a gateway or an analyst reads. Each string crossing
# is pickled, memoised and rebuilt; these were a third of a row's.
_DROPPED = ("prompt", "system", "user_agent", "ip", "country", "endpoint", "model")
_DROPPED_AT = tuple(GatewayEvent._fields.index(f) for f in _DROPPED)
_event_of = GatewayEvent._make
_features_of = RequestFeatures._make


# One record after parse and features: its event and features, or why it is invalid.
Featured = tuple[GatewayEvent, RequestFeatures] | InvalidEvent


def featurize_rows(values: list[bytes], max_bytes: int, bands: bool) -> list[tuple[Any, ...]]:
    """Parse and featurize raw records into picklable rows (runs in the helper process)."""
    rows: list[tuple[Any, ...]] = []
    for raw in values:
        try:
            event = parse_event(raw, max_bytes)
        except InvalidEvent as exc:
            rows.append((exc.reason, exc.detail))
            continue
        features = features_of(event, bands)
        row = list(event)
        for at in _DROPPED_AT:
            row[at] = None
        rows.append((tuple(row), tuple(features)))
    return rows


def from_rows(rows: list[tuple[Any, ...]]) -> list[Featured]:
    """The rows of featurize_rows as events and features again (runs in the pipeline's process)."""
    out: list[Featured] = []
    for first, second in rows:
        if isinstance(first, str):
            out.append(InvalidEvent(first, second))
        else:
            out.append((_event_of(first), _features_of(second)))
    return out
