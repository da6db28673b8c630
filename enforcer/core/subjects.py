"""Which subjects one event counts against: its key, its account, its network and its ASN.

Counting the same request under several subjects is what lets enforcer see traffic that is
spread thin over many keys but concentrated on one account, proxy range or ASN.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

from enforcer.core.events import GatewayEvent

EVENT_SUBJECT_KINDS = ("api_key", "network", "account", "asn")

# kind -> the event's subject value of that kind, or None when the event has none. Grouping
# and a replay's accounting call these for every event: a field every event has is read by
# a C-level attrgetter rather than a Python function.
_VALUE_OF: dict[str, Callable[[GatewayEvent], str | None]] = {
    "api_key": attrgetter("api_key"),
    "network": attrgetter("network"),
    "account": lambda e: e.account_id or None,
    "asn": lambda e: None if e.asn is None else str(e.asn),
}


def value_getter(kind: str) -> Callable[[GatewayEvent], str | None]:
    """How an event names its subject of one kind (None: it has none)."""
    return _VALUE_OF[kind]
