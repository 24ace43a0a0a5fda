"""Turn telemetry that is never lost: every trace is written to an on-disk outbox (write +
fsync + rename) before it is published, and its file is removed only when the broker has
acknowledged it (QoS 1 PUBACK).  A broker outage, a daemon restart or a power cut therefore
leaves the trace on disk, and it goes out later in the original order.

The outbox is bounded (``telemetry.spool_max``): when full, the oldest unsent traces are
dropped and counted (the count survives restarts).  Durations in the agent must not wait for
the disk, so ``TelemetryOutbox.submit`` only enqueues; one background thread does the disk
and the MQTT work.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Protocol

log = logging.getLogger(__name__)

_SUFFIX = ".json"


class PublishHandle(Protocol):
    def is_published(self) -> bool: ...


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A bounded FIFO of payloads, one file per item named by sequence number.

    Not thread-safe: only the outbox thread touches it.  Items are *queued* (not yet handed
    to MQTT) or *in flight* (published, waiting for the PUBACK); only queued items are dropped
    when the spool is full, because in-flight ones may already have reached the broker.
    """

    def __init__(self, directory: Path, max_items: int):
        self.directory = Path(directory)
        self.max_items = max_items
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink(missing_ok=True)  # a write that never reached its rename
        seqs = sorted(int(p.stem) for p in self.directory.glob("*" + _SUFFIX) if p.stem.isdigit())
        self._queued: deque[int] = deque(seqs)
        self._in_flight: set[int] = set()
        self._next = (seqs[-1] + 1) if seqs else 1
        self._dropped_file = self.directory / "dropped"
        try:
            self.dropped = int(self._dropped_file.read_text().strip() or 0)
        except (OSError, ValueError):
            self.dropped = 0

    def __len__(self) -> int:
        return len(self._queued) + len(self._in_flight)

    @property
    def queued(self) -> int:
        return len(self._queued)

    def append_many(self, payloads: list[bytes]) -> None:
        """Durably store ``payloads`` in order (fsync each file, then the directory)."""
        for payload in payloads:
            seq = self._next
            self._next += 1
            path = self._path(seq)
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            self._queued.append(seq)
        _fsync_dir(self.directory)
        self._enforce_bound()

    def take(self) -> tuple[int, bytes] | None:
        """The oldest queued item, now marked in flight (None when nothing is queued)."""
        while self._queued:
            seq = self._queued.popleft()
            try:
                payload = self._path(seq).read_bytes()
            except OSError as exc:  # removed by hand or a damaged card: skip it, say so
                log.warning("telemetry spool: item %d unreadable (%s), skipped", seq, exc)
                continue
            self._in_flight.add(seq)
            return seq, payload
        return None

    def done(self, seq: int) -> None:
        """The broker has it: forget the item."""
        self._in_flight.discard(seq)
        self._path(seq).unlink(missing_ok=True)

    def _enforce_bound(self) -> None:
        dropped = 0
        while len(self) > self.max_items and self._queued:
            self._path(self._queued.popleft()).unlink(missing_ok=True)
            dropped += 1
        if dropped:
            self.dropped += dropped
            log.warning("telemetry spool full (%d): dropped the %d oldest traces (%d in total)",
                        self.max_items, dropped, self.dropped)
            tmp = self._dropped_file.with_suffix(".tmp")
            tmp.write_text(str(self.dropped))
            os.replace(tmp, self._dropped_file)

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:016d}{_SUFFIX}"


class TelemetryOutbox:
    """The thread between ``submit`` (any thread, microseconds) and the broker.

    ``publish(payload)`` is called only while ``connected()`` is true and returns a handle
    whose ``is_published()`` turns true on PUBACK; paho re-sends unacknowledged QoS 1
    messages itself after a reconnect, so a handle stays valid across outages.  At most
    ``window`` items are in flight, so an outage grows the disk spool, not memory.
    """

    def __init__(self, spool: Spool, publish: Callable[[bytes], PublishHandle],
                 connected: Callable[[], bool], window: int = 16):
        self.spool = spool
        self._publish = publish
        self._connected = connected
        self._window = max(1, min(window, spool.max_items // 2))
        self._incoming: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._in_flight: deque[tuple[int, PublishHandle]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="edgeagent-telemetry", daemon=True)
        self.submitted = 0
        self.delivered = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, payload: bytes) -> None:
        self.submitted += 1
        self._incoming.put(payload)
        self._wake.set()

    def notify(self) -> None:
        """Something changed (connected, a PUBACK arrived): look again now."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after writing everything submitted so far to disk."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait_delivered(self, timeout: float) -> bool:
        """Block until everything submitted has been acknowledged by the broker (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while not self._is_idle():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return True

    def stats(self) -> dict[str, int]:
        return {"submitted": self.submitted, "delivered": self.delivered,
                "spooled": len(self.spool) + self._incoming.qsize(), "dropped": self.spool.dropped}

    def _is_idle(self) -> bool:
        return self._incoming.empty() and len(self.spool) == 0

    def _run(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                stopping = self._stop.is_set()  # read first: a submit before stop() is persisted below
                self._persist_incoming()
                if stopping:
                    return
                self._reap()
                self._send()
            except Exception:  # a full disk must not kill telemetry for good: retry next round
                log.exception("telemetry outbox: round failed, retrying")
                time.sleep(0.5)
            with self._idle:
                self._idle.notify_all()

    def _persist_incoming(self) -> None:
        # under the idle lock: a batch between the queue and the spool must not look "idle"
        with self._idle:
            batch: list[bytes] = []
            while True:
                try:
                    batch.append(self._incoming.get_nowait())
                except queue.Empty:
                    break
            if batch:
                self.spool.append_many(batch)

    def _reap(self) -> None:
        still: deque[tuple[int, PublishHandle]] = deque()
        for seq, handle in self._in_flight:
            if handle.is_published():
                self.spool.done(seq)
                self.delivered += 1
            else:
                still.append((seq, handle))
        self._in_flight = still

    def _send(self) -> None:
        while len(self._in_flight) < self._window and self._connected():
            item = self.spool.take()
            if item is None:
                return
            seq, payload = item
            self._in_flight.append((seq, self._publish(payload)))
