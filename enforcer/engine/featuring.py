"""Parse and features in a helper process for the live worker, a batch ahead of the engine.

The backtest's helper reads its file itself (enforcer.tools.backtest); the worker's records
come from Kafka, so they are sent here: one pickled list of raw values per batch over a pipe,
and one FeaturedRows back (see enforcer.engine.featurize). The helper is a spawned process, not
a fork, because the worker's process runs threads (the Kafka clients') that a fork would copy
mid-flight. A helper that fails is reported and the batch is featured in-process instead: the
helper only moves work, it never decides anything.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import traceback
from multiprocessing.connection import Connection

from enforcer.engine.featurize import Featured, FeaturedRows, featurize_rows, from_rows


class HelperFailed(RuntimeError):
    """The helper process died or raised; the caller features the batch itself."""


class FeaturingProcess:
    def __init__(self, max_bytes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe(duplex=True)
        self._process = context.Process(
            target=_serve,
            args=(theirs, max_bytes),
            name="enforcer-features",
            daemon=True,
        )
        self._process.start()
        theirs.close()
        # One batch at a time on the pipe: a reply answers the request before it.
        self._lock = asyncio.Lock()

    async def featurize(self, values: list[bytes], sketches: int) -> list[Featured]:
        """The batch's records parsed and featured by the helper, one per value."""
        payload = pickle.dumps((sketches, values), pickle.HIGHEST_PROTOCOL)
        async with self._lock:
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(None, self._round_trip, payload)
        failed, body = pickle.loads(reply)
        if failed:
            raise HelperFailed(f"the feature helper failed:\n{body}")
        return from_rows(body)

    def _round_trip(self, payload: bytes) -> bytes:
        try:
            self._conn.send_bytes(payload)
            return self._conn.recv_bytes()
        except (EOFError, OSError) as exc:
            code = self._process.exitcode
            raise HelperFailed(f"the feature helper ended (exit code {code}): {exc!r}") from None

    def alive(self) -> bool:
        return self._process.is_alive()

    def close(self) -> None:
        self._conn.close()
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout=5)


def _serve(conn: Connection, max_bytes: int) -> None:
    """The helper process: featurize every batch it is sent, until the pipe closes."""
    try:
        while True:
            try:
                sketches, values = pickle.loads(conn.recv_bytes())
            except EOFError:
                return
            reply: tuple[bool, FeaturedRows | str]
            try:
                reply = (False, featurize_rows(values, max_bytes, sketches))
            except Exception:
                reply = (True, traceback.format_exc())
            conn.send_bytes(pickle.dumps(reply, pickle.HIGHEST_PROTOCOL))
    except (BrokenPipeError, KeyboardInterrupt):
        return
