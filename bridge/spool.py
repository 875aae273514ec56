"""The disk spool: a write-ahead log between serialisation and the producer (``spool.*`` in the README).

Theory of operation
-------------------
:meth:`Spool.append` gives every message the next *offset* (its place in receipt order), hands
its entry to the segment files (:mod:`bridge.spool_segments`) and keeps the message in a bounded
memory window of the newest entries. It never waits: the feed reads the socket at full speed
whatever Kafka does. A sync task writes the files out after ``sync_every_records`` records or
``sync_every_ms`` milliseconds, and fsyncs them with ``fsync`` on, so a crash loses at most that
window.

The producer's side reads in offset order (:meth:`Spool.read`): from the memory window while it
keeps up, from the segment files when it fell behind. Once Kafka has acknowledged everything up
to an offset, :meth:`Spool.acknowledge` advances the *acknowledged* position and deletes segments
wholly behind it; after a failed delivery :meth:`Spool.rewind` reads again from there. At start
(:meth:`Spool.open`, then :meth:`Spool.resume`) reading resumes after the acknowledged position:
the one Kafka holds in exactly-once delivery, else the one the spool recorded.

At ``max_bytes`` the ``when_full`` policy holds: ``stop-reading`` marks the spool full (not
``accepting``) until it falls below 90 % (the feed closes its connections meanwhile, and the gap
is published), while ``drop-oldest`` deletes the oldest segment, delivered or not, and counts
the records lost. A failed write (a full disk) also stops the feed, and is retried every tick.
With ``dir: null`` the spool is the memory window alone, bounded by ``max_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque

from bridge.config_spool import SpoolConfig, WhenFull
from bridge.metrics import BridgeMetrics
from bridge.serialize import KafkaMessage
from bridge.spool_format import encode_entry
from bridge.spool_segments import Recovered, SegmentFiles
from bridge.timing import wait_event

log = logging.getLogger(__name__)

Entry = tuple[int, KafkaMessage]
"""A spool offset and the record stored under it, as :meth:`Spool.read` hands them out."""

_ROOM_AGAIN = 0.9
_AGE_SAMPLE_SECONDS = 0.1
_CHECKPOINT_SECONDS = 1.0
CHECK_EVERY_RECORDS = 64
"""``append`` applies ``max_bytes`` every this many records (the sum over the segments is not free): the
spool can pass ``max_bytes`` by 63 records, a few tens of kilobytes against at least a MiB."""
_OBJECT_OVERHEAD = 600
"""What a message held in memory costs beyond its bytes (the message object, its header tuples, the
dict entry): tracemalloc measured about 430 for a trade (761 bytes held for a 327-byte entry); 600
leaves a margin, so ``memory_bytes`` bounds what the process really holds."""


class Spool:
    """The write-ahead log of one bridge process (see the module docstring).

    Args:
        config: the ``spool`` section.
        metrics: where the spool's gauges and counters live.
    """

    def __init__(self, config: SpoolConfig, metrics: BridgeMetrics) -> None:
        self._config = config
        self._metrics = metrics
        self._files = (
            None
            if config.dir is None
            else SegmentFiles(
                config.dir, config.segment_bytes, fsync=config.fsync, metrics=metrics, on_failing_changed=self._check
            )
        )
        self._memory: dict[int, tuple[KafkaMessage, int]] = {}
        self._memory_first = 1
        self._memory_bytes = 0
        self.next_offset = 1
        """The offset the next appended record gets."""
        self.acknowledged = 0
        """Every record up to this offset is in Kafka (or was dropped by policy)."""
        self._read_next = 1
        self._ages: deque[tuple[int, float]] = deque(maxlen=100_000)
        self._appended = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._room = asyncio.Event()
        self._room.set()
        self._sync_now = asyncio.Event()
        self._sync_task: asyncio.Task[None] | None = None
        self._last_checkpoint = 0.0
        self.full = False
        self._unreadable_logged = False
        metrics.watch_spool(self)
        self._written = 0

    # -- state ---------------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Bytes held: the segment files (the memory window without a directory)."""
        return self._memory_bytes if self._files is None else self._files.size_bytes

    @property
    def pending(self) -> int:
        """Records appended and not yet acknowledged."""
        return max(self.next_offset - 1 - self.acknowledged, 0)

    @property
    def accepting(self) -> bool:
        """Whether the feed may go on reading: not full under ``stop-reading``, no failing write."""
        return not self.full

    def oldest_age(self) -> float:
        """Seconds since the oldest unacknowledged record was appended (0 when there is none)."""
        if not self.pending or not self._ages:
            return 0.0
        return max(time.monotonic() - self._ages[0][1], 0.0)

    async def wait_for_room(self) -> None:
        """Return once the spool accepts records again; safe to cancel."""
        await self._room.wait()

    async def wait_until_empty(self) -> None:
        """Return once Kafka has acknowledged everything appended so far; safe to cancel."""
        await self._empty.wait()

    async def sync(self) -> None:
        """Write out (and with ``fsync``, make durable) everything appended so far."""
        if self._files is not None:
            await self._files.sync()

    # -- start and stop ------------------------------------------------------------------------

    def open(self) -> Recovered:
        """Lock the directory and scan what an earlier run left; call once, before :meth:`resume`.

        Raises:
            ConfigError: the directory cannot be created, written or locked (another bridge uses it).
        """
        if self._files is None:
            return Recovered(0, 0, 0, 0, 0, 0, 0, None, uuid.uuid4().hex)
        return self._files.open()

    def resume(self, acknowledged: int) -> None:
        """Start after ``acknowledged`` (everything up to it is in Kafka), appending after what is on disk."""
        files = self._files
        last = 0 if files is None else max((segment.last_offset for segment in files.segments), default=0)
        self.acknowledged = acknowledged
        self.next_offset = self._memory_first = max(last, acknowledged) + 1
        self._read_next = acknowledged + 1
        if files is not None:
            files.delete_through(acknowledged)
        if self.pending:
            self._ages.append((acknowledged + 1, time.monotonic()))
            self._empty.clear()
        self._check()
        self._sync_task = asyncio.create_task(self._sync_loop(), name="spool-sync")

    async def close(self) -> None:
        """Write out and fsync what is buffered, record the acknowledged position, release the directory."""
        self._count_written()
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        if self._files is not None:
            await self._files.close()
            self._files.write_checkpoint(self.acknowledged)

    async def _sync_loop(self) -> None:
        interval = self._config.sync_every_ms / 1000
        files = self._files
        while files is not None:
            await wait_event(self._sync_now, interval)
            self._sync_now.clear()
            self._count_written()
            await files.sync()
            now = time.monotonic()
            if now - self._last_checkpoint >= _CHECKPOINT_SECONDS:
                self._last_checkpoint = now
                files.write_checkpoint(self.acknowledged)

    # -- the feed's side -----------------------------------------------------------------------

    def append(self, message: KafkaMessage) -> int:
        """Add one message at the end; returns its offset. Never waits (see :attr:`accepting`)."""
        offset = self.next_offset
        self.next_offset += 1
        files = self._files
        if files is not None:
            entry = encode_entry(offset, message)
            files.append(offset, entry)
            size = len(entry) + _OBJECT_OVERHEAD
            if files.unsynced >= self._config.sync_every_records:
                self._sync_now.set()
        else:
            size = _memory_size(message)
        self._memory[offset] = (message, size)
        self._memory_bytes += size
        self._evict_memory()
        now = time.monotonic()
        if not self._ages or now - self._ages[-1][1] >= _AGE_SAMPLE_SECONDS:
            self._ages.append((offset, now))
        self._written += 1  # added to spool_written by read() and the sync task, not one lock per record
        self._appended.set()
        self._empty.clear()
        if offset % CHECK_EVERY_RECORDS == 0:
            self._check()
        return offset

    def _evict_memory(self) -> None:
        """Keep the memory window within bounds: with files the oldest entries are only forgotten."""
        if self._files is None:
            if self._config.when_full is WhenFull.STOP_READING:
                return  # memory is the whole spool: _check marks it full instead
            cap = self._config.max_bytes
        else:
            cap = self._config.memory_bytes
        while self._memory_bytes > cap and self._memory:
            offset = self._memory_first
            _, size = self._memory.pop(offset)
            self._memory_bytes -= size
            self._memory_first += 1
            if self._files is None and offset > self.acknowledged:
                self._metrics.spool_dropped.labels("when_full").inc()
                self.acknowledged = offset
                self._read_next = max(self._read_next, offset + 1)

    def _check(self) -> None:
        """Apply ``when_full`` and set :attr:`full` from the bytes held and the state of the disk."""
        limit = self._config.max_bytes
        if self._files is not None and self._config.when_full is WhenFull.DROP_OLDEST:
            self._drop_oldest(limit)
        held = self.size_bytes
        failing = self._files is not None and self._files.failing
        if failing or (held >= limit and self._config.when_full is WhenFull.STOP_READING):
            if not self.full and not failing:
                log.error(
                    "spool: full (%d bytes, spool.max_bytes %d); the feed stops reading until Kafka takes records",
                    held, limit,
                )  # fmt: skip
            self.full = True
            self._room.clear()
        elif self.full and held < limit * _ROOM_AGAIN:
            log.warning("spool: room again (%d bytes held); the feed resumes", held)
            self.full = False
            self._room.set()

    def _drop_oldest(self, limit: int) -> None:
        assert self._files is not None
        while self._files.size_bytes >= limit:
            oldest = self._files.drop_oldest()
            if oldest is None:
                return
            lost = max(oldest.last_offset - max(self.acknowledged, oldest.first_offset - 1), 0)
            if lost:
                self._metrics.spool_dropped.labels("when_full").inc(lost)
                log.error(
                    "spool: full (spool.max_bytes %d); dropped %d undelivered records (%s) by when_full: drop-oldest",
                    limit, lost, oldest.path.name,
                )  # fmt: skip
            self._forget_through(oldest.last_offset)

    # -- the producer's side -------------------------------------------------------------------

    async def read(self, max_records: int, max_wait: float) -> list[Entry]:
        """The next unread records in offset order, at most ``max_records``; waits up to ``max_wait`` for one."""
        if self._read_next >= self.next_offset:
            self._appended.clear()
            await wait_event(self._appended, max_wait)
        taken: list[tuple[int, KafkaMessage]] = []
        while len(taken) < max_records and self._read_next < self.next_offset:
            held = self._memory.get(self._read_next)
            if held is not None:
                taken.append((self._read_next, held[0]))
                self._read_next += 1
                continue
            if self._files is None:
                break
            from_disk = self._files.read(self._read_next, max_records - len(taken))
            if not from_disk:
                break
            taken.extend(from_disk)
            self._read_next = from_disk[-1][0] + 1
        if not taken and self._read_next < self.next_offset:
            # Records are due but none could be read now (not yet written out by a failing disk):
            # wait instead of returning at once, or the delivery loop would never yield.
            if not self._unreadable_logged:
                self._unreadable_logged = True
                log.warning(
                    "spool: offset %d is due (records up to %d) but not readable yet; retrying",
                    self._read_next, self.next_offset - 1,
                )  # fmt: skip
            await asyncio.sleep(max(max_wait, 0.05))
        self._metrics.spool_drained.inc(len(taken))
        self._count_written()
        return taken

    def _count_written(self) -> None:
        if self._written:
            self._metrics.spool_written.inc(self._written)
            self._written = 0

    def rewind(self) -> None:
        """Read again from just after the acknowledged position (a delivery round failed)."""
        self._read_next = self.acknowledged + 1
        if self._files is not None:
            self._files.forget_cursor()

    def acknowledge(self, offset: int) -> None:
        """Everything up to ``offset`` is in Kafka: forget it and delete the segments wholly behind it."""
        if offset <= self.acknowledged:
            return
        self._forget_through(offset)
        if self._files is not None:
            self._files.delete_through(offset)
        if not self.pending:
            self._empty.set()
        self._check()

    def _forget_through(self, offset: int) -> None:
        self.acknowledged = max(self.acknowledged, offset)
        self._read_next = max(self._read_next, self.acknowledged + 1)
        while self._memory_first <= offset and self._memory:
            _, size = self._memory.pop(self._memory_first)
            self._memory_bytes -= size
            self._memory_first += 1
        self._memory_first = max(self._memory_first, min(offset + 1, self.next_offset))
        passed = None
        while self._ages and self._ages[0][0] <= offset:
            passed = self._ages.popleft()
        if passed is not None and self.pending and (not self._ages or self._ages[0][0] > offset + 1):
            # The first pending record came after the last sample passed: its age is at most that sample's.
            self._ages.appendleft((offset + 1, passed[1]))


def _memory_size(message: KafkaMessage) -> int:
    return (
        len(message.value)
        + len(message.key or b"")
        + sum(len(k) + len(v) for k, v in message.headers)
        + _OBJECT_OVERHEAD
    )
