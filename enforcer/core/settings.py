"""One typed settings object, read from ENFORCER_* environment variables and checked at start-up.

Every field has a default and a comment; the README's settings table is generated from these
fields (`enforcer settings --markdown`), so the two cannot drift apart.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# Other components read their own ENFORCER_<COMPONENT>_* variables and reject unknown ones
# themselves (the check sidecar: enforcer.gateway.settings.SidecarSettings).
OTHER_COMPONENT_PREFIXES = ("ENFORCER_SIDECAR_",)


DEFAULT_POLICY_FILE = "deploy/policies/default.yaml"
# The checkout's (or image's) own default policy, beside the package.
_PACKAGED_POLICY = Path(__file__).resolve().parents[2] / DEFAULT_POLICY_FILE


class SettingsError(ValueError):
    """A setting is missing, malformed or out of range; the message names the variable."""


def _setting(default: Any, doc: str, **checks: Any) -> Any:
    return field(default=default, metadata={"doc": doc, **checks})


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = _setting(
        "127.0.0.1:19092", "Kafka bootstrap servers, host:port[,host:port]"
    )
    redis_url: str = _setting(
        "redis://127.0.0.1:16379/0", "Redis URL for windows and decision state"
    )
    redis_prefix: str = _setting(
        "enf", "Prefix of every Redis key; tests and backtests use their own to stay isolated"
    )
    redis_timeout_s: float = _setting(2.0, "Socket timeout of a Redis call, seconds", min=0.01)
    redis_failure: str = _setting(
        "wait",
        "When Redis fails: 'wait' retries the batch (events stay in Kafka, lag grows); "
        "'skip' drops the batch's counting and moves on (gateway keeps its last decisions)",
        choices=("wait", "skip"),
    )
    events_topic: str = _setting("gateway.events", "Topic of gateway request events")
    decisions_topic: str = _setting("enforcer.decisions", "Compacted topic of decisions")
    deadletter_topic: str = _setting(
        "enforcer.deadletter", "Topic of rejected events with the reason"
    )
    app_id: str = _setting("enforcer", "Faust app id, also the Kafka consumer group")
    policy_file: str = _setting(
        DEFAULT_POLICY_FILE,
        "Policy file the worker enforces (default: the checkout's own when not under the"
        " working directory)",
    )
    batch_max: int = _setting(500, "Most events taken from the stream per batch", min=1)
    batch_within_s: float = _setting(
        0.1,
        "Longest wait for a record while the stream is idle, seconds. A batch is whatever "
        "arrived since the last one (up to ENFORCER_BATCH_MAX), so it adds no wait under load",
        min=0.001,
    )
    kafka_session_timeout_s: float = _setting(
        6.0,
        "Consumer group session timeout, seconds: how long a worker that died without leaving "
        "the group holds its partitions before the others take them (the broker's "
        "group.min.session.timeout.ms, 6 s by default, is the floor)",
        min=1.0,
    )
    stall_after_s: float = _setting(
        30.0,
        "A partition with lag whose processed offset has not moved for this long counts as "
        "stalled: /readyz fails and enforcer_partition_stalled reads 1",
        min=1.0,
    )
    crash_at: str = _setting(
        "",
        "Fault tests only: kill the worker (SIGKILL) at this point of the first batch that "
        "publishes a decision. Never set in production",
        choices=("", "before_publish", "before_confirm", "before_commit"),
    )
    max_event_bytes: int = _setting(
        65536, "Largest accepted event; bigger ones go to the dead-letter topic", min=256
    )
    allowed_lateness_s: float = _setting(
        120.0, "How far behind the stream's event time an event may be and still count", min=0
    )
    max_future_skew_s: float = _setting(
        30.0, "How far ahead of the wall clock an event's ts may be", min=0
    )
    content_window_s: int = _setting(
        600,
        "Window of template shares and campaign sizes, seconds "
        "(two rotating epochs of this length)",
        min=60,
    )
    decision_renew_before_s: float = _setting(
        60.0, "Re-issue an active decision when it has less than this left and still holds", min=0
    )
    web_port: int = _setting(6066, "Port of the worker's HTTP endpoints (metrics, health)", min=0)
    web_host: str = _setting("127.0.0.1", "Address the worker's HTTP endpoints bind to")
    log_level: str = _setting(
        "info", "Worker log level", choices=("debug", "info", "warning", "error")
    )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ENFORCER_<FIELD> variables; an unknown ENFORCER_ variable is an error, not a typo
        that silently leaves a default in force."""
        env = dict(os.environ if env is None else env)
        known = {f"ENFORCER_{f.name.upper()}" for f in fields(cls)}
        # Variables the local stack scripts read (ports, folders) are not worker settings.
        stack_only = {
            "ENFORCER_KAFKA_PORT",
            "ENFORCER_KAFKA_CONTROLLER_PORT",
            "ENFORCER_REDIS_PORT",
            "ENFORCER_STACK_DIR",
            "ENFORCER_KAFKA_HEAP",
        }
        unknown = sorted(
            k
            for k in env
            if k.startswith("ENFORCER_")
            and k not in known | stack_only
            and not k.startswith(OTHER_COMPONENT_PREFIXES)
        )
        if unknown:
            raise SettingsError(
                "unknown setting(s): " + ", ".join(suggest_setting(u, known) for u in unknown)
            )
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f"ENFORCER_{f.name.upper()}"
            if name in env:
                values[f.name] = _convert(name, env[name], type(f.default))
        values.update(overrides)
        # `enforcer backtest` run from outside the checkout would otherwise refuse with "cannot
        # read" for want of a --policy that the default was meant to spare.
        if (
            "policy_file" not in values
            and not Path(DEFAULT_POLICY_FILE).exists()
            and _PACKAGED_POLICY.exists()
        ):
            values["policy_file"] = str(_PACKAGED_POLICY)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            name = f"ENFORCER_{f.name.upper()}"
            if "min" in f.metadata and value < f.metadata["min"]:
                raise SettingsError(f"{name}={value}: must be >= {f.metadata['min']}")
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                raise SettingsError(f"{name}={value!r}: must be one of {f.metadata['choices']}")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(f"ENFORCER_REDIS_URL={self.redis_url!r}: not a redis:// URL")

    def to_env(self) -> dict[str, str]:
        """The ENFORCER_* variables that reproduce these settings in a child process."""
        return {f"ENFORCER_{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def markdown_table(cls) -> str:
        rows = ["| variable | default | meaning |", "|---|---|---|"]
        for f in fields(cls):
            rows.append(f"| `ENFORCER_{f.name.upper()}` | `{f.default}` | {f.metadata['doc']} |")
        return "\n".join(rows)


def suggest_setting(name: str, known: set[str]) -> str:
    """`NAME (did you mean ENFORCER_X?)` when a known name is close: a typo names its fix."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return f"{name} (did you mean {close[0]}?)" if close else name


def _convert(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected {kind.__name__}") from None
    return raw
