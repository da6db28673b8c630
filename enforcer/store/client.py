"""Talking to Redis: the connection that packs commands in C, Lua scripts called by SHA, and
where failures become StorageError and round trips are reported."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, Protocol

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError, ResponseError

from enforcer.core.ports import StorageError

# A single Redis or a Redis Cluster (ENFORCER_REDIS_CLUSTER): every command enforcer sends
# outside its hand-made pipelines means the same on both.
AnyRedis = aioredis.Redis | RedisCluster


class HiredisPackConnection(Connection):
    """redis-py's asyncio connection packs commands in Python, argument by argument; a batch
    sends tens of thousands of keys, so this packs them with hiredis' C encoder instead, as the
    synchronous client already does."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):
            args = tuple(args[0].encode().split()) + args[1:]
        return [hiredis.pack_command(args)]


class StoreObserver(Protocol):
    """Where the store reports its round trips and failures: the worker passes its metrics,
    so that the store needs no metrics registry of its own."""

    def call_finished(self, op: str, seconds: float) -> None: ...

    def call_failed(self, op: str, kind: str) -> None: ...


class Unobserved:
    def call_finished(self, op: str, seconds: float) -> None:
        pass

    def call_failed(self, op: str, kind: str) -> None:
        pass


@contextmanager
def storage_errors(op: str, observer: StoreObserver) -> Iterator[None]:
    """Redis failures become StorageError here, where they enter enforcer, and are reported."""
    try:
        yield
    except ResponseError as exc:
        observer.call_failed(op, "script")
        raise StorageError(f"redis script failed: {exc}{_part_of(str(exc))}") from exc
    except (TimeoutError, RedisError, OSError) as exc:
        observer.call_failed(op, "unavailable")
        raise StorageError(f"redis unavailable: {exc}") from exc


class Script:
    """A Lua script shipped beside the code that calls it, called by SHA inside pipelines and
    loaded on NOSCRIPT.

    redis-py's own pipeline scripts check SCRIPT EXISTS before every execute, an extra round
    trip per batch on the hot path; this costs one only after a Redis restart."""

    def __init__(
        self,
        name: str,
        package: str = "enforcer.store.scripts",
        constants: dict[str, int] | None = None,
    ) -> None:
        self.name = name.removesuffix(".lua")
        # Numbers both sides must agree on (a reply's layout) are written once, in Python,
        # and reach the script as locals declared ahead of its source.
        prelude = [
            (f"local {k} = {v}\n", "(constants)", i + 1)
            for i, (k, v) in enumerate((constants or {}).items())
        ]
        lines = prelude + _spliced(package, name)
        self.source = "".join(text for text, _, _ in lines)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()
        # Where each line of the source sent comes from: Redis names a failing line by its
        # number in the whole spliced source.
        self._origins = [(part, n) for _, part, n in lines]
        _SCRIPTS[self.sha] = self

    def origin(self, line: int) -> str:
        """The part file and line that line `line` (1-based) of the source sent comes from."""
        if not 1 <= line <= len(self._origins):
            return f"{self.name}.lua:?"
        part, n = self._origins[line - 1]
        return f"{part}:{n}"

    async def load(self, client: AnyRedis) -> None:
        """On a cluster, every primary loads it (redis-py sends SCRIPT LOAD to all)."""
        await client.script_load(self.source)


_INCLUDE = "-- include: "
# Scripts by SHA, so that a script error Redis reports can be traced to its part file.
_SCRIPTS: dict[str, Script] = {}
_FAILED_LINE = re.compile(r"user_script:(\d+)")
_FAILED_SCRIPT = re.compile(r"script: ([0-9a-f]{40})")


def _spliced(package: str, name: str, within: tuple[str, ...] = ()) -> list[tuple[str, str, int]]:
    """A script's source lines, each with its file and line number, with each `-- include:
    part.lua` line replaced by that file of the same package. Redis runs one chunk per script,
    so a long script is kept in parts this way; a part reads the locals declared above its
    include line."""
    if name in within:
        raise ValueError(f"{name} includes itself (through {' -> '.join(within)})")
    try:
        text = resources.files(package).joinpath(name).read_text()
    except FileNotFoundError:
        where = f" (included by {within[-1]})" if within else ""
        raise FileNotFoundError(f"Lua script {name} not found in {package}{where}") from None
    out: list[tuple[str, str, int]] = []
    for n, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.startswith(_INCLUDE):
            out += _spliced(package, line[len(_INCLUDE) :].strip(), (*within, name))
        else:
            out.append((line, name, n))
    return out


def _part_of(message: str) -> str:
    """ " (at part.lua:N)" for an error of a known script: the file and line a reader opens,
    where Redis names the line's number in the spliced source it ran."""
    line, sha = _FAILED_LINE.search(message), _FAILED_SCRIPT.search(message)
    script = _SCRIPTS.get(sha.group(1)) if sha else None
    if line is None or script is None:
        return ""
    return f" (at {script.origin(int(line.group(1)))})"


def redis_client(
    url: str,
    timeout_s: float = 2.0,
    redis_options: dict[str, Any] | None = None,
    cluster: bool = False,
) -> AnyRedis:
    """`redis_options`: credentials and TLS files (enforcer.core.connections); `cluster`:
    the URL names one node of a Redis Cluster, whose other nodes are discovered."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        **(redis_options or {}),
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    if url.startswith("redis://"):  # TLS and unix sockets keep redis-py's own classes
        options["connection_class"] = HiredisPackConnection
    return aioredis.Redis.from_url(url, **options)
