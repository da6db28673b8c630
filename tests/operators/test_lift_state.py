"""A lift forgets a subject's evidence in Redis: the worker's pipeline, on real Redis, issues
the decision again only for behaviour after the lift."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.engine.pipeline import Pipeline, PolicyHolder
from enforcer.engine.policy import parse_policy
from enforcer.store.lift import lift_subject
from tests.test_pipeline import POLICY, T0, burst, records

from ..stores import make_store

KEY = Subject("api_key", "k-lifted")


@pytest.fixture
async def pipeline(isolated: Settings) -> AsyncIterator[Pipeline]:
    policy = parse_policy(POLICY)
    p = Pipeline(
        make_store(isolated, policy), PolicyHolder(policy), isolated, clock=lambda: T0 + 3600
    )
    yield p
    await p.store.close()


async def lift(pipeline: Pipeline, at: float) -> int:
    policy = pipeline.policy.current
    return await lift_subject(
        pipeline.store.client,
        pipeline.store.prefix,
        KEY,
        [r.name for r in policy.rules],
        content_window_s=pipeline.settings.content_window_s,
        lifted_at=at,
        grace_until=at + 3600,
    )


def key_decisions(result) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(d.action, d.rule) for d in result.decisions if d.subject == KEY]


async def test_a_lifted_key_is_decided_again_only_once_new_behaviour_crosses_a_rule(
    pipeline: Pipeline,
) -> None:
    first = await pipeline.process(records(burst(KEY.value, 60, T0, 0.1)))
    assert key_decisions(first) == [("throttle", "key-burst")]

    assert await lift(pipeline, T0 + 10) > 0  # the windows and the strike log were there

    # A few requests after the lift: with the old 60 still counted the burst rule would fire
    # again, and decision state, now an allow, would publish it.
    quiet = await pipeline.process(records(burst(KEY.value, 5, T0 + 11, 0.1)))
    assert key_decisions(quiet) == []

    again = await pipeline.process(records(burst(KEY.value, 60, T0 + 12, 0.1)))
    assert key_decisions(again) == [("throttle", "key-burst")]


async def test_evidence_from_before_a_lift_earns_no_decision(pipeline: Pipeline) -> None:
    await pipeline.process(records(burst(KEY.value, 60, T0, 0.1)))
    await lift(pipeline, T0 + 30)
    # Late events from before the lift, enough to cross the rule on their own.
    late = await pipeline.process(records(burst(KEY.value, 60, T0 + 20, 0.1)))
    assert late.events == 60
    assert key_decisions(late) == []


LADDER = """
name: ladder
version: "1"
windows: [10s, 1m, 10m]
burst: {short: 10s, baseline: 10m, floor_rps: 0.5}
rules:
  - name: key-burst
    subject: api_key
    when: ["rps[10s] > 4"]
    action: throttle
    limit_rps: 1
    for: 20s
    escalate:
      - {after: 1, action: block, for: 1h}
"""


@pytest.mark.parametrize("lifted", [False, True])
async def test_a_lift_resets_the_escalation_ladder(isolated: Settings, lifted: bool) -> None:
    policy = parse_policy(LADDER)
    pipeline = Pipeline(
        make_store(isolated, policy), PolicyHolder(policy), isolated, clock=lambda: T0 + 3600
    )
    try:
        first = await pipeline.process(records(burst(KEY.value, 60, T0, 0.1)))
        assert key_decisions(first) == [("throttle", "key-burst")]
        if lifted:
            await lift(pipeline, T0 + 30)
        # The throttle has lapsed; the same burst again is a second strike unless lifted.
        again = await pipeline.process(records(burst(KEY.value, 60, T0 + 31, 0.1)))
        assert [a for a, _ in key_decisions(again)] == ["throttle" if lifted else "block"]
    finally:
        await pipeline.store.close()
