"""The feed's one outlet: data outcomes in, Kafka messages into the spool (serialize, then append).

The feed knows nothing of Kafka: it hands every :class:`~bridge.protocol.events.Record`,
:class:`~bridge.protocol.events.Rejected` and :class:`~bridge.protocol.events.GapClosed` to
:meth:`Publisher.emit`. Here a record is encoded (a value the schema cannot carry exactly
becomes a dead letter of stage ``serialize``), a dead letter and a gap are counted and logged,
and each message is appended to the spool, which never waits; when the spool is full it stops
*accepting*, and the feed closes its connections until there is room (the gap is published).
"""

from __future__ import annotations

import logging

from bridge.errors import MalformedPayload
from bridge.metrics import BridgeMetrics
from bridge.protocol.events import DataOutcome, GapClosed, Record, Rejected
from bridge.records import DeadLetter, DeadLetterStage
from bridge.serialize import RecordSerializer
from bridge.spool import Spool

log = logging.getLogger(__name__)


class Publisher:
    """Serializes data outcomes and appends the messages to the spool.

    Args:
        serializer: encodes records, dead letters and gaps for their topics.
        spool: where every message waits until Kafka has it.
        metrics: where dead letters and gap seconds are counted.
    """

    def __init__(self, serializer: RecordSerializer, spool: Spool, metrics: BridgeMetrics) -> None:
        self._serializer = serializer
        self._spool = spool
        self._send = spool.append
        self._metrics = metrics

    @property
    def accepting(self) -> bool:
        """Whether the feed may go on reading (the spool is not full)."""
        return self._spool.accepting

    async def wait_for_room(self) -> None:
        """Return once the spool accepts records again; safe to cancel."""
        await self._spool.wait_for_room()

    def emit(self, outcome: DataOutcome) -> None:
        """Publish one outcome; never waits."""
        if isinstance(outcome, Record):
            record = outcome.record
            try:
                message = self._serializer.serialize(record)
            except MalformedPayload as exc:
                provenance = record.provenance
                letter = DeadLetter(
                    reason=exc.reason,
                    stage=DeadLetterStage.SERIALIZE,
                    detail=str(exc),
                    raw=outcome.raw,
                    received_time=provenance.received_time,
                    business=provenance.business,
                    connection_id=provenance.connection_id,
                )
                self._dead_letter(letter)
                return
            self._send(message)
        elif isinstance(outcome, Rejected):
            self._dead_letter(outcome.letter)
        else:
            self._gap(outcome)

    def _dead_letter(self, letter: DeadLetter) -> None:
        self._metrics.dead_letters.labels(letter.reason).inc()
        log.warning(
            "dead letter from %s (business %s): %s at %s: %s",
            letter.connection_id, letter.business, letter.reason, letter.stage.value, letter.detail,
            extra={"business": letter.business, "connection": letter.connection_id, "reason": letter.reason},
        )  # fmt: skip
        self._send(self._serializer.serialize_dead_letter(letter))

    def _gap(self, closed: GapClosed) -> None:
        gap = closed.gap
        if gap.backfill is not None:  # a follow-up: the gap itself was counted and logged when it closed
            self._send_gap(closed)
            return
        self._metrics.gap_seconds.labels(gap.business).inc(gap.seconds)
        cause = gap.cause.value if gap.code is None else f"{gap.cause.value} {gap.code}"
        log.warning(
            "gap on %s (business %s, %d codes, %s): %s to %s (%.1fs), cause %s%s",
            gap.connection, gap.business, len(gap.codes), "/".join(gap.streams),
            gap.start.isoformat(timespec="milliseconds"), gap.end.isoformat(timespec="milliseconds"), gap.seconds,
            cause, "" if gap.resolved else ", not resolved",
            extra={
                "business": gap.business, "connection": gap.connection, "reason": gap.cause.value,
                "code": gap.code, "gap_seconds": round(gap.seconds, 3),
            },
        )  # fmt: skip
        self._send_gap(closed)

    def _send_gap(self, closed: GapClosed) -> None:
        message = self._serializer.serialize_gap(closed.gap)
        if message is not None:
            self._send(message)
