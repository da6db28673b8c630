"""Arrival processes: when each kind of client sends its requests."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from enforcer.tools.simulate.actors import _World
from enforcer.tools.simulate.networks import _UTC_OFFSET_H

# --- arrival processes ------------------------------------------------------------------


def _diurnal(ts: float, country: str) -> float:
    """Relative activity by local hour: low at night, highest in the evening."""
    hour = ((ts / 3600.0) + _UTC_OFFSET_H.get(country, 0)) % 24.0
    if hour < 7.0:
        return 0.15
    return 0.15 + 0.85 * math.sin(math.pi * (hour - 7.0) / 17.0) ** 2


def _human_times(rng: random.Random, world: _World, country: str, power: bool) -> Iterator[float]:
    """Sessions of a few requests with heavy-tailed think time, long gaps between."""
    start, end = world.config.start_ts, world.end_ts
    per_session = 14.0 if power else 7.0
    think_median = 18.0 if power else 30.0
    between_mean = 360.0 if power else 540.0
    # Start mid-session with the stationary probability of being in one.
    session_len = per_session * think_median * 1.4
    if rng.random() < session_len / (session_len + between_mean):
        t = start + rng.uniform(0.0, 2.0 * think_median)
    else:
        t = start + rng.expovariate(_diurnal(start, country) / between_mean)
    while t < end:
        for _ in range(1 + int(rng.expovariate(1.0 / per_session))):
            if t >= end:
                return
            yield t
            t += max(2.0, rng.lognormvariate(math.log(think_median), 0.9))
        t += rng.expovariate(_diurnal(t, country) / between_mean)


def _poisson_times(rng: random.Random, start: float, end: float, rate: float) -> Iterator[float]:
    t = start + rng.expovariate(rate)
    while t < end:
        yield t
        t += rng.expovariate(rate)


def _regular_times(
    rng: random.Random, start: float, end: float, rate: float, jitter: float
) -> Iterator[float]:
    """Machine pacing: a fixed period with small relative jitter (low CV)."""
    period = 1.0 / rate
    t = start + rng.uniform(0.0, period)
    while t < end:
        yield t
        t += period * max(0.05, 1.0 + rng.gauss(0.0, jitter))


def _burst_times(rng: random.Random, start: float, end: float, rate: float) -> Iterator[float]:
    """Benchmark runs: hundreds of requests back to back, then idle minutes."""
    t = start + rng.expovariate(1.0 / 200.0)
    while t < end:
        for _ in range(rng.randrange(300, 1500)):
            if t >= end:
                return
            yield t
            t += rng.expovariate(rate)
        t += rng.expovariate(1.0 / 300.0)
