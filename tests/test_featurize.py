"""Rows that cross from the backtest's helper process come back as the same events and
features, each at its record's position."""

from __future__ import annotations

import pickle

import orjson

from enforcer.core.events import GatewayEvent, InvalidEvent, parse_event
from enforcer.engine.features.request import RequestFeatures, Sketches, features_of
from enforcer.engine.featurize import featurize_rows, from_rows
from enforcer.tools.simulate import SimulationConfig, generate


def test_rows_round_trip_to_the_inline_parse_with_bad_records_in_place() -> None:
    events, _ = generate(SimulationConfig(duration_s=30, seed=3))
    good = [orjson.dumps(e) for e in events[:50]]
    values = [b"{not json", *good[:20], b"[]", *good[20:], b'{"event_id": 1}']

    featured = from_rows(pickle.loads(pickle.dumps(featurize_rows(values, 65536, Sketches.NONE))))

    assert len(featured) == len(values)
    for raw, item in zip(values, featured, strict=True):
        try:
            event = parse_event(raw, 65536)
        except InvalidEvent as exc:
            assert isinstance(item, InvalidEvent)
            assert (item.reason, item.detail) == (exc.reason, exc.detail)
            continue
        assert not isinstance(item, InvalidEvent)
        got_event, got_features = item
        assert type(got_event) is GatewayEvent and type(got_features) is RequestFeatures
        assert got_features == features_of(event, Sketches.NONE)
        # The texts and what only a gateway reads stay in the helper; the rest crosses.
        kept = ("event_id", "ts", "api_key", "network", "account_id", "asn", "tier")
        assert [getattr(got_event, f) for f in kept] == [getattr(event, f) for f in kept]
        assert got_event.prompt is None and got_event.ip is None
