"""Lifting a subject in Redis: its evidence cleared, its decision state marked lifted.

An operator's lift (or an allow-list reload) must not be undone by the next batch: the worker
still holds the windows that earned the decision, and would publish it again from them. Rather
than teach every rule about lifts, a lift removes what the rules read for that subject (its
windows, template counts and strike logs) in one Lua call, and leaves the enforce state an
`allow` stamped with the lift's time, which decide.lua honours by ignoring verdicts on older
evidence. Only behaviour after the lift can earn a decision again.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources

from redis.exceptions import RedisError

from enforcer.core.decisions import MODES, Subject
from enforcer.core.ports import StorageError
from enforcer.store import keys
from enforcer.store.client import AnyRedis

_LIFT = resources.files("enforcer.store.scripts").joinpath("lift.lua").read_text()
# Template counts are kept per content epoch; a lift clears the epochs around it, wider than
# the two a content window reads, so a late batch's epoch is covered too.
_EPOCHS_AROUND = (-2, -1, 0, 1)


def evidence_keys(
    prefix: str, subject: Subject, rules: Iterable[str], content_window_s: int, now: float
) -> list[str]:
    """Every key whose contents could earn `subject` a decision, near time `now`."""
    epoch = int(now // content_window_s)
    found = [keys.window_key(prefix, subject)]
    for offset in _EPOCHS_AROUND:
        found.append(keys.template_key(prefix, subject, epoch + offset))
        found.append(keys.template_hll_key(prefix, subject, epoch + offset))
    for rule in sorted(set(rules)):
        found.extend(keys.strikes_key(prefix, subject, mode, rule) for mode in MODES)
    return found


async def lift_subject(
    client: AnyRedis,
    prefix: str,
    subject: Subject,
    rules: Iterable[str],
    *,
    content_window_s: int,
    lifted_at: float,
    grace_until: float | None,
) -> int:
    """Clear the subject's evidence and mark its state lifted; returns the evidence keys removed.

    `rules` are the rule names whose strike logs to clear: the policy's, to which the rule of
    the decision recorded in state is added here."""
    state = keys.state_key(prefix, subject, "enforce")
    try:
        recorded = await client.hget(state, "rule")
        names = set(rules)
        if recorded:
            names.add(recorded.decode() if isinstance(recorded, bytes) else str(recorded))
        evidence = evidence_keys(prefix, subject, names, content_window_s, lifted_at)
        ttl = 86400 if grace_until is None else max(60, int(grace_until - lifted_at) + 3600)
        removed = await client.eval(
            _LIFT,
            2 + len(evidence),
            state,
            keys.state_key(prefix, subject, "shadow"),
            *evidence,
            repr(lifted_at),
            "" if grace_until is None else repr(grace_until),
            ttl,
        )
    except (RedisError, OSError) as exc:
        raise StorageError(f"redis unavailable: {exc}") from exc
    return int(removed)
