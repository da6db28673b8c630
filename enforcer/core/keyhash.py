"""A keyed hash of API keys, so decisions, Kafka keys, Redis keys and logs need not carry the
keys themselves.

With ENFORCER_API_KEY_HASH_KEY set, the worker replaces each event's api_key by
`h1.` + the first 32 hex digits of HMAC-SHA256(secret, api_key as UTF-8) as soon as it parses
the event, so everything downstream (windows, subjects, decision records, logs) only ever sees
the hash. A plain digest would not do: API keys often have guessable prefixes and formats,
and anyone with the topic could test candidate keys against it; without the secret they cannot.

A gateway computes the same value to look a key up, e.g.
`printf %s "$API_KEY" | openssl dgst -sha256 -hmac "$SECRET" | awk '{print "h1." substr($2,1,32)}'`.
The check sidecar does this itself when it has the same setting.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from functools import lru_cache

from enforcer.core.settings import Settings

PREFIX = "h1."
DIGEST_HEX_CHARS = 32  # 128 bits: no collision among any number of keys a provider issues


def api_key_hasher(secret: str) -> Callable[[str], str]:
    """The hash under one secret. Cached: a gateway and a worker see the same keys again and
    again, and an HMAC costs more than the dict probe a lookup is."""
    key = secret.encode()

    @lru_cache(maxsize=65536)
    def hash_api_key(api_key: str) -> str:
        digest = hmac.new(key, api_key.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return PREFIX + digest.hexdigest()[:DIGEST_HEX_CHARS]

    return hash_api_key


def hasher_from_settings(settings: Settings) -> Callable[[str], str] | None:
    """The API key hash in force; None when keys are kept as they are."""
    return api_key_hasher(settings.api_key_hash_key) if settings.api_key_hash_key else None
