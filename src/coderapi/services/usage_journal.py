"""An on-disk journal of usage records not yet committed to the database, so that writing them in
batches loses nothing when the gateway dies.

Each record is appended as one JSON line (one write(2) with O_APPEND) the moment its request ends,
before it is queued for the database; the kernel keeps it even if the process is killed the next
instant. A segment file belongs to one live process, which holds an exclusive flock on it; it is
deleted once every record in it is committed. At startup, segments that no live process holds
(their gateway died) are read back and settled idempotently (see `CostReservations.apply`), then
deleted. A line cut short by the kill is ignored: its record was never acknowledged to anyone.

Durability is the process's: records survive the gateway being killed, not the machine losing
power before the kernel writes its page cache (no fsync per request).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from coderapi.services.account_types import UsageRecord

log = logging.getLogger("coderapi.journal")

ROTATE_AFTER = 10_000  # records per segment before a fresh one is started
_RECORD_FIELDS = {f.name for f in fields(UsageRecord)}


@dataclass
class Segment:
    path: Path
    fd: int
    written: int = 0
    committed: int = 0


def encode(record: UsageRecord, reservation_id: int | None, lease_id: int | None = None) -> bytes:
    ended = record.ended_at.isoformat() if record.ended_at is not None else None
    data = {**vars(record), "cost": str(record.cost), "ended_at": ended, "reservation_id": reservation_id,
            "lease_id": lease_id}
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> tuple[UsageRecord, int | None, int | None]:
    """The record, its own hold's id and its lease's id (either or both None)."""
    data = json.loads(line)
    reservation_id = data.pop("reservation_id", None)
    lease_id = data.pop("lease_id", None)
    fields_ = {k: v for k, v in data.items() if k in _RECORD_FIELDS}
    fields_["cost"] = Decimal(fields_.get("cost", "0"))
    if fields_.get("ended_at"):
        fields_["ended_at"] = datetime.fromisoformat(fields_["ended_at"])
    return UsageRecord(**fields_), reservation_id, lease_id


class UsageJournal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._current: Segment | None = None

    def append(self, record: UsageRecord, reservation_id: int | None, lease_id: int | None = None) -> Segment:
        """Journal one record; the segment to tell `committed` about once it is in the database."""
        segment = self._current or self._open_segment()
        os.write(segment.fd, encode(record, reservation_id, lease_id))
        segment.written += 1
        return segment

    def committed(self, segment: Segment, count: int = 1) -> None:
        segment.committed += count
        if segment.committed < segment.written:
            return
        if segment is not self._current:
            self._remove(segment)
        elif segment.written >= ROTATE_AFTER:
            self._current = None
            self._remove(segment)

    def close(self) -> None:
        """Deletes the current segment if all of it is committed; else leaves it for recovery."""
        segment, self._current = self._current, None
        if segment is None:
            return
        if segment.committed >= segment.written:
            self._remove(segment)
        else:
            log.warning("%d usage records not committed; kept in %s for the next start",
                        segment.written - segment.committed, segment.path)
            os.close(segment.fd)

    def orphans(self) -> list[tuple[Segment, list[tuple[UsageRecord, int | None, int | None]]]]:
        """Segments of gateways that died, locked now by this process, with their records."""
        found = []
        if not self.directory.is_dir():
            return found
        for path in sorted(self.directory.glob("*.jsonl")):
            if self._current is not None and path == self._current.path:
                continue
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live gateway's
                continue
            entries = self._read(path)
            found.append((Segment(path, fd, written=len(entries)), entries))
        return found

    def _read(self, path: Path) -> list[tuple[UsageRecord, int | None, int | None]]:
        entries = []
        for line in path.read_bytes().split(b"\n"):
            if not line.strip():
                continue
            try:
                entries.append(decode(line))
            except (ValueError, TypeError):
                log.warning("skipping an unreadable journal line in %s (cut short when its gateway died?)", path)
        return entries

    def _open_segment(self) -> Segment:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._current = Segment(path, fd)
        return self._current

    @staticmethod
    def _remove(segment: Segment) -> None:
        try:
            segment.path.unlink(missing_ok=True)
        finally:
            os.close(segment.fd)
