"""The worker's feature helper: a real spawned process, read and written by the event loop.
Its replies are the in-process featuring's, each answers its own batch even when a caller
gave up waiting, and a helper that dies is reported, never waited on."""

from __future__ import annotations

import asyncio
import os
import signal

import orjson
import pytest

from enforcer.core.events import InvalidEvent
from enforcer.engine.features.request import Sketches
from enforcer.engine.featuring import FeaturingProcess, HelperFailed
from enforcer.engine.featurize import Featured, featurize_rows, from_rows
from enforcer.tools.simulate import SimulationConfig, generate

MAX_BYTES = 65536


def _values(n: int, seed: int = 5) -> list[bytes]:
    events, _ = generate(SimulationConfig(duration_s=30, seed=seed))
    return [b"{not json", *(orjson.dumps(e) for e in events[:n])]


def _comparable(featured: list[Featured]) -> list[object]:
    # A rejected record is an exception, which compares by identity: compare what it says.
    return [(f.reason, f.detail) if isinstance(f, InvalidEvent) else f for f in featured]


def _inline(values: list[bytes]) -> list[object]:
    return _comparable(from_rows(featurize_rows(values, MAX_BYTES, Sketches.ALL)))


@pytest.fixture
def helper():
    process = FeaturingProcess(MAX_BYTES)
    yield process
    process.close()


async def test_the_helper_features_a_batch_as_the_worker_itself_would(helper) -> None:
    small = _values(5)
    large = _values(1500)  # several hundred kilobytes: more than one socket buffer each way
    assert _comparable(await helper.featurize(small, Sketches.ALL)) == _inline(small)
    assert _comparable(await helper.featurize(large, Sketches.ALL)) == _inline(large)


async def test_a_batch_whose_caller_was_cancelled_leaves_the_next_reply_to_its_own_batch(
    helper,
) -> None:
    first, second = _values(800, seed=5), _values(3, seed=6)
    abandoned = asyncio.create_task(helper.featurize(first, Sketches.ALL))
    await asyncio.sleep(0.001)  # sent, not yet answered
    abandoned.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    assert _comparable(await helper.featurize(second, Sketches.ALL)) == _inline(second)


async def test_a_helper_that_dies_is_reported_and_not_alive(helper) -> None:
    values = _values(3)
    await helper.featurize(values, Sketches.NONE)
    os.kill(helper._process.pid, signal.SIGKILL)
    helper._process.join(5)
    with pytest.raises(HelperFailed, match="ended"):
        await helper.featurize(values, Sketches.NONE)
    assert not helper.alive()
