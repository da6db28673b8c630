"""What applies to one request: a verdict combined from the decisions in force on the
subjects it belongs to, and the one spelling of a subject (addresses, networks, ASNs) that
decisions and lookups share."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import NamedTuple

from enforcer.core.decisions import ACTION_RANK, Subject

IPAddress = IPv4Address | IPv6Address
_BLOCK_RANK = ACTION_RANK["block"]


class ThrottleLimit(NamedTuple):
    subject: Subject
    limit_rps: float | None  # None: the decision named no rate; the sidecar's default applies
    expires_at: float | None
    rule: str | None = None
    decision_id: str | None = None


class Verdict(NamedTuple):
    """What applies to one request: the strongest action in force, and every throttle.

    `limit_rps` is the strictest limit among the throttles. A request can be degraded and
    throttled at once (its key degraded, its network throttled); `action` is the stronger
    one and `throttles` still lists the rates to keep."""

    action: str
    limit_rps: float | None = None
    subject: Subject | None = None
    rule: str | None = None
    expires_at: float | None = None
    throttles: tuple[ThrottleLimit, ...] = ()
    decision_id: str | None = None


ALLOW = Verdict("allow")


class Entry(NamedTuple):
    subject: Subject
    action: str
    rank: int
    limit_rps: float | None
    expires_at: float | None
    rule: str
    decision_id: str


def parse_ip(value: str | IPAddress) -> IPAddress:
    """The address a request comes from; IPv4-mapped IPv6 counts as the IPv4 address.

    Raises ValueError when `value` is not an IP address, or is an IPv6 address with a zone id
    (`fe80::1%eth0`): a zone names an interface of the host that wrote it, means nothing here,
    and would make `2001:db8::5%0` a different subject from the blocked `2001:db8::5`."""
    return address_of(value)[0] if isinstance(value, str) else canonical_address(value)


def canonical_address(addr: IPAddress) -> IPAddress:
    if isinstance(addr, IPv6Address):
        if addr.scope_id is not None:
            raise ValueError(f"{addr} has a zone id")
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
    return addr


# Parsing an address costs more than the whole lookup otherwise; gateways see the same
# client addresses again and again, and the cache's size bounds what hostile input can hold.
@lru_cache(maxsize=65536)
def address_of(text: str) -> tuple[IPAddress, str]:
    addr = canonical_address(ip_address(text.strip()))
    return addr, str(addr)


def canonical_subject(subject: Subject) -> Subject | None:
    """The one spelling of a subject that lookups build: addresses and networks normalised."""
    try:
        if subject.kind == "ip":
            return Subject("ip", str(parse_ip(subject.value)))
        if subject.kind == "network":
            return Subject("network", str(ip_network(subject.value.strip(), strict=False)))
        if subject.kind == "asn":
            return Subject("asn", str(int(subject.value)))
    except ValueError:
        return None
    return subject


def combine(entries: Iterable[Entry]) -> Verdict:
    best: Entry | None = None
    throttles: list[ThrottleLimit] = []
    for entry in entries:
        if entry.action == "throttle":
            throttles.append(
                ThrottleLimit(
                    entry.subject, entry.limit_rps, entry.expires_at, entry.rule, entry.decision_id
                )
            )
        if best is None or entry.rank > best.rank:
            best = entry
    if best is None:
        return ALLOW
    limits = [t.limit_rps for t in throttles if t.limit_rps is not None]
    return Verdict(
        action=best.action,
        limit_rps=min(limits) if limits else None,
        subject=best.subject,
        rule=best.rule,
        expires_at=best.expires_at,
        throttles=() if best.rank == _BLOCK_RANK else tuple(throttles),
        decision_id=best.decision_id,
    )
