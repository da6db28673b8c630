"""Per-request counters: what one event adds to its subjects' windows.

The counter names are short because they are written into every Redis bucket field.
"""

from __future__ import annotations

from enforcer.events import GatewayEvent

COUNTERS: tuple[str, ...] = ("req", "in", "out", "rsn")


def counters_of(event: GatewayEvent) -> tuple[int, ...]:
    return (1, event.input_tokens, event.output_tokens, event.reasoning_tokens)
