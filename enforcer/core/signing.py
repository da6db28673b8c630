"""Signed decision records: a gateway enforces only what the worker (or an operator's lift)
wrote, not whatever anyone who can write to the decisions topic sends.

The signature is HMAC-SHA256 under a shared key, in a record header, over the record's key and
value bytes exactly as they are on the topic, each framed by its length. Signing the bytes,
not a re-serialised form of the decision, means a gateway authenticates a record before it
parses any of it, and no two serialisers can disagree on what was signed. Tombstones (no value)
are signed too: an unsigned tombstone would otherwise lift any decision. A tombstone has no
value to carry its issue time, so it carries one in a header the signature also covers
(ISSUED_AT_HEADER); without it, an old signed tombstone replayed on the topic could lift a block
in force, and the gateway's replay guard could not tell. A decision's issue time is inside its
value, so a decision's signature covers exactly its key and value.

The header reads `<key id>:<hex digest>`. The key id lets gateways accept an old key and a new
one while a key is rotated (ENFORCER_DECISION_VERIFY_KEYS).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from enum import Enum

from enforcer.core.settings import Settings

SIGNATURE_HEADER = "enforcer.signature"
ISSUED_AT_HEADER = "enforcer.issued_at"  # Unix seconds, a decimal float
_DOMAIN = b"enforcer.decision.v1\n"


class SignatureCheck(Enum):
    VALID = "valid"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"  # wrong digest, unknown key id, or a malformed header


def canonical_record(
    key: bytes | None, value: bytes | None, issued_at: bytes | None = None
) -> bytes:
    """What a signature covers: the key and the value, each framed by its length (a missing
    one by `-`), so no byte can move from one to the other without breaking the signature;
    then the issued-at header, framed too, when the record has one. A record without it is
    signed over exactly what it was signed over before the header existed."""
    parts = [_DOMAIN]
    for part in (key, value):
        parts.append(b"-\n" if part is None else b"%d\n" % len(part) + part)
    if issued_at is not None:
        parts.append(b"%d\n" % len(issued_at) + issued_at)
    return b"".join(parts)


class DecisionSigner:
    """Signs records with one key and verifies them against every key it knows."""

    def __init__(self, key_id: str, keys: Mapping[str, str]) -> None:
        if key_id not in keys:
            raise ValueError(f"no key named {key_id!r}")
        self.key_id = key_id
        self._keys = {kid: key.encode() for kid, key in keys.items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> DecisionSigner | None:
        """The signer the settings describe; None when no signing key is set."""
        keys = settings.verify_keys()
        if not settings.decision_signing_key:
            return None
        return cls(settings.decision_signing_key_id, keys)

    def _digest(
        self, key_id: str, key: bytes | None, value: bytes | None, issued_at: bytes | None
    ) -> str | None:
        secret = self._keys.get(key_id)
        if secret is None:
            return None
        signed = canonical_record(key, value, issued_at)
        return hmac.new(secret, signed, hashlib.sha256).hexdigest()

    def signature(
        self, key: bytes | None, value: bytes | None, issued_at: bytes | None = None
    ) -> bytes:
        """The signature header's value for a record (and its issued-at header, if any)."""
        return f"{self.key_id}:{self._digest(self.key_id, key, value, issued_at)}".encode()

    def headers(
        self, key: bytes | None, value: bytes | None, issued_at: bytes | None = None
    ) -> list[tuple[str, bytes]]:
        """The record's headers: its issued-at header when given, and the signature over it."""
        signature = (SIGNATURE_HEADER, self.signature(key, value, issued_at))
        return [signature] if issued_at is None else [(ISSUED_AT_HEADER, issued_at), signature]

    def check(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes]],
    ) -> SignatureCheck:
        headers = list(headers)
        signatures = [v for name, v in headers if name == SIGNATURE_HEADER]
        issued = [v for name, v in headers if name == ISSUED_AT_HEADER]
        if not signatures:
            return SignatureCheck.UNSIGNED
        if len(signatures) > 1 or len(issued) > 1:
            return SignatureCheck.BAD_SIGNATURE
        key_id, sep, digest = signatures[0].decode("ascii", "replace").partition(":")
        expected = self._digest(key_id, key, value, issued[0] if issued else None) if sep else None
        if expected is None or not hmac.compare_digest(expected, digest):
            return SignatureCheck.BAD_SIGNATURE
        return SignatureCheck.VALID
