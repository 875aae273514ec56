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
import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.structs import TopicPartition

from bridge.config_kafka import KafkaConfig
from bridge.errors import KafkaError, TopicMissing
from bridge.kafka_connection import connection_options, describe_error

log = logging.getLogger(__name__)

_NO_ERROR = 0
_TOPIC_ALREADY_EXISTS = 36


def _new_topic(name: str, config: KafkaConfig, *, compacted: int | None) -> NewTopic:
    creation = config.topic_creation
    if compacted is not None:  # a small, keyed state topic: the last value per key kept
        # Short segments, so the records of a heartbeat-writing topic are compacted within minutes.
        topic = NewTopic(name, compacted, 1, topic_configs={"cleanup.policy": "compact", "segment.ms": "600000"})
    else:
        topic = NewTopic(name, creation.partitions, 1, topic_configs=dict(creation.config))
    # aiokafka's NewTopic refuses -1 (the broker's default.replication.factor, KIP-464) in its
    # constructor, although brokers accept it; set it after construction.
    topic.replication_factor = creation.replication_factor
    return topic


async def ensure_topics(
    config: KafkaConfig, names: list[str], *, compacted: Mapping[str, int] | None = None
) -> list[str]:
    """Create the missing topics among ``names`` (or refuse to start); returns those created.

    Topics in ``compacted`` (among ``names``, with their partition counts) are created with
    ``cleanup.policy=compact``.

    Raises:
        TopicMissing: a topic does not exist and ``create_topics`` is off.
        KafkaError: the brokers did not answer within the request timeout, or refused a creation.
    """
    admin = AIOKafkaAdminClient(**connection_options(config))
    try:
        return await _ensure(admin, config, names, dict(compacted or {}))
    except (TimeoutError, AIOKafkaError, OSError) as exc:
        raise KafkaError(
            f"cannot check or create topics at {config.bootstrap_servers} ({_reason(exc, config)}); "
            "check kafka.bootstrap_servers and the security settings"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)


async def _ensure(
    admin: AIOKafkaAdminClient, config: KafkaConfig, names: list[str], compacted: dict[str, int]
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
        admin.create_topics([_new_topic(name, config, compacted=compacted.get(name)) for name in missing]), timeout
    )
    created = []
    for topic, code, message in response.topic_errors:
        if code not in (_NO_ERROR, _TOPIC_ALREADY_EXISTS):
            raise KafkaError(f"cannot create topic {topic!r}: {message} (Kafka error {code})")
        if code == _NO_ERROR:
            created.append(topic)
    creation = config.topic_creation
    existed = [name for name in names if name not in created]
    log.info(
        "created topics %s (%d partitions, replication %s)%s",
        ", ".join(created),
        creation.partitions,
        "broker default" if creation.replication_factor == -1 else creation.replication_factor,
        f"; {', '.join(existed)} already existed" if existed else "",
    )
    partitions = [
        TopicPartition(topic, index) for topic in created for index in range(compacted.get(topic, creation.partitions))
    ]
    await _wait_for_leaders(config, partitions)
    return created


async def _wait_for_leaders(config: KafkaConfig, partitions: list[TopicPartition]) -> None:
    """Return once every new partition's leader answers, so the first records are not refused.

    Right after CreateTopics, metadata already names the leaders while the broker is still
    taking leadership; a produce then fails with NotLeaderForPartition and aiokafka warns as it
    retries. A ListOffsets request per partition (``end_offsets``) is answered only by a leader
    that is ready; aiokafka retries it quietly. Bounded by the request timeout, and never fatal:
    the producer retries on its own.
    """
    if not partitions:
        return
    started = time.monotonic()
    consumer = AIOKafkaConsumer(**connection_options(config), group_id=None, enable_auto_commit=False)
    try:
        await asyncio.wait_for(consumer.start(), config.request_timeout_seconds)
        await asyncio.wait_for(consumer.end_offsets(partitions), config.request_timeout_seconds)
    except (TimeoutError, AIOKafkaError, OSError) as exc:
        log.info(
            "the new topics' leaders did not all answer within %gs (%s); the producer retries until they do",
            config.request_timeout_seconds, _reason(exc, config),
        )  # fmt: skip
    else:
        log.debug("leaders of %d new partitions ready in %.2fs", len(partitions), time.monotonic() - started)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 5)


def _reason(exc: BaseException, config: KafkaConfig) -> str:
    """What went wrong, in a few words: aiokafka's messages start with their class name, so it is not repeated."""
    if isinstance(exc, KafkaConnectionError):
        return "could not connect to any broker"
    if isinstance(exc, TimeoutError):
        return f"no answer within {config.request_timeout_seconds:g}s"
    return describe_error(exc)
