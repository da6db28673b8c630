"""Allow-list reloads lift what the new list protects.

The allow list stops the worker acting on a subject, but a decision it published before the
edit stays in force at every gateway until it expires. When a reload changes the allow list,
the worker reads the decisions in force from the decisions topic and lifts each one the new
list covers, as `enforcer decisions lift` would: evidence cleared, an `allow` with who and why
published. Every worker that applies the reload does so; the records are alike and a gateway
applies an allow as often as it comes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from enforcer.core import decision_log
from enforcer.core.decisions import Subject
from enforcer.core.settings import Settings
from enforcer.engine.policy.evaluate import is_allowed
from enforcer.engine.policy.model import Policy
from enforcer.store.lift import lift_subject
from enforcer.store.windows import WindowStore

log = logging.getLogger("enforcer.policy")
RELOAD_LIFTER = "policy reload"


async def lift_allow_listed(
    settings: Settings, store: WindowStore, old: Policy, new: Policy
) -> list[Subject]:
    """Lift the decisions in force on subjects `new` allow-lists; returns them. Nothing is
    read when the allow list did not change."""
    if new.allow == old.allow:
        return []
    records = await decision_log.read_log(settings.kafka_bootstrap, settings.decisions_topic)
    now = time.time()
    subjects = [
        r.decision.subject
        for r in decision_log.latest(records).values()
        if r.decision is not None
        and decision_log.in_force(r.decision, now)
        and is_allowed(new, r.decision.subject)
    ]
    if not subjects:
        return []
    rules = [rule.name for rule in new.rules]
    for subject in subjects:
        await lift_subject(
            store.client,
            store.prefix,
            subject,
            rules,
            content_window_s=settings.content_window_s,
            lifted_at=now,
            grace_until=None,
        )
    reason = f"allow-listed by policy {new.version_tag}"
    await decision_log.publish(
        settings.kafka_bootstrap,
        settings.decisions_topic,
        [decision_log.lift_decision(s, RELOAD_LIFTER, reason, now, None) for s in subjects],
    )
    log.info(
        "lifted %d allow-listed subject(s): %s",
        len(subjects),
        ", ".join(s.key for s in subjects[:20]),
        extra={"policy_version": new.version_tag, "lifted": [s.key for s in subjects]},
    )
    return subjects


class AllowListLifter:
    """Runs one lift at a time in the background, so the reload timer never waits on Kafka."""

    def __init__(self, settings: Settings, store: WindowStore) -> None:
        self.settings = settings
        self.store = store
        self._tasks: set[asyncio.Task[None]] = set()

    def reloaded(self, old: Policy, new: Policy) -> None:
        if new.allow == old.allow:
            return
        task = asyncio.create_task(self._run(old, new), name="allow-list-lift")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, old: Policy, new: Policy) -> None:
        try:
            await lift_allow_listed(self.settings, self.store, old, new)
        except Exception as exc:  # Kafka or Redis away: the edit stands, the lift is logged
            log.error(
                "allow-list lift after reload failed: %r; lift by hand with "
                "`enforcer decisions lift`",
                exc,
                extra={"policy_version": new.version_tag},
            )

    async def wait(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
