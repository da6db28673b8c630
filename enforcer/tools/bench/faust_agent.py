"""The framework's ceiling: a Faust agent that does nothing with the events it is given.

Run as its own process (`python -m enforcer.tools.bench.faust_agent TOPIC GROUP COUNT OUT`),
a real faust.App with its own consumer, as the worker was before its events left Faust's
per-event stream. It writes the seconds from its first event to its COUNT-th to OUT as JSON
and keeps running until it is stopped; the time to join the group is not in the figure.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import faust
import orjson


def build(bootstrap: str, topic_name: str, group: str, count: int, out: Path) -> faust.App:
    datadir = os.path.join(tempfile.gettempdir(), "enforcer-faust", group)
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=datadir,
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")

    @app.agent(topic)
    async def do_nothing(stream: faust.StreamT[bytes]) -> None:
        seen = 0
        first = 0.0
        async for _ in stream.events():
            seen += 1
            if seen == 1:
                first = time.perf_counter()
            if seen == count:
                elapsed = time.perf_counter() - first
                out.write_bytes(orjson.dumps({"events": count - 1, "seconds": elapsed}))

    return app


def main(argv: list[str]) -> None:
    topic, group, count, out = argv
    bootstrap = os.environ.get("ENFORCER_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    app = build(bootstrap, topic, group, int(count), Path(out))
    worker = faust.Worker(app, loglevel="warning", redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
