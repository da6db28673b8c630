"""The topic catalogue (topics/catalogue.yaml) and `enforcer topics apply`.

Apply is idempotent: it creates missing topics, raises partition counts that are too low and
sets the catalogue's configs on existing topics. It never deletes a topic or lowers a count.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError

from enforcer.core.connections import kafka_options
from enforcer.core.settings import Settings

CATALOGUE = Path(__file__).resolve().parents[2] / "topics" / "catalogue.yaml"
_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True, slots=True)
class TopicSpec:
    role: str
    name: str
    partitions: int
    config: dict[str, str]


def load_catalogue(settings: Settings, path: Path = CATALOGUE) -> list[TopicSpec]:
    """Catalogue entries with names taken from the settings, so tests and deployments can
    rename topics without editing the catalogue."""
    doc = yaml.safe_load(path.read_text())
    names = {
        "events": settings.events_topic,
        "decisions": settings.decisions_topic,
        "deadletter": settings.deadletter_topic,
    }
    return [
        TopicSpec(
            role=t["role"],
            name=names.get(t["role"], t["name"]),
            partitions=int(t["partitions"]),
            config={k: str(v) for k, v in (t.get("config") or {}).items()},
        )
        for t in doc["topics"]
    ]


async def connect_admin(settings: Settings, wait_s: float = 30.0) -> AIOKafkaAdminClient:
    """An admin client, retrying while a just-started broker is still coming up."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        admin = AIOKafkaAdminClient(**kafka_options(settings))
        try:
            await admin.start()
            return admin
        except KafkaConnectionError:
            await admin.close()
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def apply_topics(settings: Settings, specs: list[TopicSpec] | None = None) -> list[str]:
    """Bring the broker in line with the catalogue; returns what was done, one line per change."""
    specs = specs if specs is not None else load_catalogue(settings)
    done: list[str] = []
    admin = await connect_admin(settings)
    try:
        existing = {t["topic"]: t for t in await admin.describe_topics()}
        missing = [s for s in specs if s.name not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(s.name, s.partitions, 1, topic_configs=s.config) for s in missing]
            )
            for topic, code, *rest in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"cannot create topic {topic}: error {code} {rest}")
            done += [f"created {s.name} ({s.partitions} partitions)" for s in missing]
        for spec in specs:
            if spec.name not in existing:
                continue
            have = len(existing[spec.name]["partitions"])
            if have < spec.partitions:
                await admin.create_partitions({spec.name: NewPartitions(spec.partitions)})
                done.append(f"raised {spec.name} from {have} to {spec.partitions} partitions")
            if spec.config:
                await admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=spec.config)]
                )
        await _wait_for_leaders(admin, [s.name for s in specs])
    finally:
        await admin.close()
    return done


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: list[str], wait_s: float = 15.0
) -> None:
    """A topic is usable once every partition has a leader; producing earlier fails."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        topics = await admin.describe_topics(names)
        ready = all(
            t["error_code"] == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in topics
        )
        if ready or loop.time() > deadline:
            return
        await asyncio.sleep(0.2)
