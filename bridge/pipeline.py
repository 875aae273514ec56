"""The feed's one output port: data outcomes in, Kafka messages out (serialize, then the sink).

The feed knows nothing of Kafka: it hands every :class:`~bridge.protocol.events.Record`,
:class:`~bridge.protocol.events.Rejected` and :class:`~bridge.protocol.events.GapClosed` to
:meth:`Publisher.publish`. Here a record is encoded (a value the schema cannot carry exactly
becomes a dead letter of stage ``serialize``), a dead letter and a gap are counted and logged,
and each message goes to the sink, which may make the caller wait (backpressure).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bridge.errors import MalformedPayload
from bridge.metrics import BridgeMetrics
from bridge.protocol.events import DataOutcome, GapClosed, Record, Rejected
from bridge.records import DeadLetter, DeadLetterStage
from bridge.serialize import KafkaMessage, RecordSerializer

log = logging.getLogger(__name__)


class Publisher:
    """Serializes data outcomes and hands the messages to ``send`` (the sink's ``put``).

    Args:
        serializer: encodes records, dead letters and gaps for their topics.
        send: takes one message; may wait (backpressure).
        metrics: where dead letters and gap seconds are counted.
    """

    def __init__(
        self, serializer: RecordSerializer, send: Callable[[KafkaMessage], Awaitable[None]], metrics: BridgeMetrics
    ) -> None:
        self._serializer = serializer
        self._send = send
        self._metrics = metrics

    async def publish(self, outcome: DataOutcome) -> None:
        """Publish one outcome; safe to cancel (nothing is half-sent: the sink takes a message or not)."""
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
                await self._dead_letter(letter)
                return
            await self._send(message)
        elif isinstance(outcome, Rejected):
            await self._dead_letter(outcome.letter)
        else:
            await self._gap(outcome)

    async def _dead_letter(self, letter: DeadLetter) -> None:
        self._metrics.dead_letters.labels(letter.reason).inc()
        log.warning(
            "dead letter from %s (business %s): %s at %s: %s",
            letter.connection_id, letter.business, letter.reason, letter.stage.value, letter.detail,
            extra={"business": letter.business, "connection": letter.connection_id, "reason": letter.reason},
        )  # fmt: skip
        await self._send(self._serializer.serialize_dead_letter(letter))

    async def _gap(self, closed: GapClosed) -> None:
        gap = closed.gap
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
        message = self._serializer.serialize_gap(gap)
        if message is not None:
            await self._send(message)
