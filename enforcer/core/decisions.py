"""decision.v1: what enforcer tells the gateway, and the order of actions.

The gateway client (enforcer.gateway) and the worker both use these types, so the wire format
has one definition; tests/test_schemas.py proves it matches topics/schemas/decision.v1.json.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from enforcer.core.signing import ISSUED_AT_HEADER, DecisionSigner

MODES = ("enforce", "shadow")
# Strength order: the strongest active action wins when several apply to one request.
ACTION_RANK = {"allow": 0, "throttle": 1, "degrade": 2, "block": 3}
ACTIONS = tuple(ACTION_RANK)


class Subject(NamedTuple):
    kind: str
    value: str

    @property
    def key(self) -> str:
        """The Kafka key and Redis hash tag of a subject: one string for one subject."""
        return f"{self.kind}:{self.value}"

    @classmethod
    def from_key(cls, key: str) -> Subject:
        kind, _, value = key.partition(":")
        return cls(kind, value)


class DecisionRecord(NamedTuple):
    """A record of the decisions topic as it is written: key, value (None: a tombstone) and
    headers, the signature among them when a signer is given."""

    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]]


def encode_record(
    key: bytes,
    value: bytes | None,
    signer: DecisionSigner | None,
    issued_at: float | None = None,
) -> DecisionRecord:
    """The one way a record reaches the decisions topic: the worker's decisions and an
    operator's lifts (tombstones) alike, signed when a signer is given.

    A signed tombstone carries its issue time (`issued_at`, now when not given) in a signed
    header, so a gateway can refuse it when replayed; a decision's issue time is in its value,
    and `issued_at` is not used for one."""
    if signer is None:
        return DecisionRecord(key, value, [])
    issued = None
    if value is None:
        issued = repr(float(time.time() if issued_at is None else issued_at)).encode()
    return DecisionRecord(key, value, signer.headers(key, value, issued))


def tombstone_issued_at(headers: Iterable[tuple[str, bytes]]) -> float | None:
    """A tombstone's issue time from its header; None when it has none, several, or one that
    is not a finite number of seconds."""
    values = [v for name, v in headers if name == ISSUED_AT_HEADER]
    if len(values) != 1:
        return None
    try:
        issued = float(values[0].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return issued if math.isfinite(issued) else None


class Reason(NamedTuple):
    detector: str
    signal: str
    value: float
    threshold: float
    window: str | None


class Lift(NamedTuple):
    """Who lifted a subject's decision and why: an operator's word, kept on the record so the
    decision log explains every allow that was not the policy's own."""

    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    subject: Subject
    action: str
    ts: float
    issued_at: float
    expires_at: float | None
    rule: str
    policy_version: str
    mode: str
    limit_rps: float | None = None
    reasons: tuple[Reason, ...] = ()
    decision_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    lift: Lift | None = None

    @property
    def record_key(self) -> bytes:
        """The decision's key on the compacted topic. Shadow decisions get their own key, so
        compaction can never let a shadow record replace the enforce record a gateway lives by."""
        key = self.subject.key if self.mode == "enforce" else f"shadow/{self.subject.key}"
        return key.encode()

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "ts": self.ts,
            "issued_at": self.issued_at,
            "subject": {"kind": self.subject.kind, "value": self.subject.value},
            "action": self.action,
            "limit_rps": self.limit_rps,
            "expires_at": self.expires_at,
            "reasons": [r._asdict() for r in self.reasons],
            "rule": self.rule,
            "policy_version": self.policy_version,
            "mode": self.mode,
            "lift": None if self.lift is None else self.lift._asdict(),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def record(self, signer: DecisionSigner | None) -> DecisionRecord:
        """The decision as a record of the decisions topic."""
        return encode_record(self.record_key, self.to_json(), signer)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Decision:
        subject = doc["subject"]
        lift = doc.get("lift")
        return cls(
            decision_id=doc["decision_id"],
            ts=float(doc["ts"]),
            issued_at=float(doc["issued_at"]),
            subject=Subject(subject["kind"], subject["value"]),
            action=doc["action"],
            limit_rps=doc.get("limit_rps"),
            expires_at=doc.get("expires_at"),
            reasons=tuple(Reason(**r) for r in doc.get("reasons", ())),
            rule=doc["rule"],
            policy_version=doc["policy_version"],
            mode=doc["mode"],
            lift=None if lift is None else Lift(str(lift["by"]), str(lift["reason"])),
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Decision:
        return cls.from_dict(orjson.loads(raw))
