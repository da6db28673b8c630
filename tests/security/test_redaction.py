"""Secrets stay out of what operators paste around: `enforcer settings` and the JSON logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import orjson
import pytest

from enforcer.core.logs import REDACTED, JsonFormatter
from enforcer.core.settings import Settings, SettingsError

SECRETS = {
    "ENFORCER_REDIS_URL": "redis://enforcer:redis-url-pass-77@127.0.0.1:16379/0",
    "ENFORCER_REDIS_PASSWORD": "redis-acl-password-88",
    "ENFORCER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "ENFORCER_KAFKA_SASL_USERNAME": "enforcer",
    "ENFORCER_KAFKA_SASL_PASSWORD": "sasl-password-99",
    "ENFORCER_DECISION_SIGNING_KEY": "signing-key-" + "0123456789" * 3,
    "ENFORCER_DECISION_VERIFY_KEYS": "old=old-signing-key-" + "9876543210" * 3,
    "ENFORCER_API_KEY_HASH_KEY": "hash-key-" + "abcdefghij" * 3,
}
PLAIN_SECRETS = [
    "redis-url-pass-77",
    "redis-acl-password-88",
    "sasl-password-99",
    SECRETS["ENFORCER_DECISION_SIGNING_KEY"],
    SECRETS["ENFORCER_DECISION_VERIFY_KEYS"].split("=", 1)[1],
    SECRETS["ENFORCER_API_KEY_HASH_KEY"],
]


def test_settings_command_masks_every_secret_and_keeps_the_rest() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENFORCER_")}
    env.update(SECRETS)
    done = subprocess.run(
        [sys.executable, "-m", "enforcer", "settings"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for secret in PLAIN_SECRETS:
        assert secret not in done.stdout
    lines = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert lines["ENFORCER_KAFKA_SASL_PASSWORD"] == REDACTED
    assert lines["ENFORCER_DECISION_SIGNING_KEY"] == REDACTED
    assert lines["ENFORCER_REDIS_URL"] == f"redis://{REDACTED}@127.0.0.1:16379/0"
    assert lines["ENFORCER_KAFKA_SASL_USERNAME"] == "enforcer"
    assert lines["ENFORCER_API_KEY_HASH_KEY"] == REDACTED


def test_log_lines_mask_secret_values_in_messages_fields_and_tracebacks() -> None:
    Settings.from_env(dict(SECRETS))  # registers the values in force
    password = "sasl-password-99"
    try:
        raise RuntimeError(f"authentication failed for enforcer/{password}")
    except RuntimeError:
        exc_info = sys.exc_info()
    rec = logging.LogRecord(
        "enforcer.worker",
        logging.ERROR,
        __file__,
        1,
        "connecting with key %s",
        (SECRETS["ENFORCER_DECISION_SIGNING_KEY"],),
        exc_info,
    )
    rec.__dict__["upstream"] = {"url": SECRETS["ENFORCER_REDIS_URL"], "note": password}
    line = JsonFormatter().format(rec)
    for secret in PLAIN_SECRETS:
        assert secret not in line
    doc = orjson.loads(line)
    assert doc["message"] == f"connecting with key {REDACTED}"
    assert doc["upstream"]["note"] == REDACTED


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ENFORCER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs ENFORCER_KAFKA_SASL_USERNAME"),
        ({"ENFORCER_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"}, "no such file"),
        ({"ENFORCER_DECISION_SIGNING_KEY": "short"}, "at least 32 characters"),
        ({"ENFORCER_API_KEY_HASH_KEY": "short"}, "at least 32 characters"),
        ({"ENFORCER_DECISION_VERIFY_KEYS": "k1"}, "expected id=key"),
        ({"ENFORCER_DECISION_SIGNING_KEY_ID": "a:b"}, "ENFORCER_DECISION_SIGNING_KEY_ID"),
        ({"ENFORCER_DEADLETTER_INCLUDE_RECORD": "maybe"}, "expected true or false"),
    ],
)
def test_insecure_or_broken_security_settings_are_refused_at_start_up(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
