"""Settings of the check sidecar, read from ENFORCER_SIDECAR_* environment variables.

The sidecar also uses the shared settings (Kafka bootstrap, decisions topic, Redis URL and
prefix) from enforcer.core.settings.Settings; these are only what is its own. Like Settings, an
unknown ENFORCER_SIDECAR_ variable is an error, and every field has a default and a comment
(`SidecarSettings.markdown_table()` prints the README's table).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

from enforcer.core.settings import SettingsError, _convert, _setting, suggest_setting

PREFIX = "ENFORCER_SIDECAR_"


@dataclass(frozen=True, slots=True)
class SidecarSettings:
    host: str = _setting("127.0.0.1", "Address the check endpoint binds to; loopback by default")
    port: int = _setting(6070, "Port of the check endpoint (GET /v1/check)", min=0)
    failure: str = _setting(
        "open",
        "When Kafka (no fresh decisions) or Redis (no shared throttle) is away: 'open' answers "
        "from what is known and allows the rest; 'closed' answers 503",
        choices=("open", "closed"),
    )
    key_header: str = _setting("X-Enforcer-Key", "Request header carrying the API key")
    ip_header: str = _setting("X-Enforcer-Ip", "Request header carrying the client IP (required)")
    account_header: str = _setting("X-Enforcer-Account", "Request header carrying the account id")
    asn_header: str = _setting("X-Enforcer-Asn", "Request header carrying the client's ASN")
    max_header_bytes: int = _setting(
        4096, "Longest request line or header accepted; longer ones are answered 400", min=256
    )
    header_timeout_s: float = _setting(
        5.0,
        "A connection whose request has not arrived whole this long after its first byte (or "
        "after the connection opened) is closed, seconds",
        min=0.1,
    )
    idle_timeout_s: float = _setting(
        60.0,
        "Keep-alive connections idle this long are closed, seconds; keep the gateway's own idle "
        "timeout for its connections to the sidecar shorter",
        min=1.0,
    )
    log_every_s: float = _setting(
        10.0,
        "At most one log line per this many seconds for each kind of repeated event (malformed "
        "requests, failing open, timeouts); each line counts the ones held back",
        min=0,
    )
    max_entries: int = _setting(
        500_000,
        "Most live decisions kept in memory; past it the one expiring soonest is dropped",
        min=1,
    )
    stale_after_s: float = _setting(
        10.0, "Kafka counts as away when no fetch response arrived for this long, seconds", min=0.5
    )
    redis_timeout_s: float = _setting(
        0.1,
        "Longest wait for the shared throttle in Redis before the failure mode applies",
        min=0.001,
    )
    redis_retry_s: float = _setting(
        1.0,
        "After a Redis failure, apply the failure mode without calling Redis for this long",
        min=0,
    )
    throttle_burst_s: float = _setting(
        1.0, "Seconds of its rate a throttled subject may spend at once (GCRA burst)", min=0
    )
    default_limit_rps: float = _setting(
        1.0, "Rate for a throttle decision that carries no limit_rps, requests per second", min=0
    )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> SidecarSettings:
        env = dict(os.environ if env is None else env)
        known = {cls.variable(f.name) for f in fields(cls)}
        unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known)
        if unknown:
            raise SettingsError(
                "unknown sidecar setting(s): "
                + ", ".join(suggest_setting(u, known) for u in unknown)
            )
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = cls.variable(f.name)
            if name in env:
                values[f.name] = _convert(name, env[name], type(f.default))
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    @staticmethod
    def variable(field_name: str) -> str:
        return f"{PREFIX}{field_name.upper()}"

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            name = self.variable(f.name)
            if "min" in f.metadata and value < f.metadata["min"]:
                raise SettingsError(f"{name}={value}: must be >= {f.metadata['min']}")
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                raise SettingsError(f"{name}={value!r}: must be one of {f.metadata['choices']}")
        for f in fields(self):
            if f.name.endswith("_header") and not getattr(self, f.name).strip():
                raise SettingsError(f"{self.variable(f.name)}: must name a header")

    def to_env(self) -> dict[str, str]:
        return {self.variable(f.name): str(getattr(self, f.name)) for f in fields(self)}

    def with_(self, **changes: Any) -> SidecarSettings:
        return replace(self, **changes)

    @classmethod
    def markdown_table(cls) -> str:
        rows = ["| variable | default | meaning |", "|---|---|---|"]
        for f in fields(cls):
            rows.append(f"| `{cls.variable(f.name)}` | `{f.default}` | {f.metadata['doc']} |")
        return "\n".join(rows)
