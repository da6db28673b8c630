"""`enforcer topics apply` against the real broker: creates, then changes nothing."""

from __future__ import annotations

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from enforcer.core.settings import Settings
from enforcer.core.topics import apply_topics, connect_admin, load_catalogue


async def test_apply_creates_the_catalogue_and_is_idempotent(
    settings: Settings, topic_prefix: str
) -> None:
    s = settings.with_(
        events_topic=f"{topic_prefix}ev",
        decisions_topic=f"{topic_prefix}dec",
        deadletter_topic=f"{topic_prefix}dlq",
    )
    first = await apply_topics(s)
    second = await apply_topics(s)
    assert sorted(first) == sorted(
        [
            f"created {topic_prefix}ev (8 partitions)",
            f"created {topic_prefix}dec (4 partitions)",
            f"created {topic_prefix}dlq (1 partitions)",
        ]
    )
    assert second == []
    admin = await connect_admin(s)
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, s.decisions_topic)]
        )
        configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
        assert configs["cleanup.policy"] == "compact"
        topics = {
            t["topic"]: len(t["partitions"]) for t in await admin.describe_topics([s.events_topic])
        }
        assert topics[s.events_topic] == 8
    finally:
        await admin.close()


def test_catalogue_names_follow_the_settings(settings: Settings) -> None:
    specs = {t.role: t.name for t in load_catalogue(settings.with_(events_topic="x.events"))}
    assert specs == {
        "events": "x.events",
        "decisions": settings.decisions_topic,
        "deadletter": settings.deadletter_topic,
    }
