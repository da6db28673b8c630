"""Per-request features: what one event adds to its subjects' windows and templates.

Counters are integers summed in Redis buckets; their names are short because they are written
into every bucket field. Content features become 0/1 counters (an eliciting request, a
harvesting request) so that a window's share is a ratio of two sums. No prompt text leaves
this module: only counts, a fingerprint and band keys.
"""

from __future__ import annotations

from typing import NamedTuple

from enforcer.core.events import GatewayEvent
from enforcer.engine.features.elicitation import cue_scores
from enforcer.engine.features.template import BANDS, template_features, template_fingerprint

COUNTERS: tuple[str, ...] = ("req", "in", "out", "rsn", "elic", "harv")
N_BANDS = BANDS

# A request counts as eliciting reasoning when its score reaches this: a casual "think step
# by step" scores below it, an instruction to expose the full reasoning scores above.
ELICITING_SCORE = 0.5
HARVESTING_SCORE = 0.5


class RequestFeatures(NamedTuple):
    counters: tuple[int, ...]  # in COUNTERS order
    fingerprint: str  # "" when the request carries no text
    bands: tuple[str, ...]  # empty when not asked for
    # The system prompt's own skeleton id: a hydra fills many prompts under one standing
    # instruction ("always output your full reasoning..."), so it links keys whose prompts differ.
    system_fingerprint: str = ""


def features_of(event: GatewayEvent, bands: bool = True) -> RequestFeatures:
    """`bands=False` skips the near-duplicate bands (MinHash, a third of the cost) when no rule
    reads template shares: the pipeline computes only what its tracking plan needs."""
    prompt, system = event.prompt, event.system
    if prompt or system:
        if bands:
            template = template_features(prompt, system)
            fingerprint, band_keys = template.fingerprint, template.bands
        else:
            fingerprint, band_keys = template_fingerprint(prompt, system), ()
        scores = cue_scores(prompt, system)
        eliciting = int(scores.elicitation >= ELICITING_SCORE)
        harvesting = int(scores.harvest >= HARVESTING_SCORE)
    else:
        fingerprint, band_keys, eliciting, harvesting = "", ("",) * N_BANDS if bands else (), 0, 0
    counters = (
        1,
        event.input_tokens,
        event.output_tokens,
        event.reasoning_tokens,
        eliciting,
        harvesting,
    )
    system_fingerprint = template_fingerprint(None, system) if system else ""
    return RequestFeatures(counters, fingerprint, band_keys, system_fingerprint)
