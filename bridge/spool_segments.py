"""The spool's segment files: locking, recovery, appending, writing out, reading back, deleting.

The policy (offsets, the memory window, ``when_full``) is :mod:`bridge.spool`'s; this module only
keeps the files of one directory (format in :mod:`bridge.spool_format`):

* ``lock``: held with ``flock`` while a bridge uses the directory (it holds that process's pid);
* ``<first offset>.seg``: segments, appended to until ``segment_bytes``, then sealed;
* ``acknowledged``: the highest offset known to be in Kafka, written now and then.

Appends go to a write buffer; :meth:`SegmentFiles.write_out` hands it to the operating system
and :meth:`SegmentFiles.sync` also fsyncs it (in a thread, so the event loop never waits on the
disk). A failed write keeps what was not written for the next try and reports ``failing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bridge.metrics import BridgeMetrics
from bridge.serialize import KafkaMessage
from bridge.spool_format import SEGMENT_HEADER, Frame, decode_payload, payload_of, scan
from bridge.spool_lock import lock_directory

log = logging.getLogger(__name__)

_READ_CHUNK = 4 << 20
_ERROR_LOG_SECONDS = 10.0


@dataclass(slots=True)
class Segment:
    """One segment file: the span of offsets it holds, how many records, its size in bytes."""

    path: Path
    first_offset: int
    last_offset: int
    records: int
    size: int


@dataclass(frozen=True, slots=True)
class Recovered:
    """What :meth:`SegmentFiles.open` found on disk."""

    segments: int
    records: int
    size_bytes: int
    first_offset: int
    """The oldest record still on disk (0 when there is none)."""
    last_offset: int
    acknowledged: int
    damaged: int
    torn: str | None
    """``<file> at byte N`` when the last write before the stop was torn, else ``None``."""
    identity: str
    """This spool's id (made with the directory): a position Kafka committed counts only if it names it."""


class SegmentFiles:
    """The files of one spool directory (see the module docstring).

    Args:
        directory: the spool directory (created when missing).
        segment_bytes: a segment is sealed once it would grow past this.
        fsync: whether :meth:`sync` makes writes durable, or only hands them to the operating system.
        metrics: where damage, sync times and write errors are counted.
        on_failing_changed: called when writing starts or stops failing.
    """

    def __init__(
        self,
        directory: Path,
        segment_bytes: int,
        *,
        fsync: bool,
        metrics: BridgeMetrics,
        on_failing_changed: Callable[[], None],
    ) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._metrics = metrics
        self._on_failing_changed = on_failing_changed
        self.segments: list[Segment] = []
        self._fd: int | None = None
        self._sealed: list[int] = []
        self._buffer = bytearray()
        self.unsynced = 0
        self.failing = False
        self._last_error_log = 0.0
        self._cursor: tuple[Segment, int, int] | None = None
        self._read_fd: tuple[Path, int] | None = None
        self._lock_fd: int | None = None

    @property
    def size_bytes(self) -> int:
        """Bytes in the segment files plus the write buffer."""
        return sum(segment.size for segment in self.segments)

    # -- start and stop ------------------------------------------------------------------------

    def open(self) -> Recovered:
        """Lock the directory and scan the segments an earlier run left (a torn tail is cut off).

        Raises:
            ConfigError: the directory cannot be created, written or locked (another bridge uses it).
        """
        self._lock_fd = lock_directory(self.directory)
        damaged, torn = 0, None
        for path in sorted(self.directory.glob("*.seg")):
            segment, found, torn_here = self._recover(path)
            damaged += found
            torn = torn_here or torn
            if segment is not None:
                self.segments.append(segment)
        first = min((segment.first_offset for segment in self.segments), default=0)
        last = max((segment.last_offset for segment in self.segments), default=0)
        records = sum(segment.records for segment in self.segments)
        checkpoint = self.read_checkpoint()
        return Recovered(
            len(self.segments), records, self.size_bytes, first, last, checkpoint, damaged, torn, self._identity()
        )

    def _identity(self) -> str:
        path = self.directory / "identity"
        try:
            return path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            identity = uuid.uuid4().hex
            path.write_text(identity + "\n", encoding="ascii")
            return identity

    def _recover(self, path: Path) -> tuple[Segment | None, int, str | None]:
        """One segment file: its good entries' span, the damaged entries skipped, and a torn tail (cut off)."""
        data = path.read_bytes()
        if not data.startswith(SEGMENT_HEADER):
            log.error("spool: %s is not a spool segment (bad header); leaving it alone", path)
            return None, 0, None
        frames, damaged, torn = 0, 0, None
        first = last = 0
        for item in scan(data, len(SEGMENT_HEADER)):
            if isinstance(item, Frame):
                frames += 1
                first = first or item.offset
                last = item.offset
                continue
            kind = "torn" if item.torn else "damaged"
            self._metrics.spool_damaged.labels(kind).inc()
            log.error(
                "spool: %s entry in %s at byte %d (%d bytes) skipped; the records before and after it are kept",
                kind, path.name, item.position, item.length,
            )  # fmt: skip
            if item.torn:
                torn = f"{path.name} at byte {item.position}"
                with path.open("r+b") as handle:
                    handle.truncate(item.position)
                data = data[: item.position]
            else:
                damaged += 1
        if not frames:
            path.unlink()
            return None, damaged, torn
        return Segment(path, first, last, frames, len(data)), damaged, torn

    async def close(self) -> None:
        """Write out and fsync what is buffered, then release the files and the lock."""
        await self.sync()
        for fd in [*self._sealed, *([self._fd] if self._fd is not None else [])]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._sealed, self._fd = [], None
        if self._read_fd is not None:
            os.close(self._read_fd[1])
            self._read_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- writing -------------------------------------------------------------------------------

    def append(self, offset: int, entry: bytes) -> None:
        """Buffer one encoded entry, sealing the active segment first when it would grow too large."""
        active = self.segments[-1] if self.segments and self._fd is not None else None
        if active is None or (active.records and active.size + len(entry) > self._segment_bytes):
            active = self._roll(offset)
        self._buffer += entry
        active.size += len(entry)
        active.records += 1
        active.last_offset = offset
        self.unsynced += 1

    def _roll(self, offset: int) -> Segment:
        if self._fd is not None:
            self.write_out()
            if self._buffer:  # the write failed: keep this segment until it can be written out
                return self.segments[-1]
            self._sealed.append(self._fd)
        path = self.directory / f"{offset:020d}.seg"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._buffer += SEGMENT_HEADER
        segment = Segment(path, offset, offset - 1, 0, len(SEGMENT_HEADER))
        self.segments.append(segment)
        return segment

    def write_out(self) -> None:
        """Hand the buffer to the operating system; a partial write keeps the rest for the next try."""
        try:
            while self._buffer and self._fd is not None:
                written = os.write(self._fd, self._buffer)
                del self._buffer[:written]
        except OSError as exc:
            self._failed(exc)
            return
        self._recovered()

    async def sync(self) -> None:
        """Write the buffer out and, with ``fsync``, make it durable; failures are counted and retried later."""
        if not self._buffer and not self._sealed and not self.unsynced:
            return
        started = time.monotonic()
        self.write_out()
        if self.failing:
            return
        fds = [*self._sealed, *([self._fd] if self._fd is not None else [])]
        if self._fsync:
            try:
                await asyncio.to_thread(_fsync_all, fds)
            except OSError as exc:
                self._failed(exc)
                return
        for fd in self._sealed:
            os.close(fd)
        self._sealed = []
        self.unsynced = 0
        self._metrics.spool_sync_seconds.observe(time.monotonic() - started)

    def _failed(self, exc: OSError) -> None:
        self._metrics.spool_write_errors.inc()
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_SECONDS:
            self._last_error_log = now
            log.error(
                "spool: cannot write to %s: %s; the feed stops reading, nothing already spooled is lost; retrying",
                self.directory, exc.strerror or exc,
            )  # fmt: skip
        if not self.failing:
            self.failing = True
            self._on_failing_changed()

    def _recovered(self) -> None:
        if self.failing:
            self.failing = False
            log.warning("spool: writing to %s works again", self.directory)
            self._on_failing_changed()

    def read_checkpoint(self) -> int:
        """The acknowledged offset an earlier run recorded (0 when none)."""
        try:
            return int((self.directory / "acknowledged").read_text(encoding="ascii").strip() or 0)
        except (OSError, ValueError):
            return 0

    def write_checkpoint(self, acknowledged: int) -> None:
        """Record the acknowledged offset (atomically: a new file renamed over the old one)."""
        temporary = self.directory / "acknowledged.tmp"
        try:
            temporary.write_text(f"{acknowledged}\n", encoding="ascii")
            temporary.replace(self.directory / "acknowledged")
        except OSError as exc:
            self._failed(exc)

    # -- deleting ------------------------------------------------------------------------------

    def delete_through(self, offset: int) -> None:
        """Delete every sealed segment whose records are all at or below ``offset``."""
        while self.segments and self.segments[0].last_offset <= offset:
            if self.segments[0] is self.segments[-1] and self._fd is not None:
                return  # the active segment stays until it is sealed
            self._unlink(self.segments.pop(0))

    def drop_oldest(self) -> Segment | None:
        """Delete the oldest sealed segment, delivered or not; ``None`` when only the active one is left."""
        if len(self.segments) < 2:
            return None
        oldest = self.segments.pop(0)
        self._unlink(oldest)
        self._cursor = None
        return oldest

    def _unlink(self, segment: Segment) -> None:
        if self._read_fd is not None and self._read_fd[0] == segment.path:
            os.close(self._read_fd[1])
            self._read_fd = None
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()

    # -- reading back --------------------------------------------------------------------------

    def read(self, first: int, limit: int) -> list[tuple[int, KafkaMessage]]:
        """Up to ``limit`` records from offset ``first`` on (or the oldest kept, when ``first`` was deleted)."""
        self.write_out()
        wanted = first
        while True:
            segment = next((s for s in reversed(self.segments) if s.first_offset <= wanted), None)
            if segment is None:
                if not self.segments:
                    return []
                segment = self.segments[0]
                wanted = segment.first_offset
            cursor = self._cursor
            resume = cursor is not None and cursor[0] is segment and cursor[2] == wanted
            position = cursor[1] if cursor is not None and resume else len(SEGMENT_HEADER)
            taken, end, seen = self._read_segment(segment, position, wanted, limit)
            after = taken[-1][0] + 1 if taken else wanted
            self._cursor = (segment, end, after)
            if taken:
                return taken
            if seen == 0 or end >= segment.size:
                if segment is self.segments[-1]:
                    return taken  # not written out yet (a failing disk), or nothing due
                wanted = segment.last_offset + 1  # the rest of this segment was damaged
                self._cursor = None
            # else: a chunk of records before ``wanted`` (after a rewind); read on from its end

    def _read_segment(
        self, segment: Segment, position: int, wanted: int, limit: int
    ) -> tuple[list[tuple[int, KafkaMessage]], int, int]:
        """Records of one segment from byte ``position``: those taken, where reading stopped, items seen."""
        fd = self._reader_for(segment.path)
        chunk = _READ_CHUNK
        while True:
            data = os.pread(fd, chunk, position)
            view = memoryview(data)
            items = list(scan(view, 0, final=False))
            if items or len(data) < chunk:
                break
            chunk *= 4  # one entry larger than the chunk
        taken: list[tuple[int, KafkaMessage]] = []
        end = position
        for item in items:
            if len(taken) >= limit:
                break
            if not isinstance(item, Frame):
                end = position + item.position + item.length
                continue
            end = position + item.position + item.size
            if item.offset < wanted:
                continue
            try:
                taken.append(decode_payload(payload_of(view, item)))
            except ValueError:
                self._metrics.spool_damaged.labels("damaged").inc()
        return taken, end, len(items)

    def _reader_for(self, path: Path) -> int:
        if self._read_fd is not None and self._read_fd[0] == path:
            return self._read_fd[1]
        if self._read_fd is not None:
            os.close(self._read_fd[1])
        fd = os.open(path, os.O_RDONLY)
        self._read_fd = (path, fd)
        return fd

    def forget_cursor(self) -> None:
        """The next read starts from a segment's beginning (after a rewind)."""
        self._cursor = None


def _fsync_all(fds: list[int]) -> None:
    for fd in fds:
        os.fsync(fd)
