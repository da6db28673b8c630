"""Parse and features in a helper process for the live worker, a batch ahead of the engine.

The backtest's helper reads its file itself (enforcer.tools.backtest); the worker's records
come from Kafka, so they are sent here: one pickled list of raw values per batch over a socket
pair, and one FeaturedRows back (see enforcer.engine.featurize). The helper is a spawned
process, not a fork, because the worker's process runs threads (the Kafka clients') that a fork
would copy mid-flight. A helper that fails is reported and the batch is featured in-process
instead: the helper only moves work, it never decides anything.

The worker's end of the socket is read and written by its event loop, not by a pool thread
blocked on a pipe, which, woken by the helper's reply, had to win the GIL from the engine
before the loop heard of it (at 5,000 events/s the difference was within the noise: this is
one thread fewer, not a speed-up). Each message is an 8-byte little-endian length and the
pickled body.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import pickle
import socket
import struct
import traceback

from enforcer.engine.featurize import Featured, FeaturedRows, featurize_rows, from_rows


class HelperFailed(RuntimeError):
    """The helper process died or raised; the caller features the batch itself."""


_LENGTH = struct.Struct("<Q")


class FeaturingProcess:
    def __init__(self, max_bytes: int) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = socket.socketpair()
        self._process = context.Process(
            target=_serve,
            args=(theirs, max_bytes),
            name="enforcer-features",
            daemon=True,
        )
        self._process.start()
        theirs.close()
        self._socket = ours
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        # One batch at a time on the socket: a reply answers the request before it.
        self._lock = asyncio.Lock()

    async def featurize(self, values: list[bytes], sketches: int) -> list[Featured]:
        """The batch's records parsed and featured by the helper, one per value."""
        payload = _framed(pickle.dumps((sketches, values), pickle.HIGHEST_PROTOCOL))
        # The round trip runs to its end even when its caller is cancelled (a stopping worker):
        # a reply left unread would answer the next batch's request.
        trip = asyncio.ensure_future(self._round_trip(payload))
        trip.add_done_callback(_retrieve)
        failed, body = pickle.loads(await asyncio.shield(trip))
        if failed:
            raise HelperFailed(f"the feature helper failed:\n{body}")
        return from_rows(body)

    async def _round_trip(self, payload: bytes) -> bytes:
        async with self._lock:
            try:
                reader, writer = await self._open()
                writer.write(payload)
                await writer.drain()
                (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                return await reader.readexactly(size)
            except (asyncio.IncompleteReadError, OSError) as exc:
                code = self._process.exitcode
                raise HelperFailed(
                    f"the feature helper ended (exit code {code}): {exc!r}"
                ) from None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # Streams belong to the running loop, so they are made at the first batch.
        if self._streams is None:
            self._streams = await asyncio.open_unix_connection(sock=self._socket)
        return self._streams

    def alive(self) -> bool:
        return self._process.is_alive()

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
        else:
            self._socket.close()
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout=5)


def _framed(body: bytes) -> bytes:
    """A message as one write: a length sent on its own would wake the reader for 8 bytes, and
    each wake-up of the other process is a context switch on a busy machine."""
    return _LENGTH.pack(len(body)) + body


def _retrieve(trip: asyncio.Future[bytes]) -> None:
    """A round trip whose caller was cancelled still ends; its failure is not worth a warning."""
    if not trip.cancelled():
        trip.exception()


def _serve(sock: socket.socket, max_bytes: int) -> None:
    """The helper process: featurize every batch it is sent, until the socket closes."""
    incoming = sock.makefile("rb")
    try:
        while True:
            head = incoming.read(_LENGTH.size)
            if len(head) < _LENGTH.size:
                return  # the worker closed its end
            (size,) = _LENGTH.unpack(head)
            message = incoming.read(size)
            if len(message) < size:
                return
            sketches, values = pickle.loads(message)
            reply: tuple[bool, FeaturedRows | str]
            try:
                reply = (False, featurize_rows(values, max_bytes, sketches))
            except Exception:
                reply = (True, traceback.format_exc())
            sock.sendall(_framed(pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)))
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        return
    finally:
        with contextlib.suppress(OSError):
            sock.close()
