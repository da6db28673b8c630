"""Structured logs: one JSON object per line, never prompt text or credentials."""

from __future__ import annotations

import logging

import orjson

from enforcer.core.logs import REDACTED, JsonFormatter, worker_logging_config
from enforcer.core.settings import Settings


def record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom\nsecond line")
        except RuntimeError:
            import sys

            exc_info = sys.exc_info()
    rec = logging.LogRecord("enforcer.worker", logging.INFO, __file__, 1, msg, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def test_each_record_is_one_json_line_carrying_its_extra_fields() -> None:
    reasons = [{"signal": "rps", "value": 9.1}]
    decision = {"action": "block", "rule": "key-flood", "reasons": reasons}
    line = JsonFormatter().format(record("decision", decision=decision, exc=True))
    assert "\n" not in line
    doc = orjson.loads(line)
    assert doc["level"] == "info"
    assert doc["logger"] == "enforcer.worker"
    assert doc["message"] == "decision"
    assert doc["decision"] == decision
    assert "boom" in doc["exc"]
    assert doc["ts"].endswith("+00:00")


def test_prompt_text_secrets_and_url_credentials_never_reach_a_log_line() -> None:
    line = JsonFormatter().format(
        record(
            "redis failed at %s",
            "redis://:hunter2@10.0.0.5:6379/0",
            event={"api_key": "k1", "prompt": "SECRET PROMPT", "nested": [{"system": "SYS"}]},
            password="pw",
        )
    )
    for secret in ("hunter2", "SECRET PROMPT", "SYS", '"pw"'):
        assert secret not in line
    doc = orjson.loads(line)
    assert doc["message"] == f"redis failed at redis://{REDACTED}@10.0.0.5:6379/0"
    assert doc["event"]["prompt"] == REDACTED
    assert doc["event"]["api_key"] == "k1"
    assert doc["password"] == REDACTED


def test_the_worker_writes_one_json_stream_with_a_start_up_line(
    kafka_settings,  # type: ignore[no-untyped-def]
    worker_factory,  # type: ignore[no-untyped-def]
) -> None:
    """Faust's own lines and the Kafka client's go through the JSON formatter; no banner."""
    worker = worker_factory(kafka_settings)
    worker.stop()
    lines = [line for line in worker.log().splitlines() if line.strip()]
    docs = []
    for line in lines:
        try:
            docs.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line[:200]!r}") from None
    assert any(d["logger"].startswith("faust") for d in docs)
    assert any(d["logger"].startswith("aiokafka") for d in docs)
    [started] = [d for d in docs if d["message"] == "worker started"]
    assert started["topics"] == {
        "events": kafka_settings.events_topic,
        "decisions": kafka_settings.decisions_topic,
        "deadletter": kafka_settings.deadletter_topic,
    }
    assert started["policy_version"].startswith("default@")
    assert started["web"].endswith(f":{worker.settings.web_port}")


def test_a_worker_logging_at_warning_leaves_library_debug_calls_disabled(
    isolated: Settings,
) -> None:
    # Faust's terminal spinner set the root logger to DEBUG at warning and above, so every
    # aiokafka debug call built a record the handlers then dropped.
    from enforcer.worker.app import _ServiceWorker, create_app

    settings = isolated.with_(log_level="warning")
    saved = logging.root.level, list(logging.root.handlers)
    try:
        worker = _ServiceWorker(
            create_app(settings),
            quiet=True,
            loglevel=settings.log_level,
            redirect_stdouts=False,
            logging_config=worker_logging_config(settings.log_level),
        )
        worker._setup_logging()
        assert logging.root.level == logging.WARNING
        assert not logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.DEBUG)
    finally:
        logging.root.setLevel(saved[0])
        logging.root.handlers[:] = saved[1]
