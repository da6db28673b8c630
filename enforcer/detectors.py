"""Detectors turn one subject's window sums into named signals the policy can test.

Each signal is registered with the detector that computes it, whether it is read over a window
(`rps[1m]`) or not (`burst`), and whether tier overrides scale its thresholds. The policy
checker accepts exactly the names registered here, so a misspelt signal is a load-time error.
"""

from __future__ import annotations

from dataclasses import dataclass

from enforcer.windows.store import Window, WindowStats


@dataclass(frozen=True, slots=True)
class SignalSpec:
    detector: str
    windowed: bool
    volume: bool  # a volume signal's thresholds scale with the subject's tier
    doc: str


SIGNALS: dict[str, SignalSpec] = {
    "requests": SignalSpec("volume", True, True, "requests in the window"),
    "rps": SignalSpec("volume", True, True, "requests per second over the window"),
    "tokens": SignalSpec("volume", True, True, "input + output + reasoning tokens in the window"),
    "tokens_per_s": SignalSpec("volume", True, True, "tokens per second over the window"),
    "output_tokens": SignalSpec("volume", True, True, "visible output tokens in the window"),
    "reasoning_tokens": SignalSpec("volume", True, True, "reasoning tokens in the window"),
    "burst": SignalSpec(
        "burst",
        False,
        False,
        "request rate over the short burst window divided by the subject's own rate over the "
        "baseline window (the baseline rate is floored so a brand-new subject is not a burst)",
    ),
}


@dataclass(frozen=True, slots=True)
class BurstConfig:
    short: str
    baseline: str
    floor_rps: float


def signals_of(
    stats: WindowStats, windows: tuple[Window, ...], burst: BurstConfig
) -> dict[str, float]:
    """Signals keyed `name[window]` for windowed signals and `name` for the others."""
    out: dict[str, float] = {}
    for w in windows:
        sums = stats.sums[w.name]
        req = sums.get("req", 0)
        tokens = sums.get("in", 0) + sums.get("out", 0) + sums.get("rsn", 0)
        out[f"requests[{w.name}]"] = req
        out[f"rps[{w.name}]"] = req / w.seconds
        out[f"tokens[{w.name}]"] = tokens
        out[f"tokens_per_s[{w.name}]"] = tokens / w.seconds
        out[f"output_tokens[{w.name}]"] = sums.get("out", 0)
        out[f"reasoning_tokens[{w.name}]"] = sums.get("rsn", 0)
    short = out[f"rps[{burst.short}]"]
    baseline = out[f"rps[{burst.baseline}]"]
    out["burst"] = short / max(baseline, burst.floor_rps)
    return out
