"""The worker creates its tables' changelog topics before it starts, as Faust declares them:
a changelog topic Faust made only after the worker subscribed could be missing from the
consumer's metadata, and the first OrderPaid crashed the agent on PartitionsMismatch."""

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from ranking.config import Settings
from ranking.stream.app import SalesStream
from shopkit.messaging.kafka import ensure_topics
from shopkit.testing import delete_topics, unique


async def test_changelog_topics_are_created_with_the_tables_partitions_and_lifetime(
    settings: Settings,
) -> None:
    own = settings.model_copy(update={"kafka_topic_prefix": unique("t.changelog.") + "."})
    stream = SalesStream(own)
    wanted = {t.name: t for t in stream.changelog_topics()}
    assert {name.rsplit("-", 2)[-2] for name in wanted} == {"sales", "event_ids"}
    admin = AIOKafkaAdminClient(bootstrap_servers=own.kafka_bootstrap_servers)
    await admin.start()
    try:
        await ensure_topics(own, [], exact=list(wanted.values()))
        await ensure_topics(own, [], exact=list(wanted.values()))  # again: nothing to do
        described = await admin.describe_topics(list(wanted))
        partitions = {d["topic"]: len(d["partitions"]) for d in described}
        assert partitions == dict.fromkeys(wanted, own.kafka_topic_partitions)
        answers = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted]
        )
        configs = {
            resource[3]: {entry[0]: entry[1] for entry in resource[4]}
            for answer in answers
            for resource in answer.resources
        }
        for name in wanted:
            assert configs[name]["cleanup.policy"] == "compact,delete"
        sales = next(n for n in wanted if "-sales-" in n)
        days_ms = own.retention_days * 86_400_000
        assert int(configs[sales]["retention.ms"]) == days_ms
    finally:
        await admin.close()
        await delete_topics({own.kafka_topic_prefix})
