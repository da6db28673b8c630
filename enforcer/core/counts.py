"""What the engine counts and what counting gives back: plain values, no storage code.

The engine builds these from events and reads them back from whichever store counts them
(enforcer.core.ports); the Redis store (enforcer.store) encodes and decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from enforcer.core.decisions import Subject

# Counters the window script adds to every bucket besides the per-request ones: gaps between a
# subject's requests, their sum and their sum of squares, in centiseconds.
GAP_COUNTERS = ("gaps", "gap_sum", "gap_squares")

# Buckets per window. The sum weights the oldest bucket by the share of it still inside the
# window (see update_windows.lua), so even few buckets track a sliding window closely; each
# bucket costs every subject's state a float32 per counter its window keeps, unpacked and
# packed by Lua per batch.
BUCKETS_PER_WINDOW = 4


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    seconds: int
    bucket_s: int

    @classmethod
    def of(cls, name: str, seconds: int) -> Window:
        return cls(name, seconds, max(1, seconds // BUCKETS_PER_WINDOW))


class EventCounts(NamedTuple):
    event_id: str
    ts: float
    values: tuple[int, ...]  # one per counter, in the store's counter order
    fingerprint: str = ""  # template fingerprint, for subjects that track templates
    bands: tuple[str, ...] = ()  # near-duplicate band keys


class SubjectBatch(NamedTuple):
    subject: Subject
    events: list[EventCounts]
    templates: bool = False  # track this subject's template shares (keys do)
    windows: tuple[str, ...] | None = None  # names of the windows it keeps; None: all of them


class TemplateShares(NamedTuple):
    top_template: float  # share of requests under the subject's most used exact template
    top_near_duplicate: float  # same, for the most used near-duplicate band
    distinct_ratio: float  # distinct exact templates per request


class SumsLayout:
    """Where each window's sums sit in a subject's reply row: one per set of kept windows, so
    a batch's thousands of subjects share a few, and a row is read by index, not by dict."""

    __slots__ = ("names", "offsets", "_columns")

    def __init__(self, names: tuple[str, ...], windows: tuple[str, ...], first: int) -> None:
        self.names = names  # counters, in column order
        self.offsets = {w: first + i * len(names) for i, w in enumerate(windows)}
        self._columns: dict[tuple[str, ...], tuple[int, ...]] = {}

    def columns(self, counters: tuple[str, ...]) -> tuple[int, ...]:
        """Each counter's column within a window, -1 for a counter the store does not keep."""
        found = self._columns.get(counters)
        if found is None:
            index = {name: i for i, name in enumerate(self.names)}
            found = self._columns[counters] = tuple(index.get(c, -1) for c in counters)
        return found


class WindowStats(NamedTuple):
    subject: Subject
    watermark: float | None
    accepted: int
    duplicates: int
    too_late: int
    row: tuple[float, ...]  # the subject's reply (see update_windows.lua), read via `layout`
    layout: SumsLayout
    templates: TemplateShares | None = None

    @property
    def sums(self) -> dict[str, dict[str, float]]:
        """Window name -> counter -> sum, built on demand (tests, debugging)."""
        width = len(self.layout.names)
        return {
            window: dict(zip(self.layout.names, self.row[at : at + width], strict=True))
            for window, at in self.layout.offsets.items()
        }


class CampaignUse(NamedTuple):
    api_key: str
    network: str
    account: str


class CampaignBatch(NamedTuple):
    fingerprint: str
    ts: float
    uses: list[CampaignUse]


class CampaignStats(NamedTuple):
    fingerprint: str
    keys: int
    networks: int
    accounts: int


class LadderStep(NamedTuple):
    """An escalation step: used once the rule has `after` strikes for the subject."""

    after: int
    action: str
    rank: int
    expires_at: float | None


class StateProposal(NamedTuple):
    subject: Subject
    mode: str
    action: str
    rank: int
    expires_at: float | None
    ts: float
    rule: str
    # A strike is a decision this rule published for the subject (in this mode); the ladder,
    # weakest step first, replaces the action once enough strikes fall within strikes_within_s.
    ladder: tuple[LadderStep, ...] = ()
    strikes_within_s: float = 86400.0


class DecideOutcome(NamedTuple):
    publish: bool
    step: int  # 0: the proposal's own action; n: its ladder's nth step
    strikes: int  # the rule's earlier decisions for the subject within its horizon
    sequence: int = 0  # the publication's number in the subject's state (0: not published)


class Receipt(NamedTuple):
    """A publication decision state holds as pending until the producer has delivered it
    (see decide.lua and confirm.lua)."""

    subject: Subject
    mode: str
    sequence: int


# What a window update returns: each subject's window stats and each template's campaign.
Counted = tuple[list[WindowStats], list[CampaignStats]]
