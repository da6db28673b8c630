"""Structured logs: one JSON object per line for the enforcer.* loggers.

A log line carries the message and whatever the caller passed in `extra` (the worker passes
each decision, reasons included). Log pipelines are read by more people than the policy is,
so the formatter scrubs what must never reach them: fields named like prompt text or
secrets, and credentials inside URLs (a Redis URL with a password in an error message).
Faust's and the Kafka clients' loggers write through the same formatter, so stderr is one
JSON stream a log shipper can parse line by line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

REDACTED = "[redacted]"
# Field names whose values never reach a log line, at any depth of an `extra` value.
SECRET_FIELDS = frozenset(
    {"prompt", "system", "password", "secret", "token", "authorization", "api_secret", "cookie"}
)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]*:[^/\s@]*@")
# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


# Secret values in force (signing keys, passwords), registered at start-up: a line that
# quotes one, in a message, a field or a traceback, has it masked.
_secret_values: set[str] = set()
_SHORTEST_SECRET = 6  # shorter "secrets" would mask ordinary words


def register_secrets(values: Iterable[str]) -> None:
    _secret_values.update(v for v in values if len(v) >= _SHORTEST_SECRET)


def redact_text(text: str) -> str:
    text = _URL_CREDENTIALS.sub(rf"\g<scheme>{REDACTED}@", text)
    for secret in _secret_values:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED if str(k).lower() in SECRET_FIELDS else scrub(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", ...extra, "exc"?}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = REDACTED if key.lower() in SECRET_FIELDS else scrub(value)
        if record.exc_info:
            doc["exc"] = redact_text(self.formatException(record.exc_info))
        return orjson.dumps(doc, default=str).decode()


def worker_logging_config(level: str) -> dict[str, Any]:
    """A logging.config dict the Faust worker merges into its own. Faust's root handler is
    named "default" (mode.utils.logging); replacing it sends Faust's, aiokafka's and every
    other library's lines through the JSON formatter to stderr, beside enforcer's own."""
    json_to_stderr = {
        "class": "logging.StreamHandler",
        "formatter": "enforcer_json",
        "stream": "ext://sys.stderr",
    }
    return {
        "merge": True,
        "version": 1,
        "formatters": {"enforcer_json": {"()": "enforcer.core.logs.JsonFormatter"}},
        "handlers": {"enforcer_json": json_to_stderr, "default": json_to_stderr},
        "loggers": {
            "enforcer": {
                "handlers": ["enforcer_json"],
                "level": level.upper(),
                "propagate": False,
            }
        },
    }
