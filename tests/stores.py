"""The window store the engine's pipeline counts into, as the worker and the backtest open it."""

from __future__ import annotations

from enforcer.core.settings import Settings
from enforcer.engine.features.request import COUNTERS, N_BANDS
from enforcer.engine.policy.model import Policy
from enforcer.store.windows import WindowStore, open_store


def make_store(settings: Settings, policy: Policy, prefix: str | None = None) -> WindowStore:
    return open_store(settings, policy.windows, COUNTERS, N_BANDS, prefix)
