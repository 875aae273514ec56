"""When Kafka's committed position is behind what it acknowledged: the records kept to send again, and the report.

A broker can lose part of a transaction it acknowledged (Kafka 4.4.0 with its only broker
stopped by SIGTERM mid-commit, see :mod:`bridge.positions`): its records and offset both, or
only the offset's commit marker. The spool's checkpoint is then ahead of Kafka's committed
position, and the records in the topics decide (:func:`bridge.positions.resumption`). This is
settled at two moments, and both report it here the same way:

* at start (:mod:`bridge.shard_unit`), from the records the spool still holds on disk;
* while running (:mod:`bridge.sink`), after a round failed and Kafka answers again (the broker
  restarted, the bridge did not): the spool has forgotten what Kafka acknowledged, so the sink
  keeps the last :data:`RECENT_RECORDS` acknowledged records in :class:`RecentRecords`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.structs import TopicPartition

from bridge.config_kafka import KafkaConfig
from bridge.config_spool import DeliveryConfig
from bridge.metrics import BridgeMetrics
from bridge.positions import Resumption, highest_in_topics, resumption
from bridge.spool import Entry

log = logging.getLogger(__name__)

Grouping = Callable[[list[Entry]], Awaitable[dict[TopicPartition, list[Entry]]]]
"""Entries grouped by the partition the producer writes each to (the sink's partitioner)."""

KAFKA_ABORT_CHECK_SECONDS = 30
"""Slack for Kafka to abort a transaction past its timeout after a restart: its check runs every 10 s
(``transaction.abort.timed.out.transaction.cleanup.interval.ms``), once the coordinator has loaded;
25 s in all was measured too short on Kafka 4.4."""

RECENT_RECORDS = 20_000
"""Acknowledged records the sink keeps for a broker that loses them: the transactions lost were the
last ones acknowledged before the broker stopped, and this is a second of them at 20,000 records/s
(references to records already built: a few MB)."""


class RecentRecords:
    """The last acknowledged records, oldest first, at most ``limit`` of them."""

    def __init__(self, limit: int = RECENT_RECORDS) -> None:
        self._entries: deque[Entry] = deque(maxlen=limit)

    def add(self, entries: Iterable[Entry]) -> None:
        """Keep ``entries`` (acknowledged, in offset order), forgetting the oldest past the limit."""
        self._entries.extend(entries)

    @property
    def oldest(self) -> int:
        """The oldest offset kept (0 when none is)."""
        return self._entries[0][0] if self._entries else 0

    def between(self, after: int, through: int) -> list[Entry]:
        """The kept entries with ``after`` < offset <= ``through``, in offset order."""
        return [entry for entry in self._entries if after < entry[0] <= through]


class Settler:
    """Finds acknowledged records in the topics, for a committed position behind them (at start or running)."""

    def __init__(
        self,
        config: KafkaConfig,
        delivery: DeliveryConfig,
        groups: Grouping,
        metrics: BridgeMetrics,
        transactional_id: str,
    ) -> None:
        self._config, self._delivery, self._groups = config, delivery, groups
        self._metrics = metrics
        self._transactional_id = transactional_id
        self.recent = RecentRecords()
        """The last records acknowledged in this run (the sink adds them)."""

    @property
    def search_timeout(self) -> float:
        """How long :meth:`highest_in_kafka` may wait: until Kafka aborted a transaction left open, and a request."""
        delivery, config = self._delivery, self._config
        return delivery.transaction_timeout_seconds + KAFKA_ABORT_CHECK_SECONDS + config.request_timeout_seconds

    async def highest_in_kafka(self, entries: list[Entry]) -> int | None:
        """The highest spool offset among ``entries`` whose record the topics hold (0: none; ``None``: unknown).

        Bounded by :attr:`search_timeout`: a transaction another producer holds open delays the
        answer, and Kafka aborts it after its timeout.
        """
        try:
            groups = await self._groups(entries)
        except (TimeoutError, AIOKafkaError, OSError):
            return None
        return await highest_in_topics(self._config, groups, self.search_timeout)

    async def settle(
        self, committed: int, acknowledged: int, candidates: list[Entry], oldest_kept: int, where: str
    ) -> Resumption:
        """Where to resume when Kafka's position ``committed`` is behind ``acknowledged``: the topics decide.

        ``candidates`` are the records after ``committed`` still held (``oldest_kept`` the oldest
        offset held, 0 when none is); ``where`` names their home in the log lines. The outcome is
        logged and records no longer held are counted (:func:`report_settled`).
        """
        log.info(
            "%s: Kafka's committed position is behind the %d it acknowledged; looking for records %d to %d in the "
            "topics (at most %.0fs while transactions are open)",
            where, acknowledged, committed + 1, acknowledged, self.search_timeout,
        )  # fmt: skip
        found = await self.highest_in_kafka(candidates) if candidates else committed
        resumed = resumption(committed, acknowledged, oldest_kept, found)
        report_settled(resumed, acknowledged, where, self._metrics)
        return resumed

    async def lost_since(self, committed: int, acknowledged: int) -> list[Entry]:
        """Kafka's position is behind what it acknowledged in this run: what the topics lack of it, to send again."""
        recent, where = self.recent, f"transactional id {self._transactional_id!r}"
        candidates = recent.between(committed, acknowledged)
        resumed = await self.settle(committed, acknowledged, candidates, recent.oldest, where)
        return recent.between(resumed.position, acknowledged)


def report_settled(resumed: Resumption, acknowledged: int, where: str, metrics: BridgeMetrics) -> None:
    """Log how a committed position behind ``acknowledged`` was settled; count records lost for good.

    ``where`` names the records' home in the log lines (``spool /data/spool/shard-03``).
    """
    behind = f"{where}: Kafka's committed position is behind the {acknowledged} this bridge recorded as acknowledged"
    if not resumed.rewound and resumed.confirmed:
        log.info("%s, but the topics hold every one of those records: nothing is delivered again", behind)
        return
    if not resumed.confirmed:
        log.warning(
            "%s, and the topics could not be read to settle it in time (a transaction held open, or brokers not "
            "answering); trusting what was acknowledged",
            behind,
        )
        return
    log.warning(
        "%s, and the topics hold the records up to offset %d: Kafka lost %d record(s) it had acknowledged (a broker "
        "stopped in the middle of a commit can); delivering them again",
        behind, resumed.position, resumed.rewound,
    )  # fmt: skip
    if resumed.gone:
        metrics.spool_dropped.labels("kafka_lost").inc(resumed.gone)
        log.error(
            "%s: %d of them (offsets %d to %d) are no longer held here, so they are lost; the gap is in the topics "
            "between what was committed before and after",
            where, resumed.gone, resumed.position + 1, resumed.position + resumed.gone,
        )  # fmt: skip
