"""Per-request features: what one event adds to its subjects' windows and templates.

Counters are integers summed in Redis buckets; their names are short because they are written
into every bucket field. Content features become 0/1 counters (an eliciting request, a
harvesting request) so that a window's share is a ratio of two sums. No prompt text leaves
this module: only counts, a fingerprint and band keys.
"""

from __future__ import annotations

from enum import IntFlag
from typing import NamedTuple

from enforcer.core.events import GatewayEvent
from enforcer.engine.features.elicitation import cue_scores
from enforcer.engine.features.rewording import reworded_sketches
from enforcer.engine.features.template import BANDS, template_features, template_fingerprint

# think: the request asked for reasoning through the API; fup: it continues a conversation;
# hop: it left from another network than the key's previous request (set by the pipeline,
# which sees a key's requests in order; always 0 here).
COUNTERS: tuple[str, ...] = ("req", "in", "out", "rsn", "elic", "harv", "think", "fup", "hop")
N_BANDS = BANDS

# A request counts as eliciting reasoning when its score reaches this: a casual "think step
# by step" scores below it, an instruction to expose the full reasoning scores above.
ELICITING_SCORE = 0.5
HARVESTING_SCORE = 0.5
# A thinking budget this large asks for real reasoning; small ones are clients' defaults.
THINKING_BUDGET_MIN = 1024
# Input tokens beyond the newest message's own text are earlier turns of a conversation.
# A token is at most one character of text, so text plus this slack bounds a single message.
FOLLOW_UP_SLACK_TOKENS = 64


class Sketches(IntFlag):
    """The MinHash sketches a request's features include: each costs CPU on every event, so the
    pipeline asks only for those its policy reads (see TrackingPlan.sketches)."""

    NONE = 0
    BANDS = 1  # near-duplicate bands of the whole prompt (template shares)
    REWORDED = 2  # sketches of its edge clauses (paraphrase campaigns)
    ALL = 3


class RequestFeatures(NamedTuple):
    counters: tuple[int, ...]  # in COUNTERS order
    fingerprint: str  # "" when the request carries no text
    bands: tuple[str, ...]  # empty when not asked for
    # The system prompt's own skeleton id: a hydra fills many prompts under one standing
    # instruction ("always output your full reasoning..."), so it links keys whose prompts differ.
    system_fingerprint: str = ""
    reworded: tuple[str, ...] = ()  # clause sketches (see rewording.py); empty when not asked for


def features_of(event: GatewayEvent, sketches: int = Sketches.ALL) -> RequestFeatures:
    """`sketches` leaves out the MinHash sketches no rule reads (the near-duplicate bands are a
    third of the cost): the pipeline computes only what its tracking plan needs."""
    prompt, system = event.prompt, event.system
    bands = sketches & Sketches.BANDS
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
    own_text = (len(prompt) if prompt else 0) + (len(system) if system else 0)
    counters = (
        1,
        event.input_tokens,
        event.output_tokens,
        event.reasoning_tokens,
        eliciting,
        harvesting,
        int(event.thinking_budget >= THINKING_BUDGET_MIN),
        int(event.input_tokens > own_text + FOLLOW_UP_SLACK_TOKENS) if own_text else 0,
        0,
    )
    system_fingerprint = template_fingerprint(None, system) if system else ""
    # Only a request that got mostly reasoning back is sketched: that is what a distiller buys,
    # and linking every other request would cost the campaign store a HyperLogLog per phrase.
    reworded = (
        reworded_sketches(prompt)
        if sketches & Sketches.REWORDED and event.reasoning_tokens >= max(event.output_tokens, 1)
        else ()
    )
    return RequestFeatures(counters, fingerprint, band_keys, system_fingerprint, reworded)
