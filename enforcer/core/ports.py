"""What the engine needs from the storage that counts its windows and holds decision state.

The engine is written against these Protocols and never imports a store: the Redis store
(enforcer.store) implements them, and a test may pass anything else that does. The calls are
split in two (send, then read the reply) so that a caller can work while storage counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from enforcer.core.counts import (
    CampaignBatch,
    Counted,
    DecideOutcome,
    StateProposal,
    SubjectBatch,
    Window,
)

T_co = TypeVar("T_co", covariant=True)


class StorageError(RuntimeError):
    """Storage failed or was unreachable. Raised once, where the error enters enforcer."""


class Reply(Protocol[T_co]):
    """Calls sent to storage whose replies are not read yet."""

    async def result(self) -> T_co:
        """Read the replies (once) and decode them."""
        ...

    async def abandon(self) -> None:
        """Give up on the replies; the caller failed meanwhile."""
        ...


class WindowStorage(Protocol):
    async def start_update(
        self,
        batches: Sequence[SubjectBatch],
        windows: Sequence[Window] | None = None,
        campaigns: Sequence[CampaignBatch] = (),
        columns: tuple[str, ...] | None = None,
        window_columns: Mapping[str, tuple[str, ...]] | None = None,
    ) -> Reply[Counted]:
        """Count every subject's events and every template's users; the reply holds each
        subject's window sums and each template's campaign size afterwards. One update's
        reply must be read before the next is sent (a subject is counted batch by batch)."""
        ...

    async def start_decide(
        self,
        proposals: Sequence[StateProposal],
        renew_before_s: float,
        delivered_by: str = "",
    ) -> Reply[list[DecideOutcome]]:
        """For each proposal, whether it is published and at which escalation step."""
        ...
