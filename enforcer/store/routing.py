"""Where a pipeline's script calls go: one connection to a single Redis, or one per Redis
Cluster node owning some of the calls' slots.

The window store sends its pipelines by hand so that it can read the replies later; against a
cluster it must also pick the node itself, which redis-py's cluster pipeline does only while
sending and reading in one call. A batch still costs one pipelined round trip per node, the
nodes working in parallel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError

from enforcer.store.client import Script

Call = tuple[Script, list[str], list[Any]]


class CrossSlotCall(ValueError):
    """A script call whose keys hash to more than one cluster slot: a bug in how its keys
    were built (every key of one call carries the same hash tag, see enforcer.store.keys)."""


def call_slot(call: Call) -> int:
    """The one cluster slot of a call's keys."""
    script, key_list, _ = call
    slots = {key_slot(key.encode()) for key in key_list}
    if len(slots) != 1:
        raise CrossSlotCall(f"{script.name}: keys span slots {sorted(slots)}: {key_list[:4]}")
    return slots.pop()


class Lane(NamedTuple):
    """One connection's share of a pipeline: the indexes of the calls sent over it, in order.
    `asking`: each call is preceded by ASKING (an ASK redirect during a slot's migration)."""

    connection: Connection
    owner: Any  # what the connection goes back to: a pool or a cluster node
    indexes: list[int]
    asking: bool = False


class Router(Protocol):
    async def lanes(
        self, calls: Sequence[Call], indexes: Sequence[int], asked: dict[int, AskError]
    ) -> list[Lane]:
        """Connections for the calls at `indexes`, grouped by the server each must reach;
        `asked`: calls to send to an ASK redirect's node instead."""
        ...

    async def release(self, lane: Lane, broken: bool) -> None:
        """The lane's connection goes back; a broken one (unread replies, an error on the
        wire) is disconnected first."""
        ...

    async def moved(self, error: MovedError) -> None:
        """A slot has a new owner: later lanes send its calls there."""
        ...


class SingleRouter:
    """Every call over one pooled connection."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def lanes(
        self, calls: Sequence[Call], indexes: Sequence[int], asked: dict[int, AskError]
    ) -> list[Lane]:
        pool = self.client.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        return [Lane(connection, pool, list(indexes))]

    async def release(self, lane: Lane, broken: bool) -> None:
        if broken:
            await lane.connection.disconnect()
        await lane.owner.release(lane.connection)

    async def moved(self, error: MovedError) -> None:
        raise error  # a single Redis never redirects; a cluster URL without the setting


class ClusterRouter:
    """Calls grouped by the node owning their slot, from redis-py's map of the cluster."""

    def __init__(self, client: RedisCluster) -> None:
        self.client = client

    async def lanes(
        self, calls: Sequence[Call], indexes: Sequence[int], asked: dict[int, AskError]
    ) -> list[Lane]:
        await self.client.initialize()  # once: discovers the nodes and the slot map
        manager = self.client.nodes_manager
        by_node: dict[tuple[str, bool], tuple[ClusterNode, list[int]]] = {}
        for index in indexes:
            ask = asked.get(index)
            if ask is None:
                node = manager.get_node_from_slot(call_slot(calls[index]))
            else:
                host, port = manager.remap_host_port(ask.host, ask.port)
                found = manager.get_node(host=host, port=port)
                node = found or ClusterNode(host, port, **manager.connection_kwargs)
            by_node.setdefault((node.name, ask is not None), (node, []))[1].append(index)
        lanes: list[Lane] = []
        try:
            for (_, asking), (node, members) in by_node.items():
                lanes.append(Lane(node.acquire_connection(), node, members, asking))
        except BaseException:
            for lane in lanes:
                await self.release(lane, broken=False)
            raise
        return lanes

    async def release(self, lane: Lane, broken: bool) -> None:
        if broken:
            await lane.connection.disconnect()
        lane.owner.release(lane.connection)

    async def moved(self, error: MovedError) -> None:
        await self.client.nodes_manager.move_slot(error)


def router_for(client: aioredis.Redis | RedisCluster) -> Router:
    if isinstance(client, RedisCluster):
        return ClusterRouter(client)
    return SingleRouter(client)


class InFlight(NamedTuple):
    """A pipeline on the wire whose replies are not read yet; it holds its lanes'
    connections."""

    calls: list[Call]
    op: str
    lanes: list[Lane]
    started: float
