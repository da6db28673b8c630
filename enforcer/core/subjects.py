"""The kinds of subject enforcer knows, in one table, and which subjects one event counts against.

Counting the same request under its key, its account, its network and its ASN is what lets
enforcer see traffic spread thin over many keys but concentrated on one account, proxy range
or ASN. Every list of kinds elsewhere (the decision schema's, the policy checker's, the
pipeline's, the gateway's) is read from KINDS below.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import NamedTuple

from enforcer.core.events import GatewayEvent


class SubjectKind(NamedTuple):
    name: str
    counted: bool  # an event names one: the engine keeps its windows, so rules may target it
    tiered: bool  # carries the customer's tier (tier overrides apply) and its campaign links
    template_shares: bool  # its share of requests per template is kept
    matched: bool  # the gateway matches a request to it, so a decision on it is enforced


KINDS = (
    SubjectKind("api_key", counted=True, tiered=True, template_shares=True, matched=True),
    SubjectKind("account", counted=True, tiered=True, template_shares=False, matched=True),
    # Decisions on one address come from operators (allow lists, lifts), not from counting:
    # one address of a proxy pool says little, its /24 or /48 network says more.
    SubjectKind("ip", counted=False, tiered=False, template_shares=False, matched=True),
    SubjectKind("network", counted=True, tiered=False, template_shares=False, matched=True),
    SubjectKind("asn", counted=True, tiered=False, template_shares=False, matched=True),
    # A campaign is the set of keys sharing a template; its evidence reaches keys and accounts.
    SubjectKind("campaign", counted=False, tiered=False, template_shares=False, matched=False),
)

SUBJECT_KINDS = tuple(k.name for k in KINDS)
COUNTED_KINDS = tuple(k.name for k in KINDS if k.counted)
TIERED_KINDS = tuple(k.name for k in KINDS if k.tiered)
TEMPLATE_SHARE_KINDS = tuple(k.name for k in KINDS if k.template_shares)
MATCHED_KINDS = tuple(k.name for k in KINDS if k.matched)

# kind -> the event's subject value of that kind, or None when the event has none. Grouping
# and a replay's accounting call these for every event: a field every event has is read by
# a C-level attrgetter rather than a Python function.
_VALUE_OF: dict[str, Callable[[GatewayEvent], str | None]] = {
    "api_key": attrgetter("api_key"),
    "network": attrgetter("network"),
    "account": lambda e: e.account_id or None,
    "asn": lambda e: None if e.asn is None else str(e.asn),
}
assert set(_VALUE_OF) == set(COUNTED_KINDS), "every counted kind is named by an event"


def value_getter(kind: str) -> Callable[[GatewayEvent], str | None]:
    """How an event names its subject of one kind (None: it has none)."""
    return _VALUE_OF[kind]
