"""gateway_event.v1: parsing and validation of raw gateway records.

Parsing is the boundary where untrusted bytes become typed events. Anything wrong raises
InvalidEvent with a machine-readable reason (the dead-letter header) and a detail for humans;
nothing here does I/O, so the same code serves the worker, the backtest and the tests.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from functools import lru_cache
from ipaddress import IPv4Address, ip_address, ip_network
from typing import Any, NamedTuple

import orjson

# Field name -> Python type, for the fields the schema marks as required and optional.
# tests/test_schemas.py proves this table and topics/schemas/gateway_event.v1.json agree.
REQUIRED_FIELDS: dict[str, type] = {"event_id": str, "ts": float, "api_key": str, "ip": str}
OPTIONAL_FIELDS: dict[str, type] = {
    "account_id": str,
    "asn": int,
    "country": str,
    "user_agent": str,
    "endpoint": str,
    "model": str,
    "prompt": str,
    "system": str,
    "input_tokens": int,
    "output_tokens": int,
    "reasoning_tokens": int,
    "status": int,
    "tier": str,
    "thinking_budget": int,
}
_MAX_LEN = {
    "event_id": 128,
    "api_key": 256,
    "account_id": 256,
    "country": 8,
    "user_agent": 1024,
    "endpoint": 256,
    "model": 256,
    "tier": 64,
}
_NON_NEGATIVE = ("input_tokens", "output_tokens", "reasoning_tokens", "asn", "thinking_budget")
_MAX_ASN = 4294967295


class InvalidEvent(ValueError):
    """A record that cannot be processed. `reason` is one of the dead-letter reasons."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class GatewayEvent(NamedTuple):
    """One request as the gateway saw it. A named tuple, not a frozen dataclass: it is built
    for every record, and a frozen dataclass sets each of its fields through
    object.__setattr__, several times the cost of the whole tuple."""

    event_id: str
    ts: float
    api_key: str
    ip: str
    network: str  # the client's /24 (IPv4) or /48 (IPv6), derived once at parse time
    account_id: str | None = None
    asn: int | None = None
    country: str | None = None
    user_agent: str | None = None
    endpoint: str | None = None
    model: str | None = None
    prompt: str | None = None
    system: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    status: int | None = None
    tier: str | None = None
    # Reasoning tokens the request asked for through the API (extended thinking, reasoning
    # effort): a request can ask for reasoning with no word of the prompt saying so.
    thinking_budget: int = 0


def parse_event(raw: bytes, max_bytes: int = 65536) -> GatewayEvent:
    """Decode and validate one record. Unknown fields are ignored, as the schema promises."""
    if len(raw) > max_bytes:
        raise InvalidEvent("oversize", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("malformed_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise InvalidEvent("not_an_object", f"top level is {type(doc).__name__}, not an object")
    return event_from_dict(doc)


def event_from_dict(doc: dict[str, Any]) -> GatewayEvent:
    """Validate a decoded record and build its event; raises InvalidEvent.

    Nearly every record is well formed, so a fast check runs first and only a record it
    cannot vouch for takes the field-by-field path, which also words the error.
    """
    event = _well_formed_event(doc)
    return event if event is not None else _checked_event(doc)


# Schema order, which is also GatewayEvent's field order (without the derived network).
_FIELD_NAMES = (*REQUIRED_FIELDS, *OPTIONAL_FIELDS)
_FIELD_KINDS = (*REQUIRED_FIELDS.values(), *OPTIONAL_FIELDS.values())


@lru_cache(maxsize=1024)
def _plain_kinds(kinds: tuple[type, ...]) -> bool:
    """Whether a record whose field values have these exact types needs no conversion.

    Each field must hold exactly its schema type (so no bool posing as an int, no str
    subclass) or be absent; ``ts`` may be a float or an int, and required fields must be
    present. A gateway sends few distinct combinations, so the answer is cached.
    """
    for name, kind, seen in zip(_FIELD_NAMES, _FIELD_KINDS, kinds, strict=True):
        if seen is type(None):
            if name in REQUIRED_FIELDS:
                return False
        elif seen is not kind and not (name == "ts" and seen is int):
            return False
    return True


def _well_formed_event(doc: dict[str, Any]) -> GatewayEvent | None:
    """The event of a record that passes every check, or None to take the checked path.

    Accepts exactly the records ``_checked_event`` accepts with plain JSON types (what
    orjson produces) and builds the same event; anything else gets None, never an error.
    A rule added to one of the two paths belongs in the other as well.
    """
    values: list[Any] = list(map(doc.get, _FIELD_NAMES))
    if not _plain_kinds(tuple(map(type, values))):
        return None
    (
        event_id,
        ts,
        api_key,
        ip,
        account_id,
        asn,
        country,
        user_agent,
        endpoint,
        model,
        prompt,
        system,
        input_tokens,
        output_tokens,
        reasoning_tokens,
        status,
        tier,
        thinking_budget,
    ) = values
    limit = _MAX_LEN
    if not (
        0 < len(event_id) <= limit["event_id"]
        and 0 < len(api_key) <= limit["api_key"]
        and ip
        and 0 < ts < math.inf  # also false for NaN
        and (account_id is None or len(account_id) <= limit["account_id"])
        and (country is None or len(country) <= limit["country"])
        and (user_agent is None or len(user_agent) <= limit["user_agent"])
        and (endpoint is None or len(endpoint) <= limit["endpoint"])
        and (model is None or len(model) <= limit["model"])
        and (tier is None or len(tier) <= limit["tier"])
        and (asn is None or 0 <= asn <= _MAX_ASN)
        and (input_tokens is None or input_tokens >= 0)
        and (output_tokens is None or output_tokens >= 0)
        and (reasoning_tokens is None or reasoning_tokens >= 0)
        and (thinking_budget is None or thinking_budget >= 0)
    ):
        return None
    network = network_of(ip)
    if network is None:
        return None
    return GatewayEvent(
        event_id,
        float(ts),
        api_key,
        ip,
        network,
        account_id,
        asn,
        country,
        user_agent,
        endpoint,
        model,
        prompt,
        system,
        input_tokens or 0,
        output_tokens or 0,
        reasoning_tokens or 0,
        status,
        tier,
        thinking_budget or 0,
    )


def _checked_event(doc: dict[str, Any]) -> GatewayEvent:
    for name in REQUIRED_FIELDS:
        if doc.get(name) is None:
            raise InvalidEvent("missing_field", f"'{name}' is required")
    values: dict[str, Any] = {}
    for name, kind in zip(_FIELD_NAMES, _FIELD_KINDS, strict=True):
        value = doc.get(name)
        if value is None:
            continue
        if name == "ts":
            values[name] = _parse_ts(value)
            continue
        # bool is an int in Python; in JSON it is not a count.
        if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidEvent(
                "wrong_type", f"'{name}' must be an integer, got {_json_type(value)}"
            )
        if kind is str:
            if not isinstance(value, str):
                raise InvalidEvent(
                    "wrong_type", f"'{name}' must be a string, got {_json_type(value)}"
                )
            limit = _MAX_LEN.get(name)
            if limit is not None and len(value) > limit:
                raise InvalidEvent("invalid_value", f"'{name}' is longer than {limit} characters")
            if name in REQUIRED_FIELDS and not value:
                raise InvalidEvent("invalid_value", f"'{name}' must not be empty")
        values[name] = value
    for name in _NON_NEGATIVE:
        if values.get(name, 0) < 0:
            raise InvalidEvent("invalid_value", f"'{name}' must be >= 0")
    if values.get("asn", 0) > _MAX_ASN:
        raise InvalidEvent("invalid_value", "'asn' must fit in 32 bits")
    network = network_of(values["ip"])
    if network is None:
        raise InvalidEvent(
            "invalid_value", f"'ip' is not an IPv4 or IPv6 address: {values['ip']!r}"
        )
    return GatewayEvent(network=network, **values)


@lru_cache(maxsize=65536)
def network_of(ip: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) a client address belongs to: the unit a NAT or a proxy
    provider hands out, so keys rotating over neighbouring addresses still share a subject."""
    network = _plain_ipv4_network(ip) or _plain_ipv6_network(ip)
    if network is not None:
        return network
    try:
        addr = ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, IPv4Address):
        return str(ip_network(f"{addr}/24", strict=False))
    if addr.ipv4_mapped is not None:
        return str(ip_network(f"{addr.ipv4_mapped}/24", strict=False))
    return str(ip_network(f"{addr}/48", strict=False))


# Fast paths for the common spellings, each giving exactly what the ipaddress module gives
# (which costs 20-80 us per new address); anything unusual (leading zeros, zone ids,
# embedded IPv4, IPv4-mapped, the all-zero /48) is left to ipaddress.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
_HEXTET = re.compile(r"[0-9A-Fa-f]{1,4}")


def _plain_ipv4_network(ip: str) -> str | None:
    if _PLAIN_IPV4.fullmatch(ip) is None:
        return None
    # Octets matched without leading zeros, so the text is already canonical.
    return ip[: ip.rindex(".")] + ".0/24"


def _plain_ipv6_network(ip: str) -> str | None:
    head, gap, tail = ip.partition("::")
    if gap:
        left = head.split(":") if head else []
        right = tail.split(":") if tail else []
        if len(left) + len(right) > 7 or "::" in tail:
            return None
        hextets = left + ["0"] * (8 - len(left) - len(right)) + right
    else:
        hextets = ip.split(":")
        if len(hextets) != 8:
            return None
    if not all(map(_HEXTET.fullmatch, hextets)):
        return None
    prefix = [int(h, 16) for h in hextets[:3]]
    if not any(prefix):
        return None  # ::/48 holds the IPv4-mapped and other special addresses
    # The /48's last five hextets are zero, the longest zero run, so "::" stands for them
    # and for any zero hextets just before them (RFC 5952, as ipaddress prints it).
    while not prefix[-1]:
        prefix.pop()
    return ":".join(f"{h:x}" for h in prefix) + "::/48"


def _parse_ts(value: Any) -> float:
    if isinstance(value, bool):
        raise InvalidEvent("wrong_type", "'ts' must be a number or an RFC 3339 string, got boolean")
    if isinstance(value, int | float):
        ts = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise InvalidEvent("invalid_value", f"'ts' is not RFC 3339: {value[:64]!r}") from None
        if parsed.tzinfo is None:
            raise InvalidEvent("invalid_value", "'ts' string needs a UTC offset (RFC 3339)")
        ts = parsed.timestamp()
    else:
        raise InvalidEvent(
            "wrong_type", f"'ts' must be a number or a string, got {_json_type(value)}"
        )
    if not math.isfinite(ts) or ts <= 0:
        raise InvalidEvent("invalid_value", f"'ts' must be a positive Unix time, got {ts}")
    return ts


def _json_type(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)
