"""Make sure the topics exist before the first record: create them, or say which one is missing.

With ``kafka.create_topics`` on (the default), missing topics are created with
``kafka.topic_creation`` (partitions, replication factor, configs such as retention); topics
that exist are left as they are. With it off, a missing topic stops the bridge at start with a
:class:`~bridge.errors.TopicMissing` naming it, instead of a producer that waits on metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError as AIOKafkaError

from bridge.config import KafkaConfig
from bridge.errors import KafkaError, TopicMissing
from bridge.kafka_connection import connection_options

log = logging.getLogger(__name__)

_NO_ERROR = 0
_TOPIC_ALREADY_EXISTS = 36


def _new_topic(name: str, config: KafkaConfig, *, compacted: bool) -> NewTopic:
    creation = config.topic_creation
    if compacted:  # a small, keyed state topic: one partition, the last value per key kept
        topic = NewTopic(name, 1, 1, topic_configs={"cleanup.policy": "compact"})
    else:
        topic = NewTopic(name, creation.partitions, 1, topic_configs=dict(creation.config))
    # aiokafka's NewTopic refuses -1 (the broker's default.replication.factor, KIP-464) in its
    # constructor, although brokers accept it; set it after construction.
    topic.replication_factor = creation.replication_factor
    return topic


async def ensure_topics(config: KafkaConfig, names: list[str], *, compacted: tuple[str, ...] = ()) -> list[str]:
    """Create the missing topics among ``names`` (or refuse to start); returns those created.

    Topics in ``compacted`` (among ``names``) are created with one partition and ``cleanup.policy=compact``.

    Raises:
        TopicMissing: a topic does not exist and ``create_topics`` is off.
        KafkaError: the brokers did not answer within the request timeout, or refused a creation.
    """
    admin = AIOKafkaAdminClient(**connection_options(config))
    try:
        return await _ensure(admin, config, names, compacted)
    except (TimeoutError, AIOKafkaError, OSError) as exc:
        raise KafkaError(
            f"cannot check or create topics at {config.bootstrap_servers} ({type(exc).__name__}: {exc}); "
            "check kafka.bootstrap_servers and the security settings"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)


async def _ensure(
    admin: AIOKafkaAdminClient, config: KafkaConfig, names: list[str], compacted: tuple[str, ...]
) -> list[str]:
    timeout = config.request_timeout_seconds
    await asyncio.wait_for(admin.start(), timeout)
    # list_topics, not describe_topics: aiokafka's describe asks with auto-creation allowed, and a
    # broker with auto.create.topics.enable would create the topic with its defaults right there.
    existing = set(await asyncio.wait_for(admin.list_topics(), timeout))
    missing = [name for name in names if name not in existing]
    if not missing:
        return []
    if not config.create_topics:
        raise TopicMissing(
            f"topic {missing[0]!r} does not exist"
            + (f" (nor {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else "")
            + " and kafka.create_topics is off: create it or turn creation on"
        )
    response = await asyncio.wait_for(
        admin.create_topics([_new_topic(name, config, compacted=name in compacted) for name in missing]), timeout
    )
    for topic, code, message in response.topic_errors:
        if code not in (_NO_ERROR, _TOPIC_ALREADY_EXISTS):
            raise KafkaError(f"cannot create topic {topic!r}: {message} (Kafka error {code})")
    creation = config.topic_creation
    log.info(
        "created topics %s (%d partitions, replication %s)",
        ", ".join(missing),
        creation.partitions,
        "broker default" if creation.replication_factor == -1 else creation.replication_factor,
    )
    return missing
