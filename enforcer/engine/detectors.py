"""Detectors turn one subject's window sums into named signals the policy can test.

Each signal is registered with the detector that computes it, whether it is read over a window
(`rps[1m]`) or not (`burst`), and whether tier overrides scale its thresholds. The policy
checker accepts exactly the names registered here, so a misspelt signal is a load-time error.
Signals a subject cannot have (template shares of a network, say) are simply absent, and a
condition on an absent signal does not match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from enforcer.core.counts import GAP_COUNTERS, CampaignStats, Window, WindowStats
from enforcer.engine.features.rewording import SKETCH_PREFIX

# Fewer gaps than this say nothing about a subject's rhythm.
MIN_GAPS_FOR_GAP_COUNTERS = 4


TOKENS = ("in", "out", "rsn")


@dataclass(frozen=True, slots=True)
class SignalSpec:
    detector: str
    windowed: bool
    volume: bool  # a volume signal's thresholds scale with the subject's tier
    doc: str
    # The window counters it reads (enforcer.engine.features.request.COUNTERS, plus the cadence
    # counters GAP_COUNTERS): a policy's tracking plan keeps only the counters its rules read.
    counters: tuple[str, ...] = ()


SIGNALS: dict[str, SignalSpec] = {
    "requests": SignalSpec("volume", True, True, "requests in the window", ("req",)),
    "rps": SignalSpec("volume", True, True, "requests per second over the window", ("req",)),
    "tokens": SignalSpec(
        "volume", True, True, "input + output + reasoning tokens in the window", TOKENS
    ),
    "tokens_per_s": SignalSpec("volume", True, True, "tokens per second over the window", TOKENS),
    "output_tokens": SignalSpec(
        "volume", True, True, "visible output tokens in the window", ("out",)
    ),
    "reasoning_tokens": SignalSpec(
        "volume", True, True, "reasoning tokens in the window", ("rsn",)
    ),
    "burst": SignalSpec(
        "burst",
        False,
        False,
        "request rate over the short burst window divided by the subject's own rate over the "
        "baseline window (the baseline rate is floored so a brand-new subject is not a burst)",
        ("req",),
    ),
    "elicitation_share": SignalSpec(
        "elicitation",
        True,
        False,
        "share of requests that push for exposed step-by-step reasoning",
        ("req", "elic"),
    ),
    "harvest_share": SignalSpec(
        "harvest",
        True,
        False,
        "share of requests that ask for training data or instruction pairs",
        ("req", "harv"),
    ),
    "reasoning_share": SignalSpec(
        "elicitation",
        True,
        False,
        "reasoning tokens / (reasoning + visible output tokens)",
        ("out", "rsn"),
    ),
    "reasoning_per_request": SignalSpec(
        "economics",
        True,
        False,
        "reasoning tokens per request: what a key spends on reasoning, thousands for extraction, "
        "tens for a benchmark's one-letter answers",
        ("req", "rsn"),
    ),
    "thinking_share": SignalSpec(
        "economics",
        True,
        False,
        "share of requests that ask for reasoning through the API (a thinking budget of "
        "at least 1,024 tokens), with or without a word of the prompt saying so",
        ("req", "think"),
    ),
    "followup_share": SignalSpec(
        "usage",
        True,
        False,
        "share of requests that continue a conversation (input tokens beyond the newest "
        "message's own text): people and agents follow up, extraction asks one-shot",
        ("req", "fup"),
    ),
    "network_hop_share": SignalSpec(
        "infrastructure",
        True,
        False,
        "share of requests that left from another network (/24, /48) than the key's previous "
        "request: near 1 behind a rotating proxy pool",
        ("req", "hop"),
    ),
    "cadence_regularity": SignalSpec(
        "cadence",
        True,
        False,
        "1 - coefficient of variation of inter-arrival gaps "
        "(1 = machine-regular, about 0 = human); "
        f"0 until {MIN_GAPS_FOR_GAP_COUNTERS} gaps are seen",
        GAP_COUNTERS,
    ),
    "template_share": SignalSpec(
        "template",
        False,
        False,
        "share of the subject's requests under its most used exact template",
    ),
    "near_duplicate_share": SignalSpec(
        "template",
        False,
        False,
        "share under its most used near-duplicate band (survives synonym swaps)",
    ),
    "distinct_template_ratio": SignalSpec(
        "template", False, False, "distinct templates per request (low = one skeleton, many fills)"
    ),
    "campaign_keys": SignalSpec(
        "campaign",
        False,
        False,
        "most api keys sharing one of the templates this subject just used",
    ),
    "campaign_networks": SignalSpec(
        "campaign", False, False, "most networks (/24, /48) sharing one of those templates"
    ),
    "campaign_accounts": SignalSpec(
        "campaign", False, False, "most accounts sharing one of those templates"
    ),
    # Reworded clauses link a paraphrasing campaign whose prompts never repeat (see
    # features.rewording). Honest users word common requests alike too: corroboration only.
    "paraphrase_networks": SignalSpec(
        "campaign",
        False,
        False,
        "most networks (/24, /48) that sent a rewording of one of the clauses this subject just "
        "sent (keys are not counted: many keys in one account are no more evidence than one)",
    ),
    "paraphrase_accounts": SignalSpec(
        "campaign", False, False, "most accounts that sent a rewording of one of those clauses"
    ),
}


@dataclass(frozen=True, slots=True)
class BurstConfig:
    short: str
    baseline: str
    floor_rps: float


def signals_of(
    stats: WindowStats,
    windows: tuple[Window, ...],
    burst: BurstConfig,
    campaigns: Sequence[CampaignStats] = (),
) -> dict[str, float]:
    """Signals keyed `name[window]` for windowed signals and `name` for the others."""
    out: dict[str, float] = {}
    row, offsets = stats.row, stats.layout.offsets
    # A counter the store does not keep (-1) leaves the signals that read it absent: the
    # tracking plan keeps exactly the counters the policy's rules read.
    (c_req, c_in, c_out, c_rsn, c_elic, c_harv, c_think, c_fup, c_hop, c_ng, c_gs, c_gq) = (
        stats.layout.columns(_COUNTERS)
    )
    tokens_kept = c_in >= 0 and c_out >= 0 and c_rsn >= 0
    for w in windows:
        at = offsets.get(w.name)
        if at is None:  # a window this subject does not keep (see pipeline.tracking_plan)
            continue
        (k_req, k_rps, k_tok, k_tps, k_out, k_rsn, k_elic, k_harv, k_rshare, k_cad) = _window_keys(
            w.name
        )[:10]
        k_think, k_fup, k_hop, k_rpr = _window_keys(w.name)[10:]
        if c_req >= 0:
            req = row[at + c_req]
            out[k_req] = req
            out[k_rps] = req / w.seconds
            if c_elic >= 0:
                out[k_elic] = row[at + c_elic] / req if req else 0.0
            if c_harv >= 0:
                out[k_harv] = row[at + c_harv] / req if req else 0.0
            if c_rsn >= 0:
                out[k_rpr] = row[at + c_rsn] / req if req else 0.0
            if c_think >= 0:
                out[k_think] = row[at + c_think] / req if req else 0.0
            if c_fup >= 0:
                out[k_fup] = row[at + c_fup] / req if req else 0.0
            if c_hop >= 0:
                out[k_hop] = row[at + c_hop] / req if req else 0.0
        if c_out >= 0:
            out[k_out] = row[at + c_out]
        if c_rsn >= 0:
            out[k_rsn] = row[at + c_rsn]
        if tokens_kept:
            tokens = row[at + c_in] + row[at + c_out] + row[at + c_rsn]
            out[k_tok] = tokens
            out[k_tps] = tokens / w.seconds
        if c_out >= 0 and c_rsn >= 0:
            reasoning, visible = row[at + c_rsn], row[at + c_out]
            out[k_rshare] = reasoning / (reasoning + visible) if reasoning else 0.0
        if c_ng >= 0:
            out[k_cad] = cadence_regularity(row[at + c_ng], row[at + c_gs], row[at + c_gq])
    short = out.get(f"rps[{burst.short}]")
    baseline = out.get(f"rps[{burst.baseline}]")
    if short is not None and baseline is not None:
        out["burst"] = short / max(baseline, burst.floor_rps)
    if stats.templates is not None:
        out["template_share"] = stats.templates.top_template
        out["near_duplicate_share"] = stats.templates.top_near_duplicate
        out["distinct_template_ratio"] = stats.templates.distinct_ratio
    if campaigns:
        _campaign_signals(out, campaigns)
    return out


def _campaign_signals(out: dict[str, float], campaigns: Sequence[CampaignStats]) -> None:
    templates: list[CampaignStats] = []
    reworded: list[CampaignStats] = []
    for c in campaigns:
        (reworded if c.fingerprint.startswith(SKETCH_PREFIX) else templates).append(c)
    if templates:
        out["campaign_keys"] = max(c.keys for c in templates)
        out["campaign_networks"] = max(c.networks for c in templates)
        out["campaign_accounts"] = max(c.accounts for c in templates)
    if reworded:
        out["paraphrase_networks"] = max(c.networks for c in reworded)
        out["paraphrase_accounts"] = max(c.accounts for c in reworded)


# The counters the detectors read, in the order signals_of unpacks their columns.
_COUNTERS = ("req", "in", "out", "rsn", "elic", "harv", "think", "fup", "hop", *GAP_COUNTERS)


@lru_cache(maxsize=64)
def _window_keys(window: str) -> tuple[str, ...]:
    names = (
        "requests",
        "rps",
        "tokens",
        "tokens_per_s",
        "output_tokens",
        "reasoning_tokens",
        "elicitation_share",
        "harvest_share",
        "reasoning_share",
        "cadence_regularity",
        "thinking_share",
        "followup_share",
        "network_hop_share",
        "reasoning_per_request",
    )
    return tuple(f"{name}[{window}]" for name in names)


def cadence_regularity(gaps: float, gap_sum: float, gap_square_sum: float) -> float:
    """1 - CV of inter-arrival gaps, clipped to [0, 1]. Gaps arrive in centiseconds."""
    if gaps < MIN_GAPS_FOR_GAP_COUNTERS or gap_sum <= 0:
        return 0.0
    mean = gap_sum / gaps
    variance = max(gap_square_sum / gaps - mean * mean, 0.0)
    return max(0.0, 1.0 - math.sqrt(variance) / mean)
