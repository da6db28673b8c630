"""Which subjects one event counts against: its key, its account, its network and its ASN.

Counting the same request under several subjects is what lets enforcer see traffic that is
spread thin over many keys but concentrated on one account, proxy range or ASN.
"""

from __future__ import annotations

from collections.abc import Callable

from enforcer.events import GatewayEvent

EVENT_SUBJECT_KINDS = ("api_key", "network", "account", "asn")

# kind -> the event's subject value of that kind, or None when the event has none.
_VALUE_OF: dict[str, Callable[[GatewayEvent], str | None]] = {
    "api_key": lambda e: e.api_key,
    "network": lambda e: e.network,
    "account": lambda e: e.account_id or None,
    "asn": lambda e: None if e.asn is None else str(e.asn),
}


def value_getter(kind: str) -> Callable[[GatewayEvent], str | None]:
    """How an event names its subject of one kind (None: it has none)."""
    return _VALUE_OF[kind]
