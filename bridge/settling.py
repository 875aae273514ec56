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
from collections.abc import Iterable

from bridge.metrics import BridgeMetrics
from bridge.positions import Resumption
from bridge.serialize import KafkaMessage

log = logging.getLogger(__name__)

Entry = tuple[int, KafkaMessage]
"""A spool offset and the record stored under it."""

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
