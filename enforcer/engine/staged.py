"""Batches through the pipeline with their stages overlapped, so Redis and this process work
at once.

While Redis counts batch N, this process prepares N+1 (parse, features, grouping: CPU only).
Once N's counts are back, N+1's update is sent at once; then N-1's decision state, sent before
N+1's update and so answered by now, is read and N-1 handed on; then N is judged and its
decision state sent. Decision state never reads the windows, so it may interleave with
updates; one batch's decision state is read before the next one's is sent, and one batch's
update before the next one's (a subject is counted batch by batch, in order).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from enforcer.core.counts import Counted
from enforcer.core.ports import Reply
from enforcer.engine.pipeline import BatchResult, Judged, Pipeline, Prepared


async def run_staged(
    pipeline: Pipeline,
    next_batch: Callable[[], Prepared | None],
    done: Callable[[BatchResult], Awaitable[None]],
) -> None:
    """Run every batch `next_batch` prepares until it returns None, handing each result to
    `done` in order. On failure, replies still in flight are abandoned."""
    pending: Reply[Counted] | None = None
    judged: Judged | None = None
    try:
        prepared = next_batch()
        pending = await pipeline.count(prepared) if prepared is not None else None
        while prepared is not None:
            upcoming = next_batch()
            counted = await pending.result() if pending is not None else None
            pending = await pipeline.count(upcoming) if upcoming is not None else None
            if judged is not None:
                await done(await pipeline.settle(judged))
            judged = await pipeline.judge(prepared, counted)
            prepared = upcoming
        if judged is not None:
            last, judged = judged, None
            await done(await pipeline.settle(last))
    finally:
        if pending is not None:
            await pending.abandon()
        if judged is not None and judged.outcomes is not None:
            await judged.outcomes.abandon()
