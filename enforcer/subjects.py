"""Which subjects one event counts against: its key, its account, its network and its ASN.

Counting the same request under several subjects is what lets enforcer see traffic that is
spread thin over many keys but concentrated on one account, proxy range or ASN.
"""

from __future__ import annotations

from enforcer.decisions import Subject
from enforcer.events import GatewayEvent


def subjects_of(event: GatewayEvent) -> list[Subject]:
    subjects = [Subject("api_key", event.api_key), Subject("network", event.network)]
    if event.account_id:
        subjects.append(Subject("account", event.account_id))
    if event.asn is not None:
        subjects.append(Subject("asn", str(event.asn)))
    return subjects
