"""gateway_event.v1: parsing and validation of raw gateway records.

Parsing is the boundary where untrusted bytes become typed events. Anything wrong raises
InvalidEvent with a machine-readable reason (the dead-letter header) and a detail for humans;
nothing here does I/O, so the same code serves the worker, the backtest and the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from ipaddress import IPv4Address, ip_address, ip_network
from typing import Any

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
_NON_NEGATIVE = ("input_tokens", "output_tokens", "reasoning_tokens", "asn")
_MAX_ASN = 4294967295


class InvalidEvent(ValueError):
    """A record that cannot be processed. `reason` is one of the dead-letter reasons."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class GatewayEvent:
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
    for name in REQUIRED_FIELDS:
        if doc.get(name) is None:
            raise InvalidEvent("missing_field", f"'{name}' is required")
    values: dict[str, Any] = {}
    for name, kind in (REQUIRED_FIELDS | OPTIONAL_FIELDS).items():
        value = doc.get(name)
        if value is None:
            continue
        if name == "ts":
            values[name] = _parse_ts(value)
            continue
        # bool is an int in Python; in JSON it is not a count.
        if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidEvent("wrong_type", f"'{name}' must be an integer, got {_json_type(value)}")
        if kind is str:
            if not isinstance(value, str):
                raise InvalidEvent("wrong_type", f"'{name}' must be a string, got {_json_type(value)}")
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
        raise InvalidEvent("invalid_value", f"'ip' is not an IPv4 or IPv6 address: {values['ip']!r}")
    return GatewayEvent(network=network, **values)


@lru_cache(maxsize=65536)
def network_of(ip: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) a client address belongs to: the unit a NAT or a proxy
    provider hands out, so keys rotating over neighbouring addresses still share a subject."""
    try:
        addr = ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, IPv4Address):
        return str(ip_network(f"{addr}/24", strict=False))
    if addr.ipv4_mapped is not None:
        return str(ip_network(f"{addr.ipv4_mapped}/24", strict=False))
    return str(ip_network(f"{addr}/48", strict=False))


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
        raise InvalidEvent("wrong_type", f"'ts' must be a number or a string, got {_json_type(value)}")
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
