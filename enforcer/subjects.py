"""Which subjects one event counts against: its key, its account, its network and its ASN.

Counting the same request under several subjects is what lets enforcer see traffic that is
spread thin over many keys but concentrated on one account, proxy range or ASN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from enforcer.decisions import Subject
from enforcer.events import GatewayEvent

EVENT_SUBJECT_KINDS = ("api_key", "network", "account", "asn")

# kind -> the event's subject value of that kind, or None when the event has none.
_VALUE_OF: dict[str, Callable[[GatewayEvent], str | None]] = {
    "api_key": lambda e: e.api_key,
    "network": lambda e: e.network,
    "account": lambda e: e.account_id or None,
    "asn": lambda e: None if e.asn is None else str(e.asn),
}
_subject = Subject._make


def subjects_of(event: GatewayEvent, kinds: Iterable[str] = EVENT_SUBJECT_KINDS) -> list[Subject]:
    """The event's subjects of the given kinds (all of them by default), in that order. A
    caller that reads only some kinds (a policy's tracking plan) names them: this runs for
    every event, and a subject nobody reads costs its construction all the same."""
    subjects = []
    for kind in kinds:
        value = _VALUE_OF[kind](event)
        if value is not None:
            subjects.append(_subject((kind, value)))
    return subjects
