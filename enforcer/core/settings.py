"""One typed settings object, read from ENFORCER_* environment variables and checked at start-up.

Every field has a default and a comment; the README's settings table is generated from these
fields (`enforcer settings --markdown`), so the two cannot drift apart.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from enforcer.core.logs import REDACTED, redact_text, register_secrets

# Other components read their own ENFORCER_<COMPONENT>_* variables and reject unknown ones
# themselves (the check sidecar: enforcer.gateway.settings.SidecarSettings).
OTHER_COMPONENT_PREFIXES = ("ENFORCER_SIDECAR_",)


DEFAULT_POLICY_FILE = "deploy/policies/default.yaml"
# The checkout's (or image's) own default policy, beside the package.
_PACKAGED_POLICY = Path(__file__).resolve().parents[2] / DEFAULT_POLICY_FILE


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Secrets need this many characters: what `openssl rand -hex 16` prints, at the least.
MIN_SECRET_CHARS = 32
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")


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
    redis_cluster: bool = _setting(
        False,
        "ENFORCER_REDIS_URL names one node of a Redis Cluster: the rest are discovered, and "
        "each script call goes to the node owning its keys' slot",
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
    batch_max: int = _setting(
        2000,
        "Most events taken from the stream per batch. A backlog drains in full batches, each"
        " costing a fixed number of Redis and Kafka round trips; at low rates batches are small",
        min=1,
    )
    feature_process: bool = _setting(
        True,
        "Parse and extract features in a helper process, a batch ahead of the engine, so the"
        " worker uses a second core",
    )
    batch_within_s: float = _setting(
        0.1,
        "Longest wait for a record while the stream is idle, seconds. A batch is whatever "
        "arrived since the last one (up to ENFORCER_BATCH_MAX), so it adds no wait under load",
        min=0.001,
    )
    commit_interval_s: float = _setting(
        0.2,
        "Longest wait before delivered batches' offsets are committed, seconds. Batches "
        "delivered meanwhile share one commit, and a rebalance or a stop commits at once; a "
        "crash reads up to this much again, which the window store recognises. Shorter than "
        "ENFORCER_STALL_AFTER_S",
        min=0.0,
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
    kafka_security_protocol: str = _setting(
        "PLAINTEXT",
        "How every Kafka client connects: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
        choices=KAFKA_SECURITY_PROTOCOLS,
    )
    kafka_ssl_ca_file: str = _setting(
        "", "PEM file of the CA(s) that signed the brokers' certificates (default: system CAs)"
    )
    kafka_ssl_cert_file: str = _setting(
        "", "PEM client certificate, for brokers that require TLS client authentication"
    )
    kafka_ssl_key_file: str = _setting("", "PEM private key of ENFORCER_KAFKA_SSL_CERT_FILE")
    kafka_sasl_mechanism: str = _setting(
        "SCRAM-SHA-512", "SASL mechanism under SASL_* protocols", choices=KAFKA_SASL_MECHANISMS
    )
    kafka_sasl_username: str = _setting("", "SASL user name under SASL_* protocols")
    kafka_sasl_password: str = _setting("", "SASL password under SASL_* protocols", secret=True)
    redis_username: str = _setting(
        "", "Redis ACL user (else the URL's user, else Redis' default user)"
    )
    redis_password: str = _setting("", "Redis password (else the URL's)", secret=True)
    redis_tls_ca_file: str = _setting(
        "", "PEM CA file that signed Redis' certificate, for rediss:// URLs (default: system CAs)"
    )
    redis_tls_cert_file: str = _setting(
        "", "PEM client certificate for a rediss:// Redis that requires TLS client auth"
    )
    redis_tls_key_file: str = _setting("", "PEM private key of ENFORCER_REDIS_TLS_CERT_FILE")
    decision_signing_key: str = _setting(
        "",
        "Shared secret (32+ characters) the worker signs decision records with (HMAC-SHA256) "
        "and gateways verify them by. Unset: records go unsigned and gateways accept any",
        secret=True,
    )
    decision_signing_key_id: str = _setting(
        "k1", "Name of ENFORCER_DECISION_SIGNING_KEY, carried in each signature (rotation)"
    )
    decision_verify_keys: str = _setting(
        "",
        "Further keys gateways accept while a key is rotated out, as id=key[,id=key]",
        secret=True,
    )
    api_key_hash_key: str = _setting(
        "",
        "Secret (32+ characters) for a keyed hash of API keys: decisions, Kafka keys, Redis "
        "and logs carry HMAC-SHA256 of the key instead of the key. Unset: raw keys",
        secret=True,
    )
    deadletter_include_record: bool = _setting(
        False,
        "Dead letters carry the rejected record's bytes (prompts included). Off: only its "
        "digest, size, reason and coordinates",
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
        # Whatever this process logs from here on masks these values.
        register_secrets(settings.secrets())
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
        if self.commit_interval_s >= self.stall_after_s:
            raise SettingsError(
                f"ENFORCER_COMMIT_INTERVAL_S={self.commit_interval_s:g} must be shorter than "
                f"ENFORCER_STALL_AFTER_S={self.stall_after_s:g}: a partition's progress is read "
                "from its commits, so it would count as stalled between them"
            )
        if self.redis_cluster and self.redis_url.startswith("unix://"):
            raise SettingsError(
                "ENFORCER_REDIS_CLUSTER needs a redis:// or rediss:// ENFORCER_REDIS_URL: "
                "a cluster's nodes are reached over TCP"
            )
        self._validate_security()

    def _validate_security(self) -> None:
        """Refuse combinations that would connect without the protection they name, or fail
        only on first use."""
        for name in (
            "kafka_ssl_ca_file",
            "kafka_ssl_cert_file",
            "kafka_ssl_key_file",
            "redis_tls_ca_file",
            "redis_tls_cert_file",
            "redis_tls_key_file",
        ):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise SettingsError(f"ENFORCER_{name.upper()}={path!r}: no such file")
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise SettingsError(
                f"ENFORCER_KAFKA_SECURITY_PROTOCOL={protocol}: needs "
                "ENFORCER_KAFKA_SASL_USERNAME and ENFORCER_KAFKA_SASL_PASSWORD"
            )
        tls_files = self.kafka_ssl_ca_file or self.kafka_ssl_cert_file
        if tls_files and not protocol.endswith("SSL"):
            raise SettingsError(
                f"ENFORCER_KAFKA_SSL_* files are set but ENFORCER_KAFKA_SECURITY_PROTOCOL="
                f"{protocol} does not use TLS"
            )
        if bool(self.kafka_ssl_cert_file) != bool(self.kafka_ssl_key_file):
            raise SettingsError(
                "ENFORCER_KAFKA_SSL_CERT_FILE and ENFORCER_KAFKA_SSL_KEY_FILE go together"
            )
        redis_tls = self.redis_tls_ca_file or self.redis_tls_cert_file or self.redis_tls_key_file
        if redis_tls and not self.redis_url.startswith("rediss://"):
            raise SettingsError("ENFORCER_REDIS_TLS_* files need a rediss:// ENFORCER_REDIS_URL")
        if bool(self.redis_tls_cert_file) != bool(self.redis_tls_key_file):
            raise SettingsError(
                "ENFORCER_REDIS_TLS_CERT_FILE and ENFORCER_REDIS_TLS_KEY_FILE go together"
            )
        for name in ("decision_signing_key", "api_key_hash_key"):
            value = getattr(self, name)
            if value and len(value) < MIN_SECRET_CHARS:
                raise SettingsError(
                    f"ENFORCER_{name.upper()}: must have at least {MIN_SECRET_CHARS} characters"
                )
        if not _KEY_ID.fullmatch(self.decision_signing_key_id):
            raise SettingsError(
                "ENFORCER_DECISION_SIGNING_KEY_ID: 1-32 letters, digits, '.', '_' or '-'"
            )
        self.verify_keys()

    def verify_keys(self) -> dict[str, str]:
        """Every key a decision record may be signed with, by key id: the signing key and the
        ones being rotated out."""
        keys: dict[str, str] = {}
        for item in filter(None, (i.strip() for i in self.decision_verify_keys.split(","))):
            key_id, sep, key = item.partition("=")
            if not sep or not _KEY_ID.fullmatch(key_id) or len(key) < MIN_SECRET_CHARS:
                raise SettingsError(
                    "ENFORCER_DECISION_VERIFY_KEYS: expected id=key[,id=key] with keys of at "
                    f"least {MIN_SECRET_CHARS} characters"
                )
            keys[key_id] = key
        if self.decision_signing_key:
            keys[self.decision_signing_key_id] = self.decision_signing_key
        return keys

    def secrets(self) -> list[str]:
        """The secret values in force: what must never be printed or logged."""
        found = [
            str(getattr(self, f.name))
            for f in fields(self)
            if f.metadata.get("secret") and getattr(self, f.name)
        ]
        found += list(self.verify_keys().values())
        password = urlsplit(self.redis_url).password
        if password:
            found.append(unquote(password))
        return found

    def redacted(self) -> dict[str, str]:
        """Every setting as `enforcer settings` prints it: secrets replaced, URL passwords
        masked."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                out[f"ENFORCER_{f.name.upper()}"] = REDACTED
            else:
                out[f"ENFORCER_{f.name.upper()}"] = redact_text(str(value))
        return out

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
    if kind is bool:
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{name}={raw!r}: expected true or false")
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected {kind.__name__}") from None
    return raw
